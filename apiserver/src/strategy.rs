//! Per-kind rules for create and update, as upstream's registry strategies
//! (`pkg/registry/*/strategy.go`): what the server owns (uid, timestamps, generation,
//! status on the main resource), what a status write may change, and which kinds keep
//! a generation.

use serde_json::{Value, json};

use crate::meta;

/// Kinds whose `metadata.generation` counts spec changes.
pub fn tracks_generation(kind: &str) -> bool {
    matches!(
        kind,
        "Deployment"
            | "ReplicaSet"
            | "StatefulSet"
            | "DaemonSet"
            | "ReplicationController"
            | "Job"
            | "CronJob"
            | "HorizontalPodAutoscaler"
            | "PodDisruptionBudget"
            | "Ingress"
            | "NetworkPolicy"
            | "CustomResourceDefinition"
            | "Pod"
            | "FlowSchema"
            | "PriorityLevelConfiguration"
            | "ValidatingAdmissionPolicy"
            | "ValidatingAdmissionPolicyBinding"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
            | "ServiceCIDR"
    )
}

/// Kinds whose main resource ignores status (it has a status subresource).
pub fn has_status(res: &crate::catalog::Resource) -> bool {
    res.subresource("status").is_some()
}

/// The status a new object starts with.
fn initial_status(kind: &str, obj: &Value) -> Option<Value> {
    Some(match kind {
        "Pod" => {
            let qos = qos_class(obj.get("spec").unwrap_or(&Value::Null));
            json!({"phase": "Pending", "qosClass": qos})
        }
        "Service" => json!({"loadBalancer": {}}),
        "Namespace" => json!({"phase": "Active"}),
        "PersistentVolumeClaim" | "PersistentVolume" => json!({"phase": "Pending"}),
        "Node" => return None,
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "CronJob"
        | "ReplicationController"
        | "HorizontalPodAutoscaler"
        | "PodDisruptionBudget"
        | "Ingress" => {
            if kind == "ReplicaSet" || kind == "ReplicationController" || kind == "StatefulSet" {
                json!({"replicas": 0})
            } else if kind == "DaemonSet" {
                json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0})
            } else if kind == "PodDisruptionBudget" {
                json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0})
            } else if kind == "Ingress" {
                json!({"loadBalancer": {}})
            } else {
                json!({})
            }
        }
        _ => return None,
    })
}

/// Upstream's QoS class of a pod spec.
pub fn qos_class(spec: &Value) -> &'static str {
    let cs: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|l| spec.get(*l).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &cs {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        for r in ["cpu", "memory"] {
            let rq = req.and_then(|m| m.get(r));
            let lm = lim.and_then(|m| m.get(r));
            if rq.is_some() || lm.is_some() {
                any = true;
            }
            match lm {
                Some(l) if rq.is_none_or(|q| q == l) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Drops the `omitempty` metadata collections a write left empty (or null), as the
/// round trip through upstream's Go types does: a merge patch that removes the last
/// ownerReference stores no `ownerReferences`, not `[]`.
fn drop_empty_metadata(obj: &mut Value) {
    let m = meta::meta_mut(obj);
    for f in [
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    ] {
        let empty = match m.get(f) {
            Some(Value::Null) => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            _ => false,
        };
        if empty {
            m.remove(f);
        }
    }
}

/// Fills in what the server owns on a new object.
pub fn prepare_for_create(res: &crate::catalog::Resource, obj: &mut Value) {
    let kind = res.kind;
    drop_empty_metadata(obj);
    {
        let m = meta::meta_mut(obj);
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert("creationTimestamp".into(), json!(meta::now()));
        for f in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "selfLink",
        ] {
            m.remove(f);
        }
        if tracks_generation(kind) || res.custom.is_some() {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
    }
    if has_status(res) {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
        if let Some(s) = initial_status(kind, obj) {
            obj["status"] = s;
        }
    }
    if kind == "Job" {
        job_selector(obj);
    }
}

/// Jobs get a generated selector on their controller-uid label unless
/// `manualSelector` is set.
fn job_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector") == Some(&Value::Bool(true)) {
        return;
    }
    let uid = meta::field(obj, "uid").unwrap_or("").to_owned();
    let name = meta::name(obj).to_owned();
    if obj.pointer("/spec/selector").is_none_or(Value::is_null) {
        obj["spec"]["selector"] =
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    }
    let t = &mut obj["spec"]["template"];
    if !t.get("metadata").is_some_and(Value::is_object) {
        t["metadata"] = json!({});
    }
    if !t["metadata"].get("labels").is_some_and(Value::is_object) {
        t["metadata"]["labels"] = json!({});
    }
    let l = &mut t["metadata"]["labels"];
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", uid.as_str()),
        ("batch.kubernetes.io/job-name", name.as_str()),
        ("controller-uid", uid.as_str()),
        ("job-name", name.as_str()),
    ] {
        if l.get(k).is_none() {
            l[k] = json!(v);
        }
    }
}

fn without(obj: &Value, fields: &[&str]) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for f in fields {
            m.remove(*f);
        }
    }
    o
}

/// Carries the server-owned fields of `old` into an update of the main resource.
pub fn prepare_for_update(res: &crate::catalog::Resource, new: &mut Value, old: &Value) {
    let kind = res.kind;
    drop_empty_metadata(new);
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old.pointer(&format!("/metadata/{f}")) {
            Some(v) => {
                meta::meta_mut(new).insert(f.into(), v.clone());
            }
            None => {
                meta::meta_mut(new).remove(f);
            }
        }
    }
    if has_status(res) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    if tracks_generation(kind) || res.custom.is_some() {
        let spec_changed =
            without(new, &["metadata", "status"]) != without(old, &["metadata", "status"]);
        if spec_changed {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta::meta_mut(new).insert("generation".into(), json!(g + 1));
        }
    }
}

/// A status write: `old` with `new`'s status (and nothing else).
pub fn prepare_for_status_update(
    res: &crate::catalog::Resource,
    sub: &str,
    new: &Value,
    old: &Value,
) -> Value {
    if res.kind == "CertificateSigningRequest" {
        return csr_status_update(sub, new, old);
    }
    if res.kind == "Namespace" && sub == "finalize" {
        // Upstream's finalize strategy: only spec.finalizers changes.
        let mut out = old.clone();
        match new.pointer("/spec/finalizers") {
            Some(f) => out["spec"]["finalizers"] = f.clone(),
            None => {
                if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
            }
        }
        if let Some(rv) = meta::field(new, "resourceVersion") {
            meta::meta_mut(&mut out).insert("resourceVersion".into(), json!(rv));
        }
        return out;
    }
    let mut out = old.clone();
    match new.get("status") {
        Some(s) => out["status"] = s.clone(),
        None => {
            if let Some(m) = out.as_object_mut() {
                m.remove("status");
            }
        }
    }
    if let Some(rv) = meta::field(new, "resourceVersion") {
        meta::meta_mut(&mut out).insert("resourceVersion".into(), json!(rv));
    }
    // Upstream's deployment status strategy keeps the spec and labels only: the
    // deployment controller writes its revision annotation with the status.
    if res.kind == "Deployment" {
        match new.pointer("/metadata/annotations") {
            Some(a) => {
                meta::meta_mut(&mut out).insert("annotations".into(), a.clone());
            }
            None => {
                meta::meta_mut(&mut out).remove("annotations");
            }
        }
    }
    out
}

/// A CertificateSigningRequest's `approval` and `status` writes, as upstream's
/// strategies: the spec never changes; `approval` changes only the conditions
/// (the certificate is kept), and `status` keeps the Approved and Denied
/// conditions as they were. Conditions get their timestamps filled.
fn csr_status_update(sub: &str, new: &Value, old: &Value) -> Value {
    let mut out = old.clone();
    let conditions = |o: &Value| -> Vec<Value> {
        o.pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let approval = |c: &Value| {
        matches!(
            c.get("type").and_then(Value::as_str),
            Some("Approved" | "Denied")
        )
    };
    let mut conds = conditions(new);
    if sub == "approval" {
        if !out.get("status").is_some_and(Value::is_object) {
            out["status"] = json!({});
        }
    } else {
        out["status"] = new.get("status").cloned().unwrap_or(json!({}));
        conds.retain(|c| !approval(c));
        conds.extend(conditions(old).into_iter().filter(approval));
    }
    let now = meta::now();
    let old_conds = conditions(old);
    for c in &mut conds {
        let Some(m) = c.as_object_mut() else { continue };
        if m.get("lastUpdateTime").is_none_or(Value::is_null) {
            m.insert("lastUpdateTime".into(), json!(now));
        }
        if m.get("lastTransitionTime").is_none_or(Value::is_null) {
            let same = old_conds
                .iter()
                .find(|o| o.get("type") == m.get("type") && o.get("status") == m.get("status"));
            let t = same
                .and_then(|o| o.get("lastTransitionTime"))
                .filter(|t| !t.is_null())
                .cloned()
                .unwrap_or(json!(now));
            m.insert("lastTransitionTime".into(), t);
        }
    }
    if conds.is_empty() {
        if let Some(st) = out["status"].as_object_mut() {
            st.remove("conditions");
        }
    } else {
        out["status"]["conditions"] = Value::Array(conds);
    }
    if let Some(rv) = meta::field(new, "resourceVersion") {
        meta::meta_mut(&mut out).insert("resourceVersion".into(), json!(rv));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::catalog;

    #[test]
    fn csr_approval_changes_only_conditions_and_status_keeps_the_approval() {
        let res = catalog()
            .get("certificates.k8s.io", "v1", "certificatesigningrequests")
            .unwrap();
        let old = json!({"metadata": {"name": "c"}, "spec": {"signerName": "a/b"}});
        let mut approve = old.clone();
        approve["spec"]["signerName"] = json!("forged/x");
        approve["status"] =
            json!({"certificate": "Zm9v", "conditions": [{"type": "Approved", "status": "True"}]});
        let approved = prepare_for_status_update(res, "approval", &approve, &old);
        assert_eq!(approved["spec"]["signerName"], "a/b");
        assert!(approved["status"].get("certificate").is_none());
        assert_eq!(approved["status"]["conditions"][0]["type"], "Approved");
        assert!(approved["status"]["conditions"][0]["lastUpdateTime"].is_string());
        let mut issue = approved.clone();
        issue["status"]["certificate"] = json!("Y2VydA==");
        issue["status"]["conditions"] = json!([]);
        let issued = prepare_for_status_update(res, "status", &issue, &approved);
        assert_eq!(issued["status"]["certificate"], "Y2VydA==");
        assert_eq!(issued["status"]["conditions"][0]["type"], "Approved");
    }

    #[test]
    fn generation_counts_spec_changes_only() {
        let res = catalog().get("apps", "v1", "deployments").unwrap();
        let mut old = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}});
        prepare_for_create(res, &mut old);
        assert_eq!(old["metadata"]["generation"], 1);
        let mut labelled = old.clone();
        labelled["metadata"]["labels"] = json!({"a": "b"});
        prepare_for_update(res, &mut labelled, &old);
        assert_eq!(labelled["metadata"]["generation"], 1);
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(3);
        scaled["status"] = json!({"replicas": 99});
        prepare_for_update(res, &mut scaled, &old);
        assert_eq!(scaled["metadata"]["generation"], 2);
        assert_eq!(scaled["status"], old["status"]);
    }

    #[test]
    fn empty_metadata_collections_are_not_stored() {
        let res = catalog().get("", "v1", "configmaps").unwrap();
        let mut o = json!({"metadata": {"name": "c", "labels": {}, "finalizers": [], "ownerReferences": null}});
        prepare_for_create(res, &mut o);
        let old = o.clone();
        let m = o["metadata"].as_object().unwrap();
        for f in ["labels", "finalizers", "ownerReferences"] {
            assert!(!m.contains_key(f), "{f}: {o}");
        }
        let mut n = old.clone();
        n["metadata"]["ownerReferences"] = json!([]);
        n["metadata"]["annotations"] = json!({"a": "b"});
        prepare_for_update(res, &mut n, &old);
        assert!(n["metadata"].get("ownerReferences").is_none(), "{n}");
        assert_eq!(n["metadata"]["annotations"], json!({"a": "b"}));
    }

    #[test]
    fn qos() {
        assert_eq!(qos_class(&json!({"containers": [{}]})), "BestEffort");
        assert_eq!(
            qos_class(
                &json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]})
            ),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]})),
            "Burstable"
        );
    }
}
