//! NodeResourcesFit and NodeResourcesBalancedAllocation: whether the node has room
//! for the pod's requests, and how allocated (or how evenly allocated) it would be.

use serde::Deserialize;

use crate::framework::types::{NodeInfo, PodInfo, Resource, is_scalar, pod_requests};
use crate::framework::{
    Changed, ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, Plugin, PreScorePlugin,
    QueueingHint, ScorePlugin, Status,
};

/// A resource and its weight in a score.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceSpec {
    /// The resource (`cpu`, `memory`, an extended resource).
    pub name: String,
    /// Its weight (1 when zero).
    #[serde(default)]
    pub weight: i64,
}

fn cpu_memory() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec {
            name: "cpu".into(),
            weight: 1,
        },
        ResourceSpec {
            name: "memory".into(),
            weight: 1,
        },
    ]
}

/// A point of RequestedToCapacityRatio's shape: utilization 0–100 → score 0–10.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UtilizationShapePoint {
    /// Utilization in percent.
    pub utilization: i32,
    /// Score, 0 to 10.
    pub score: i32,
}

/// RequestedToCapacityRatio's parameters.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestedToCapacityRatioParam {
    /// The broken line from utilization to score.
    #[serde(default)]
    pub shape: Vec<UtilizationShapePoint>,
}

/// `ScoringStrategy`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScoringStrategy {
    /// `LeastAllocated` (default), `MostAllocated` or `RequestedToCapacityRatio`.
    #[serde(rename = "type", default = "least_allocated")]
    pub type_: String,
    /// The resources scored, with weights (default cpu and memory, weight 1).
    #[serde(default = "cpu_memory")]
    pub resources: Vec<ResourceSpec>,
    /// For RequestedToCapacityRatio.
    #[serde(default)]
    pub requested_to_capacity_ratio: Option<RequestedToCapacityRatioParam>,
}

fn least_allocated() -> String {
    "LeastAllocated".into()
}

impl Default for ScoringStrategy {
    fn default() -> Self {
        ScoringStrategy {
            type_: least_allocated(),
            resources: cpu_memory(),
            requested_to_capacity_ratio: None,
        }
    }
}

/// `NodeResourcesFitArgs`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FitArgs {
    /// Extended resources the filter does not check.
    #[serde(default)]
    pub ignored_resources: Vec<String>,
    /// Extended resource groups (the part before `/`) not checked.
    #[serde(default)]
    pub ignored_resource_groups: Vec<String>,
    /// How nodes are scored.
    #[serde(default)]
    pub scoring_strategy: Option<ScoringStrategy>,
}

/// `NodeResourcesBalancedAllocationArgs`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BalancedArgs {
    /// The resources balanced (default cpu and memory).
    #[serde(default = "cpu_memory")]
    pub resources: Vec<ResourceSpec>,
}

impl Default for BalancedArgs {
    fn default() -> Self {
        BalancedArgs {
            resources: cpu_memory(),
        }
    }
}

/// One resource the pod needs more of than the node has free.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insufficient {
    /// The resource.
    pub resource: String,
    /// `Insufficient cpu`, `Too many pods`.
    pub reason: String,
    /// Whether even an empty node could not hold it (preemption cannot help).
    pub unresolvable: bool,
}

fn hint(queue: bool) -> QueueingHint {
    if queue {
        QueueingHint::Queue
    } else {
        QueueingHint::Skip
    }
}

/// Upstream's `isResourceScaleDown`: whether `old` → `new` released some of what
/// `want` asks for.
fn scaled_down(want: &Resource, old: &Resource, new: &Resource) -> bool {
    (want.milli_cpu > 0 && new.milli_cpu < old.milli_cpu)
        || (want.memory > 0 && new.memory < old.memory)
        || (want.ephemeral_storage > 0 && new.ephemeral_storage < old.ephemeral_storage)
        || want
            .scalar
            .iter()
            .any(|(k, v)| *v > 0 && new.get(k) < old.get(k))
}

/// Upstream's `haveAnyRequestedResourcesIncreased`.
fn allocatable_grew(want: &Resource, old: &Resource, new: &Resource) -> bool {
    if new.allowed_pod_number > old.allowed_pod_number {
        return true;
    }
    scaled_down(want, new, old)
}

/// What `pod` needs that `node` lacks, in upstream's order (pods, cpu, memory,
/// ephemeral storage, then scalar resources by name).
pub fn insufficient(
    pod: &Resource,
    node: &NodeInfo,
    ignored: &[String],
    ignored_groups: &[String],
) -> Vec<Insufficient> {
    let mut out = Vec::new();
    if node.pods.len() as i64 + 1 > node.allocatable.allowed_pod_number {
        out.push(Insufficient {
            resource: "pods".into(),
            reason: "Too many pods".into(),
            unresolvable: false,
        });
    }
    if pod.milli_cpu == 0
        && pod.memory == 0
        && pod.ephemeral_storage == 0
        && pod.scalar.values().all(|v| *v == 0)
    {
        return out;
    }
    let alloc = &node.allocatable;
    let used = &node.requested;
    for (name, want, have, taken) in [
        ("cpu", pod.milli_cpu, alloc.milli_cpu, used.milli_cpu),
        ("memory", pod.memory, alloc.memory, used.memory),
        (
            "ephemeral-storage",
            pod.ephemeral_storage,
            alloc.ephemeral_storage,
            used.ephemeral_storage,
        ),
    ] {
        if want > 0 && want > have - taken {
            out.push(Insufficient {
                resource: name.into(),
                reason: format!("Insufficient {name}"),
                unresolvable: want > have,
            });
        }
    }
    for (name, want) in &pod.scalar {
        if *want == 0 {
            continue;
        }
        let extended = !name.starts_with("hugepages-") && !name.starts_with("attachable-volumes-");
        if extended
            && (ignored.contains(name)
                || name
                    .split_once('/')
                    .is_some_and(|(g, _)| ignored_groups.iter().any(|i| i == g)))
        {
            continue;
        }
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        let taken = used.scalar.get(name).copied().unwrap_or(0);
        if *want > have - taken {
            out.push(Insufficient {
                resource: name.clone(),
                reason: format!("Insufficient {name}"),
                unresolvable: *want > have,
            });
        }
    }
    out
}

/// The requested and allocatable amounts of each scored resource on a node if
/// the pod were added, as upstream's `calculateResourceAllocatableRequest`:
/// `non_zero` counts unset CPU and memory requests at the scoring defaults; a
/// scalar resource the pod does not request is left out (0, 0).
fn requested_allocatable(
    resources: &[ResourceSpec],
    pod: &PodInfo,
    node: &NodeInfo,
    non_zero: bool,
) -> (Vec<i64>, Vec<i64>) {
    let (node_req, pod_req) = if non_zero {
        (&node.non_zero_requested, &pod.non_zero_requests)
    } else {
        (&node.requested, &pod.requests)
    };
    let mut requested = Vec::with_capacity(resources.len());
    let mut allocatable = Vec::with_capacity(resources.len());
    for r in resources {
        let p = pod_req.get(&r.name);
        if is_scalar(&r.name) && p == 0 {
            requested.push(0);
            allocatable.push(0);
            continue;
        }
        requested.push(node_req.get(&r.name) + p);
        allocatable.push(node.allocatable.get(&r.name));
    }
    (requested, allocatable)
}

fn weight(w: i64) -> i64 {
    if w == 0 { 1 } else { w }
}

/// The scoring strategies, as upstream's scorer functions.
#[derive(Clone, Debug)]
enum Scorer {
    Least,
    Most,
    Ratio(Vec<(i64, i64)>),
}

impl Scorer {
    fn score(&self, resources: &[ResourceSpec], requested: &[i64], allocatable: &[i64]) -> i64 {
        let mut total = 0;
        let mut weights = 0;
        for (i, r) in resources.iter().enumerate() {
            let (req, cap) = (requested[i], allocatable[i]);
            if cap == 0 {
                continue;
            }
            let s = match self {
                Scorer::Least if req > cap => 0,
                Scorer::Least => (cap - req) * MAX_NODE_SCORE / cap,
                Scorer::Most => req.min(cap) * MAX_NODE_SCORE / cap,
                Scorer::Ratio(shape) => {
                    let utilization = if req > cap { 100 } else { req * 100 / cap };
                    broken_line(shape, utilization)
                }
            };
            total += s * weight(r.weight);
            weights += weight(r.weight);
        }
        if weights == 0 {
            return 0;
        }
        match self {
            Scorer::Ratio(_) => (total as f64 / weights as f64).round() as i64,
            _ => total / weights,
        }
    }
}

/// Upstream's `helper.BuildBrokenLinearFunction` over (utilization, score) points
/// already scaled to MaxNodeScore.
fn broken_line(shape: &[(i64, i64)], p: i64) -> i64 {
    for (i, (x, y)) in shape.iter().enumerate() {
        if p <= *x {
            if i == 0 {
                return shape[0].1;
            }
            let (x0, y0) = shape[i - 1];
            return y0 + (y - y0) * (p - x0) / (x - x0);
        }
    }
    shape.last().map_or(0, |s| s.1)
}

/// NodeResourcesFit.
pub struct Fit {
    args: FitArgs,
    strategy: ScoringStrategy,
    scorer: Scorer,
}

impl Fit {
    /// With its args (already validated).
    pub fn new(args: FitArgs) -> Self {
        let strategy = args.scoring_strategy.clone().unwrap_or_default();
        let scorer = match strategy.type_.as_str() {
            "MostAllocated" => Scorer::Most,
            "RequestedToCapacityRatio" => Scorer::Ratio(
                strategy
                    .requested_to_capacity_ratio
                    .as_ref()
                    .map(|r| {
                        r.shape
                            .iter()
                            .map(|p| {
                                (
                                    i64::from(p.utilization),
                                    i64::from(p.score) * MAX_NODE_SCORE / 10,
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => Scorer::Least,
        };
        Fit {
            args,
            strategy,
            scorer,
        }
    }
}

impl Plugin for Fit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
    fn events(&self) -> &'static [ClusterEvent] {
        // Upstream: Pod Delete|UpdatePodScaleDown, Node Add|UpdateNodeAllocatable|
        // UpdateNodeTaint|UpdateNodeLabel, each with a hint.
        &[
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeAllocatableChange,
            ClusterEvent::NodeTaintChange,
            ClusterEvent::NodeLabelChange,
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::AssignedPodUpdate,
        ]
    }
    fn queueing_hint(&self, _: ClusterEvent, pod: &PodInfo, changed: &Changed) -> QueueingHint {
        let req = &pod.requests;
        match changed {
            // A deleted pod frees room only if it was bound (or nominated).
            Changed::Pod {
                old: Some(old),
                new: None,
            } => {
                let bound = old
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                let nominated = old
                    .status
                    .as_ref()
                    .and_then(|s| s.nominated_node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                hint(bound || nominated)
            }
            // A pod resized down frees what it released, if the pod wants it.
            Changed::Pod {
                old: Some(old),
                new: Some(new),
            } => {
                let (o, n) = (pod_requests(old, false), pod_requests(new, false));
                hint(scaled_down(req, &o, &n))
            }
            // A node: only if the pod would fit it empty, and (for an update) it
            // gained some of what the pod asks for.
            Changed::Node { old, new } => {
                let mut info = NodeInfo::default();
                info.set_node(new.clone());
                let ignored = (
                    &self.args.ignored_resources,
                    &self.args.ignored_resource_groups,
                );
                if !insufficient(req, &info, ignored.0, ignored.1).is_empty() {
                    return QueueingHint::Skip;
                }
                let Some(old) = old else {
                    return QueueingHint::Queue;
                };
                let mut before = NodeInfo::default();
                before.set_node(old.clone());
                hint(allocatable_grew(
                    req,
                    &before.allocatable,
                    &info.allocatable,
                ))
            }
            _ => QueueingHint::Queue,
        }
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl FilterPlugin for Fit {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let short = insufficient(
            &pod.requests,
            node,
            &self.args.ignored_resources,
            &self.args.ignored_resource_groups,
        );
        if short.is_empty() {
            return Status::success();
        }
        let code = if short.iter().any(|s| s.unresolvable) {
            crate::framework::Code::UnschedulableAndUnresolvable
        } else {
            crate::framework::Code::Unschedulable
        };
        Status::new(code, short.into_iter().map(|s| s.reason))
    }
}

impl ScorePlugin for Fit {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let (req, alloc) = requested_allocatable(&self.strategy.resources, pod, node, true);
        (
            self.scorer.score(&self.strategy.resources, &req, &alloc),
            Status::success(),
        )
    }
}

/// NodeResourcesBalancedAllocation.
pub struct BalancedAllocation {
    resources: Vec<ResourceSpec>,
}

impl BalancedAllocation {
    /// With its args.
    pub fn new(args: BalancedArgs) -> Self {
        BalancedAllocation {
            resources: args.resources,
        }
    }
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl PreScorePlugin for BalancedAllocation {
    fn pre_score(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[std::sync::Arc<NodeInfo>],
    ) -> Status {
        // A best-effort pod changes no balance: nothing to score.
        if self
            .resources
            .iter()
            .all(|r| pod.requests.get(&r.name) == 0)
        {
            return Status::skip();
        }
        Status::success()
    }
}

/// Upstream's `balancedResourceScorer`: 100 × (1 − the standard deviation of the
/// requested fractions).
pub fn balanced_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let fractions: Vec<f64> = requested
        .iter()
        .zip(allocatable)
        .filter(|(_, a)| **a != 0)
        .map(|(r, a)| (*r as f64 / *a as f64).min(1.0))
        .collect();
    let std = match fractions.len() {
        0 | 1 => 0.0,
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            (fractions
                .iter()
                .map(|f| (f - mean) * (f - mean))
                .sum::<f64>()
                / n as f64)
                .sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> (i64, Status) {
        let (req, alloc) = requested_allocatable(&self.resources, pod, node, false);
        (balanced_score(&req, &alloc), Status::success())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{
        Container, Node, NodeStatus, Pod, PodSpec, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    fn pod(cpu: &str, mem: &str) -> PodInfo {
        let mut reqs = BTreeMap::new();
        if !cpu.is_empty() {
            reqs.insert("cpu".to_owned(), Quantity(cpu.into()));
        }
        if !mem.is_empty() {
            reqs.insert("memory".to_owned(), Quantity(mem.into()));
        }
        PodInfo::new(Arc::new(Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("p-{cpu}-{mem}")),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(reqs),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    fn node(cpu: &str, mem: &str, pods: &[PodInfo]) -> NodeInfo {
        let mut n = NodeInfo::default();
        n.set_node(Arc::new(Node {
            metadata: kube::api::ObjectMeta {
                name: Some("n".into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_owned(), Quantity(cpu.into())),
                        ("memory".to_owned(), Quantity(mem.into())),
                        ("pods".to_owned(), Quantity("32".into())),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }));
        for p in pods {
            n.add_pod(p.clone());
        }
        n
    }

    #[test]
    fn fit_filter_reasons() {
        let fit = Fit::new(FitArgs::default());
        let s = CycleState::default();
        let n = node("10m", "20", &[pod("8m", "19")]);
        assert!(fit.filter(&s, &pod("1m", "1"), &n).is_success());
        let st = fit.filter(&s, &pod("3m", "2"), &n);
        assert_eq!(st.reasons, ["Insufficient cpu", "Insufficient memory"]);
        assert_eq!(st.code, crate::framework::Code::Unschedulable);
        // More than the node's allocatable: preemption cannot help.
        let st = fit.filter(&s, &pod("11m", ""), &n);
        assert_eq!(
            st.code,
            crate::framework::Code::UnschedulableAndUnresolvable
        );
    }

    #[test]
    fn least_and_most_allocated_as_upstream() {
        // least_allocated_test.go "nothing scheduled, nothing requested": node 4000m/10000
        // scores (4000-100)*100/4000=97 and (10000-200Mi)… use upstream's case with
        // explicit requests: cpu 3000/4000, memory 5000/10000 → (25 + 50)/2 = 37.
        let fit = Fit::new(FitArgs::default());
        let s = CycleState::default();
        let n = node("4", "10000", &[]);
        assert_eq!(fit.score(&s, &pod("3", "5000"), &n).0, 37);
        let most = Fit::new(FitArgs {
            scoring_strategy: Some(ScoringStrategy {
                type_: "MostAllocated".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(most.score(&s, &pod("3", "5000"), &n).0, 62);
    }

    #[test]
    fn balanced_allocation_as_upstream() {
        // balanced_allocation_test.go: cpu 3000/4000 (0.75), memory 5000/10000 (0.5):
        // std 0.125 → 87.
        assert_eq!(balanced_score(&[3000, 5000], &[4000, 10000]), 87);
        assert_eq!(balanced_score(&[0, 0], &[4000, 10000]), 100);
        let ba = BalancedAllocation::new(BalancedArgs::default());
        let mut st = CycleState::default();
        assert_eq!(
            ba.pre_score(&mut st, &pod("", ""), &[]).code,
            crate::framework::Code::Skip
        );
    }

    #[test]
    fn requested_to_capacity_ratio_shape() {
        let shape = vec![(0, 0), (100, 100)];
        assert_eq!(broken_line(&shape, 50), 50);
        let shape = vec![(0, 100), (100, 0)];
        assert_eq!(broken_line(&shape, 25), 75);
    }
}
