//! What objects charge against a ResourceQuota, as upstream's `pkg/quota/v1` and its
//! core evaluators. The apiserver's ResourceQuota admission plugin charges a new
//! object's usage before it is stored; the controller manager's resourcequota
//! controller recomputes `status.used` from what exists. Both call [`usage`], so the
//! two can never disagree on what an object costs.
//!
//! Objects are JSON (`serde_json::Value`), as both sides hold them. Quantities are
//! [`Amount`]s: exact nano-units that print in the format of the quantity they came
//! from (`1Gi` stays binary, `100M` decimal), as upstream's `resource.Quantity`.
//!
//! Evaluators, by resource:
//! - pods: `pods` and compute (`cpu`, `memory`, `ephemeral-storage`, their
//!   `requests.*` and `limits.*`, hugepages, `requests.<extended>`) while the pod is
//!   not terminal, and `count/pods` always. Requests and limits are the pod's
//!   effective ones: containers summed, init containers' peak, sidecars, overhead.
//!   Only pods are subject to quota scopes (`Terminating`, `NotTerminating`,
//!   `BestEffort`, `NotBestEffort`, `PriorityClass`, `CrossNamespacePodAffinity`).
//! - services: `services`, `services.loadbalancers`, `services.nodeports`.
//! - persistentvolumeclaims: `persistentvolumeclaims`, `requests.storage`, and the
//!   same per storage class (`<class>.storageclass.storage.k8s.io/...`).
//! - everything: `count/<resource>[.<group>]`, and the legacy bare names for
//!   configmaps, secrets, replicationcontrollers and resourcequotas.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::quantity;

/// A quantity: exact nano-units, and whether it prints with binary suffixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Amount {
    /// The value in nano-units.
    pub nano: i128,
    /// `BinarySI` (`Ki`, `Mi`, ...) rather than `DecimalSI`.
    pub binary: bool,
}

impl Amount {
    /// A whole count.
    pub fn count(n: i64) -> Amount {
        Amount {
            nano: i128::from(n) * 1_000_000_000,
            binary: false,
        }
    }
    /// Parses a quantity string.
    pub fn parse(s: &str) -> Option<Amount> {
        Some(Amount {
            nano: quantity::parse(s)?,
            binary: quantity::is_binary(s),
        })
    }
    /// Parses a JSON quantity (a string or a number).
    pub fn from_json(v: &Value) -> Option<Amount> {
        match v {
            Value::String(s) => Amount::parse(s),
            Value::Number(n) => Amount::parse(&n.to_string()),
            _ => None,
        }
    }
    fn plus(self, other: Amount) -> Amount {
        Amount {
            nano: self.nano + other.nano,
            binary: self.binary,
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.binary {
            f.write_str(&quantity::format(self.nano))
        } else {
            f.write_str(&quantity::format_decimal(self.nano))
        }
    }
}

/// Resource names to amounts, sorted by name.
pub type ResourceList = BTreeMap<String, Amount>;

/// Parses a JSON resource list (`{"cpu": "1", ...}`); unparsable values are skipped
/// (validation refuses them before they are stored).
pub fn parse_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), Amount::from_json(q)?)))
        .collect()
}

/// A resource list as JSON, each quantity printed canonically.
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, a)| (k.clone(), Value::String(a.to_string())))
            .collect(),
    )
}

/// `a + b`, key by key; `a`'s format wins.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        let sum = match out.get(k) {
            Some(have) => have.plus(*v),
            None => *v,
        };
        out.insert(k.clone(), sum);
    }
    out
}

/// `a - b`, key by key, never below zero (upstream's `SubtractWithNonNegativeResult`).
pub fn subtract_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        let have = out.get(k).copied().unwrap_or(Amount {
            nano: 0,
            binary: v.binary,
        });
        out.insert(
            k.clone(),
            Amount {
                nano: (have.nano - v.nano).max(0),
                binary: have.binary,
            },
        );
    }
    out
}

/// The entries of `list` named in `names`.
pub fn mask<'a>(list: &ResourceList, names: impl IntoIterator<Item = &'a String>) -> ResourceList {
    names
        .into_iter()
        .filter_map(|n| Some((n.clone(), *list.get(n)?)))
        .collect()
}

/// Whether every entry of `a` that `b` also names is within it; else the names that
/// exceed.
pub fn less_than_or_equal(a: &ResourceList, b: &ResourceList) -> Result<(), Vec<String>> {
    let exceeded: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k).is_some_and(|limit| v.nano > limit.nano))
        .map(|(k, _)| k.clone())
        .collect();
    if exceeded.is_empty() {
        Ok(())
    } else {
        Err(exceeded)
    }
}

/// Whether every amount is zero.
pub fn is_zero(list: &ResourceList) -> bool {
    list.values().all(|a| a.nano == 0)
}

/// Upstream's `prettyPrint`: `name=quantity` pairs in name order, comma-separated.
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";
const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];
/// The resources a pod's containers must each state when a quota limits them.
const POD_VALIDATION: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];
const SERVICE_RESOURCES: &[&str] = &[
    "count/services",
    "services",
    "services.loadbalancers",
    "services.nodeports",
];
const PVC_RESOURCES: &[&str] = &[
    "count/persistentvolumeclaims",
    "persistentvolumeclaims",
    "requests.storage",
];
/// Resources with a bare object-count name besides `count/...`.
const LEGACY_COUNTS: &[&str] = &[
    "configmaps",
    "secrets",
    "replicationcontrollers",
    "resourcequotas",
];

/// `count/<resource>[.<group>]`.
pub fn count_name(group: &str, resource: &str) -> String {
    if group.is_empty() {
        format!("count/{resource}")
    } else {
        format!("count/{resource}.{group}")
    }
}

/// An extended resource (`example.com/gpu`): a domain-prefixed name outside
/// `kubernetes.io/`.
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// The names among `hard` that objects of `group`/`resource` are charged for.
pub fn matching_resources(group: &str, resource: &str, hard: &[String]) -> Vec<String> {
    let count = count_name(group, resource);
    hard.iter()
        .filter(|n| {
            if **n == count {
                return true;
            }
            match (group, resource) {
                ("", "pods") => {
                    POD_RESOURCES.contains(&n.as_str())
                        || n.starts_with("hugepages-")
                        || n.starts_with("requests.hugepages-")
                        || n.strip_prefix("requests.").is_some_and(is_extended)
                }
                ("", "services") => SERVICE_RESOURCES.contains(&n.as_str()),
                ("", "persistentvolumeclaims") => {
                    PVC_RESOURCES.contains(&n.as_str())
                        || n.contains(STORAGE_CLASS_SUFFIX)
                            && (n.ends_with("/persistentvolumeclaims")
                                || n.ends_with("/requests.storage"))
                }
                ("", r) => LEGACY_COUNTS.contains(&r) && n.as_str() == r,
                _ => false,
            }
        })
        .cloned()
        .collect()
}

fn list_at(v: &Value, path: &str) -> ResourceList {
    parse_list(v.pointer(path))
}

fn max_of(a: &mut ResourceList, b: &ResourceList) {
    for (k, v) in b {
        match a.get(k) {
            Some(have) if have.nano >= v.nano => {}
            _ => {
                a.insert(k.clone(), *v);
            }
        }
    }
}

/// The pod's effective requests or limits (`field` = "requests" | "limits"), as
/// upstream's `PodRequests`/`PodLimits`: containers summed, then the larger of that
/// and the init containers' peak (sidecars, restartable init containers, run
/// alongside and add up), plus, with `overhead`, the pod overhead (for limits, only
/// on resources the pod limits at all).
pub fn pod_resources(pod: &Value, field: &str, overhead: bool) -> ResourceList {
    let containers = |list: &str| -> Vec<Value> {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut sum = ResourceList::new();
    for c in containers("containers") {
        sum = add(&sum, &list_at(&c, &format!("/resources/{field}")));
    }
    let mut sidecars = ResourceList::new();
    let mut init_peak = ResourceList::new();
    for c in containers("initContainers") {
        let own = list_at(&c, &format!("/resources/{field}"));
        let restartable = c.get("restartPolicy").and_then(Value::as_str) == Some("Always");
        let at_start = if restartable {
            sum = add(&sum, &own);
            sidecars = add(&sidecars, &own);
            sidecars.clone()
        } else {
            add(&own, &sidecars)
        };
        max_of(&mut init_peak, &at_start);
    }
    max_of(&mut sum, &init_peak);
    if !overhead {
        return sum;
    }
    let mut extra = list_at(pod, "/spec/overhead");
    if field == "limits" {
        extra.retain(|k, _| sum.contains_key(k));
    }
    add(&sum, &extra)
}

/// Upstream's `podComputeUsageHelper`: the compute names a set of requests and limits
/// charge.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("pods".into(), Amount::count(1));
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(r) {
            out.insert(r.into(), *q);
            out.insert(format!("requests.{r}"), *q);
        }
        if let Some(q) = limits.get(r) {
            out.insert(format!("limits.{r}"), *q);
        }
    }
    for (r, q) in requests {
        if r.starts_with("hugepages-") {
            out.insert(r.clone(), *q);
            out.insert(format!("requests.{r}"), *q);
        }
        if is_extended(r) {
            out.insert(format!("requests.{r}"), *q);
        }
    }
    out
}

/// Whether a pod still counts against compute quota, as upstream's `QuotaV1Pod`:
/// not Succeeded or Failed, and not past its deletion grace period at `now` (Unix
/// seconds), so that pods stuck terminating on a lost node stop charging.
pub fn pod_is_active(pod: &Value, now: i64) -> bool {
    if matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    let deleted = pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(crate::time::parse_rfc3339);
    let grace = pod
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    !matches!((deleted, grace), (Some(at), Some(g)) if now > at + g)
}

/// What one object of `group`/`resource` charges at `now` (Unix seconds).
pub fn usage(group: &str, resource: &str, obj: &Value, now: i64) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert(count_name(group, resource), Amount::count(1));
    if !group.is_empty() {
        return out;
    }
    match resource {
        "pods" if pod_is_active(obj, now) => {
            let requests = pod_resources(obj, "requests", true);
            let limits = pod_resources(obj, "limits", true);
            out = add(&out, &compute_usage(&requests, &limits));
        }
        "pods" => {}
        "services" => {
            out.insert("services".into(), Amount::count(1));
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            match obj.pointer("/spec/type").and_then(Value::as_str) {
                Some("NodePort") => {
                    out.insert(
                        "services.nodeports".into(),
                        Amount::count(ports.len() as i64),
                    );
                }
                Some("LoadBalancer") => {
                    out.insert("services.loadbalancers".into(), Amount::count(1));
                    let node_ports = if obj.pointer("/spec/allocateLoadBalancerNodePorts")
                        == Some(&Value::Bool(false))
                    {
                        ports
                            .iter()
                            .filter(|p| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) > 0)
                            .count()
                    } else {
                        ports.len()
                    };
                    out.insert(
                        "services.nodeports".into(),
                        Amount::count(node_ports as i64),
                    );
                }
                _ => {}
            }
        }
        "persistentvolumeclaims" => {
            out.insert("persistentvolumeclaims".into(), Amount::count(1));
            // Whole bytes, rounded up; a larger allocation (a resize in progress)
            // counts when there is a request at all.
            let round_up = |a: Amount| Amount {
                nano: (a.nano + 999_999_999).div_euclid(1_000_000_000) * 1_000_000_000,
                binary: a.binary,
            };
            let requested = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(Amount::from_json);
            let allocated = obj
                .pointer("/status/allocatedResources/storage")
                .and_then(Amount::from_json);
            let storage = requested.map(|r| match allocated {
                Some(a) if a.nano > r.nano => round_up(a),
                _ => round_up(r),
            });
            // Upstream's `GetPersistentVolumeClaimClass`: the beta annotation first.
            let class = obj
                .pointer("/metadata/annotations")
                .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
                .or_else(|| obj.pointer("/spec/storageClassName"))
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty());
            if let Some(class) = class {
                out.insert(
                    format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
                    Amount::count(1),
                );
            }
            if let Some(q) = storage {
                out.insert("requests.storage".into(), q);
                if let Some(class) = class {
                    out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), q);
                }
            }
        }
        r if LEGACY_COUNTS.contains(&r) => {
            out.insert(r.into(), Amount::count(1));
        }
        _ => {}
    }
    out
}

/// Upstream's pod `Constraints`: when a quota limits cpu or memory, every container
/// must state it. The error is upstream's `must specify <name> for: <containers>; ...`.
pub fn constraints(
    group: &str,
    resource: &str,
    required: &[String],
    obj: &Value,
) -> Result<(), String> {
    if !(group.is_empty() && resource == "pods") {
        return Ok(());
    }
    let required: BTreeSet<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|r| POD_VALIDATION.contains(r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for list in ["containers", "initContainers"] {
        for c in obj
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let has = compute_usage(
                &list_at(c, "/resources/requests"),
                &list_at(c, "/resources/limits"),
            );
            for r in &required {
                if !has.contains_key(*r) {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                    missing.entry(r).or_default().insert(name.to_owned());
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// A pod's QoS class is BestEffort: `status.qosClass` when set, else no container
/// requests or limits a non-zero amount of cpu or memory.
fn best_effort(pod: &Value) -> bool {
    if let Some(class) = pod.pointer("/status/qosClass").and_then(Value::as_str) {
        return class == "BestEffort";
    }
    ["containers", "initContainers"].iter().all(|list| {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .all(|c| {
                ["requests", "limits"].iter().all(|f| {
                    let l = list_at(c, &format!("/resources/{f}"));
                    ["cpu", "memory"]
                        .iter()
                        .all(|r| l.get(*r).is_none_or(|q| q.nano == 0))
                })
            })
    })
}

/// The pod uses pod (anti-)affinity terms across namespaces.
fn cross_namespace_affinity(pod: &Value) -> bool {
    let mut terms = Vec::new();
    for kind in ["podAffinity", "podAntiAffinity"] {
        let base = format!("/spec/affinity/{kind}");
        for t in pod
            .pointer(&format!(
                "{base}/requiredDuringSchedulingIgnoredDuringExecution"
            ))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            terms.push(t.clone());
        }
        for t in pod
            .pointer(&format!(
                "{base}/preferredDuringSchedulingIgnoredDuringExecution"
            ))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            terms.extend(t.get("podAffinityTerm").cloned());
        }
    }
    terms.iter().any(|t| {
        t.get("namespaceSelector").is_some_and(|s| !s.is_null())
            || t.get("namespaces")
                .and_then(Value::as_array)
                .is_some_and(|n| !n.is_empty())
    })
}

/// The pod has an active deadline: upstream's `Terminating` scope.
fn terminating(pod: &Value) -> bool {
    pod.pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s >= 0)
}

/// One scope selector requirement (`scopeName`, `operator`, `values`).
fn scope_matches(
    pod: &Value,
    scope: &str,
    operator: &str,
    values: &[String],
) -> Result<bool, String> {
    let flag = |b: bool| match operator {
        "Exists" => Ok(b),
        "DoesNotExist" => Ok(!b),
        other => Err(format!("operator {other} not supported for scope {scope}")),
    };
    match scope {
        "Terminating" => flag(terminating(pod)),
        "NotTerminating" => flag(!terminating(pod)),
        "BestEffort" => flag(best_effort(pod)),
        "NotBestEffort" => flag(!best_effort(pod)),
        "CrossNamespacePodAffinity" => flag(cross_namespace_affinity(pod)),
        "PriorityClass" => {
            let class = pod
                .pointer("/spec/priorityClassName")
                .and_then(Value::as_str)
                .unwrap_or("");
            match operator {
                "In" => Ok(values.iter().any(|v| v == class)),
                "NotIn" => Ok(!values.iter().any(|v| v == class)),
                "Exists" => Ok(!class.is_empty()),
                "DoesNotExist" => Ok(class.is_empty()),
                other => Err(format!("operator {other} not supported for scope {scope}")),
            }
        }
        other => Err(format!("unsupported scope {other}")),
    }
}

/// Whether a quota (its `spec`) applies to an object: a quota with scopes applies
/// to pods only, and only to those every scope selects.
pub fn matches(spec: &Value, group: &str, resource: &str, obj: &Value) -> Result<bool, String> {
    let mut selectors: Vec<(String, String, Vec<String>)> = spec
        .get("scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_owned(), "Exists".to_owned(), Vec::new()))
        .collect();
    for e in spec
        .pointer("/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        selectors.push((s("scopeName"), s("operator"), values));
    }
    if selectors.is_empty() {
        return Ok(true);
    }
    if !(group.is_empty() && resource == "pods") {
        return Ok(false);
    }
    for (scope, op, values) in &selectors {
        if !scope_matches(obj, scope, op, values)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The object kinds whose usage a quota's hard names need counted: (group,
/// resource) pairs, for the controller to list. `count/<resource>.<group>` names
/// any kind; the rest are core.
pub fn kinds_for(hard: &[String]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for n in hard {
        if let Some(gr) = n.strip_prefix("count/") {
            let (resource, group) = gr.split_once('.').unwrap_or((gr, ""));
            out.insert((group.to_owned(), resource.to_owned()));
            continue;
        }
        for core in ["pods", "services", "persistentvolumeclaims"]
            .iter()
            .chain(LEGACY_COUNTS)
        {
            if !matching_resources("", core, std::slice::from_ref(n)).is_empty() {
                out.insert((String::new(), (*core).to_owned()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Amount::parse(v).unwrap()))
            .collect()
    }

    fn pod(containers: Value) -> Value {
        json!({"spec": {"containers": containers}})
    }

    #[test]
    fn a_pod_charges_its_effective_requests_and_limits() {
        let p = json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "300m", "memory": "64Mi"}}},
            ],
            "initContainers": [
                {"name": "i", "resources": {"requests": {"cpu": "1", "memory": "1Mi"}}},
            ],
            "overhead": {"cpu": "10m"},
        }});
        let u = usage("", "pods", &p, NOW);
        assert_eq!(u["pods"].to_string(), "1");
        assert_eq!(u["count/pods"].to_string(), "1");
        // max(400m, 1) + 10m overhead.
        assert_eq!(u["requests.cpu"].to_string(), "1010m");
        assert_eq!(u["cpu"], u["requests.cpu"]);
        assert_eq!(u["requests.memory"].to_string(), "128Mi");
        assert_eq!(u["limits.cpu"].to_string(), "210m");
        assert!(!u.contains_key("limits.memory"));
    }

    #[test]
    fn sidecars_add_up_with_the_containers() {
        let p = json!({"spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                {"name": "i", "resources": {"requests": {"cpu": "1"}}},
            ],
        }});
        // Containers and the sidecar: 1.5; the init container runs beside the sidecar: 1.5.
        assert_eq!(
            pod_resources(&p, "requests", true)["cpu"].to_string(),
            "1500m"
        );
    }

    #[test]
    fn pods_past_their_deletion_grace_stop_charging() {
        let mut p = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]));
        p["metadata"] =
            json!({"deletionTimestamp": "2027-01-15T08:00:00Z", "deletionGracePeriodSeconds": 30});
        let at = crate::time::parse_rfc3339("2027-01-15T08:00:00Z").unwrap();
        assert!(pod_is_active(&p, at + 30));
        assert!(!pod_is_active(&p, at + 31));
        assert!(!usage("", "pods", &p, at + 31).contains_key("pods"));
    }

    #[test]
    fn terminal_pods_only_count_as_objects() {
        let mut p = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]));
        p["status"] = json!({"phase": "Succeeded"});
        let u = usage("", "pods", &p, NOW);
        assert_eq!(u.keys().collect::<Vec<_>>(), ["count/pods"]);
    }

    #[test]
    fn services_claims_and_counts() {
        let svc = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}});
        let u = usage("", "services", &svc, NOW);
        assert_eq!(
            pretty(&u),
            "count/services=1,services=1,services.loadbalancers=1,services.nodeports=2"
        );
        let pvc = json!({"spec": {"storageClassName": "gold", "resources": {"requests": {"storage": "1Gi"}}}});
        let u = usage("", "persistentvolumeclaims", &pvc, NOW);
        assert_eq!(u["requests.storage"].to_string(), "1Gi");
        assert_eq!(
            u["gold.storageclass.storage.k8s.io/requests.storage"].to_string(),
            "1Gi"
        );
        assert_eq!(
            u["gold.storageclass.storage.k8s.io/persistentvolumeclaims"].to_string(),
            "1"
        );
        assert_eq!(
            pretty(&usage("", "configmaps", &json!({}), NOW)),
            "configmaps=1,count/configmaps=1"
        );
        assert_eq!(
            pretty(&usage("apps", "deployments", &json!({}), NOW)),
            "count/deployments.apps=1"
        );
    }

    #[test]
    fn matching_resources_by_kind() {
        let hard: Vec<String> = [
            "pods",
            "requests.cpu",
            "services",
            "count/deployments.apps",
            "secrets",
            "requests.storage",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(
            matching_resources("", "pods", &hard),
            ["pods", "requests.cpu"]
        );
        assert_eq!(matching_resources("", "services", &hard), ["services"]);
        assert_eq!(
            matching_resources("apps", "deployments", &hard),
            ["count/deployments.apps"]
        );
        assert_eq!(matching_resources("", "secrets", &hard), ["secrets"]);
        assert_eq!(
            matching_resources("", "persistentvolumeclaims", &hard),
            ["requests.storage"]
        );
        assert!(matching_resources("", "configmaps", &hard).is_empty());
        let kinds = kinds_for(&hard);
        assert!(kinds.contains(&("apps".to_owned(), "deployments".to_owned())));
        assert!(kinds.contains(&(String::new(), "pods".to_owned())));
        assert!(kinds.contains(&(String::new(), "persistentvolumeclaims".to_owned())));
    }

    #[test]
    fn arithmetic_keeps_the_first_format() {
        let a = list(&[("memory", "1Gi"), ("cpu", "1")]);
        let b = list(&[("memory", "512Mi"), ("cpu", "500m"), ("pods", "1")]);
        assert_eq!(pretty(&add(&a, &b)), "cpu=1500m,memory=1536Mi,pods=1");
        assert_eq!(
            pretty(&subtract_non_negative(&b, &a)),
            "cpu=0,memory=0,pods=1"
        );
        let hard = list(&[("cpu", "1"), ("memory", "2Gi")]);
        assert_eq!(
            less_than_or_equal(&add(&a, &b), &hard),
            Err(vec!["cpu".to_owned()])
        );
        assert!(less_than_or_equal(&a, &hard).is_ok());
        let names = vec!["cpu".to_owned()];
        assert_eq!(pretty(&mask(&b, &names)), "cpu=500m");
        assert_eq!(to_json(&list(&[("pods", "1000")])), json!({"pods": "1k"}));
    }

    #[test]
    fn containers_must_state_what_a_quota_limits() {
        let p = pod(json!([
            {"name": "a", "resources": {"requests": {"cpu": "1"}}},
            {"name": "b"},
        ]));
        let req = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            constraints(
                "",
                "pods",
                &req(&["requests.cpu", "limits.memory", "pods"]),
                &p
            )
            .unwrap_err(),
            "must specify limits.memory for: a,b; requests.cpu for: b"
        );
        assert!(constraints("", "pods", &req(&["pods", "requests.storage"]), &p).is_ok());
        assert!(constraints("", "services", &req(&["cpu"]), &p).is_ok());
    }

    #[test]
    fn scopes_select_pods_only() {
        let be = pod(json!([{"name": "a"}]));
        let burst = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]));
        let scoped = json!({"scopes": ["BestEffort"]});
        assert_eq!(matches(&scoped, "", "pods", &be), Ok(true));
        assert_eq!(matches(&scoped, "", "pods", &burst), Ok(false));
        assert_eq!(matches(&scoped, "", "services", &json!({})), Ok(false));
        assert_eq!(matches(&json!({}), "", "services", &json!({})), Ok(true));
        let mut deadline = be.clone();
        deadline["spec"]["activeDeadlineSeconds"] = json!(30);
        assert_eq!(
            matches(&json!({"scopes": ["Terminating"]}), "", "pods", &deadline),
            Ok(true)
        );
        assert_eq!(
            matches(
                &json!({"scopes": ["NotTerminating"]}),
                "",
                "pods",
                &deadline
            ),
            Ok(false)
        );
        let class = json!({"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}
        ]}});
        let mut high = be.clone();
        high["spec"]["priorityClassName"] = json!("high");
        assert_eq!(matches(&class, "", "pods", &high), Ok(true));
        assert_eq!(matches(&class, "", "pods", &be), Ok(false));
    }
}
