//! Cases from upstream's `podtopologyspread` filtering_test.go and
//! scoring_test.go (same inputs, same statuses and scores); the case names are
//! upstream's.

use super::*;
use crate::plugins::testutil::{exists, match_labels, node, pod, snapshot, state};

const DNS: &str = DO_NOT_SCHEDULE;
const SA: &str = SCHEDULE_ANYWAY;

fn foo() -> Option<LabelSelector> {
    Some(exists(&["foo"]))
}
fn bar() -> Option<LabelSelector> {
    Some(exists(&["bar"]))
}

fn list() -> PodTopologySpread {
    PodTopologySpread::new(Args {
        defaulting_type: "List".into(),
        ..Default::default()
    })
    .unwrap()
}

fn zone_nodes() -> Vec<Arc<Node>> {
    vec![
        node("node-a")
            .label("zone", "zone1")
            .label("node", "node-a")
            .obj(),
        node("node-b")
            .label("zone", "zone1")
            .label("node", "node-b")
            .obj(),
        node("node-x")
            .label("zone", "zone2")
            .label("node", "node-x")
            .obj(),
        node("node-y")
            .label("zone", "zone2")
            .label("node", "node-y")
            .obj(),
    ]
}

/// `(pod name, node)` pods labelled `foo`.
fn foo_pods(pods: &[(&str, &str)]) -> Vec<Arc<Pod>> {
    pods.iter()
        .map(|(p, n)| pod(p).node(n).label("foo", "").obj())
        .collect()
}

/// PreFilter then Filter on every node: each node's code.
fn filter_codes(
    pl: &PodTopologySpread,
    p: &PodInfo,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
) -> Vec<Code> {
    let infos = snapshot(nodes, pods);
    let mut st = state(&infos);
    let (_, s) = pl.pre_filter(&mut st, p, &infos);
    assert!(s.is_success(), "{s:?}");
    infos.iter().map(|n| pl.filter(&st, p, n).code).collect()
}

use Code::{Success as S, Unschedulable as U, UnschedulableAndUnresolvable as UU};

/// A Filter case: name, pod, nodes, existing pods, each node's code.
type FilterCase = (
    &'static str,
    PodInfo,
    Vec<Arc<Node>>,
    Vec<Arc<Pod>>,
    Vec<Code>,
);
/// A Score case: name, pod, feasible nodes, other nodes, existing pods, scores.
type ScoreCase = (
    &'static str,
    PodInfo,
    Vec<Arc<Node>>,
    Vec<Arc<Node>>,
    Vec<Arc<Pod>>,
    Vec<i64>,
);

/// Upstream's `TestSingleConstraint`.
#[test]
fn single_constraint() {
    let p = || pod("p").label("foo", "");
    let cases: Vec<FilterCase> = vec![
        (
            "no existing pods",
            p().spread1(1, "zone", DNS, foo()).info(),
            zone_nodes(),
            vec![],
            vec![S, S, S, S],
        ),
        (
            "no existing pods, incoming pod doesn't match itself",
            p().spread1(1, "zone", DNS, bar()).info(),
            zone_nodes(),
            vec![],
            vec![S, S, S, S],
        ),
        (
            "existing pods in a different namespace do not count",
            p().spread1(1, "zone", DNS, foo()).info(),
            zone_nodes(),
            vec![
                pod("p-a1").ns("ns1").node("node-a").label("foo", "").obj(),
                pod("p-b1").ns("ns2").node("node-a").label("foo", "").obj(),
                pod("p-x1").node("node-x").label("foo", "").obj(),
                pod("p-y1").node("node-y").label("foo", "").obj(),
            ],
            vec![S, S, U, U],
        ),
        (
            "existing pods do not match null selector",
            p().spread1(1, "zone", DNS, None).info(),
            zone_nodes(),
            foo_pods(&[("p-x1", "node-x"), ("p-y1", "node-y")]),
            vec![S, S, S, S],
        ),
        (
            "pods spread across zones as 3/3, all nodes fit",
            p().spread1(1, "zone", DNS, foo()).info(),
            zone_nodes(),
            foo_pods(&[
                ("p-a1", "node-a"),
                ("p-a2", "node-a"),
                ("p-b1", "node-b"),
                ("p-y1", "node-y"),
                ("p-y2", "node-y"),
                ("p-y3", "node-y"),
            ]),
            vec![S, S, S, S],
        ),
        (
            "pods spread across zones as 1/2 due to absence of label 'zone' on node-b",
            p().spread1(1, "zone", DNS, foo()).info(),
            vec![
                node("node-a")
                    .label("zone", "zone1")
                    .label("node", "node-a")
                    .obj(),
                node("node-b")
                    .label("zon", "zone1")
                    .label("node", "node-b")
                    .obj(),
                node("node-x")
                    .label("zone", "zone2")
                    .label("node", "node-x")
                    .obj(),
                node("node-y")
                    .label("zone", "zone2")
                    .label("node", "node-y")
                    .obj(),
            ],
            foo_pods(&[
                ("p-a1", "node-a"),
                ("p-b1", "node-b"),
                ("p-x1", "node-x"),
                ("p-y1", "node-y"),
            ]),
            vec![S, UU, U, U],
        ),
        (
            "pod cannot be scheduled as all nodes don't have label 'rack'",
            p().spread1(1, "rack", DNS, foo()).info(),
            vec![
                node("node-a")
                    .label("zone", "zone1")
                    .label("node", "node-a")
                    .obj(),
                node("node-x")
                    .label("zone", "zone2")
                    .label("node", "node-x")
                    .obj(),
            ],
            vec![],
            vec![UU, UU],
        ),
        (
            "pods spread across nodes as 2/1/0/3, only node-x fits",
            p().spread1(1, "node", DNS, foo()).info(),
            zone_nodes(),
            foo_pods(&[
                ("p-a1", "node-a"),
                ("p-a2", "node-a"),
                ("p-b1", "node-b"),
                ("p-y1", "node-y"),
                ("p-y2", "node-y"),
                ("p-y3", "node-y"),
            ]),
            vec![U, U, S, U],
        ),
        (
            "pods spread across nodes as 2/1/0/3, maxSkew is 2, node-b and node-x fit",
            p().spread1(2, "node", DNS, foo()).info(),
            zone_nodes(),
            foo_pods(&[
                ("p-a1", "node-a"),
                ("p-a2", "node-a"),
                ("p-b1", "node-b"),
                ("p-y1", "node-y"),
                ("p-y2", "node-y"),
                ("p-y3", "node-y"),
            ]),
            vec![U, S, S, U],
        ),
        (
            "pods spread across nodes as 2/1/0/3, but pod doesn't match itself",
            pod("p")
                .label("bar", "")
                .spread1(1, "node", DNS, foo())
                .info(),
            zone_nodes(),
            foo_pods(&[
                ("p-a1", "node-a"),
                ("p-a2", "node-a"),
                ("p-b1", "node-b"),
                ("p-y1", "node-y"),
                ("p-y2", "node-y"),
                ("p-y3", "node-y"),
            ]),
            vec![U, S, S, U],
        ),
        (
            "incoming pod has nodeAffinity, pods spread as 2/~1~/~0~/3, hence node-a fits",
            p().node_affinity("node", "In", &["node-a", "node-y"])
                .spread1(1, "node", DNS, foo())
                .info(),
            zone_nodes(),
            foo_pods(&[
                ("p-a1", "node-a"),
                ("p-a2", "node-a"),
                ("p-b1", "node-b"),
                ("p-y1", "node-y"),
                ("p-y2", "node-y"),
                ("p-y3", "node-y"),
            ]),
            // node-b and node-x: NodeAffinity (not run here) rejects them.
            vec![S, S, S, U],
        ),
        (
            "terminating Pods should be excluded",
            p().spread1(1, "node", DNS, foo()).info(),
            vec![
                node("node-a").label("node", "node-a").obj(),
                node("node-b").label("node", "node-b").obj(),
            ],
            vec![
                pod("p-a")
                    .node("node-a")
                    .label("foo", "")
                    .terminating()
                    .obj(),
                pod("p-b").node("node-b").label("foo", "").obj(),
            ],
            vec![S, U],
        ),
        (
            "incoming pod has nodeAffinity, pods spread as 0/~2~/0/1, hence node-a fits",
            p().node_affinity("node", "NotIn", &["node-b"])
                .spread1(1, "zone", DNS, foo())
                .info(),
            zone_nodes(),
            foo_pods(&[("p-b1", "node-b"), ("p-b2", "node-b"), ("p-y1", "node-y")]),
            vec![S, S, U, U],
        ),
        (
            "pods spread across nodes as 2/2/1, maxSkew is 2, and the number of domains < minDomains, then the third node fits",
            p().spread(2, "node", DNS, foo(), Some(4), None, None, None)
                .info(),
            vec![
                node("node-a").label("node", "node-a").obj(),
                node("node-b").label("node", "node-b").obj(),
                node("node-c").label("node", "node-c").obj(),
            ],
            foo_pods(&[
                ("p-a1", "node-a"),
                ("p-a2", "node-a"),
                ("p-b1", "node-b"),
                ("p-b2", "node-b"),
                ("p-c1", "node-c"),
            ]),
            vec![U, U, S],
        ),
        (
            "pods spread across nodes as 2/2/1, maxSkew is 2, and the number of domains > minDomains, then the all nodes fit",
            p().spread(2, "node", DNS, foo(), Some(2), None, None, None)
                .info(),
            vec![
                node("node-a").label("node", "node-a").obj(),
                node("node-b").label("node", "node-b").obj(),
                node("node-c").label("node", "node-c").obj(),
            ],
            foo_pods(&[
                ("p-a1", "node-a"),
                ("p-a2", "node-a"),
                ("p-b1", "node-b"),
                ("p-b2", "node-b"),
                ("p-c1", "node-c"),
            ]),
            vec![S, S, S],
        ),
        (
            "pods spread across zone as 2/1, maxSkew is 2 and the number of domains < minDomains, then the third and fourth nodes fit",
            p().spread(2, "zone", DNS, foo(), Some(3), None, None, None)
                .info(),
            zone_nodes(),
            foo_pods(&[("p-b1", "node-a"), ("p-b2", "node-b"), ("p-y1", "node-y")]),
            vec![U, U, S, S],
        ),
        (
            "pods spread across zone as 2/1, maxSkew is 2 and the number of domains > minDomains, then the all nodes fit",
            p().spread(2, "zone", DNS, foo(), Some(1), None, None, None)
                .info(),
            zone_nodes(),
            foo_pods(&[("p-b1", "node-a"), ("p-b2", "node-b"), ("p-y1", "node-y")]),
            vec![S, S, S, S],
        ),
    ];
    let pl = list();
    for (name, p, nodes, pods, want) in cases {
        assert_eq!(filter_codes(&pl, &p, &nodes, &pods), want, "{name}");
    }
}

fn foo_nodes(taint_y: bool) -> Vec<Arc<Node>> {
    let y = node("node-y").label("node", "node-y");
    vec![
        node("node-a")
            .label("node", "node-a")
            .label("foo", "")
            .obj(),
        node("node-b")
            .label("node", "node-b")
            .label("foo", "")
            .obj(),
        node("node-x")
            .label("node", "node-x")
            .label("foo", "")
            .obj(),
        if taint_y {
            y.taint("node.kubernetes.io/unschedulable").obj()
        } else {
            y.obj()
        },
    ]
}

/// Upstream's `TestSingleConstraint`, node inclusion policy cases.
#[test]
fn single_constraint_node_inclusion_policies() {
    let p = || pod("p").label("foo", "");
    let pods = foo_pods(&[("p-b1", "node-a"), ("p-b2", "node-b"), ("p-y1", "node-y")]);
    let cases: Vec<(&str, PodInfo, bool, Vec<Code>)> = vec![
        (
            "NodeAffinityPolicy honored with labelSelectors",
            p().node_selector(&[("foo", "")])
                .spread1(1, "node", DNS, foo())
                .info(),
            false,
            // node-y: NodeAffinity (not run here) rejects it.
            vec![U, U, S, S],
        ),
        (
            "NodeAffinityPolicy ignored with labelSelectors",
            p().node_selector(&[("foo", "")])
                .spread(1, "node", DNS, foo(), None, Some("Ignore"), None, None)
                .info(),
            false,
            vec![U, U, S, U],
        ),
        (
            "NodeAffinityPolicy honored with nodeAffinity",
            p().node_affinity("foo", "In", &[""])
                .spread1(1, "node", DNS, foo())
                .info(),
            false,
            vec![U, U, S, S],
        ),
        (
            "NodeAffinityPolicy ignored with nodeAffinity",
            p().node_affinity("foo", "In", &[""])
                .spread(1, "node", DNS, foo(), None, Some("Ignore"), None, None)
                .info(),
            false,
            vec![U, U, S, U],
        ),
        (
            "NodeTaintsPolicy honored",
            p().spread(1, "node", DNS, foo(), None, None, Some("Honor"), None)
                .info(),
            true,
            vec![U, U, S, S],
        ),
        (
            "NodeTaintsPolicy ignored",
            p().spread1(1, "node", DNS, foo()).info(),
            true,
            vec![U, U, S, U],
        ),
    ];
    let pl = list();
    for (name, p, taint, want) in cases {
        assert_eq!(
            filter_codes(&pl, &p, &foo_nodes(taint), &pods),
            want,
            "{name}"
        );
    }
}

/// Upstream's `TestMultipleConstraints`.
#[test]
fn multiple_constraints() {
    let fb = || pod("p").label("foo", "").label("bar", "");
    let two = |p: crate::plugins::testutil::PodB, z, n| {
        p.spread1(1, "zone", DNS, z)
            .spread1(1, "node", DNS, n)
            .info()
    };
    let zfoo_nodes = || {
        vec![
            node("node-a")
                .label("zone", "zone1")
                .label("node", "node-a")
                .label("foo", "")
                .obj(),
            node("node-b")
                .label("zone", "zone1")
                .label("node", "node-b")
                .label("foo", "")
                .obj(),
            node("node-x")
                .label("zone", "zone2")
                .label("node", "node-x")
                .label("foo", "")
                .obj(),
            node("node-y")
                .label("zone", "zone2")
                .label("node", "node-y")
                .obj(),
        ]
    };
    let a1b1y1 = || foo_pods(&[("p-a1", "node-a"), ("p-b1", "node-b"), ("p-y1", "node-y")]);
    let cases: Vec<FilterCase> = vec![
        (
            "two Constraints on zone and node, spreads = [3/3, 2/1/0/3]",
            two(pod("p").label("foo", ""), foo(), foo()),
            zone_nodes(),
            foo_pods(&[
                ("p-a1", "node-a"),
                ("p-a2", "node-a"),
                ("p-b1", "node-b"),
                ("p-y1", "node-y"),
                ("p-y2", "node-y"),
                ("p-y3", "node-y"),
            ]),
            vec![U, U, S, U],
        ),
        (
            "two Constraints on zone and node, spreads = [3/4, 2/1/0/4]",
            two(pod("p").label("foo", ""), foo(), foo()),
            zone_nodes(),
            foo_pods(&[
                ("p-a1", "node-a"),
                ("p-a2", "node-a"),
                ("p-b1", "node-b"),
                ("p-y1", "node-y"),
                ("p-y2", "node-y"),
                ("p-y3", "node-y"),
                ("p-y4", "node-y"),
            ]),
            vec![U, U, U, U],
        ),
        (
            "Constraints hold different labelSelectors, spreads = [1/0, 1/0/0/1]",
            two(fb(), foo(), bar()),
            zone_nodes(),
            vec![
                pod("p-a1").node("node-a").label("foo", "").obj(),
                pod("p-y1").node("node-y").label("bar", "").obj(),
            ],
            vec![U, U, S, U],
        ),
        (
            "Constraints hold different labelSelectors, spreads = [1/0, 0/0/1/1]",
            two(fb(), foo(), bar()),
            zone_nodes(),
            vec![
                pod("p-a1").node("node-a").label("foo", "").obj(),
                pod("p-x1").node("node-x").label("bar", "").obj(),
                pod("p-y1").node("node-y").label("bar", "").obj(),
            ],
            vec![U, U, U, U],
        ),
        (
            "Constraints hold different labelSelectors, spreads = [2/3, 1/0/0/1]",
            two(fb(), foo(), bar()),
            zone_nodes(),
            vec![
                pod("p-a1").node("node-a").label("foo", "").obj(),
                pod("p-a2")
                    .node("node-a")
                    .label("foo", "")
                    .label("bar", "")
                    .obj(),
                pod("p-y1").node("node-y").label("foo", "").obj(),
                pod("p-y2")
                    .node("node-y")
                    .label("foo", "")
                    .label("bar", "")
                    .obj(),
                pod("p-y3").node("node-y").label("foo", "").obj(),
            ],
            vec![U, S, U, U],
        ),
        (
            "Constraints hold different labelSelectors but pod doesn't match itself on 'zone' constraint",
            two(pod("p").label("bar", ""), foo(), bar()),
            zone_nodes(),
            vec![
                pod("p-a1").node("node-a").label("foo", "").obj(),
                pod("p-x1").node("node-x").label("bar", "").obj(),
                pod("p-y1").node("node-y").label("bar", "").obj(),
            ],
            vec![S, S, U, U],
        ),
        (
            "two Constraints on zone and node, absence of label 'node' on node-x, spreads = [1/1, 1/0/0/1]",
            two(pod("p").label("foo", ""), foo(), foo()),
            vec![
                node("node-a")
                    .label("zone", "zone1")
                    .label("node", "node-a")
                    .obj(),
                node("node-b")
                    .label("zone", "zone1")
                    .label("node", "node-b")
                    .obj(),
                node("node-x").label("zone", "zone2").obj(),
                node("node-y")
                    .label("zone", "zone2")
                    .label("node", "node-y")
                    .obj(),
            ],
            foo_pods(&[("p-a1", "node-a"), ("p-y3", "node-y")]),
            vec![U, S, UU, U],
        ),
        (
            "two node inclusion Constraints, zone: honor/ignore, node: ignore/ignore",
            pod("p")
                .label("foo", "")
                .node_selector(&[("foo", "")])
                .spread1(1, "zone", DNS, foo())
                .spread(1, "node", DNS, foo(), None, Some("Ignore"), None, None)
                .info(),
            zfoo_nodes(),
            a1b1y1(),
            vec![U, U, S, U],
        ),
        (
            "two node inclusion Constraints, zone: honor/honor, node: honor/ignore",
            pod("p")
                .label("foo", "")
                .spread(1, "zone", DNS, foo(), None, None, Some("Honor"), None)
                .spread1(1, "node", DNS, foo())
                .info(),
            vec![
                node("node-a")
                    .label("zone", "zone1")
                    .label("node", "node-a")
                    .label("foo", "")
                    .obj(),
                node("node-b")
                    .label("zone", "zone1")
                    .label("node", "node-b")
                    .label("foo", "")
                    .obj(),
                node("node-x")
                    .label("zone", "zone2")
                    .label("node", "node-x")
                    .label("foo", "")
                    .obj(),
                node("node-y")
                    .label("zone", "zone2")
                    .label("node", "node-y")
                    .taint("node.kubernetes.io/unschedulable")
                    .obj(),
            ],
            a1b1y1(),
            vec![U, U, S, U],
        ),
        (
            "two node inclusion Constraints, zone: honor/ignore, node: honor/ignore",
            pod("p")
                .label("foo", "")
                .node_selector(&[("foo", "")])
                .spread1(1, "zone", DNS, foo())
                .spread1(1, "node", DNS, foo())
                .info(),
            vec![
                node("node-a")
                    .label("zone", "zone1")
                    .label("node", "node-a")
                    .label("foo", "")
                    .obj(),
                node("node-b")
                    .label("zone", "zone1")
                    .label("node", "node-b")
                    .obj(),
                node("node-x")
                    .label("zone", "zone2")
                    .label("node", "node-x")
                    .label("foo", "")
                    .obj(),
                node("node-y")
                    .label("zone", "zone2")
                    .label("node", "node-y")
                    .label("foo", "")
                    .taint("node.kubernetes.io/unschedulable")
                    .obj(),
            ],
            a1b1y1(),
            vec![U, S, S, U],
        ),
        (
            "two node inclusion Constraints, zone: honor/honor, node: ignore/ignore",
            pod("p")
                .label("foo", "")
                .node_selector(&[("foo", "")])
                .spread(1, "zone", DNS, foo(), None, None, Some("Honor"), None)
                .spread(1, "node", DNS, foo(), None, Some("Ignore"), None, None)
                .info(),
            vec![
                node("node-a")
                    .label("zone", "zone1")
                    .label("node", "node-a")
                    .label("foo", "")
                    .obj(),
                node("node-b")
                    .label("zone", "zone1")
                    .label("node", "node-b")
                    .obj(),
                node("node-x")
                    .label("zone", "zone2")
                    .label("node", "node-x")
                    .label("foo", "")
                    .obj(),
                node("node-y")
                    .label("zone", "zone2")
                    .label("node", "node-y")
                    .label("foo", "")
                    .taint("node.kubernetes.io/unschedulable")
                    .obj(),
            ],
            a1b1y1(),
            vec![U, U, S, U],
        ),
    ];
    let pl = list();
    for (name, p, nodes, pods, want) in cases {
        assert_eq!(filter_codes(&pl, &p, &nodes, &pods), want, "{name}");
    }
}

fn pre_filter_state(
    pl: &PodTopologySpread,
    p: &PodInfo,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
) -> (CycleState, Vec<Arc<NodeInfo>>) {
    let infos = snapshot(nodes, pods);
    let mut st = state(&infos);
    let (_, s) = pl.pre_filter(&mut st, p, &infos);
    assert!(s.is_success(), "{s:?}");
    (st, infos)
}

fn counts(st: &CycleState) -> Vec<Vec<(String, i64)>> {
    let s = st.read::<PreFilterState>(PRE_FILTER_KEY).unwrap();
    s.tp_value_to_match_num
        .iter()
        .map(|m| {
            let mut v: Vec<_> = m.iter().map(|(k, n)| (k.clone(), *n)).collect();
            v.sort();
            v
        })
        .collect()
}

fn min_matches(st: &CycleState) -> Vec<i64> {
    let s = st.read::<PreFilterState>(PRE_FILTER_KEY).unwrap();
    s.critical_paths.iter().map(|p| p.0[0].1).collect()
}

fn kv(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

/// Upstream's `TestPreFilterState` (counts and global minimums).
#[test]
fn pre_filter_state_as_upstream() {
    let pl = list();
    let five = foo_pods(&[
        ("p-a1", "node-a"),
        ("p-a2", "node-a"),
        ("p-b1", "node-b"),
        ("p-y1", "node-y"),
        ("p-y2", "node-y"),
    ]);
    // "clean cluster with one spreadConstraint"
    let p = pod("p")
        .label("foo", "")
        .spread1(5, "zone", DNS, Some(match_labels(&[("foo", "bar")])))
        .info();
    let (st, _) = pre_filter_state(&pl, &p, &zone_nodes(), &[]);
    assert_eq!(counts(&st), [kv(&[("zone1", 0), ("zone2", 0)])]);
    // "normal case with one spreadConstraint"
    let p = pod("p")
        .label("foo", "")
        .spread1(1, "zone", DNS, foo())
        .info();
    let (st, _) = pre_filter_state(&pl, &p, &zone_nodes(), &five);
    assert_eq!(counts(&st), [kv(&[("zone1", 3), ("zone2", 2)])]);
    assert_eq!(min_matches(&st), [2]);
    // "normal case with null label selector"
    let p = pod("p")
        .label("foo", "")
        .spread1(1, "zone", DNS, None)
        .info();
    let (st, _) = pre_filter_state(&pl, &p, &zone_nodes(), &five);
    assert_eq!(counts(&st), [kv(&[("zone1", 0), ("zone2", 0)])]);
    // "normal case with two spreadConstraints"
    let p = pod("p")
        .label("foo", "")
        .spread1(1, "zone", DNS, foo())
        .spread1(1, "node", DNS, foo())
        .info();
    let mut seven = five.clone();
    seven.extend(foo_pods(&[("p-y3", "node-y"), ("p-y4", "node-y")]));
    let (st, _) = pre_filter_state(&pl, &p, &zone_nodes(), &seven);
    assert_eq!(
        counts(&st),
        [
            kv(&[("zone1", 3), ("zone2", 4)]),
            kv(&[("node-a", 2), ("node-b", 1), ("node-x", 0), ("node-y", 4)])
        ]
    );
    assert_eq!(min_matches(&st), [3, 0]);
    // "soft spreadConstraints should be bypassed"
    let p = pod("p")
        .label("foo", "")
        .spread1(1, "zone", SA, foo())
        .spread1(1, "zone", DNS, foo())
        .spread1(1, "node", SA, foo())
        .spread1(1, "node", DNS, foo())
        .info();
    let nodes: Vec<_> = zone_nodes()
        .into_iter()
        .filter(|n| n.metadata.name.as_deref() != Some("node-x"))
        .collect();
    let (st, _) = pre_filter_state(&pl, &p, &nodes, &seven);
    assert_eq!(
        counts(&st),
        [
            kv(&[("zone1", 3), ("zone2", 4)]),
            kv(&[("node-a", 2), ("node-b", 1), ("node-y", 4)])
        ]
    );
    // "NodeAffinityPolicy honored with labelSelectors" / matchLabelKeys.
    let p = pod("p")
        .label("foo", "a")
        .spread(
            1,
            "zone",
            DNS,
            Some(exists(&["bar"])),
            None,
            None,
            None,
            Some(&["foo"]),
        )
        .info();
    let pods = vec![
        pod("p-a1")
            .node("node-a")
            .label("foo", "a")
            .label("bar", "")
            .obj(),
        pod("p-b1")
            .node("node-b")
            .label("foo", "b")
            .label("bar", "")
            .obj(),
        pod("p-x1").node("node-x").label("bar", "").obj(),
    ];
    let (st, _) = pre_filter_state(&pl, &p, &zone_nodes(), &pods);
    assert_eq!(counts(&st), [kv(&[("zone1", 1), ("zone2", 0)])]);
    // A pod without hard constraints is skipped.
    let mut st = CycleState::default();
    let p = pod("p").spread1(1, "zone", SA, foo()).info();
    assert_eq!(pl.pre_filter(&mut st, &p, &[]).1.code, Code::Skip);
}

/// Upstream's `TestPreFilterStateAddPod` / `TestPreFilterStateRemovePod`.
#[test]
fn pre_filter_add_and_remove_pod() {
    let pl = list();
    // "node a and b both impact current min match"
    let p = pod("p")
        .label("foo", "")
        .spread1(1, "node", DNS, foo())
        .info();
    let nodes = vec![
        node("node-a")
            .label("zone", "zone1")
            .label("node", "node-a")
            .obj(),
        node("node-b")
            .label("zone", "zone1")
            .label("node", "node-b")
            .obj(),
    ];
    let (mut st, infos) = pre_filter_state(&pl, &p, &nodes, &[]);
    let added = pod("p-b1").node("node-b").label("foo", "").info();
    assert!(pl.add_pod(&mut st, &p, &added, &infos[1]).is_success());
    assert_eq!(counts(&st), [kv(&[("node-a", 0), ("node-b", 1)])]);
    assert_eq!(min_matches(&st), [0]);
    // A copy of the state (preemption's what-if) is changed alone.
    let before = st.clone();
    assert!(pl.remove_pod(&mut st, &p, &added, &infos[1]).is_success());
    assert_eq!(counts(&st), [kv(&[("node-a", 0), ("node-b", 0)])]);
    assert_eq!(counts(&before), [kv(&[("node-a", 0), ("node-b", 1)])]);
    // A pod of another namespace changes nothing.
    let other = pod("o").ns("other").node("node-b").label("foo", "").info();
    assert!(pl.add_pod(&mut st, &p, &other, &infos[1]).is_success());
    assert_eq!(counts(&st), [kv(&[("node-a", 0), ("node-b", 0)])]);

    let zone_foo_nodes = vec![
        node("node-a")
            .label("zone", "zone1")
            .label("node", "node-a")
            .label("foo", "bar")
            .obj(),
        node("node-b")
            .label("zone", "zone2")
            .label("node", "node-b")
            .label("foo", "")
            .obj(),
    ];
    // "remove a pod when scheduling node affinity unmatched pod with NodeInclusionPolicy enabled"
    let p = pod("p")
        .label("foo", "")
        .node_affinity("foo", "NotIn", &["bar"])
        .spread1(1, "zone", DNS, foo())
        .info();
    let existing = vec![
        pod("p-a2")
            .node("node-a")
            .label("foo", "")
            .label("zone", "zone1")
            .obj(),
        pod("p-b1")
            .node("node-b")
            .label("foo", "")
            .label("zone", "zone2")
            .obj(),
    ];
    let (mut st, infos) = pre_filter_state(&pl, &p, &zone_foo_nodes, &existing);
    let deleted = pod("p-a1").node("node-a").label("foo", "").info();
    assert!(pl.remove_pod(&mut st, &p, &deleted, &infos[0]).is_success());
    assert_eq!(counts(&st), [kv(&[("zone2", 1)])]);
    assert_eq!(min_matches(&st), [1]);
    // "remove a pod when scheduling node affinity matched pod with NodeInclusionPolicy enabled"
    let p = pod("p")
        .label("foo", "")
        .spread1(1, "zone", DNS, foo())
        .info();
    let existing = vec![
        pod("p-a1")
            .node("node-a")
            .label("foo", "")
            .label("zone", "zone1")
            .obj(),
        pod("p-b2")
            .node("node-b")
            .label("foo", "")
            .label("zone", "zone2")
            .obj(),
    ];
    let (mut st, infos) = pre_filter_state(&pl, &p, &zone_foo_nodes, &existing);
    let deleted = pod("p-b1").node("node-b").label("foo", "").info();
    assert!(pl.remove_pod(&mut st, &p, &deleted, &infos[1]).is_success());
    assert_eq!(counts(&st), [kv(&[("zone1", 1), ("zone2", 0)])]);
    assert_eq!(min_matches(&st), [0]);
}

#[test]
fn critical_paths_as_upstream() {
    let mut p = CriticalPaths::new();
    for (v, n) in [("a", 3), ("b", 1), ("c", 2)] {
        p.update(v, n);
    }
    assert_eq!(p.0[0], ("b".to_owned(), 1));
    assert_eq!(p.0[1], ("c".to_owned(), 2));
    p.update("b", 4);
    assert_eq!(p.0[0], ("c".to_owned(), 2));
}

/// PreScore, Score and NormalizeScore over `nodes` (feasible) with `failed`
/// nodes in the cluster too: each feasible node's final score.
fn scores(
    pl: &PodTopologySpread,
    p: &PodInfo,
    nodes: &[Arc<Node>],
    failed: &[Arc<Node>],
    pods: &[Arc<Pod>],
) -> Vec<i64> {
    let all: Vec<_> = nodes.iter().chain(failed).cloned().collect();
    let infos = snapshot(&all, pods);
    let mut st = state(&infos);
    let feasible = &infos[..nodes.len()];
    let s = pl.pre_score(&mut st, p, feasible);
    assert!(s.is_success(), "{s:?}");
    let mut out: Vec<NodeScore> = feasible
        .iter()
        .map(|n| {
            let (score, s) = pl.score(&st, p, n);
            assert!(s.is_success());
            NodeScore {
                name: n.name().to_owned(),
                score,
            }
        })
        .collect();
    assert!(pl.normalize(&st, p, &mut out).is_success());
    out.into_iter().map(|s| s.score).collect()
}

fn host_nodes(names: &[&str]) -> Vec<Arc<Node>> {
    names
        .iter()
        .map(|n| node(n).label(HOSTNAME, n).obj())
        .collect()
}

/// Upstream's `TestPodTopologySpreadScore`.
#[test]
fn pod_topology_spread_score() {
    let system = PodTopologySpread::new(Args::default()).unwrap();
    let p = || pod("p").label("foo", "");
    let spread_2103 = || {
        foo_pods(&[
            ("p-a1", "node-a"),
            ("p-a2", "node-a"),
            ("p-b1", "node-b"),
            ("p-d1", "node-d"),
            ("p-d2", "node-d"),
            ("p-d3", "node-d"),
        ])
    };
    let spread_4321 = || {
        foo_pods(&[
            ("p-a1", "node-a"),
            ("p-a2", "node-a"),
            ("p-a3", "node-a"),
            ("p-a4", "node-a"),
            ("p-b1", "node-b"),
            ("p-b2", "node-b"),
            ("p-b3", "node-b"),
            ("p-c1", "node-c"),
            ("p-c2", "node-c"),
            ("p-d1", "node-d"),
        ])
    };
    let spread_4213 = || {
        foo_pods(&[
            ("p-a1", "node-a"),
            ("p-a2", "node-a"),
            ("p-a3", "node-a"),
            ("p-a4", "node-a"),
            ("p-b1", "node-b"),
            ("p-b2", "node-b"),
            ("p-x1", "node-x"),
            ("p-y1", "node-y"),
            ("p-y2", "node-y"),
            ("p-y3", "node-y"),
        ])
    };
    let abcd = || host_nodes(&["node-a", "node-b", "node-c", "node-d"]);
    let zoned = |names: &[(&str, &str)]| -> Vec<Arc<Node>> {
        names
            .iter()
            .map(|(n, z)| node(n).label("zone", z).label(HOSTNAME, n).obj())
            .collect()
    };
    let cases: Vec<ScoreCase> = vec![
        (
            "one constraint on node, no existing pods",
            p().spread1(1, HOSTNAME, SA, foo()).info(),
            host_nodes(&["node-a", "node-b"]),
            vec![],
            vec![],
            vec![100, 100],
        ),
        (
            "one constraint on node, only one node is candidate",
            p().spread1(1, HOSTNAME, SA, foo()).info(),
            host_nodes(&["node-a"]),
            host_nodes(&["node-b"]),
            foo_pods(&[("p-a1", "node-a"), ("p-a2", "node-a"), ("p-b1", "node-b")]),
            vec![100],
        ),
        (
            "one constraint on node, all nodes have the same number of matching pods",
            p().spread1(1, HOSTNAME, SA, foo()).info(),
            host_nodes(&["node-a", "node-b"]),
            vec![],
            foo_pods(&[("p-a1", "node-a"), ("p-b1", "node-b")]),
            vec![100, 100],
        ),
        (
            "one constraint on node, all 4 nodes are candidates",
            p().spread1(1, HOSTNAME, SA, foo()).info(),
            abcd(),
            vec![],
            spread_2103(),
            vec![20, 60, 100, 0],
        ),
        (
            "one constraint on node, null selector",
            p().spread1(1, HOSTNAME, SA, None).info(),
            abcd(),
            vec![],
            spread_2103(),
            vec![100, 100, 100, 100],
        ),
        (
            "one constraint on node, all 4 nodes are candidates, maxSkew=2",
            p().spread1(2, HOSTNAME, SA, foo()).info(),
            abcd(),
            vec![],
            spread_2103(),
            vec![33, 66, 100, 16],
        ),
        (
            "one constraint on node, all 4 nodes are candidates, maxSkew=3",
            p().spread1(3, HOSTNAME, SA, foo()).info(),
            abcd(),
            vec![],
            spread_4321(),
            vec![44, 66, 77, 100],
        ),
        (
            "one constraint on node, 3 out of 4 nodes are candidates",
            p().spread1(1, HOSTNAME, SA, foo()).info(),
            host_nodes(&["node-a", "node-b", "node-x"]),
            host_nodes(&["node-y"]),
            spread_4213(),
            vec![33, 83, 100],
        ),
        (
            "one constraint on node, 3 out of 4 nodes are candidates, one node doesn't match topology key",
            p().spread1(1, HOSTNAME, SA, foo()).info(),
            vec![
                node("node-a").label(HOSTNAME, "node-a").obj(),
                node("node-b").label("n", "node-b").obj(),
                node("node-x").label(HOSTNAME, "node-x").obj(),
            ],
            host_nodes(&["node-y"]),
            spread_4213(),
            vec![16, 0, 100],
        ),
        (
            "one constraint on zone, 3 out of 4 nodes are candidates",
            p().spread1(1, "zone", SA, foo()).info(),
            zoned(&[
                ("node-a", "zone1"),
                ("node-b", "zone1"),
                ("node-x", "zone2"),
            ]),
            zoned(&[("node-y", "zone2")]),
            spread_4213(),
            vec![75, 75, 100],
        ),
        (
            "two Constraints on zone and node, 2 out of 4 nodes are candidates",
            p().spread1(1, "zone", SA, foo())
                .spread1(1, HOSTNAME, SA, foo())
                .info(),
            zoned(&[("node-a", "zone1"), ("node-x", "zone2")]),
            zoned(&[("node-b", "zone1"), ("node-y", "zone2")]),
            foo_pods(&[
                ("p-a1", "node-a"),
                ("p-a2", "node-a"),
                ("p-b1", "node-b"),
                ("p-x1", "node-x"),
                ("p-x2", "node-x"),
                ("p-y1", "node-y"),
                ("p-y2", "node-y"),
                ("p-y3", "node-y"),
                ("p-y4", "node-y"),
            ]),
            vec![100, 63],
        ),
        (
            "two Constraints on zone, 2 out of 4 nodes are candidates",
            pod("p")
                .label("foo", "")
                .label("bar", "")
                .spread1(1, "zone", SA, foo())
                .spread1(1, "zone", SA, bar())
                .info(),
            vec![
                node("node-a").label("zone", "zone1").obj(),
                node("node-x").label("zone", "zone2").obj(),
            ],
            vec![
                node("node-b").label("zone", "zone1").obj(),
                node("node-y").label("zone", "zone2").obj(),
            ],
            vec![
                pod("p-a1")
                    .node("node-a")
                    .label("foo", "")
                    .label("bar", "")
                    .obj(),
                pod("p-a2").node("node-a").label("foo", "").obj(),
                pod("p-b1")
                    .node("node-b")
                    .label("foo", "")
                    .label("bar", "")
                    .obj(),
                pod("p-y1").node("node-y").label("foo", "").obj(),
                pod("p-y2")
                    .node("node-y")
                    .label("foo", "")
                    .label("bar", "")
                    .obj(),
                pod("p-y3").node("node-y").label("foo", "").obj(),
            ],
            vec![85, 100],
        ),
        (
            "two Constraints on zone and node, with different labelSelectors",
            pod("p")
                .label("foo", "")
                .label("bar", "")
                .spread1(1, "zone", SA, foo())
                .spread1(1, HOSTNAME, SA, bar())
                .info(),
            zoned(&[
                ("node-a", "zone1"),
                ("node-b", "zone1"),
                ("node-x", "zone2"),
                ("node-y", "zone2"),
            ]),
            vec![],
            vec![
                pod("p-a1").node("node-a").label("foo", "").obj(),
                pod("p-b1")
                    .node("node-b")
                    .label("foo", "")
                    .label("bar", "")
                    .obj(),
                pod("p-y1").node("node-y").label("foo", "").obj(),
                pod("p-y2").node("node-y").label("bar", "").obj(),
            ],
            vec![60, 20, 100, 60],
        ),
        (
            "two Constraints on zone and node, with different labelSelectors, some nodes have 0 pods",
            pod("p")
                .label("foo", "")
                .label("bar", "")
                .spread1(1, "zone", SA, foo())
                .spread1(1, HOSTNAME, SA, bar())
                .info(),
            zoned(&[
                ("node-a", "zone1"),
                ("node-b", "zone1"),
                ("node-x", "zone2"),
                ("node-y", "zone2"),
            ]),
            vec![],
            vec![
                pod("p-b1").node("node-b").label("bar", "").obj(),
                pod("p-x1").node("node-x").label("foo", "").obj(),
                pod("p-y1")
                    .node("node-y")
                    .label("foo", "")
                    .label("bar", "")
                    .obj(),
            ],
            vec![100, 60, 40, 0],
        ),
        (
            "two Constraints on zone and node, with different labelSelectors, 3 out of 4 nodes are candidates",
            pod("p")
                .label("foo", "")
                .label("bar", "")
                .spread1(1, "zone", SA, foo())
                .spread1(1, HOSTNAME, SA, bar())
                .info(),
            zoned(&[
                ("node-a", "zone1"),
                ("node-b", "zone1"),
                ("node-x", "zone2"),
            ]),
            zoned(&[("node-y", "zone2")]),
            vec![
                pod("p-a1").node("node-a").label("foo", "").obj(),
                pod("p-b1")
                    .node("node-b")
                    .label("foo", "")
                    .label("bar", "")
                    .obj(),
                pod("p-y1").node("node-y").label("foo", "").obj(),
                pod("p-y2").node("node-y").label("bar", "").obj(),
            ],
            vec![50, 25, 100],
        ),
        (
            "existing pods in a different namespace do not count",
            p().spread1(1, HOSTNAME, SA, foo()).info(),
            host_nodes(&["node-a", "node-b"]),
            vec![],
            vec![
                pod("p-a1").ns("ns1").node("node-a").label("foo", "").obj(),
                pod("p-a2").node("node-a").label("foo", "").obj(),
                pod("p-b1").node("node-b").label("foo", "").obj(),
                pod("p-b2").node("node-b").label("foo", "").obj(),
            ],
            vec![100, 33],
        ),
        (
            "terminating Pods should be excluded",
            p().spread1(1, HOSTNAME, SA, foo()).info(),
            host_nodes(&["node-a", "node-b"]),
            vec![],
            vec![
                pod("p-a")
                    .node("node-a")
                    .label("foo", "")
                    .terminating()
                    .obj(),
                pod("p-b").node("node-b").label("foo", "").obj(),
            ],
            vec![100, 0],
        ),
        (
            "minDomains has no effect when ScheduleAnyway",
            p().spread(2, "node", SA, foo(), Some(10), None, None, None)
                .info(),
            vec![
                node("node-a").label("node", "node-a").obj(),
                node("node-b").label("node", "node-b").obj(),
                node("node-c").label("node", "node-c").obj(),
            ],
            vec![],
            foo_pods(&[
                ("p-a1", "node-a"),
                ("p-a2", "node-a"),
                ("p-b1", "node-b"),
                ("p-b2", "node-b"),
                ("p-c1", "node-c"),
            ]),
            vec![75, 75, 100],
        ),
    ];
    for (name, p, nodes, failed, pods, want) in cases {
        assert_eq!(scores(&system, &p, &nodes, &failed, &pods), want, "{name}");
    }
}

/// Upstream's `TestPodTopologySpreadScore`, node inclusion policy and
/// matchLabelKeys cases.
#[test]
fn pod_topology_spread_score_policies_and_match_label_keys() {
    let system = PodTopologySpread::new(Args::default()).unwrap();
    let p = || pod("p").label("foo", "");
    let abc = |taint_c: bool| {
        let c = node("node-c").label("node", "node-c");
        vec![
            node("node-a")
                .label("node", "node-a")
                .label("foo", "")
                .obj(),
            node("node-b")
                .label("node", "node-b")
                .label("foo", "")
                .obj(),
            if taint_c {
                c.taint("node.kubernetes.io/unschedulable").obj()
            } else {
                c.obj()
            },
        ]
    };
    let pods = foo_pods(&[
        ("p-a1", "node-a"),
        ("p-a2", "node-a"),
        ("p-b1", "node-b"),
        ("p-c1", "node-c"),
    ]);
    let cases: Vec<(&str, PodInfo, bool, Vec<i64>)> = vec![
        (
            "NodeAffinityPolicy honoed with labelSelectors",
            p().node_selector(&[("foo", "")])
                .spread1(1, "node", SA, foo())
                .info(),
            false,
            vec![0, 33, 100],
        ),
        (
            "NodeAffinityPolicy ignored with labelSelectors",
            p().node_selector(&[("foo", "")])
                .spread(1, "node", SA, foo(), None, Some("Ignore"), None, None)
                .info(),
            false,
            vec![66, 100, 100],
        ),
        (
            "NodeAffinityPolicy honoed with nodeAffinity",
            p().node_affinity("foo", "In", &[""])
                .spread1(1, "node", SA, foo())
                .info(),
            false,
            vec![0, 33, 100],
        ),
        (
            "NodeAffinityPolicy ignored with nodeAffinity",
            p().node_affinity("foo", "In", &[""])
                .spread(1, "node", SA, foo(), None, Some("Ignore"), None, None)
                .info(),
            false,
            vec![66, 100, 100],
        ),
        (
            "NodeTaintsPolicy honored",
            p().spread(1, "node", SA, foo(), None, None, Some("Honor"), None)
                .info(),
            true,
            vec![0, 33, 100],
        ),
        (
            "NodeTaintsPolicy ignored",
            p().spread1(1, "node", SA, foo()).info(),
            true,
            vec![66, 100, 100],
        ),
    ];
    for (name, p, taint, want) in cases {
        assert_eq!(scores(&system, &p, &abc(taint), &[], &pods), want, "{name}");
    }

    let zoned = || -> Vec<Arc<Node>> {
        [
            ("node-a", "zone1"),
            ("node-b", "zone1"),
            ("node-c", "zone2"),
            ("node-d", "zone2"),
        ]
        .iter()
        .map(|(n, z)| node(n).label("zone", z).label(HOSTNAME, n).obj())
        .collect()
    };
    // "matchLabelKeys ANDed with LabelSelector when LabelSelector is empty"
    let everything = Some(LabelSelector::default());
    let p = pod("p")
        .label("foo", "")
        .label("bar", "")
        .spread(
            1,
            "zone",
            SA,
            everything.clone(),
            None,
            None,
            None,
            Some(&["foo"]),
        )
        .spread(
            1,
            HOSTNAME,
            SA,
            everything,
            None,
            None,
            None,
            Some(&["bar"]),
        )
        .info();
    let pods = vec![
        pod("p-a1").node("node-a").label("foo", "").obj(),
        pod("p-b1")
            .node("node-b")
            .label("foo", "")
            .label("bar", "")
            .obj(),
        pod("p-y1").node("node-c").label("foo", "").obj(),
        pod("p-y2").node("node-c").label("bar", "").obj(),
    ];
    assert_eq!(scores(&system, &p, &zoned(), &[], &pods), [60, 20, 60, 100]);
    // "matchLabelKeys ANDed with LabelSelector when LabelSelector isn't empty"
    let p = pod("p")
        .label("foo", "")
        .label("bar", "")
        .label("baz", "")
        .spread1(1, "zone", SA, foo())
        .spread(1, HOSTNAME, SA, bar(), None, None, None, Some(&["baz"]))
        .info();
    let pods = vec![
        pod("p-a1").node("node-a").label("foo", "").obj(),
        pod("p-b1")
            .node("node-b")
            .label("foo", "")
            .label("bar", "")
            .label("baz", "")
            .obj(),
        pod("p-c1").node("node-c").label("foo", "").obj(),
        pod("p-c2").node("node-c").label("bar", "").obj(),
        pod("p-d3")
            .node("node-c")
            .label("bar", "")
            .label("baz", "")
            .obj(),
    ];
    assert_eq!(scores(&system, &p, &zoned(), &[], &pods), [60, 20, 60, 100]);
}

/// Upstream's `TestPreScoreSkip` and `TestPreScoreStateEmptyNodes` ("system
/// default constraints and a replicaset", with the replica set's pods found by
/// their controller reference).
#[test]
fn system_default_constraints() {
    let system = PodTopologySpread::new(Args::default()).unwrap();
    // "the pod doesn't have soft topology spread Constraints"
    let nodes = host_nodes(&["node-a", "node-b"]);
    let infos = snapshot(&nodes, &[]);
    let mut st = state(&infos);
    let bare = pod("p").info();
    assert_eq!(system.pre_score(&mut st, &bare, &infos).code, Code::Skip);
    assert_eq!(list().pre_score(&mut st, &bare, &infos).code, Code::Skip);
    // A pod of a Deployment (not one of the workloads upstream looks at) gets none.
    let deployed = pod("p").owner("apps/v1", "Deployment", "d1").info();
    assert_eq!(
        system.pre_score(&mut st, &deployed, &infos).code,
        Code::Skip
    );

    let rs = |name: &str| {
        pod(name)
            .label("foo", "tar")
            .owner("apps/v1", "ReplicaSet", "rs1")
    };
    let p = rs("p").info();
    let nodes = vec![
        node("node-a")
            .label(HOSTNAME, "node-a")
            .label(ZONE, "mars")
            .obj(),
        node("node-b")
            .label(HOSTNAME, "node-b")
            .label(ZONE, "mars")
            .obj(),
        // Nodes with no zone are not excluded. They are considered a separate zone.
        node("node-c").label(HOSTNAME, "node-c").obj(),
        node("node-d").label(HOSTNAME, "node-d").obj(),
    ];
    let pods = vec![
        rs("p-a1").node("node-a").obj(),
        rs("p-a2").node("node-a").obj(),
        rs("p-c1").node("node-c").obj(),
        // Same labels, another controller: not counted.
        pod("o-b1")
            .label("foo", "tar")
            .owner("apps/v1", "ReplicaSet", "rs2")
            .node("node-b")
            .obj(),
    ];
    let infos = snapshot(&nodes, &pods);
    let mut st = state(&infos);
    assert!(system.pre_score(&mut st, &p, &infos).is_success());
    let s = st.read::<Arc<PreScoreState>>(PRE_SCORE_KEY).unwrap();
    assert_eq!(
        s.constraints
            .iter()
            .map(|c| (c.topology_key.as_str(), c.max_skew))
            .collect::<Vec<_>>(),
        [(HOSTNAME, 3), (ZONE, 5)]
    );
    assert!(s.ignored.is_empty());
    let mut zone: Vec<_> = s.tp_value_to_pod_counts[1].iter().collect();
    zone.sort();
    assert_eq!(zone, [(&String::new(), &1), (&"mars".to_owned(), &2)]);
    assert_eq!(s.weights, [6f64.ln(), 4f64.ln()]);
    // node-a: hostname 2·ln6 + 2, zone 2·ln4 + 4; node-b: 2 + 2·ln4 + 4; node-c:
    // ln6 + 2 (no zone label: not scored for it); node-d: 2.
    let raw: Vec<i64> = infos.iter().map(|n| system.score(&st, &p, n).0).collect();
    assert_eq!(raw, [12, 9, 4, 2]);

    // List defaulting with a hard default constraint filters too.
    let pl = PodTopologySpread::new(Args {
        defaulting_type: "List".into(),
        default_constraints: vec![DefaultConstraint {
            max_skew: 1,
            topology_key: HOSTNAME.into(),
            when_unsatisfiable: DNS.into(),
            ..Default::default()
        }],
    })
    .unwrap();
    let codes = filter_codes(&pl, &p, &nodes, &pods);
    assert_eq!(codes, [U, S, U, S]);
}

#[test]
fn args_decode_default_and_validate_as_upstream() {
    let a: Args = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(a, Args::default());
    assert_eq!(a.defaulting_type, "System");
    assert!(serde_json::from_value::<Args>(serde_json::json!({"foo": 1})).is_err());
    let bad = |v: serde_json::Value| {
        serde_json::from_value::<Args>(v)
            .unwrap()
            .validate("")
            .unwrap_err()
    };
    assert_eq!(
        bad(serde_json::json!({"defaultingType": "Foo"})),
        "defaultingType: Unsupported value: \"Foo\": supported values: \"System\", \"List\""
    );
    assert_eq!(
        bad(
            serde_json::json!({"defaultConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]})
        ),
        "defaultingType: Invalid value: \"System\": when .defaultConstraints are not empty"
    );
    assert_eq!(
        bad(
            serde_json::json!({"defaultingType": "List", "defaultConstraints": [
                {"maxSkew": 0, "topologyKey": "", "whenUnsatisfiable": "Sometimes"},
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {}},
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"},
            ]})
        ),
        "[defaultConstraints[0].maxSkew: Invalid value: 0: not in valid range (0, inf), \
         defaultConstraints[0].topologyKey: Required value: can not be empty, \
         defaultConstraints[0].whenUnsatisfiable: Unsupported value: \"Sometimes\": supported values: \"DoNotSchedule\", \"ScheduleAnyway\", \
         defaultConstraints[1].labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod, \
         defaultConstraints[2]: Duplicate value: \"{zone, DoNotSchedule}\"]"
    );
    assert_eq!(
        PodTopologySpread::new(Args {
            defaulting_type: "List".into(),
            ..Default::default()
        })
        .map(|_| ()),
        Ok(())
    );
}

#[test]
fn filter_reasons_are_upstreams() {
    let pl = list();
    let p = pod("p")
        .label("foo", "")
        .spread1(1, "zone", DNS, foo())
        .info();
    let nodes = vec![
        node("node-a").label("zone", "zone1").obj(),
        node("node-b").label("zone", "zone2").obj(),
        node("node-c").obj(),
    ];
    let infos = snapshot(&nodes, &foo_pods(&[("p-a1", "node-a")]));
    let mut st = state(&infos);
    assert!(pl.pre_filter(&mut st, &p, &infos).1.is_success());
    assert_eq!(
        pl.filter(&st, &p, &infos[0]),
        Status::unschedulable("node(s) didn't match pod topology spread constraints")
    );
    assert_eq!(
        pl.filter(&st, &p, &infos[2]),
        Status::unresolvable(
            "node(s) didn't match pod topology spread constraints (missing required label)"
        )
    );
    assert!(
        pl.filter(&CycleState::default(), &p, &infos[1]).code == Code::Error,
        "without PreFilter's state"
    );
}
