//! The sync against in-memory fakes: creates, deletes, adoption, failures and
//! status, as upstream's `replica_set_test.go` checks them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ReplicaSetSpec;
use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use parking_lot::Mutex;

use super::*;

#[derive(Default)]
struct Fake {
    sets: Mutex<Vec<ReplicaSet>>,
    pods: Mutex<Vec<Pod>>,
    /// Creates fail with this message (a quota, say).
    refuse_creates: Mutex<Option<String>>,
    created: Mutex<Vec<Pod>>,
    deleted: Mutex<Vec<String>>,
    patched: Mutex<Vec<(String, serde_json::Value)>>,
    statuses: Mutex<Vec<ReplicaSetStatus>>,
    events: Mutex<Vec<(String, String)>>,
}

fn api_error(code: u16, message: &str) -> kube::Error {
    kube::Error::Api(Box::new(kube::core::Status {
        code,
        message: message.into(),
        reason: "Forbidden".into(),
        ..Default::default()
    }))
}

impl Store for Fake {
    fn replica_set(&self, key: &str) -> Option<Arc<ReplicaSet>> {
        self.sets
            .lock()
            .iter()
            .find(|r| super::key(&r.metadata) == key)
            .cloned()
            .map(Arc::new)
    }
    fn replica_sets_in(&self, ns: &str) -> Vec<Arc<ReplicaSet>> {
        self.sets
            .lock()
            .iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(ns))
            .cloned()
            .map(Arc::new)
            .collect()
    }
    fn pods_in(&self, ns: &str) -> Vec<Arc<Pod>> {
        self.pods
            .lock()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .cloned()
            .map(Arc::new)
            .collect()
    }
}

impl Cluster for Fake {
    fn create_pod<'a>(
        &'a self,
        ns: &'a str,
        mut pod: Pod,
    ) -> BoxFuture<'a, Result<Pod, kube::Error>> {
        Box::pin(async move {
            if let Some(m) = self.refuse_creates.lock().clone() {
                return Err(api_error(403, &m));
            }
            let n = self.created.lock().len();
            pod.metadata.name = Some(format!(
                "{}{n}",
                pod.metadata.generate_name.clone().unwrap()
            ));
            pod.metadata.namespace = Some(ns.into());
            self.created.lock().push(pod.clone());
            Ok(pod)
        })
    }
    fn delete_pod<'a>(
        &'a self,
        _ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        Box::pin(async move {
            self.deleted.lock().push(name.to_owned());
            Ok(())
        })
    }
    fn patch_pod<'a>(
        &'a self,
        _ns: &'a str,
        name: &'a str,
        patch: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        Box::pin(async move {
            self.patched.lock().push((name.to_owned(), patch));
            Ok(())
        })
    }
    fn get_replica_set<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReplicaSet>, kube::Error>> {
        Box::pin(async move {
            Ok(self
                .replica_set(&format!("{ns}/{name}"))
                .map(|r| (*r).clone()))
        })
    }
    fn update_status(&self, rs: ReplicaSet) -> BoxFuture<'_, Result<ReplicaSet, kube::Error>> {
        Box::pin(async move {
            self.statuses.lock().push(rs.status.clone().unwrap());
            let mut sets = self.sets.lock();
            if let Some(r) = sets
                .iter_mut()
                .find(|r| r.metadata.name == rs.metadata.name)
            {
                r.status = rs.status.clone();
            }
            Ok(rs)
        })
    }
}

impl Events for Fake {
    fn event(&self, _rs: &ReplicaSet, _warning: bool, reason: &str, note: String) {
        self.events.lock().push((reason.to_owned(), note));
    }
}

fn rs(name: &str, replicas: i32) -> ReplicaSet {
    let labels = BTreeMap::from([("app".to_owned(), name.to_owned())]);
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        image: Some("nginx".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// A pod of `owner` (or an orphan) with `app=<label>`.
fn pod(name: &str, label: &str, owner: Option<&str>, node: &str, ready: bool) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.metadata.labels = Some(BTreeMap::from([("app".to_owned(), label.to_owned())]));
    if let Some(o) = owner {
        p.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: o.into(),
            uid: format!("uid-{o}"),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
    }
    p.spec = Some(PodSpec {
        node_name: (!node.is_empty()).then(|| node.into()),
        ..Default::default()
    });
    p.status = Some(PodStatus {
        phase: Some(
            if node.is_empty() {
                "Pending"
            } else {
                "Running"
            }
            .into(),
        ),
        conditions: ready.then(|| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(Timestamp::from_second(1_700_000_000).unwrap())),
                ..Default::default()
            }]
        }),
        ..Default::default()
    });
    p
}

fn controller(fake: &Arc<Fake>) -> Arc<Controller> {
    Controller::new(&REPLICA_SET, fake.clone(), fake.clone(), fake.clone(), None)
}

#[tokio::test]
async fn creates_the_missing_pods_once_until_the_watch_sees_them() {
    let fake = Arc::new(Fake::default());
    fake.sets.lock().push(rs("web", 3));
    let c = controller(&fake);
    assert_eq!(c.sync("default/web").await, Requeue::Forget);
    let created = fake.created.lock().clone();
    assert_eq!(created.len(), 3);
    let p = &created[0];
    assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(p.metadata.labels.as_ref().unwrap()["app"], "web");
    let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.uid.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("ReplicaSet", "uid-web", Some(true), Some(true))
    );
    assert_eq!(
        fake.events.lock()[0],
        (
            "SuccessfulCreate".to_owned(),
            "Created pod: web-0".to_owned()
        )
    );
    // The watch has not delivered them yet: no second round of creates.
    assert_eq!(c.sync("default/web").await, Requeue::Forget);
    assert_eq!(fake.created.lock().len(), 3);
    // Seen: the pods count, and nothing more is created.
    for p in created {
        fake.pods.lock().push(p.clone());
        c.pod_added(&p);
    }
    c.sync("default/web").await;
    assert_eq!(fake.created.lock().len(), 3);
    let st = fake.statuses.lock().last().cloned().unwrap();
    assert_eq!((st.replicas, st.observed_generation), (3, Some(1)));
}

#[tokio::test]
async fn deletes_the_surplus_in_upstreams_order() {
    let fake = Arc::new(Fake::default());
    fake.sets.lock().push(rs("web", 2));
    for p in [
        pod("ready-1", "web", Some("web"), "n1", true),
        pod("unscheduled", "web", Some("web"), "", false),
        pod("not-ready", "web", Some("web"), "n2", false),
        pod("ready-2", "web", Some("web"), "n2", true),
    ] {
        fake.pods.lock().push(p);
    }
    let c = controller(&fake);
    c.sync("default/web").await;
    let mut deleted = fake.deleted.lock().clone();
    deleted.sort();
    assert_eq!(deleted, ["not-ready", "unscheduled"]);
    assert!(fake.events.lock().contains(&(
        "SuccessfulDelete".to_owned(),
        "Deleted pod: unscheduled".to_owned()
    )));
}

#[tokio::test]
async fn adopts_orphans_releases_strays_and_leaves_others_alone() {
    let fake = Arc::new(Fake::default());
    fake.sets.lock().push(rs("web", 2));
    fake.pods.lock().extend([
        pod("orphan", "web", None, "n1", true),
        pod("stray", "db", Some("web"), "n1", true),
        pod("theirs", "web", Some("other"), "n1", true),
        pod("mine", "web", Some("web"), "n1", true),
    ]);
    let c = controller(&fake);
    c.sync("default/web").await;
    let patched = fake.patched.lock().clone();
    let adopt = &patched.iter().find(|(n, _)| n == "orphan").unwrap().1;
    assert_eq!(adopt["metadata"]["ownerReferences"][0]["uid"], "uid-web");
    assert_eq!(adopt["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(adopt["metadata"]["uid"], "uid-orphan");
    let release = &patched.iter().find(|(n, _)| n == "stray").unwrap().1;
    assert_eq!(
        release["metadata"]["ownerReferences"][0],
        serde_json::json!({"$patch": "delete", "uid": "uid-web"})
    );
    assert!(!patched.iter().any(|(n, _)| n == "theirs"));
    // mine + orphan make two: nothing created or deleted.
    assert!(fake.created.lock().is_empty() && fake.deleted.lock().is_empty());
    assert_eq!(fake.statuses.lock().last().unwrap().replicas, 2);
}

#[tokio::test]
async fn a_refused_create_is_reported_and_retried() {
    let fake = Arc::new(Fake::default());
    fake.sets.lock().push(rs("web", 2));
    *fake.refuse_creates.lock() = Some(
        "pods \"web-x\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1"
            .into(),
    );
    let c = controller(&fake);
    assert_eq!(c.sync("default/web").await, Requeue::Backoff);
    let events = fake.events.lock().clone();
    assert_eq!(
        events.len(),
        1,
        "slow start stops after the first failing batch"
    );
    assert_eq!(events[0].0, "FailedCreate");
    assert!(
        events[0]
            .1
            .starts_with("Error creating: pods \"web-x\" is forbidden: exceeded quota")
    );
    let st = fake.statuses.lock().last().cloned().unwrap();
    let cond = &st.conditions.unwrap()[0];
    assert_eq!(
        (
            cond.type_.as_str(),
            cond.status.as_str(),
            cond.reason.as_deref()
        ),
        ("ReplicaFailure", "True", Some("FailedCreate"))
    );
    // The skipped creates are not awaited: the next sync tries again, and once
    // creates work the condition goes.
    *fake.refuse_creates.lock() = None;
    assert_eq!(c.sync("default/web").await, Requeue::Forget);
    assert_eq!(fake.created.lock().len(), 2);
    assert!(fake.statuses.lock().last().unwrap().conditions.is_none());
}

#[tokio::test]
async fn min_ready_seconds_requeues_until_pods_are_available() {
    let fake = Arc::new(Fake::default());
    let mut set = rs("web", 1);
    set.spec.as_mut().unwrap().min_ready_seconds = Some(10);
    fake.sets.lock().push(set);
    let mut p = pod("p", "web", Some("web"), "n1", true);
    p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
        Some(Time(Timestamp::now()));
    fake.pods.lock().push(p);
    let c = controller(&fake);
    assert_eq!(
        c.sync("default/web").await,
        Requeue::After(Duration::from_secs(10))
    );
    let st = fake.statuses.lock().last().cloned().unwrap();
    assert_eq!(
        (st.ready_replicas, st.available_replicas),
        (Some(1), Some(0))
    );
}
