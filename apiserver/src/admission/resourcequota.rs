//! ResourceQuota: a namespace's ResourceQuotas cap what its objects may use, and
//! each admitted object is charged to them before it is stored, as upstream's
//! plugin.
//!
//! For a create (or an update of a service or claim, whose usage may grow), every
//! quota in the namespace that selects the object and limits something it uses is
//! checked, in upstream's words:
//! - `failed quota: <q>: must specify ...` when a quota limits cpu or memory and a
//!   container does not state it;
//! - `status unknown for quota: <q>, resources: ...` when `status.hard` limits
//!   something `status.used` has not counted;
//! - `exceeded quota: <q>, requested: ..., used: ..., limited: ...`.
//!
//! Limits are read from `status.hard`, as upstream's: a quota the resourcequota
//! controller has not yet counted limits nothing. A `ResourceQuotaConfiguration`
//! (`--admission-control-config-file`) may name `limitedResources`: consuming them
//! then needs a covering quota (`insufficient quota to consume: ...`), even in a
//! namespace without any; its `matchScopes` are not read yet.
//!
//! Charging is atomic: the check and the `status.used` increments happen under a
//! per-namespace lock, and each quota is written with its resourceVersion as a
//! precondition, so concurrent requests (here or on another apiserver) never both
//! take the last unit; a conflict re-reads the quotas and checks again. Usage
//! charged for a request that then fails to store is returned by the controller's
//! next recalculation, as upstream's is. Dry runs are checked but not charged.
//! What objects cost is [`component_base::quota`], shared with the controller.

use std::collections::HashMap;
use std::sync::Arc;

use component_base::quota::{self, ResourceList};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::Value;

use super::pods::forbidden;
use super::{AdmissionRequest, Operation, Plugin};
use crate::api::Api;
use crate::catalog::catalog;
use crate::error::ApiError;

/// How many times a charge is retried after a conflicting quota write.
const RETRIES: usize = 3;

/// The ResourceQuota plugin.
#[derive(Default)]
pub struct ResourceQuota {
    namespaces: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    limited: Vec<LimitedResource>,
}

/// The charge for one quota: its new `status.used`, and the object to write.
struct Charge {
    quota: Value,
    rv: u64,
}

/// Checks `delta` against every quota that applies, as upstream's `checkRequest`:
/// first each selecting quota's constraints and counted status, then that the
/// `limited` resources (ResourceQuotaConfiguration's `limitedResources` this object
/// consumes) are all covered by some quota, then the limits. Returns the writes.
fn check(
    req: &AdmissionRequest,
    quotas: &[Value],
    obj: &Value,
    delta: &ResourceList,
    limited: &[String],
) -> Result<Vec<Charge>, ApiError> {
    let (group, plural) = (req.resource.group, req.resource.plural);
    let mut interesting = Vec::new();
    let mut covered = std::collections::BTreeSet::new();
    for q in quotas {
        let name = crate::meta::name(q);
        let spec = q.get("spec").cloned().unwrap_or(Value::Null);
        if !quota::matches(&spec, group, plural, obj)
            .map_err(|e| forbidden(req, &format!("failed quota: {name}: {e}")))?
        {
            continue;
        }
        let hard = quota::parse_list(q.pointer("/status/hard"));
        let hard_names: Vec<String> = hard.keys().cloned().collect();
        let restricted = quota::matching_resources(group, plural, &hard_names);
        quota::constraints(group, plural, &restricted, obj)
            .map_err(|e| forbidden(req, &format!("failed quota: {name}: {e}")))?;
        let used = quota::parse_list(q.pointer("/status/used"));
        if restricted.iter().any(|r| !used.contains_key(r)) {
            let mut names = restricted.clone();
            names.sort();
            return Err(forbidden(
                req,
                &format!(
                    "status unknown for quota: {name}, resources: {}",
                    names.join(",")
                ),
            ));
        }
        if restricted.is_empty() {
            continue;
        }
        covered.extend(restricted.iter().cloned());
        interesting.push((q, hard, used, restricted));
    }
    let mut uncovered: Vec<&String> = limited.iter().filter(|l| !covered.contains(*l)).collect();
    if !uncovered.is_empty() {
        uncovered.sort();
        uncovered.dedup();
        let names: Vec<&str> = uncovered.iter().map(|s| s.as_str()).collect();
        return Err(forbidden(
            req,
            &format!("insufficient quota to consume: {}", names.join(",")),
        ));
    }
    let mut charges = Vec::new();
    for (q, hard, used, restricted) in interesting {
        let name = crate::meta::name(q);
        let requested = quota::mask(delta, &restricted);
        if quota::is_zero(&requested) {
            continue;
        }
        let new_used = quota::add(&used, &requested);
        let checked = quota::mask(&new_used, requested.keys());
        if let Err(exceeded) = quota::less_than_or_equal(&checked, &hard) {
            return Err(forbidden(
                req,
                &format!(
                    "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                    quota::pretty(&quota::mask(&requested, &exceeded)),
                    quota::pretty(&quota::mask(&used, &exceeded)),
                    quota::pretty(&quota::mask(&hard, &exceeded)),
                ),
            ));
        }
        let mut updated = q.clone();
        updated["status"]["used"] = quota::to_json(&new_used);
        charges.push(Charge {
            rv: crate::meta::rv(q).unwrap_or(0),
            quota: updated,
        });
    }
    Ok(charges)
}

/// ResourceQuotaConfiguration's `limitedResources`: consuming a resource whose name
/// contains one of `match_contains` needs a covering quota.
#[derive(Clone, Debug, Default)]
pub struct LimitedResource {
    /// The API group ("" for core).
    pub api_group: String,
    /// The resource (plural).
    pub resource: String,
    /// Substrings of resource names.
    pub match_contains: Vec<String>,
}

/// Reads the plugin's configuration (`ResourceQuotaConfiguration`, any of its API
/// versions); `Null` is none.
pub fn parse_config(config: &Value) -> Result<Vec<LimitedResource>, String> {
    if config.is_null() {
        return Ok(Vec::new());
    }
    if config.get("kind").and_then(Value::as_str) != Some("ResourceQuotaConfiguration") {
        return Err("ResourceQuota: configuration kind must be ResourceQuotaConfiguration".into());
    }
    Ok(config
        .get("limitedResources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|l| LimitedResource {
            api_group: l
                .get("apiGroup")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            resource: l
                .get("resource")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            match_contains: crate::meta::strings(l, "matchContains"),
        })
        .collect())
}

/// Upstream's `limitedByDefault`: the resources the object consumes (a positive
/// amount) that a limited resource names.
fn limited_by_default(
    limits: &[LimitedResource],
    req: &AdmissionRequest,
    usage: &ResourceList,
) -> Vec<String> {
    let mut out = Vec::new();
    for l in limits
        .iter()
        .filter(|l| l.api_group == req.resource.group && l.resource == req.resource.plural)
    {
        for (name, amount) in usage {
            if amount.nano > 0 && l.match_contains.iter().any(|m| name.contains(m.as_str())) {
                out.push(name.clone());
            }
        }
    }
    out
}

impl ResourceQuota {
    /// With the `--admission-control-config-file` configuration.
    pub fn new(config: &Value) -> Result<Self, String> {
        Ok(ResourceQuota {
            limited: parse_config(config)?,
            ..Default::default()
        })
    }

    fn lock(&self, ns: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.namespaces
            .lock()
            .entry(ns.to_owned())
            .or_default()
            .clone()
    }
}

/// The usage this request adds: the object's, less the old object's on update.
fn delta(req: &AdmissionRequest, obj: &Value) -> ResourceList {
    let (group, plural) = (req.resource.group, req.resource.plural);
    let now = crate::meta::unix_now();
    let new = quota::usage(group, plural, obj, now);
    let mut delta = match (&req.operation, &req.old_object) {
        (Operation::Update, Some(old)) => {
            quota::subtract_non_negative(&new, &quota::usage(group, plural, old, now))
        }
        _ => new,
    };
    // Upstream's `RemoveZeros`: a request that adds nothing of a resource is never
    // refused for it, even under a limit lowered below its use.
    delta.retain(|_, a| a.nano != 0);
    delta
}

/// Whether upstream's evaluators handle the request: creates of anything, and
/// updates of services and claims (a type change or a resize uses more).
fn handles(req: &AdmissionRequest) -> bool {
    if req.subresource.is_some() || req.namespace.is_empty() || !req.resource.namespaced {
        return false;
    }
    match req.operation {
        Operation::Create => true,
        Operation::Update => {
            req.resource.group.is_empty()
                && matches!(req.resource.plural, "services" | "persistentvolumeclaims")
        }
        Operation::Delete => false,
    }
}

impl Plugin for ResourceQuota {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    fn validate<'a>(
        &'a self,
        api: &'a Api,
        req: &'a AdmissionRequest,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if !handles(req) {
                return Ok(());
            }
            let Some(obj) = req.object.as_ref() else {
                return Ok(());
            };
            let res = catalog()
                .get("", "v1", "resourcequotas")
                .expect("resourcequotas");
            let Some(cache) = api.registry.cache(res) else {
                return Ok(());
            };
            let names: Vec<String> = cache
                .snapshot(&format!("{}/", req.namespace))
                .0
                .iter()
                .map(|q| crate::meta::name(q).to_owned())
                .collect();
            // Limited resources need a covering quota even where there is none.
            let limited = limited_by_default(
                &self.limited,
                req,
                &quota::usage(
                    req.resource.group,
                    req.resource.plural,
                    obj,
                    crate::meta::unix_now(),
                ),
            );
            if names.is_empty() && limited.is_empty() {
                return Ok(());
            }
            let delta = delta(req, obj);
            if quota::is_zero(&delta) && limited.is_empty() {
                return Ok(());
            }
            let lock = self.lock(&req.namespace);
            let _held = lock.lock().await;
            let mut last = None;
            for _ in 0..RETRIES {
                // Consistent reads: the cache may trail this server's own last charge.
                let mut quotas = Vec::new();
                for n in &names {
                    match api.registry.get(res, &req.namespace, n).await {
                        Ok(q) => quotas.push(q),
                        Err(ApiError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                let charges = check(req, &quotas, obj, &delta, &limited)?;
                if req.dry_run {
                    return Ok(());
                }
                let mut conflict = false;
                for c in charges {
                    match api.registry.update(res, &c.quota, c.rv).await {
                        Ok(_) => {}
                        Err(e @ ApiError::Conflict { .. }) => {
                            last = Some(e);
                            conflict = true;
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
                if !conflict {
                    return Ok(());
                }
            }
            Err(last.unwrap_or_else(|| ApiError::stale(&res.gr(), "")))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn req(op: Operation, object: Value) -> AdmissionRequest {
        AdmissionRequest {
            operation: op,
            resource: catalog().get("", "v1", "pods").unwrap(),
            subresource: None,
            namespace: "ns".into(),
            name: "p".into(),
            object: Some(object),
            old_object: None,
            user: Default::default(),
            dry_run: false,
            warnings: Default::default(),
            audit_annotations: Default::default(),
        }
    }

    fn rq(hard: Value, used: Option<Value>) -> Value {
        let mut q = json!({"metadata": {"name": "q", "namespace": "ns", "resourceVersion": "7"},
            "spec": {"hard": hard.clone()}, "status": {"hard": hard}});
        if let Some(u) = used {
            q["status"]["used"] = u;
        }
        q
    }

    fn pod(cpu: &str) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}}
        ]}})
    }

    fn message(e: ApiError) -> String {
        match e {
            ApiError::Forbidden { message, .. } => message,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn charges_within_the_limit() {
        let r = req(Operation::Create, pod("500m"));
        let q = rq(
            json!({"pods": "2", "requests.cpu": "1"}),
            Some(json!({"pods": "1", "requests.cpu": "0"})),
        );
        let d = delta(&r, r.object.as_ref().unwrap());
        let c = check(&r, &[q], r.object.as_ref().unwrap(), &d, &[]).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].rv, 7);
        assert_eq!(
            c[0].quota["status"]["used"],
            json!({"pods": "2", "requests.cpu": "500m"})
        );
    }

    #[test]
    fn refusals_in_upstreams_words() {
        let r = req(Operation::Create, pod("500m"));
        let obj = r.object.clone().unwrap();
        let d = delta(&r, &obj);
        let full = rq(
            json!({"pods": "2", "requests.cpu": "1"}),
            Some(json!({"pods": "2", "requests.cpu": "800m"})),
        );
        assert_eq!(
            message(check(&r, &[full], &obj, &d, &[]).err().unwrap()),
            r#"pods "p" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=500m, used: pods=2,requests.cpu=800m, limited: pods=2,requests.cpu=1"#
        );
        let unknown = rq(json!({"pods": "2", "requests.cpu": "1"}), None);
        assert_eq!(
            message(check(&r, &[unknown], &obj, &d, &[]).err().unwrap()),
            r#"pods "p" is forbidden: status unknown for quota: q, resources: pods,requests.cpu"#
        );
        let mem = rq(
            json!({"limits.memory": "1Gi"}),
            Some(json!({"limits.memory": "0"})),
        );
        assert_eq!(
            message(check(&r, &[mem], &obj, &d, &[]).err().unwrap()),
            r#"pods "p" is forbidden: failed quota: q: must specify limits.memory for: c"#
        );
    }

    #[test]
    fn limited_resources_need_a_covering_quota() {
        let limits = parse_config(&json!({"apiVersion": "apiserver.config.k8s.io/v1", "kind": "ResourceQuotaConfiguration",
            "limitedResources": [{"resource": "pods", "matchContains": ["cpu"]}]}))
        .unwrap();
        let r = req(Operation::Create, pod("500m"));
        let obj = r.object.clone().unwrap();
        let usage = quota::usage("", "pods", &obj, 0);
        let limited = limited_by_default(&limits, &r, &usage);
        assert_eq!(limited, ["cpu", "limits.cpu", "requests.cpu"]);
        let d = delta(&r, &obj);
        assert_eq!(
            message(check(&r, &[], &obj, &d, &limited).err().unwrap()),
            r#"pods "p" is forbidden: insufficient quota to consume: cpu,limits.cpu,requests.cpu"#
        );
        let partial = rq(
            json!({"requests.cpu": "1"}),
            Some(json!({"requests.cpu": "0"})),
        );
        assert_eq!(
            message(check(&r, &[partial], &obj, &d, &limited).err().unwrap()),
            r#"pods "p" is forbidden: insufficient quota to consume: cpu,limits.cpu"#
        );
        let full = rq(
            json!({"cpu": "1", "requests.cpu": "1", "limits.cpu": "1"}),
            Some(json!({"cpu": "0", "requests.cpu": "0", "limits.cpu": "0"})),
        );
        assert!(check(&r, &[full], &obj, &d, &limited).is_ok());
        assert!(parse_config(&json!({"kind": "Other"})).is_err());
    }

    #[test]
    fn unrelated_and_unselected_quotas_are_skipped() {
        let r = req(Operation::Create, pod("500m"));
        let obj = r.object.clone().unwrap();
        let d = delta(&r, &obj);
        let services = rq(json!({"services": "0"}), None);
        let mut best_effort = rq(json!({"pods": "0"}), Some(json!({"pods": "0"})));
        best_effort["spec"]["scopes"] = json!(["BestEffort"]);
        assert!(
            check(&r, &[services, best_effort], &obj, &d, &[])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn only_growth_is_charged_on_update() {
        let svc = |t: &str| json!({"metadata": {"name": "s"}, "spec": {"type": t, "ports": [{"port": 80}]}});
        let mut r = req(Operation::Update, svc("LoadBalancer"));
        r.resource = catalog().get("", "v1", "services").unwrap();
        r.old_object = Some(svc("ClusterIP"));
        assert!(handles(&r));
        let d = delta(&r, r.object.as_ref().unwrap());
        assert_eq!(
            quota::pretty(&d),
            "services.loadbalancers=1,services.nodeports=1"
        );
        let pod_update = req(Operation::Update, pod("1"));
        assert!(!handles(&pod_update));
    }
}
