//! InterPodAffinity: a pod's `podAffinity` and `podAntiAffinity`, and the
//! required anti-affinity of the pods already placed.
//!
//! - Filter, in upstream's order: the pod's required affinity (every term's
//!   topology key on the node, and a pod matching all terms in the node's domain
//!   — except the first pod of a group with affinity to itself, which may go
//!   anywhere the keys exist when no pod in the cluster matches yet); its required
//!   anti-affinity (no matching pod in the node's domain of any term); and the
//!   existing pods' required anti-affinity against it. PreFilter counts the
//!   matching pods per topology pair once, from the nodes holding pods with
//!   required anti-affinity and (when the pod has required terms) every node, so
//!   Filter is a few lookups per node.
//! - Score: each topology pair collects the weights of the pod's preferred terms
//!   matched by existing pods (anti-affinity negative), of existing pods' required
//!   affinity matched by the pod (`hardPodAffinityWeight`), and of their preferred
//!   terms matched by it; a node scores the sum over its labels, normalized to the
//!   range of the scores.
//! - Terms select pods by label in `namespaces` (the pod's own when none are named
//!   and there is no `namespaceSelector`) and in namespaces matching
//!   `namespaceSelector`, read from the namespace informer. `matchLabelKeys` and
//!   `mismatchLabelKeys` add the pod's own label values to a term's selector when
//!   the terms are parsed (upstream's API server does it at pod creation; Keelson's
//!   does not).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use component_base::selectors::LabelSelector as Selector;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde::{Deserialize, Serialize};

use crate::framework::types::{AffinityTerm, NodeInfo, PodAffinityTerms, PodInfo};
use crate::framework::{
    Changed, ClusterEvent, Code, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin,
    PreFilterPlugin, PreFilterResult, PreScorePlugin, QueueingHint, ScorePlugin, Status,
};

/// The pod's required affinity is not met on the node.
pub const ERR_REASON_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
/// The pod's required anti-affinity is not met on the node.
pub const ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't match pod anti-affinity rules";
/// An existing pod's required anti-affinity rejects the pod on the node.
pub const ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

const PRE_FILTER_KEY: &str = "PreFilterInterPodAffinity";
const PRE_SCORE_KEY: &str = "PreScoreInterPodAffinity";

fn one() -> i32 {
    1
}

/// `InterPodAffinityArgs`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Args {
    /// The score an existing pod's required affinity term gives the nodes of its
    /// domain when the incoming pod matches it (0 to 100; default 1).
    #[serde(default = "one")]
    pub hard_pod_affinity_weight: i32,
    /// Score only by the incoming pod's preferred terms (skip when it has none).
    #[serde(default)]
    pub ignore_preferred_terms_of_existing_pods: bool,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            hard_pod_affinity_weight: one(),
            ignore_preferred_terms_of_existing_pods: false,
        }
    }
}

impl Args {
    /// Upstream's `ValidateInterPodAffinityArgs`; `path` prefixes the field
    /// (empty when the plugin validates its own args, as upstream's `New`).
    pub fn validate(&self, path: &str) -> Result<(), String> {
        let w = self.hard_pod_affinity_weight;
        if (0..=100).contains(&w) {
            return Ok(());
        }
        let field = if path.is_empty() {
            "hardPodAffinityWeight".to_owned()
        } else {
            format!("{path}.hardPodAffinityWeight")
        };
        Err(format!(
            "{field}: Invalid value: {w}: not in valid range [0, 100]"
        ))
    }
}

/// Namespaces by name and by label, for `namespaceSelector` (upstream's
/// namespace lister).
pub trait Namespaces: Send + Sync {
    /// The labels of namespace `name` (`None` when it is unknown).
    fn labels(&self, name: &str) -> Option<BTreeMap<String, String>>;
    /// The names of the namespaces whose labels match `sel`.
    fn matching(&self, sel: &Selector) -> Vec<String>;
}

impl Namespaces for client_base::informer::Informer<Namespace> {
    fn labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.get(name)
            .map(|ns| ns.metadata.labels.clone().unwrap_or_default())
    }
    fn matching(&self, sel: &Selector) -> Vec<String> {
        self.list()
            .iter()
            .filter(|ns| sel.matches(ns.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
            .filter_map(|ns| ns.metadata.name.clone())
            .collect()
    }
}

/// Namespaces given up front (tests, or no informer).
#[derive(Clone, Debug, Default)]
pub struct StaticNamespaces(pub BTreeMap<String, BTreeMap<String, String>>);

impl Namespaces for StaticNamespaces {
    fn labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.0.get(name).cloned()
    }
    fn matching(&self, sel: &Selector) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, l)| sel.matches(l))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// InterPodAffinity.
pub struct InterPodAffinity {
    args: Args,
    namespaces: Arc<dyn Namespaces>,
}

impl InterPodAffinity {
    /// With its args (validated here, as upstream's `New`) and the namespaces.
    pub fn new(args: Args, namespaces: Arc<dyn Namespaces>) -> Result<Self, String> {
        args.validate("")?;
        Ok(InterPodAffinity { args, namespaces })
    }

    /// Upstream's `mergeAffinityTermNamespacesIfNotEmpty`: an incoming pod's
    /// term's namespace selector unrolled into its namespaces (an empty selector,
    /// matching every namespace, is kept).
    fn merge_namespaces(&self, term: &mut AffinityTerm) {
        let Some(sel) = term.namespace_selector.take() else {
            return;
        };
        if sel.is_empty() {
            term.namespace_selector = Some(sel);
            return;
        }
        term.namespaces.extend(self.namespaces.matching(&sel));
    }

    fn namespace_labels(&self, pod: &Pod) -> BTreeMap<String, String> {
        self.namespaces
            .labels(pod.metadata.namespace.as_deref().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
    fn events(&self) -> &'static [ClusterEvent] {
        // Upstream: Pod Add|UpdatePodLabel|Delete, Node Add|UpdateNodeLabel|UpdateNodeTaint.
        &[
            ClusterEvent::AssignedPodAdd,
            ClusterEvent::AssignedPodUpdate,
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeLabelChange,
            ClusterEvent::NodeTaintChange,
        ]
    }
    fn queueing_hint(&self, _: ClusterEvent, pod: &PodInfo, changed: &Changed) -> QueueingHint {
        let terms = pod.affinity.as_deref();
        let affinity = terms
            .map(|t| t.required_affinity.as_slice())
            .unwrap_or_default();
        let anti = terms
            .map(|t| t.required_anti_affinity.as_slice())
            .unwrap_or_default();
        let queue = |b: bool| {
            if b {
                QueueingHint::Queue
            } else {
                QueueingHint::Skip
            }
        };
        match changed {
            Changed::Pod { old, new } => {
                let all = |p: &Pod| {
                    let ns = self.namespace_labels(p);
                    !affinity.is_empty() && affinity.iter().all(|t| t.matches(p, Some(&ns)))
                };
                let any_anti = |p: &Pod| {
                    let ns = self.namespace_labels(p);
                    anti.iter().any(|t| t.matches(p, Some(&ns)))
                };
                match (old, new) {
                    // Upstream's hints: an added pod that satisfies the affinity, a
                    // relabelled pod that starts to satisfy it or stops conflicting.
                    (None, Some(n)) => queue(all(n)),
                    (Some(o), Some(n)) => {
                        queue((!all(o) && all(n)) || (any_anti(o) && !any_anti(n)))
                    }
                    // A deleted pod the anti-affinity matched; and (beyond upstream's
                    // hint) a deleted pod with anti-affinity of its own, which may
                    // have been what kept this pod out.
                    (Some(o), None) => {
                        let own_anti = PodAffinityTerms::of(o)
                            .is_some_and(|t| !t.required_anti_affinity.is_empty());
                        queue(any_anti(o) || own_anti)
                    }
                    (None, None) => QueueingHint::Queue,
                }
            }
            Changed::Node {
                old: Some(old),
                new,
            } => {
                // A node update matters where a term's topology key appears or
                // changes value (upstream's hint); pods kept out by other pods'
                // anti-affinity (no terms of their own) are retried on any relabel.
                if affinity.is_empty() && anti.is_empty() {
                    return QueueingHint::Queue;
                }
                let (ol, nl) = (
                    client_base::selectors::node_labels(old),
                    client_base::selectors::node_labels(new),
                );
                let moved = |t: &AffinityTerm, appear: bool| match (
                    ol.get(&t.topology_key),
                    nl.get(&t.topology_key),
                ) {
                    (None, Some(_)) => appear,
                    (Some(_), None) => !appear,
                    (Some(a), Some(b)) => a != b,
                    (None, None) => false,
                };
                queue(
                    affinity.iter().any(|t| moved(t, true)) || anti.iter().any(|t| moved(t, false)),
                )
            }
            // A new node, or an unknown change.
            _ => QueueingHint::Queue,
        }
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

/// Matching pods per topology pair: key → value → count (no zero entries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Counts(HashMap<String, HashMap<String, i64>>);

impl Counts {
    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|m| m.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `delta` to the node's pair for `key` (if it has the label), dropping
    /// pairs that reach zero.
    fn update(&mut self, labels: &BTreeMap<String, String>, key: &str, delta: i64) {
        let Some(value) = labels.get(key) else {
            return;
        };
        let values = self.0.entry(key.to_owned()).or_default();
        let n = values.entry(value.clone()).or_default();
        *n += delta;
        if *n == 0 {
            values.remove(value);
            if values.is_empty() {
                self.0.remove(key);
            }
        }
    }

    /// Each term's pair, when `pod` matches all the (affinity) terms.
    fn update_with_affinity_terms(
        &mut self,
        terms: &[AffinityTerm],
        pod: &Pod,
        labels: &BTreeMap<String, String>,
        delta: i64,
    ) {
        if matches_all(terms, pod) {
            for t in terms {
                self.update(labels, &t.topology_key, delta);
            }
        }
    }

    /// The pair of each (anti-affinity) term `pod` matches.
    fn update_with_anti_affinity_terms(
        &mut self,
        terms: &[AffinityTerm],
        pod: &Pod,
        ns_labels: Option<&BTreeMap<String, String>>,
        labels: &BTreeMap<String, String>,
        delta: i64,
    ) {
        for t in terms {
            if t.matches(pod, ns_labels) {
                self.update(labels, &t.topology_key, delta);
            }
        }
    }
}

/// Whether `pod` matches every term (false for none). The incoming pod's terms
/// have their namespace selector unrolled, so no namespace labels are needed.
fn matches_all(terms: &[AffinityTerm], pod: &Pod) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, None))
}

fn empty() -> &'static BTreeMap<String, String> {
    static EMPTY: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(BTreeMap::new)
}

fn node_labels(node: &NodeInfo) -> &BTreeMap<String, String> {
    node.node
        .as_ref()
        .map_or_else(|| empty(), |n| client_base::selectors::node_labels(n))
}

/// What PreFilter computed, for Filter (cloned by preemption's what-ifs).
#[derive(Clone, Debug)]
struct PreFilterState {
    /// Pairs where existing pods' required anti-affinity matches the pod.
    existing_anti_affinity_counts: Counts,
    /// Pairs of existing pods matching all the pod's required affinity terms.
    affinity_counts: Counts,
    /// Pairs of existing pods matching the pod's required anti-affinity terms.
    anti_affinity_counts: Counts,
    /// The pod's required terms, namespace selectors unrolled.
    required_affinity: Arc<Vec<AffinityTerm>>,
    required_anti_affinity: Arc<Vec<AffinityTerm>>,
    pod: Arc<Pod>,
    namespace_labels: Arc<BTreeMap<String, String>>,
}

impl PreFilterState {
    fn update_with_pod(&mut self, other: &PodInfo, node: &NodeInfo, delta: i64) {
        let labels = node_labels(node);
        if let Some(a) = other.affinity.as_ref() {
            self.existing_anti_affinity_counts
                .update_with_anti_affinity_terms(
                    &a.required_anti_affinity,
                    &self.pod,
                    Some(&self.namespace_labels),
                    labels,
                    delta,
                );
        }
        self.affinity_counts.update_with_affinity_terms(
            &self.required_affinity,
            &other.pod,
            labels,
            delta,
        );
        self.anti_affinity_counts.update_with_anti_affinity_terms(
            &self.required_anti_affinity,
            &other.pod,
            None,
            labels,
            delta,
        );
    }

    fn satisfies_affinity(&self, labels: &BTreeMap<String, String>) -> bool {
        let mut pods_exist = true;
        for t in self.required_affinity.iter() {
            let Some(v) = labels.get(&t.topology_key) else {
                // Every topology key must be on the node.
                return false;
            };
            if self.affinity_counts.get(&t.topology_key, v) <= 0 {
                pods_exist = false;
            }
        }
        // The first pod of a group with affinity to itself: no pod in the cluster
        // matches yet, and it matches its own terms.
        pods_exist
            || (self.affinity_counts.is_empty() && matches_all(&self.required_affinity, &self.pod))
    }

    fn satisfies_anti_affinity(&self, labels: &BTreeMap<String, String>) -> bool {
        self.anti_affinity_counts.is_empty()
            || !self.required_anti_affinity.iter().any(|t| {
                labels
                    .get(&t.topology_key)
                    .is_some_and(|v| self.anti_affinity_counts.get(&t.topology_key, v) > 0)
            })
    }

    fn satisfies_existing_anti_affinity(&self, labels: &BTreeMap<String, String>) -> bool {
        !self
            .existing_anti_affinity_counts
            .0
            .iter()
            .any(|(key, values)| {
                labels
                    .get(key)
                    .and_then(|v| values.get(v))
                    .is_some_and(|n| *n > 0)
            })
    }
}

fn not_found(key: &str) -> Status {
    Status::error(format!("error reading {key:?} from cycleState: not found"))
}

fn pod_terms(pod: &PodInfo) -> Arc<PodAffinityTerms> {
    pod.affinity.clone().unwrap_or_default()
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        let terms = pod_terms(pod);
        if let Some(e) = terms.parse_error.as_ref() {
            return (None, Status::unresolvable(format!("parsing pod: {e}")));
        }
        let mut required_affinity = terms.required_affinity.clone();
        for t in &mut required_affinity {
            self.merge_namespaces(t);
        }
        let mut required_anti_affinity = terms.required_anti_affinity.clone();
        for t in &mut required_anti_affinity {
            self.merge_namespaces(t);
        }
        let ns_labels = self.namespace_labels(&pod.pod);

        // Existing pods' required anti-affinity matching the pod: which terms of a
        // term set match is worked out once per set (replicas share theirs).
        let mut existing = Counts::default();
        let mut matched: HashMap<usize, Vec<&str>> = HashMap::new();
        for ni in nodes
            .iter()
            .filter(|n| n.pods_with_required_anti_affinity > 0)
        {
            let labels = node_labels(ni);
            for p in &ni.pods {
                let Some(a) = p.affinity.as_ref() else {
                    continue;
                };
                if a.required_anti_affinity.is_empty() {
                    continue;
                }
                let keys = matched.entry(Arc::as_ptr(a) as usize).or_insert_with(|| {
                    a.required_anti_affinity
                        .iter()
                        .filter(|t| t.matches(&pod.pod, Some(&ns_labels)))
                        .map(|t| t.topology_key.as_str())
                        .collect()
                });
                for k in keys.iter() {
                    existing.update(labels, k, 1);
                }
            }
        }
        // Existing pods matching the pod's required terms.
        let mut affinity = Counts::default();
        let mut anti_affinity = Counts::default();
        if !required_affinity.is_empty() || !required_anti_affinity.is_empty() {
            for ni in nodes {
                let labels = node_labels(ni);
                for p in &ni.pods {
                    affinity.update_with_affinity_terms(&required_affinity, &p.pod, labels, 1);
                    anti_affinity.update_with_anti_affinity_terms(
                        &required_anti_affinity,
                        &p.pod,
                        None,
                        labels,
                        1,
                    );
                }
            }
        }
        if existing.is_empty() && required_affinity.is_empty() && required_anti_affinity.is_empty()
        {
            return (None, Status::skip());
        }
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                existing_anti_affinity_counts: existing,
                affinity_counts: affinity,
                anti_affinity_counts: anti_affinity,
                required_affinity: Arc::new(required_affinity),
                required_anti_affinity: Arc::new(required_anti_affinity),
                pod: pod.pod.clone(),
                namespace_labels: Arc::new(ns_labels),
            },
        );
        (None, Status::success())
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        _pod: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) else {
            return not_found(PRE_FILTER_KEY);
        };
        s.update_with_pod(other, node, 1);
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        _pod: &PodInfo,
        other: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) else {
            return not_found(PRE_FILTER_KEY);
        };
        s.update_with_pod(other, node, -1);
        Status::success()
    }
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return not_found(PRE_FILTER_KEY);
        };
        let labels = node_labels(node);
        if !s.satisfies_affinity(labels) {
            return Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
        }
        if !s.satisfies_anti_affinity(labels) {
            return Status::new(
                Code::Unschedulable,
                [ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH],
            );
        }
        if !s.satisfies_existing_anti_affinity(labels) {
            return Status::new(
                Code::Unschedulable,
                [ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH],
            );
        }
        Status::success()
    }
}

/// Weights per topology pair: key → value → score.
type ScoreMap = HashMap<String, HashMap<String, i64>>;

/// What PreScore summed, for Score and NormalizeScore.
struct PreScoreState {
    topology_score: ScoreMap,
}

/// A node's contributions to the topology scores: (topology key, summed weight),
/// applied to the node's pair of each key once all its pods are seen.
#[derive(Default)]
struct NodeScores<'a>(Vec<(&'a str, i64)>);

impl<'a> NodeScores<'a> {
    fn add(&mut self, key: &'a str, weight: i64) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, w)) => *w += weight,
            None => self.0.push((key, weight)),
        }
    }

    /// Adds the sums to the node's pairs (creating them, as upstream's
    /// `processTerm`, even when a sum is zero); whether any pair was touched.
    fn apply(&self, scores: &mut ScoreMap, labels: &BTreeMap<String, String>) -> bool {
        for (key, weight) in &self.0 {
            let value = &labels[*key];
            let values = match scores.get_mut(*key) {
                Some(m) => m,
                None => scores.entry((*key).to_owned()).or_default(),
            };
            match values.get_mut(value) {
                Some(n) => *n += weight,
                None => {
                    values.insert(value.clone(), *weight);
                }
            }
        }
        !self.0.is_empty()
    }
}

impl InterPodAffinity {
    /// What an existing pod's own terms give the incoming pod (whose namespace
    /// has `ns_labels`) wherever the existing pod runs: its required affinity
    /// (`hardPodAffinityWeight`), preferred affinity (+weight) and preferred
    /// anti-affinity (−weight) terms the incoming pod matches, by topology key.
    fn existing_terms_score<'a>(
        &self,
        terms: &'a PodAffinityTerms,
        incoming: &Pod,
        ns_labels: &BTreeMap<String, String>,
    ) -> Vec<(&'a str, i64)> {
        let mut out = Vec::new();
        let hard = i64::from(self.args.hard_pod_affinity_weight);
        if hard > 0 {
            for t in &terms.required_affinity {
                if t.matches(incoming, Some(ns_labels)) {
                    out.push((t.topology_key.as_str(), hard));
                }
            }
        }
        for (list, sign) in [
            (&terms.preferred_affinity, 1),
            (&terms.preferred_anti_affinity, -1),
        ] {
            for t in list {
                if t.term.matches(incoming, Some(ns_labels)) {
                    out.push((t.term.topology_key.as_str(), sign * i64::from(t.weight)));
                }
            }
        }
        out
    }
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _nodes: &[Arc<NodeInfo>]) -> Status {
        let affinity = pod.pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let has_preferred = affinity
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|t| !t.is_empty());
        let has_preferred_anti = affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|t| !t.is_empty());
        let has_constraints = has_preferred || has_preferred_anti;
        if self.args.ignore_preferred_terms_of_existing_pods && !has_constraints {
            return Status::skip();
        }
        let terms = pod_terms(pod);
        if let Some(e) = terms.parse_error.as_ref() {
            return Status::error(format!("failed to parse pod: {e}"));
        }
        let mut preferred = terms.preferred_affinity.clone();
        for t in &mut preferred {
            self.merge_namespaces(&mut t.term);
        }
        let mut preferred_anti = terms.preferred_anti_affinity.clone();
        for t in &mut preferred_anti {
            self.merge_namespaces(&mut t.term);
        }
        let ns_labels = self.namespace_labels(&pod.pod);
        let all = state.snapshot.clone();
        let mut scores = ScoreMap::new();
        let mut touched = false;
        // Existing pods' term sets (shared by replicas) scored once each.
        let mut by_terms: HashMap<usize, Vec<(&str, i64)>> = HashMap::new();
        for ni in all.iter() {
            // Without preferred terms of its own, only pods with affinity count.
            if !has_constraints && ni.pods_with_affinity == 0 {
                continue;
            }
            let labels = node_labels(ni);
            if labels.is_empty() {
                continue;
            }
            let mut node = NodeScores::default();
            // The node's pods with affinity, counted per term set.
            let mut sets: Vec<(&Arc<PodAffinityTerms>, i64)> = Vec::new();
            for p in &ni.pods {
                if has_constraints {
                    // The incoming pod's preferred terms matched by the existing
                    // pod (namespace selectors unrolled: no namespace labels).
                    for (list, sign) in [(&preferred, 1), (&preferred_anti, -1)] {
                        for t in list.iter() {
                            if labels.contains_key(&t.term.topology_key)
                                && t.term.matches(&p.pod, None)
                            {
                                node.add(&t.term.topology_key, sign * i64::from(t.weight));
                            }
                        }
                    }
                }
                let Some(a) = p.affinity.as_ref() else {
                    continue;
                };
                match sets.iter_mut().rev().find(|(s, _)| Arc::ptr_eq(s, a)) {
                    Some((_, n)) => *n += 1,
                    None => sets.push((a, 1)),
                }
            }
            for (a, n) in sets {
                let contributions = by_terms
                    .entry(Arc::as_ptr(a) as usize)
                    .or_insert_with(|| self.existing_terms_score(a, &pod.pod, &ns_labels));
                for &(key, weight) in contributions.iter() {
                    if labels.contains_key(key) {
                        node.add(key, weight * n);
                    }
                }
            }
            touched |= node.apply(&mut scores, labels);
        }
        if !touched {
            return Status::skip();
        }
        state.write(
            PRE_SCORE_KEY,
            Arc::new(PreScoreState {
                topology_score: scores,
            }),
        );
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(s) = state.read::<Arc<PreScoreState>>(PRE_SCORE_KEY) else {
            return (
                0,
                Status::error(format!(
                    "failed to read {PRE_SCORE_KEY:?} from cycleState: not found"
                )),
            );
        };
        let labels = node_labels(node);
        let score = s
            .topology_score
            .iter()
            .filter_map(|(k, values)| labels.get(k).and_then(|v| values.get(v)))
            .sum();
        (score, Status::success())
    }

    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        let Some(s) = state.read::<Arc<PreScoreState>>(PRE_SCORE_KEY) else {
            return Status::error(format!(
                "failed to read {PRE_SCORE_KEY:?} from cycleState: not found"
            ));
        };
        if s.topology_score.is_empty() {
            return Status::success();
        }
        let min = scores.iter().map(|s| s.score).min().unwrap_or(0);
        let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
        let diff = max - min;
        for sc in scores.iter_mut() {
            sc.score = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((sc.score - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests;
