//! The garbage collector (upstream's `garbage-collector-controller`): deletes objects
//! whose owners are gone, and carries out the two deletion modes the apiserver hands
//! over through finalizers.
//!
//! ```text
//!  monitors (one metadata watch per deletable resource)
//!      │ Observed / deleted uid
//!      ▼
//!  Graph (uid → node, owners ↔ dependents)  ──Work──▶  attempt_to_delete queue ─┐
//!                                             └─────▶  attempt_to_orphan queue ─┤
//!                                                                               ▼
//!                                     workers: read the live object through [`Cluster`],
//!                                     then delete it, strip ownerReferences, or drop a
//!                                     finalizer; the monitors see the result
//! ```
//!
//! - **Dangling owners.** A dependent all of whose owners are absent (not found, or
//!   found with another uid) is deleted, with the propagation its own finalizers ask
//!   for (background otherwise). With one owner still present, only the references
//!   to absent owners and to owners waiting on their dependents are removed.
//! - **Foreground** (`foregroundDeletion` finalizer on an owner being deleted): the
//!   dependents are deleted; once no dependent with `blockOwnerDeletion` remains,
//!   the finalizer is removed and the apiserver deletes the owner.
//! - **Orphan** (`orphan` finalizer): the owner's uid is removed from every
//!   dependent's ownerReferences, then the finalizer is removed.
//!
//! Workers start only once every monitor has listed, so that an owner's dependents
//! are all known before it is orphaned or finished. Writes are JSON merge patches
//! carrying the object's resourceVersion as a precondition; a conflict requeues with
//! backoff.

pub mod graph;
pub mod monitors;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};

use client_base::workqueue::{self, Queue, Requeue, run_workers};
use graph::{FOREGROUND, Graph, Node, ORPHAN, ObjectRef, Observed, OwnerRef, Work};

/// Garbage collector failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An ownerReference names a kind the apiserver does not serve.
    #[error("unable to get REST mapping for {0}.")]
    UnknownKind(String),
    /// A cluster-scoped object names a namespaced owner: never valid, never retried.
    #[error("cluster-scoped objects cannot refer to namespaced owners")]
    NamespacedOwnerOfClusterScoped(String),
    /// A write lost a race; retried.
    #[error("{0}")]
    Conflict(String),
    /// The object is gone.
    #[error("not found")]
    NotFound,
    /// Anything else from the apiserver.
    #[error("{0}")]
    Api(String),
}

/// The live metadata of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// uid.
    pub uid: String,
    /// resourceVersion.
    pub resource_version: String,
    /// ownerReferences.
    pub owners: Vec<OwnerRef>,
    /// finalizers.
    pub finalizers: Vec<String>,
    /// Whether it has a deletionTimestamp.
    pub being_deleted: bool,
}

/// DeleteOptions.propagationPolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Orphan the dependents.
    Orphan,
    /// Delete now; the collector deletes the dependents afterwards.
    Background,
    /// Delete the dependents first.
    Foreground,
}

impl Propagation {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Orphan => "Orphan",
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
        }
    }
}

/// The apiserver, as the collector uses it.
pub trait Cluster: Send + Sync + 'static {
    /// Whether `kind` of `api_version` is namespaced.
    fn namespaced(&self, api_version: &str, kind: &str) -> Result<bool, Error>;
    /// The live object `r` names (by apiVersion, kind, namespace and name).
    fn get(&self, r: &ObjectRef) -> impl Future<Output = Result<Option<Meta>, Error>> + Send;
    /// Deletes `r` if it still has `uid` and `resource_version`.
    fn delete(
        &self,
        r: &ObjectRef,
        policy: Propagation,
        resource_version: &str,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    /// Applies a JSON merge patch to `r`.
    fn patch(&self, r: &ObjectRef, patch: Value) -> impl Future<Output = Result<(), Error>> + Send;
}

/// The collector: the graph, its two queues, and the cluster it acts on.
pub struct GarbageCollector<C> {
    graph: Mutex<Graph>,
    cluster: C,
    /// `garbage_collector_attempt_to_delete`.
    pub delete_queue: Arc<Queue<String>>,
    /// `garbage_collector_attempt_to_orphan`.
    pub orphan_queue: Arc<Queue<String>>,
}

impl<C: Cluster> GarbageCollector<C> {
    /// A collector over `cluster`.
    pub fn new(cluster: C, metrics: Option<workqueue::Metrics>) -> Arc<Self> {
        Arc::new(GarbageCollector {
            graph: Mutex::new(Graph::default()),
            cluster,
            delete_queue: Queue::new("garbage_collector_attempt_to_delete", metrics.clone()),
            orphan_queue: Queue::new("garbage_collector_attempt_to_orphan", metrics),
        })
    }

    fn enqueue(&self, work: Vec<Work>) {
        for w in work {
            match w {
                Work::Delete(uid) => self.delete_queue.add(uid),
                Work::Orphan(uid) => self.orphan_queue.add(uid),
            }
        }
    }

    /// A monitor saw `o` added or updated.
    pub fn observe(&self, o: Observed) {
        let work = self.graph.lock().upsert(o);
        self.enqueue(work);
    }

    /// A monitor saw the object with `uid` deleted.
    pub fn observe_deleted(&self, uid: &str) {
        let work = self.graph.lock().remove(uid);
        self.enqueue(work);
    }

    /// The cluster the collector acts on.
    pub fn cluster(&self) -> &C {
        &self.cluster
    }

    /// A lookup found the object with `uid` absent (or replaced by a namesake): upstream's
    /// virtual delete event. A node only named by dependents is removed and its
    /// dependents checked. A node a monitor has seen stays (its monitor reports its
    /// deletion); its dependents are checked, since some may name it by other
    /// coordinates than the ones it really has.
    fn virtual_delete(&self, uid: &str) {
        let work = self.graph.lock().remove_virtual(uid);
        self.enqueue(work);
    }

    /// How many objects the graph holds.
    pub fn graph_len(&self) -> usize {
        self.graph.lock().len()
    }

    fn node(&self, uid: &str) -> Option<Node> {
        self.graph.lock().node(uid).cloned()
    }

    /// Upstream's `attemptToDeleteItem` for the node with `uid`.
    pub async fn attempt_to_delete(&self, uid: &str) -> Result<(), Error> {
        let Some(item) = self.node(uid) else {
            return Ok(());
        };
        // Being deleted is a one-way trip: wait for the deletion, then see to its
        // dependents.
        if item.being_deleted && !item.deleting_dependents {
            return Ok(());
        }
        let latest = match self.cluster.get(&item.identity).await? {
            Some(m) if m.uid == item.identity.uid => m,
            // Gone, or replaced by a namesake: a virtual delete event.
            _ => {
                tracing::debug!(item = %item.identity, "item not found, generating a virtual delete event");
                self.virtual_delete(uid);
                return Ok(());
            }
        };
        if item.deleting_dependents {
            return self.process_deleting_dependents(&item).await;
        }
        if latest.owners.is_empty() {
            return Ok(());
        }
        let (solid, dangling, waiting) = self.classify(&item, &latest.owners).await?;
        tracing::debug!(item = %item.identity, ?solid, ?dangling, ?waiting, "classified owner references");
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(());
            }
            // References to absent owners, and to owners waiting for their dependents
            // (which would otherwise wait for this one forever), are removed.
            let drop: Vec<&str> = dangling
                .iter()
                .chain(&waiting)
                .map(|r| r.uid.as_str())
                .collect();
            tracing::info!(item = %item.identity, owners = ?drop, "removing dangling and waiting owner references");
            let keep: Vec<&OwnerRef> = latest
                .owners
                .iter()
                .filter(|r| !drop.contains(&r.uid.as_str()))
                .collect();
            return self
                .patch_owner_refs(&item.identity, &latest, keep, false)
                .await;
        }
        let has_dependents = !self.graph.lock().dependents(uid).is_empty();
        if !waiting.is_empty() && has_dependents {
            // An owner waits for this item, which has dependents of its own: delete it
            // in the foreground too. If one of its dependents is itself deleting its
            // dependents, unblock this item's references first, so that a cycle of
            // foreground deletions cannot wait on itself.
            let cycle = self
                .graph
                .lock()
                .dependents(uid)
                .iter()
                .any(|d| d.deleting_dependents);
            if cycle {
                let all: Vec<&OwnerRef> = latest.owners.iter().collect();
                self.patch_owner_refs(&item.identity, &latest, all, true)
                    .await?;
            }
            tracing::info!(item = %item.identity, "an owner is waiting for its dependents, and the item has dependents: deleting it in the foreground");
            return self
                .delete(&item, Propagation::Foreground, &latest.resource_version)
                .await;
        }
        // No owner is left: collect it, honouring a propagation its finalizers ask for.
        let policy = if latest.finalizers.iter().any(|f| f == ORPHAN) {
            Propagation::Orphan
        } else if latest.finalizers.iter().any(|f| f == FOREGROUND) {
            Propagation::Foreground
        } else {
            Propagation::Background
        };
        tracing::info!(item = %item.identity, propagation = policy.as_str(), "deleting item");
        self.delete(&item, policy, &latest.resource_version).await
    }

    /// Deletes `item` if it is still at `rv`. On a conflict whose cause left the
    /// ownerReferences unchanged (a status write, a label), deletes again with only
    /// the uid precondition, as upstream's `deleteObject`.
    async fn delete(&self, item: &Node, policy: Propagation, rv: &str) -> Result<(), Error> {
        let mut result = self.cluster.delete(&item.identity, policy, rv).await;
        if let Err(Error::Conflict(_)) = &result
            && let Ok(Some(live)) = self.cluster.get(&item.identity).await
        {
            let read_owners = self.node(&item.identity.uid).map(|n| n.owners);
            if live.uid == item.identity.uid && Some(&live.owners) == read_owners.as_ref() {
                result = self.cluster.delete(&item.identity, policy, "").await;
            }
        }
        match result {
            Err(Error::NotFound) => {
                self.virtual_delete(&item.identity.uid);
                Ok(())
            }
            r => r,
        }
    }

    /// Sorts `refs` into solid (the owner exists and is not waiting for its
    /// dependents), dangling (absent) and waiting (being deleted in the foreground).
    async fn classify(
        &self,
        item: &Node,
        refs: &[OwnerRef],
    ) -> Result<(Vec<OwnerRef>, Vec<OwnerRef>, Vec<OwnerRef>), Error> {
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for r in refs {
            let namespaced = self.cluster.namespaced(&r.api_version, &r.kind)?;
            if namespaced && item.identity.namespace.is_empty() {
                return Err(Error::NamespacedOwnerOfClusterScoped(
                    item.identity.to_string(),
                ));
            }
            let owner = ObjectRef {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                namespace: if namespaced {
                    item.identity.namespace.clone()
                } else {
                    String::new()
                },
                name: r.name.clone(),
                uid: r.uid.clone(),
            };
            match self.cluster.get(&owner).await? {
                Some(m) if m.uid == r.uid => {
                    if m.being_deleted && m.finalizers.iter().any(|f| f == FOREGROUND) {
                        waiting.push(r.clone());
                    } else {
                        solid.push(r.clone());
                    }
                }
                _ => dangling.push(r.clone()),
            }
        }
        Ok((solid, dangling, waiting))
    }

    async fn process_deleting_dependents(&self, item: &Node) -> Result<(), Error> {
        let blocking: Vec<(String, bool)> = self
            .graph
            .lock()
            .blocking_dependents(&item.identity.uid)
            .iter()
            .map(|d| (d.identity.uid.clone(), d.deleting_dependents))
            .collect();
        if blocking.is_empty() {
            tracing::info!(item = %item.identity, "removing the foregroundDeletion finalizer");
            return self.remove_finalizer(&item.identity, FOREGROUND).await;
        }
        for (dep, deleting) in blocking {
            if !deleting {
                self.delete_queue.add(dep);
            }
        }
        Ok(())
    }

    /// Upstream's `attemptToOrphanWorker` for the owner with `uid`.
    pub async fn attempt_to_orphan(&self, uid: &str) -> Result<(), Error> {
        let Some(owner) = self.node(uid) else {
            return Ok(());
        };
        let dependents: Vec<ObjectRef> = self
            .graph
            .lock()
            .dependents(uid)
            .iter()
            .map(|d| d.identity.clone())
            .collect();
        let mut failed = Vec::new();
        for dep in &dependents {
            let r = match self.cluster.get(dep).await {
                Ok(Some(m)) if m.uid == dep.uid => {
                    let keep: Vec<&OwnerRef> = m.owners.iter().filter(|r| r.uid != uid).collect();
                    if keep.len() == m.owners.len() {
                        Ok(())
                    } else {
                        self.patch_owner_refs(dep, &m, keep, false).await
                    }
                }
                Ok(_) | Err(Error::NotFound) => Ok(()),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) | Err(Error::NotFound) => {}
                Err(e) => failed.push(format!("orphaning {dep} failed, {e}")),
            }
        }
        if !failed.is_empty() {
            return Err(Error::Api(format!(
                "failed to orphan dependents of owner {}, got errors: {}",
                owner.identity,
                failed.join(", ")
            )));
        }
        self.remove_finalizer(&owner.identity, ORPHAN).await
    }

    /// Writes `keep` as `r`'s ownerReferences (with blockOwnerDeletion cleared when
    /// `unblock`), conditional on the resourceVersion read.
    async fn patch_owner_refs(
        &self,
        r: &ObjectRef,
        latest: &Meta,
        keep: Vec<&OwnerRef>,
        unblock: bool,
    ) -> Result<(), Error> {
        let refs: Vec<Value> = keep
            .into_iter()
            .map(|o| {
                let mut v = json!({
                    "apiVersion": o.api_version,
                    "kind": o.kind,
                    "name": o.name,
                    "uid": o.uid,
                });
                if let Some(c) = o.controller {
                    v["controller"] = json!(c);
                }
                match (unblock, o.block_owner_deletion) {
                    (true, _) => v["blockOwnerDeletion"] = json!(false),
                    (false, Some(b)) => v["blockOwnerDeletion"] = json!(b),
                    (false, None) => {}
                }
                v
            })
            .collect();
        self.cluster
            .patch(
                r,
                json!({"metadata": {"ownerReferences": refs, "resourceVersion": latest.resource_version}}),
            )
            .await
    }

    /// Removes `finalizer` from `r`, re-reading on conflict as upstream's
    /// `removeFinalizer` does.
    async fn remove_finalizer(&self, r: &ObjectRef, finalizer: &str) -> Result<(), Error> {
        let mut last = None;
        // Upstream's retry.DefaultBackoff: 10 ms, ×5 each step, 4 steps.
        for step in 0..4u32 {
            if step > 0 {
                tokio::time::sleep(Duration::from_millis(10 * 5u64.pow(step - 1))).await;
            }
            let Some(m) = self.cluster.get(r).await? else {
                return Ok(());
            };
            if m.uid != r.uid || !m.finalizers.iter().any(|f| f == finalizer) {
                return Ok(());
            }
            let rest: Vec<&String> = m.finalizers.iter().filter(|f| *f != finalizer).collect();
            match self
                .cluster
                .patch(
                    r,
                    json!({"metadata": {"finalizers": rest, "resourceVersion": m.resource_version}}),
                )
                .await
            {
                Ok(()) | Err(Error::NotFound) => return Ok(()),
                Err(Error::Conflict(e)) => last = Some(Error::Conflict(e)),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::Conflict(format!("removing {finalizer} from {r}"))))
    }

    /// Runs `workers` attempt-to-delete workers until the queue shuts down.
    pub async fn delete_workers(self: Arc<Self>, workers: usize) {
        let gc = self.clone();
        run_workers(self.delete_queue.clone(), workers, move |uid: String| {
            let gc = gc.clone();
            async move {
                let result = gc.attempt_to_delete(&uid).await;
                // A virtual node that exists is checked again, with backoff, until a
                // monitor sees it.
                if result.is_ok() && gc.node(&uid).is_some_and(|n| !n.observed) {
                    Requeue::Backoff
                } else {
                    Self::finish(&uid, result, "attemptToDelete")
                }
            }
        })
        .await;
    }

    /// Runs `workers` attempt-to-orphan workers until the queue shuts down.
    pub async fn orphan_workers(self: Arc<Self>, workers: usize) {
        let gc = self.clone();
        run_workers(self.orphan_queue.clone(), workers, move |uid: String| {
            let gc = gc.clone();
            async move {
                let result = gc.attempt_to_orphan(&uid).await;
                Self::finish(&uid, result, "attemptToOrphan")
            }
        })
        .await;
    }

    fn finish(uid: &str, result: Result<(), Error>, what: &str) -> Requeue {
        match result {
            Ok(()) => Requeue::Forget,
            Err(e @ Error::NamespacedOwnerOfClusterScoped(_)) => {
                // Never valid: reported, not retried.
                tracing::warn!(error = %e, "{what}: ignoring invalid ownerReference");
                Requeue::Forget
            }
            Err(e) => {
                tracing::info!(uid, error = %e, "{what} failed; requeueing");
                Requeue::Backoff
            }
        }
    }
}

#[cfg(test)]
mod tests;
