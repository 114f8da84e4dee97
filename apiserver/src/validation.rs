//! Validation as upstream's `apimachinery/pkg/util/validation` and
//! `pkg/apis/*/validation` do it, with the same messages: names, labels, object
//! metadata, and each built-in kind's required and immutable fields.

use serde_json::{Value, json};

use crate::error::FieldError;

pub use component_base::validation::{
    dns1035_label_errors, dns1123_label_errors, dns1123_subdomain_errors, label_value_errors,
    qualified_name_errors,
};

/// How a kind's names are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds).
    Subdomain,
    /// RFC 1123 label (namespaces).
    Label,
    /// RFC 1035 label (services).
    Dns1035,
    /// Any path segment (RBAC and a few others).
    PathSegment,
}

/// The name rule upstream applies to `kind`.
pub fn name_rule(kind: &str) -> NameRule {
    match kind {
        "Namespace" => NameRule::Label,
        "Service" => NameRule::Dns1035,
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" | "Scale" => {
            NameRule::PathSegment
        }
        _ => NameRule::Subdomain,
    }
}

fn path_segment_errors(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            return vec![format!("may not contain '{bad}'")];
        }
    }
    Vec::new()
}

fn name_errors(rule: NameRule, name: &str) -> Vec<String> {
    let mut e = path_segment_errors(name);
    if !e.is_empty() {
        return e;
    }
    e = match rule {
        NameRule::Subdomain => dns1123_subdomain_errors(name),
        NameRule::Label => dns1123_label_errors(name),
        NameRule::Dns1035 => dns1035_label_errors(name),
        NameRule::PathSegment => Vec::new(),
    };
    e
}

/// Validates `metadata` of a new or updated object: name, labels, annotations.
pub fn validate_object_meta(obj: &Value, kind: &str, namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    let generate = meta
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() {
        if generate.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        for m in name_errors(name_rule(kind), name) {
            errs.push(FieldError::invalid("metadata.name", json!(name), m));
        }
    }
    if namespaced {
        let ns = meta.get("namespace").and_then(Value::as_str).unwrap_or("");
        if ns.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        }
    } else if meta
        .get("namespace")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            for m in qualified_name_errors(k) {
                errs.push(FieldError::invalid("metadata.labels", json!(k), m));
            }
            let v = v.as_str().unwrap_or("");
            for m in label_value_errors(v) {
                errs.push(FieldError::invalid("metadata.labels", json!(v), m));
            }
        }
    }
    if let Some(ann) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in ann {
            for m in qualified_name_errors(&k.to_lowercase()) {
                errs.push(FieldError::invalid("metadata.annotations", json!(k), m));
            }
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
        }
        if total > 256 * 1024 {
            errs.push(FieldError::too_long("metadata.annotations", 256 * 1024));
        }
    }
    errs
}

/// Fields that may never change once set, as upstream's `ValidateObjectMetaUpdate`.
pub fn validate_meta_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (field, ptr) in [
        ("metadata.name", "/metadata/name"),
        ("metadata.namespace", "/metadata/namespace"),
        ("metadata.uid", "/metadata/uid"),
        ("metadata.creationTimestamp", "/metadata/creationTimestamp"),
    ] {
        let n = new.pointer(ptr);
        let o = old.pointer(ptr);
        if n != o {
            errs.push(FieldError::invalid(
                field,
                n.cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
    }
    errs
}

fn idx(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// Validates a pod spec at `path` (pods and every template).
pub fn validate_pod_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => errs.push(FieldError::required(format!("{path}.containers"), "")),
        Some(cs) if cs.is_empty() => {
            errs.push(FieldError::required(format!("{path}.containers"), ""))
        }
        Some(_) => {}
    }
    let mut names = std::collections::HashSet::new();
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in cs.iter().enumerate() {
            let p = idx(&format!("{path}.{list}"), i);
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                errs.push(FieldError::required(format!("{p}.name"), ""));
            } else {
                for m in dns1123_label_errors(name) {
                    errs.push(FieldError::invalid(format!("{p}.name"), json!(name), m));
                }
                if !names.insert(name.to_owned()) {
                    errs.push(FieldError::duplicate(format!("{p}.name"), json!(name)));
                }
            }
            if c.get("image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .is_empty()
            {
                errs.push(FieldError::required(format!("{p}.image"), ""));
            }
            if let Some(ports) = c.get("ports").and_then(Value::as_array) {
                for (j, port) in ports.iter().enumerate() {
                    let pp = idx(&format!("{p}.ports"), j);
                    match port.get("containerPort").and_then(Value::as_i64) {
                        Some(n) if (1..=65535).contains(&n) => {}
                        Some(n) => errs.push(FieldError::invalid(
                            format!("{pp}.containerPort"),
                            json!(n),
                            "must be between 1 and 65535, inclusive",
                        )),
                        None => errs.push(FieldError::required(format!("{pp}.containerPort"), "")),
                    }
                    if let Some(proto) = port.get("protocol").and_then(Value::as_str)
                        && !matches!(proto, "TCP" | "UDP" | "SCTP")
                    {
                        errs.push(FieldError::not_supported(
                            format!("{pp}.protocol"),
                            json!(proto),
                            &["SCTP", "TCP", "UDP"],
                        ));
                    }
                }
            }
            if let Some(policy) = c.get("imagePullPolicy").and_then(Value::as_str)
                && !matches!(policy, "Always" | "IfNotPresent" | "Never")
            {
                errs.push(FieldError::not_supported(
                    format!("{p}.imagePullPolicy"),
                    json!(policy),
                    &["Always", "IfNotPresent", "Never"],
                ));
            }
        }
    }
    if let Some(rp) = spec.get("restartPolicy").and_then(Value::as_str)
        && !matches!(rp, "Always" | "OnFailure" | "Never")
    {
        errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            json!(rp),
            &["Always", "Never", "OnFailure"],
        ));
    }
    if let Some(dp) = spec.get("dnsPolicy").and_then(Value::as_str)
        && !matches!(
            dp,
            "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
        )
    {
        errs.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            json!(dp),
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        ));
    }
    errs
}

fn selector_matches_labels(selector: &Value, labels: &Value) -> bool {
    let labels = crate::selectors::labels_of(&json!({"metadata": {"labels": labels}}));
    crate::selectors::LabelSelector::from_meta(selector).matches(&labels)
}

/// Validates a workload's selector, replicas and template (deployments, replica sets,
/// stateful sets, daemon sets, replication controllers, jobs).
fn validate_workload(obj: &Value, kind: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    if let Some(r) = spec.get("replicas")
        && r.as_i64().is_some_and(|n| n < 0)
    {
        errs.push(FieldError::invalid(
            "spec.replicas",
            r.clone(),
            "must be greater than or equal to 0",
        ));
    }
    let template_labels = spec
        .pointer("/template/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    if kind == "ReplicationController" {
        if let Some(sel) = spec.get("selector").and_then(Value::as_object) {
            let sel = json!({"matchLabels": sel});
            if !selector_matches_labels(&sel, &template_labels) {
                errs.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    template_labels.clone(),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    } else if kind != "Job" {
        match spec.get("selector") {
            None | Some(Value::Null) => errs.push(FieldError::required("spec.selector", "")),
            Some(sel) => {
                let empty = sel
                    .get("matchLabels")
                    .and_then(Value::as_object)
                    .is_none_or(|m| m.is_empty())
                    && sel
                        .get("matchExpressions")
                        .and_then(Value::as_array)
                        .is_none_or(|a| a.is_empty());
                if empty {
                    errs.push(FieldError::invalid(
                        "spec.selector",
                        json!("null"),
                        "empty selector is invalid for deployment",
                    ));
                } else if !selector_matches_labels(sel, &template_labels) {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        template_labels.clone(),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
    }
    match spec.pointer("/template/spec") {
        Some(ps) => errs.extend(validate_pod_spec(ps, "spec.template.spec")),
        None if kind != "CronJob" => {
            errs.push(FieldError::required("spec.template.spec.containers", ""))
        }
        None => {}
    }
    if matches!(
        kind,
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet"
    ) && let Some(rp) = spec
        .pointer("/template/spec/restartPolicy")
        .and_then(Value::as_str)
        && rp != "Always"
    {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            json!(rp),
            &["Always"],
        ));
    }
    errs
}

fn validate_service(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !matches!(
        ty,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        errs.push(FieldError::not_supported(
            "spec.type",
            json!(ty),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let ports = spec
        .get("ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    if ports.is_empty() && ty != "ExternalName" && !headless {
        errs.push(FieldError::required("spec.ports", ""));
    }
    if ty == "ExternalName"
        && spec
            .get("externalName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
    {
        errs.push(FieldError::required("spec.externalName", ""));
    }
    let mut names = std::collections::HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = idx("spec.ports", i);
        match p.get("port").and_then(Value::as_i64) {
            Some(n) if (1..=65535).contains(&n) => {}
            Some(n) => errs.push(FieldError::invalid(
                format!("{pp}.port"),
                json!(n),
                "must be between 1 and 65535, inclusive",
            )),
            None => errs.push(FieldError::required(format!("{pp}.port"), "")),
        }
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("{pp}.name"), ""));
        }
        if !name.is_empty() && !names.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(format!("{pp}.name"), json!(name)));
        }
        if let Some(proto) = p.get("protocol").and_then(Value::as_str)
            && !matches!(proto, "TCP" | "UDP" | "SCTP")
        {
            errs.push(FieldError::not_supported(
                format!("{pp}.protocol"),
                json!(proto),
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
    errs
}

fn validate_data_keys(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for field in ["data", "binaryData", "stringData"] {
        if let Some(m) = obj.get(field).and_then(Value::as_object) {
            for k in m.keys() {
                let ok = !k.is_empty()
                    && k.len() <= 253
                    && k.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
                    && k != "."
                    && k != ".."
                    && !k.starts_with("..");
                if !ok {
                    errs.push(FieldError::invalid(
                        format!("{field}[{k}]"),
                        json!(k),
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    ));
                }
            }
        }
    }
    errs
}

/// The kind-specific validation of a new object (metadata is checked separately).
pub fn validate_kind(kind: &str, obj: &Value) -> Vec<FieldError> {
    match kind {
        "Pod" => validate_pod_spec(obj.get("spec").unwrap_or(&Value::Null), "spec"),
        "PodTemplate" => match obj.pointer("/template/spec") {
            Some(s) => validate_pod_spec(s, "template.spec"),
            None => vec![FieldError::required("template.spec.containers", "")],
        },
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicationController"
        | "Job" => validate_workload(obj, kind),
        "CronJob" => {
            let mut e = Vec::new();
            if obj
                .pointer("/spec/schedule")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                e.push(FieldError::required("spec.schedule", ""));
            }
            if let Some(ps) = obj.pointer("/spec/jobTemplate/spec/template/spec") {
                e.extend(validate_pod_spec(ps, "spec.jobTemplate.spec.template.spec"));
            }
            e
        }
        "Service" => validate_service(obj),
        "ConfigMap" | "Secret" => validate_data_keys(obj),
        _ => Vec::new(),
    }
}

/// Upstream's update rules for kinds with immutable fields.
pub fn validate_kind_update(kind: &str, new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let immutable = |errs: &mut Vec<FieldError>, ptr: &str, field: &str| {
        if new.pointer(ptr) != old.pointer(ptr) && old.pointer(ptr).is_some() {
            errs.push(FieldError::invalid(
                field,
                new.pointer(ptr).cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
    };
    match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            immutable(&mut errs, "/spec/selector", "spec.selector");
        }
        "Job" => {
            immutable(&mut errs, "/spec/selector", "spec.selector");
            immutable(&mut errs, "/spec/template", "spec.template");
        }
        "Service" => {
            let o = old
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("");
            let n = new
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("");
            let ty = new
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            if !o.is_empty() && o != n && ty != "ExternalName" {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    json!(n),
                    "may not change once set",
                ));
            }
        }
        "Pod" => {
            let mut o = old.get("spec").cloned().unwrap_or(Value::Null);
            let mut n = new.get("spec").cloned().unwrap_or(Value::Null);
            // Mutable in place: container images, activeDeadlineSeconds, tolerations
            // (additions), terminationGracePeriodSeconds.
            for s in [&mut o, &mut n] {
                for list in ["containers", "initContainers"] {
                    if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
                        for c in cs {
                            if let Some(m) = c.as_object_mut() {
                                m.remove("image");
                            }
                        }
                    }
                }
                if let Some(m) = s.as_object_mut() {
                    for f in [
                        "activeDeadlineSeconds",
                        "tolerations",
                        "terminationGracePeriodSeconds",
                        "schedulingGates",
                    ] {
                        m.remove(f);
                    }
                }
            }
            if o != n {
                errs.push(FieldError::forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ));
            }
        }
        "ConfigMap" | "Secret" => {
            if old.get("immutable") == Some(&Value::Bool(true)) {
                for f in ["data", "binaryData"] {
                    if new.get(f) != old.get(f) {
                        errs.push(FieldError::forbidden(
                            f,
                            "field is immutable when `immutable` is set",
                        ));
                    }
                }
            }
            if kind == "Secret" {
                immutable(&mut errs, "/type", "type");
            }
        }
        _ => {}
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1123_subdomain_errors("web-1.example").is_empty());
        assert!(!dns1123_subdomain_errors("Web").is_empty());
        assert!(!dns1123_label_errors("a.b").is_empty());
        assert!(!dns1035_label_errors("1abc").is_empty());
        assert!(qualified_name_errors("app.kubernetes.io/name").is_empty());
        assert!(!qualified_name_errors("-x").is_empty());
        assert!(label_value_errors("").is_empty());
        assert!(!label_value_errors("a b").is_empty());
    }

    #[test]
    fn pod_image_required() {
        let pod = json!({"spec": {"containers": [{"name": "c"}]}});
        let errs = validate_kind("Pod", &pod);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "spec.containers[0].image: Required value"
        );
    }

    #[test]
    fn deployment_selector_must_match() {
        let d = json!({"spec": {"selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let errs = validate_kind("Deployment", &d);
        assert_eq!(errs[0].field, "spec.template.metadata.labels");
    }
}
