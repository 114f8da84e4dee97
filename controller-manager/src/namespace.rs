//! The namespace controller, as upstream's `pkg/controller/namespace`: a
//! namespace being deleted is emptied of every namespaced resource discovery
//! lists (custom resources included), its `kubernetes` finalizer removed through
//! the `finalize` subresource, and then deleted.
//!
//! ```text
//!  namespaces (shared informer) with a deletionTimestamp ─▶ queue ─▶ workers
//!     (--concurrent-namespace-syncs)
//!  sync: discovery (preferred versions, namespaced, deletable) ─▶ per resource:
//!        DELETE collection (or each object) ─▶ list what remains (and whose
//!        finalizers hold it) ─▶ status conditions as upstream's
//!        ─▶ something remains: look again later
//!        ─▶ empty: PUT finalize without `kubernetes` ─▶ DELETE the namespace
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{Discovery, Scope, verbs};

use client_base::informer::{Funcs, SharedInformerFactory};
use client_base::workqueue::{Metrics, Queue, Requeue, run_workers};

/// The controller's name.
pub const NAME: &str = "namespace-controller";
/// The finalizer the namespace controller owns.
const FINALIZER: &str = "kubernetes";

/// What one pass over a namespace's content found.
#[derive(Default)]
struct Content {
    /// Resource (`pods`, `deployments.apps`) → objects left.
    remaining: BTreeMap<String, usize>,
    /// Finalizer → objects it holds.
    finalizers: BTreeMap<String, usize>,
    /// Deletes that failed.
    errors: Vec<String>,
    /// Discovery failed.
    discovery_error: Option<String>,
}

fn condition(
    type_: &str,
    failed: bool,
    ok: (&str, &str),
    bad: (&str, String),
) -> NamespaceCondition {
    let (reason, message) = if failed {
        (bad.0.to_owned(), bad.1)
    } else {
        (ok.0.to_owned(), ok.1.to_owned())
    };
    NamespaceCondition {
        type_: type_.into(),
        status: if failed { "True" } else { "False" }.into(),
        reason: Some(reason),
        message: Some(message),
        last_transition_time: Some(Time(Timestamp::now())),
    }
}

fn joined(m: &BTreeMap<String, usize>, what: &str) -> String {
    m.iter()
        .map(|(k, n)| format!("{k} {what} {n} resource instances"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Content {
    /// Upstream's deletion conditions.
    fn conditions(&self) -> Vec<NamespaceCondition> {
        vec![
            condition(
                "NamespaceDeletionDiscoveryFailure",
                self.discovery_error.is_some(),
                (
                    "ResourcesDiscovered",
                    "All resources successfully discovered",
                ),
                (
                    "DiscoveryFailed",
                    format!(
                        "Discovery failed for some groups: {}",
                        self.discovery_error.clone().unwrap_or_default()
                    ),
                ),
            ),
            condition(
                "NamespaceDeletionGroupVersionParsingFailure",
                false,
                (
                    "ParsedGroupVersions",
                    "All legacy kube types successfully parsed",
                ),
                ("GroupVersionParsingFailed", String::new()),
            ),
            condition(
                "NamespaceDeletionContentFailure",
                !self.errors.is_empty(),
                (
                    "ContentDeleted",
                    "All content successfully deleted, may be waiting on finalization",
                ),
                (
                    "ContentDeletionFailed",
                    format!(
                        "Failed to delete all resource types, {} remaining: {}",
                        self.errors.len(),
                        self.errors.join(", ")
                    ),
                ),
            ),
            condition(
                "NamespaceContentRemaining",
                !self.remaining.is_empty(),
                ("ContentRemoved", "All content successfully removed"),
                (
                    "SomeResourcesRemain",
                    format!(
                        "Some resources are remaining: {}",
                        joined(&self.remaining, "has")
                    ),
                ),
            ),
            condition(
                "NamespaceFinalizersRemaining",
                !self.finalizers.is_empty(),
                (
                    "ContentHasNoFinalizers",
                    "All content-preserving finalizers finished",
                ),
                (
                    "SomeFinalizersRemain",
                    format!(
                        "Some content in the namespace has finalizers remaining: {}",
                        joined(&self.finalizers, "in")
                    ),
                ),
            ),
        ]
    }

    fn done(&self) -> bool {
        self.remaining.is_empty() && self.errors.is_empty() && self.discovery_error.is_none()
    }
}

/// The controller.
pub struct Controller {
    client: kube::Client,
    namespaces: Arc<client_base::informer::Informer<Namespace>>,
    queue: Arc<Queue<String>>,
}

/// The resource's name as upstream's `GroupResource.String()`: `pods`,
/// `deployments.apps`.
fn group_resource(ar: &ApiResource) -> String {
    if ar.group.is_empty() {
        ar.plural.clone()
    } else {
        format!("{}.{}", ar.plural, ar.group)
    }
}

impl Controller {
    /// Every namespaced resource that can be listed and deleted, at its group's
    /// preferred version, and whether it supports deletecollection.
    async fn deletable(&self) -> Result<Vec<(ApiResource, bool)>, String> {
        let discovery = Discovery::new(self.client.clone())
            .run()
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                if caps.scope != Scope::Namespaced
                    || !caps.supports_operation(verbs::LIST)
                    || !caps.supports_operation(verbs::DELETE)
                {
                    continue;
                }
                let collection = caps.supports_operation(verbs::DELETE_COLLECTION);
                out.push((ar, collection));
            }
        }
        Ok(out)
    }

    /// Deletes everything in `ns`; what remains.
    async fn delete_content(&self, ns: &str) -> Content {
        tracing::debug!(namespace = ns, "deleting the namespace's content");
        let mut content = Content::default();
        let resources = match self.deletable().await {
            Ok(r) => r,
            Err(e) => {
                content.discovery_error = Some(e);
                return content;
            }
        };
        for (ar, collection) in resources {
            tracing::debug!(namespace = ns, resource = %group_resource(&ar), "deleting");
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
            let gr = group_resource(&ar);
            let deleted = if collection {
                api.delete_collection(&DeleteParams::default(), &ListParams::default())
                    .await
                    .map(|_| ())
            } else {
                match api.list(&ListParams::default()).await {
                    Ok(list) => {
                        let mut r = Ok(());
                        for o in list.items {
                            let name = o.metadata.name.clone().unwrap_or_default();
                            if let Err(e) = api.delete(&name, &DeleteParams::default()).await
                                && !client_base::errors::is_not_found(&e)
                            {
                                r = Err(e);
                            }
                        }
                        r
                    }
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = deleted {
                if client_base::errors::is_not_found(&e) {
                    continue;
                }
                content.errors.push(format!(
                    "unexpected items still remain in namespace: {ns} for gvr: {}",
                    client_base::errors::message(&e)
                ));
                continue;
            }
            match api.list(&ListParams::default()).await {
                Ok(list) if !list.items.is_empty() => {
                    content.remaining.insert(gr.clone(), list.items.len());
                    for o in &list.items {
                        for f in o.metadata.finalizers.iter().flatten() {
                            *content.finalizers.entry(f.clone()).or_default() += 1;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) if client_base::errors::is_not_found(&e) => {}
                Err(e) => content.errors.push(client_base::errors::message(&e)),
            }
        }
        content
    }

    /// Writes the Terminating phase and the conditions, if they changed.
    async fn update_status(
        &self,
        ns: &Namespace,
        conditions: Vec<NamespaceCondition>,
    ) -> Result<(), kube::Error> {
        let mut next = ns.clone();
        let st = next.status.get_or_insert_with(Default::default);
        let old = st.conditions.clone().unwrap_or_default();
        let mut merged: Vec<NamespaceCondition> = Vec::new();
        for mut c in conditions {
            if let Some(o) = old.iter().find(|o| o.type_ == c.type_) {
                if o.status == c.status && o.reason == c.reason && o.message == c.message {
                    merged.push(o.clone());
                    continue;
                }
                if o.status == c.status {
                    c.last_transition_time = o.last_transition_time.clone();
                }
            }
            merged.push(c);
        }
        let unchanged = st.phase.as_deref() == Some("Terminating") && old == merged;
        if unchanged {
            return Ok(());
        }
        st.phase = Some("Terminating".into());
        st.conditions = Some(merged);
        let name = ns.metadata.name.clone().unwrap_or_default();
        Api::<Namespace>::all(self.client.clone())
            .replace_status(&name, &PostParams::default(), &next)
            .await
            .map(|_| ())
    }

    /// Upstream's `syncNamespaceFromKey`.
    async fn sync(&self, name: &str) -> Requeue {
        let Some(ns) = self.namespaces.get(name) else {
            return Requeue::Forget;
        };
        if ns.metadata.deletion_timestamp.is_none() {
            return Requeue::Forget;
        }
        let finalizers: Vec<String> = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default();
        let api = Api::<Namespace>::all(self.client.clone());
        tracing::debug!(
            namespace = name,
            ?finalizers,
            "syncing a namespace being deleted"
        );
        if finalizers.iter().any(|f| f == FINALIZER) {
            let content = self.delete_content(name).await;
            if let Err(e) = self.update_status(&ns, content.conditions()).await {
                tracing::info!(namespace = name, error = %client_base::errors::message(&e), "updating namespace status failed");
            }
            if !content.done() {
                tracing::info!(namespace = name, remaining = ?content.remaining, errors = ?content.errors, "content remains; checking again");
                return if content.errors.is_empty() && content.discovery_error.is_none() {
                    Requeue::After(Duration::from_secs(2))
                } else {
                    Requeue::Backoff
                };
            }
            // Empty: give up our finalizer.
            let mut fin = (*ns).clone();
            fin.spec.get_or_insert_with(Default::default).finalizers = Some(
                finalizers
                    .iter()
                    .filter(|f| *f != FINALIZER)
                    .cloned()
                    .collect(),
            );
            match api
                .replace_subresource("finalize", name, &PostParams::default(), &fin)
                .await
            {
                Ok(_) => {}
                Err(e) if client_base::errors::is_not_found(&e) => return Requeue::Forget,
                Err(e) => {
                    tracing::info!(namespace = name, error = %client_base::errors::message(&e), "finalizing failed");
                    return Requeue::Backoff;
                }
            }
            if finalizers.iter().any(|f| f != FINALIZER) {
                // Other finalizers hold it: their owners finish it.
                return Requeue::Forget;
            }
        } else if !finalizers.is_empty() {
            return Requeue::Forget;
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Requeue::Forget,
            Err(e) if client_base::errors::is_not_found(&e) => Requeue::Forget,
            Err(e) => {
                tracing::info!(namespace = name, error = %client_base::errors::message(&e), "deleting the namespace failed");
                Requeue::Backoff
            }
        }
    }
}

/// Starts the controller; runs its workers until the queue shuts down.
pub async fn run(
    client: kube::Client,
    factory: Arc<SharedInformerFactory>,
    workers: usize,
    metrics: Metrics,
) {
    let namespaces = factory.informer::<Namespace>();
    let c = Arc::new(Controller {
        client,
        namespaces: namespaces.clone(),
        queue: Queue::new("namespace", Some(metrics)),
    });
    let (a, u) = (c.clone(), c.clone());
    namespaces.add_handler(
        Funcs::new()
            .on_add(move |n: &Arc<Namespace>, _| {
                if n.metadata.deletion_timestamp.is_some() {
                    a.queue.add(n.metadata.name.clone().unwrap_or_default());
                }
            })
            .on_update(move |_, n: &Arc<Namespace>| {
                if n.metadata.deletion_timestamp.is_some() {
                    u.queue.add(n.metadata.name.clone().unwrap_or_default());
                }
            }),
    );
    factory.start();
    namespaces.wait_synced().await;
    let queue = c.queue.clone();
    run_workers(queue, workers, move |k: String| {
        let c = c.clone();
        async move { c.sync(&k).await }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_in_upstreams_words() {
        let mut c = Content::default();
        c.remaining.insert("pods".into(), 3);
        c.remaining.insert("widgets.example.com".into(), 1);
        c.finalizers.insert("example.com/hold".into(), 1);
        let conds = c.conditions();
        let get = |t: &str| conds.iter().find(|c| c.type_ == t).unwrap();
        let r = get("NamespaceContentRemaining");
        assert_eq!(
            (r.status.as_str(), r.reason.as_deref()),
            ("True", Some("SomeResourcesRemain"))
        );
        assert_eq!(
            r.message.as_deref(),
            Some(
                "Some resources are remaining: pods has 3 resource instances, widgets.example.com has 1 resource instances"
            )
        );
        let f = get("NamespaceFinalizersRemaining");
        assert_eq!(
            f.message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
            )
        );
        let d = get("NamespaceDeletionDiscoveryFailure");
        assert_eq!(
            (d.status.as_str(), d.reason.as_deref()),
            ("False", Some("ResourcesDiscovered"))
        );
        assert!(!c.done());
        assert!(Content::default().done());
    }
}
