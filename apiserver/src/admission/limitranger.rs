//! LimitRanger: a namespace's LimitRanges default and bound what pods and claims
//! ask for, as upstream's plugin.
//!
//! - Mutating, on pod create: each container and init container missing a request
//!   or limit for a resource takes the `Container` item's `defaultRequest` or
//!   `default`, and the pod is annotated `kubernetes.io/limit-ranger` with what was
//!   set (`LimitRanger plugin set: cpu request for container app`).
//! - Validating, on pod create and claim create or update: `Container` items bound
//!   every container (`min`, `max`, `maxLimitRequestRatio`), `Pod` items the pod's
//!   effective totals, `PersistentVolumeClaim` items the requested storage. Every
//!   violation is reported, in upstream's words, in one Forbidden.
//!
//! Pod updates are not checked: containers' resources cannot change that way.

use component_base::quota::{self, Amount, ResourceList};
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::pods::{cached_all, forbidden};
use super::{AdmissionRequest, Operation, Plugin};
use crate::api::Api;
use crate::error::ApiError;

/// The annotation that records what the plugin defaulted.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The LimitRanger plugin.
pub struct LimitRanger;

fn limit_ranges(api: &Api, ns: &str) -> Vec<Value> {
    cached_all(api, "", "v1", "limitranges")
        .into_iter()
        .filter(|l| crate::meta::namespace(l) == ns)
        .map(|l| (*l).clone())
        .collect()
}

fn items(lr: &Value) -> impl Iterator<Item = &Value> {
    lr.pointer("/spec/limits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The defaults `Container` items give: (requests, limits), later items winning.
fn container_defaults(
    lr: &Value,
) -> (
    serde_json::Map<String, Value>,
    serde_json::Map<String, Value>,
) {
    let (mut requests, mut limits) = (serde_json::Map::new(), serde_json::Map::new());
    for item in items(lr).filter(|i| i.get("type").and_then(Value::as_str) == Some("Container")) {
        for (field, into) in [("defaultRequest", &mut requests), ("default", &mut limits)] {
            if let Some(m) = item.get(field).and_then(Value::as_object) {
                into.extend(m.clone());
            }
        }
    }
    (requests, limits)
}

/// Fills a pod's containers from `lr`'s defaults; returns the annotation text parts.
pub fn default_pod(pod: &mut Value, lr: &Value, notes: &mut Vec<String>) {
    let (requests, limits) = container_defaults(lr);
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    for (list, what) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(cs) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in cs {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if !c.get("resources").is_some_and(Value::is_object) {
                c["resources"] = json!({});
            }
            let res = &mut c["resources"];
            let mut set_limits = Vec::new();
            let mut set_requests = Vec::new();
            for (field, defaults, set) in [
                ("limits", &limits, &mut set_limits),
                ("requests", &requests, &mut set_requests),
            ] {
                let missing: Vec<(&String, &Value)> = defaults
                    .iter()
                    .filter(|(k, _)| res.get(field).and_then(|f| f.get(k.as_str())).is_none())
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                if !res.get(field).is_some_and(Value::is_object) {
                    res[field] = json!({});
                }
                let have = res[field].as_object_mut().expect("just set");
                for (k, v) in missing {
                    have.insert(k.clone(), v.clone());
                    set.push(k.clone());
                }
            }
            for (set, kind) in [(set_requests, "request"), (set_limits, "limit")] {
                if !set.is_empty() {
                    let mut set = set;
                    set.sort();
                    notes.push(format!("{} {kind} for {what} {name}", set.join(", ")));
                }
            }
        }
    }
}

fn amount(v: &Value) -> Option<Amount> {
    Amount::from_json(v)
}

fn min_constraint(
    kind: &str,
    r: &str,
    enforced: Amount,
    req: &ResourceList,
    lim: &ResourceList,
) -> Option<String> {
    let Some(q) = req.get(r) else {
        return Some(format!(
            "minimum {r} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if q.nano < enforced.nano {
        return Some(format!(
            "minimum {r} usage per {kind} is {enforced}, but request is {q}"
        ));
    }
    match lim.get(r) {
        Some(l) if l.nano < enforced.nano => Some(format!(
            "minimum {r} usage per {kind} is {enforced}, but limit is {l}"
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    r: &str,
    enforced: Amount,
    req: &ResourceList,
    lim: &ResourceList,
) -> Option<String> {
    let Some(l) = lim.get(r) else {
        return Some(format!(
            "maximum {r} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if l.nano > enforced.nano {
        return Some(format!(
            "maximum {r} usage per {kind} is {enforced}, but limit is {l}"
        ));
    }
    match req.get(r) {
        Some(q) if q.nano > enforced.nano => Some(format!(
            "maximum {r} usage per {kind} is {enforced}, but request is {q}"
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    r: &str,
    enforced: Amount,
    req: &ResourceList,
    lim: &ResourceList,
) -> Option<String> {
    let q = req.get(r).filter(|q| q.nano != 0);
    let l = lim.get(r).filter(|l| l.nano != 0);
    let Some(q) = q else {
        return Some(format!(
            "{r} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    };
    let Some(l) = l else {
        return Some(format!(
            "{r} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    };
    let observed = l.nano as f64 / q.nano as f64;
    (observed > enforced.nano as f64 / 1e9).then(|| {
        format!("{r} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}")
    })
}

/// Checks one set of requests and limits against an item's bounds.
fn bounds(
    item: &Value,
    kind: &str,
    req: &ResourceList,
    lim: &ResourceList,
    errs: &mut Vec<String>,
) {
    type Check = fn(&str, &str, Amount, &ResourceList, &ResourceList) -> Option<String>;
    let checks: [(&str, Check); 3] = [
        ("min", min_constraint),
        ("max", max_constraint),
        ("maxLimitRequestRatio", ratio_constraint),
    ];
    for (field, check) in checks {
        let mut entries: Vec<(&String, &Value)> = item
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .collect();
        entries.sort_by_key(|(k, _)| *k);
        for (r, v) in entries {
            if let Some(enforced) = amount(v)
                && let Some(e) = check(kind, r, enforced, req, lim)
            {
                errs.push(e);
            }
        }
    }
}

/// Every violation of `lr` by a pod.
pub fn validate_pod(pod: &Value, lr: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    for item in items(lr) {
        match item.get("type").and_then(Value::as_str) {
            Some("Container") => {
                for list in ["containers", "initContainers"] {
                    for c in pod
                        .pointer(&format!("/spec/{list}"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let req = quota::parse_list(c.pointer("/resources/requests"));
                        let lim = quota::parse_list(c.pointer("/resources/limits"));
                        bounds(item, "Container", &req, &lim, &mut errs);
                    }
                }
            }
            Some("Pod") => {
                // Upstream's LimitRanger leaves the pod overhead out.
                let req = quota::pod_resources(pod, "requests", false);
                let lim = quota::pod_resources(pod, "limits", false);
                bounds(item, "Pod", &req, &lim, &mut errs);
            }
            _ => {}
        }
    }
    errs
}

/// Every violation of `lr` by a claim: its requested storage within min and max.
pub fn validate_claim(pvc: &Value, lr: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let req = quota::parse_list(pvc.pointer("/spec/resources/requests"));
    for item in items(lr) {
        if item.get("type").and_then(Value::as_str) != Some("PersistentVolumeClaim") {
            continue;
        }
        for (field, is_min) in [("min", true), ("max", false)] {
            for (r, v) in item
                .get(field)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let Some(enforced) = amount(v) else { continue };
                let e = if is_min {
                    min_constraint(
                        "PersistentVolumeClaim",
                        r,
                        enforced,
                        &req,
                        &ResourceList::new(),
                    )
                } else {
                    match req.get(r) {
                        None => Some(format!(
                            "maximum {r} usage per PersistentVolumeClaim is {enforced}.  No request is specified"
                        )),
                        Some(q) if q.nano > enforced.nano => Some(format!(
                            "maximum {r} usage per PersistentVolumeClaim is {enforced}, but request is {q}"
                        )),
                        _ => None,
                    }
                };
                errs.extend(e);
            }
        }
    }
    errs
}

/// Upstream's `utilerrors.NewAggregate` text: one error alone, else `[a, b]`.
fn aggregate(errs: &[String]) -> String {
    if errs.len() == 1 {
        errs[0].clone()
    } else {
        format!("[{}]", errs.join(", "))
    }
}

fn is_pod_create(req: &AdmissionRequest) -> bool {
    req.operation == Operation::Create && req.is("", "Pod")
}

impl Plugin for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    fn admit<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async move {
            if !is_pod_create(req) || req.object.is_none() {
                return Ok(req.object.clone());
            }
            let ranges = limit_ranges(api, &req.namespace);
            if ranges.is_empty() {
                return Ok(req.object.clone());
            }
            let mut pod = req.object.clone().expect("checked");
            // Each range rewrites the annotation, so the last one that set
            // anything is what it says, as upstream's.
            let mut notes = Vec::new();
            for lr in &ranges {
                let mut set = Vec::new();
                default_pod(&mut pod, lr, &mut set);
                if !set.is_empty() {
                    notes = set;
                }
            }
            if !notes.is_empty() {
                let meta = crate::meta::meta_mut(&mut pod);
                let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
                if !annotations.is_object() {
                    *annotations = json!({});
                }
                annotations[ANNOTATION] =
                    json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
            }
            Ok(Some(pod))
        })
    }

    fn validate<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let claim = req.is("", "PersistentVolumeClaim")
                && matches!(req.operation, Operation::Create | Operation::Update);
            if !(is_pod_create(req) || claim) {
                return Ok(());
            }
            let Some(obj) = req.object.as_ref() else {
                return Ok(());
            };
            // A claim being deleted is not held to the ranges (finalizers come off).
            if claim
                && req
                    .old_object
                    .as_ref()
                    .is_some_and(|o| crate::meta::field(o, "deletionTimestamp").is_some())
            {
                return Ok(());
            }
            // The first range with violations refuses, with all of its own.
            for lr in limit_ranges(api, &req.namespace) {
                let errs = if claim {
                    validate_claim(obj, &lr)
                } else {
                    validate_pod(obj, &lr)
                };
                if !errs.is_empty() {
                    return Err(forbidden(req, &aggregate(&errs)));
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(limits: Value) -> Value {
        json!({"spec": {"limits": limits}})
    }

    #[test]
    fn containers_take_defaults_and_the_pod_says_so() {
        let range = lr(
            json!([{"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"}}]),
        );
        let mut pod = json!({"spec": {
            "containers": [{"name": "app", "resources": {"limits": {"memory": "1Gi"}}}],
            "initContainers": [{"name": "setup"}],
        }});
        let mut notes = Vec::new();
        default_pod(&mut pod, &range, &mut notes);
        let c = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(c["limits"], json!({"cpu": "500m", "memory": "1Gi"}));
        assert_eq!(c["requests"], json!({"cpu": "100m"}));
        assert_eq!(
            notes,
            [
                "cpu request for container app",
                "cpu limit for container app",
                "cpu request for init container setup",
                "cpu, memory limit for init container setup",
            ]
        );
    }

    #[test]
    fn container_bounds_in_upstreams_words() {
        let range = lr(
            json!([{"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1", "memory": "1Gi"}, "maxLimitRequestRatio": {"cpu": "2"}}]),
        );
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "50m"}, "limits": {"cpu": "2"}}},
        ]}});
        assert_eq!(
            validate_pod(&pod, &range),
            [
                "minimum cpu usage per Container is 100m, but request is 50m",
                "maximum cpu usage per Container is 1, but limit is 2",
                "maximum memory usage per Container is 1Gi.  No limit is specified",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 40.000000",
            ]
        );
        let ok = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "memory": "512Mi"}}},
        ]}});
        assert!(validate_pod(&ok, &range).is_empty());
        assert_eq!(aggregate(&["x".into()]), "x");
        assert_eq!(aggregate(&["x".into(), "y".into()]), "[x, y]");
    }

    #[test]
    fn pod_and_claim_bounds() {
        let range = lr(json!([
            {"type": "Pod", "max": {"cpu": "1"}},
            {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}},
        ]));
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "600m"}, "limits": {"cpu": "600m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "600m"}, "limits": {"cpu": "600m"}}},
        ]}});
        assert_eq!(
            validate_pod(&pod, &range),
            ["maximum cpu usage per Pod is 1, but limit is 1200m"]
        );
        let claim = |s: &str| json!({"spec": {"resources": {"requests": {"storage": s}}}});
        assert_eq!(
            validate_claim(&claim("500Mi"), &range),
            ["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]
        );
        assert_eq!(
            validate_claim(&claim("20Gi"), &range),
            ["maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"]
        );
        assert!(validate_claim(&claim("5Gi"), &range).is_empty());
    }
}
