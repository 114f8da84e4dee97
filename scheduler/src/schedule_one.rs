//! The scheduling cycle and the binding cycle, as upstream's `schedule_one.go`.
//!
//! ```text
//! queue.pop ─▶ snapshot ─▶ PreFilter ─▶ Filter (from the round-robin start, until
//!   enough feasible nodes) ─▶ PreScore/Score ─▶ select host ─▶ assume in cache
//!   ─▶ Reserve ─▶ Permit ─▶ spawn binding cycle: PreBind ─▶ Bind ─▶ PostBind
//!                                         │ failure: Unreserve, forget, requeue
//! no feasible node ─▶ PostFilter (preemption) ─▶ FitError: FailedScheduling event,
//!   PodScheduled=False condition, pod back to the unschedulable queue
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use parking_lot::Mutex;
use rand::Rng;

use crate::cache::Cache;
use crate::framework::runtime::Framework;
use crate::framework::types::{NodeInfo, PodInfo};
use crate::framework::{Code, CycleState, NodeStatuses, QueuedPodInfo, Status};
use crate::metrics::Metrics;
use crate::queue::SchedulingQueue;

/// upstream's `ErrNoNodesAvailable`.
pub const NO_NODES: &str = "no nodes available to schedule pods";
const MIN_FEASIBLE_NODES: usize = 100;
const MIN_FEASIBLE_PERCENTAGE: i64 = 5;

/// Why no node was found: upstream's `FitError`.
#[derive(Debug, Clone)]
pub struct FitError {
    /// Nodes in the snapshot.
    pub num_all_nodes: usize,
    /// Each rejected node's status.
    pub statuses: NodeStatuses,
    /// A PreFilter rejection's message (then `statuses` is not itemised).
    pub pre_filter_msg: String,
    /// PostFilter's message (preemption).
    pub post_filter_msg: String,
    /// What to write to `status.nominatedNodeName`: a node preemption made room on,
    /// or `""` to clear it; `None` leaves it.
    pub nominated: Option<String>,
}

impl FitError {
    /// The plugins that rejected a node.
    pub fn plugins(&self) -> HashSet<String> {
        self.statuses
            .values()
            .map(|s| s.plugin.clone())
            .filter(|p| !p.is_empty())
            .collect()
    }
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        if !self.pre_filter_msg.is_empty() {
            write!(f, " {}.", self.pre_filter_msg)?;
        } else {
            let mut histogram: HashMap<&str, usize> = HashMap::new();
            for s in self.statuses.values() {
                for r in &s.reasons {
                    *histogram.entry(r.as_str()).or_default() += 1;
                }
            }
            let mut reasons: Vec<String> =
                histogram.iter().map(|(r, n)| format!("{n} {r}")).collect();
            reasons.sort();
            if !reasons.is_empty() {
                write!(f, " {}.", reasons.join(", "))?;
            }
        }
        if !self.post_filter_msg.is_empty() {
            write!(f, " {}", self.post_filter_msg)?;
        }
        Ok(())
    }
}

/// How many feasible nodes to look for, upstream's `numFeasibleNodesToFind`.
pub fn num_feasible_nodes_to_find(percentage: i32, all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES {
        return all;
    }
    let mut pct = i64::from(percentage);
    if pct == 0 {
        pct = (50 - all as i64 / 125).max(MIN_FEASIBLE_PERCENTAGE);
    }
    let n = (all as i64 * pct / 100) as usize;
    n.max(MIN_FEASIBLE_NODES)
}

/// The scheduler's state shared by the cycles.
pub struct Scheduler {
    /// The API client (status patches).
    pub client: kube::Client,
    /// Nodes and placed pods.
    pub cache: Mutex<Cache>,
    /// Pending pods.
    pub queue: Arc<SchedulingQueue>,
    /// Profiles by scheduler name.
    pub profiles: HashMap<String, Arc<Framework>>,
    /// Event recorders by scheduler name.
    pub recorders: HashMap<String, client_base::events::Recorder>,
    /// Metrics.
    pub metrics: Metrics,
    /// The global `percentageOfNodesToScore`, and each profile's override.
    pub percentage: i32,
    /// Per-profile overrides.
    pub profile_percentage: HashMap<String, i32>,
    /// The pods informer, to see whether a pod still exists.
    pub pods: Arc<client_base::informer::Informer<Pod>>,
    next_start: AtomicUsize,
}

enum Outcome {
    Scheduled(String),
    Failed(Status, Option<FitError>),
}

impl Scheduler {
    /// A scheduler over these parts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: kube::Client,
        queue: Arc<SchedulingQueue>,
        profiles: HashMap<String, Arc<Framework>>,
        recorders: HashMap<String, client_base::events::Recorder>,
        metrics: Metrics,
        percentage: i32,
        profile_percentage: HashMap<String, i32>,
        pods: Arc<client_base::informer::Informer<Pod>>,
    ) -> Arc<Self> {
        Arc::new(Scheduler {
            client,
            cache: Mutex::new(Cache::new()),
            queue,
            profiles,
            recorders,
            metrics,
            percentage,
            profile_percentage,
            pods,
            next_start: AtomicUsize::new(0),
        })
    }

    /// Schedules pods until the queue closes.
    pub async fn run(self: Arc<Self>) {
        while let Some(qpi) = self.queue.pop().await {
            self.clone().schedule_one(qpi).await;
        }
    }

    fn profile_of(&self, pod: &Pod) -> Option<&Arc<Framework>> {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("default-scheduler");
        self.profiles.get(name)
    }

    /// One scheduling cycle for `qpi`.
    pub async fn schedule_one(self: Arc<Self>, qpi: QueuedPodInfo) {
        let key = qpi.info.key();
        let Some(fwk) = self.profile_of(&qpi.info.pod).cloned() else {
            self.queue.done(&key);
            return;
        };
        // The pod as the informer has it now; gone or deleting: skip.
        let Some(pod) = self.pods.get(&key) else {
            self.queue.done(&key);
            return;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            self.event(
                &fwk.profile,
                &pod,
                "Warning",
                "FailedScheduling",
                "Scheduling",
                format!("skip schedule deleting pod: {key}"),
            );
            self.queue.done(&key);
            return;
        }
        if self.cache.lock().contains(&pod) {
            self.queue.done(&key);
            return;
        }
        let cycle = self.queue.scheduling_cycle();
        let start = Instant::now();
        let mut state = CycleState::default();
        // Plugin durations are recorded for one cycle in ten, as upstream's
        // pluginMetricsSamplePercent.
        state.record_plugin_metrics = rand::rng().random_range(0..100) < 10;
        let pi = PodInfo::new(pod.clone());
        let outcome = self.schedule_pod(&fwk, &mut state, &pi).await;
        match outcome {
            Outcome::Failed(status, fit) => {
                let result = if status.is_rejected() {
                    "unschedulable"
                } else {
                    "error"
                };
                self.observe_attempt(result, &fwk.profile, start);
                self.fail(&fwk, qpi, cycle, status, fit).await;
            }
            Outcome::Scheduled(host) => {
                // Assume: the next cycle counts this pod on its node.
                let mut assumed = (*pod).clone();
                if let Some(spec) = assumed.spec.as_mut() {
                    spec.node_name = Some(host.clone());
                }
                let assumed = Arc::new(assumed);
                self.queue.forget_nominated(&key);
                let assumed_ok = self.cache.lock().assume(assumed.clone());
                if let Err(e) = assumed_ok {
                    self.observe_attempt("error", &fwk.profile, start);
                    self.fail(&fwk, qpi, cycle, Status::error(e), None).await;
                    return;
                }
                let s = fwk.run_reserve(&mut state, &pi, &host);
                let s = if s.is_success() {
                    fwk.run_permit(&mut state, &pi, &host)
                } else {
                    s
                };
                if !s.is_success() && s.code != Code::Wait {
                    fwk.run_unreserve(&mut state, &pi, &host);
                    let _ = self.cache.lock().forget(&assumed);
                    self.observe_attempt(
                        if s.is_rejected() {
                            "unschedulable"
                        } else {
                            "error"
                        },
                        &fwk.profile,
                        start,
                    );
                    let fit = s.is_rejected().then(|| FitError {
                        num_all_nodes: 1,
                        statuses: HashMap::from([(host.clone(), s.clone())]),
                        pre_filter_msg: String::new(),
                        post_filter_msg: String::new(),
                        nominated: None,
                    });
                    self.fail(&fwk, qpi, cycle, s, fit).await;
                    return;
                }
                // The binding cycle runs beside the next scheduling cycle; it does not
                // need the snapshot, and holding it would make the cache copy it.
                state.snapshot = Arc::default();
                let this = self.clone();
                tokio::spawn(async move {
                    this.bind(fwk, state, qpi, pi, host, cycle, start).await;
                });
            }
        }
    }

    fn observe_attempt(&self, result: &str, profile: &str, start: Instant) {
        self.metrics
            .schedule_attempts
            .with_label_values(&[result, profile])
            .inc();
        self.metrics
            .attempt_duration
            .with_label_values(&[result, profile])
            .observe(start.elapsed().as_secs_f64());
    }

    #[allow(clippy::too_many_arguments)]
    async fn bind(
        self: Arc<Self>,
        fwk: Arc<Framework>,
        mut state: CycleState,
        qpi: QueuedPodInfo,
        pi: PodInfo,
        host: String,
        cycle: u64,
        start: Instant,
    ) {
        let key = qpi.info.key();
        // A pod Permit parked waits here, off the scheduling cycle.
        let mut s = fwk.wait_on_permit(&pi).await;
        let rejected_at_permit = s.is_rejected();
        if s.is_success() {
            s = fwk.run_pre_bind(&state, &pi, &host).await;
        }
        if s.is_success() {
            s = fwk.run_bind(&state, &pi, &host).await;
        }
        if !s.is_success() {
            fwk.run_unreserve(&mut state, &pi, &host);
            let mut assumed = (*pi.pod).clone();
            if let Some(spec) = assumed.spec.as_mut() {
                spec.node_name = Some(host.clone());
            }
            let _ = self.cache.lock().forget(&assumed);
            self.queue
                .move_all(crate::framework::ClusterEvent::AssignedPodDelete);
            let s = if s.code == Code::Skip {
                Status::error("no bind plugin bound the pod")
            } else {
                s
            };
            // A Permit rejection is the pod not fitting its node, as upstream's
            // FitError over that one node.
            let fit = rejected_at_permit.then(|| FitError {
                num_all_nodes: 1,
                statuses: HashMap::from([(host.clone(), s.clone())]),
                pre_filter_msg: String::new(),
                post_filter_msg: String::new(),
                nominated: None,
            });
            let result = if rejected_at_permit {
                "unschedulable"
            } else {
                "error"
            };
            self.observe_attempt(result, &fwk.profile, start);
            self.fail(&fwk, qpi, cycle, s, fit).await;
            return;
        }
        tracing::info!(pod = %key, node = %host, "Successfully bound pod to node");
        self.observe_attempt("scheduled", &fwk.profile, start);
        if let Some(first) = qpi.initial_attempt {
            let since = self.queue.since_start().saturating_sub(first);
            self.metrics
                .sli_duration
                .with_label_values(&[&qpi.attempts.to_string()])
                .observe(since.as_secs_f64());
        }
        self.queue.done(&key);
        let ns = pi.pod.metadata.namespace.clone().unwrap_or_default();
        let name = pi.pod.metadata.name.clone().unwrap_or_default();
        self.event(
            &fwk.profile,
            &pi.pod,
            "Normal",
            "Scheduled",
            "Binding",
            format!("Successfully assigned {ns}/{name} to {host}"),
        );
        fwk.run_post_bind(&state, &pi, &host);
    }

    fn event(
        &self,
        profile: &str,
        pod: &Pod,
        type_: &str,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let Some(r) = self.recorders.get(profile) else {
            return;
        };
        let t = if type_ == "Warning" {
            client_base::events::Type::Warning
        } else {
            client_base::events::Type::Normal
        };
        r.event(pod.object_ref(&()), None, t, reason, action, note);
    }

    /// The scheduling algorithm: a host, or why none.
    async fn schedule_pod(&self, fwk: &Framework, state: &mut CycleState, pi: &PodInfo) -> Outcome {
        let nodes = self.cache.lock().snapshot_shared();
        state.snapshot = nodes.clone();
        if nodes.is_empty() {
            return Outcome::Failed(Status::unresolvable(NO_NODES), None);
        }
        let (pre, s) = fwk.run_pre_filter(state, pi, &nodes);
        if !s.is_success() {
            if s.is_rejected() {
                let statuses = nodes
                    .iter()
                    .map(|n| (n.name().to_owned(), s.clone()))
                    .collect();
                let mut fit = FitError {
                    num_all_nodes: nodes.len(),
                    statuses,
                    pre_filter_msg: s.message(),
                    post_filter_msg: String::new(),
                    nominated: None,
                };
                return self.post_filter(fwk, state, pi, &mut fit).await;
            }
            return Outcome::Failed(s, None);
        }
        let narrowed: Vec<Arc<NodeInfo>>;
        let candidates: &[Arc<NodeInfo>] = match &pre.node_names {
            Some(names) => {
                narrowed = nodes
                    .iter()
                    .filter(|n| names.contains(n.name()))
                    .cloned()
                    .collect();
                &narrowed
            }
            None => &nodes,
        };
        let pct = self
            .profile_percentage
            .get(&fwk.profile)
            .copied()
            .unwrap_or(self.percentage);
        let want = if fwk.has_score() {
            num_feasible_nodes_to_find(pct, candidates.len())
        } else {
            1
        };
        // Room that preemption made for other pending pods of at least this pod's
        // priority stays theirs: Filter sees them on their nominated nodes.
        let nominated_pods = self.queue.nominated_for(pi);
        let nominated_of = |n: &NodeInfo| {
            nominated_pods
                .get(n.name())
                .map(Vec::as_slice)
                .unwrap_or_default()
        };
        // The node preemption nominated is tried first; if the pod fits, it goes there.
        if let Some(nominated) = pi
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty())
            && let Some(node) = candidates.iter().find(|n| n.name() == nominated)
            && fwk
                .run_filter_with_nominated(state, pi, node, nominated_of(node))
                .is_success()
        {
            return Outcome::Scheduled(nominated.to_owned());
        }
        let mut feasible: Vec<Arc<NodeInfo>> = Vec::new();
        let mut statuses: NodeStatuses = HashMap::new();
        let n = candidates.len();
        let start = if n == 0 {
            0
        } else {
            self.next_start.load(Ordering::Relaxed) % n
        };
        // Filter in parallel from the round-robin start, until `want` nodes fit
        // (or a plugin fails); results are taken in node order.
        let found = AtomicUsize::new(0);
        let results = fwk.parallelizer().until(n, |i, stop| {
            let node = &candidates[(start + i) % n];
            let s = fwk.run_filter_with_nominated(state, pi, node, nominated_of(node));
            if (s.is_success() && found.fetch_add(1, Ordering::Relaxed) + 1 >= want)
                || !(s.is_success() || s.is_rejected())
            {
                stop.store(true, Ordering::Relaxed);
            }
            Some((node, s))
        });
        for (node, s) in results.into_iter().flatten() {
            if s.is_success() {
                if feasible.len() < want {
                    feasible.push(node.clone());
                }
            } else if s.is_rejected() {
                statuses.insert(node.name().to_owned(), s);
            } else {
                return Outcome::Failed(s, None);
            }
        }
        let processed = feasible.len() + statuses.len();
        if n > 0 {
            self.next_start
                .store((start + processed) % nodes.len(), Ordering::Relaxed);
        }
        if feasible.is_empty() {
            // Nodes PreFilter ruled out are rejected by it.
            for node in nodes.iter() {
                statuses.entry(node.name().to_owned()).or_insert_with(|| {
                    Status::unresolvable("node(s) didn't satisfy plugin(s) [PreFilter]")
                });
            }
            let mut fit = FitError {
                num_all_nodes: nodes.len(),
                statuses,
                pre_filter_msg: String::new(),
                post_filter_msg: String::new(),
                nominated: None,
            };
            return self.post_filter(fwk, state, pi, &mut fit).await;
        }
        if feasible.len() == 1 {
            return Outcome::Scheduled(feasible[0].name().to_owned());
        }
        let s = fwk.run_pre_score(state, pi, &feasible);
        if !s.is_success() {
            return Outcome::Failed(s, None);
        }
        let scores = match fwk.run_score(state, pi, &feasible) {
            Ok(s) => s,
            Err(s) => return Outcome::Failed(s, None),
        };
        // The best score; ties broken uniformly at random (reservoir sampling).
        let mut rng = rand::rng();
        let mut best: Option<(i64, &str)> = None;
        let mut ties = 0u32;
        for s in &scores {
            match best {
                Some((b, _)) if s.score < b => {}
                Some((b, _)) if s.score == b => {
                    ties += 1;
                    if rng.random_range(0..ties) == 0 {
                        best = Some((s.score, &s.name));
                    }
                }
                _ => {
                    ties = 1;
                    best = Some((s.score, &s.name));
                }
            }
        }
        match best {
            Some((_, host)) => Outcome::Scheduled(host.to_owned()),
            None => Outcome::Failed(Status::error("empty priorityList"), None),
        }
    }

    async fn post_filter(
        &self,
        fwk: &Framework,
        state: &CycleState,
        pi: &PodInfo,
        fit: &mut FitError,
    ) -> Outcome {
        if fwk.has_post_filter() {
            let (nominated, rejections) = fwk.run_post_filter(state, pi, &fit.statuses).await;
            fit.nominated = nominated;
            fit.post_filter_msg = rejections
                .iter()
                .map(Status::message)
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
        }
        Outcome::Failed(
            Status::new(Code::Unschedulable, [fit.to_string()]),
            Some(fit.clone()),
        )
    }

    /// upstream's `handleSchedulingFailure`: requeue, event, condition.
    async fn fail(
        &self,
        fwk: &Framework,
        qpi: QueuedPodInfo,
        cycle: u64,
        status: Status,
        fit: Option<FitError>,
    ) {
        let reason = if status.is_rejected() {
            "Unschedulable"
        } else {
            "SchedulerError"
        };
        let message = status.message();
        let pod = qpi.info.pod.clone();
        let plugins = fit.as_ref().map(FitError::plugins).unwrap_or_default();
        if let Some(node) = fit.as_ref().and_then(|f| f.nominated.as_deref()) {
            self.queue.nominate(&qpi.info, node);
        }
        let error = !status.is_rejected();
        self.queue.requeue(qpi, cycle, plugins, error);
        if self
            .pods
            .get(&crate::framework::types::pod_key(&pod))
            .is_none()
        {
            return;
        }
        let note = if message.len() > 1024 {
            let mut end = 1020;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            format!("{} ...", &message[..end])
        } else {
            message.clone()
        };
        self.event(
            &fwk.profile,
            &pod,
            "Warning",
            "FailedScheduling",
            "Scheduling",
            note,
        );
        let nominated = fit.and_then(|f| f.nominated);
        self.set_condition(&pod, reason, &message, nominated.as_deref())
            .await;
    }

    /// Sets `PodScheduled=False` with `reason` and `message`, unless already so.
    async fn set_condition(&self, pod: &Pod, reason: &str, message: &str, nominated: Option<&str>) {
        let current = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
        let nnn_changed = nominated.is_some_and(|n| {
            pod.status
                .as_ref()
                .and_then(|s| s.nominated_node_name.as_deref())
                .unwrap_or_default()
                != n
        });
        if !nnn_changed
            && current.is_some_and(|c| {
                c.status == "False"
                    && c.reason.as_deref() == Some(reason)
                    && c.message.as_deref() == Some(message)
            })
        {
            return;
        }
        let now = k8s_openapi::jiff::Timestamp::now();
        let mut patch = serde_json::json!({
            "status": {"conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
            }]}
        });
        if let Some(n) = nominated {
            patch["status"]["nominatedNodeName"] = if n.is_empty() {
                serde_json::Value::Null
            } else {
                n.into()
            };
        }
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            tracing::info!(pod = name, error = %e, "error updating pod condition");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feasible_node_counts_as_upstream() {
        assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420);
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500);
        assert_eq!(num_feasible_nodes_to_find(0, 6000), 300, "floor of 5%");
        assert_eq!(num_feasible_nodes_to_find(0, 150), 100, "at least 100");
        assert_eq!(num_feasible_nodes_to_find(30, 1000), 300);
    }

    #[test]
    fn fit_error_message_as_upstream() {
        let mut statuses = NodeStatuses::new();
        statuses.insert(
            "a".into(),
            Status::unresolvable(
                "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
            ),
        );
        statuses.insert("b".into(), Status::unschedulable("Insufficient cpu"));
        statuses.insert("c".into(), Status::unschedulable("Insufficient cpu"));
        let fit = FitError {
            num_all_nodes: 3,
            statuses,
            pre_filter_msg: String::new(),
            nominated: None,
            post_filter_msg: "preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.".into(),
        };
        assert_eq!(
            fit.to_string(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
        );
    }
}
