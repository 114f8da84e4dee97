//! Defaulting as upstream's `pkg/apis/*/v1/defaults.go` does it, applied to every
//! object decoded from a request, before validation.

use serde_json::{Map, Value, json};

fn obj(v: &mut Value) -> Option<&mut Map<String, Value>> {
    v.as_object_mut()
}

/// Sets `key` to `value` when it is absent or null.
fn set(m: &mut Map<String, Value>, key: &str, value: Value) {
    match m.get(key) {
        None | Some(Value::Null) => {
            m.insert(key.to_owned(), value);
        }
        _ => {}
    }
}

/// The object at `key`, created empty when absent.
fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    if !m.get(key).is_some_and(Value::is_object) {
        m.insert(key.to_owned(), json!({}));
    }
    m.get_mut(key)
        .and_then(Value::as_object_mut)
        .expect("just set")
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent`.
pub fn pull_policy(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container(c: &mut Value) {
    let Some(m) = obj(c) else { return };
    if let Some(image) = m.get("image").and_then(Value::as_str).map(pull_policy) {
        set(m, "imagePullPolicy", json!(image));
    }
    set(m, "terminationMessagePath", json!("/dev/termination-log"));
    set(m, "terminationMessagePolicy", json!("File"));
    set(m, "resources", json!({}));
    if let Some(ports) = m.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(p) = obj(p) {
                set(p, "protocol", json!("TCP"));
            }
        }
    }
    if let Some(env) = m.get_mut("env").and_then(Value::as_array_mut) {
        for e in env {
            if let Some(fr) = e
                .pointer_mut("/valueFrom/fieldRef")
                .and_then(Value::as_object_mut)
            {
                set(fr, "apiVersion", json!("v1"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(probe).and_then(Value::as_object_mut) {
            set(p, "timeoutSeconds", json!(1));
            set(p, "periodSeconds", json!(10));
            set(p, "successThreshold", json!(1));
            set(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                set(h, "path", json!("/"));
                set(h, "scheme", json!("HTTP"));
            }
        }
    }
}

/// Upstream's `SetDefaults_Pod`: a container's unset requests default to its limits
/// (pods only, not templates).
fn requests_from_limits(spec: &mut Value) {
    for list in ["containers", "initContainers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(limits) = c
                .pointer("/resources/limits")
                .and_then(Value::as_object)
                .cloned()
            else {
                continue;
            };
            let Some(res) = c.get_mut("resources").and_then(Value::as_object_mut) else {
                continue;
            };
            let requests = child(res, "requests");
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
}

/// Upstream's `SetDefaults_LimitRangeItem`: for a Container item, the default limit
/// is the max, the default request the default limit, else the min.
fn limit_range_item(item: &mut Value) {
    let Some(m) = obj(item) else { return };
    if m.get("type").and_then(Value::as_str) != Some("Container") {
        return;
    }
    let list = |m: &Map<String, Value>, k: &str| {
        m.get(k)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (max, min) = (list(m, "max"), list(m, "min"));
    let mut default = list(m, "default");
    for (k, v) in max {
        default.entry(k).or_insert(v);
    }
    let mut default_request = list(m, "defaultRequest");
    for (k, v) in default.iter().chain(min.iter()) {
        default_request.entry(k.clone()).or_insert(v.clone());
    }
    if !default.is_empty() {
        m.insert("default".into(), Value::Object(default));
    }
    if !default_request.is_empty() {
        m.insert("defaultRequest".into(), Value::Object(default_request));
    }
}

/// Upstream's `SetDefaults_PodSpec` and the container and volume defaults under it.
pub fn pod_spec(spec: &mut Value) {
    let Some(m) = obj(spec) else { return };
    set(m, "dnsPolicy", json!("ClusterFirst"));
    set(m, "restartPolicy", json!("Always"));
    set(m, "terminationGracePeriodSeconds", json!(30));
    set(m, "securityContext", json!({}));
    set(m, "schedulerName", json!("default-scheduler"));
    set(m, "enableServiceLinks", json!(true));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(container);
        }
    }
    if let Some(vols) = m.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols {
            let Some(v) = obj(v) else { continue };
            let has_source = v.keys().any(|k| k != "name");
            if !has_source {
                v.insert("emptyDir".into(), json!({}));
            }
            for src in ["secret", "configMap", "downwardAPI", "projected"] {
                if let Some(s) = v.get_mut(src).and_then(Value::as_object_mut) {
                    set(s, "defaultMode", json!(420));
                }
            }
            if let Some(h) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
                set(h, "type", json!(""));
            }
        }
    }
}

fn template(m: &mut Map<String, Value>) {
    if let Some(spec) = m.get_mut("template").and_then(|t| t.get_mut("spec")) {
        pod_spec(spec);
    }
}

/// Applies the defaults of `kind` (at its storage version) to `obj`.
pub fn apply(kind: &str, o: &mut Value) {
    let Some(root) = obj(o) else { return };
    match kind {
        "Pod" => {
            let spec = child(root, "spec");
            let mut s = Value::Object(std::mem::take(spec));
            pod_spec(&mut s);
            requests_from_limits(&mut s);
            *spec = s.as_object().cloned().unwrap_or_default();
        }
        "LimitRange" => {
            for item in root
                .get_mut("spec")
                .and_then(|s| s.get_mut("limits"))
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                limit_range_item(item);
            }
        }
        "PodTemplate" => {
            if let Some(spec) = root.get_mut("template").and_then(|t| t.get_mut("spec")) {
                pod_spec(spec);
            }
        }
        "Deployment" => {
            let spec = child(root, "spec");
            set(spec, "replicas", json!(1));
            // `strategy: {}` (what typed clients send) defaults like a missing one.
            let s = child(spec, "strategy");
            set(s, "type", json!("RollingUpdate"));
            if s.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                let ru = child(s, "rollingUpdate");
                set(ru, "maxUnavailable", json!("25%"));
                set(ru, "maxSurge", json!("25%"));
            }
            set(spec, "revisionHistoryLimit", json!(10));
            set(spec, "progressDeadlineSeconds", json!(600));
            template(spec);
        }
        "ReplicaSet" => {
            let spec = child(root, "spec");
            set(spec, "replicas", json!(1));
            template(spec);
        }
        "ReplicationController" => {
            let labels = root
                .get("spec")
                .and_then(|s| s.pointer("/template/metadata/labels"))
                .cloned();
            let spec = child(root, "spec");
            set(spec, "replicas", json!(1));
            if let Some(l) = &labels {
                set(spec, "selector", l.clone());
            }
            template(spec);
            if let Some(l) = labels {
                set(child(root, "metadata"), "labels", l);
            }
        }
        "StatefulSet" => {
            let spec = child(root, "spec");
            set(spec, "replicas", json!(1));
            set(spec, "podManagementPolicy", json!("OrderedReady"));
            let s = child(spec, "updateStrategy");
            set(s, "type", json!("RollingUpdate"));
            if s.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                set(child(s, "rollingUpdate"), "partition", json!(0));
            }
            set(spec, "revisionHistoryLimit", json!(10));
            set(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            template(spec);
        }
        "DaemonSet" => {
            let spec = child(root, "spec");
            let s = child(spec, "updateStrategy");
            set(s, "type", json!("RollingUpdate"));
            if s.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                let ru = child(s, "rollingUpdate");
                set(ru, "maxUnavailable", json!(1));
                set(ru, "maxSurge", json!(0));
            }
            set(spec, "revisionHistoryLimit", json!(10));
            template(spec);
        }
        "Job" => {
            let spec = child(root, "spec");
            if spec.get("completions").is_none_or(Value::is_null)
                && spec.get("parallelism").is_none_or(Value::is_null)
            {
                spec.insert("completions".into(), json!(1));
            }
            set(spec, "parallelism", json!(1));
            set(spec, "backoffLimit", json!(6));
            set(spec, "completionMode", json!("NonIndexed"));
            set(spec, "suspend", json!(false));
            set(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
            template(spec);
        }
        // At the storage version, autoscaling/v2 (v1 objects are converted first).
        "HorizontalPodAutoscaler" => {
            let spec = child(root, "spec");
            set(spec, "minReplicas", json!(1));
            if spec
                .get("metrics")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                spec.insert(
                    "metrics".into(),
                    json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
                );
            }
        }
        "CronJob" => {
            let spec = child(root, "spec");
            set(spec, "concurrencyPolicy", json!("Allow"));
            set(spec, "suspend", json!(false));
            set(spec, "successfulJobsHistoryLimit", json!(3));
            set(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(js) = spec
                .get_mut("jobTemplate")
                .and_then(|j| j.get_mut("spec"))
                .and_then(Value::as_object_mut)
            {
                template(js);
            }
        }
        "Service" => {
            let spec = child(root, "spec");
            set(spec, "type", json!("ClusterIP"));
            set(spec, "sessionAffinity", json!("None"));
            let ty = spec
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if ty != "ExternalName" {
                set(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            if ty == "NodePort" || ty == "LoadBalancer" {
                set(spec, "externalTrafficPolicy", json!("Cluster"));
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    let Some(p) = obj(p) else { continue };
                    set(p, "protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        set(p, "targetPort", port);
                    }
                }
            }
        }
        "Namespace" => {
            let name = root
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(name) = name {
                let labels = child(child(root, "metadata"), "labels");
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            let spec = child(root, "spec");
            set(spec, "finalizers", json!(["kubernetes"]));
            let status = child(root, "status");
            set(status, "phase", json!("Active"));
        }
        "Secret" => set(root, "type", json!("Opaque")),
        "PersistentVolumeClaim" => {
            set(child(root, "spec"), "volumeMode", json!("Filesystem"));
            set(child(root, "status"), "phase", json!("Pending"));
        }
        "PersistentVolume" => {
            let spec = child(root, "spec");
            set(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            set(spec, "volumeMode", json!("Filesystem"));
            set(child(root, "status"), "phase", json!("Pending"));
        }
        "Endpoints" => {
            if let Some(subsets) = root.get_mut("subsets").and_then(Value::as_array_mut) {
                for s in subsets {
                    if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
                        for p in ports {
                            if let Some(p) = obj(p) {
                                set(p, "protocol", json!("TCP"));
                            }
                        }
                    }
                }
            }
        }
        "StorageClass" => {
            set(root, "reclaimPolicy", json!("Delete"));
            set(root, "volumeBindingMode", json!("Immediate"));
        }
        "PriorityClass" => set(root, "preemptionPolicy", json!("PreemptLowerPriority")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_by_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn pod_defaults() {
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": "busybox:1.36", "ports": [{"containerPort": 80}]}]}});
        apply("Pod", &mut p);
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert_eq!(p["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(p["spec"]["schedulerName"], "default-scheduler");
        assert_eq!(
            p["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(p["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn deployment_defaults() {
        let mut d =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        apply("Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }
}
