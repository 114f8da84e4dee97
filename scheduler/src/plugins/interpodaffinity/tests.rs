//! Cases from upstream's `interpodaffinity` filtering_test.go and
//! scoring_test.go (same inputs, same statuses and scores); the case names are
//! upstream's. Upstream's pods in namespace "" are in "default" here.

use k8s_openapi::api::core::v1::{Node, PodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::*;
use crate::plugins::testutil::{PodB, exists, expr, node, pod, snapshot, state};

fn namespaces() -> Arc<dyn Namespaces> {
    let ns = |n: &str, team: Option<&str>| {
        (
            n.to_owned(),
            team.map(|t| [("team".to_owned(), t.to_owned())].into())
                .unwrap_or_default(),
        )
    };
    Arc::new(StaticNamespaces(
        [
            ns("subteam1.team1", Some("team1")),
            ns("subteam2.team1", Some("team1")),
            ns("subteam1.team2", Some("team2")),
            ns("subteam2.team2", Some("team2")),
            ns("NS1", None),
        ]
        .into(),
    ))
}

fn plugin(args: Args) -> InterPodAffinity {
    InterPodAffinity::new(args, namespaces()).unwrap()
}

fn term(sel: LabelSelector, topology: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(sel),
        topology_key: topology.into(),
        ..Default::default()
    }
}

fn in_(key: &str, values: &[&str], topology: &str) -> PodAffinityTerm {
    term(expr(key, "In", values), topology)
}

fn not_in(key: &str, values: &[&str], topology: &str) -> PodAffinityTerm {
    term(expr(key, "NotIn", values), topology)
}

fn ex(key: &str, topology: &str) -> PodAffinityTerm {
    term(exists(&[key]), topology)
}

/// A selector with several expressions.
fn exprs(items: &[(&str, &str, &[&str])]) -> LabelSelector {
    let mut sel = LabelSelector::default();
    for (k, op, v) in items {
        sel.match_expressions
            .get_or_insert_with(Default::default)
            .extend(expr(k, op, v).match_expressions.unwrap());
    }
    sel
}

fn labelled(name: &str, labels: &[(&str, &str)]) -> PodB {
    labels.iter().fold(pod(name), |p, (k, v)| p.label(k, v))
}

fn nodes(list: &[(&str, &[(&str, &str)])]) -> Vec<Arc<Node>> {
    list.iter()
        .map(|(n, labels)| labels.iter().fold(node(n), |b, (k, v)| b.label(k, v)).obj())
        .collect()
}

/// An expected Filter rejection (`None`: success).
type Want = Option<(Code, &'static str)>;
/// Topology pairs with their counts.
type Pairs = Vec<(String, String, i64)>;

const OK: Option<(Code, &str)> = None;
const AFF: Option<(Code, &str)> = Some((
    Code::UnschedulableAndUnresolvable,
    ERR_REASON_AFFINITY_RULES_NOT_MATCH,
));
const ANTI: Option<(Code, &str)> = Some((
    Code::Unschedulable,
    ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH,
));
const EXISTING: Option<(Code, &str)> = Some((
    Code::Unschedulable,
    ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH,
));

/// PreFilter, then Filter on each node (unless PreFilter skipped): the
/// PreFilter code and each node's rejection.
fn run_filter(
    p: &PodInfo,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
) -> (Code, Vec<Option<(Code, String)>>) {
    let pl = plugin(Args::default());
    let infos = snapshot(nodes, pods);
    let mut st = state(&infos);
    let (_, s) = pl.pre_filter(&mut st, p, &infos);
    if !s.is_success() {
        return (s.code, Vec::new());
    }
    let out = infos
        .iter()
        .map(|n| {
            let s = pl.filter(&st, p, n);
            (!s.is_success()).then(|| (s.code, s.message()))
        })
        .collect();
    (s.code, out)
}

fn want(w: &[Option<(Code, &str)>]) -> Vec<Option<(Code, String)>> {
    w.iter()
        .map(|o| o.map(|(c, m)| (c, m.to_owned())))
        .collect()
}

/// Upstream's `TestRequiredAffinitySingleNode`.
#[test]
fn required_affinity_single_node() {
    let pod_label = [("service", "securityscan")];
    let pod_label2 = [("security", "S1")];
    let existing = || labelled("pod", &pod_label).node("node1");
    let node1 = || nodes(&[("node1", &[("region", "r1"), ("zone", "z11")])]);
    let cases: Vec<(&str, PodInfo, Vec<Arc<Pod>>, Want)> = vec![
        (
            "satisfies with requiredDuringSchedulingIgnoredDuringExecution in PodAffinity using In operator that matches the existing pod",
            labelled("p", &pod_label2)
                .affinity_required(in_("service", &["securityscan", "value2"], "region"))
                .info(),
            vec![existing().obj()],
            OK,
        ),
        (
            "satisfies the pod with requiredDuringSchedulingIgnoredDuringExecution in PodAffinity using not in operator in labelSelector that matches the existing pod",
            labelled("p", &pod_label2)
                .affinity_required(not_in("service", &["securityscan3", "value3"], "region"))
                .info(),
            vec![existing().obj()],
            OK,
        ),
        (
            "Does not satisfy the PodAffinity with labelSelector because of diff Namespace",
            labelled("p", &pod_label2)
                .affinity_required(PodAffinityTerm {
                    namespaces: Some(vec!["DiffNameSpace".into()]),
                    ..in_("service", &["securityscan", "value2"], "")
                })
                .info(),
            vec![existing().ns("ns").obj()],
            AFF,
        ),
        (
            "Doesn't satisfy the PodAffinity because of unmatching labelSelector with the existing pod",
            labelled("p", &pod_label)
                .affinity_required(in_("service", &["antivirusscan", "value2"], ""))
                .info(),
            vec![existing().obj()],
            AFF,
        ),
        (
            "satisfies the PodAffinity with different label Operators in multiple RequiredDuringSchedulingIgnoredDuringExecution ",
            labelled("p", &pod_label2)
                .affinity_required(term(
                    exprs(&[
                        ("service", "Exists", &[]),
                        ("wrongkey", "DoesNotExist", &[]),
                    ]),
                    "region",
                ))
                .affinity_required(term(
                    exprs(&[
                        ("service", "In", &["securityscan"]),
                        ("service", "NotIn", &["WrongValue"]),
                    ]),
                    "region",
                ))
                .info(),
            vec![existing().obj()],
            OK,
        ),
        (
            "The labelSelector requirements(items of matchExpressions) are ANDed, the pod cannot schedule onto the node because one of the matchExpression item don't match.",
            labelled("p", &pod_label2)
                .affinity_required(term(
                    exprs(&[
                        ("service", "Exists", &[]),
                        ("wrongkey", "DoesNotExist", &[]),
                    ]),
                    "region",
                ))
                .affinity_required(term(
                    exprs(&[
                        ("service", "In", &["securityscan2"]),
                        ("service", "NotIn", &["WrongValue"]),
                    ]),
                    "region",
                ))
                .info(),
            vec![existing().obj()],
            AFF,
        ),
        (
            "satisfies the PodAffinity and PodAntiAffinity with the existing pod",
            labelled("p", &pod_label2)
                .affinity_required(in_("service", &["securityscan", "value2"], "region"))
                .anti_affinity_required(in_("service", &["antivirusscan", "value2"], "node"))
                .info(),
            vec![existing().obj()],
            OK,
        ),
        (
            "satisfies the PodAffinity and PodAntiAffinity and PodAntiAffinity symmetry with the existing pod",
            labelled("p", &pod_label2)
                .affinity_required(in_("service", &["securityscan", "value2"], "region"))
                .anti_affinity_required(in_("service", &["antivirusscan", "value2"], "node"))
                .info(),
            vec![
                existing()
                    .anti_affinity_required(in_("service", &["antivirusscan", "value2"], "node"))
                    .obj(),
            ],
            OK,
        ),
        (
            "satisfies the PodAffinity but doesn't satisfy the PodAntiAffinity with the existing pod",
            labelled("p", &pod_label2)
                .affinity_required(in_("service", &["securityscan", "value2"], "region"))
                .anti_affinity_required(in_("service", &["securityscan", "value2"], "zone"))
                .info(),
            vec![existing().obj()],
            ANTI,
        ),
        (
            "satisfies the PodAffinity and PodAntiAffinity but doesn't satisfy PodAntiAffinity symmetry with the existing pod",
            labelled("p", &pod_label)
                .affinity_required(in_("service", &["securityscan", "value2"], "region"))
                .anti_affinity_required(in_("service", &["antivirusscan", "value2"], "node"))
                .info(),
            vec![
                existing()
                    .anti_affinity_required(in_("service", &["securityscan", "value2"], "zone"))
                    .obj(),
            ],
            EXISTING,
        ),
        (
            "pod matches its own Label in PodAffinity and that matches the existing pod Labels",
            labelled("p", &pod_label)
                .affinity_required(not_in("service", &["securityscan", "value2"], "region"))
                .info(),
            vec![labelled("pod", &pod_label).node("node2").obj()],
            AFF,
        ),
        (
            "verify that PodAntiAffinity from existing pod is respected when pod has no AntiAffinity constraints. doesn't satisfy PodAntiAffinity symmetry with the existing pod",
            labelled("p", &pod_label).info(),
            vec![
                existing()
                    .anti_affinity_required(in_("service", &["securityscan", "value2"], "zone"))
                    .obj(),
            ],
            EXISTING,
        ),
        (
            "satisfies the PodAntiAffinity with existing pod but doesn't satisfy PodAntiAffinity symmetry with incoming pod",
            labelled("p", &pod_label)
                .anti_affinity_required(ex("service", "region"))
                .anti_affinity_required(ex("security", "region"))
                .info(),
            vec![
                labelled("pod", &pod_label2)
                    .node("node1")
                    .anti_affinity_required(ex("security", "zone"))
                    .obj(),
            ],
            ANTI,
        ),
        (
            "PodAntiAffinity symmetry check a1: incoming pod and existing pod partially match each other on AffinityTerms",
            labelled("p", &pod_label)
                .anti_affinity_required(ex("service", "zone"))
                .anti_affinity_required(ex("security", "zone"))
                .info(),
            vec![
                labelled("pod", &pod_label2)
                    .node("node1")
                    .anti_affinity_required(ex("security", "zone"))
                    .obj(),
            ],
            ANTI,
        ),
        (
            "PodAntiAffinity symmetry check a2: incoming pod and existing pod partially match each other on AffinityTerms",
            labelled("p", &pod_label2)
                .anti_affinity_required(ex("security", "zone"))
                .info(),
            vec![
                labelled("pod", &pod_label)
                    .node("node1")
                    .anti_affinity_required(ex("service", "zone"))
                    .anti_affinity_required(ex("security", "zone"))
                    .obj(),
            ],
            EXISTING,
        ),
        (
            "PodAntiAffinity symmetry check b1: incoming pod and existing pod partially match each other on AffinityTerms",
            labelled("p", &[("abc", ""), ("xyz", "")])
                .anti_affinity_required(ex("abc", "zone"))
                .anti_affinity_required(ex("def", "zone"))
                .info(),
            vec![
                labelled("pod", &[("def", ""), ("xyz", "")])
                    .node("node1")
                    .anti_affinity_required(ex("abc", "zone"))
                    .anti_affinity_required(ex("def", "zone"))
                    .obj(),
            ],
            ANTI,
        ),
        (
            "PodAntiAffinity symmetry check b2: incoming pod and existing pod partially match each other on AffinityTerms",
            labelled("p", &[("def", ""), ("xyz", "")])
                .anti_affinity_required(ex("abc", "zone"))
                .anti_affinity_required(ex("def", "zone"))
                .info(),
            vec![
                labelled("pod", &[("abc", ""), ("xyz", "")])
                    .node("node1")
                    .anti_affinity_required(ex("abc", "zone"))
                    .anti_affinity_required(ex("def", "zone"))
                    .obj(),
            ],
            ANTI,
        ),
        (
            "affinity with NamespaceSelector",
            labelled("p", &pod_label2)
                .affinity_required(PodAffinityTerm {
                    namespace_selector: Some(expr("team", "In", &["team1"])),
                    ..in_("service", &["securityscan", "value2"], "region")
                })
                .info(),
            vec![existing().ns("subteam1.team1").obj()],
            OK,
        ),
        (
            "affinity with non-matching NamespaceSelector",
            labelled("p", &pod_label2)
                .affinity_required(PodAffinityTerm {
                    namespace_selector: Some(expr("team", "In", &["team1"])),
                    ..in_("service", &["securityscan", "value2"], "region")
                })
                .info(),
            vec![existing().ns("subteam1.team2").obj()],
            AFF,
        ),
        (
            "anti-affinity with matching NamespaceSelector",
            labelled("p", &pod_label2)
                .ns("subteam1.team1")
                .anti_affinity_required(PodAffinityTerm {
                    namespace_selector: Some(expr("team", "In", &["team1"])),
                    ..in_("service", &["securityscan", "value2"], "zone")
                })
                .info(),
            vec![existing().ns("subteam2.team1").obj()],
            ANTI,
        ),
        (
            "anti-affinity with matching all NamespaceSelector",
            labelled("p", &pod_label2)
                .ns("subteam1.team1")
                .anti_affinity_required(PodAffinityTerm {
                    namespace_selector: Some(LabelSelector::default()),
                    ..in_("service", &["securityscan", "value2"], "zone")
                })
                .info(),
            vec![existing().ns("subteam2.team1").obj()],
            ANTI,
        ),
        (
            "anti-affinity with non-matching NamespaceSelector",
            labelled("p", &pod_label2)
                .ns("subteam1.team1")
                .anti_affinity_required(PodAffinityTerm {
                    namespace_selector: Some(expr("team", "In", &["team1"])),
                    ..in_("service", &["securityscan", "value2"], "zone")
                })
                .info(),
            vec![existing().ns("subteam1.team2").obj()],
            OK,
        ),
    ];
    for (name, p, pods, w) in cases {
        let (code, got) = run_filter(&p, &node1(), &pods);
        assert_eq!(code, Code::Success, "{name}");
        assert_eq!(got, want(&[w]), "{name}");
    }

    // PreFilter: skipped, or failing to parse the pod.
    let skip = |p: PodInfo, pods: Vec<Arc<Pod>>| run_filter(&p, &node1(), &pods).0;
    assert_eq!(
        skip(pod("p").info(), vec![]),
        Code::Skip,
        "A pod that has no required pod affinity scheduling rules can schedule onto a node with no existing pods"
    );
    assert_eq!(
        skip(
            labelled("p", &pod_label).info(),
            vec![
                existing()
                    .anti_affinity_required(not_in("service", &["securityscan", "value2"], "zone"))
                    .obj()
            ]
        ),
        Code::Skip,
        "verify that PodAntiAffinity from existing pod is respected when pod has no AntiAffinity constraints. satisfy PodAntiAffinity symmetry with the existing pod"
    );
    // "PodAffinity fails PreFilter with an invalid affinity label syntax"
    let p = labelled("p", &pod_label)
        .affinity_required(in_("service", &["{{.bad-value.}}"], "region"))
        .affinity_required(in_("service", &["antivirusscan", "value2"], "node"))
        .info();
    let infos = snapshot(&node1(), &[]);
    let mut st = state(&infos);
    let (_, s) = plugin(Args::default()).pre_filter(&mut st, &p, &infos);
    assert_eq!(
        s,
        Status::unresolvable(
            "parsing pod: requiredAffinityTerms: values[0][service]: Invalid value: \"{{.bad-value.}}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        )
    );
}

/// Upstream's `TestRequiredAffinityMultipleNodes`.
#[test]
fn required_affinity_multiple_nodes() {
    let china: &[(&str, &str)] = &[("region", "China")];
    let china_az1: &[(&str, &str)] = &[("region", "China"), ("az", "az1")];
    let india: &[(&str, &str)] = &[("region", "India")];
    let rzh = |z: &'static str, h: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![("region", "r1"), ("zone", z), ("hostname", h)]
    };
    let ab = |za: &'static str, zb: &'static str| {
        let a = rzh(za, "nodeA");
        let b = rzh(zb, "nodeB");
        nodes(&[("nodeA", &a), ("nodeB", &b)])
    };
    type Case = (
        &'static str,
        PodInfo,
        Vec<Arc<Pod>>,
        Vec<Arc<Node>>,
        Vec<Option<(Code, &'static str)>>,
    );
    let cases: Vec<Case> = vec![
        (
            "A pod can be scheduled onto all the nodes that have the same topology key & label value with one of them has an existing pod that matches the affinity rules",
            pod("p")
                .affinity_required(in_("foo", &["bar"], "region"))
                .info(),
            vec![labelled("p1", &[("foo", "bar")]).node("node1").obj()],
            nodes(&[("node1", china), ("node2", china_az1), ("node3", india)]),
            vec![OK, OK, AFF],
        ),
        (
            "The affinity rule is to schedule all of the pods of this collection to the same zone. The first pod of the collection should not be blocked from being scheduled onto any node, even there's no existing pod that matches the rule anywhere.",
            labelled("p", &[("foo", "bar"), ("service", "securityscan")])
                .affinity_required(in_("foo", &["bar"], "zone"))
                .affinity_required(in_("service", &["securityscan"], "zone"))
                .info(),
            vec![labelled("p1", &[("foo", "bar")]).node("nodeA").obj()],
            nodes(&[
                ("nodeA", &[("zone", "az1"), ("hostname", "h1")]),
                ("nodeB", &[("zone", "az2"), ("hostname", "h2")]),
            ]),
            vec![OK, OK],
        ),
        (
            "The first pod of the collection can only be scheduled on nodes labelled with the requested topology keys",
            labelled("p", &[("foo", "bar"), ("service", "securityscan")])
                .affinity_required(in_("foo", &["bar"], "zone"))
                .affinity_required(in_("service", &["securityscan"], "zone"))
                .info(),
            vec![labelled("p1", &[("foo", "bar")]).node("nodeA").obj()],
            nodes(&[
                ("nodeA", &[("zoneLabel", "az1"), ("hostname", "h1")]),
                ("nodeB", &[("zoneLabel", "az2"), ("hostname", "h2")]),
            ]),
            vec![AFF, AFF],
        ),
        (
            "NodeA and nodeB have same topologyKey and label value. NodeA has an existing pod that matches the inter pod affinity rule. The pod can not be scheduled onto nodeA and nodeB.",
            pod("p")
                .anti_affinity_required(in_("foo", &["abc"], "region"))
                .info(),
            vec![labelled("p1", &[("foo", "abc")]).node("nodeA").obj()],
            nodes(&[
                ("nodeA", &[("region", "r1"), ("hostname", "nodeA")]),
                ("nodeB", &[("region", "r1"), ("hostname", "nodeB")]),
            ]),
            vec![ANTI, ANTI],
        ),
        (
            "This test ensures that anti-affinity matches a pod when any term of the anti-affinity rule matches a pod.",
            pod("p")
                .anti_affinity_required(in_("foo", &["abc"], "region"))
                .anti_affinity_required(in_("service", &["securityscan"], "zone"))
                .info(),
            vec![
                labelled("p1", &[("foo", "abc"), ("service", "securityscan")])
                    .node("nodeA")
                    .obj(),
            ],
            ab("z1", "z2"),
            vec![ANTI, ANTI],
        ),
        (
            "NodeA and nodeB have same topologyKey and label value. NodeA has an existing pod that matches the inter pod affinity rule. The pod can not be scheduled onto nodeA and nodeB but can be scheduled onto nodeC",
            pod("p")
                .anti_affinity_required(in_("foo", &["abc"], "region"))
                .info(),
            vec![labelled("p1", &[("foo", "abc")]).node("nodeA").obj()],
            nodes(&[("nodeA", china), ("nodeB", china_az1), ("nodeC", india)]),
            vec![ANTI, ANTI, OK],
        ),
        (
            "NodeA and nodeB have same topologyKey and label value. NodeA has an existing pod that matches the inter pod affinity rule. The pod can not be scheduled onto nodeA, nodeB, but can be scheduled onto nodeC (NodeC has an existing pod that match the inter pod affinity rule but in different namespace)",
            labelled("p", &[("foo", "123")])
                .ns("NS1")
                .anti_affinity_required(in_("foo", &["bar"], "region"))
                .info(),
            vec![
                labelled("p1", &[("foo", "bar")])
                    .ns("NS1")
                    .node("nodeA")
                    .obj(),
                pod("p2")
                    .ns("NS2")
                    .node("nodeC")
                    .anti_affinity_required(in_("foo", &["123"], "region"))
                    .obj(),
            ],
            nodes(&[("nodeA", china), ("nodeB", china_az1), ("nodeC", india)]),
            vec![ANTI, ANTI, OK],
        ),
        (
            "Test incoming pod's anti-affinity: even if labelSelector matches, we still check if topologyKey matches",
            pod("p")
                .anti_affinity_required(ex("foo", "invalid-node-label"))
                .info(),
            vec![labelled("p1", &[("foo", "")]).node("nodeA").obj()],
            ab("z1", "z1"),
            vec![OK, OK],
        ),
        (
            "Test existing pod's anti-affinity: incoming pod wouldn't considered as a fit as it violates each existingPod's terms on all nodes",
            labelled("p", &[("foo", ""), ("bar", "")]).info(),
            vec![
                pod("p1")
                    .node("nodeA")
                    .anti_affinity_required(ex("foo", "zone"))
                    .obj(),
                pod("p2")
                    .node("nodeA")
                    .anti_affinity_required(ex("bar", "region"))
                    .obj(),
            ],
            ab("z1", "z2"),
            vec![EXISTING, EXISTING],
        ),
        (
            "Test incoming pod's anti-affinity: incoming pod wouldn't considered as a fit as it at least violates one anti-affinity rule of existingPod",
            pod("p")
                .anti_affinity_required(ex("foo", "zone"))
                .anti_affinity_required(ex("bar", "region"))
                .info(),
            vec![
                labelled("p1", &[("foo", "")]).node("nodeA").obj(),
                labelled("p2", &[("bar", "")]).node("nodeB").obj(),
            ],
            ab("z1", "z2"),
            vec![ANTI, ANTI],
        ),
        (
            "Test existing pod's anti-affinity: only when labelSelector and topologyKey both match, it's counted as a single term match - case when one term has invalid topologyKey",
            labelled("p", &[("foo", ""), ("bar", "")]).info(),
            vec![
                pod("p1")
                    .node("nodeA")
                    .anti_affinity_required(ex("foo", "invalid-node-label"))
                    .anti_affinity_required(ex("bar", "zone"))
                    .obj(),
            ],
            ab("z1", "z2"),
            vec![EXISTING, OK],
        ),
        (
            "Test incoming pod's anti-affinity: only when labelSelector and topologyKey both match, it's counted as a single term match - case when one term has invalid topologyKey",
            pod("p")
                .anti_affinity_required(ex("foo", "invalid-node-label"))
                .anti_affinity_required(ex("bar", "zone"))
                .info(),
            vec![
                labelled("podA", &[("foo", ""), ("bar", "")])
                    .node("nodeA")
                    .obj(),
            ],
            ab("z1", "z2"),
            vec![ANTI, OK],
        ),
        (
            "Test existing pod's anti-affinity: only when labelSelector and topologyKey both match, it's counted as a single term match - case when all terms have valid topologyKey",
            labelled("p", &[("foo", ""), ("bar", "")]).info(),
            vec![
                pod("p1")
                    .node("nodeA")
                    .anti_affinity_required(ex("foo", "region"))
                    .anti_affinity_required(ex("bar", "zone"))
                    .obj(),
            ],
            ab("z1", "z2"),
            vec![EXISTING, EXISTING],
        ),
        (
            "Test incoming pod's anti-affinity: only when labelSelector and topologyKey both match, it's counted as a single term match - case when all terms have valid topologyKey",
            pod("p")
                .anti_affinity_required(ex("foo", "region"))
                .anti_affinity_required(ex("bar", "zone"))
                .info(),
            vec![
                labelled("p1", &[("foo", ""), ("bar", "")])
                    .node("nodeA")
                    .obj(),
            ],
            ab("z1", "z2"),
            vec![ANTI, ANTI],
        ),
        (
            "Test existing pod's anti-affinity: existingPod on nodeA and nodeB has at least one anti-affinity term matches incoming pod, so incoming pod can only be scheduled to nodeC",
            labelled("p", &[("foo", ""), ("bar", "")]).info(),
            vec![
                pod("p1")
                    .node("nodeA")
                    .anti_affinity_required(ex("foo", "zone"))
                    .anti_affinity_required(ex("labelA", "zone"))
                    .obj(),
                pod("p2")
                    .node("nodeB")
                    .anti_affinity_required(ex("bar", "zone"))
                    .anti_affinity_required(ex("labelB", "zone"))
                    .obj(),
            ],
            {
                let (a, b, c) = (rzh("z1", "nodeA"), rzh("z2", "nodeB"), rzh("z3", "nodeC"));
                nodes(&[("nodeA", &a), ("nodeB", &b), ("nodeC", &c)])
            },
            vec![EXISTING, EXISTING, OK],
        ),
        (
            "Test incoming pod's affinity: firstly check if all affinityTerms match, and then check if all topologyKeys match",
            pod("p")
                .affinity_required(ex("foo", "region"))
                .affinity_required(ex("bar", "zone"))
                .info(),
            vec![
                labelled("pod1", &[("foo", ""), ("bar", "")])
                    .node("nodeA")
                    .obj(),
            ],
            ab("z1", "z1"),
            vec![OK, OK],
        ),
        (
            "Test incoming pod's affinity: firstly check if all affinityTerms match, and then check if all topologyKeys match, and the match logic should be satisfied on the same pod",
            pod("p")
                .affinity_required(ex("foo", "region"))
                .affinity_required(ex("bar", "zone"))
                .info(),
            vec![
                labelled("pod1", &[("foo", "")]).node("nodeA").obj(),
                labelled("pod2", &[("bar", "")]).node("nodeB").obj(),
            ],
            ab("z1", "z2"),
            vec![AFF, AFF],
        ),
    ];
    for (name, p, pods, ns, w) in cases {
        let (code, got) = run_filter(&p, &ns, &pods);
        assert_eq!(code, Code::Success, "{name}");
        assert_eq!(got, want(&w), "{name}");
    }
    // "Test existing pod's anti-affinity: if an existing pod has a term with invalid
    // topologyKey, labelSelector of the term is firstly checked, and then
    // topologyKey of the term is also checked"
    let (code, _) = run_filter(
        &labelled("p", &[("foo", "")]).info(),
        &ab("z1", "z1"),
        &[pod("p1")
            .node("nodeA")
            .anti_affinity_required(ex("foo", "invalid-node-label"))
            .obj()],
    );
    assert_eq!(code, Code::Skip);
}

/// Upstream's `TestPreFilterDisabled`.
#[test]
fn filter_without_pre_filter_state() {
    let pl = plugin(Args::default());
    let infos = snapshot(&nodes(&[("n", &[])]), &[]);
    assert_eq!(
        pl.filter(&CycleState::default(), &pod("p").info(), &infos[0]),
        Status::error("error reading \"PreFilterInterPodAffinity\" from cycleState: not found")
    );
}

fn counts(st: &CycleState) -> (Pairs, Pairs) {
    let s = st.read::<PreFilterState>(PRE_FILTER_KEY).unwrap();
    let flat = |c: &Counts| {
        let mut v: Vec<_> =
            c.0.iter()
                .flat_map(|(k, m)| m.iter().map(move |(v, n)| (k.clone(), v.clone(), *n)))
                .collect();
        v.sort();
        v
    };
    (flat(&s.anti_affinity_counts), flat(&s.affinity_counts))
}

fn trip(pairs: &[(&str, &str, i64)]) -> Vec<(String, String, i64)> {
    pairs
        .iter()
        .map(|(k, v, n)| ((*k).to_owned(), (*v).to_owned(), *n))
        .collect()
}

/// Upstream's `TestPreFilterStateAddRemovePod`.
#[test]
fn pre_filter_state_add_remove_pod() {
    let foo_bar = || in_("foo", &["bar"], "region");
    let complex = || {
        vec![
            in_("foo", &["bar", "buzz"], "region"),
            not_in("service", &["bar", "security", "test"], "zone"),
        ]
    };
    let ns = nodes(&[
        ("nodeA", &[("region", "r1"), ("zone", "z11")]),
        ("nodeB", &[("region", "r1"), ("zone", "z12")]),
        ("nodeC", &[("region", "r2"), ("zone", "z21")]),
    ]);
    let pl = plugin(Args::default());
    let check = |pending: PodInfo,
                 existing: Vec<Arc<Pod>>,
                 added: PodInfo,
                 added_node: usize,
                 want_anti: Vec<(String, String, i64)>,
                 want_aff: Vec<(String, String, i64)>,
                 name: &str| {
        let infos = snapshot(&ns, &existing);
        let mut st = state(&infos);
        assert!(
            pl.pre_filter(&mut st, &pending, &infos).1.is_success(),
            "{name}"
        );
        let before = counts(&st);
        let mut after = st.clone();
        assert!(
            pl.add_pod(&mut after, &pending, &added, &infos[added_node])
                .is_success()
        );
        assert_eq!(counts(&after), (want_anti, want_aff), "{name}");
        assert!(
            pl.remove_pod(&mut after, &pending, &added, &infos[added_node])
                .is_success()
        );
        assert_eq!(counts(&after), before, "{name}: removing restores");
        assert_eq!(counts(&st), before, "{name}: the original is untouched");
    };
    check(
        labelled("pending", &[("foo", "bar")])
            .anti_affinity_required(foo_bar())
            .info(),
        vec![
            labelled("p1", &[("foo", "bar")]).node("nodeA").obj(),
            pod("p2")
                .node("nodeC")
                .anti_affinity_required(foo_bar())
                .obj(),
        ],
        labelled("addedPod", &[("foo", "bar")])
            .node("nodeB")
            .anti_affinity_required(foo_bar())
            .info(),
        1,
        trip(&[("region", "r1", 2)]),
        vec![],
        "preFilterState anti-affinity terms are updated correctly after adding and removing a pod",
    );
    let with_complex_anti = |p: PodB| {
        complex()
            .into_iter()
            .fold(p, |p, t| p.anti_affinity_required(t))
    };
    check(
        with_complex_anti(labelled("pending", &[("foo", "bar")])).info(),
        vec![
            labelled("p1", &[("foo", "bar")]).node("nodeA").obj(),
            pod("p2")
                .node("nodeC")
                .anti_affinity_required(foo_bar())
                .obj(),
        ],
        with_complex_anti(labelled("addedPod", &[("foo", "bar")]).node("nodeA")).info(),
        0,
        trip(&[("region", "r1", 2), ("zone", "z11", 2), ("zone", "z21", 1)]),
        vec![],
        "preFilterState anti-affinity terms are updated correctly after adding and removing a pod",
    );
    let with_complex_aff = |p: PodB| complex().into_iter().fold(p, |p, t| p.affinity_required(t));
    check(
        with_complex_aff(labelled("pending", &[("foo", "bar")])).info(),
        vec![
            labelled("p1", &[("foo", "bar")]).node("nodeA").obj(),
            pod("p2")
                .node("nodeC")
                .anti_affinity_required(foo_bar())
                .obj(),
        ],
        with_complex_aff(labelled("addedPod", &[("foo", "bar")]).node("nodeA")).info(),
        0,
        vec![],
        trip(&[("region", "r1", 2), ("zone", "z11", 2)]),
        "preFilterState matching pod affinity and anti-affinity are updated correctly after adding and removing a pod",
    );
}

fn scores(
    args: Args,
    p: &PodInfo,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
) -> Result<Vec<i64>, Status> {
    let pl = plugin(args);
    let infos = snapshot(nodes, pods);
    let mut st = state(&infos);
    let s = pl.pre_score(&mut st, p, &infos);
    if !s.is_success() {
        return Err(s);
    }
    let mut out: Vec<NodeScore> = infos
        .iter()
        .map(|n| NodeScore {
            name: n.name().to_owned(),
            score: pl.score(&st, p, n).0,
        })
        .collect();
    assert!(pl.normalize(&st, p, &mut out).is_success());
    Ok(out.into_iter().map(|s| s.score).collect())
}

/// Upstream's `TestPreferredAffinity` (hardPodAffinityWeight 1).
#[test]
fn preferred_affinity() {
    let s1: &[(&str, &str)] = &[("security", "S1")];
    let s2: &[(&str, &str)] = &[("security", "S2")];
    let china: &[(&str, &str)] = &[("region", "China")];
    let india: &[(&str, &str)] = &[("region", "India")];
    let az1: &[(&str, &str)] = &[("az", "az1")];
    let az2: &[(&str, &str)] = &[("az", "az2")];
    let china_az1: &[(&str, &str)] = &[("region", "China"), ("az", "az1")];
    let stay_s1 = |p: PodB| p.affinity_preferred(5, in_("security", &["S1"], "region"));
    let stay_s2 = |p: PodB| p.affinity_preferred(6, in_("security", &["S2"], "region"));
    let affinity3 = |p: PodB| {
        p.affinity_preferred(
            8,
            term(
                exprs(&[("security", "NotIn", &["S1"]), ("security", "In", &["S2"])]),
                "region",
            ),
        )
        .affinity_preferred(
            2,
            term(
                exprs(&[
                    ("security", "Exists", &[]),
                    ("wrongkey", "DoesNotExist", &[]),
                ]),
                "region",
            ),
        )
    };
    let hard = |p: PodB| {
        p.affinity_required(in_("security", &["S1", "value2"], "region"))
            .affinity_required(term(
                exprs(&[
                    ("security", "Exists", &[]),
                    ("wrongkey", "DoesNotExist", &[]),
                ]),
                "region",
            ))
    };
    let away_s1 = |p: PodB| p.anti_affinity_preferred(5, in_("security", &["S1"], "az"));
    let away_s2 = |p: PodB| p.anti_affinity_preferred(5, in_("security", &["S2"], "az"));
    let stay_s1_away_s2 = |p: PodB| {
        p.affinity_preferred(8, in_("security", &["S1"], "region"))
            .anti_affinity_preferred(5, in_("security", &["S2"], "az"))
    };
    let ns_term = || PodAffinityTerm {
        namespaces: Some(vec!["subteam2.team2".into()]),
        namespace_selector: Some(expr("team", "In", &["team1"])),
        ..in_("security", &["S1"], "region")
    };
    let on = |name: &str, labels: &[(&str, &str)], n: &str| labelled(name, labels).node(n);
    let n3 = || nodes(&[("node1", china), ("node2", india), ("node3", az1)]);
    type Case = (
        &'static str,
        PodInfo,
        Vec<Arc<Pod>>,
        Vec<Arc<Node>>,
        Vec<i64>,
    );
    let cases: Vec<Case> = vec![
        (
            "Affinity: pod that matches topology key & pods in nodes will get high score comparing to others which doesn't match either pods in nodes or in topology key",
            stay_s1(labelled("p", s1)).info(),
            vec![
                on("a", s1, "node1").obj(),
                on("b", s2, "node2").obj(),
                on("c", s1, "node3").obj(),
            ],
            n3(),
            vec![100, 0, 0],
        ),
        (
            "All the nodes that have the same topology key & label value with one of them has an existing pod that match the affinity rules, have the same score",
            stay_s1(pod("p")).info(),
            vec![on("a", s1, "node1").obj()],
            nodes(&[("node1", china), ("node2", china_az1), ("node3", india)]),
            vec![100, 100, 0],
        ),
        (
            "Affinity: nodes in one region has more matching pods comparing to other region, so the region which has more matches will get high score",
            stay_s2(labelled("p", s1)).info(),
            vec![
                on("a", s2, "node1").obj(),
                on("b", s2, "node1").obj(),
                on("c", s2, "node2").obj(),
                on("d", s2, "node3").obj(),
                on("e", s2, "node4").obj(),
                on("f", s2, "node5").obj(),
            ],
            nodes(&[
                ("node1", china),
                ("node2", india),
                ("node3", china),
                ("node4", china),
                ("node5", india),
            ]),
            vec![100, 0, 100, 100, 0],
        ),
        (
            "Affinity: different Label operators and values for pod affinity scheduling preference, including some match failures ",
            affinity3(labelled("p", s1)).info(),
            vec![
                on("a", s1, "node1").obj(),
                on("b", s2, "node2").obj(),
                on("c", s1, "node3").obj(),
            ],
            n3(),
            vec![20, 100, 0],
        ),
        (
            "Affinity symmetry: considered only the preferredDuringSchedulingIgnoredDuringExecution in pod affinity symmetry",
            labelled("p", s2).info(),
            vec![
                stay_s1(on("a", s1, "node1")).obj(),
                stay_s2(on("b", s2, "node2")).obj(),
            ],
            n3(),
            vec![0, 100, 0],
        ),
        (
            "Affinity symmetry with namespace selector",
            labelled("p", s1).ns("subteam1.team1").info(),
            vec![
                on("a", s1, "node1").affinity_preferred(5, ns_term()).obj(),
                stay_s2(on("b", s2, "node2")).obj(),
            ],
            n3(),
            vec![100, 0, 0],
        ),
        (
            "AntiAffinity symmetry with namespace selector",
            labelled("p", s1).ns("subteam1.team1").info(),
            vec![
                on("a", s1, "node1")
                    .anti_affinity_preferred(5, ns_term())
                    .obj(),
                stay_s2(on("b", s2, "node2")).obj(),
            ],
            n3(),
            vec![0, 100, 100],
        ),
        (
            "Affinity symmetry: considered RequiredDuringSchedulingIgnoredDuringExecution in pod affinity symmetry",
            labelled("p", s1).info(),
            vec![
                hard(on("a", s1, "node1")).obj(),
                hard(on("b", s2, "node2")).obj(),
            ],
            n3(),
            vec![100, 100, 0],
        ),
        (
            "Anti Affinity: pod that does not match existing pods in node will get high score ",
            away_s1(labelled("p", s1)).info(),
            vec![on("a", s1, "node1").obj(), on("b", s2, "node2").obj()],
            nodes(&[("node1", az1), ("node2", china)]),
            vec![0, 100],
        ),
        (
            "Anti Affinity: pod that does not match topology key & match the pods in nodes will get higher score comparing to others ",
            away_s1(labelled("p", s1)).info(),
            vec![on("a", s1, "node1").obj(), on("b", s1, "node2").obj()],
            nodes(&[("node1", az1), ("node2", china)]),
            vec![0, 100],
        ),
        (
            "Anti Affinity: one node has more matching pods comparing to other node, so the node which has more unmatches will get high score",
            away_s1(labelled("p", s1)).info(),
            vec![
                on("a", s1, "node1").obj(),
                on("b", s1, "node1").obj(),
                on("c", s2, "node2").obj(),
            ],
            nodes(&[("node1", az1), ("node2", india)]),
            vec![0, 100],
        ),
        (
            "Anti Affinity symmetry: the existing pods in node which has anti affinity match will get high score",
            labelled("p", s2).info(),
            vec![
                away_s2(on("a", s1, "node1")).obj(),
                away_s1(on("b", s2, "node2")).obj(),
            ],
            nodes(&[("node1", az1), ("node2", az2)]),
            vec![0, 100],
        ),
        (
            "Affinity and Anti Affinity: considered only preferredDuringSchedulingIgnoredDuringExecution in both pod affinity & anti affinity",
            stay_s1_away_s2(labelled("p", s1)).info(),
            vec![on("a", s1, "node1").obj(), on("b", s1, "node2").obj()],
            nodes(&[("node1", china), ("node2", az1)]),
            vec![100, 0],
        ),
        (
            "Affinity and Anti Affinity: considering both affinity and anti-affinity, the pod to schedule and existing pods have the same labels",
            stay_s1_away_s2(labelled("p", s1)).info(),
            vec![
                on("a", s1, "node1").obj(),
                on("b", s1, "node1").obj(),
                on("c", s1, "node2").obj(),
                on("d", s1, "node3").obj(),
                on("e", s1, "node3").obj(),
                on("f", s1, "node4").obj(),
                on("g", s1, "node5").obj(),
            ],
            nodes(&[
                ("node1", china_az1),
                ("node2", india),
                ("node3", china),
                ("node4", china),
                ("node5", india),
            ]),
            vec![100, 0, 100, 100, 0],
        ),
        (
            "Affinity and Anti Affinity and symmetry: considered only preferredDuringSchedulingIgnoredDuringExecution in both pod affinity & anti affinity & symmetry",
            stay_s1_away_s2(labelled("p", s1)).info(),
            vec![
                on("a", s1, "node1").obj(),
                on("b", s2, "node2").obj(),
                stay_s1_away_s2(pod("c").node("node3")).obj(),
                away_s1(pod("d").node("node4")).obj(),
            ],
            nodes(&[
                ("node1", china),
                ("node2", az1),
                ("node3", india),
                ("node4", az2),
            ]),
            vec![100, 0, 100, 0],
        ),
        (
            "Avoid panic when partial nodes in a topology don't have pods with affinity",
            labelled("p", s1).info(),
            vec![
                on("a", s1, "node1").obj(),
                stay_s1_away_s2(pod("b").node("node2")).obj(),
            ],
            nodes(&[("node1", china), ("node2", china)]),
            vec![0, 0],
        ),
    ];
    for (name, p, pods, ns, want) in cases {
        assert_eq!(scores(Args::default(), &p, &ns, &pods), Ok(want), "{name}");
    }

    // "all nodes are same priority as Affinity is nil"
    let got = scores(Args::default(), &labelled("p", s1).info(), &n3(), &[]);
    assert_eq!(got.unwrap_err().code, Code::Skip);
    // "invalid Affinity fails PreScore"
    let bad = pod("p")
        .affinity_preferred(8, in_("security", &["{{.bad-value.}}"], "region"))
        .info();
    let e = scores(Args::default(), &bad, &n3(), &[]).unwrap_err();
    assert_eq!(e.code, Code::Error);
    assert!(
        e.message().contains("Invalid value: \"{{.bad-value.}}\""),
        "{e:?}"
    );
    // ignorePreferredTermsOfExistingPods: the incoming pod has none, so skip.
    let args = Args {
        ignore_preferred_terms_of_existing_pods: true,
        ..Args::default()
    };
    let got = scores(
        args,
        &labelled("p", s2).info(),
        &n3(),
        &[stay_s2(on("b", s2, "node2")).obj()],
    );
    assert_eq!(got.unwrap_err().code, Code::Skip);
}

/// Upstream's `TestPreferredAffinityWithHardPodAffinitySymmetricWeight`.
#[test]
fn hard_pod_affinity_symmetric_weight() {
    let hard = |p: PodB| p.affinity_required(in_("service", &["S1"], "region"));
    let pods = vec![
        hard(pod("a").node("node1")).obj(),
        hard(pod("b").node("node2")).obj(),
    ];
    let ns = nodes(&[
        ("node1", &[("region", "China")]),
        ("node2", &[("region", "India")]),
        ("node3", &[("az", "az1")]),
    ]);
    let p = labelled("p", &[("service", "S1")]).info();
    // "Hard Pod Affinity symmetry: hard pod affinity symmetry weights 1 by default,
    // then nodes that match the hard pod affinity symmetry rules, get a high score"
    assert_eq!(
        scores(Args::default(), &p, &ns, &pods),
        Ok(vec![100, 100, 0])
    );
    // "Hard Pod Affinity symmetry: hard pod affinity symmetry is closed(weights 0),
    // then nodes that match the hard pod affinity symmetry rules, get same score
    // with those not match": nothing contributes, PreScore skips.
    let zero = Args {
        hard_pod_affinity_weight: 0,
        ..Args::default()
    };
    assert_eq!(scores(zero, &p, &ns, &pods).unwrap_err().code, Code::Skip);
}

#[test]
fn args_decode_default_and_validate_as_upstream() {
    let a: Args = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(a, Args::default());
    assert_eq!(a.hard_pod_affinity_weight, 1);
    assert!(serde_json::from_value::<Args>(serde_json::json!({"foo": 1})).is_err());
    let bad = Args {
        hard_pod_affinity_weight: 101,
        ..Args::default()
    };
    assert_eq!(
        bad.validate("profiles[0].pluginConfig[1].args")
            .unwrap_err(),
        "profiles[0].pluginConfig[1].args.hardPodAffinityWeight: Invalid value: 101: not in valid range [0, 100]"
    );
    assert_eq!(
        InterPodAffinity::new(bad, namespaces()).err().unwrap(),
        "hardPodAffinityWeight: Invalid value: 101: not in valid range [0, 100]"
    );
}

/// `matchLabelKeys` / `mismatchLabelKeys` (merged into the selector by upstream's
/// API server at pod creation; by the scheduler here).
#[test]
fn match_and_mismatch_label_keys() {
    let ns = nodes(&[("nodeA", &[("zone", "z1")]), ("nodeB", &[("zone", "z2")])]);
    let pods = vec![
        labelled("a1", &[("app", "a"), ("version", "v1")])
            .node("nodeA")
            .obj(),
        labelled("b1", &[("app", "a"), ("version", "v2")])
            .node("nodeB")
            .obj(),
    ];
    // Stay away from the pods of the same version only.
    let p = labelled("p", &[("app", "a"), ("version", "v2")])
        .anti_affinity_required(PodAffinityTerm {
            match_label_keys: Some(vec!["version".into()]),
            ..ex("app", "zone")
        })
        .info();
    assert_eq!(run_filter(&p, &ns, &pods).1, want(&[OK, ANTI]));
    // Join the pods of the app, but not of the pod's own version.
    let p = labelled("p", &[("app", "a"), ("version", "v2")])
        .affinity_required(PodAffinityTerm {
            mismatch_label_keys: Some(vec!["version".into()]),
            ..ex("app", "zone")
        })
        .info();
    assert_eq!(run_filter(&p, &ns, &pods).1, want(&[OK, AFF]));
}
