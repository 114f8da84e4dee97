//! PodTopologySpread: a pod's `topologySpreadConstraints` spread matching pods
//! evenly across topology domains (zones, nodes, …).
//!
//! - Hard constraints (`DoNotSchedule`) filter: placing the pod in a domain must
//!   not make it exceed the least populated eligible domain by more than
//!   `maxSkew` (the least taken as 0 while fewer than `minDomains` domains
//!   exist). PreFilter counts the matching pods per domain once, over every node
//!   that has all the constraints' keys and passes `nodeAffinityPolicy` (Honor by
//!   default: the pod's required node affinity and nodeSelector) and
//!   `nodeTaintsPolicy` (Ignore by default); Filter is then a lookup per node.
//! - Soft constraints (`ScheduleAnyway`) score: fewer matching pods in a node's
//!   domains score higher, each constraint's counts weighted by the log of its
//!   number of domains.
//! - `matchLabelKeys` add the pod's own values of those labels to the selector.
//! - Pods without constraints get the profile's default constraints
//!   (`defaultingType: System`: zone maxSkew 5 and hostname maxSkew 3, both
//!   ScheduleAnyway; `List`: `defaultConstraints`), selecting the pods of the same
//!   workload. Upstream merges the selectors of the Services matching the pod and
//!   of its owning ReplicationController, ReplicaSet or StatefulSet (read from
//!   informers). Keelson's scheduler does not watch those kinds yet, so the default
//!   selector is the pod's controller: pods whose controller reference (of kind
//!   ReplicationController, ReplicaSet or StatefulSet) has the same UID, counted
//!   from an index the node infos keep. Services are not considered: a bare pod
//!   behind a Service gets no default spreading, and a controlled pod's spreading
//!   does not narrow to the Service's pods.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use component_base::selectors::{LabelSelector as Selector, Op, Requirement};
use k8s_openapi::api::core::v1::{Node, Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};

use crate::framework::types::{NodeInfo, PodInfo, controller_uid, parse_label_selector};
use crate::framework::{
    Changed, ClusterEvent, Code, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeScore, Plugin,
    PreFilterPlugin, PreFilterResult, PreScorePlugin, QueueingHint, ScorePlugin, Status,
};

/// The Filter rejection when a node would break a constraint's skew.
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
/// The Filter rejection when a node lacks a constraint's topology key.
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const PRE_FILTER_KEY: &str = "PreFilterPodTopologySpread";
const PRE_SCORE_KEY: &str = "PreScorePodTopologySpread";
const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";
const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";

/// A default constraint of `PodTopologySpreadArgs` (a `v1.TopologySpreadConstraint`
/// whose fields may be left out, so validation can name what is missing).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultConstraint {
    /// `maxSkew`.
    #[serde(default)]
    pub max_skew: i32,
    /// `topologyKey`.
    #[serde(default)]
    pub topology_key: String,
    /// `whenUnsatisfiable`: `DoNotSchedule` or `ScheduleAnyway`.
    #[serde(default)]
    pub when_unsatisfiable: String,
    /// Must be unset (the selector is deduced for each pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// `minDomains`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_domains: Option<i32>,
    /// `nodeAffinityPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity_policy: Option<String>,
    /// `nodeTaintsPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_taints_policy: Option<String>,
    /// `matchLabelKeys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_label_keys: Option<Vec<String>>,
}

impl DefaultConstraint {
    fn to_api(&self) -> TopologySpreadConstraint {
        TopologySpreadConstraint {
            max_skew: self.max_skew,
            topology_key: self.topology_key.clone(),
            when_unsatisfiable: self.when_unsatisfiable.clone(),
            label_selector: self.label_selector.clone(),
            min_domains: self.min_domains,
            node_affinity_policy: self.node_affinity_policy.clone(),
            node_taints_policy: self.node_taints_policy.clone(),
            match_label_keys: self.match_label_keys.clone(),
        }
    }
}

fn system() -> String {
    "System".into()
}

/// `PodTopologySpreadArgs`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Args {
    /// Constraints for pods that have none (with `defaultingType: List`).
    #[serde(default)]
    pub default_constraints: Vec<DefaultConstraint>,
    /// `System` (the built-in defaults; the default) or `List`.
    #[serde(default = "system")]
    pub defaulting_type: String,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            default_constraints: Vec::new(),
            defaulting_type: system(),
        }
    }
}

impl Args {
    /// Upstream's `ValidatePodTopologySpreadArgs`; `path` prefixes the fields
    /// (empty when the plugin validates its own args, as upstream's `New`).
    pub fn validate(&self, path: &str) -> Result<(), String> {
        let f = |field: &str| {
            if path.is_empty() {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            }
        };
        let mut errs = Vec::new();
        let t = &self.defaulting_type;
        if t != "System" && t != "List" {
            errs.push(format!(
                "{}: Unsupported value: {t:?}: supported values: \"System\", \"List\"",
                f("defaultingType")
            ));
        } else if t == "System" && !self.default_constraints.is_empty() {
            errs.push(format!(
                "{}: Invalid value: {t:?}: when .defaultConstraints are not empty",
                f("defaultingType")
            ));
        }
        for (i, c) in self.default_constraints.iter().enumerate() {
            let p = f(&format!("defaultConstraints[{i}]"));
            if c.max_skew <= 0 {
                errs.push(format!(
                    "{p}.maxSkew: Invalid value: {}: not in valid range (0, inf)",
                    c.max_skew
                ));
            }
            if c.topology_key.is_empty() {
                errs.push(format!("{p}.topologyKey: Required value: can not be empty"));
            } else {
                for m in component_base::validation::qualified_name_errors(&c.topology_key) {
                    errs.push(format!(
                        "{p}.topologyKey: Invalid value: {:?}: {m}",
                        c.topology_key
                    ));
                }
            }
            match c.when_unsatisfiable.as_str() {
                "" => errs.push(format!(
                    "{p}.whenUnsatisfiable: Required value: can not be empty"
                )),
                DO_NOT_SCHEDULE | SCHEDULE_ANYWAY => {}
                v => errs.push(format!(
                    "{p}.whenUnsatisfiable: Unsupported value: {v:?}: supported values: \"DoNotSchedule\", \"ScheduleAnyway\""
                )),
            }
            if c.label_selector.is_some() {
                errs.push(format!(
                    "{p}.labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod"
                ));
            }
            if self.default_constraints[..i].iter().any(|o| {
                o.topology_key == c.topology_key && o.when_unsatisfiable == c.when_unsatisfiable
            }) {
                errs.push(format!(
                    "{}: Duplicate value: \"{{{}, {}}}\"",
                    f(&format!("defaultConstraints[{i}]")),
                    c.topology_key,
                    c.when_unsatisfiable
                ));
            }
        }
        errs.dedup();
        match errs.len() {
            0 => Ok(()),
            1 => Err(errs.remove(0)),
            _ => Err(format!("[{}]", errs.join(", "))),
        }
    }
}

/// Which pods a constraint counts.
#[derive(Clone, Debug)]
enum PodSelector {
    /// A missing label selector: none.
    Nothing,
    /// A label selector (an empty one matches every pod, yet counts none, as
    /// upstream's `countPodsMatchSelector`).
    Labels(Selector),
    /// Default constraints: the pods of the controller with this UID.
    Controller(String),
}

fn empty() -> &'static BTreeMap<String, String> {
    static EMPTY: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(BTreeMap::new)
}

fn pod_labels(pod: &Pod) -> &BTreeMap<String, String> {
    pod.metadata.labels.as_ref().unwrap_or_else(|| empty())
}

fn node_labels(node: &NodeInfo) -> &BTreeMap<String, String> {
    node.node
        .as_ref()
        .map_or_else(|| empty(), |n| client_base::selectors::node_labels(n))
}

impl PodSelector {
    /// Whether `pod` is selected (its namespace aside).
    fn matches(&self, pod: &Pod) -> bool {
        match self {
            PodSelector::Nothing => false,
            PodSelector::Labels(s) => s.matches(pod_labels(pod)),
            PodSelector::Controller(uid) => controller_uid(pod) == Some(uid.as_str()),
        }
    }

    /// The non-terminating pods of namespace `ns` on `node` it selects.
    fn count(&self, node: &NodeInfo, ns: &str) -> i64 {
        match self {
            PodSelector::Nothing => 0,
            PodSelector::Labels(s) if s.is_empty() => 0,
            PodSelector::Labels(s) => node
                .pods
                .iter()
                .filter(|p| {
                    p.pod.metadata.deletion_timestamp.is_none()
                        && p.pod.metadata.namespace.as_deref().unwrap_or_default() == ns
                        && s.matches(pod_labels(&p.pod))
                })
                .count() as i64,
            PodSelector::Controller(uid) => node.controlled_by(uid) as i64,
        }
    }
}

/// A constraint with its selector parsed and defaults applied.
#[derive(Clone, Debug)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: PodSelector,
    min_domains: i64,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

/// The pod's required node affinity and nodeSelector (upstream's
/// `GetRequiredNodeAffinity(pod).Match(node)`).
fn required_node_affinity_matches(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    if let Some(sel) = spec.node_selector.as_ref()
        && !client_base::selectors::matches_set(sel, client_base::selectors::node_labels(node))
    {
        return false;
    }
    match spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }) {
        Some(req) => client_base::selectors::node_selector_matches(req, node),
        None => true,
    }
}

/// Whether `node` counts for `c` under its node inclusion policies.
fn included(c: &Constraint, pod: &Pod, node: &Node, affinity_ok: &mut Option<bool>) -> bool {
    if c.honor_node_affinity
        && !*affinity_ok.get_or_insert_with(|| required_node_affinity_matches(pod, node))
    {
        return false;
    }
    if c.honor_node_taints {
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default();
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        if client_base::selectors::untolerated_taint(taints, tolerations, |t| {
            t.effect == "NoSchedule" || t.effect == "NoExecute"
        })
        .is_some()
        {
            return false;
        }
    }
    true
}

fn has_all_keys(labels: &BTreeMap<String, String>, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|c| labels.contains_key(&c.topology_key))
}

/// `labels.SelectorFromSet(set)` with `sel`'s requirements added; a selector
/// selecting nothing stays so.
fn merge_label_set(set: Vec<(String, String)>, sel: Option<Selector>) -> Option<Selector> {
    let sel = sel?;
    let mut reqs: Vec<Requirement> = set
        .into_iter()
        .map(|(key, v)| Requirement {
            key,
            op: Op::In(vec![v]),
        })
        .collect();
    reqs.extend(sel.0);
    Some(Selector(reqs))
}

/// Upstream's `filterTopologySpreadConstraints`: the constraints with `action`,
/// parsed, `matchLabelKeys` merged into their selectors.
fn filter_constraints(
    constraints: &[TopologySpreadConstraint],
    labels: &BTreeMap<String, String>,
    action: &str,
) -> Result<Vec<Constraint>, String> {
    let mut out = Vec::new();
    for c in constraints
        .iter()
        .filter(|c| c.when_unsatisfiable == action)
    {
        let mut sel = parse_label_selector(c.label_selector.as_ref())?;
        let keys = c.match_label_keys.as_deref().unwrap_or_default();
        if !keys.is_empty() {
            let set: Vec<(String, String)> = keys
                .iter()
                .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
            if !set.is_empty() {
                sel = merge_label_set(set, sel);
            }
        }
        out.push(Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector: sel.map_or(PodSelector::Nothing, PodSelector::Labels),
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        });
    }
    Ok(out)
}

/// The default constraints' selector for `pod`: its ReplicationController,
/// ReplicaSet or StatefulSet controller (see the module docs for what upstream
/// adds from Services).
fn default_selector(pod: &Pod) -> Option<PodSelector> {
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))?;
    let workload = matches!(
        (owner.api_version.as_str(), owner.kind.as_str()),
        ("v1", "ReplicationController") | ("apps/v1", "ReplicaSet") | ("apps/v1", "StatefulSet")
    );
    (workload && !owner.uid.is_empty()).then(|| PodSelector::Controller(owner.uid.clone()))
}

/// PodTopologySpread.
pub struct PodTopologySpread {
    default_constraints: Vec<TopologySpreadConstraint>,
    system_defaulted: bool,
}

impl PodTopologySpread {
    /// With its args (validated here, as upstream's `New`).
    pub fn new(args: Args) -> Result<Self, String> {
        args.validate("")?;
        let system_defaulted = args.defaulting_type == "System";
        let default_constraints = if system_defaulted {
            [(HOSTNAME, 3), (ZONE, 5)]
                .into_iter()
                .map(|(key, skew)| TopologySpreadConstraint {
                    max_skew: skew,
                    topology_key: key.into(),
                    when_unsatisfiable: SCHEDULE_ANYWAY.into(),
                    ..Default::default()
                })
                .collect()
        } else {
            args.default_constraints
                .iter()
                .map(DefaultConstraint::to_api)
                .collect()
        };
        Ok(PodTopologySpread {
            default_constraints,
            system_defaulted,
        })
    }

    /// The pod's constraints with `action`, or the defaults when it has none.
    fn constraints(&self, pod: &Pod, action: &str) -> Result<Vec<Constraint>, String> {
        let own = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or_default();
        if !own.is_empty() {
            return filter_constraints(own, pod_labels(pod), action).map_err(|e| {
                let kind = if action == DO_NOT_SCHEDULE {
                    "hard"
                } else {
                    "soft"
                };
                format!("obtaining pod's {kind} topology spread constraints: {e}")
            });
        }
        let mut cs = filter_constraints(&self.default_constraints, pod_labels(pod), action)?;
        if cs.is_empty() {
            return Ok(cs);
        }
        let Some(sel) = default_selector(pod) else {
            return Ok(Vec::new());
        };
        for c in &mut cs {
            c.selector = sel.clone();
        }
        Ok(cs)
    }
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
    fn events(&self) -> &'static [ClusterEvent] {
        // Upstream: Pod Add|UpdatePodLabel|Delete, Node Add|Delete|UpdateNodeLabel|
        // UpdateNodeTaint.
        &[
            ClusterEvent::AssignedPodAdd,
            ClusterEvent::AssignedPodUpdate,
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeDelete,
            ClusterEvent::NodeLabelChange,
            ClusterEvent::NodeTaintChange,
        ]
    }
    fn queueing_hint(&self, _: ClusterEvent, pod: &PodInfo, changed: &Changed) -> QueueingHint {
        // Upstream's pod hint: only a pod in the same namespace that one of the
        // hard constraints selects (before or after) changes the counts. Node
        // changes are always retried.
        let Changed::Pod { old, new } = changed else {
            return QueueingHint::Queue;
        };
        let Ok(constraints) = self.constraints(&pod.pod, DO_NOT_SCHEDULE) else {
            return QueueingHint::Queue;
        };
        if constraints.is_empty() {
            return QueueingHint::Queue;
        }
        let ns = pod.pod.metadata.namespace.as_deref();
        let selected = |p: &Option<Arc<Pod>>| {
            p.as_ref().is_some_and(|p| {
                p.metadata.namespace.as_deref() == ns
                    && constraints.iter().any(|c| c.selector.matches(p))
            })
        };
        if let (Some(o), Some(n)) = (old, new)
            && o.metadata.labels == n.metadata.labels
        {
            return QueueingHint::Skip;
        }
        if selected(old) || selected(new) {
            QueueingHint::Queue
        } else {
            QueueingHint::Skip
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

/// The two least populated domains of a constraint: `[0]` always holds the
/// minimum; `[1]` is at least as large (not necessarily the second minimum), as
/// upstream's `criticalPaths` (enough for preemption, which changes one node at a
/// time on its own copy).
#[derive(Clone, Debug, PartialEq, Eq)]
struct CriticalPaths([(String, i64); 2]);

impl CriticalPaths {
    fn new() -> Self {
        CriticalPaths([
            (String::new(), i64::from(i32::MAX)),
            (String::new(), i64::from(i32::MAX)),
        ])
    }

    fn update(&mut self, value: &str, num: i64) {
        let p = &mut self.0;
        let i = if value == p[0].0 {
            Some(0)
        } else if value == p[1].0 {
            Some(1)
        } else {
            None
        };
        match i {
            Some(i) => {
                p[i].1 = num;
                if p[0].1 > p[1].1 {
                    p.swap(0, 1);
                }
            }
            None if num < p[0].1 => {
                p[1] = p[0].clone();
                p[0] = (value.to_owned(), num);
            }
            None if num < p[1].1 => p[1] = (value.to_owned(), num),
            None => {}
        }
    }
}

/// What PreFilter counted, for Filter (cloned by preemption's what-ifs).
#[derive(Clone, Debug)]
struct PreFilterState {
    constraints: Arc<Vec<Constraint>>,
    /// Whether the incoming pod matches each constraint's selector.
    self_match: Arc<Vec<bool>>,
    /// Per constraint: topology value → matching pods.
    tp_value_to_match_num: Vec<HashMap<String, i64>>,
    critical_paths: Vec<CriticalPaths>,
}

impl PreFilterState {
    fn min_match_num(&self, i: usize) -> i64 {
        if (self.tp_value_to_match_num[i].len() as i64) < self.constraints[i].min_domains {
            0
        } else {
            self.critical_paths[i].0[0].1
        }
    }

    fn update_with_pod(&mut self, updated: &Pod, preemptor: &Pod, node: &NodeInfo, delta: i64) {
        let Some(n) = node.node.as_ref() else {
            return;
        };
        if updated.metadata.namespace != preemptor.metadata.namespace {
            return;
        }
        let labels = client_base::selectors::node_labels(n);
        if !has_all_keys(labels, &self.constraints) {
            return;
        }
        let mut affinity_ok = None;
        for (i, c) in self.constraints.iter().enumerate() {
            if !c.selector.matches(updated) || !included(c, preemptor, n, &mut affinity_ok) {
                continue;
            }
            let v = &labels[&c.topology_key];
            let num = self.tp_value_to_match_num[i].entry(v.clone()).or_default();
            *num += delta;
            let num = *num;
            self.critical_paths[i].update(v, num);
        }
    }
}

fn not_found(key: &str) -> Status {
    Status::error(format!("reading {key:?} from cycleState: not found"))
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> (Option<PreFilterResult>, Status) {
        let constraints = match self.constraints(&pod.pod, DO_NOT_SCHEDULE) {
            Ok(c) => c,
            Err(e) => {
                return (
                    None,
                    Status::error(format!("get constraints from pod: {e}")),
                );
            }
        };
        if constraints.is_empty() {
            return (None, Status::skip());
        }
        let ns = pod.pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut counts: Vec<HashMap<String, i64>> = constraints
            .iter()
            .map(|c| {
                HashMap::with_capacity(if c.topology_key == HOSTNAME {
                    nodes.len()
                } else {
                    0
                })
            })
            .collect();
        for ni in nodes {
            let Some(n) = ni.node.as_ref() else {
                continue;
            };
            let labels = client_base::selectors::node_labels(n);
            if !has_all_keys(labels, &constraints) {
                continue;
            }
            let mut affinity_ok = None;
            for (i, c) in constraints.iter().enumerate() {
                if !included(c, &pod.pod, n, &mut affinity_ok) {
                    continue;
                }
                let count = c.selector.count(ni, ns);
                let v = &labels[&c.topology_key];
                match counts[i].get_mut(v) {
                    Some(n) => *n += count,
                    None => {
                        counts[i].insert(v.clone(), count);
                    }
                }
            }
        }
        let critical_paths = counts
            .iter()
            .map(|m| {
                let mut p = CriticalPaths::new();
                for (v, n) in m {
                    p.update(v, *n);
                }
                p
            })
            .collect();
        let self_match = constraints
            .iter()
            .map(|c| c.selector.matches(&pod.pod))
            .collect();
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                constraints: Arc::new(constraints),
                self_match: Arc::new(self_match),
                tp_value_to_match_num: counts,
                critical_paths,
            },
        );
        (None, Status::success())
    }

    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        victim: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) else {
            return not_found(PRE_FILTER_KEY);
        };
        s.update_with_pod(&victim.pod, &pod.pod, node, 1);
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        victim: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        let Some(s) = state.read_mut::<PreFilterState>(PRE_FILTER_KEY) else {
            return not_found(PRE_FILTER_KEY);
        };
        s.update_with_pod(&victim.pod, &pod.pod, node, -1);
        Status::success()
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return not_found(PRE_FILTER_KEY);
        };
        let labels = node_labels(node);
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(v) = labels.get(&c.topology_key) else {
                return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            let match_num = s.tp_value_to_match_num[i].get(v).copied().unwrap_or(0);
            let skew = match_num + i64::from(s.self_match[i]) - s.min_match_num(i);
            if skew > c.max_skew {
                return Status::new(Code::Unschedulable, [ERR_REASON_CONSTRAINTS_NOT_MATCH]);
            }
        }
        Status::success()
    }
}

/// What PreScore counted, for Score and NormalizeScore.
struct PreScoreState {
    constraints: Vec<Constraint>,
    /// Feasible nodes lacking some topology key (scored 0).
    ignored: HashSet<String>,
    /// Per constraint (not hostname): topology value → matching pods.
    tp_value_to_pod_counts: Vec<HashMap<String, i64>>,
    /// Per constraint: ln(domains + 2).
    weights: Vec<f64>,
    namespace: String,
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>]) -> Status {
        let all = state.snapshot.clone();
        if all.is_empty() {
            return Status::skip();
        }
        let constraints = match self.constraints(&pod.pod, SCHEDULE_ANYWAY) {
            Ok(c) => c,
            Err(e) => {
                return Status::error(format!("calculating preScoreState: {e}"));
            }
        };
        if constraints.is_empty() {
            return Status::skip();
        }
        let has_own = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        let require_all = has_own || !self.system_defaulted;
        let mut ignored = HashSet::new();
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for ni in nodes {
            let labels = node_labels(ni);
            if require_all && !has_all_keys(labels, &constraints) {
                ignored.insert(ni.name().to_owned());
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == HOSTNAME {
                    continue;
                }
                let v = labels.get(&c.topology_key).map_or("", String::as_str);
                if !counts[i].contains_key(v) {
                    counts[i].insert(v.to_owned(), 0);
                }
            }
        }
        let weights = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == HOSTNAME {
                    nodes.len() - ignored.len()
                } else {
                    counts[i].len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        let ns = pod.pod.metadata.namespace.as_deref().unwrap_or_default();
        // Default constraints (all with the same selector) count a controller's
        // pods from each node's index: a node without any adds nothing, so it is
        // passed over before its labels are read.
        let indexed = constraints
            .iter()
            .all(|c| matches!(c.selector, PodSelector::Controller(_)));
        for ni in all.iter() {
            let Some(n) = ni.node.as_ref() else {
                continue;
            };
            if indexed && constraints[0].selector.count(ni, ns) == 0 {
                continue;
            }
            let labels = client_base::selectors::node_labels(n);
            if require_all && !has_all_keys(labels, &constraints) {
                continue;
            }
            let mut affinity_ok = None;
            for (i, c) in constraints.iter().enumerate() {
                if counts[i].is_empty() || !included(c, &pod.pod, n, &mut affinity_ok) {
                    continue;
                }
                let v = labels.get(&c.topology_key).map_or("", String::as_str);
                if let Some(cnt) = counts[i].get_mut(v) {
                    *cnt += c.selector.count(ni, ns);
                }
            }
        }
        state.write(
            PRE_SCORE_KEY,
            Arc::new(PreScoreState {
                constraints,
                ignored,
                tp_value_to_pod_counts: counts,
                weights,
                namespace: ns.to_owned(),
            }),
        );
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let Some(s) = state.read::<Arc<PreScoreState>>(PRE_SCORE_KEY) else {
            return (
                0,
                Status::error(format!(
                    "error reading {PRE_SCORE_KEY:?} from cycleState: not found"
                )),
            );
        };
        if s.ignored.contains(node.name()) {
            return (0, Status::success());
        }
        let labels = node_labels(node);
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(v) = labels.get(&c.topology_key) else {
                continue;
            };
            let cnt = if c.topology_key == HOSTNAME {
                c.selector.count(node, &s.namespace)
            } else {
                s.tp_value_to_pod_counts[i].get(v).copied().unwrap_or(0)
            };
            score += cnt as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        (score.round() as i64, Status::success())
    }

    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        let Some(s) = state.read::<Arc<PreScoreState>>(PRE_SCORE_KEY) else {
            return Status::error(format!(
                "error reading {PRE_SCORE_KEY:?} from cycleState: not found"
            ));
        };
        let mut min = i64::MAX;
        let mut max = 0;
        for sc in scores.iter() {
            if s.ignored.contains(&sc.name) {
                continue;
            }
            min = min.min(sc.score);
            max = max.max(sc.score);
        }
        for sc in scores.iter_mut() {
            sc.score = if s.ignored.contains(&sc.name) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - sc.score) / max
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests;
