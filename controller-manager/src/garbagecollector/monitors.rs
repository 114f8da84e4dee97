//! The collector's view of a real cluster: discovery of the deletable resources, one
//! metadata-only watch per resource feeding the graph (upstream's monitors over
//! metadata informers), and [`KubeCluster`], the [`Cluster`] the workers act through.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::{ApiResource, GroupVersionKind, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::RwLock;
use serde_json::Value;

use super::graph::{ObjectRef, Observed, OwnerRef};
use super::{Cluster, Error, GarbageCollector, Meta, Propagation};

/// Resources the collector never watches, as upstream's defaults: events are many,
/// short-lived and never owners.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// A resource found by discovery.
#[derive(Clone, Debug)]
pub struct Found {
    /// The resource.
    pub ar: ApiResource,
    /// Whether it is namespaced.
    pub namespaced: bool,
    /// Whether the collector monitors it: it supports list, watch and delete, is
    /// not ignored, and this is its group's most preferred version serving it.
    pub monitored: bool,
}

/// Discovers every served group and version, as upstream's
/// `ServerPreferredResources`: a group that fails discovery (an aggregated API that
/// is down) is skipped and logged, not fatal. Fails only if nothing could be read.
pub async fn discover(client: &kube::Client) -> Result<Vec<Found>, kube::Error> {
    let mut gvs: Vec<(String, String)> = Vec::new();
    for v in client.list_core_api_versions().await?.versions {
        gvs.push((String::new(), v));
    }
    match client.list_api_groups().await {
        Ok(groups) => {
            for g in groups.groups {
                // The preferred version first: a resource is monitored at the first
                // version (in that order) that serves it.
                let preferred = g.preferred_version.map(|p| p.version);
                let mut versions: Vec<String> = g.versions.into_iter().map(|v| v.version).collect();
                if let Some(p) = &preferred {
                    versions.sort_by_key(|v| v != p);
                }
                gvs.extend(versions.into_iter().map(|v| (g.name.clone(), v)));
            }
        }
        Err(e) => tracing::info!(error = %e, "failed to discover API groups"),
    }
    let mut out: Vec<Found> = Vec::new();
    for (group, version) in gvs {
        let gv = if group.is_empty() {
            version.clone()
        } else {
            format!("{group}/{version}")
        };
        let list = if group.is_empty() {
            client.list_core_api_resources(&version).await
        } else {
            client.list_api_group_resources(&gv).await
        };
        let list = match list {
            Ok(l) => l,
            Err(e) => {
                tracing::info!(group_version = %gv, error = %e, "failed to discover some groups");
                continue;
            }
        };
        for r in list.resources.into_iter().filter(|r| !r.name.contains('/')) {
            let gvk = GroupVersionKind::gvk(&group, &version, &r.kind);
            let ar = ApiResource::from_gvk_with_plural(&gvk, &r.name);
            let deletable = ["list", "watch", "delete"]
                .iter()
                .all(|v| r.verbs.iter().any(|x| x == v));
            let seen = out
                .iter()
                .any(|f| f.monitored && f.ar.group == group && f.ar.plural == r.name);
            let ignored = IGNORED.contains(&(group.as_str(), r.name.as_str()));
            out.push(Found {
                ar,
                namespaced: r.namespaced,
                monitored: deletable && !ignored && !seen,
            });
        }
    }
    Ok(out)
}

/// The apiserver through kube-rs, with a REST mapping from discovery (refreshed by
/// [`run`]).
pub struct KubeCluster {
    client: kube::Client,
    /// (apiVersion, kind) → the resource and whether it is namespaced.
    mapping: RwLock<HashMap<(String, String), (ApiResource, bool)>>,
}

impl KubeCluster {
    /// A cluster view with the mapping of `found`.
    pub fn new(client: kube::Client, found: &[Found]) -> Self {
        let c = KubeCluster {
            client,
            mapping: RwLock::new(HashMap::new()),
        };
        c.set_mapping(found);
        c
    }

    /// Replaces the REST mapping.
    pub fn set_mapping(&self, found: &[Found]) {
        let mut m = HashMap::new();
        for f in found {
            m.entry((f.ar.api_version.clone(), f.ar.kind.clone()))
                .or_insert((f.ar.clone(), f.namespaced));
        }
        *self.mapping.write() = m;
    }

    fn api(&self, r: &ObjectRef) -> Result<Api<DynamicObject>, Error> {
        let mapping = self.mapping.read();
        let (ar, namespaced) = mapping
            .get(&(r.api_version.clone(), r.kind.clone()))
            .ok_or_else(|| Error::UnknownKind(format!("{}/{}", r.api_version, r.kind)))?;
        Ok(if *namespaced {
            Api::namespaced_with(self.client.clone(), &r.namespace, ar)
        } else {
            Api::all_with(self.client.clone(), ar)
        })
    }
}

fn api_error(e: kube::Error) -> Error {
    match e {
        kube::Error::Api(s) if s.code == 404 => Error::NotFound,
        kube::Error::Api(s) if s.code == 409 => Error::Conflict(s.message),
        e => Error::Api(e.to_string()),
    }
}

fn owners(m: &kube::core::ObjectMeta) -> Vec<OwnerRef> {
    m.owner_references
        .iter()
        .flatten()
        .map(|o| OwnerRef {
            api_version: o.api_version.clone(),
            kind: o.kind.clone(),
            name: o.name.clone(),
            uid: o.uid.clone(),
            controller: o.controller,
            block_owner_deletion: o.block_owner_deletion,
        })
        .collect()
}

impl Cluster for KubeCluster {
    fn namespaced(&self, api_version: &str, kind: &str) -> Result<bool, Error> {
        self.mapping
            .read()
            .get(&(api_version.to_owned(), kind.to_owned()))
            .map(|(_, n)| *n)
            .ok_or_else(|| Error::UnknownKind(format!("{api_version}/{kind}")))
    }

    async fn get(&self, r: &ObjectRef) -> Result<Option<Meta>, Error> {
        let m = self
            .api(r)?
            .get_metadata_opt(&r.name)
            .await
            .map_err(api_error)?;
        Ok(m.map(|m| Meta {
            uid: m.metadata.uid.clone().unwrap_or_default(),
            resource_version: m.metadata.resource_version.clone().unwrap_or_default(),
            owners: owners(&m.metadata),
            finalizers: m.metadata.finalizers.clone().unwrap_or_default(),
            being_deleted: m.metadata.deletion_timestamp.is_some(),
        }))
    }

    async fn delete(&self, r: &ObjectRef, policy: Propagation, rv: &str) -> Result<(), Error> {
        let dp = DeleteParams {
            propagation_policy: Some(match policy {
                Propagation::Orphan => PropagationPolicy::Orphan,
                Propagation::Background => PropagationPolicy::Background,
                Propagation::Foreground => PropagationPolicy::Foreground,
            }),
            preconditions: Some(Preconditions {
                uid: Some(r.uid.clone()),
                resource_version: (!rv.is_empty()).then(|| rv.to_owned()),
            }),
            ..Default::default()
        };
        self.api(r)?
            .delete(&r.name, &dp)
            .await
            .map(|_| ())
            .map_err(api_error)
    }

    async fn patch(&self, r: &ObjectRef, patch: Value) -> Result<(), Error> {
        self.api(r)?
            .patch(&r.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
            .map_err(api_error)
    }
}

/// Watches one resource's metadata for as long as the process runs, feeding `gc`.
/// A relist (after 410 Gone or a reconnect) reports the objects that vanished in
/// between as deleted. `synced` is sent once, after the first list.
pub async fn monitor(
    gc: Arc<GarbageCollector<KubeCluster>>,
    client: kube::Client,
    ar: ApiResource,
    synced: tokio::sync::mpsc::Sender<()>,
) {
    let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(client, &ar);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known: HashSet<String> = HashSet::new();
    let mut listing: HashSet<String> = HashSet::new();
    let mut synced = Some(synced);
    let observed = |m: &PartialObjectMeta<DynamicObject>| Observed {
        identity: ObjectRef {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
            namespace: m.metadata.namespace.clone().unwrap_or_default(),
            name: m.metadata.name.clone().unwrap_or_default(),
            uid: m.metadata.uid.clone().unwrap_or_default(),
        },
        owners: owners(&m.metadata),
        being_deleted: m.metadata.deletion_timestamp.is_some(),
        finalizers: m.metadata.finalizers.clone().unwrap_or_default(),
    };
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(m)) => {
                let o = observed(&m);
                listing.insert(o.identity.uid.clone());
                gc.observe(o);
            }
            Ok(watcher::Event::InitDone) => {
                for gone in known.difference(&listing) {
                    gc.observe_deleted(gone);
                }
                known = std::mem::take(&mut listing);
                if let Some(tx) = synced.take() {
                    let _ = tx.send(()).await;
                }
            }
            Ok(watcher::Event::Apply(m)) => {
                let o = observed(&m);
                known.insert(o.identity.uid.clone());
                gc.observe(o);
            }
            Ok(watcher::Event::Delete(m)) => {
                let uid = m.metadata.uid.clone().unwrap_or_default();
                known.remove(&uid);
                gc.observe_deleted(&uid);
            }
            Err(e) => {
                tracing::info!(resource = %ar.plural, group = %ar.group, error = %e, "monitor watch failed; retrying")
            }
        }
    }
}

/// How long the workers wait for the monitors' first lists before starting anyway,
/// as upstream's initial sync timeout.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// How often discovery is re-read, as upstream's `--garbage-collector` resync of
/// deletable resources.
const RESYNC_PERIOD: Duration = Duration::from_secs(30);

fn monitor_key(ar: &ApiResource) -> String {
    format!("{}/{}", ar.api_version, ar.plural)
}

/// Runs the garbage collector: discovery (retried until the apiserver answers),
/// a monitor per deletable resource, and, once every monitor has listed (or 30 s
/// have passed), `workers` delete workers and as many orphan workers. Discovery is
/// re-read every 30 s: monitors start for new resources (a CRD installed later) and
/// stop for removed ones, and the REST mapping follows. Runs until the process stops.
pub async fn run(client: kube::Client, workers: usize, metrics: client_base::workqueue::Metrics) {
    let found = loop {
        match discover(&client).await {
            Ok(x) => break x,
            Err(e) => {
                tracing::info!(error = %e, "garbage collector: discovery failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let gc = GarbageCollector::new(KubeCluster::new(client.clone(), &found), Some(metrics));
    let (tx, mut rx) = tokio::sync::mpsc::channel(found.len().max(1));
    let mut monitors: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    for f in found.iter().filter(|f| f.monitored) {
        let handle = tokio::spawn(monitor(
            gc.clone(),
            client.clone(),
            f.ar.clone(),
            tx.clone(),
        ));
        monitors.insert(monitor_key(&f.ar), handle);
    }
    drop(tx);
    let total = monitors.len();
    let mut synced = 0;
    let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
    while synced < total {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(())) => synced += 1,
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(
                    synced,
                    total,
                    "garbage collector: timed out waiting for all resource monitors to sync; proceeding"
                );
                break;
            }
        }
    }
    tracing::info!(
        resources = total,
        objects = gc.graph_len(),
        "garbage collector: all resource monitors have synced; proceeding to collect garbage"
    );
    tokio::spawn(gc.clone().delete_workers(workers));
    tokio::spawn(gc.clone().orphan_workers(workers));
    loop {
        tokio::time::sleep(RESYNC_PERIOD).await;
        let found = match discover(&client).await {
            Ok(f) => f,
            Err(e) => {
                tracing::info!(error = %e, "garbage collector: rediscovery failed");
                continue;
            }
        };
        gc.cluster().set_mapping(&found);
        let want: HashMap<String, &ApiResource> = found
            .iter()
            .filter(|f| f.monitored)
            .map(|f| (monitor_key(&f.ar), &f.ar))
            .collect();
        monitors.retain(|k, h| {
            let keep = want.contains_key(k);
            if !keep {
                tracing::info!(resource = %k, "garbage collector: resource no longer served; stopping its monitor");
                h.abort();
            }
            keep
        });
        for (k, ar) in want {
            if let std::collections::hash_map::Entry::Vacant(slot) = monitors.entry(k) {
                tracing::info!(resource = %slot.key(), "garbage collector: new resource; starting its monitor");
                let (tx, _rx) = tokio::sync::mpsc::channel(1);
                slot.insert(tokio::spawn(monitor(
                    gc.clone(),
                    client.clone(),
                    ar.clone(),
                    tx,
                )));
            }
        }
    }
}
