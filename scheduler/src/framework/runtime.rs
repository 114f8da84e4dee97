//! A profile's framework: its plugins at each extension point, with weights, and
//! the calls in upstream's order (`framework/runtime/framework.go`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::types::{NodeInfo, PodInfo};
use super::{
    BindPlugin, Code, CycleState, FilterPlugin, NodeScore, NodeStatuses, Plugin, PostBindPlugin,
    PostFilterPlugin, PreBindPlugin, PreEnqueuePlugin, PreFilterPlugin, PreFilterResult,
    PreScorePlugin, QueueSortPlugin, QueuedPodInfo, ReservePlugin, Status,
};
use crate::metrics::Metrics;

/// The plugins enabled at each extension point of one profile, in order.
#[derive(Default)]
pub struct Points {
    /// PreEnqueue.
    pub pre_enqueue: Vec<String>,
    /// QueueSort (exactly one).
    pub queue_sort: Vec<String>,
    /// PreFilter.
    pub pre_filter: Vec<String>,
    /// Filter.
    pub filter: Vec<String>,
    /// PostFilter.
    pub post_filter: Vec<String>,
    /// PreScore.
    pub pre_score: Vec<String>,
    /// Score, with weights.
    pub score: Vec<(String, i64)>,
    /// Reserve.
    pub reserve: Vec<String>,
    /// Permit.
    pub permit: Vec<String>,
    /// PreBind.
    pub pre_bind: Vec<String>,
    /// Bind.
    pub bind: Vec<String>,
    /// PostBind.
    pub post_bind: Vec<String>,
}

/// The plugins of each extension point, resolved once from [`Points`] so that the
/// per-node calls never look a plugin up by name.
#[derive(Default)]
struct Resolved {
    pre_enqueue: Vec<Arc<dyn Plugin>>,
    queue_sort: Vec<Arc<dyn Plugin>>,
    pre_filter: Vec<Arc<dyn Plugin>>,
    filter: Vec<Arc<dyn Plugin>>,
    post_filter: Vec<Arc<dyn Plugin>>,
    pre_score: Vec<Arc<dyn Plugin>>,
    score: Vec<(Arc<dyn Plugin>, i64)>,
    reserve: Vec<Arc<dyn Plugin>>,
    permit: Vec<Arc<dyn Plugin>>,
    pre_bind: Vec<Arc<dyn Plugin>>,
    bind: Vec<Arc<dyn Plugin>>,
    post_bind: Vec<Arc<dyn Plugin>>,
}

/// One profile's runtime.
pub struct Framework {
    /// The profile's `schedulerName`.
    pub profile: String,
    plugins: HashMap<String, Arc<dyn Plugin>>,
    points: Resolved,
    metrics: Metrics,
    waiting: Arc<super::waiting::WaitingPods>,
    parallelizer: Arc<super::parallelize::Parallelizer>,
    /// The outcome channels of pods parked at Permit, until their binding cycle
    /// takes them.
    permits: parking_lot::Mutex<HashMap<String, tokio::sync::oneshot::Receiver<Status>>>,
}

fn pod_uid(pod: &PodInfo) -> String {
    pod.pod.metadata.uid.clone().unwrap_or_default()
}

macro_rules! at {
    ($self:ident, $list:expr, $as:ident) => {
        $list.iter().filter_map(|p| p.$as().map(|x| (p.name(), x)))
    };
}

impl Framework {
    /// A framework over `plugins` (by name) called at `points`.
    pub fn new(
        profile: String,
        plugins: HashMap<String, Arc<dyn Plugin>>,
        points: Points,
        metrics: Metrics,
    ) -> Self {
        let get = |names: &[String]| -> Vec<Arc<dyn Plugin>> {
            names
                .iter()
                .filter_map(|n| plugins.get(n).cloned())
                .collect()
        };
        let resolved = Resolved {
            pre_enqueue: get(&points.pre_enqueue),
            queue_sort: get(&points.queue_sort),
            pre_filter: get(&points.pre_filter),
            filter: get(&points.filter),
            post_filter: get(&points.post_filter),
            pre_score: get(&points.pre_score),
            score: points
                .score
                .iter()
                .filter_map(|(n, w)| plugins.get(n).map(|p| (p.clone(), *w)))
                .collect(),
            reserve: get(&points.reserve),
            permit: get(&points.permit),
            pre_bind: get(&points.pre_bind),
            bind: get(&points.bind),
            post_bind: get(&points.post_bind),
        };
        Framework {
            profile,
            plugins,
            points: resolved,
            metrics,
            waiting: Arc::default(),
            parallelizer: Arc::default(),
            permits: parking_lot::Mutex::default(),
        }
    }

    /// With `p` spreading per-node work (the configuration's `parallelism`).
    pub fn with_parallelizer(mut self, p: Arc<super::parallelize::Parallelizer>) -> Self {
        self.parallelizer = p;
        self
    }

    /// The parallelizer.
    pub fn parallelizer(&self) -> &super::parallelize::Parallelizer {
        &self.parallelizer
    }

    /// With `waiting` as its waiting pods (shared with its plugins' handle).
    pub fn with_waiting_pods(mut self, waiting: Arc<super::waiting::WaitingPods>) -> Self {
        self.waiting = waiting;
        self
    }

    /// Every plugin of the profile.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<dyn Plugin>> {
        self.plugins.values()
    }

    /// The plugin called `name`, if enabled.
    pub fn plugin(&self, name: &str) -> Option<&Arc<dyn Plugin>> {
        self.plugins.get(name)
    }

    fn observe(&self, point: &str, start: Instant, status: &Status) {
        self.metrics.extension_point(
            point,
            status.code,
            &self.profile,
            start.elapsed().as_secs_f64(),
        );
    }

    /// Records one plugin call in `scheduler_plugin_execution_duration_seconds`
    /// when this cycle is sampled (`start` is set).
    fn observe_plugin(&self, start: Option<Instant>, plugin: &str, point: &str, code: Code) {
        if let Some(start) = start {
            self.metrics
                .plugin_duration
                .with_label_values(&[plugin, point, code.as_str()])
                .observe(start.elapsed().as_secs_f64());
        }
    }

    /// The QueueSort plugin's order.
    pub fn less(&self, a: &QueuedPodInfo, b: &QueuedPodInfo) -> bool {
        match at!(self, self.points.queue_sort, as_queue_sort).next() {
            Some((_, q)) => (q as &dyn QueueSortPlugin).less(a, b),
            None => a.timestamp < b.timestamp,
        }
    }

    /// PreEnqueue: the first rejection, with its plugin.
    pub fn run_pre_enqueue(&self, pod: &k8s_openapi::api::core::v1::Pod) -> Status {
        for (name, p) in at!(self, self.points.pre_enqueue, as_pre_enqueue) {
            let s = (p as &dyn PreEnqueuePlugin).pre_enqueue(pod);
            if !s.is_success() {
                return s.with_plugin(name);
            }
        }
        Status::success()
    }

    /// PreFilter: the merged node set; a rejection stops the cycle.
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> (PreFilterResult, Status) {
        let start = Instant::now();
        let mut result = PreFilterResult::default();
        for (name, p) in at!(self, self.points.pre_filter, as_pre_filter) {
            let t = state.record_plugin_metrics.then(Instant::now);
            let (r, s) = (p as &dyn PreFilterPlugin).pre_filter(state, pod, nodes);
            self.observe_plugin(t, name, "PreFilter", s.code);
            if s.code == Code::Skip {
                state.skip_filter.insert(name.to_owned());
                continue;
            }
            if !s.is_success() {
                let s = s.with_plugin(name);
                self.observe("PreFilter", start, &s);
                return (result, s);
            }
            if let Some(names) = r.and_then(|r| r.node_names) {
                result.node_names = Some(match result.node_names.take() {
                    None => names,
                    Some(prev) => prev.intersection(&names).cloned().collect(),
                });
            }
        }
        let s = Status::success();
        self.observe("PreFilter", start, &s);
        (result, s)
    }

    /// PreFilter extensions: `victim` added to `node` in the precomputed state.
    pub fn run_pre_filter_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        victim: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        self.run_pre_filter_extension(state, |p, st| p.add_pod(st, pod, victim, node))
    }

    /// PreFilter extensions: `victim` removed from `node` in the precomputed state.
    pub fn run_pre_filter_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        victim: &PodInfo,
        node: &NodeInfo,
    ) -> Status {
        self.run_pre_filter_extension(state, |p, st| p.remove_pod(st, pod, victim, node))
    }

    /// Calls `f` on each PreFilter plugin that did not skip; the first failure wins.
    fn run_pre_filter_extension(
        &self,
        state: &mut CycleState,
        f: impl Fn(&dyn PreFilterPlugin, &mut CycleState) -> Status,
    ) -> Status {
        for (name, p) in at!(self, self.points.pre_filter, as_pre_filter) {
            if state.skip_filter.contains(name) {
                continue;
            }
            let s = f(p, state);
            if !s.is_success() {
                return s.with_plugin(name);
            }
        }
        Status::success()
    }

    /// Filter on one node: the first rejection, with its plugin.
    pub fn run_filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for (name, p) in at!(self, self.points.filter, as_filter) {
            if !state.skip_filter.is_empty() && state.skip_filter.contains(name) {
                continue;
            }
            let t = state.record_plugin_metrics.then(Instant::now);
            let s = (p as &dyn FilterPlugin).filter(state, pod, node);
            self.observe_plugin(t, name, "Filter", s.code);
            if !s.is_success() {
                return s.with_plugin(name);
            }
        }
        Status::success()
    }

    /// Upstream's `RunFilterPluginsWithNominatedPods`: with `nominated` (pending
    /// pods of at least this priority that preemption made room for on the node)
    /// counted on the node first, then, if that passes, without them (a filter
    /// such as inter-pod affinity may pass only thanks to them).
    pub fn run_filter_with_nominated(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        nominated: &[PodInfo],
    ) -> Status {
        if nominated.is_empty() {
            return self.run_filter(state, pod, node);
        }
        let mut st = state.clone();
        let mut ni = node.clone();
        for p in nominated {
            ni.add_pod(p.clone());
            let s = self.run_pre_filter_add_pod(&mut st, pod, p, &ni);
            if !s.is_success() {
                return s;
            }
        }
        let s = self.run_filter(&st, pod, &ni);
        if !s.is_success() {
            return s;
        }
        self.run_filter(state, pod, node)
    }

    /// Whether any PostFilter plugin is enabled.
    pub fn has_post_filter(&self) -> bool {
        at!(self, self.points.post_filter, as_post_filter)
            .next()
            .is_some()
    }

    /// PostFilter: the first plugin that nominates a node wins.
    pub async fn run_post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        statuses: &NodeStatuses,
    ) -> (Option<String>, Vec<Status>) {
        let start = Instant::now();
        let mut rejections = Vec::new();
        let mut clear = None;
        let plugins: Vec<_> = at!(self, self.points.post_filter, as_post_filter).collect();
        for (name, p) in plugins {
            let (nominated, s) = (p as &dyn PostFilterPlugin)
                .post_filter(self, state, pod, statuses)
                .await;
            if s.is_success() {
                self.observe("PostFilter", start, &s);
                return (nominated, Vec::new());
            }
            if nominated.is_some() {
                clear = nominated;
            }
            rejections.push(s.with_plugin(name));
        }
        self.observe(
            "PostFilter",
            start,
            &Status::new(Code::Unschedulable, Vec::<String>::new()),
        );
        (clear, rejections)
    }

    /// PreScore.
    pub fn run_pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Status {
        let start = Instant::now();
        for (name, p) in at!(self, self.points.pre_score, as_pre_score) {
            let t = state.record_plugin_metrics.then(Instant::now);
            let s = (p as &dyn PreScorePlugin).pre_score(state, pod, nodes);
            self.observe_plugin(t, name, "PreScore", s.code);
            if s.code == Code::Skip {
                state.skip_score.insert(name.to_owned());
                continue;
            }
            if !s.is_success() {
                let s = s.with_plugin(name);
                self.observe("PreScore", start, &s);
                return s;
            }
        }
        let s = Status::success();
        self.observe("PreScore", start, &s);
        s
    }

    /// Whether any Score plugin is enabled.
    pub fn has_score(&self) -> bool {
        !self.points.score.is_empty()
    }

    /// Score and NormalizeScore: each node's weighted total. Nodes are scored in
    /// parallel, every plugin per node; normalizing runs per plugin after.
    pub fn run_score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
    ) -> Result<Vec<NodeScore>, Status> {
        let start = Instant::now();
        let scorers: Vec<(&'static str, &dyn super::ScorePlugin, i64)> = self
            .points
            .score
            .iter()
            .filter(|(p, _)| state.skip_score.is_empty() || !state.skip_score.contains(p.name()))
            .filter_map(|(p, w)| p.as_score().map(|s| (p.name(), s, *w)))
            .collect();
        // Per node, each plugin's raw score, or the first failure.
        let raw = self.parallelizer.until(nodes.len(), |i, stop| {
            let n = &nodes[i];
            let mut out = Vec::with_capacity(scorers.len());
            for (name, scorer, _) in &scorers {
                let t = state.record_plugin_metrics.then(Instant::now);
                let (score, s) = scorer.score(state, pod, n);
                self.observe_plugin(t, name, "Score", s.code);
                if !s.is_success() {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Some(Err(s.with_plugin(name)));
                }
                out.push(score);
            }
            Some(Ok(out))
        });
        let mut per_node = Vec::with_capacity(nodes.len());
        for r in raw {
            match r {
                Some(Ok(v)) => per_node.push(v),
                Some(Err(s)) => {
                    self.observe("Score", start, &s);
                    return Err(s);
                }
                // Stopped after another node's failure, reported above or below.
                None => {}
            }
        }
        if per_node.len() != nodes.len() {
            let s = Status::error("scoring was cancelled");
            self.observe("Score", start, &s);
            return Err(s);
        }
        let mut totals: Vec<NodeScore> = nodes
            .iter()
            .map(|n| NodeScore {
                name: n.name().to_owned(),
                score: 0,
            })
            .collect();
        for (j, (name, scorer, weight)) in scorers.iter().enumerate() {
            let mut scores: Vec<NodeScore> = nodes
                .iter()
                .zip(&per_node)
                .map(|(n, v)| NodeScore {
                    name: n.name().to_owned(),
                    score: v[j],
                })
                .collect();
            let s = scorer.normalize(state, pod, &mut scores);
            if !s.is_success() {
                return Err(s.with_plugin(name));
            }
            for (t, s) in totals.iter_mut().zip(&scores) {
                if !(super::MIN_NODE_SCORE..=super::MAX_NODE_SCORE).contains(&s.score) {
                    return Err(Status::error(format!(
                        "plugin {:?} returns an invalid score {}, it should in the range of [{}, {}] after normalizing",
                        name,
                        s.score,
                        super::MIN_NODE_SCORE,
                        super::MAX_NODE_SCORE
                    ))
                    .with_plugin(name));
                }
                t.score += s.score * weight;
            }
        }
        self.observe("Score", start, &Status::success());
        Ok(totals)
    }

    /// Reserve, in order; on failure the caller runs Unreserve.
    pub fn run_reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        for (name, p) in at!(self, self.points.reserve, as_reserve) {
            let s = (p as &dyn ReservePlugin).reserve(state, pod, node);
            if !s.is_success() {
                return s.with_plugin(name);
            }
        }
        Status::success()
    }

    /// Unreserve, in reverse order.
    pub fn run_unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) {
        let plugins: Vec<_> = at!(self, self.points.reserve, as_reserve).collect();
        for (_, p) in plugins.into_iter().rev() {
            (p as &dyn ReservePlugin).unreserve(state, pod, node);
        }
    }

    /// Permit: success, a rejection, or [`Code::Wait`] after parking the pod in
    /// the profile's waiting pods (each plugin's timeout capped at 15 minutes).
    pub fn run_permit(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        let start = Instant::now();
        let mut waits = HashMap::new();
        for (name, p) in at!(self, self.points.permit, as_permit) {
            let (s, d) = (p as &dyn super::PermitPlugin).permit(state, pod, node);
            match s.code {
                Code::Success => {}
                Code::Wait => {
                    waits.insert(name.to_owned(), d.min(super::waiting::MAX_TIMEOUT));
                }
                _ if s.is_rejected() => {
                    self.observe("Permit", start, &s);
                    return s.with_plugin(name);
                }
                _ => {
                    let s =
                        Status::error(format!("running Permit plugin {name:?}: {}", s.message()));
                    self.observe("Permit", start, &s);
                    return s.with_plugin(name);
                }
            }
        }
        if waits.is_empty() {
            self.observe("Permit", start, &Status::success());
            return Status::success();
        }
        let rx = self.waiting.add(pod.pod.clone(), node, waits);
        self.permits.lock().insert(pod_uid(pod), rx);
        let name = pod.pod.metadata.name.as_deref().unwrap_or_default();
        let s = Status::new(
            Code::Wait,
            [format!(
                "one or more plugins asked to wait and no plugin rejected pod {name:?}"
            )],
        );
        self.observe("Permit", start, &s);
        s
    }

    /// Upstream's `WaitOnPermit`: for a pod Permit parked, its outcome.
    pub async fn wait_on_permit(&self, pod: &PodInfo) -> Status {
        let uid = pod_uid(pod);
        let Some(rx) = self.permits.lock().remove(&uid) else {
            return Status::success();
        };
        let start = Instant::now();
        let s = super::waiting::outcome(rx).await;
        self.waiting.remove(&uid);
        self.metrics
            .permit_wait_duration
            .with_label_values(&[s.code.as_str()])
            .observe(start.elapsed().as_secs_f64());
        s
    }

    /// The profile's pods waiting at Permit.
    pub fn waiting_pods(&self) -> &Arc<super::waiting::WaitingPods> {
        &self.waiting
    }

    /// PreBind.
    pub async fn run_pre_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        let plugins: Vec<_> = at!(self, self.points.pre_bind, as_pre_bind).collect();
        for (name, p) in plugins {
            let s = (p as &dyn PreBindPlugin).pre_bind(state, pod, node).await;
            if s.is_rejected() {
                return s.with_plugin(name);
            }
            if !s.is_success() {
                let msg = format!("running PreBind plugin {name:?}: {}", s.message());
                return Status::error(msg).with_plugin(name);
            }
        }
        Status::success()
    }

    /// Bind: the first plugin that does not skip.
    pub async fn run_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) -> Status {
        let start = Instant::now();
        let plugins: Vec<_> = at!(self, self.points.bind, as_bind).collect();
        for (name, p) in plugins {
            let s = (p as &dyn BindPlugin).bind(state, pod, node).await;
            if s.code == Code::Skip {
                continue;
            }
            let s = if s.is_success() {
                s
            } else {
                Status::error(format!("running Bind plugin {name:?}: {}", s.message()))
            };
            let s = s.with_plugin(name);
            self.observe("Bind", start, &s);
            return s;
        }
        Status::skip()
    }

    /// PostBind.
    pub fn run_post_bind(&self, state: &CycleState, pod: &PodInfo, node: &str) {
        for (_, p) in at!(self, self.points.post_bind, as_post_bind) {
            (p as &dyn PostBindPlugin).post_bind(state, pod, node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_cycles_record_plugin_durations() {
        let metrics = Metrics::unregistered();
        let fit: Arc<dyn Plugin> =
            Arc::new(crate::plugins::noderesources::Fit::new(Default::default()));
        let fwk = Framework::new(
            "default-scheduler".into(),
            HashMap::from([("NodeResourcesFit".to_owned(), fit)]),
            Points {
                filter: vec!["NodeResourcesFit".into()],
                ..Default::default()
            },
            metrics.clone(),
        );
        let pod = PodInfo::new(Arc::new(Default::default()));
        let node = NodeInfo::default();
        let count = || {
            metrics
                .plugin_duration
                .with_label_values(&["NodeResourcesFit", "Filter", "Unschedulable"])
                .get_sample_count()
        };
        let mut state = CycleState::default();
        fwk.run_filter(&state, &pod, &node);
        assert_eq!(count(), 0, "not sampled");
        state.record_plugin_metrics = true;
        // An empty node allows no pods: "Too many pods".
        assert_eq!(
            fwk.run_filter(&state, &pod, &node).code,
            Code::Unschedulable
        );
        assert_eq!(count(), 1);
    }

    /// A Permit plugin that makes every pod wait for 30 s (a gang scheduler's
    /// shape), or rejects pods named `reject-*`.
    struct Gang;
    impl Plugin for Gang {
        fn name(&self) -> &'static str {
            "Gang"
        }
        fn as_permit(&self) -> Option<&dyn super::super::PermitPlugin> {
            Some(self)
        }
    }
    impl super::super::PermitPlugin for Gang {
        fn permit(
            &self,
            _: &mut CycleState,
            pod: &PodInfo,
            _: &str,
        ) -> (Status, std::time::Duration) {
            if pod
                .pod
                .metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .starts_with("reject-")
            {
                return (Status::unschedulable("gang incomplete"), Default::default());
            }
            (
                Status::new(Code::Wait, Vec::<String>::new()),
                std::time::Duration::from_secs(30),
            )
        }
    }

    fn gang() -> (Framework, Metrics) {
        let metrics = Metrics::unregistered();
        let fwk = Framework::new(
            "default-scheduler".into(),
            HashMap::from([("Gang".to_owned(), Arc::new(Gang) as Arc<dyn Plugin>)]),
            Points {
                permit: vec!["Gang".into()],
                ..Default::default()
            },
            metrics.clone(),
        );
        (fwk, metrics)
    }

    fn pod(name: &str) -> PodInfo {
        let mut p = k8s_openapi::api::core::v1::Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(format!("uid-{name}"));
        PodInfo::new(Arc::new(p))
    }

    #[tokio::test(start_paused = true)]
    async fn permit_parks_pods_until_allowed_rejected_or_timed_out() {
        let (fwk, metrics) = gang();
        let mut state = CycleState::default();
        // Allowed later by the plugin (through the waiting pods).
        let p = pod("a");
        let s = fwk.run_permit(&mut state, &p, "n1");
        assert_eq!(s.code, Code::Wait);
        assert_eq!(
            s.message(),
            "one or more plugins asked to wait and no plugin rejected pod \"a\""
        );
        let wp = fwk.waiting_pods().get("uid-a").unwrap();
        assert_eq!(wp.pending_plugins(), ["Gang"]);
        wp.allow("Gang");
        assert!(fwk.wait_on_permit(&p).await.is_success());
        assert!(fwk.waiting_pods().get("uid-a").is_none());
        // Nobody allows it: the timeout rejects it in upstream's words.
        let p = pod("b");
        assert_eq!(fwk.run_permit(&mut state, &p, "n1").code, Code::Wait);
        let s = fwk.wait_on_permit(&p).await;
        assert_eq!(
            s,
            Status::unschedulable("rejected due to timeout after waiting 30s at plugin Gang")
                .with_plugin("Gang")
        );
        // A plain rejection never waits.
        let s = fwk.run_permit(&mut state, &pod("reject-c"), "n1");
        assert_eq!(
            s,
            Status::unschedulable("gang incomplete").with_plugin("Gang")
        );
        // A pod Permit did not park does not wait.
        assert!(fwk.wait_on_permit(&pod("d")).await.is_success());
        let waited = |r: &str| {
            metrics
                .permit_wait_duration
                .with_label_values(&[r])
                .get_sample_count()
        };
        assert_eq!((waited("Success"), waited("Unschedulable")), (1, 1));
    }

    #[test]
    fn nominated_pods_take_their_room_first() {
        use crate::plugins::testutil::{node, snapshot};
        let fit: Arc<dyn Plugin> =
            Arc::new(crate::plugins::noderesources::Fit::new(Default::default()));
        let fwk = Framework::new(
            "default-scheduler".into(),
            HashMap::from([("NodeResourcesFit".to_owned(), fit)]),
            Points {
                filter: vec!["NodeResourcesFit".into()],
                ..Default::default()
            },
            Metrics::unregistered(),
        );
        let mut n = node("n1").obj().as_ref().clone();
        let alloc = std::collections::BTreeMap::from([
            (
                "cpu".to_owned(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("2".into()),
            ),
            (
                "pods".to_owned(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("10".into()),
            ),
        ]);
        n.status = Some(k8s_openapi::api::core::v1::NodeStatus {
            allocatable: Some(alloc),
            ..Default::default()
        });
        let infos = snapshot(&[Arc::new(n)], &[]);
        let wants = |name: &str, cpu: &str| {
            let mut p = k8s_openapi::api::core::v1::Pod::default();
            p.metadata.name = Some(name.into());
            p.metadata.namespace = Some("default".into());
            p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
                containers: vec![k8s_openapi::api::core::v1::Container {
                    name: "c".into(),
                    resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                        requests: Some(std::collections::BTreeMap::from([(
                            "cpu".to_owned(),
                            k8s_openapi::apimachinery::pkg::api::resource::Quantity(cpu.into()),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            });
            PodInfo::new(Arc::new(p))
        };
        let state = CycleState::default();
        let me = wants("me", "1");
        assert!(
            fwk.run_filter_with_nominated(&state, &me, &infos[0], &[])
                .is_success()
        );
        let s = fwk.run_filter_with_nominated(&state, &me, &infos[0], &[wants("preemptor", "2")]);
        assert_eq!(s.message(), "Insufficient cpu");
        assert!(
            fwk.run_filter_with_nominated(&state, &me, &infos[0], &[wants("small", "1")])
                .is_success()
        );
    }
}
