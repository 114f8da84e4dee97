//! The collector's view of a real cluster: discovery of the deletable resources, one
//! metadata-only watch per resource feeding the graph (upstream's monitors over
//! metadata informers), and [`KubeCluster`], the [`Cluster`] the workers act through.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::{ApiResource, PartialObjectMeta};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;

use super::graph::{ObjectRef, Observed, OwnerRef};
use super::{Cluster, Error, GarbageCollector, Meta, Propagation};

/// Resources the collector never watches, as upstream's defaults: events are many,
/// short-lived and never owners.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// The apiserver through kube-rs, with a REST mapping from discovery.
pub struct KubeCluster {
    client: kube::Client,
    /// (apiVersion, kind) → the resource and whether it is namespaced.
    mapping: HashMap<(String, String), (ApiResource, bool)>,
}

impl KubeCluster {
    /// Discovers every served group and version. Returns the cluster view and the
    /// resources to monitor: the preferred version of each resource that supports
    /// list, watch and delete.
    pub async fn discover(client: kube::Client) -> Result<(Self, Vec<ApiResource>), kube::Error> {
        let discovery = Discovery::new(client.clone()).run().await?;
        let mut mapping = HashMap::new();
        let mut monitored = Vec::new();
        for group in discovery.groups() {
            for v in group.versions() {
                for (ar, caps) in group.versioned_resources(v) {
                    let namespaced = matches!(caps.scope, Scope::Namespaced);
                    mapping
                        .entry((ar.api_version.clone(), ar.kind.clone()))
                        .or_insert((ar, namespaced));
                }
            }
            for (ar, caps) in group.recommended_resources() {
                let deletable = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                    .iter()
                    .all(|v| caps.supports_operation(v));
                if deletable && !IGNORED.contains(&(ar.group.as_str(), ar.plural.as_str())) {
                    monitored.push(ar);
                }
            }
        }
        Ok((KubeCluster { client, mapping }, monitored))
    }

    fn api(&self, r: &ObjectRef) -> Result<Api<DynamicObject>, Error> {
        let (ar, namespaced) = self
            .mapping
            .get(&(r.api_version.clone(), r.kind.clone()))
            .ok_or_else(|| Error::UnknownKind(format!("{}, Kind={}", r.api_version, r.kind)))?;
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
            .get(&(api_version.to_owned(), kind.to_owned()))
            .map(|(_, n)| *n)
            .ok_or_else(|| Error::UnknownKind(format!("{api_version}, Kind={kind}")))
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
                resource_version: Some(rv.to_owned()),
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

/// Runs the garbage collector: discovery (retried until the apiserver answers),
/// a monitor per deletable resource, and, once every monitor has listed, `workers`
/// delete workers and as many orphan workers. Runs until the process stops.
pub async fn run(client: kube::Client, workers: usize, metrics: crate::workqueue::Metrics) {
    let (cluster, resources) = loop {
        match KubeCluster::discover(client.clone()).await {
            Ok(x) => break x,
            Err(e) => {
                tracing::info!(error = %e, "garbage collector: discovery failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    };
    let gc = GarbageCollector::new(cluster, Some(metrics));
    let (tx, mut rx) = tokio::sync::mpsc::channel(resources.len().max(1));
    let total = resources.len();
    for ar in resources {
        tokio::spawn(monitor(gc.clone(), client.clone(), ar, tx.clone()));
    }
    drop(tx);
    let mut synced = 0;
    while synced < total && rx.recv().await.is_some() {
        synced += 1;
    }
    tracing::info!(
        resources = total,
        objects = gc.graph_len(),
        "garbage collector: all resource monitors have synced; proceeding to collect garbage"
    );
    let mut tasks = Vec::new();
    for _ in 0..workers {
        tasks.push(tokio::spawn(gc.clone().delete_worker()));
        tasks.push(tokio::spawn(gc.clone().orphan_worker()));
    }
    futures::future::join_all(tasks).await;
}
