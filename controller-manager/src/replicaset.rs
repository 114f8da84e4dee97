//! The replicaset controller, as upstream's `pkg/controller/replicaset`: each
//! ReplicaSet gets as many active pods as `spec.replicas` asks for.
//!
//! ```text
//!  informers (shared): replicasets ─┬─▶ queue of ns/name ─▶ workers (--concurrent-replicaset-syncs)
//!                      pods ────────┘   (a pod's controller, or the sets that
//!                                        select an orphan; expectations observed)
//!  sync: active pods of the namespace ─▶ claim (adopt orphans, release strays)
//!        ─▶ expectations satisfied? ─▶ create (slow start 1, 2, 4, …; at most 500)
//!           or delete (upstream's ranking: unscheduled, pending, not ready, …)
//!        ─▶ status (replicas, fullyLabeled, ready, available, observedGeneration,
//!           ReplicaFailure) ─▶ PUT status if it changed
//! ```
//!
//! Every API write goes through [`Cluster`] and every event through [`Events`],
//! and the informers are read through [`Store`], so the sync is unit-tested
//! against in-memory fakes; the e2e tests run it against the real apiserver.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};

use client_base::informer::{Funcs, Informer, NAMESPACE, SharedInformerFactory};
use client_base::workqueue::{Metrics, Queue, Requeue, run_workers};

use crate::controller_ref::{Claimer, Claims};
use crate::controller_utils::{
    Expectations, SLOW_START_INITIAL_BATCH, controller_of, controller_ref, is_pod_active,
    is_pod_available, is_pod_ready, pod_from_template, pod_key, pods_to_delete, slow_start_batch,
};

/// The controller's name (its `--controllers` name and its service account's).
pub const NAME: &str = "replicaset-controller";
/// Upstream's `BurstReplicas`: creates or deletes per sync.
pub const BURST_REPLICAS: usize = 500;
/// Upstream's `statusUpdateRetries`.
const STATUS_UPDATE_RETRIES: usize = 1;

/// Which kind the controller manages: ReplicaSets, or ReplicationControllers
/// (upstream runs the same controller for both, converting the latter).
#[derive(Debug)]
pub struct Kind {
    /// `ReplicaSet` or `ReplicationController`.
    pub kind: &'static str,
    /// `apps/v1` or `v1`.
    pub api_version: &'static str,
    /// The work queue's name (`replicaset`, `replicationmanager`).
    pub queue: &'static str,
}

/// ReplicaSets.
pub const REPLICA_SET: Kind = Kind {
    kind: "ReplicaSet",
    api_version: "apps/v1",
    queue: "replicaset",
};

/// The writes the controller makes (the API, or a fake in tests).
pub trait Cluster: Send + Sync {
    /// Creates a pod; the stored pod.
    fn create_pod<'a>(&'a self, ns: &'a str, pod: Pod) -> BoxFuture<'a, Result<Pod, kube::Error>>;
    /// Deletes a pod.
    fn delete_pod<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), kube::Error>>;
    /// A strategic merge patch of a pod (adoption, release).
    fn patch_pod<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        patch: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), kube::Error>>;
    /// A ReplicaSet as the API has it now.
    fn get_replica_set<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReplicaSet>, kube::Error>>;
    /// Writes a ReplicaSet's status; the stored object.
    fn update_status(&self, rs: ReplicaSet) -> BoxFuture<'_, Result<ReplicaSet, kube::Error>>;
}

/// Where the controller's events go.
pub trait Events: Send + Sync {
    /// An event about `rs`.
    fn event(&self, rs: &ReplicaSet, warning: bool, reason: &str, note: String);
}

/// What the controller reads (the shared informers, or maps in tests).
pub trait Store: Send + Sync {
    /// The ReplicaSet `namespace/name`.
    fn replica_set(&self, key: &str) -> Option<Arc<ReplicaSet>>;
    /// The ReplicaSets of a namespace.
    fn replica_sets_in(&self, ns: &str) -> Vec<Arc<ReplicaSet>>;
    /// The pods of a namespace.
    fn pods_in(&self, ns: &str) -> Vec<Arc<Pod>>;
}

/// [`Store`] over the shared informers.
pub struct InformerStore {
    rss: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
}

impl Store for InformerStore {
    fn replica_set(&self, key: &str) -> Option<Arc<ReplicaSet>> {
        self.rss.get(key)
    }
    fn replica_sets_in(&self, ns: &str) -> Vec<Arc<ReplicaSet>> {
        self.rss.by_index(NAMESPACE, ns)
    }
    fn pods_in(&self, ns: &str) -> Vec<Arc<Pod>> {
        self.pods.by_index(NAMESPACE, ns)
    }
}

/// [`Cluster`] through the controller's client.
pub struct ApiCluster {
    /// The controller's client (its own service account).
    pub client: kube::Client,
}

impl Cluster for ApiCluster {
    fn create_pod<'a>(&'a self, ns: &'a str, pod: Pod) -> BoxFuture<'a, Result<Pod, kube::Error>> {
        Box::pin(async move {
            Api::<Pod>::namespaced(self.client.clone(), ns)
                .create(&PostParams::default(), &pod)
                .await
        })
    }
    fn delete_pod<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        Box::pin(async move {
            Api::<Pod>::namespaced(self.client.clone(), ns)
                .delete(name, &Default::default())
                .await
                .map(|_| ())
        })
    }
    fn patch_pod<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        patch: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        Box::pin(async move {
            Api::<Pod>::namespaced(self.client.clone(), ns)
                .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
                .map(|_| ())
        })
    }
    fn get_replica_set<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReplicaSet>, kube::Error>> {
        Box::pin(async move {
            Api::<ReplicaSet>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await
        })
    }
    fn update_status(&self, rs: ReplicaSet) -> BoxFuture<'_, Result<ReplicaSet, kube::Error>> {
        Box::pin(async move {
            let ns = rs.metadata.namespace.clone().unwrap_or_default();
            let name = rs.metadata.name.clone().unwrap_or_default();
            Api::<ReplicaSet>::namespaced(self.client.clone(), &ns)
                .replace_status(&name, &PostParams::default(), &rs)
                .await
        })
    }
}

/// [`Events`] through the shared recorder, about objects of `kind`.
pub struct RecorderEvents(pub client_base::events::Recorder, pub &'static Kind);

impl Events for RecorderEvents {
    fn event(&self, rs: &ReplicaSet, warning: bool, reason: &str, note: String) {
        let t = if warning {
            client_base::events::Type::Warning
        } else {
            client_base::events::Type::Normal
        };
        let regarding = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(self.1.api_version.into()),
            kind: Some(self.1.kind.into()),
            name: rs.metadata.name.clone(),
            namespace: rs.metadata.namespace.clone(),
            uid: rs.metadata.uid.clone(),
            resource_version: rs.metadata.resource_version.clone(),
            ..Default::default()
        };
        self.0.event(regarding, None, t, reason, reason, note);
    }
}

pub use crate::controller_utils::key;

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn min_ready_seconds(rs: &ReplicaSet) -> i32 {
    rs.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// Upstream's `calculateStatus`.
pub fn calculate_status(
    rs: &ReplicaSet,
    pods: &[&Pod],
    manage_err: Option<&str>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let empty = Default::default();
    let (mut fully, mut ready, mut available) = (0, 0, 0);
    for p in pods {
        let labels = p.metadata.labels.as_ref().unwrap_or(&empty);
        if client_base::selectors::matches_set(&template_labels, labels) {
            fully += 1;
        }
        if is_pod_ready(p) {
            ready += 1;
            if is_pod_available(p, min_ready_seconds(rs), now) {
                available += 1;
            }
        }
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let failure = conditions.iter().position(|c| c.type_ == "ReplicaFailure");
    match (manage_err, failure) {
        (Some(msg), None) => {
            let diff = pods.len() as i64 - i64::from(replicas(rs));
            let reason = match diff {
                d if d < 0 => "FailedCreate",
                d if d > 0 => "FailedDelete",
                _ => "",
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(msg.to_owned()),
                last_transition_time: Some(Time(now)),
            });
        }
        (None, Some(i)) => {
            conditions.remove(i);
        }
        _ => {}
    }
    if status.conditions.as_ref().is_some_and(Vec::is_empty) {
        status.conditions = None;
    }
    status.replicas = pods.len() as i32;
    status.fully_labeled_replicas = Some(fully);
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status
}

fn same_status(a: &ReplicaSetStatus, b: &ReplicaSetStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    a.replicas == b.replicas
        && n(a.fully_labeled_replicas) == n(b.fully_labeled_replicas)
        && n(a.ready_replicas) == n(b.ready_replicas)
        && n(a.available_replicas) == n(b.available_replicas)
        && a.conditions.as_deref().unwrap_or_default()
            == b.conditions.as_deref().unwrap_or_default()
}

/// The message of an API error, as upstream's `%v` of a StatusError.
fn message(e: &kube::Error) -> String {
    client_base::errors::message(e)
}

fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("because it is being terminated"))
}

/// The controller.
pub struct Controller {
    kind: &'static Kind,
    store: Arc<dyn Store>,
    cluster: Arc<dyn Cluster>,
    events: Arc<dyn Events>,
    expectations: Expectations,
    queue: Arc<Queue<String>>,
    burst: usize,
}

struct OwnerClaims<'a> {
    cluster: &'a dyn Cluster,
    ns: &'a str,
    name: &'a str,
}

impl Claims for OwnerClaims<'_> {
    fn fresh_owner(&self) -> BoxFuture<'_, Result<Option<ObjectMeta>, kube::Error>> {
        Box::pin(async move {
            Ok(self
                .cluster
                .get_replica_set(self.ns, self.name)
                .await?
                .map(|rs| rs.metadata))
        })
    }
    fn patch<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        patch: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        self.cluster.patch_pod(namespace, name, patch)
    }
}

impl Controller {
    /// A controller of `kind` over `store`, writing through `cluster`.
    pub fn new(
        kind: &'static Kind,
        store: Arc<dyn Store>,
        cluster: Arc<dyn Cluster>,
        events: Arc<dyn Events>,
        metrics: Option<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Controller {
            kind,
            store,
            cluster,
            events,
            expectations: Expectations::default(),
            queue: Queue::new(kind.queue, metrics),
            burst: BURST_REPLICAS,
        })
    }

    /// The work queue.
    pub fn queue(&self) -> &Arc<Queue<String>> {
        &self.queue
    }

    /// The ReplicaSet a controller reference names, if it exists with that UID.
    fn resolve(&self, ns: &str, r: &OwnerReference) -> Option<Arc<ReplicaSet>> {
        let group = |v: &str| v.rsplit_once('/').map_or("", |(g, _)| g).to_owned();
        if r.kind != self.kind.kind || group(&r.api_version) != group(self.kind.api_version) {
            return None;
        }
        let rs = self.store.replica_set(&format!("{ns}/{}", r.name))?;
        (rs.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(rs)
    }

    /// The ReplicaSets whose selector matches an orphan pod.
    fn sets_selecting(&self, pod: &Pod) -> Vec<Arc<ReplicaSet>> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.store
            .replica_sets_in(ns)
            .into_iter()
            .filter(|rs| {
                rs.spec.as_ref().is_some_and(|s| {
                    crate::controller_utils::selects_orphan(&s.selector, &pod.metadata)
                })
            })
            .collect()
    }

    /// A pod appeared (upstream's `addPod`).
    pub fn pod_added(&self, pod: &Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            return self.pod_deleted(pod);
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(r) = controller_of(&pod.metadata) {
            if let Some(rs) = self.resolve(ns, r) {
                let k = key(&rs.metadata);
                self.expectations.creation_observed(&k);
                self.queue.add(k);
            }
            return;
        }
        for rs in self.sets_selecting(pod) {
            self.queue.add(key(&rs.metadata));
        }
    }

    /// A pod changed (upstream's `updatePod`).
    pub fn pod_updated(&self, old: &Pod, new: &Pod) {
        if old.metadata.resource_version == new.metadata.resource_version {
            return;
        }
        let labels_changed = old.metadata.labels != new.metadata.labels;
        if new.metadata.deletion_timestamp.is_some() {
            // A graceful delete began: replace the pod now, not when it is gone.
            self.pod_deleted(new);
            if labels_changed {
                self.pod_deleted(old);
            }
            return;
        }
        let ns = new.metadata.namespace.as_deref().unwrap_or_default();
        let (old_ref, new_ref) = (controller_of(&old.metadata), controller_of(&new.metadata));
        let ref_changed = old_ref != new_ref;
        if ref_changed
            && let Some(r) = old_ref
            && let Some(rs) = self.resolve(ns, r)
        {
            self.queue.add(key(&rs.metadata));
        }
        if let Some(r) = new_ref {
            if let Some(rs) = self.resolve(ns, r) {
                self.queue.add(key(&rs.metadata));
                let min_ready = min_ready_seconds(&rs);
                if !is_pod_ready(old) && is_pod_ready(new) && min_ready > 0 {
                    let d = Duration::from_secs(min_ready as u64 + 1);
                    self.queue.add_after(key(&rs.metadata), d);
                }
            }
            return;
        }
        if labels_changed || ref_changed {
            for rs in self.sets_selecting(new) {
                self.queue.add(key(&rs.metadata));
            }
        }
    }

    /// A pod is gone, or being deleted (upstream's `deletePod`).
    pub fn pod_deleted(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(rs) = controller_of(&pod.metadata).and_then(|r| self.resolve(ns, r)) else {
            return;
        };
        let k = key(&rs.metadata);
        self.expectations.deletion_observed(&k, &pod_key(pod));
        self.queue.add(k);
    }

    /// A ReplicaSet was deleted.
    pub fn replica_set_deleted(&self, rs: &ReplicaSet) {
        let k = key(&rs.metadata);
        self.expectations.delete(&k);
        self.queue.add(k);
    }

    /// The pods of this set and of its siblings (sets with the same controller),
    /// for the deletion ranking.
    fn related_pods(&self, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        let sets: Vec<Arc<ReplicaSet>> = match controller_of(&rs.metadata) {
            None => vec![Arc::new(rs.clone())],
            Some(owner) => self
                .store
                .replica_sets_in(ns)
                .into_iter()
                .filter(|s| controller_of(&s.metadata).is_some_and(|r| r.uid == owner.uid))
                .collect(),
        };
        let pods = self.store.pods_in(ns);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for s in sets {
            let Some(sel) = s.spec.as_ref().map(|s| &s.selector) else {
                continue;
            };
            for p in &pods {
                let empty = Default::default();
                let labels = p.metadata.labels.as_ref().unwrap_or(&empty);
                if client_base::selectors::matches(sel, labels)
                    && seen.insert(p.metadata.uid.clone())
                {
                    out.push(p.clone());
                }
            }
        }
        out
    }

    /// Upstream's `manageReplicas`: creates or deletes toward `spec.replicas`.
    async fn manage_replicas(&self, pods: &[&Pod], rs: &ReplicaSet, k: &str) -> Result<(), String> {
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        let name = rs.metadata.name.as_deref().unwrap_or_default();
        let diff = pods.len() as i64 - i64::from(replicas(rs));
        if diff < 0 {
            let n = (diff.unsigned_abs() as usize).min(self.burst);
            self.expectations.expect_creations(k, n);
            tracing::info!(
                replicaset = k,
                need = replicas(rs),
                creating = n,
                "Too few replicas"
            );
            let template = rs
                .spec
                .as_ref()
                .and_then(|s| s.template.clone())
                .unwrap_or_default();
            let owner = controller_ref(&rs.metadata, self.kind.api_version, self.kind.kind);
            let (created, err) = slow_start_batch(n, SLOW_START_INITIAL_BATCH, || {
                let pod = pod_from_template(&template, name, owner.clone());
                async move {
                    if pod.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
                        return Err("unable to create pods, no labels".to_owned());
                    }
                    match self.cluster.create_pod(ns, pod).await {
                        Ok(p) => {
                            let pname = p.metadata.name.unwrap_or_default();
                            self.events.event(
                                rs,
                                false,
                                "SuccessfulCreate",
                                format!("Created pod: {pname}"),
                            );
                            Ok(())
                        }
                        // The namespace is going away: every create would fail.
                        Err(e) if namespace_terminating(&e) => Ok(()),
                        Err(e) => {
                            let msg = message(&e);
                            self.events.event(
                                rs,
                                true,
                                "FailedCreate",
                                format!("Error creating: {msg}"),
                            );
                            Err(msg)
                        }
                    }
                }
            })
            .await;
            // Creates never attempted will never be observed.
            for _ in created..n {
                self.expectations.creation_observed(k);
            }
            return err.map_or(Ok(()), Err);
        }
        if diff > 0 {
            let n = (diff as usize).min(self.burst);
            tracing::info!(
                replicaset = k,
                need = replicas(rs),
                deleting = n,
                "Too many replicas"
            );
            let related = self.related_pods(rs);
            let related: Vec<&Pod> = related.iter().map(|p| p.as_ref()).collect();
            let victims = pods_to_delete(pods, &related, n, Timestamp::now());
            self.expectations
                .expect_deletions(k, victims.iter().map(|p| pod_key(p)).collect());
            let results = join_all(victims.iter().map(|p| async move {
                let pname = p.metadata.name.as_deref().unwrap_or_default();
                match self.cluster.delete_pod(ns, pname).await {
                    Ok(()) => {
                        self.events.event(
                            rs,
                            false,
                            "SuccessfulDelete",
                            format!("Deleted pod: {pname}"),
                        );
                        Ok(())
                    }
                    Err(e) => {
                        self.expectations.deletion_observed(k, &pod_key(p));
                        if client_base::errors::is_not_found(&e) {
                            return Ok(());
                        }
                        let msg = message(&e);
                        self.events.event(
                            rs,
                            true,
                            "FailedDelete",
                            format!("Error deleting: {msg}"),
                        );
                        Err(msg)
                    }
                }
            }))
            .await;
            if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Upstream's `updateReplicaSetStatus`: writes the status when it changed
    /// (or the generation did), retrying once on a fresh copy.
    async fn update_status(
        &self,
        rs: &ReplicaSet,
        status: ReplicaSetStatus,
    ) -> Result<ReplicaSet, kube::Error> {
        let old = rs.status.clone().unwrap_or_default();
        let generation = rs.metadata.generation;
        if same_status(&old, &status) && old.observed_generation == generation {
            return Ok(rs.clone());
        }
        let mut status = status;
        status.observed_generation = generation;
        let mut current = rs.clone();
        let mut attempt = 0;
        loop {
            current.status = Some(status.clone());
            match self.cluster.update_status(current.clone()).await {
                Ok(u) => return Ok(u),
                Err(e) if attempt >= STATUS_UPDATE_RETRIES => return Err(e),
                Err(_) => {
                    attempt += 1;
                    let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
                    let name = rs.metadata.name.as_deref().unwrap_or_default();
                    match self.cluster.get_replica_set(ns, name).await? {
                        Some(fresh) => current = fresh,
                        None => return Ok(rs.clone()),
                    }
                }
            }
        }
    }

    /// Upstream's `syncReplicaSet` for `k` (`namespace/name`).
    pub async fn sync(&self, k: &str) -> Requeue {
        let Some(rs) = self.store.replica_set(k) else {
            self.expectations.delete(k);
            return Requeue::Forget;
        };
        let needs_sync = self.expectations.satisfied(k);
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        let name = rs.metadata.name.as_deref().unwrap_or_default();
        let Some(selector) = rs.spec.as_ref().map(|s| &s.selector) else {
            return Requeue::Forget;
        };
        if client_base::selectors::label_selector(selector).is_none() {
            tracing::error!("error converting pod selector to selector for rs {k}");
            return Requeue::Forget;
        }
        let all = self.store.pods_in(ns);
        let active: Vec<&Pod> = all
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| is_pod_active(p))
            .collect();
        let claims = OwnerClaims {
            cluster: self.cluster.as_ref(),
            ns,
            name,
        };
        let claimer = Claimer {
            kind: "Pod",
            owner: &rs.metadata,
            owner_ref: controller_ref(&rs.metadata, self.kind.api_version, self.kind.kind),
            selector,
            api: &claims,
        };
        let (pods, errors) = claimer.claim(active).await;
        if let Some(e) = errors.first() {
            tracing::info!(replicaset = k, error = %e, "claiming pods failed; requeueing");
            return Requeue::Backoff;
        }
        let mut manage_err = None;
        if needs_sync && rs.metadata.deletion_timestamp.is_none() {
            manage_err = self.manage_replicas(&pods, &rs, k).await.err();
        }
        let status = calculate_status(&rs, &pods, manage_err.as_deref(), Timestamp::now());
        let updated = match self.update_status(&rs, status).await {
            Ok(u) => u,
            Err(e) => {
                tracing::info!(replicaset = k, error = %message(&e), "updating status failed; requeueing");
                return Requeue::Backoff;
            }
        };
        if let Some(e) = manage_err {
            tracing::info!(replicaset = k, error = %e, "sync failed; requeueing");
            return Requeue::Backoff;
        }
        let st = updated.status.clone().unwrap_or_default();
        let min_ready = min_ready_seconds(&updated);
        if min_ready > 0
            && st.ready_replicas.unwrap_or(0) == replicas(&updated)
            && st.available_replicas.unwrap_or(0) != replicas(&updated)
        {
            return Requeue::After(Duration::from_secs(min_ready as u64));
        }
        Requeue::Forget
    }
}

/// Registers `c`'s handlers on the pod informer and runs its workers once the
/// informers have synced (shared by ReplicaSets and ReplicationControllers).
pub async fn run_on(c: Arc<Controller>, factory: Arc<SharedInformerFactory>, workers: usize) {
    let pods = factory.informer::<Pod>();
    let (a, u, d) = (c.clone(), c.clone(), c.clone());
    pods.add_handler(
        Funcs::new()
            .on_add(move |p: &Arc<Pod>, _| a.pod_added(p))
            .on_update(move |o: &Arc<Pod>, n: &Arc<Pod>| u.pod_updated(o, n))
            .on_delete(move |p: &Arc<Pod>| d.pod_deleted(p)),
    );
    factory.start();
    factory.wait_for_cache_sync().await;
    let queue = c.queue.clone();
    run_workers(queue, workers, move |k: String| {
        let c = c.clone();
        async move { c.sync(&k).await }
    })
    .await;
}

/// Starts the controller on the shared informers; runs its workers until the
/// queue shuts down.
pub async fn run(
    client: kube::Client,
    factory: Arc<SharedInformerFactory>,
    recorder: client_base::events::Recorder,
    workers: usize,
    metrics: Metrics,
) {
    let rss = factory.informer::<ReplicaSet>();
    let pods = factory.informer::<Pod>();
    let store = Arc::new(InformerStore {
        rss: rss.clone(),
        pods,
    });
    let c = Controller::new(
        &REPLICA_SET,
        store,
        Arc::new(ApiCluster { client }),
        Arc::new(RecorderEvents(recorder, &REPLICA_SET)),
        Some(metrics),
    );
    let (a, u, d) = (c.clone(), c.clone(), c.clone());
    rss.add_handler(
        Funcs::new()
            .on_add(move |rs: &Arc<ReplicaSet>, _| a.queue.add(key(&rs.metadata)))
            .on_update(move |_, rs: &Arc<ReplicaSet>| u.queue.add(key(&rs.metadata)))
            .on_delete(move |rs: &Arc<ReplicaSet>| d.replica_set_deleted(rs)),
    );
    run_on(c, factory, workers).await;
}

#[cfg(test)]
mod tests;
