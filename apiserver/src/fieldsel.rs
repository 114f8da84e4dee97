//! Field labels: which fields each kind can be selected by, and their values, as
//! upstream's per-kind `GetAttrs` and `AddFieldLabelConversionFunc` tables.

use serde_json::Value;

fn ptr(obj: &Value, p: &str) -> Option<String> {
    match obj.pointer(p)? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The field labels a kind supports beyond metadata.name and metadata.namespace.
fn extra(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "Pod" => &[
            ("spec.nodeName", "/spec/nodeName"),
            ("spec.restartPolicy", "/spec/restartPolicy"),
            ("spec.schedulerName", "/spec/schedulerName"),
            ("spec.serviceAccountName", "/spec/serviceAccountName"),
            ("spec.hostNetwork", "/spec/hostNetwork"),
            ("status.phase", "/status/phase"),
            ("status.podIP", "/status/podIP"),
            ("status.nominatedNodeName", "/status/nominatedNodeName"),
        ],
        "Event" => &[
            ("involvedObject.kind", "/involvedObject/kind"),
            ("involvedObject.namespace", "/involvedObject/namespace"),
            ("involvedObject.name", "/involvedObject/name"),
            ("involvedObject.uid", "/involvedObject/uid"),
            ("involvedObject.apiVersion", "/involvedObject/apiVersion"),
            (
                "involvedObject.resourceVersion",
                "/involvedObject/resourceVersion",
            ),
            ("involvedObject.fieldPath", "/involvedObject/fieldPath"),
            ("reason", "/reason"),
            ("reportingComponent", "/reportingComponent"),
            ("source", "/source/component"),
            ("type", "/type"),
        ],
        "Secret" => &[("type", "/type")],
        "Node" => &[("spec.unschedulable", "/spec/unschedulable")],
        "Namespace" => &[("status.phase", "/status/phase")],
        "ReplicaSet" | "ReplicationController" => &[("status.replicas", "/status/replicas")],
        "Job" => &[("status.successful", "/status/succeeded")],
        "CertificateSigningRequest" => &[("spec.signerName", "/spec/signerName")],
        "PersistentVolumeClaim" | "PersistentVolume" => &[("status.phase", "/status/phase")],
        _ => &[],
    }
}

/// Checks a field label; the error is upstream's message.
pub fn check_label(kind: &str, label: &str) -> Result<(), String> {
    if matches!(label, "metadata.name" | "metadata.namespace")
        || extra(kind).iter().any(|(l, _)| *l == label)
    {
        return Ok(());
    }
    if extra(kind).is_empty() {
        Err(format!(
            "{label:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        ))
    } else {
        Err(format!("field label not supported: {label}"))
    }
}

/// The value of a field label on an object.
pub fn value(kind: &str, obj: &Value, label: &str) -> Option<String> {
    match label {
        "metadata.name" => return ptr(obj, "/metadata/name"),
        "metadata.namespace" => return ptr(obj, "/metadata/namespace"),
        _ => {}
    }
    let (_, p) = extra(kind).iter().find(|(l, _)| *l == label)?;
    match (kind, label) {
        // Booleans default to false and counts to 0 when unset.
        ("Pod", "spec.hostNetwork") | ("Node", "spec.unschedulable") => {
            Some(ptr(obj, p).unwrap_or_else(|| "false".into()))
        }
        ("ReplicaSet" | "ReplicationController", _) | ("Job", _) => {
            Some(ptr(obj, p).unwrap_or_else(|| "0".into()))
        }
        _ => ptr(obj, p),
    }
}
