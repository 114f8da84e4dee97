//! The plugins' queueing hints, after upstream's `Test_isSchedulableAfter*` cases.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, NodeStatus, Pod, PodAffinityTerm, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::interpodaffinity::{InterPodAffinity, StaticNamespaces};
use super::nodeaffinity::NodeAffinity;
use super::nodeports::NodePorts;
use super::noderesources::Fit;
use super::podtopologyspread::PodTopologySpread;
use super::simple::NodeUnschedulable;
use super::tainttoleration::TaintToleration;
use super::testutil::{match_labels, node, pod};
use crate::framework::types::PodInfo;
use crate::framework::{Changed, ClusterEvent, Plugin, QueueingHint};

const Q: QueueingHint = QueueingHint::Queue;
const S: QueueingHint = QueueingHint::Skip;
const EV: ClusterEvent = ClusterEvent::NodeAdd;

fn sized(name: &str, cpu: &str, pods: &str) -> Arc<Node> {
    let mut n = node(name).obj().as_ref().clone();
    let list = BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpu.into())),
        ("memory".to_owned(), Quantity("8Gi".into())),
        ("pods".to_owned(), Quantity(pods.into())),
    ]);
    n.status = Some(NodeStatus {
        allocatable: Some(list.clone()),
        capacity: Some(list),
        ..Default::default()
    });
    Arc::new(n)
}

fn wanting(name: &str, cpu: &str, host_port: Option<i32>) -> Arc<Pod> {
    let mut p = pod(name).obj().as_ref().clone();
    p.spec.as_mut().unwrap().containers = vec![Container {
        name: "c".into(),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([("cpu".to_owned(), Quantity(cpu.into()))])),
            ..Default::default()
        }),
        ports: host_port.map(|hp| {
            vec![ContainerPort {
                container_port: 80,
                host_port: Some(hp),
                ..Default::default()
            }]
        }),
        ..Default::default()
    }];
    Arc::new(p)
}

fn node_change(old: Option<Arc<Node>>, new: Arc<Node>) -> Changed {
    Changed::Node { old, new }
}

fn pod_change(old: Option<Arc<Pod>>, new: Option<Arc<Pod>>) -> Changed {
    Changed::Pod { old, new }
}

fn bound(p: Arc<Pod>) -> Arc<Pod> {
    let mut p = p.as_ref().clone();
    p.spec.as_mut().unwrap().node_name = Some("n1".into());
    Arc::new(p)
}

#[test]
fn node_resources_fit() {
    let pl = Fit::new(Default::default());
    let target = PodInfo::new(wanting("p", "2", None));
    let h = |c: &Changed| pl.queueing_hint(EV, &target, c);
    // A node too small even when empty: skip; big enough: queue.
    assert_eq!(h(&node_change(None, sized("n", "1", "110"))), S);
    assert_eq!(h(&node_change(None, sized("n", "4", "110"))), Q);
    // Updated without growing what the pod asks for: skip; grown: queue.
    let (big, bigger) = (sized("n", "4", "110"), sized("n", "8", "110"));
    assert_eq!(h(&node_change(Some(big.clone()), big.clone())), S);
    assert_eq!(h(&node_change(Some(big.clone()), bigger)), Q);
    assert_eq!(
        h(&node_change(Some(big), sized("n", "4", "200"))),
        Q,
        "more pods"
    );
    // Deleted pods: only bound ones free room.
    let other = wanting("o", "1", None);
    assert_eq!(h(&pod_change(Some(other.clone()), None)), S);
    assert_eq!(h(&pod_change(Some(bound(other.clone())), None)), Q);
    // Resized: only a scale-down of something the pod asks for.
    let smaller = bound(wanting("o", "500m", None));
    assert_eq!(
        h(&pod_change(
            Some(bound(other.clone())),
            Some(smaller.clone())
        )),
        Q
    );
    assert_eq!(h(&pod_change(Some(smaller), Some(bound(other)))), S);
}

#[test]
fn taint_toleration_and_unschedulable() {
    let target = PodInfo::new(pod("p").obj());
    let tainted = node("n").taint("dedicated").obj();
    let clean = node("n").obj();
    let pl = TaintToleration;
    let h = |c: &Changed| pl.queueing_hint(ClusterEvent::NodeTaintChange, &target, c);
    assert_eq!(h(&node_change(Some(tainted.clone()), clean.clone())), Q);
    assert_eq!(h(&node_change(Some(clean.clone()), tainted.clone())), S);
    assert_eq!(h(&node_change(Some(clean.clone()), clean.clone())), S);
    assert_eq!(h(&node_change(None, clean.clone())), Q);
    assert_eq!(h(&node_change(None, tainted)), S);

    let mut cordoned = clean.as_ref().clone();
    cordoned
        .spec
        .get_or_insert_with(Default::default)
        .unschedulable = Some(true);
    let cordoned = Arc::new(cordoned);
    let pl = NodeUnschedulable;
    let h = |c: &Changed| pl.queueing_hint(ClusterEvent::NodeSpecUnschedulableChange, &target, c);
    assert_eq!(h(&node_change(Some(cordoned.clone()), clean.clone())), Q);
    assert_eq!(h(&node_change(Some(clean.clone()), cordoned.clone())), S);
    assert_eq!(h(&node_change(None, cordoned)), S);
    assert_eq!(h(&node_change(None, clean)), Q);
}

#[test]
fn node_affinity() {
    let pl = NodeAffinity::new(Default::default());
    let target = PodInfo::new(pod("p").node_selector(&[("zone", "a")]).obj());
    let h = |c: &Changed| pl.queueing_hint(ClusterEvent::NodeLabelChange, &target, c);
    let (a, b) = (
        node("n").label("zone", "a").obj(),
        node("n").label("zone", "b").obj(),
    );
    assert_eq!(h(&node_change(None, a.clone())), Q);
    assert_eq!(h(&node_change(None, b.clone())), S);
    assert_eq!(h(&node_change(Some(b.clone()), a.clone())), Q);
    assert_eq!(
        h(&node_change(Some(a.clone()), a.clone())),
        S,
        "matched before"
    );
    assert_eq!(h(&node_change(Some(a), b)), S);
}

#[test]
fn node_ports() {
    let target = PodInfo::new(wanting("p", "0", Some(8080)));
    let h = |c: &Changed| NodePorts.queueing_hint(ClusterEvent::AssignedPodDelete, &target, c);
    assert_eq!(
        h(&pod_change(
            Some(bound(wanting("o", "0", Some(8080)))),
            None
        )),
        Q
    );
    assert_eq!(
        h(&pod_change(
            Some(bound(wanting("o", "0", Some(9090)))),
            None
        )),
        S
    );
    assert_eq!(
        h(&pod_change(Some(bound(wanting("o", "0", None))), None)),
        S
    );
}

#[test]
fn inter_pod_affinity() {
    let pl =
        InterPodAffinity::new(Default::default(), Arc::new(StaticNamespaces::default())).unwrap();
    let term = PodAffinityTerm {
        label_selector: Some(match_labels(&[("app", "db")])),
        topology_key: "zone".into(),
        ..Default::default()
    };
    let affine = PodInfo::new(pod("p").affinity_required(term.clone()).obj());
    let h = |c: &Changed| pl.queueing_hint(ClusterEvent::AssignedPodAdd, &affine, c);
    let db = bound(pod("db").label("app", "db").obj());
    let web = bound(pod("web").label("app", "web").obj());
    assert_eq!(h(&pod_change(None, Some(db.clone()))), Q);
    assert_eq!(h(&pod_change(None, Some(web.clone()))), S);
    assert_eq!(
        h(&pod_change(Some(web.clone()), Some(db.clone()))),
        Q,
        "relabelled to match"
    );
    assert_eq!(h(&pod_change(Some(db.clone()), Some(db.clone()))), S);
    assert_eq!(h(&pod_change(Some(web.clone()), None)), S);

    let anti = PodInfo::new(pod("p").anti_affinity_required(term.clone()).obj());
    let h = |c: &Changed| pl.queueing_hint(ClusterEvent::AssignedPodDelete, &anti, c);
    assert_eq!(h(&pod_change(Some(db.clone()), None)), Q);
    assert_eq!(h(&pod_change(Some(web.clone()), None)), S);
    assert_eq!(h(&pod_change(None, Some(db.clone()))), S);
    // A deleted pod whose own anti-affinity may have kept the pod out.
    let guard = bound(pod("guard").anti_affinity_required(term).obj());
    let plain = PodInfo::new(pod("p").obj());
    assert_eq!(
        pl.queueing_hint(
            ClusterEvent::AssignedPodDelete,
            &plain,
            &pod_change(Some(guard), None)
        ),
        Q
    );
    // Nodes: a topology key appearing helps affinity.
    let h = |c: &Changed| pl.queueing_hint(ClusterEvent::NodeLabelChange, &affine, c);
    let (bare, zoned) = (node("n").obj(), node("n").label("zone", "a").obj());
    assert_eq!(h(&node_change(Some(bare.clone()), zoned.clone())), Q);
    assert_eq!(h(&node_change(Some(zoned.clone()), zoned)), S);
    assert_eq!(h(&node_change(None, bare)), Q);
}

#[test]
fn pod_topology_spread() {
    let pl = PodTopologySpread::new(Default::default()).unwrap();
    let target = PodInfo::new(
        pod("p")
            .label("app", "web")
            .spread1(
                1,
                "zone",
                "DoNotSchedule",
                Some(match_labels(&[("app", "web")])),
            )
            .obj(),
    );
    let h = |c: &Changed| pl.queueing_hint(ClusterEvent::AssignedPodDelete, &target, c);
    let web = bound(pod("w").label("app", "web").obj());
    let other_ns = bound(pod("w").ns("other").label("app", "web").obj());
    let db = bound(pod("d").label("app", "db").obj());
    assert_eq!(h(&pod_change(Some(web.clone()), None)), Q);
    assert_eq!(h(&pod_change(Some(other_ns), None)), S);
    assert_eq!(h(&pod_change(Some(db.clone()), None)), S);
    assert_eq!(
        h(&pod_change(Some(db.clone()), Some(web.clone()))),
        Q,
        "relabelled"
    );
    assert_eq!(
        h(&pod_change(Some(web.clone()), Some(web))),
        S,
        "labels unchanged"
    );
    assert_eq!(h(&node_change(None, node("n").obj())), Q);
}
