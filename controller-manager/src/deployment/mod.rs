//! The deployment controller, as upstream's `pkg/controller/deployment`: each
//! Deployment rolls its pod template out through ReplicaSets.
//!
//! ```text
//!  informers (shared): deployments, replicasets, pods ─▶ queue of ns/name
//!      ─▶ workers (--concurrent-deployment-syncs)
//!  sync: claim ReplicaSets (adopt / release) ─▶ paused? scale only
//!        ─▶ a scaling event (replicas ≠ desired-replicas annotation)? scale
//!           proportionally across the active sets
//!        ─▶ RollingUpdate: new set up to replicas+maxSurge, old sets down while
//!           available ≥ replicas−maxUnavailable (unhealthy ones first)
//!           Recreate: old sets to zero, wait for their pods, then the new set
//!        ─▶ complete: keep revisionHistoryLimit old sets ─▶ status, with the
//!           Progressing (progressDeadlineSeconds) and Available conditions
//! ```
//!
//! The new ReplicaSet is `<name>-<pod-template-hash>`; revisions live in the
//! `deployment.kubernetes.io/revision` annotations, which `kubectl rollout
//! history|undo` read. Every write goes through [`Cluster`], so the sync is
//! unit-tested against fakes.

pub mod util;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};

use client_base::informer::{Funcs, Informer, NAMESPACE, SharedInformerFactory};
use client_base::workqueue::{Metrics, Queue, Requeue, run_workers};

use self::util::reason;
use crate::controller_ref::{Claimer, Claims};
use crate::controller_utils::{controller_of, controller_ref};

/// The controller's name.
pub const NAME: &str = "deployment-controller";

/// The writes the controller makes (the API, or a fake in tests).
pub trait Cluster: Send + Sync {
    /// Creates a ReplicaSet.
    fn create_rs(&self, rs: ReplicaSet) -> BoxFuture<'_, Result<ReplicaSet, kube::Error>>;
    /// Replaces a ReplicaSet (scale, annotations).
    fn update_rs(&self, rs: ReplicaSet) -> BoxFuture<'_, Result<ReplicaSet, kube::Error>>;
    /// Deletes a ReplicaSet.
    fn delete_rs<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), kube::Error>>;
    /// A strategic merge patch of a ReplicaSet (adoption, release).
    fn patch_rs<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        patch: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), kube::Error>>;
    /// A Deployment as the API has it now.
    fn get_deployment<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Deployment>, kube::Error>>;
    /// Writes a Deployment's status (and its revision annotation).
    fn update_status(&self, d: Deployment) -> BoxFuture<'_, Result<Deployment, kube::Error>>;
}

/// Where the controller's events go.
pub trait Events: Send + Sync {
    /// An event about `d`.
    fn event(&self, d: &Deployment, warning: bool, reason: &str, note: String);
}

/// What the controller reads.
pub trait Store: Send + Sync {
    /// The Deployment `namespace/name`.
    fn deployment(&self, key: &str) -> Option<Arc<Deployment>>;
    /// The Deployments of a namespace.
    fn deployments_in(&self, ns: &str) -> Vec<Arc<Deployment>>;
    /// The ReplicaSet `namespace/name`.
    fn replica_set(&self, key: &str) -> Option<Arc<ReplicaSet>>;
    /// The ReplicaSets of a namespace.
    fn replica_sets_in(&self, ns: &str) -> Vec<Arc<ReplicaSet>>;
    /// The pods of a namespace.
    fn pods_in(&self, ns: &str) -> Vec<Arc<Pod>>;
}

/// [`Store`] over the shared informers.
pub struct InformerStore {
    deployments: Arc<Informer<Deployment>>,
    rss: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
}

impl Store for InformerStore {
    fn deployment(&self, key: &str) -> Option<Arc<Deployment>> {
        self.deployments.get(key)
    }
    fn deployments_in(&self, ns: &str) -> Vec<Arc<Deployment>> {
        self.deployments.by_index(NAMESPACE, ns)
    }
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
    /// The controller's client.
    pub client: kube::Client,
}

fn ns_name(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl Cluster for ApiCluster {
    fn create_rs(&self, rs: ReplicaSet) -> BoxFuture<'_, Result<ReplicaSet, kube::Error>> {
        Box::pin(async move {
            let (ns, _) = ns_name(&rs.metadata);
            Api::<ReplicaSet>::namespaced(self.client.clone(), &ns)
                .create(&PostParams::default(), &rs)
                .await
        })
    }
    fn update_rs(&self, rs: ReplicaSet) -> BoxFuture<'_, Result<ReplicaSet, kube::Error>> {
        Box::pin(async move {
            let (ns, name) = ns_name(&rs.metadata);
            Api::<ReplicaSet>::namespaced(self.client.clone(), &ns)
                .replace(&name, &PostParams::default(), &rs)
                .await
        })
    }
    fn delete_rs<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        Box::pin(async move {
            Api::<ReplicaSet>::namespaced(self.client.clone(), ns)
                .delete(name, &Default::default())
                .await
                .map(|_| ())
        })
    }
    fn patch_rs<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        patch: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        Box::pin(async move {
            Api::<ReplicaSet>::namespaced(self.client.clone(), ns)
                .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
                .map(|_| ())
        })
    }
    fn get_deployment<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Deployment>, kube::Error>> {
        Box::pin(async move {
            Api::<Deployment>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await
        })
    }
    fn update_status(&self, d: Deployment) -> BoxFuture<'_, Result<Deployment, kube::Error>> {
        Box::pin(async move {
            let (ns, name) = ns_name(&d.metadata);
            Api::<Deployment>::namespaced(self.client.clone(), &ns)
                .replace_status(&name, &PostParams::default(), &d)
                .await
        })
    }
}

/// [`Events`] through the shared recorder.
pub struct RecorderEvents(pub client_base::events::Recorder);

impl Events for RecorderEvents {
    fn event(&self, d: &Deployment, warning: bool, reason: &str, note: String) {
        use kube::Resource;
        let t = if warning {
            client_base::events::Type::Warning
        } else {
            client_base::events::Type::Normal
        };
        self.0
            .event(d.object_ref(&()), None, t, reason, reason, note);
    }
}

pub use crate::controller_utils::key;

/// Why a sync failed (requeued with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{}", client_base::errors::message(.0))]
    Api(#[from] kube::Error),
    /// Claiming ReplicaSets failed.
    #[error("{0}")]
    Claim(#[from] crate::controller_ref::Error),
    /// The strategy is not one Keelson knows.
    #[error("unexpected deployment strategy type: {0}")]
    Strategy(String),
}

/// A sync's outcome besides errors: when to look again.
type Synced = Result<Option<Duration>, Error>;

/// The controller.
pub struct Controller {
    store: Arc<dyn Store>,
    cluster: Arc<dyn Cluster>,
    events: Arc<dyn Events>,
    queue: Arc<Queue<String>>,
}

struct DeploymentClaims<'a> {
    cluster: &'a dyn Cluster,
    ns: &'a str,
    name: &'a str,
}

impl Claims for DeploymentClaims<'_> {
    fn fresh_owner(&self) -> BoxFuture<'_, Result<Option<ObjectMeta>, kube::Error>> {
        Box::pin(async move {
            Ok(self
                .cluster
                .get_deployment(self.ns, self.name)
                .await?
                .map(|d| d.metadata))
        })
    }
    fn patch<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        patch: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        self.cluster.patch_rs(namespace, name, patch)
    }
}

impl Controller {
    /// A controller over `store`, writing through `cluster`.
    pub fn new(
        store: Arc<dyn Store>,
        cluster: Arc<dyn Cluster>,
        events: Arc<dyn Events>,
        metrics: Option<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Controller {
            store,
            cluster,
            events,
            queue: Queue::new("deployment", metrics),
        })
    }

    /// The work queue.
    pub fn queue(&self) -> &Arc<Queue<String>> {
        &self.queue
    }

    fn resolve(&self, ns: &str, r: &OwnerReference) -> Option<Arc<Deployment>> {
        if r.kind != "Deployment" || !r.api_version.starts_with("apps/") {
            return None;
        }
        let d = self.store.deployment(&format!("{ns}/{}", r.name))?;
        (d.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(d)
    }

    /// The Deployments whose selector matches an orphan ReplicaSet's labels.
    fn selecting(&self, rs: &ReplicaSet) -> Vec<Arc<Deployment>> {
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        self.store
            .deployments_in(ns)
            .into_iter()
            .filter(|d| {
                d.spec.as_ref().is_some_and(|s| {
                    crate::controller_utils::selects_orphan(&s.selector, &rs.metadata)
                })
            })
            .collect()
    }

    /// A ReplicaSet appeared or changed: its Deployment (or the ones that may
    /// adopt it) is synced.
    pub fn rs_changed(&self, old: Option<&ReplicaSet>, rs: &ReplicaSet) {
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(old) = old {
            if old.metadata.resource_version == rs.metadata.resource_version {
                return;
            }
            let (o, n) = (controller_of(&old.metadata), controller_of(&rs.metadata));
            if o != n
                && let Some(d) = o.and_then(|r| self.resolve(ns, r))
            {
                self.queue.add(key(&d.metadata));
            }
        }
        if let Some(r) = controller_of(&rs.metadata) {
            if let Some(d) = self.resolve(ns, r) {
                self.queue.add(key(&d.metadata));
            }
            return;
        }
        let relabelled = old.is_none_or(|o| o.metadata.labels != rs.metadata.labels)
            || old.is_some_and(|o| controller_of(&o.metadata).is_some());
        if relabelled {
            for d in self.selecting(rs) {
                self.queue.add(key(&d.metadata));
            }
        }
    }

    /// A ReplicaSet is gone.
    pub fn rs_deleted(&self, rs: &ReplicaSet) {
        let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(d) = controller_of(&rs.metadata).and_then(|r| self.resolve(ns, r)) {
            self.queue.add(key(&d.metadata));
        }
    }

    /// A pod is gone: a Recreate rollout waits for the old pods to go.
    pub fn pod_deleted(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(r) = controller_of(&pod.metadata) else {
            return;
        };
        if r.kind != "ReplicaSet" {
            return;
        }
        let Some(rs) = self.store.replica_set(&format!("{ns}/{}", r.name)) else {
            return;
        };
        let Some(d) = controller_of(&rs.metadata).and_then(|r| self.resolve(ns, r)) else {
            return;
        };
        if !util::is_rolling_update(&d) {
            self.queue.add(key(&d.metadata));
        }
    }

    async fn update_status(&self, d: &mut Deployment) -> Result<(), Error> {
        let updated = self.cluster.update_status(d.clone()).await?;
        d.metadata.resource_version = updated.metadata.resource_version;
        Ok(())
    }

    /// Upstream's `syncDeployment`.
    pub async fn sync(&self, k: &str) -> Synced {
        let Some(stored) = self.store.deployment(k) else {
            return Ok(None);
        };
        let mut d = (*stored).clone();
        let (ns, name) = ns_name(&d.metadata);
        let selector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        if selector == Default::default() {
            self.events.event(
                &d,
                true,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            let st = d.status.get_or_insert_with(Default::default);
            if st.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
                st.observed_generation = d.metadata.generation;
                self.update_status(&mut d).await?;
            }
            return Ok(None);
        }
        // The ReplicaSets this Deployment controls, after adoption and release.
        let all = self.store.replica_sets_in(&ns);
        let refs: Vec<&ReplicaSet> = all.iter().map(|r| r.as_ref()).collect();
        let claims = DeploymentClaims {
            cluster: self.cluster.as_ref(),
            ns: &ns,
            name: &name,
        };
        let claimer = Claimer {
            kind: "ReplicaSet",
            owner: &d.metadata,
            owner_ref: controller_ref(&d.metadata, "apps/v1", "Deployment"),
            selector: &selector,
            api: &claims,
        };
        let (owned, errors) = claimer.claim(refs).await;
        if let Some(e) = errors.into_iter().next() {
            return Err(e.into());
        }
        let rss: Vec<Arc<ReplicaSet>> = owned.into_iter().map(|r| Arc::new(r.clone())).collect();
        if d.metadata.deletion_timestamp.is_some() {
            return self.sync_status_only(&mut d, &rss).await;
        }
        self.check_paused_conditions(&mut d).await?;
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused {
            return self.scale_and_status(&mut d, &rss).await;
        }
        if self.is_scaling_event(&mut d, &rss).await? {
            return self.scale_and_status(&mut d, &rss).await;
        }
        let strategy = d
            .spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.type_.clone())
            .unwrap_or_else(|| "RollingUpdate".into());
        match strategy.as_str() {
            "RollingUpdate" => self.rollout_rolling(&mut d, &rss).await,
            "Recreate" => self.rollout_recreate(&mut d, &rss).await,
            other => Err(Error::Strategy(other.to_owned())),
        }
    }

    /// The new set (created if `create`) and the others; the Deployment's
    /// revision annotation kept in step (upstream's
    /// `getAllReplicaSetsAndSyncRevision`).
    async fn new_and_old(
        &self,
        d: &mut Deployment,
        rss: &[Arc<ReplicaSet>],
        create: bool,
    ) -> Result<(Option<Arc<ReplicaSet>>, Vec<Arc<ReplicaSet>>), Error> {
        let existing = util::find_new(d, rss);
        let old: Vec<Arc<ReplicaSet>> = rss
            .iter()
            .filter(|r| {
                existing
                    .as_ref()
                    .is_none_or(|n| n.metadata.uid != r.metadata.uid)
            })
            .cloned()
            .collect();
        let new_revision = util::max_revision(&old) + 1;
        if let Some(existing) = existing {
            let mut copy = (*existing).clone();
            let annotations = util::set_new_rs_annotations(d, &mut copy, new_revision, true);
            let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let spec = copy.spec.get_or_insert_with(Default::default);
            if annotations || spec.min_ready_seconds != min_ready {
                spec.min_ready_seconds = min_ready;
                let updated = self.cluster.update_rs(copy).await?;
                return Ok((Some(Arc::new(updated)), old));
            }
            let revision = util::revision(copy.metadata.annotations.as_ref()).to_string();
            let mut needs_update = util::set_deployment_revision(d, &revision);
            let has_deadline = util::progress_deadline(d).is_some();
            let st = d.status.get_or_insert_with(Default::default);
            if has_deadline && util::condition(st, "Progressing").is_none() {
                let c = util::new_condition(
                    "Progressing",
                    "True",
                    reason::FOUND_NEW_RS,
                    format!(
                        "Found new replica set {:?}",
                        copy.metadata.name.as_deref().unwrap_or_default()
                    ),
                    Timestamp::now(),
                );
                util::set_condition(d.status.get_or_insert_with(Default::default), c);
                needs_update = true;
            }
            if needs_update {
                self.update_status(d).await?;
            }
            return Ok((Some(Arc::new(copy)), old));
        }
        if !create {
            return Ok((None, old));
        }
        // A new set: `<name>-<hash>`, selecting its own pods by the hash label.
        let spec = d.spec.clone().unwrap_or_default();
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = util::compute_hash(&spec.template, collision);
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(util::POD_TEMPLATE_HASH.into(), hash.clone());
        let labels = meta.labels.clone();
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(util::POD_TEMPLATE_HASH.into(), hash.clone());
        let (ns, dname) = ns_name(&d.metadata);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{dname}-{hash}")),
                namespace: Some(ns.clone()),
                owner_references: Some(vec![controller_ref(&d.metadata, "apps/v1", "Deployment")]),
                labels,
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let mut all = old.clone();
        all.push(Arc::new(rs.clone()));
        let count = util::new_rs_new_replicas(d, &all, &rs);
        rs.spec.as_mut().unwrap().replicas = Some(count);
        util::set_new_rs_annotations(d, &mut rs, new_revision, false);
        let rs_name = rs.metadata.name.clone().unwrap_or_default();
        let created = match self.cluster.create_rs(rs).await {
            Ok(c) => {
                if count > 0 {
                    self.events.event(
                        d,
                        false,
                        "ScalingReplicaSet",
                        format!("Scaled up replica set {rs_name} from 0 to {count}"),
                    );
                }
                c
            }
            Err(e)
                if client_base::errors::is_conflict(&e)
                    || matches!(&e, kube::Error::Api(s) if s.reason == "AlreadyExists") =>
            {
                // Ours already (a slow cache), or a hash collision.
                let found = self.store.replica_set(&format!("{ns}/{rs_name}"));
                let ours = found.as_ref().is_some_and(|f| {
                    controller_of(&f.metadata)
                        .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref())
                        && f.spec
                            .as_ref()
                            .and_then(|s| s.template.as_ref())
                            .is_some_and(|t| util::equal_ignore_hash(t, &spec.template))
                });
                match found {
                    Some(f) if ours => (*f).clone(),
                    _ => {
                        let st = d.status.get_or_insert_with(Default::default);
                        st.collision_count = Some(st.collision_count.unwrap_or(0) + 1);
                        self.update_status(d).await?;
                        return Err(e.into());
                    }
                }
            }
            Err(e) => {
                let msg = format!(
                    "Failed to create new replica set {rs_name:?}: {}",
                    client_base::errors::message(&e)
                );
                if util::progress_deadline(d).is_some() {
                    let c = util::new_condition(
                        "Progressing",
                        "False",
                        reason::FAILED_RS_CREATE,
                        msg.clone(),
                        Timestamp::now(),
                    );
                    util::set_condition(d.status.get_or_insert_with(Default::default), c);
                    let _ = self.update_status(d).await;
                }
                self.events.event(d, true, reason::FAILED_RS_CREATE, msg);
                return Err(e.into());
            }
        };
        let mut needs_update = util::set_deployment_revision(d, &new_revision.to_string());
        if util::progress_deadline(d).is_some() {
            let c = util::new_condition(
                "Progressing",
                "True",
                reason::NEW_RS,
                format!("Created new replica set {rs_name:?}"),
                Timestamp::now(),
            );
            util::set_condition(d.status.get_or_insert_with(Default::default), c);
            needs_update = true;
        }
        if needs_update {
            self.update_status(d).await?;
        }
        Ok((Some(Arc::new(created)), old))
    }

    /// Upstream's `scaleReplicaSet`: the new size and the replicas annotations,
    /// with a `ScalingReplicaSet` event when the size changed.
    async fn scale_rs(
        &self,
        rs: &ReplicaSet,
        size: i32,
        d: &Deployment,
    ) -> Result<(bool, ReplicaSet), Error> {
        let old = util::rs_replicas(rs);
        let (desired, max) = (util::replicas(d), util::replicas(d) + util::max_surge(d));
        let resize = old != size;
        if !resize && !util::replicas_annotations_need_update(rs, desired, max) {
            return Ok((false, rs.clone()));
        }
        let mut copy = rs.clone();
        copy.spec.get_or_insert_with(Default::default).replicas = Some(size);
        util::set_replicas_annotations(&mut copy, desired, max);
        let updated = self.cluster.update_rs(copy).await?;
        if resize {
            let op = if old < size { "up" } else { "down" };
            let name = rs.metadata.name.as_deref().unwrap_or_default();
            self.events.event(
                d,
                false,
                "ScalingReplicaSet",
                format!("Scaled {op} replica set {name} from {old} to {size}"),
            );
        }
        Ok((resize, updated))
    }

    /// Upstream's `isScalingEvent`: a set's desired-replicas annotation differs
    /// from the Deployment's replicas.
    async fn is_scaling_event(
        &self,
        d: &mut Deployment,
        rss: &[Arc<ReplicaSet>],
    ) -> Result<bool, Error> {
        let (new, old) = self.new_and_old(d, rss, false).await?;
        let mut all = old;
        all.extend(new);
        Ok(util::active(&all)
            .iter()
            .filter_map(|r| util::desired_replicas_annotation(r))
            .any(|desired| desired != util::replicas(d)))
    }

    /// Upstream's `sync` (paused or scaling): scale, clean up when paused, status.
    async fn scale_and_status(&self, d: &mut Deployment, rss: &[Arc<ReplicaSet>]) -> Synced {
        let (new, mut old) = self.new_and_old(d, rss, false).await?;
        self.scale(d, new.as_deref(), &mut old).await?;
        if d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) {
            self.cleanup(d, &old).await?;
        }
        let mut all = old;
        let new = new.map(|n| self.store.replica_set(&key(&n.metadata)).unwrap_or(n));
        all.extend(new.clone());
        self.sync_status(d, &all, new.as_deref()).await?;
        Ok(None)
    }

    /// Upstream's `scale`: one active set takes all the replicas; otherwise a
    /// saturated new set means the old ones go; otherwise (RollingUpdate) the
    /// change is shared in proportion.
    async fn scale(
        &self,
        d: &Deployment,
        new: Option<&ReplicaSet>,
        old: &mut [Arc<ReplicaSet>],
    ) -> Result<(), Error> {
        let want = util::replicas(d);
        // FindActiveOrLatest.
        let mut all: Vec<Arc<ReplicaSet>> = old.to_vec();
        all.sort_by(|a, b| util::by_creation(b, a));
        let mut with_new = all.clone();
        with_new.extend(new.map(|n| Arc::new(n.clone())));
        let active = util::active(&with_new);
        let target = match active.len() {
            0 => new
                .map(|n| Arc::new(n.clone()))
                .or_else(|| all.first().cloned()),
            1 => Some(active[0].clone()),
            _ => None,
        };
        if let Some(t) = target {
            if util::rs_replicas(&t) != want {
                self.scale_rs(&t, want, d).await?;
            }
            return Ok(());
        }
        if util::is_saturated(d, new) {
            for o in util::active(old) {
                self.scale_rs(&o, 0, d).await?;
            }
            return Ok(());
        }
        if !util::is_rolling_update(d) {
            return Ok(());
        }
        let mut sets = active;
        let current = util::total_replicas(&sets);
        let allowed = if want > 0 {
            want + util::max_surge(d)
        } else {
            0
        };
        let to_add = allowed - current;
        match to_add.cmp(&0) {
            std::cmp::Ordering::Greater => sets.sort_by(|a, b| util::by_size(a, b, true)),
            std::cmp::Ordering::Less => sets.sort_by(|a, b| util::by_size(a, b, false)),
            std::cmp::Ordering::Equal => {}
        }
        let mut added = 0;
        let mut sizes: HashMap<String, i32> = HashMap::new();
        for rs in &sets {
            let name = rs.metadata.name.clone().unwrap_or_default();
            if to_add != 0 {
                let p = util::proportion(rs, d, to_add, added);
                sizes.insert(name, util::rs_replicas(rs) + p);
                added += p;
            } else {
                sizes.insert(name, util::rs_replicas(rs));
            }
        }
        for (i, rs) in sets.iter().enumerate() {
            let name = rs.metadata.name.clone().unwrap_or_default();
            let mut size = sizes[&name];
            if i == 0 && to_add != 0 {
                size = (size + to_add - added).max(0);
            }
            self.scale_rs(rs, size, d).await?;
        }
        Ok(())
    }

    /// Upstream's `rolloutRolling`.
    async fn rollout_rolling(&self, d: &mut Deployment, rss: &[Arc<ReplicaSet>]) -> Synced {
        let (new, old) = self.new_and_old(d, rss, true).await?;
        let new = new.expect("created when missing");
        let mut all = old.clone();
        all.push(new.clone());
        // Scale up, if we can.
        let want = util::replicas(d);
        let new_size = util::rs_replicas(&new);
        if new_size != want {
            let size = if new_size > want {
                want
            } else {
                util::new_rs_new_replicas(d, &all, &new)
            };
            let (scaled, _) = self.scale_rs(&new, size, d).await?;
            if scaled {
                return self.rollout_status(d, &all, Some(&new)).await;
            }
        }
        // Scale down, if we can.
        let mut old_active = util::active(&old);
        if self.reconcile_old(&all, &mut old_active, &new, d).await? {
            let all = self.refreshed(&all);
            return self.rollout_status(d, &all, Some(&new)).await;
        }
        let status = Self::calculate_status(&all, Some(&new), d);
        if util::complete(d, &status) {
            self.cleanup(d, &old).await?;
        }
        self.rollout_status(d, &all, Some(&new)).await
    }

    /// The sets as the informer has them now (after this sync's writes landed).
    fn refreshed(&self, all: &[Arc<ReplicaSet>]) -> Vec<Arc<ReplicaSet>> {
        all.iter()
            .map(|r| {
                self.store
                    .replica_set(&key(&r.metadata))
                    .unwrap_or_else(|| r.clone())
            })
            .collect()
    }

    /// Upstream's `reconcileOldReplicaSets`: scales old sets down as far as
    /// availability allows, unhealthy replicas first. Whether anything moved.
    async fn reconcile_old(
        &self,
        all: &[Arc<ReplicaSet>],
        old: &mut [Arc<ReplicaSet>],
        new: &ReplicaSet,
        d: &Deployment,
    ) -> Result<bool, Error> {
        if util::total_replicas(old) == 0 {
            return Ok(false);
        }
        let all_pods = util::total_replicas(all);
        let min_available = util::replicas(d) - util::max_unavailable(d);
        let new_unavailable = util::rs_replicas(new) - util::rs_available(new);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // Unhealthy replicas first: they would block the rollout.
        old.sort_by(|a, b| util::by_creation(a, b));
        let mut cleaned = 0;
        for slot in old.iter_mut() {
            if cleaned >= max_scaled_down {
                break;
            }
            let rs = slot.clone();
            let (size, available) = (util::rs_replicas(&rs), util::rs_available(&rs));
            if size == 0 || size == available {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(size - available);
            let (_, updated) = self.scale_rs(&rs, size - down, d).await?;
            cleaned += down;
            *slot = Arc::new(updated);
        }
        // Then as availability allows.
        let mut all_now: Vec<Arc<ReplicaSet>> = old.to_vec();
        all_now.push(Arc::new(new.clone()));
        let available = util::available_replicas(&all_now);
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for rs in old.iter() {
                if scaled >= total {
                    break;
                }
                let size = util::rs_replicas(rs);
                if size == 0 {
                    continue;
                }
                let down = size.min(total - scaled);
                self.scale_rs(rs, size - down, d).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    /// Upstream's `rolloutRecreate`.
    async fn rollout_recreate(&self, d: &mut Deployment, rss: &[Arc<ReplicaSet>]) -> Synced {
        let (mut new, mut old) = self.new_and_old(d, rss, false).await?;
        let mut all = old.clone();
        all.extend(new.clone());
        // Old sets to zero first.
        let mut scaled = false;
        for o in util::active(&old) {
            scaled |= self.scale_rs(&o, 0, d).await?.0;
        }
        if scaled {
            return self.rollout_status(d, &all, new.as_deref()).await;
        }
        // Wait while old pods still run.
        if self.old_pods_running(new.as_deref(), &old, d) {
            return self.rollout_status(d, &all, new.as_deref()).await;
        }
        if new.is_none() {
            (new, old) = self.new_and_old(d, rss, true).await?;
            all = old.clone();
            all.extend(new.clone());
        }
        let n = new.clone().expect("created when missing");
        self.scale_rs(&n, util::replicas(d), d).await?;
        let status = Self::calculate_status(&all, Some(&n), d);
        if util::complete(d, &status) {
            self.cleanup(d, &old).await?;
        }
        self.rollout_status(d, &all, Some(&n)).await
    }

    /// Upstream's `oldPodsRunning`.
    fn old_pods_running(
        &self,
        new: Option<&ReplicaSet>,
        old: &[Arc<ReplicaSet>],
        d: &Deployment,
    ) -> bool {
        if util::actual_replicas(old) > 0 {
            return true;
        }
        let ns = d.metadata.namespace.as_deref().unwrap_or_default();
        let old_uids: Vec<&str> = old
            .iter()
            .filter_map(|r| r.metadata.uid.as_deref())
            .collect();
        self.store.pods_in(ns).iter().any(|p| {
            let Some(r) = controller_of(&p.metadata) else {
                return false;
            };
            if new.is_some_and(|n| n.metadata.uid.as_deref() == Some(r.uid.as_str())) {
                return false;
            }
            old_uids.contains(&r.uid.as_str())
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded") | Some("Failed")
                )
        })
    }

    /// Upstream's `cleanupDeployment`: old sets beyond revisionHistoryLimit,
    /// oldest revisions first, once they are empty.
    async fn cleanup(&self, d: &Deployment, old: &[Arc<ReplicaSet>]) -> Result<(), Error> {
        let Some(limit) = util::revision_history_limit(d) else {
            return Ok(());
        };
        let mut alive: Vec<&Arc<ReplicaSet>> = old
            .iter()
            .filter(|r| r.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = alive.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        alive.sort_by(|a, b| {
            util::revision(a.metadata.annotations.as_ref())
                .cmp(&util::revision(b.metadata.annotations.as_ref()))
                .then_with(|| util::by_creation(a, b))
        });
        for rs in alive.into_iter().take(diff as usize) {
            let st = rs.status.clone().unwrap_or_default();
            if st.replicas != 0
                || util::rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > st.observed_generation.unwrap_or(0)
            {
                continue;
            }
            let (ns, name) = ns_name(&rs.metadata);
            match self.cluster.delete_rs(&ns, &name).await {
                Ok(()) => {}
                Err(e) if client_base::errors::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Upstream's `calculateStatus`.
    fn calculate_status(
        all: &[Arc<ReplicaSet>],
        new: Option<&ReplicaSet>,
        d: &Deployment,
    ) -> DeploymentStatus {
        let available = util::available_replicas(all);
        let total = util::total_replicas(all);
        let unavailable = (total - available).max(0);
        let old = d.status.clone().unwrap_or_default();
        let mut s = DeploymentStatus {
            observed_generation: d.metadata.generation,
            replicas: Some(util::actual_replicas(all)),
            updated_replicas: Some(new.map_or(0, |n| n.status.as_ref().map_or(0, |s| s.replicas))),
            ready_replicas: Some(util::ready_replicas(all)),
            available_replicas: Some(available),
            unavailable_replicas: Some(unavailable),
            collision_count: old.collision_count,
            conditions: old.conditions.clone(),
            ..Default::default()
        };
        let now = Timestamp::now();
        let c = if available >= util::replicas(d) - util::max_unavailable(d) {
            util::new_condition(
                "Available",
                "True",
                reason::MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            )
        } else {
            util::new_condition(
                "Available",
                "False",
                reason::MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                now,
            )
        };
        util::set_condition(&mut s, c);
        s
    }

    /// Upstream's `syncDeploymentStatus`.
    async fn sync_status(
        &self,
        d: &mut Deployment,
        all: &[Arc<ReplicaSet>],
        new: Option<&ReplicaSet>,
    ) -> Result<(), Error> {
        let status = Self::calculate_status(all, new, d);
        if d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        d.status = Some(status);
        self.update_status(d).await
    }

    /// Upstream's `syncStatusOnly`.
    async fn sync_status_only(&self, d: &mut Deployment, rss: &[Arc<ReplicaSet>]) -> Synced {
        let (new, old) = self.new_and_old(d, rss, false).await?;
        let mut all = old;
        all.extend(new.clone());
        self.sync_status(d, &all, new.as_deref()).await?;
        Ok(None)
    }

    /// Upstream's `checkPausedConditions`.
    async fn check_paused_conditions(&self, d: &mut Deployment) -> Result<(), Error> {
        if util::progress_deadline(d).is_none() {
            return Ok(());
        }
        let st = d.status.clone().unwrap_or_default();
        let cur = util::condition(&st, "Progressing");
        if cur.is_some_and(|c| c.reason.as_deref() == Some(reason::TIMED_OUT)) {
            return Ok(());
        }
        let paused_cond = cur.is_some_and(|c| c.reason.as_deref() == Some(reason::PAUSED));
        let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let c = if paused && !paused_cond {
            util::new_condition(
                "Progressing",
                "Unknown",
                reason::PAUSED,
                "Deployment is paused".into(),
                Timestamp::now(),
            )
        } else if !paused && paused_cond {
            util::new_condition(
                "Progressing",
                "Unknown",
                reason::RESUMED,
                "Deployment is resumed".into(),
                Timestamp::now(),
            )
        } else {
            return Ok(());
        };
        util::set_condition(d.status.get_or_insert_with(Default::default), c);
        self.update_status(d).await
    }

    /// Upstream's `syncRolloutStatus`: status with the Progressing condition
    /// (complete, progressing, or timed out against progressDeadlineSeconds)
    /// and the sets' ReplicaFailure; when to check progress again.
    async fn rollout_status(
        &self,
        d: &mut Deployment,
        all: &[Arc<ReplicaSet>],
        new: Option<&ReplicaSet>,
    ) -> Synced {
        let all = self.refreshed(all);
        let new = new.map(|n| {
            self.store
                .replica_set(&key(&n.metadata))
                .unwrap_or_else(|| Arc::new(n.clone()))
        });
        let mut status = Self::calculate_status(&all, new.as_deref(), d);
        let deadline = util::progress_deadline(d);
        if deadline.is_none() {
            util::remove_condition(&mut status, "Progressing");
        }
        let old_status = d.status.clone().unwrap_or_default();
        let cur = util::condition(&old_status, "Progressing").cloned();
        let complete_before = n(status.replicas) == n(status.updated_replicas)
            && cur.as_ref().and_then(|c| c.reason.as_deref()) == Some(reason::NEW_RS_AVAILABLE);
        let now = Timestamp::now();
        let rs_name = new.as_ref().and_then(|n| n.metadata.name.clone());
        let dname = d.metadata.name.clone().unwrap_or_default();
        let subject = |what: &str| match &rs_name {
            Some(n) => format!("ReplicaSet {n:?} {what}"),
            None => format!("Deployment {dname:?} {what}"),
        };
        if deadline.is_some() && !complete_before {
            if util::complete(d, &status) {
                let c = util::new_condition(
                    "Progressing",
                    "True",
                    reason::NEW_RS_AVAILABLE,
                    subject("has successfully progressed."),
                    now,
                );
                util::set_condition(&mut status, c);
            } else if util::progressing(d, &status) {
                let mut c = util::new_condition(
                    "Progressing",
                    "True",
                    reason::RS_UPDATED,
                    subject("is progressing."),
                    now,
                );
                if let Some(cur) = &cur {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    util::remove_condition(&mut status, "Progressing");
                }
                util::set_condition(&mut status, c);
            } else if util::timed_out(d, &status, now) {
                let c = util::new_condition(
                    "Progressing",
                    "False",
                    reason::TIMED_OUT,
                    subject("has timed out progressing."),
                    now,
                );
                util::set_condition(&mut status, c);
            }
        }
        // The sets' failures (the new set's first).
        let failure = new
            .iter()
            .chain(all.iter())
            .flat_map(|r| r.status.iter().flat_map(|s| s.conditions.iter().flatten()))
            .find(|c| c.type_ == "ReplicaFailure")
            .map(util::from_rs_condition);
        match failure {
            Some(c) => util::set_condition(&mut status, c),
            None => util::remove_condition(&mut status, "ReplicaFailure"),
        }
        if d.status.as_ref() == Some(&status) {
            return Ok(Self::requeue_stuck(d, &status, now));
        }
        d.status = Some(status);
        self.update_status(d).await?;
        Ok(None)
    }

    /// Upstream's `requeueStuckDeployment`: when to check a rollout that shows no
    /// progress against its deadline.
    fn requeue_stuck(
        d: &Deployment,
        status: &DeploymentStatus,
        now: Timestamp,
    ) -> Option<Duration> {
        let deadline = util::progress_deadline(d)?;
        let cur = util::condition(d.status.as_ref()?, "Progressing")?;
        if util::complete(d, status) || cur.reason.as_deref() == Some(reason::TIMED_OUT) {
            return None;
        }
        let last = cur.last_update_time.as_ref()?.0;
        let after =
            last.duration_since(now)
                .saturating_add(k8s_openapi::jiff::SignedDuration::from_secs(i64::from(
                    deadline,
                )));
        let secs = after.as_secs_f64();
        Some(if secs < 1.0 {
            Duration::from_secs(1)
        } else {
            Duration::from_secs_f64(secs + 1.0)
        })
    }
}

fn n(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
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
    let deployments = factory.informer::<Deployment>();
    let rss = factory.informer::<ReplicaSet>();
    let pods = factory.informer::<Pod>();
    let store = Arc::new(InformerStore {
        deployments: deployments.clone(),
        rss: rss.clone(),
        pods: pods.clone(),
    });
    let c = Controller::new(
        store,
        Arc::new(ApiCluster { client }),
        Arc::new(RecorderEvents(recorder)),
        Some(metrics),
    );
    let (a, u, d) = (c.clone(), c.clone(), c.clone());
    deployments.add_handler(
        Funcs::new()
            .on_add(move |x: &Arc<Deployment>, _| a.queue.add(key(&x.metadata)))
            .on_update(move |_, x: &Arc<Deployment>| u.queue.add(key(&x.metadata)))
            .on_delete(move |x: &Arc<Deployment>| d.queue.add(key(&x.metadata))),
    );
    let (a, u, d) = (c.clone(), c.clone(), c.clone());
    rss.add_handler(
        Funcs::new()
            .on_add(move |r: &Arc<ReplicaSet>, _| a.rs_changed(None, r))
            .on_update(move |o: &Arc<ReplicaSet>, r: &Arc<ReplicaSet>| u.rs_changed(Some(o), r))
            .on_delete(move |r: &Arc<ReplicaSet>| d.rs_deleted(r)),
    );
    let p = c.clone();
    pods.add_handler(Funcs::new().on_delete(move |x: &Arc<Pod>| p.pod_deleted(x)));
    factory.start();
    deployments.wait_synced().await;
    rss.wait_synced().await;
    pods.wait_synced().await;
    let queue = c.queue.clone();
    run_workers(queue, workers, move |k: String| {
        let c = c.clone();
        async move {
            match c.sync(&k).await {
                Ok(None) => Requeue::Forget,
                Ok(Some(after)) => Requeue::After(after),
                Err(e) => {
                    tracing::info!(deployment = %k, error = %e, "sync failed; requeueing");
                    Requeue::Backoff
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests;
