//! The replicationcontroller controller, as upstream's replication manager: the
//! [`replicaset`](crate::replicaset) controller run over ReplicationControllers,
//! each seen as the ReplicaSet it converts to (a map selector becomes
//! `matchLabels`), with its status converted back on the way out.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{
    ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{
    Pod, ReplicationController, ReplicationControllerCondition, ReplicationControllerSpec,
    ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, PostParams};

use client_base::informer::{Funcs, Informer, NAMESPACE, SharedInformerFactory};
use client_base::workqueue::Metrics;

use crate::replicaset::{self, ApiCluster, Cluster, Controller, Kind, RecorderEvents, Store};

/// The controller's `--controllers` name.
pub const NAME: &str = "replicationcontroller-controller";
/// Its service account and event source, as upstream's.
pub const ACCOUNT: &str = "replication-controller";
/// ReplicationControllers.
pub const KIND: Kind = Kind {
    kind: "ReplicationController",
    api_version: "v1",
    queue: "replicationmanager",
};

/// The ReplicaSet a ReplicationController converts to.
pub fn to_replica_set(rc: &ReplicationController) -> ReplicaSet {
    let spec = rc.spec.clone().unwrap_or_default();
    ReplicaSet {
        metadata: rc.metadata.clone(),
        spec: Some(ReplicaSetSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            selector: LabelSelector {
                match_labels: spec.selector,
                match_expressions: None,
            },
            template: spec.template,
        }),
        status: rc.status.as_ref().map(|s| ReplicaSetStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            ready_replicas: s.ready_replicas,
            available_replicas: s.available_replicas,
            observed_generation: s.observed_generation,
            conditions: s.conditions.as_ref().map(|cs| {
                cs.iter()
                    .map(|c| ReplicaSetCondition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                        last_transition_time: c.last_transition_time.clone(),
                    })
                    .collect()
            }),
            terminating_replicas: None,
        }),
    }
}

/// The ReplicationController a converted ReplicaSet stands for.
pub fn from_replica_set(rs: &ReplicaSet) -> ReplicationController {
    let spec = rs.spec.clone().unwrap_or_default();
    ReplicationController {
        metadata: rs.metadata.clone(),
        spec: Some(ReplicationControllerSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            selector: spec.selector.match_labels,
            template: spec.template,
        }),
        status: rs.status.as_ref().map(|s| ReplicationControllerStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            ready_replicas: s.ready_replicas,
            available_replicas: s.available_replicas,
            observed_generation: s.observed_generation,
            conditions: s.conditions.as_ref().map(|cs| {
                cs.iter()
                    .map(|c| ReplicationControllerCondition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                        last_transition_time: c.last_transition_time.clone(),
                    })
                    .collect()
            }),
        }),
    }
}

/// [`Store`] over the ReplicationController and pod informers.
struct RcStore {
    rcs: Arc<Informer<ReplicationController>>,
    pods: Arc<Informer<Pod>>,
}

impl Store for RcStore {
    fn replica_set(&self, key: &str) -> Option<Arc<ReplicaSet>> {
        self.rcs.get(key).map(|rc| Arc::new(to_replica_set(&rc)))
    }
    fn replica_sets_in(&self, ns: &str) -> Vec<Arc<ReplicaSet>> {
        self.rcs
            .by_index(NAMESPACE, ns)
            .iter()
            .map(|rc| Arc::new(to_replica_set(rc)))
            .collect()
    }
    fn pods_in(&self, ns: &str) -> Vec<Arc<Pod>> {
        self.pods.by_index(NAMESPACE, ns)
    }
}

/// [`Cluster`] writing pods as the replicaset controller does and
/// ReplicationControllers in place of ReplicaSets.
struct RcCluster {
    pods: ApiCluster,
}

impl Cluster for RcCluster {
    fn create_pod<'a>(&'a self, ns: &'a str, pod: Pod) -> BoxFuture<'a, Result<Pod, kube::Error>> {
        self.pods.create_pod(ns, pod)
    }
    fn delete_pod<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        self.pods.delete_pod(ns, name)
    }
    fn patch_pod<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        patch: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        self.pods.patch_pod(ns, name, patch)
    }
    fn get_replica_set<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReplicaSet>, kube::Error>> {
        Box::pin(async move {
            let rc = Api::<ReplicationController>::namespaced(self.pods.client.clone(), ns)
                .get_opt(name)
                .await?;
            Ok(rc.as_ref().map(to_replica_set))
        })
    }
    fn update_status(&self, rs: ReplicaSet) -> BoxFuture<'_, Result<ReplicaSet, kube::Error>> {
        Box::pin(async move {
            let rc = from_replica_set(&rs);
            let ns = rc.metadata.namespace.clone().unwrap_or_default();
            let name = rc.metadata.name.clone().unwrap_or_default();
            let stored = Api::<ReplicationController>::namespaced(self.pods.client.clone(), &ns)
                .replace_status(&name, &PostParams::default(), &rc)
                .await?;
            Ok(to_replica_set(&stored))
        })
    }
}

/// Starts the controller on the shared informers.
pub async fn run(
    client: kube::Client,
    factory: Arc<SharedInformerFactory>,
    recorder: client_base::events::Recorder,
    workers: usize,
    metrics: Metrics,
) {
    let rcs = factory.informer::<ReplicationController>();
    let store = Arc::new(RcStore {
        rcs: rcs.clone(),
        pods: factory.informer::<Pod>(),
    });
    let c = Controller::new(
        &KIND,
        store,
        Arc::new(RcCluster {
            pods: ApiCluster { client },
        }),
        Arc::new(RecorderEvents(recorder, &KIND)),
        Some(metrics),
    );
    let (a, u, d) = (c.clone(), c.clone(), c.clone());
    rcs.add_handler(
        Funcs::new()
            .on_add(move |rc: &Arc<ReplicationController>, _| {
                a.queue().add(replicaset::key(&rc.metadata))
            })
            .on_update(move |_, rc: &Arc<ReplicationController>| {
                u.queue().add(replicaset::key(&rc.metadata))
            })
            .on_delete(move |rc: &Arc<ReplicationController>| {
                d.replica_set_deleted(&to_replica_set(rc))
            }),
    );
    replicaset::run_on(c, factory, workers).await;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn conversion_round_trips() {
        let mut rc = ReplicationController::default();
        rc.metadata.name = Some("rc".into());
        rc.spec = Some(ReplicationControllerSpec {
            replicas: Some(2),
            selector: Some(BTreeMap::from([("app".to_owned(), "x".to_owned())])),
            min_ready_seconds: Some(3),
            template: None,
        });
        rc.status = Some(ReplicationControllerStatus {
            replicas: 2,
            ready_replicas: Some(1),
            conditions: Some(vec![ReplicationControllerCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let rs = to_replica_set(&rc);
        assert_eq!(
            rs.spec
                .as_ref()
                .unwrap()
                .selector
                .match_labels
                .as_ref()
                .unwrap()["app"],
            "x"
        );
        assert_eq!(from_replica_set(&rs), rc);
    }
}
