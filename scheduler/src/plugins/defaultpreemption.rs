//! DefaultPreemption (PostFilter): when no node fits, find a node where evicting
//! lower-priority pods would let the pod fit, nominate it, and evict the victims
//! gracefully, as upstream's `framework/preemption` evaluator.
//!
//! - Only pods of lower priority are victims; a pod with `preemptionPolicy: Never`
//!   preempts nobody.
//! - Candidate nodes are those whose filter status was `Unschedulable` (not
//!   unresolvable); at most max(10% of the nodes, 100) are dry-run, from a random
//!   offset (`minCandidateNodesPercentage`, `minCandidateNodesAbsolute`).
//! - On each, every lower-priority pod is removed, the filters rerun, then pods are
//!   reprieved (added back) from the most important down, PDB-violating ones first,
//!   as long as the pod still fits.
//! - The node is picked by upstream's criteria in order: fewest PDB violations,
//!   lowest highest-victim priority, lowest priority sum, fewest victims, latest
//!   start of the highest-priority victims, then the first.
//! - Victims get the `DisruptionTarget` condition (`PreemptionByScheduler`) and are
//!   deleted (graceful), with a `Preempted` event; this happens in the background
//!   and the pod waits, nominated, for the freed room.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use rand::Rng;
use serde::Deserialize;

use super::simple::priority;
use crate::framework::runtime::Framework;
use crate::framework::types::{NodeInfo, PodInfo, pod_key};
use crate::framework::{Code, CycleState, NodeStatuses, Plugin, PostFilterPlugin, Status};

/// The reason for nodes where preemption cannot help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// The reason for nodes without lower-priority pods.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// `DefaultPreemptionArgs`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Args {
    /// Percentage of nodes to dry-run (default 10).
    #[serde(default = "ten")]
    pub min_candidate_nodes_percentage: i32,
    /// At least this many (default 100).
    #[serde(default = "hundred")]
    pub min_candidate_nodes_absolute: i32,
}

fn ten() -> i32 {
    10
}
fn hundred() -> i32 {
    100
}

impl Default for Args {
    fn default() -> Self {
        Args {
            min_candidate_nodes_percentage: 10,
            min_candidate_nodes_absolute: 100,
        }
    }
}

impl Args {
    /// Upstream's `ValidateDefaultPreemptionArgs`.
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        if !(0..=100).contains(&self.min_candidate_nodes_percentage) {
            errs.push(format!(
                "minCandidateNodesPercentage: Invalid value: {}: not in valid range [0, 100]",
                self.min_candidate_nodes_percentage
            ));
        }
        if self.min_candidate_nodes_absolute < 0 {
            errs.push(format!(
                "minCandidateNodesAbsolute: Invalid value: {}: not in valid range [0, inf)",
                self.min_candidate_nodes_absolute
            ));
        }
        if self.min_candidate_nodes_percentage == 0 && self.min_candidate_nodes_absolute == 0 {
            errs.push("minCandidateNodesPercentage: Invalid value: 0: cannot be zero at the same time as minCandidateNodesAbsolute".into());
        }
        match errs.len() {
            0 => Ok(()),
            1 => Err(errs.remove(0)),
            _ => Err(format!("[{}]", errs.join(", "))),
        }
    }
}

/// Where victims are evicted and PDBs read: the API, or a fake in tests.
pub trait Evictor: Send + Sync {
    /// The PodDisruptionBudgets of `namespace`.
    fn pdbs(&self, namespace: &str) -> Vec<Arc<PodDisruptionBudget>>;
    /// Marks `victim` with the DisruptionTarget condition, deletes it and records
    /// the `Preempted` event, in the background.
    fn evict(&self, preemptor: &Pod, victim: Arc<Pod>, node: &str);
}

/// The API-backed [`Evictor`].
pub struct ApiEvictor {
    /// The scheduler's client.
    pub client: kube::Client,
    /// PodDisruptionBudgets.
    pub pdbs: Arc<client_base::informer::Informer<PodDisruptionBudget>>,
    /// The profile's event recorder.
    pub recorder: client_base::events::Recorder,
}

impl Evictor for ApiEvictor {
    fn pdbs(&self, namespace: &str) -> Vec<Arc<PodDisruptionBudget>> {
        self.pdbs
            .by_index(client_base::informer::NAMESPACE, namespace)
    }

    fn evict(&self, preemptor: &Pod, victim: Arc<Pod>, node: &str) {
        let client = self.client.clone();
        let recorder = self.recorder.clone();
        let scheduler = preemptor
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.clone())
            .unwrap_or_else(|| "default-scheduler".into());
        let preemptor_ref = preemptor.object_ref(&());
        let preemptor_uid = preemptor.metadata.uid.clone().unwrap_or_default();
        let node = node.to_owned();
        tokio::spawn(async move {
            let ns = victim.metadata.namespace.clone().unwrap_or_default();
            let name = victim.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let patch = serde_json::json!({"status": {"conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "PreemptionByScheduler",
                "message": format!("{scheduler}: preempting to accommodate a higher priority pod"),
                "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
            }]}});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                tracing::info!(pod = %name, error = %e, "preemption: adding the DisruptionTarget condition");
            }
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    tracing::info!(pod = %name, error = %e, "preemption: deleting the victim");
                    return;
                }
            }
            recorder.event(
                victim.object_ref(&()),
                Some(preemptor_ref),
                client_base::events::Type::Normal,
                "Preempted",
                "Preempting",
                format!("Preempted by pod {preemptor_uid} on node {node}"),
            );
        });
    }
}

/// DefaultPreemption.
pub struct DefaultPreemption {
    args: Args,
    evictor: Arc<dyn Evictor>,
    metrics: crate::metrics::Metrics,
}

impl DefaultPreemption {
    /// With its args, evictor and the scheduler's metrics.
    pub fn new(args: Args, evictor: Arc<dyn Evictor>, metrics: crate::metrics::Metrics) -> Self {
        DefaultPreemption {
            args,
            evictor,
            metrics,
        }
    }
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        "DefaultPreemption"
    }
    fn as_post_filter(&self) -> Option<&dyn PostFilterPlugin> {
        Some(self)
    }
}

/// One candidate: a node and the pods to evict there.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The node.
    pub node: String,
    /// The victims, most important first.
    pub victims: Vec<Arc<Pod>>,
    /// How many of them violate a PDB.
    pub pdb_violations: usize,
}

/// Whether `a` is more important than `b`: higher priority, then started earlier.
fn more_important(a: &Pod, b: &Pod) -> bool {
    let (pa, pb) = (priority(a), priority(b));
    if pa != pb {
        return pa > pb;
    }
    start_time(a) < start_time(b)
}

fn start_time(p: &Pod) -> i64 {
    p.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map_or(i64::MAX, |t| t.0.as_second())
}

/// Splits `pods` into those whose eviction would violate a PDB and the rest,
/// as upstream's `filterPodsWithPDBViolation`.
fn split_by_pdbs(
    pods: Vec<Arc<Pod>>,
    pdbs: &[Arc<PodDisruptionBudget>],
) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let mut allowed: Vec<i32> = pdbs
        .iter()
        .map(|p| p.status.as_ref().map_or(0, |s| s.disruptions_allowed))
        .collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for pod in pods {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut violates = false;
        for (i, pdb) in pdbs.iter().enumerate() {
            if pdb.metadata.namespace != pod.metadata.namespace {
                continue;
            }
            let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                continue;
            };
            let empty = sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                && sel.match_expressions.as_ref().is_none_or(Vec::is_empty);
            if empty || !client_base::selectors::matches(sel, &labels) {
                continue;
            }
            if pdb
                .status
                .as_ref()
                .and_then(|s| s.disrupted_pods.as_ref())
                .is_some_and(|d| d.contains_key(&name))
            {
                continue;
            }
            allowed[i] -= 1;
            if allowed[i] < 0 {
                violates = true;
            }
        }
        if violates {
            violating.push(pod);
        } else {
            fine.push(pod);
        }
    }
    (violating, fine)
}

/// Upstream's `SelectVictimsOnNode`: the fewest, least important victims that make
/// `pod` fit on `node`, or why none.
pub fn select_victims(
    fwk: &Framework,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    pdbs: &[Arc<PodDisruptionBudget>],
) -> Result<Candidate, Status> {
    let mut ni = node.clone();
    let mut st = state.clone();
    let prio = priority(&pod.pod);
    let potential: Vec<PodInfo> = ni
        .pods
        .iter()
        .filter(|p| priority(&p.pod) < prio)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::unresolvable(NO_VICTIMS));
    }
    for v in &potential {
        ni.remove_pod(&v.key());
        let s = fwk.run_pre_filter_remove_pod(&mut st, pod, v, &ni);
        if !s.is_success() {
            return Err(s);
        }
    }
    let s = fwk.run_filter(&st, pod, &ni);
    if !s.is_success() {
        return Err(s);
    }
    let mut pods: Vec<Arc<Pod>> = potential.iter().map(|p| p.pod.clone()).collect();
    pods.sort_by(|a, b| {
        if more_important(a, b) {
            std::cmp::Ordering::Less
        } else if more_important(b, a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let (violating, fine) = split_by_pdbs(pods, pdbs);
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (pods, is_violating) in [(violating, true), (fine, false)] {
        for p in pods {
            let pi = PodInfo::new(p.clone());
            ni.add_pod(pi.clone());
            let added = fwk.run_pre_filter_add_pod(&mut st, pod, &pi, &ni);
            if added.is_success() && fwk.run_filter(&st, pod, &ni).is_success() {
                continue; // reprieved
            }
            ni.remove_pod(&pi.key());
            let _ = fwk.run_pre_filter_remove_pod(&mut st, pod, &pi, &ni);
            if is_violating {
                pdb_violations += 1;
            }
            victims.push(p);
        }
    }
    Ok(Candidate {
        node: node.name().to_owned(),
        victims,
        pdb_violations,
    })
}

/// Upstream's `pickOneNodeForPreemption`.
pub fn pick_one(candidates: &[Candidate]) -> Option<&Candidate> {
    let mut best: Vec<&Candidate> = candidates.iter().collect();
    type Key = fn(&Candidate) -> i64;
    let keys: [Key; 5] = [
        |c| -(c.pdb_violations as i64),
        |c| -i64::from(c.victims.first().map_or(i32::MIN, |p| priority(p))),
        |c| {
            -c.victims
                .iter()
                .map(|p| i64::from(priority(p)) + i64::from(i32::MAX) + 1)
                .sum::<i64>()
        },
        |c| -(c.victims.len() as i64),
        |c| {
            // Latest earliest start among the highest-priority victims.
            let top = c.victims.first().map_or(i32::MIN, |p| priority(p));
            c.victims
                .iter()
                .filter(|p| priority(p) == top)
                .map(|p| start_time(p))
                .min()
                .unwrap_or(i64::MAX)
        },
    ];
    for key in keys {
        if best.len() <= 1 {
            break;
        }
        let top = best.iter().map(|c| key(c)).max()?;
        best.retain(|c| key(c) == top);
    }
    best.first().copied()
}

/// Upstream's `PodEligibleToPreemptOthers`, minus the nominated-node check.
fn eligible(pod: &Pod) -> Result<(), String> {
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never")
    {
        return Err("not eligible due to preemptionPolicy=Never.".into());
    }
    Ok(())
}

impl DefaultPreemption {
    /// The dry runs: candidates, and the per-node statuses of the nodes that gave none.
    pub fn find_candidates(
        &self,
        fwk: &Framework,
        state: &CycleState,
        pod: &PodInfo,
        statuses: &NodeStatuses,
    ) -> (Vec<Candidate>, NodeStatuses) {
        let potential: Vec<&Arc<NodeInfo>> = state
            .snapshot
            .iter()
            .filter(|n| {
                statuses
                    .get(n.name())
                    .is_some_and(|s| s.code == Code::Unschedulable)
            })
            .collect();
        let mut failed = NodeStatuses::new();
        if potential.is_empty() {
            return (Vec::new(), failed);
        }
        let ns = pod.pod.metadata.namespace.clone().unwrap_or_default();
        let pdbs = self.evictor.pdbs(&ns);
        let n = potential.len();
        let want = ((n as i64 * i64::from(self.args.min_candidate_nodes_percentage) / 100)
            .max(i64::from(self.args.min_candidate_nodes_absolute)) as usize)
            .min(n);
        let offset = rand::rng().random_range(0..n);
        let (mut fine, mut violating) = (Vec::new(), Vec::new());
        for i in 0..n {
            if !fine.is_empty() && fine.len() + violating.len() >= want {
                break;
            }
            let node = potential[(offset + i) % n];
            match select_victims(fwk, state, pod, node, &pdbs) {
                Ok(c) if c.pdb_violations == 0 => fine.push(c),
                Ok(c) => violating.push(c),
                Err(s) => {
                    failed.insert(node.name().to_owned(), s);
                }
            }
        }
        fine.extend(violating);
        (fine, failed)
    }
}

impl PostFilterPlugin for DefaultPreemption {
    fn post_filter<'a>(
        &'a self,
        fwk: &'a Framework,
        state: &'a CycleState,
        pod: &'a PodInfo,
        statuses: &'a NodeStatuses,
    ) -> BoxFuture<'a, (Option<String>, Status)> {
        Box::pin(async move {
            if let Err(msg) = eligible(&pod.pod) {
                return (None, Status::unschedulable(format!("preemption: {msg}")));
            }
            self.metrics.preemption_attempts.inc();
            let (candidates, failed) = self.find_candidates(fwk, state, pod, statuses);
            let Some(best) = pick_one(&candidates) else {
                // Nothing helps: every node not dry-run is "not helpful".
                let mut all = failed;
                for n in state.snapshot.iter() {
                    all.entry(n.name().to_owned())
                        .or_insert_with(|| Status::unresolvable(NOT_HELPFUL));
                }
                let fit = crate::schedule_one::FitError {
                    num_all_nodes: state.snapshot.len(),
                    statuses: all,
                    pre_filter_msg: String::new(),
                    post_filter_msg: String::new(),
                    nominated: None,
                };
                return (
                    Some(String::new()),
                    Status::unschedulable(format!("preemption: {fit}")),
                );
            };
            tracing::info!(
                pod = %pod_key(&pod.pod),
                node = %best.node,
                victims = best.victims.len(),
                "preempting"
            );
            self.metrics
                .preemption_victims
                .observe(best.victims.len() as f64);
            for v in &best.victims {
                self.evictor.evict(&pod.pod, v.clone(), &best.node);
            }
            (Some(best.node.clone()), Status::success())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use k8s_openapi::api::core::v1::{Container, Node, NodeStatus, PodSpec, ResourceRequirements};
    use k8s_openapi::api::policy::v1::{PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use parking_lot::Mutex;

    use super::*;
    use crate::framework::runtime::Points;

    #[derive(Default)]
    struct Recording {
        pdbs: Vec<Arc<PodDisruptionBudget>>,
        evicted: Mutex<Vec<String>>,
    }

    impl Evictor for Recording {
        fn pdbs(&self, _namespace: &str) -> Vec<Arc<PodDisruptionBudget>> {
            self.pdbs.clone()
        }
        fn evict(&self, _preemptor: &Pod, victim: Arc<Pod>, node: &str) {
            self.evicted.lock().push(format!(
                "{}@{node}",
                victim.metadata.name.as_deref().unwrap_or_default()
            ));
        }
    }

    fn pod(name: &str, cpu: &str, prio: i32, node: &str) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                labels: Some([("app".to_owned(), name.to_owned())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                priority: Some(prio),
                node_name: (!node.is_empty()).then(|| node.to_owned()),
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some([("cpu".to_owned(), Quantity(cpu.into()))].into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn node(name: &str, cpu: &str, pods: &[Arc<Pod>]) -> Arc<NodeInfo> {
        let mut n = NodeInfo::default();
        n.set_node(Arc::new(Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_owned(), Quantity(cpu.into())),
                        ("memory".to_owned(), Quantity("8Gi".into())),
                        ("pods".to_owned(), Quantity("110".into())),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }));
        for p in pods {
            n.add_pod(PodInfo::new(p.clone()));
        }
        Arc::new(n)
    }

    fn fit_framework() -> Framework {
        let fit: Arc<dyn Plugin> =
            Arc::new(crate::plugins::noderesources::Fit::new(Default::default()));
        let points = Points {
            filter: vec!["NodeResourcesFit".into()],
            ..Default::default()
        };
        Framework::new(
            "default-scheduler".into(),
            HashMap::from([("NodeResourcesFit".to_owned(), fit)]),
            points,
            crate::metrics::Metrics::unregistered(),
        )
    }

    fn statuses(fwk: &Framework, state: &CycleState, pi: &PodInfo) -> NodeStatuses {
        state
            .snapshot
            .iter()
            .map(|n| (n.name().to_owned(), fwk.run_filter(state, pi, n)))
            .filter(|(_, s)| !s.is_success())
            .collect()
    }

    #[tokio::test]
    async fn evicts_the_fewest_least_important_pods_on_the_best_node() {
        let fwk = fit_framework();
        // n1: two low pods (prio 1 and 2); n2: one pod of prio 5; both full at 2 cpu.
        let n1 = node("n1", "2", &[pod("a", "1", 1, "n1"), pod("b", "1", 2, "n1")]);
        let n2 = node("n2", "2", &[pod("c", "2", 5, "n2")]);
        let mut state = CycleState::default();
        state.snapshot = Arc::new(vec![n1, n2]);
        let high = PodInfo::new(pod("high", "1", 10, ""));
        let st = statuses(&fwk, &state, &high);
        let rec = Arc::new(Recording::default());
        let dp = DefaultPreemption::new(
            Args::default(),
            rec.clone(),
            crate::metrics::Metrics::unregistered(),
        );
        let (nominated, s) = dp.post_filter(&fwk, &state, &high, &st).await;
        assert!(s.is_success(), "{s:?}");
        // n1 (victim priority 1) beats n2 (victim priority 5); only `a` must go.
        assert_eq!(nominated.as_deref(), Some("n1"));
        assert_eq!(*rec.evicted.lock(), ["a@n1"]);
    }

    #[tokio::test]
    async fn pdbs_are_respected_where_possible() {
        let fwk = fit_framework();
        let n1 = node("n1", "2", &[pod("a", "2", 1, "n1")]);
        let n2 = node("n2", "2", &[pod("b", "2", 1, "n2")]);
        let mut state = CycleState::default();
        state.snapshot = Arc::new(vec![n1, n2]);
        let pdb = PodDisruptionBudget {
            metadata: kube::api::ObjectMeta {
                name: Some("protect-a".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                selector: Some(LabelSelector {
                    match_labels: Some([("app".to_owned(), "a".to_owned())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(PodDisruptionBudgetStatus {
                disruptions_allowed: 0,
                ..Default::default()
            }),
        };
        let rec = Arc::new(Recording {
            pdbs: vec![Arc::new(pdb)],
            ..Default::default()
        });
        let high = PodInfo::new(pod("high", "1", 10, ""));
        let st = statuses(&fwk, &state, &high);
        let dp = DefaultPreemption::new(
            Args::default(),
            rec.clone(),
            crate::metrics::Metrics::unregistered(),
        );
        let (nominated, _) = dp.post_filter(&fwk, &state, &high, &st).await;
        assert_eq!(nominated.as_deref(), Some("n2"));
        assert_eq!(*rec.evicted.lock(), ["b@n2"]);
    }

    #[tokio::test]
    async fn upstreams_messages_when_preemption_cannot_help() {
        let fwk = fit_framework();
        // n1 holds a higher-priority pod: no victims. n2 is too small even empty:
        // unresolvable, so it is not a candidate at all.
        let n1 = node("n1", "2", &[pod("a", "2", 100, "n1")]);
        let n2 = node("n2", "500m", &[]);
        let mut state = CycleState::default();
        state.snapshot = Arc::new(vec![n1, n2]);
        let high = PodInfo::new(pod("high", "1", 10, ""));
        let st = statuses(&fwk, &state, &high);
        let dp = DefaultPreemption::new(
            Args::default(),
            Arc::new(Recording::default()),
            crate::metrics::Metrics::unregistered(),
        );
        let (nominated, s) = dp.post_filter(&fwk, &state, &high, &st).await;
        assert_eq!(nominated.as_deref(), Some(""), "clears nominatedNodeName");
        assert_eq!(
            s.message(),
            "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
        let mut never = (*high.pod).clone();
        never.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        let (_, s) = dp
            .post_filter(&fwk, &state, &PodInfo::new(Arc::new(never)), &st)
            .await;
        assert_eq!(
            s.message(),
            "preemption: not eligible due to preemptionPolicy=Never."
        );
    }

    #[test]
    fn args_validation_in_upstreams_words() {
        let a = Args {
            min_candidate_nodes_percentage: 0,
            min_candidate_nodes_absolute: 0,
        };
        assert_eq!(
            a.validate().unwrap_err(),
            "minCandidateNodesPercentage: Invalid value: 0: cannot be zero at the same time as minCandidateNodesAbsolute"
        );
    }
}
