//! Builders for plugin tests, after upstream's `st.MakePod()` / `st.MakeNode()`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    NodeSpec, Pod, PodAffinity, PodAffinityTerm, PodAntiAffinity, PodSpec, Taint,
    TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, OwnerReference, Time,
};

use crate::cache::Cache;
use crate::framework::CycleState;
use crate::framework::types::{NodeInfo, PodInfo};

/// A pod under construction.
#[derive(Clone, Default)]
pub(crate) struct PodB(pub(crate) Pod);

/// A pod named `name` in namespace `default`.
pub(crate) fn pod(name: &str) -> PodB {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.spec = Some(PodSpec::default());
    PodB(p)
}

impl PodB {
    fn spec(&mut self) -> &mut PodSpec {
        self.0.spec.get_or_insert_with(Default::default)
    }
    fn affinity(&mut self) -> &mut Affinity {
        self.spec().affinity.get_or_insert_with(Default::default)
    }
    /// Adds a label.
    pub(crate) fn label(mut self, k: &str, v: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(k.into(), v.into());
        self
    }
    /// Sets the namespace.
    pub(crate) fn ns(mut self, ns: &str) -> Self {
        self.0.metadata.namespace = Some(ns.into());
        self
    }
    /// Binds it to a node.
    pub(crate) fn node(mut self, n: &str) -> Self {
        self.spec().node_name = Some(n.into());
        self
    }
    /// Marks it terminating.
    pub(crate) fn terminating(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(Default::default()));
        self
    }
    /// A controller owner reference.
    pub(crate) fn owner(mut self, api_version: &str, kind: &str, uid: &str) -> Self {
        self.0.metadata.owner_references = Some(vec![OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: uid.into(),
            uid: uid.into(),
            controller: Some(true),
            ..Default::default()
        }]);
        self
    }
    /// A `nodeSelector`.
    pub(crate) fn node_selector(mut self, pairs: &[(&str, &str)]) -> Self {
        self.spec().node_selector = Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        self
    }
    /// Required node affinity `key op values`.
    pub(crate) fn node_affinity(mut self, key: &str, op: &str, values: &[&str]) -> Self {
        self.affinity().node_affinity = Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: key.into(),
                        operator: op.into(),
                        values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
                    }]),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        });
        self
    }
    /// A topology spread constraint.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spread(
        mut self,
        max_skew: i32,
        key: &str,
        action: &str,
        selector: Option<LabelSelector>,
        min_domains: Option<i32>,
        affinity_policy: Option<&str>,
        taints_policy: Option<&str>,
        match_label_keys: Option<&[&str]>,
    ) -> Self {
        self.spec()
            .topology_spread_constraints
            .get_or_insert_with(Default::default)
            .push(TopologySpreadConstraint {
                max_skew,
                topology_key: key.into(),
                when_unsatisfiable: action.into(),
                label_selector: selector,
                min_domains,
                node_affinity_policy: affinity_policy.map(str::to_owned),
                node_taints_policy: taints_policy.map(str::to_owned),
                match_label_keys: match_label_keys
                    .map(|k| k.iter().map(|s| (*s).to_owned()).collect()),
            });
        self
    }
    /// A simple topology spread constraint.
    pub(crate) fn spread1(
        self,
        max_skew: i32,
        key: &str,
        action: &str,
        selector: Option<LabelSelector>,
    ) -> Self {
        self.spread(max_skew, key, action, selector, None, None, None, None)
    }
    fn pod_affinity(&mut self) -> &mut PodAffinity {
        self.affinity()
            .pod_affinity
            .get_or_insert_with(Default::default)
    }
    fn pod_anti_affinity(&mut self) -> &mut PodAntiAffinity {
        self.affinity()
            .pod_anti_affinity
            .get_or_insert_with(Default::default)
    }
    /// A required pod affinity term.
    pub(crate) fn affinity_required(mut self, term: PodAffinityTerm) -> Self {
        self.pod_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Default::default)
            .push(term);
        self
    }
    /// A required pod anti-affinity term.
    pub(crate) fn anti_affinity_required(mut self, term: PodAffinityTerm) -> Self {
        self.pod_anti_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Default::default)
            .push(term);
        self
    }
    /// A preferred pod affinity term.
    pub(crate) fn affinity_preferred(mut self, weight: i32, term: PodAffinityTerm) -> Self {
        self.pod_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Default::default)
            .push(WeightedPodAffinityTerm {
                weight,
                pod_affinity_term: term,
            });
        self
    }
    /// A preferred pod anti-affinity term.
    pub(crate) fn anti_affinity_preferred(mut self, weight: i32, term: PodAffinityTerm) -> Self {
        self.pod_anti_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Default::default)
            .push(WeightedPodAffinityTerm {
                weight,
                pod_affinity_term: term,
            });
        self
    }
    /// The pod.
    pub(crate) fn obj(self) -> Arc<Pod> {
        Arc::new(self.0)
    }
    /// Its info.
    pub(crate) fn info(self) -> PodInfo {
        PodInfo::new(self.obj())
    }
}

/// A node under construction.
#[derive(Clone, Default)]
pub(crate) struct NodeB(pub(crate) Node);

/// A node named `name`.
pub(crate) fn node(name: &str) -> NodeB {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    NodeB(n)
}

impl NodeB {
    /// Adds a label.
    pub(crate) fn label(mut self, k: &str, v: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(k.into(), v.into());
        self
    }
    /// Adds a NoSchedule taint `key`.
    pub(crate) fn taint(mut self, key: &str) -> Self {
        self.0
            .spec
            .get_or_insert_with(NodeSpec::default)
            .taints
            .get_or_insert_with(Default::default)
            .push(Taint {
                key: key.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        self
    }
    /// The node.
    pub(crate) fn obj(self) -> Arc<Node> {
        Arc::new(self.0)
    }
}

/// A selector requiring each key to exist.
pub(crate) fn exists(keys: &[&str]) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(
            keys.iter()
                .map(|k| LabelSelectorRequirement {
                    key: (*k).to_owned(),
                    operator: "Exists".into(),
                    values: None,
                })
                .collect(),
        ),
        ..Default::default()
    }
}

/// A selector with `key op values`.
pub(crate) fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }]),
        ..Default::default()
    }
}

/// A selector with `matchLabels`.
pub(crate) fn match_labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
}

/// The node infos of `nodes` with `pods` placed, built by the cache, in the
/// nodes' order.
pub(crate) fn snapshot(nodes: &[Arc<Node>], pods: &[Arc<Pod>]) -> Vec<Arc<NodeInfo>> {
    let mut cache = Cache::new();
    for n in nodes {
        cache.set_node(n.clone());
    }
    for p in pods {
        cache.add_pod(p.clone());
    }
    let (s, _) = cache.snapshot();
    nodes
        .iter()
        .filter_map(|n| {
            s.iter()
                .find(|i| Some(i.name()) == n.metadata.name.as_deref())
                .cloned()
        })
        .collect()
}

/// A cycle state over `all` nodes.
pub(crate) fn state(all: &[Arc<NodeInfo>]) -> CycleState {
    let mut s = CycleState::default();
    s.snapshot = Arc::new(all.to_vec());
    s
}
