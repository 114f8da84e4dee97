//! The resourcequota controller: each ResourceQuota's `status.hard` mirrors its
//! `spec.hard`, and `status.used` is what the namespace's objects use of it, as
//! upstream's `ResourceQuotaController`.
//!
//! ```text
//!  watch resourcequotas ──(new, or spec.hard ≠ status.hard)──┐
//!  watch pods, services, claims, configmaps, secrets,        ├─▶ queue of quotas ─▶ workers
//!        replicationcontrollers (deletes; pods ending; ──────┤     (--concurrent-resource-quota-syncs)
//!        services' and claims' changes)                      │
//!  every --resource-quota-sync-period (all quotas) ──────────┘
//! ```
//!
//! A worker lists, in the quota's namespace, every kind its hard limits name
//! (`count/<resource>.<group>` is resolved by discovery), adds up what each object
//! that the quota's scopes select uses ([`component_base::quota::usage`], the same
//! evaluator the admission plugin charges with), and writes the status when it
//! changed, with the quota's resourceVersion as the precondition: a concurrent
//! charge by the apiserver is a conflict, and the quota is synced again.
//!
//! Quotas are read from the watch's store, not fetched: upstream's controller role
//! may list and watch, not get. Objects counted only by `count/...` (outside the
//! watched kinds) are recounted on the periodic resync.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use component_base::quota::{self, Amount, ResourceList};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use serde_json::Value;

use client_base::workqueue::{Metrics, Queue, run_workers};

/// The controller.
pub struct Controller {
    client: kube::Client,
    quotas: Store<ResourceQuota>,
    queue: Arc<Queue<String>>,
    kinds: Mutex<HashMap<(String, String), Option<ApiResource>>>,
}

/// The system clock, in Unix seconds.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `namespace/name`.
fn key(q: &ResourceQuota) -> String {
    format!(
        "{}/{}",
        q.metadata.namespace.as_deref().unwrap_or(""),
        q.metadata.name.as_deref().unwrap_or("")
    )
}

fn as_json(q: &ResourceQuota) -> Value {
    serde_json::to_value(q).unwrap_or(Value::Null)
}

/// Whether a quota needs a sync now: its status does not yet reflect its spec.
pub fn needs_sync(q: &Value) -> bool {
    let hard = quota::parse_list(q.pointer("/spec/hard"));
    let status_hard = quota::parse_list(q.pointer("/status/hard"));
    let used = quota::parse_list(q.pointer("/status/used"));
    !same(&hard, &status_hard) || hard.keys().any(|k| !used.contains_key(k))
}

/// Equal names and values, whatever their printed formats.
fn same(a: &ResourceList, b: &ResourceList) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| w.nano == v.nano))
}

/// The status a quota should have at `now` (Unix seconds), given the objects of each
/// kind in its namespace; `None` when it already has it.
pub fn desired_status(
    q: &Value,
    objects: &[(String, String, Vec<Value>)],
    now: i64,
) -> Option<Value> {
    let spec = q.get("spec").cloned().unwrap_or(Value::Null);
    let hard = quota::parse_list(spec.get("hard"));
    let names: Vec<String> = hard.keys().cloned().collect();
    let mut total = ResourceList::new();
    for (group, resource, items) in objects {
        for o in items {
            if quota::matches(&spec, group, resource, o).unwrap_or(false) {
                let charged = quota::mask(&quota::usage(group, resource, o, now), &names);
                total = quota::add(&total, &charged);
            }
        }
    }
    let used: ResourceList = names
        .iter()
        .map(|n| {
            let zero = Amount {
                nano: 0,
                binary: false,
            };
            (n.clone(), total.get(n).copied().unwrap_or(zero))
        })
        .collect();
    let have_hard = quota::parse_list(q.pointer("/status/hard"));
    let have_used = quota::parse_list(q.pointer("/status/used"));
    if same(&hard, &have_hard) && same(&used, &have_used) {
        return None;
    }
    Some(serde_json::json!({"hard": quota::to_json(&hard), "used": quota::to_json(&used)}))
}

impl Controller {
    /// The API resource for `group`/`resource`, by discovery (cached).
    async fn resolve(&self, group: &str, resource: &str) -> Option<ApiResource> {
        let k = (group.to_owned(), resource.to_owned());
        if let Some(r) = self.kinds.lock().get(&k) {
            return r.clone();
        }
        let found = match kube::discovery::oneshot::group(&self.client, group).await {
            Ok(g) => g
                .recommended_resources()
                .into_iter()
                .map(|(ar, _)| ar)
                .find(|ar| ar.plural == resource),
            Err(e) => {
                // Not cached: the group may appear later (a CRD).
                tracing::info!(group, error = %e, "discovery failed");
                return None;
            }
        };
        self.kinds.lock().insert(k, found.clone());
        found
    }

    async fn sync(&self, key: &str) -> Result<(), kube::Error> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let Some(q) = self.quotas.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(());
        };
        let qv = as_json(&q);
        let hard: Vec<String> = quota::parse_list(qv.pointer("/spec/hard"))
            .into_keys()
            .collect();
        let mut objects = Vec::new();
        for (group, resource) in quota::kinds_for(&hard) {
            let Some(ar) = self.resolve(&group, &resource).await else {
                continue;
            };
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
            let items = api
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
                .collect();
            objects.push((group, resource, items));
        }
        let Some(status) = desired_status(&qv, &objects, unix_now()) else {
            return Ok(());
        };
        let mut updated = qv;
        updated["status"] = status;
        let updated: ResourceQuota =
            serde_json::from_value(updated).map_err(kube::Error::SerdeError)?;
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), ns);
        api.replace_status(name, &PostParams::default(), &updated)
            .await?;
        tracing::debug!(quota = key, "status updated");
        Ok(())
    }

    /// Queues every quota in `ns`.
    fn replenish(&self, ns: &str) {
        for q in self.quotas.state() {
            if q.metadata.namespace.as_deref() == Some(ns) {
                self.queue.add(key(&q));
            }
        }
    }
}

/// Watches one kind's deletions (and, for pods, their end) to recount quotas.
/// With `changes`, every update too (a service's type, a claim's size: what their
/// usage depends on), as upstream's replenishment for those kinds.
async fn replenish_on<K>(c: Arc<Controller>, client: kube::Client, changes: bool)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api: Api<kube::core::PartialObjectMeta<K>> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Delete(o)) => {
                c.replenish(o.metadata.namespace.as_deref().unwrap_or(""));
            }
            Ok(watcher::Event::Apply(o)) if changes => {
                c.replenish(o.metadata.namespace.as_deref().unwrap_or(""));
            }
            _ => {}
        }
    }
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client, workers: usize, sync_period: Duration, metrics: Metrics) {
    let (store, writer) = reflector::store::<ResourceQuota>();
    let c = Arc::new(Controller {
        client: client.clone(),
        quotas: store,
        queue: Queue::new("resourcequota_primary", Some(metrics)),
        kinds: Mutex::new(HashMap::new()),
    });

    let quotas = {
        let c = c.clone();
        let api: Api<ResourceQuota> = Api::all(client.clone());
        async move {
            let mut events = reflector::reflector(writer, watcher(api, watcher::Config::default()))
                .default_backoff()
                .boxed();
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(watcher::Event::InitApply(q)) => c.queue.add(key(&q)),
                    Ok(watcher::Event::Apply(q)) if needs_sync(&as_json(&q)) => {
                        c.queue.add(key(&q))
                    }
                    Ok(_) => {}
                    Err(e) => tracing::info!(error = %e, "resourcequota watch failed; retrying"),
                }
            }
        }
    };
    let pods = {
        let c = c.clone();
        let api: Api<Pod> = Api::all(client.clone());
        async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(watcher::Event::Delete(p)) => {
                        c.replenish(p.metadata.namespace.as_deref().unwrap_or(""));
                    }
                    Ok(watcher::Event::Apply(p))
                        if !quota::pod_is_active(
                            &serde_json::to_value(&p).unwrap_or(Value::Null),
                            unix_now(),
                        ) =>
                    {
                        c.replenish(p.metadata.namespace.as_deref().unwrap_or(""));
                    }
                    _ => {}
                }
            }
        }
    };
    use k8s_openapi::api::core::v1::{
        ConfigMap, PersistentVolumeClaim, ReplicationController, Secret, Service,
    };
    let others = futures::future::join5(
        replenish_on::<Service>(c.clone(), client.clone(), true),
        replenish_on::<PersistentVolumeClaim>(c.clone(), client.clone(), true),
        replenish_on::<ConfigMap>(c.clone(), client.clone(), false),
        replenish_on::<Secret>(c.clone(), client.clone(), false),
        replenish_on::<ReplicationController>(c.clone(), client.clone(), false),
    );
    let resync = {
        let c = c.clone();
        async move {
            let mut tick = tokio::time::interval(sync_period);
            tick.tick().await;
            loop {
                tick.tick().await;
                for q in c.quotas.state() {
                    c.queue.add(key(&q));
                }
            }
        }
    };
    let workers = {
        let c = c.clone();
        run_workers(c.queue.clone(), workers, move |k: String| {
            let c = c.clone();
            async move { c.sync(&k).await }
        })
    };
    tokio::join!(quotas, pods, others, resync, workers);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn q(status: Value) -> Value {
        json!({"metadata": {"name": "q", "namespace": "ns"},
            "spec": {"hard": {"pods": "2", "requests.cpu": "1", "count/deployments.apps": "1", "services": "3"}},
            "status": status})
    }

    #[test]
    fn used_counts_what_the_namespace_holds() {
        let pods = vec![
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "250m"}}}]}}),
            json!({"spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Failed"}}),
        ];
        let objects = vec![
            ("".to_owned(), "pods".to_owned(), pods),
            ("apps".to_owned(), "deployments".to_owned(), vec![json!({})]),
        ];
        let status = desired_status(&q(json!({})), &objects, 0).unwrap();
        assert_eq!(
            status,
            json!({
                "hard": {"pods": "2", "requests.cpu": "1", "count/deployments.apps": "1", "services": "3"},
                "used": {"pods": "1", "requests.cpu": "250m", "count/deployments.apps": "1", "services": "0"},
            })
        );
        // Written once: the same status is not written again.
        assert!(desired_status(&q(status), &objects, 0).is_none());
    }

    #[test]
    fn a_new_or_changed_quota_needs_a_sync() {
        assert!(needs_sync(&q(json!({}))));
        let synced = q(json!({
            "hard": {"pods": "2", "requests.cpu": "1000m", "count/deployments.apps": "1", "services": "3"},
            "used": {"pods": "0", "requests.cpu": "0", "count/deployments.apps": "0", "services": "0"},
        }));
        assert!(!needs_sync(&synced));
        let mut raised = synced.clone();
        raised["spec"]["hard"]["pods"] = json!("5");
        assert!(needs_sync(&raised));
    }

    #[test]
    fn scoped_quotas_count_only_selected_pods() {
        let mut scoped = q(json!({}));
        scoped["spec"]["scopes"] = json!(["BestEffort"]);
        let pods = vec![
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}),
            json!({"spec": {"containers": [{"name": "c"}]}}),
        ];
        let status =
            desired_status(&scoped, &[("".to_owned(), "pods".to_owned(), pods)], 0).unwrap();
        assert_eq!(status["used"]["pods"], "1");
        assert_eq!(status["used"]["requests.cpu"], "0");
    }
}
