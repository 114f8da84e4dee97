//! Pod and Node defaulting plugins: AlwaysDeny, TaintNodesByCondition, Priority,
//! DefaultTolerationSeconds and RuntimeClass, each as upstream's.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{AdmissionRequest, Operation, Plugin};
use crate::api::Api;
use crate::catalog::catalog;
use crate::error::ApiError;

/// One object from its watch cache.
pub(super) fn cached(
    api: &Api,
    group: &str,
    version: &str,
    plural: &str,
    ns: &str,
    name: &str,
) -> Option<Arc<Value>> {
    let res = catalog().get(group, version, plural)?;
    api.registry
        .cache(res)?
        .get(&api.registry.key(res, ns, name))
}

/// Every object of a resource, from its watch cache.
pub(super) fn cached_all(api: &Api, group: &str, version: &str, plural: &str) -> Vec<Arc<Value>> {
    catalog()
        .get(group, version, plural)
        .and_then(|r| api.registry.cache(r))
        .map(|c| c.snapshot("").0)
        .unwrap_or_default()
}

/// Upstream's `admission.NewForbidden`: `<resource> "<name>" is forbidden: <why>`.
pub(super) fn forbidden(req: &AdmissionRequest, why: &str) -> ApiError {
    let name = if req.name.is_empty() {
        req.object
            .as_ref()
            .map(crate::meta::name)
            .unwrap_or("")
            .to_owned()
    } else {
        req.name.clone()
    };
    let gr = req.resource.gr();
    let message = if name.is_empty() {
        format!("{gr} is forbidden: {why}")
    } else {
        format!("{gr} {name:?} is forbidden: {why}")
    };
    ApiError::Forbidden {
        resource: Some(gr),
        name,
        message,
    }
}

fn done(obj: Option<Value>) -> BoxFuture<'static, Result<Option<Value>, ApiError>> {
    Box::pin(async move { Ok(obj) })
}

/// AlwaysDeny: refuses every write (for tests).
pub struct AlwaysDeny;

impl Plugin for AlwaysDeny {
    fn name(&self) -> &'static str {
        "AlwaysDeny"
    }
    fn validate<'a>(
        &'a self,
        _api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            Err(forbidden(
                req,
                "admission control is denying all modifications",
            ))
        })
    }
}

/// TaintNodesByCondition: new Nodes start with the `node.kubernetes.io/not-ready`
/// NoSchedule taint, removed by the node lifecycle controller once Ready.
pub struct TaintNodesByCondition;

impl Plugin for TaintNodesByCondition {
    fn name(&self) -> &'static str {
        "TaintNodesByCondition"
    }
    fn admit<'a>(
        &'a self,
        _api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        let mut obj = req.object.clone();
        if req.operation == Operation::Create
            && req.is("", "Node")
            && let Some(node) = obj.as_mut()
        {
            let taint = json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"});
            let taints = node["spec"]["taints"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !taints
                .iter()
                .any(|t| t.get("key") == taint.get("key") && t.get("effect") == taint.get("effect"))
            {
                let mut t = taints;
                t.push(taint);
                node["spec"]["taints"] = Value::Array(t);
            }
        }
        done(obj)
    }
}

/// DefaultTolerationSeconds: pods tolerate `not-ready` and `unreachable` NoExecute
/// taints for 300 seconds unless they say otherwise.
pub struct DefaultTolerationSeconds;

impl Plugin for DefaultTolerationSeconds {
    fn name(&self) -> &'static str {
        "DefaultTolerationSeconds"
    }
    fn admit<'a>(
        &'a self,
        _api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        let mut obj = req.object.clone();
        if req.operation == Operation::Create
            && req.is("", "Pod")
            && let Some(pod) = obj.as_mut()
        {
            let mut tol = pod["spec"]["tolerations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for key in [
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable",
            ] {
                let has = tol.iter().any(|t| {
                    let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
                    let k = t.get("key").and_then(Value::as_str).unwrap_or("");
                    (effect.is_empty() || effect == "NoExecute") && (k == key || k.is_empty())
                });
                if !has {
                    tol.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
                }
            }
            pod["spec"]["tolerations"] = Value::Array(tol);
        }
        done(obj)
    }
}

/// The system priority classes the apiserver creates at start, as upstream's
/// `scheduling/bootstrap-system-priority-classes` hook.
pub fn system_priority_classes() -> Vec<Value> {
    [("system-node-critical", 2_000_001_000), ("system-cluster-critical", 2_000_000_000)]
        .into_iter()
        .map(|(name, value)| {
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value,
                "description": if name == "system-node-critical" {
                    "Used for system critical pods that must not be moved from their current node."
                } else {
                    "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."
                },
                "preemptionPolicy": "PreemptLowerPriority"})
        })
        .collect()
}

/// Priority: a pod's priority comes from its PriorityClass (or the global default);
/// a pod may not name a class that does not exist or set the number itself.
pub struct Priority;

impl Plugin for Priority {
    fn name(&self) -> &'static str {
        "Priority"
    }
    fn admit<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async move {
            let mut obj = req.object.clone();
            if req.operation != Operation::Create || !req.is("", "Pod") {
                return Ok(obj);
            }
            let Some(pod) = obj.as_mut() else {
                return Ok(obj);
            };
            let name = pod
                .pointer("/spec/priorityClassName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let class = if name.is_empty() {
                cached_all(api, "scheduling.k8s.io", "v1", "priorityclasses")
                    .into_iter()
                    .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
                    .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0))
            } else {
                Some(
                    cached(api, "scheduling.k8s.io", "v1", "priorityclasses", "", &name)
                        .ok_or_else(|| {
                            forbidden(req, &format!("no PriorityClass with name {name} was found"))
                        })?,
                )
            };
            let (value, policy) = match &class {
                Some(c) => {
                    if name.is_empty() {
                        pod["spec"]["priorityClassName"] = json!(crate::meta::name(c));
                    }
                    (
                        c.get("value").and_then(Value::as_i64).unwrap_or(0),
                        c.get("preemptionPolicy")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    )
                }
                None => (0, None),
            };
            if let Some(given) = pod.pointer("/spec/priority").and_then(Value::as_i64)
                && given != value
            {
                return Err(forbidden(
                    req,
                    &format!(
                        "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
                    ),
                ));
            }
            pod["spec"]["priority"] = json!(value);
            if let Some(p) = policy {
                if let Some(given) = pod
                    .pointer("/spec/preemptionPolicy")
                    .and_then(Value::as_str)
                    && given != p
                {
                    return Err(forbidden(
                        req,
                        &format!(
                            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {p} from the given PriorityClass name"
                        ),
                    ));
                }
                pod["spec"]["preemptionPolicy"] = json!(p);
            }
            Ok(obj)
        })
    }
}

/// RuntimeClass: a pod naming a RuntimeClass gets its overhead and scheduling
/// constraints; naming one that does not exist is refused.
pub struct RuntimeClass;

impl Plugin for RuntimeClass {
    fn name(&self) -> &'static str {
        "RuntimeClass"
    }
    fn admit<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<Option<Value>, ApiError>> {
        Box::pin(async move {
            let mut obj = req.object.clone();
            if req.operation != Operation::Create || !req.is("", "Pod") {
                return Ok(obj);
            }
            let Some(pod) = obj.as_mut() else {
                return Ok(obj);
            };
            let Some(name) = pod
                .pointer("/spec/runtimeClassName")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                return Ok(obj);
            };
            let rc =
                cached(api, "node.k8s.io", "v1", "runtimeclasses", "", &name).ok_or_else(|| {
                    forbidden(
                        req,
                        &format!("pod rejected: RuntimeClass {name:?} not found"),
                    )
                })?;
            if let Some(fixed) = rc.pointer("/overhead/podFixed") {
                match pod.pointer("/spec/overhead") {
                    Some(o) if o != fixed => {
                        return Err(forbidden(
                            req,
                            "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead",
                        ));
                    }
                    _ => pod["spec"]["overhead"] = fixed.clone(),
                }
            }
            if let Some(sel) = rc
                .pointer("/scheduling/nodeSelector")
                .and_then(Value::as_object)
            {
                for (k, v) in sel {
                    match pod.pointer(&format!(
                        "/spec/nodeSelector/{}",
                        k.replace('~', "~0").replace('/', "~1")
                    )) {
                        Some(have) if have != v => {
                            return Err(forbidden(
                                req,
                                "pod rejected: conflict with the RuntimeClass's scheduling nodeSelector",
                            ));
                        }
                        _ => {
                            if !pod["spec"]["nodeSelector"].is_object() {
                                pod["spec"]["nodeSelector"] = json!({});
                            }
                            pod["spec"]["nodeSelector"][k] = v.clone();
                        }
                    }
                }
            }
            if let Some(t) = rc
                .pointer("/scheduling/tolerations")
                .and_then(Value::as_array)
            {
                let mut tol = pod["spec"]["tolerations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for x in t {
                    if !tol.contains(x) {
                        tol.push(x.clone());
                    }
                }
                pod["spec"]["tolerations"] = Value::Array(tol);
            }
            Ok(obj)
        })
    }
}
