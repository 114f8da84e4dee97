//! The sync against in-memory fakes, after upstream's `sync_test.go`,
//! `rolling_test.go`, `recreate_test.go` and `progress_test.go`.

use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use parking_lot::Mutex;

use super::*;

#[derive(Default)]
struct Fake {
    deployments: Mutex<Vec<Deployment>>,
    sets: Mutex<Vec<ReplicaSet>>,
    pods: Mutex<Vec<Pod>>,
    events: Mutex<Vec<String>>,
    deleted: Mutex<Vec<String>>,
    seq: Mutex<u64>,
}

impl Fake {
    fn next(&self) -> u64 {
        let mut s = self.seq.lock();
        *s += 1;
        *s
    }
    fn set(&self, name_prefix: &str) -> ReplicaSet {
        self.sets
            .lock()
            .iter()
            .find(|r| r.metadata.name.as_deref().unwrap().starts_with(name_prefix))
            .cloned()
            .unwrap()
    }
    /// Every set's pods become available, as the replicaset controller and the
    /// kubelets would make them.
    fn all_available(&self) {
        for r in self.sets.lock().iter_mut() {
            let n = r.spec.as_ref().unwrap().replicas.unwrap();
            r.status = Some(ReplicaSetStatus {
                replicas: n,
                ready_replicas: Some(n),
                available_replicas: Some(n),
                observed_generation: r.metadata.generation,
                ..Default::default()
            });
        }
    }
}

impl Store for Fake {
    fn deployment(&self, k: &str) -> Option<Arc<Deployment>> {
        self.deployments
            .lock()
            .iter()
            .find(|d| key(&d.metadata) == k)
            .cloned()
            .map(Arc::new)
    }
    fn deployments_in(&self, _ns: &str) -> Vec<Arc<Deployment>> {
        self.deployments
            .lock()
            .iter()
            .cloned()
            .map(Arc::new)
            .collect()
    }
    fn replica_set(&self, k: &str) -> Option<Arc<ReplicaSet>> {
        self.sets
            .lock()
            .iter()
            .find(|r| key(&r.metadata) == k)
            .cloned()
            .map(Arc::new)
    }
    fn replica_sets_in(&self, _ns: &str) -> Vec<Arc<ReplicaSet>> {
        self.sets.lock().iter().cloned().map(Arc::new).collect()
    }
    fn pods_in(&self, _ns: &str) -> Vec<Arc<Pod>> {
        self.pods.lock().iter().cloned().map(Arc::new).collect()
    }
}

impl Cluster for Fake {
    fn create_rs(&self, mut rs: ReplicaSet) -> BoxFuture<'_, Result<ReplicaSet, kube::Error>> {
        Box::pin(async move {
            let n = self.next();
            rs.metadata.uid = Some(format!("rs-uid-{n}"));
            rs.metadata.resource_version = Some(n.to_string());
            rs.metadata.generation = Some(1);
            rs.metadata.creation_timestamp = Some(Time(
                Timestamp::from_second(1_700_000_000 + n as i64).unwrap(),
            ));
            self.sets.lock().push(rs.clone());
            Ok(rs)
        })
    }
    fn update_rs(&self, mut rs: ReplicaSet) -> BoxFuture<'_, Result<ReplicaSet, kube::Error>> {
        Box::pin(async move {
            rs.metadata.resource_version = Some(self.next().to_string());
            let mut sets = self.sets.lock();
            let slot = sets
                .iter_mut()
                .find(|r| r.metadata.name == rs.metadata.name)
                .unwrap();
            *slot = rs.clone();
            Ok(rs)
        })
    }
    fn delete_rs<'a>(
        &'a self,
        _ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        Box::pin(async move {
            self.deleted.lock().push(name.to_owned());
            self.sets
                .lock()
                .retain(|r| r.metadata.name.as_deref() != Some(name));
            Ok(())
        })
    }
    fn patch_rs<'a>(
        &'a self,
        _ns: &'a str,
        _name: &'a str,
        _patch: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), kube::Error>> {
        Box::pin(async move { Ok(()) })
    }
    fn get_deployment<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Deployment>, kube::Error>> {
        Box::pin(async move {
            Ok(self
                .deployment(&format!("{ns}/{name}"))
                .map(|d| (*d).clone()))
        })
    }
    fn update_status(&self, mut d: Deployment) -> BoxFuture<'_, Result<Deployment, kube::Error>> {
        Box::pin(async move {
            d.metadata.resource_version = Some(self.next().to_string());
            let mut ds = self.deployments.lock();
            let slot = ds
                .iter_mut()
                .find(|x| x.metadata.name == d.metadata.name)
                .unwrap();
            slot.status = d.status.clone();
            slot.metadata.annotations = d.metadata.annotations.clone();
            Ok(d)
        })
    }
}

impl Events for Fake {
    fn event(&self, _d: &Deployment, _warning: bool, reason: &str, note: String) {
        self.events.lock().push(format!("{reason}: {note}"));
    }
}

fn deployment(image: &str, replicas: i32, strategy: &str) -> Deployment {
    let labels: BTreeMap<String, String> = [("app".to_owned(), "web".to_owned())].into();
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-web".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some(strategy.into()),
                rolling_update: (strategy == "RollingUpdate").then(|| {
                    k8s_openapi::api::apps::v1::RollingUpdateDeployment {
                        max_surge: Some(IntOrString::String("25%".into())),
                        max_unavailable: Some(IntOrString::String("25%".into())),
                    }
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        image: Some(image.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status: None,
    }
}

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn setup(d: Deployment) -> (Arc<Fake>, Arc<Controller>) {
    let fake = Arc::new(Fake::default());
    fake.deployments.lock().push(d);
    let c = Controller::new(fake.clone(), fake.clone(), fake.clone(), None);
    (fake, c)
}

fn set_image(fake: &Fake, image: &str) {
    let mut ds = fake.deployments.lock();
    let d = &mut ds[0];
    d.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some(image.into());
    d.metadata.generation = Some(d.metadata.generation.unwrap() + 1);
}

fn condition(fake: &Fake, type_: &str) -> Option<(String, String)> {
    let d = fake.deployments.lock()[0].clone();
    util::condition(d.status.as_ref()?, type_)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

#[tokio::test]
async fn a_new_deployment_gets_its_replica_set() {
    let (fake, c) = setup(deployment("nginx:1", 3, "RollingUpdate"));
    c.sync("default/web").await.unwrap();
    let sets = fake.sets.lock().clone();
    assert_eq!(sets.len(), 1);
    let rs = &sets[0];
    let hash = rs.metadata.labels.as_ref().unwrap()[util::POD_TEMPLATE_HASH].clone();
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.selector.match_labels.as_ref().unwrap()[util::POD_TEMPLATE_HASH],
        hash
    );
    let tl = spec
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(tl[util::POD_TEMPLATE_HASH], hash);
    let a = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        (
            a[util::REVISION].as_str(),
            a[util::DESIRED_REPLICAS].as_str(),
            a[util::MAX_REPLICAS].as_str()
        ),
        ("1", "3", "4")
    );
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Deployment", Some(true))
    );
    assert_eq!(
        fake.events.lock()[0],
        format!("ScalingReplicaSet: Scaled up replica set web-{hash} from 0 to 3")
    );
    let d = fake.deployments.lock()[0].clone();
    assert_eq!(
        d.metadata.annotations.as_ref().unwrap()[util::REVISION],
        "1"
    );
    assert_eq!(condition(&fake, "Progressing").unwrap().1, reason::NEW_RS);
    // Available pods complete the rollout.
    fake.all_available();
    c.sync("default/web").await.unwrap();
    assert_eq!(
        condition(&fake, "Progressing").unwrap(),
        ("True".into(), reason::NEW_RS_AVAILABLE.into())
    );
    assert_eq!(
        condition(&fake, "Available").unwrap(),
        ("True".into(), reason::MIN_AVAILABLE.into())
    );
    let st = fake.deployments.lock()[0].status.clone().unwrap();
    assert_eq!(
        (st.replicas, st.updated_replicas, st.available_replicas),
        (Some(3), Some(3), Some(3))
    );
}

#[tokio::test]
async fn a_rolling_update_surges_then_scales_the_old_set_down() {
    let (fake, c) = setup(deployment("nginx:1", 4, "RollingUpdate"));
    c.sync("default/web").await.unwrap();
    fake.all_available();
    c.sync("default/web").await.unwrap();
    let old_name = fake.sets.lock()[0].metadata.name.clone().unwrap();
    set_image(&fake, "nginx:2");
    // maxSurge 1, maxUnavailable 1: the new set starts at 1 (5 pods in all).
    c.sync("default/web").await.unwrap();
    let new = fake
        .sets
        .lock()
        .iter()
        .find(|r| r.metadata.name.as_deref() != Some(old_name.as_str()))
        .cloned()
        .unwrap();
    let new_name = new.metadata.name.clone().unwrap();
    assert_eq!(new.spec.as_ref().unwrap().replicas, Some(1));
    assert_eq!(
        new.metadata.annotations.as_ref().unwrap()[util::REVISION],
        "2"
    );
    // Old down by what availability allows: 5 − 3 (min available) − 1 (new
    // unavailable) = 1.
    c.sync("default/web").await.unwrap();
    assert_eq!(fake.set(&old_name).spec.unwrap().replicas, Some(3));
    // Everything available: the rollout walks on until the old set is empty.
    for _ in 0..10 {
        fake.all_available();
        c.sync("default/web").await.unwrap();
    }
    assert_eq!(fake.set(&old_name).spec.unwrap().replicas, Some(0));
    assert_eq!(fake.set(&new_name).spec.unwrap().replicas, Some(4));
    let events = fake.events.lock().clone();
    assert!(
        events.contains(&format!(
            "ScalingReplicaSet: Scaled up replica set {new_name} from 0 to 1"
        )),
        "{events:?}"
    );
    assert!(
        events.contains(&format!(
            "ScalingReplicaSet: Scaled down replica set {old_name} from 4 to 3"
        )),
        "{events:?}"
    );
    assert_eq!(
        condition(&fake, "Progressing").unwrap().1,
        reason::NEW_RS_AVAILABLE
    );
    let d = fake.deployments.lock()[0].clone();
    assert_eq!(d.metadata.annotations.unwrap()[util::REVISION], "2");
}

#[tokio::test]
async fn recreate_empties_the_old_set_before_the_new_one_starts() {
    let (fake, c) = setup(deployment("nginx:1", 2, "Recreate"));
    c.sync("default/web").await.unwrap();
    fake.all_available();
    c.sync("default/web").await.unwrap();
    set_image(&fake, "nginx:2");
    c.sync("default/web").await.unwrap();
    assert_eq!(fake.sets.lock().len(), 1, "no new set while old pods run");
    assert_eq!(fake.sets.lock()[0].spec.as_ref().unwrap().replicas, Some(0));
    // Old pods gone (status 0): the new set comes up at full size.
    fake.all_available();
    c.sync("default/web").await.unwrap();
    let sets = fake.sets.lock().clone();
    assert_eq!(sets.len(), 2);
    assert_eq!(sets[1].spec.as_ref().unwrap().replicas, Some(2));
}

#[tokio::test]
async fn old_sets_beyond_the_history_limit_are_deleted() {
    let mut d = deployment("v0", 1, "RollingUpdate");
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let (fake, c) = setup(d);
    for v in 1..=3 {
        for _ in 0..6 {
            fake.all_available();
            c.sync("default/web").await.unwrap();
        }
        set_image(&fake, &format!("v{v}"));
    }
    for _ in 0..6 {
        fake.all_available();
        c.sync("default/web").await.unwrap();
    }
    // Revisions 1..4 existed; the newest plus one old set remain.
    assert_eq!(fake.sets.lock().len(), 2, "{:?}", fake.deleted.lock());
    assert_eq!(fake.deleted.lock().len(), 2);
}

#[tokio::test]
async fn no_progress_past_the_deadline_times_out() {
    let mut d = deployment("nginx:1", 1, "RollingUpdate");
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(1);
    let (fake, c) = setup(d);
    c.sync("default/web").await.unwrap();
    // Nothing becomes available; the check comes back after the deadline.
    let after = c.sync("default/web").await.unwrap();
    assert!(after.is_some(), "requeued for the progress check");
    // The condition's last update is older than the deadline.
    {
        let mut ds = fake.deployments.lock();
        let st = ds[0].status.as_mut().unwrap();
        for cond in st.conditions.as_mut().unwrap() {
            cond.last_update_time = Some(Time(Timestamp::from_second(1_600_000_000).unwrap()));
        }
    }
    c.sync("default/web").await.unwrap();
    assert_eq!(
        condition(&fake, "Progressing").unwrap(),
        ("False".into(), reason::TIMED_OUT.into())
    );
}
