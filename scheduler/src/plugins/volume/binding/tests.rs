//! Table cases after upstream's `volume_binding_test.go` and `binder_test.go`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{TopologySelectorLabelRequirement, TopologySelectorTerm};
use k8s_openapi::api::storage::v1::{CSIDriver, CSIDriverSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;
use crate::plugins::testutil::{node, snapshot, state};
use crate::plugins::volume::build::{
    bound_pvc, claim_volume as vol, class, pod_with, pv, pvc, with_affinity, with_claim,
};
use crate::plugins::volume::fake::MemStorage;

const WAIT: &str = "WaitForFirstConsumer";
const IMMEDIATE: &str = "Immediate";

/// A storage the fake writer changes, as the apiserver and the PV controller would.
#[derive(Clone)]
struct Shared(Arc<Mutex<MemStorage>>);

impl Storage for Shared {
    fn pvc(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        Storage::pvc(&*self.0.lock(), namespace, name)
    }
    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        Storage::pv(&*self.0.lock(), name)
    }
    fn pvs(&self) -> Vec<Arc<PersistentVolume>> {
        self.0.lock().pvs()
    }
    fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.0.lock().storage_class(name)
    }
    fn csi_node(&self, name: &str) -> Option<Arc<k8s_openapi::api::storage::v1::CSINode>> {
        Storage::csi_node(&*self.0.lock(), name)
    }
    fn csi_driver(&self, name: &str) -> Option<Arc<CSIDriver>> {
        self.0.lock().csi_driver(name)
    }
    fn capacities(&self) -> Vec<Arc<CSIStorageCapacity>> {
        self.0.lock().capacities()
    }
    fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.0.lock().node(name)
    }
    fn pod_exists(&self, namespace: &str, name: &str) -> bool {
        self.0.lock().pod_exists(namespace, name)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Nobody acts on the writes.
    Nothing,
    /// The PV controller or the provisioner completes the binding.
    Complete,
    /// The provisioner fails and removes the selected-node annotation.
    Reset,
}

/// Stores what PreBind writes (with a new resourceVersion) and, when `complete`,
/// finishes the binding as the PV controller or a provisioner would.
struct FakeWriter {
    storage: Shared,
    mode: Mode,
    writes: Mutex<Vec<String>>,
}

fn bump(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    let v: u64 = meta
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    meta.resource_version = Some((v + 1).to_string());
}

impl Writer for FakeWriter {
    fn update_pv(
        &self,
        mut pv: PersistentVolume,
    ) -> BoxFuture<'_, Result<PersistentVolume, String>> {
        Box::pin(async move {
            bump(&mut pv.metadata);
            let name = pv.metadata.name.clone().unwrap();
            self.writes.lock().push(format!("pv/{name}"));
            let mut s = self.storage.0.lock();
            s.pvs.insert(name.clone(), Arc::new(pv.clone()));
            if self.mode == Mode::Complete {
                let r = pv.spec.as_ref().unwrap().claim_ref.clone().unwrap();
                let key = format!("{}/{}", r.namespace.unwrap(), r.name.unwrap());
                let mut c = (*s.pvcs[&key]).clone();
                c.spec.as_mut().unwrap().volume_name = Some(name);
                c.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(ANN_BIND_COMPLETED.into(), "yes".into());
                bump(&mut c.metadata);
                s.pvcs.insert(key, Arc::new(c));
            }
            Ok(pv)
        })
    }
    fn update_pvc(
        &self,
        mut c: PersistentVolumeClaim,
    ) -> BoxFuture<'_, Result<PersistentVolumeClaim, String>> {
        Box::pin(async move {
            bump(&mut c.metadata);
            let key = pvc_key(&c);
            self.writes.lock().push(format!("pvc/{key}"));
            let stored = c.clone();
            let mut s = self.storage.0.lock();
            if self.mode == Mode::Reset {
                c.metadata.annotations = Some(BTreeMap::from([("other".into(), "x".into())]));
                bump(&mut c.metadata);
            }
            if self.mode == Mode::Complete {
                // The provisioner makes a PV on the selected node and binds it.
                let node = annotation(&c.metadata, ANN_SELECTED_NODE)
                    .unwrap()
                    .to_owned();
                let name = format!("pvc-{}", c.metadata.name.as_deref().unwrap());
                let v = with_claim(
                    with_affinity(
                        pv(&name, claim_class(&c), "1Gi"),
                        "kubernetes.io/hostname",
                        &[&node],
                    ),
                    c.metadata.name.as_deref().unwrap(),
                );
                s.pvs.insert(name.clone(), Arc::new(v));
                c.spec.as_mut().unwrap().volume_name = Some(name);
                c.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(ANN_BIND_COMPLETED.into(), "yes".into());
                bump(&mut c.metadata);
            }
            s.pvcs.insert(key, Arc::new(c));
            Ok(stored)
        })
    }
}

fn plugin(storage: MemStorage, mode: Mode) -> (VolumeBinding, Arc<FakeWriter>, Shared) {
    let shared = Shared(Arc::new(Mutex::new(storage)));
    let writer = Arc::new(FakeWriter {
        storage: shared.clone(),
        mode,
        writes: Mutex::default(),
    });
    let mut pl =
        VolumeBinding::new(Args::default(), Arc::new(shared.clone()), writer.clone()).unwrap();
    pl.timeout = Duration::from_millis(50);
    pl.poll = Duration::from_millis(10);
    (pl, writer, shared)
}

fn nodes() -> Vec<Arc<Node>> {
    vec![
        node("node-a")
            .label("kubernetes.io/hostname", "node-a")
            .label("foo", "bar")
            .obj(),
        node("node-b")
            .label("kubernetes.io/hostname", "node-b")
            .label("foo", "baz")
            .obj(),
    ]
}

/// PreFilter, then Filter on every node: (PreFilter status, per-node statuses).
fn run(pl: &VolumeBinding, pod: &Arc<Pod>) -> (CycleState, Status, Vec<Status>) {
    let infos = snapshot(&nodes(), &[]);
    let mut cs = state(&infos);
    let pi = PodInfo::new(pod.clone());
    let (_, s) = pl.pre_filter(&mut cs, &pi, &infos);
    if !s.is_success() {
        return (cs, s, Vec::new());
    }
    let filters = infos.iter().map(|n| pl.filter(&cs, &pi, n)).collect();
    (cs, s, filters)
}

fn unresolvable(reasons: &[&str]) -> Status {
    Status::new(Code::UnschedulableAndUnresolvable, reasons.iter().copied())
}

#[test]
fn a_pod_without_claims_is_skipped() {
    let (pl, _, _) = plugin(MemStorage::default(), Mode::Nothing);
    let pod = pod_with("p", vec![]);
    let (_, s, _) = run(&pl, &pod);
    assert_eq!(s.code, Code::Skip);
}

#[test]
fn missing_lost_and_deleting_claims_are_unresolvable_at_prefilter() {
    let mut lost = bound_pvc("pvc-a", "", "pv-a");
    lost.status = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
        phase: Some("Lost".into()),
        ..Default::default()
    });
    let mut deleting = pvc("pvc-d", "", "1Gi");
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
    );
    let storage = MemStorage::default().pvc(lost).pvc(deleting);
    let (pl, _, _) = plugin(storage, Mode::Nothing);
    for (claims, want) in [
        (vec!["pvc-x"], "persistentvolumeclaim \"pvc-x\" not found"),
        (
            vec!["pvc-a"],
            "persistentvolumeclaim \"pvc-a\" bound to non-existent persistentvolume \"pv-a\"",
        ),
        (
            vec!["pvc-d"],
            "persistentvolumeclaim \"pvc-d\" is being deleted",
        ),
    ] {
        let pod = pod_with("p", claims.iter().map(|c| vol(c)).collect());
        let (_, s, _) = run(&pl, &pod);
        assert_eq!(s, unresolvable(&[want]), "{claims:?}");
    }
}

#[test]
fn unbound_immediate_claims_wait_for_the_pv_controller() {
    let storage = MemStorage::default()
        .class(class(
            "immediate",
            IMMEDIATE,
            "kubernetes.io/no-provisioner",
        ))
        .pvc(pvc("pvc-a", "immediate", "1Gi"));
    let (pl, _, _) = plugin(storage, Mode::Nothing);
    let (_, s, _) = run(&pl, &pod_with("p", vec![vol("pvc-a")]));
    assert_eq!(
        s,
        unresolvable(&["pod has unbound immediate PersistentVolumeClaims"])
    );
}

#[test]
fn bound_claims_follow_their_volumes_node_affinity() {
    let storage = MemStorage::default()
        .pvc(bound_pvc("pvc-a", "", "pv-a"))
        .pv(with_claim(
            with_affinity(pv("pv-a", "", "1Gi"), "foo", &["bar"]),
            "pvc-a",
        ))
        .pvc(bound_pvc("pvc-b", "", "pv-missing"));
    let (pl, _, _) = plugin(storage, Mode::Nothing);
    let (mut cs, s, f) = run(&pl, &pod_with("p", vec![vol("pvc-a")]));
    assert!(s.is_success());
    assert_eq!(f[0], Status::success());
    assert_eq!(f[1], unresolvable(&[NODE_CONFLICT]));
    // Reserve finds everything bound: PreBind has nothing to write.
    let pi = PodInfo::new(pod_with("p", vec![vol("pvc-a")]));
    assert!(pl.reserve(&mut cs, &pi, "node-a").is_success());
    assert!(state_data(&cs).unwrap().inner.lock().all_bound);

    let (_, _, f) = run(&pl, &pod_with("p", vec![vol("pvc-b")]));
    assert_eq!(f[0], unresolvable(&[PV_NOT_EXIST]));
}

#[test]
fn unbound_claims_without_volumes_or_provisioner_conflict() {
    let storage = MemStorage::default()
        .class(class("wait", WAIT, NOT_SUPPORTED_PROVISIONER))
        .pvc(pvc("pvc-w", "wait", "1Gi"))
        .pvc(bound_pvc("pvc-a", "", "pv-a"))
        .pv(with_claim(
            with_affinity(pv("pv-a", "", "1Gi"), "foo", &["barbar"]),
            "pvc-a",
        ));
    let (pl, _, _) = plugin(storage, Mode::Nothing);
    let (_, _, f) = run(&pl, &pod_with("p", vec![vol("pvc-w")]));
    assert_eq!(f[0], unresolvable(&[BIND_CONFLICT]));
    let (_, _, f) = run(&pl, &pod_with("p", vec![vol("pvc-a"), vol("pvc-w")]));
    assert_eq!(f[0], unresolvable(&[NODE_CONFLICT, BIND_CONFLICT]));
}

#[tokio::test]
async fn the_smallest_fitting_volumes_are_matched_and_assumed() {
    let storage = MemStorage::default()
        .class(class("wait", WAIT, NOT_SUPPORTED_PROVISIONER))
        .pvc(pvc("small", "wait", "1Gi"))
        .pvc(pvc("big", "wait", "5Gi"))
        .pvc(pvc("big2", "wait", "5Gi"))
        .pv(pv("pv-10g", "wait", "10Gi"))
        .pv(pv("pv-5g", "wait", "5Gi"))
        .pv(with_affinity(pv("pv-1g-b", "wait", "1Gi"), "foo", &["baz"]))
        .pv(pv("pv-2g", "wait", "2Gi"))
        .pv(pv("pv-other-class", "", "1Gi"));
    let (pl, writer, shared) = plugin(storage, Mode::Complete);
    let pod = pod_with("p", vec![vol("big"), vol("small")]);
    shared.0.lock().pods.push("default/p".into());
    shared
        .0
        .lock()
        .nodes
        .insert("node-a".into(), nodes()[0].clone());
    let (mut cs, s, f) = run(&pl, &pod);
    assert!(s.is_success());
    assert!(f.iter().all(Status::is_success), "{f:?}");
    let chosen = |cs: &CycleState, node: &str| {
        let inner = state_data(cs).unwrap().inner.lock();
        let mut v: Vec<_> = inner.by_node[node]
            .static_bindings
            .iter()
            .map(|(pv, c)| {
                format!(
                    "{}->{}",
                    c.metadata.name.as_deref().unwrap(),
                    pv.metadata.name.as_deref().unwrap()
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(chosen(&cs, "node-a"), ["big->pv-5g", "small->pv-2g"]);
    assert_eq!(chosen(&cs, "node-b"), ["big->pv-5g", "small->pv-1g-b"]);

    // Reserve assumes the PVs bound: the next pod cannot take them.
    let pi = PodInfo::new(pod.clone());
    assert!(pl.reserve(&mut cs, &pi, "node-a").is_success());
    let assumed = pl.cache.pv("pv-5g").unwrap();
    let r = assumed.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
    assert_eq!(r.name.as_deref(), Some("big"));
    assert_eq!(r.uid.as_deref(), Some("uid-big"));
    assert_eq!(
        annotation(&assumed.metadata, ANN_BOUND_BY_CONTROLLER),
        Some("yes")
    );
    let storage2 = pl
        .pod_volume_claims(&pod_with("q", vec![vol("big2")]))
        .unwrap();
    let (_, b, _) = VolumeBinding::find_matching_volumes(
        storage2.unbound_delay.clone(),
        &storage2.unbound_volumes_delay,
        &nodes()[0],
    )
    .unwrap();
    assert_eq!(b[0].0.metadata.name.as_deref(), Some("pv-10g"));

    // PreBind writes both PVs and waits until the claims are bound.
    let s = pl.pre_bind(&cs, &pi, "node-a").await;
    assert!(s.is_success(), "{s:?}");
    let mut writes = writer.writes.lock().clone();
    writes.sort();
    assert_eq!(writes, ["pv/pv-2g", "pv/pv-5g"]);

    // Unreserve drops what was assumed.
    pl.unreserve(&mut cs, &pi, "node-a");
    assert!(pl.cache.pvs.lock().is_empty());
}

#[tokio::test]
async fn prebind_times_out_when_nobody_completes_the_binding() {
    let storage = MemStorage::default()
        .class(class("wait", WAIT, NOT_SUPPORTED_PROVISIONER))
        .pvc(pvc("small", "wait", "1Gi"))
        .pv(pv("pv-1g", "wait", "1Gi"));
    let (pl, _, shared) = plugin(storage, Mode::Nothing);
    shared.0.lock().pods.push("default/p".into());
    shared
        .0
        .lock()
        .nodes
        .insert("node-a".into(), nodes()[0].clone());
    let pod = pod_with("p", vec![vol("small")]);
    let (mut cs, _, _) = run(&pl, &pod);
    let pi = PodInfo::new(pod);
    assert!(pl.reserve(&mut cs, &pi, "node-a").is_success());
    let s = pl.pre_bind(&cs, &pi, "node-a").await;
    assert_eq!(
        s,
        Status::error("binding volumes: context deadline exceeded")
    );
}

#[tokio::test]
async fn claims_are_provisioned_on_the_selected_node() {
    let mut wait = class("fast", WAIT, "example.com/csi");
    wait.allowed_topologies = Some(vec![TopologySelectorTerm {
        match_label_expressions: Some(vec![TopologySelectorLabelRequirement {
            key: "foo".into(),
            values: vec!["bar".into()],
        }]),
    }]);
    let storage = MemStorage::default()
        .class(wait)
        .pvc(pvc("data", "fast", "1Gi"));
    let (pl, writer, shared) = plugin(storage, Mode::Complete);
    shared.0.lock().pods.push("default/p".into());
    shared
        .0
        .lock()
        .nodes
        .insert("node-a".into(), nodes()[0].clone());
    let pod = pod_with("p", vec![vol("data")]);
    let (mut cs, _, f) = run(&pl, &pod);
    assert_eq!(f[0], Status::success());
    assert_eq!(
        f[1],
        unresolvable(&[BIND_CONFLICT]),
        "allowedTopologies exclude node-b"
    );
    let pi = PodInfo::new(pod.clone());
    assert!(pl.reserve(&mut cs, &pi, "node-a").is_success());
    let assumed = pl.cache.pvc("default", "data").unwrap();
    assert_eq!(
        annotation(&assumed.metadata, ANN_SELECTED_NODE),
        Some("node-a")
    );
    // Another pod's filter now sees the selected node: node-b is out.
    let (_, _, f) = run(&pl, &pod);
    assert_eq!(f[1], unresolvable(&[BIND_CONFLICT]));
    let s = pl.pre_bind(&cs, &pi, "node-a").await;
    assert!(s.is_success(), "{s:?}");
    assert_eq!(*writer.writes.lock(), ["pvc/default/data"]);
}

#[tokio::test]
async fn provisioning_reset_by_the_provisioner_fails_prebind() {
    let storage = MemStorage::default()
        .class(class("fast", WAIT, "example.com/csi"))
        .pvc(pvc("data", "fast", "1Gi"));
    let (pl, _, shared) = plugin(storage, Mode::Reset);
    shared.0.lock().pods.push("default/p".into());
    shared
        .0
        .lock()
        .nodes
        .insert("node-a".into(), nodes()[0].clone());
    let pod = pod_with("p", vec![vol("data")]);
    let (mut cs, _, _) = run(&pl, &pod);
    let pi = PodInfo::new(pod);
    assert!(pl.reserve(&mut cs, &pi, "node-a").is_success());
    // The provisioner gives up and removes the annotation (Mode::Reset).
    let s = pl.pre_bind(&cs, &pi, "node-a").await;
    assert_eq!(
        s,
        Status::error("binding volumes: provisioning failed for PVC \"data\"")
    );
}

#[test]
fn csi_capacity_is_checked_for_drivers_that_publish_it() {
    let mut storage = MemStorage::default()
        .class(class("fast", WAIT, "example.com/csi"))
        .pvc(pvc("data", "fast", "10Gi"));
    storage.csi_drivers.insert(
        "example.com/csi".into(),
        Arc::new(CSIDriver {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("example.com/csi".into()),
                ..Default::default()
            },
            spec: CSIDriverSpec {
                storage_capacity: Some(true),
                ..Default::default()
            },
        }),
    );
    let cap = |size: &str, foo: &str| {
        Arc::new(CSIStorageCapacity {
            storage_class_name: "fast".into(),
            capacity: Some(Quantity(size.into())),
            node_topology: Some(crate::plugins::testutil::match_labels(&[("foo", foo)])),
            ..Default::default()
        })
    };
    storage.capacities = vec![cap("20Gi", "bar"), cap("5Gi", "baz")];
    let (pl, _, _) = plugin(storage, Mode::Nothing);
    let (_, _, f) = run(&pl, &pod_with("p", vec![vol("data")]));
    assert_eq!(f[0], Status::success());
    assert_eq!(f[1], unresolvable(&[NOT_ENOUGH_SPACE]));
}

#[test]
fn matching_honours_prebinding_modes_selectors_and_phase() {
    let claim = pvc("c", "", "1Gi");
    let mut block = pv("block", "", "1Gi");
    block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
    let mut pending = pv("pending", "", "1Gi");
    pending.status.as_mut().unwrap().phase = Some("Pending".into());
    let mut rox = pv("rox", "", "1Gi");
    rox.spec.as_mut().unwrap().access_modes = Some(vec!["ReadOnlyMany".into()]);
    let other = with_claim(pv("other", "", "1Gi"), "someone-else");
    let none = HashSet::new();
    let n = nodes()[0].clone();
    for v in [block, pending, rox, other] {
        let name = v.metadata.name.clone().unwrap();
        let got = find_matching_volume(&claim, &[Arc::new(v)], Some(&n), &none).unwrap();
        assert!(got.is_none(), "{name} must not match");
    }
    // A PV pre-bound to the claim wins even when it is larger and not Available,
    // unless its node affinity excludes the node.
    let mut pre = with_claim(pv("pre", "", "100Gi"), "c");
    pre.status.as_mut().unwrap().phase = Some("Pending".into());
    let small = Arc::new(pv("small", "", "1Gi"));
    let got = find_matching_volume(
        &claim,
        &[small.clone(), Arc::new(pre.clone())],
        Some(&n),
        &none,
    );
    assert_eq!(got.unwrap().unwrap().metadata.name.as_deref(), Some("pre"));
    let pre = with_affinity(pre, "foo", &["nope"]);
    let got = find_matching_volume(&claim, &[Arc::new(pre), small], Some(&n), &none);
    assert!(got.unwrap().is_none());
    // The claim's selector.
    let mut sel = pvc("c", "", "1Gi");
    sel.spec.as_mut().unwrap().selector =
        Some(crate::plugins::testutil::match_labels(&[("tier", "gold")]));
    let mut gold = pv("gold", "", "1Gi");
    gold.metadata.labels = Some(BTreeMap::from([("tier".into(), "gold".into())]));
    let got = find_matching_volume(
        &sel,
        &[Arc::new(pv("plain", "", "1Gi")), Arc::new(gold)],
        Some(&n),
        &none,
    );
    assert_eq!(got.unwrap().unwrap().metadata.name.as_deref(), Some("gold"));
}

#[test]
fn args_are_validated_as_upstream() {
    let a: Args = serde_json::from_value(serde_json::json!({"bindTimeoutSeconds": -1})).unwrap();
    assert_eq!(
        a.validate().unwrap_err(),
        "bindTimeoutSeconds: Invalid value: -1: invalid BindTimeoutSeconds, should not be a negative value"
    );
    assert!(serde_json::from_value::<Args>(serde_json::json!({"bogus": 1})).is_err());
    assert_eq!(Args::default().bind_timeout_seconds, 600);
}
