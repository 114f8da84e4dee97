//! The scheduling queue, as upstream's `backend/queue`: pods waiting to be
//! scheduled, in four places.
//!
//! - **active**: ready to be tried, ordered as PrioritySort orders them (higher
//!   priority first, then earlier arrival).
//! - **backoff**: failed recently; each waits `podInitialBackoffSeconds` doubled
//!   per attempt up to `podMaxBackoffSeconds`, then goes back to active (checked
//!   every second).
//! - **unschedulable**: rejected by plugins; they stay until a cluster event one of
//!   those plugins registered for (a node added, a pod deleted, …) moves them to
//!   backoff or active, or until `podMaxInUnschedulablePodsDuration` (5 min) has
//!   passed (checked every 30 s).
//! - **gated**: held back by a PreEnqueue plugin (scheduling gates) until an update
//!   lets them in.
//!
//! An event that arrives while a pod is being tried is not lost: a pod that fails
//! in a cycle that began before the last move request goes to backoff rather
//! than unschedulable (upstream's `moveRequestCycle`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::framework::types::{PodInfo, pod_key};
use crate::framework::{Changed, ClusterEvent, QueuedPodInfo, QueueingHint};
use crate::metrics::Metrics;
use crate::plugins::simple::priority;

/// upstream's `DefaultPodMaxInUnschedulablePodsDuration`.
pub const MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(300);

/// Decides whether a pod may enter the active queue (the profile's PreEnqueue
/// plugins): `None` to enqueue, else the gating plugin.
pub type Gate = Arc<dyn Fn(&Pod) -> Option<String> + Send + Sync>;

type ActiveKey = (Reverse<i32>, Duration, u64);

#[derive(Default)]
struct Inner {
    active: BTreeMap<ActiveKey, String>,
    backoff: BTreeMap<(Instant, u64), String>,
    /// Every queued pod, with where it is.
    pods: HashMap<String, (QueuedPodInfo, Place)>,
    /// The keys in `Place::Unschedulable` and `Place::Gated`, so that events and
    /// gauges never walk every queued pod.
    unschedulable: HashSet<String>,
    gated: HashSet<String>,
    seq: u64,
    scheduling_cycle: u64,
    move_request_cycle: u64,
    closed: bool,
    /// Upstream's nominator: pending pods that preemption made room for, by the
    /// node they were nominated to (the room is theirs while they wait).
    nominated: HashMap<String, Vec<PodInfo>>,
    /// pod key → its nominated node.
    nominated_node: HashMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Place {
    Active(ActiveKey),
    Backoff((Instant, u64)),
    Unschedulable(Instant),
    Gated,
    /// Popped and being tried.
    InFlight,
}

/// The scheduling queue.
pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    start: Instant,
    initial_backoff: Duration,
    max_backoff: Duration,
    /// plugin → the events that may resolve its rejections.
    plugin_events: HashMap<String, Vec<ClusterEvent>>,
    hinter: std::sync::OnceLock<Hinter>,
    gate: Gate,
    metrics: Metrics,
}

/// Answers a plugin's queueing hint for a pod: `(plugin, event, pod, changed)`.
pub type Hinter = Arc<dyn Fn(&str, ClusterEvent, &PodInfo, &Changed) -> QueueingHint + Send + Sync>;

impl SchedulingQueue {
    /// A queue with the given backoffs, plugins' events and gate.
    pub fn new(
        initial_backoff: Duration,
        max_backoff: Duration,
        plugin_events: HashMap<String, Vec<ClusterEvent>>,
        gate: Gate,
        metrics: Metrics,
    ) -> Arc<Self> {
        Arc::new(SchedulingQueue {
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            start: Instant::now(),
            initial_backoff,
            max_backoff,
            plugin_events,
            hinter: std::sync::OnceLock::new(),
            gate,
            metrics,
        })
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Time since the queue began (the clock of [`QueuedPodInfo`]'s timestamps).
    pub fn since_start(&self) -> Duration {
        self.now()
    }

    fn gauges(&self, inner: &Inner) {
        let counts = [
            inner.active.len(),
            inner.backoff.len(),
            inner.unschedulable.len(),
            inner.gated.len(),
        ];
        for (q, n) in ["active", "backoff", "unschedulable", "gated"]
            .iter()
            .zip(counts)
        {
            self.metrics
                .pending_pods
                .with_label_values(&[q])
                .set(n as i64);
        }
    }

    /// Files `qpi` under `key` at `place`, keeping the place indexes.
    fn place(inner: &mut Inner, key: String, qpi: QueuedPodInfo, place: Place) {
        match place {
            Place::Unschedulable(_) => {
                inner.unschedulable.insert(key.clone());
            }
            Place::Gated => {
                inner.gated.insert(key.clone());
            }
            _ => {}
        }
        inner.pods.insert(key, (qpi, place));
    }

    fn incoming(&self, queue: &str, event: &str) {
        self.metrics
            .incoming_pods
            .with_label_values(&[queue, event])
            .inc();
    }

    /// Removes `key` from wherever it is.
    fn unlink(inner: &mut Inner, key: &str) -> Option<QueuedPodInfo> {
        let (qpi, place) = inner.pods.remove(key)?;
        match place {
            Place::Active(k) => {
                inner.active.remove(&k);
            }
            Place::Backoff(k) => {
                inner.backoff.remove(&k);
            }
            Place::Unschedulable(_) => {
                inner.unschedulable.remove(key);
            }
            Place::Gated => {
                inner.gated.remove(key);
            }
            Place::InFlight => {}
        }
        Some(qpi)
    }

    fn to_active(&self, inner: &mut Inner, qpi: QueuedPodInfo, event: &str) {
        if let Some(plugin) = (self.gate)(&qpi.info.pod) {
            let key = qpi.info.key();
            let mut qpi = qpi;
            qpi.gating_plugin = Some(plugin);
            Self::place(inner, key, qpi, Place::Gated);
            self.incoming("gated", event);
            return;
        }
        inner.seq += 1;
        let k = (Reverse(priority(&qpi.info.pod)), qpi.timestamp, inner.seq);
        let key = qpi.info.key();
        inner.active.insert(k, key.clone());
        inner.pods.insert(key, (qpi, Place::Active(k)));
        self.incoming("active", event);
        self.notify.notify_one();
    }

    fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.initial_backoff;
        for _ in 1..attempts {
            if d > self.max_backoff.saturating_sub(d) {
                return self.max_backoff;
            }
            d += d;
        }
        d.min(self.max_backoff)
    }

    fn to_backoff(&self, inner: &mut Inner, qpi: QueuedPodInfo, since: Instant, event: &str) {
        let until = since + self.backoff_duration(qpi.attempts.max(1));
        if until <= Instant::now() {
            return self.to_active(inner, qpi, event);
        }
        inner.seq += 1;
        let k = (until, inner.seq);
        let key = qpi.info.key();
        inner.backoff.insert(k, key.clone());
        inner.pods.insert(key, (qpi, Place::Backoff(k)));
        self.incoming("backoff", event);
    }

    fn nominate_locked(inner: &mut Inner, pi: &PodInfo, node: &str) {
        let key = pi.key();
        Self::forget_nominated_locked(inner, &key);
        if node.is_empty() {
            return;
        }
        inner.nominated_node.insert(key, node.to_owned());
        inner
            .nominated
            .entry(node.to_owned())
            .or_default()
            .push(pi.clone());
    }

    fn forget_nominated_locked(inner: &mut Inner, key: &str) {
        if let Some(node) = inner.nominated_node.remove(key)
            && let Some(list) = inner.nominated.get_mut(&node)
        {
            list.retain(|p| p.key() != key);
            if list.is_empty() {
                inner.nominated.remove(&node);
            }
        }
    }

    /// The pod's nomination from its status, if it has one (a restart, or another
    /// scheduler instance's preemption).
    fn nomination_from_status(inner: &mut Inner, pi: &PodInfo) {
        if let Some(node) = pi
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty())
        {
            Self::nominate_locked(inner, pi, node);
        } else if let Some(node) = inner.nominated_node.get(&pi.key()).cloned() {
            // Keep the nomination, with the newer pod.
            Self::nominate_locked(inner, pi, &node);
        }
    }

    /// Preemption nominated `pi` to `node` (`""`: clears its nomination).
    pub fn nominate(&self, pi: &PodInfo, node: &str) {
        Self::nominate_locked(&mut self.inner.lock(), pi, node);
    }

    /// The pod is assumed on a node, bound, or gone: its nomination ends.
    pub fn forget_nominated(&self, key: &str) {
        Self::forget_nominated_locked(&mut self.inner.lock(), key);
    }

    /// Per node, the nominated pods whose priority is at least `pod`'s (other
    /// than `pod`): the room Filter must leave them, as upstream's
    /// `addGENominatedPods`.
    pub fn nominated_for(&self, pod: &PodInfo) -> HashMap<String, Vec<PodInfo>> {
        let inner = self.inner.lock();
        if inner.nominated.is_empty() {
            return HashMap::new();
        }
        let prio = priority(&pod.pod);
        let key = pod.key();
        inner
            .nominated
            .iter()
            .filter_map(|(node, pods)| {
                let v: Vec<PodInfo> = pods
                    .iter()
                    .filter(|p| p.key() != key && priority(&p.pod) >= prio)
                    .cloned()
                    .collect();
                (!v.is_empty()).then(|| (node.clone(), v))
            })
            .collect()
    }

    /// A new pending pod.
    pub fn add(&self, pod: Arc<Pod>) {
        let mut inner = self.inner.lock();
        let key = pod_key(&pod);
        if inner.pods.contains_key(&key) {
            return;
        }
        let qpi = QueuedPodInfo {
            info: PodInfo::new(pod),
            timestamp: self.now(),
            attempts: 0,
            initial_attempt: None,
            unschedulable_plugins: HashSet::new(),
            gating_plugin: None,
        };
        Self::nomination_from_status(&mut inner, &qpi.info);
        self.to_active(&mut inner, qpi, "PodAdd");
        self.gauges(&inner);
    }

    /// A pending pod changed: the queue holds the new version; a gated or
    /// unschedulable pod whose spec changed is tried again.
    pub fn update(&self, pod: Arc<Pod>) {
        let mut inner = self.inner.lock();
        let key = pod_key(&pod);
        let Some((qpi, place)) = inner.pods.get(&key).cloned() else {
            drop(inner);
            return self.add(pod);
        };
        let spec_changed = qpi.info.pod.spec != pod.spec
            || qpi.info.pod.metadata.labels != pod.metadata.labels
            || qpi.info.pod.metadata.annotations != pod.metadata.annotations;
        let mut qpi = qpi;
        qpi.info = PodInfo::new(pod);
        Self::nomination_from_status(&mut inner, &qpi.info);
        match place {
            Place::Gated | Place::Unschedulable(_) if spec_changed => {
                Self::unlink(&mut inner, &key);
                qpi.gating_plugin = None;
                if qpi.attempts > 0 {
                    self.to_backoff(&mut inner, qpi, Instant::now(), "PodUpdate");
                } else {
                    self.to_active(&mut inner, qpi, "PodUpdate");
                }
            }
            _ => {
                if let Some(e) = inner.pods.get_mut(&key) {
                    e.0 = qpi;
                }
            }
        }
        self.gauges(&inner);
    }

    /// A pending pod deleted (or bound elsewhere).
    pub fn delete(&self, pod: &Pod) {
        let mut inner = self.inner.lock();
        Self::forget_nominated_locked(&mut inner, &pod_key(pod));
        Self::unlink(&mut inner, &pod_key(pod));
        self.gauges(&inner);
    }

    /// Waits for the next pod to try, and marks it in flight. `None` once closed.
    pub async fn pop(&self) -> Option<QueuedPodInfo> {
        loop {
            let notified = self.notify.notified();
            {
                let mut inner = self.inner.lock();
                if inner.closed {
                    return None;
                }
                if let Some((_, key)) = inner.active.pop_first() {
                    inner.scheduling_cycle += 1;
                    let now = self.now();
                    if let Some(e) = inner.pods.get_mut(&key) {
                        e.1 = Place::InFlight;
                        e.0.attempts += 1;
                        e.0.initial_attempt.get_or_insert(now);
                        let qpi = e.0.clone();
                        self.gauges(&inner);
                        return Some(qpi);
                    }
                    continue;
                }
            }
            notified.await;
        }
    }

    /// The cycle number of the last pop.
    pub fn scheduling_cycle(&self) -> u64 {
        self.inner.lock().scheduling_cycle
    }

    /// A tried pod is done (bound, or gone): it leaves the queue.
    pub fn done(&self, key: &str) {
        let mut inner = self.inner.lock();
        if matches!(inner.pods.get(key), Some((_, Place::InFlight))) {
            inner.pods.remove(key);
        }
    }

    /// A pod the plugins rejected in cycle `cycle`: unschedulable, or backoff when a
    /// move request came in since the cycle began or it failed with an error
    /// (`rejected_by` empty and `error`).
    pub fn requeue(
        &self,
        mut qpi: QueuedPodInfo,
        cycle: u64,
        rejected_by: HashSet<String>,
        error: bool,
    ) {
        let mut inner = self.inner.lock();
        let key = qpi.info.key();
        // Deleted while in flight: gone.
        if !matches!(inner.pods.get(&key), Some((_, Place::InFlight))) {
            return;
        }
        inner.pods.remove(&key);
        qpi.unschedulable_plugins = rejected_by;
        let now = Instant::now();
        if error || inner.move_request_cycle >= cycle {
            self.to_backoff(&mut inner, qpi, now, "ScheduleAttemptFailure");
        } else {
            Self::place(&mut inner, key, qpi, Place::Unschedulable(now));
            self.incoming("unschedulable", "ScheduleAttemptFailure");
        }
        self.gauges(&inner);
    }

    /// Whether `events` (one change) may help `qpi`: one of the plugins that
    /// rejected it registered one of the events, and its queueing hint agrees.
    fn relevant(&self, qpi: &QueuedPodInfo, events: &[ClusterEvent], changed: &Changed) -> bool {
        if events.contains(&ClusterEvent::Any) || qpi.unschedulable_plugins.is_empty() {
            return true;
        }
        qpi.unschedulable_plugins.iter().any(|p| {
            let Some(registered) = self.plugin_events.get(p) else {
                return false;
            };
            events.iter().any(|e| {
                registered.contains(e)
                    && self
                        .hinter
                        .get()
                        .is_none_or(|h| h(p, *e, &qpi.info, changed) == QueueingHint::Queue)
            })
        })
    }

    /// Sets the queueing hints (the pod's profile's plugins answer them).
    pub fn set_hinter(&self, h: Hinter) {
        let _ = self.hinter.set(h);
    }

    /// A cluster event whose object is not known: unschedulable pods it may help
    /// go to backoff (if still backing off) or active.
    pub fn move_all(&self, event: ClusterEvent) {
        self.move_all_for(&[event], &Changed::Nothing);
    }

    /// One change, which may be several events (a node update that changed labels
    /// and allocatable), with its object for the plugins' queueing hints.
    pub fn move_all_for(&self, events: &[ClusterEvent], changed: &Changed) {
        let Some(label) = events.first().map(|e| e.label()) else {
            return;
        };
        tracing::debug!(event = label, "moving unschedulable pods");
        let mut inner = self.inner.lock();
        inner.move_request_cycle = inner.scheduling_cycle;
        let keys: Vec<(String, Instant)> = inner
            .unschedulable
            .iter()
            .filter_map(|k| match inner.pods.get(k) {
                Some((qpi, Place::Unschedulable(since))) if self.relevant(qpi, events, changed) => {
                    Some((k.clone(), *since))
                }
                _ => None,
            })
            .collect();
        for (k, since) in keys {
            if let Some(qpi) = Self::unlink(&mut inner, &k) {
                self.to_backoff(&mut inner, qpi, since, label);
            }
        }
        self.gauges(&inner);
    }

    /// Moves pods whose backoff has ended to active (upstream: every second).
    pub fn flush_backoff(&self) {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        let mut moved = false;
        while let Some(entry) = inner.backoff.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            if let Some((qpi, _)) = inner.pods.remove(&key) {
                self.to_active(&mut inner, qpi, "BackoffComplete");
                moved = true;
            }
        }
        if moved {
            self.gauges(&inner);
        }
    }

    /// Moves pods unschedulable for longer than [`MAX_IN_UNSCHEDULABLE`] (upstream:
    /// every 30 s).
    pub fn flush_unschedulable(&self) {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        let old: Vec<(String, Instant)> = inner
            .unschedulable
            .iter()
            .filter_map(|k| match inner.pods.get(k) {
                Some((_, Place::Unschedulable(since)))
                    if now.duration_since(*since) > MAX_IN_UNSCHEDULABLE =>
                {
                    Some((k.clone(), *since))
                }
                _ => None,
            })
            .collect();
        for (k, since) in old {
            if let Some(qpi) = Self::unlink(&mut inner, &k) {
                self.to_backoff(&mut inner, qpi, since, ClusterEvent::Any.label());
            }
        }
        self.gauges(&inner);
    }

    /// Runs the two flush loops until the queue is dropped.
    pub async fn run_flushes(self: Arc<Self>) {
        let mut backoff = tokio::time::interval(Duration::from_secs(1));
        let mut unsched = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = backoff.tick() => self.flush_backoff(),
                _ = unsched.tick() => self.flush_unschedulable(),
            }
        }
    }

    /// Stops `pop`.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.notify.notify_waiters();
    }

    /// How many pods are active, backing off, unschedulable and gated.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let inner = self.inner.lock();
        let mut c = (0, 0, 0, 0);
        for (_, p) in inner.pods.values() {
            match p {
                Place::Active(_) => c.0 += 1,
                Place::Backoff(_) => c.1 += 1,
                Place::Unschedulable(_) => c.2 += 1,
                Place::Gated => c.3 += 1,
                Place::InFlight => {}
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodSchedulingGate, PodSpec};

    use super::*;

    fn pod(name: &str, prio: i32) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                priority: Some(prio),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn queue() -> Arc<SchedulingQueue> {
        let events = HashMap::from([(
            "NodeResourcesFit".to_owned(),
            vec![ClusterEvent::NodeAdd, ClusterEvent::AssignedPodDelete],
        )]);
        let gate: Gate = Arc::new(|p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.scheduling_gates.as_ref())
                .is_some_and(|g| !g.is_empty())
                .then(|| "SchedulingGates".to_owned())
        });
        SchedulingQueue::new(
            Duration::from_secs(1),
            Duration::from_secs(10),
            events,
            gate,
            Metrics::unregistered(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn priority_then_arrival_order() {
        let q = queue();
        q.add(pod("low", 0));
        tokio::time::advance(Duration::from_millis(1)).await;
        q.add(pod("high", 10));
        tokio::time::advance(Duration::from_millis(1)).await;
        q.add(pod("low2", 0));
        let order: Vec<String> = [q.pop().await, q.pop().await, q.pop().await]
            .into_iter()
            .map(|p| p.unwrap().info.key())
            .collect();
        assert_eq!(order, ["default/high", "default/low", "default/low2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn queueing_hints_decide_which_events_move_a_pod() {
        let q = queue();
        // The plugin says only nodes named "big" can help.
        q.set_hinter(Arc::new(|plugin, _, _, changed| match changed {
            Changed::Node { new, .. }
                if plugin == "NodeResourcesFit" && new.metadata.name.as_deref() != Some("big") =>
            {
                QueueingHint::Skip
            }
            _ => QueueingHint::Queue,
        }));
        q.add(pod("p", 0));
        let p = q.pop().await.unwrap();
        let cycle = q.scheduling_cycle();
        q.requeue(
            p,
            cycle,
            HashSet::from(["NodeResourcesFit".to_owned()]),
            false,
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        let node = |name: &str| {
            let mut n = k8s_openapi::api::core::v1::Node::default();
            n.metadata.name = Some(name.into());
            Changed::Node {
                old: None,
                new: Arc::new(n),
            }
        };
        q.move_all_for(&[ClusterEvent::NodeAdd], &node("small"));
        assert_eq!(q.counts(), (0, 0, 1, 0), "the hint skipped it");
        q.move_all_for(&[ClusterEvent::NodeTaintChange], &node("big"));
        assert_eq!(q.counts(), (0, 0, 1, 0), "not a registered event");
        // One update that is several events: any registered one counts.
        q.move_all_for(
            &[ClusterEvent::NodeTaintChange, ClusterEvent::NodeAdd],
            &node("big"),
        );
        assert_eq!(q.counts(), (1, 0, 0, 0));
    }

    #[test]
    fn nominated_pods_reserve_room_for_equal_or_higher_priority() {
        let q = queue();
        let high = PodInfo::new(pod("high", 100));
        let low = PodInfo::new(pod("low", 1));
        q.nominate(&high, "n1");
        q.nominate(&low, "n2");
        let seen = |p: &PodInfo| {
            let mut v: Vec<(String, String)> = q
                .nominated_for(p)
                .into_iter()
                .flat_map(|(n, ps)| ps.into_iter().map(move |p| (n.clone(), p.key())))
                .collect();
            v.sort();
            v
        };
        let mid = PodInfo::new(pod("mid", 50));
        assert_eq!(seen(&mid), [("n1".to_owned(), "default/high".to_owned())]);
        assert_eq!(seen(&high), [], "not its own nomination, nor lower ones");
        // A nomination moves, and ends when the pod is assumed or deleted.
        q.nominate(&high, "n3");
        assert_eq!(seen(&mid), [("n3".to_owned(), "default/high".to_owned())]);
        q.forget_nominated("default/high");
        assert!(seen(&mid).is_empty());
        // A pending pod whose status carries a nomination (a restart) has it.
        let mut p = (*pod("again", 100)).clone();
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            nominated_node_name: Some("n4".into()),
            ..Default::default()
        });
        q.add(Arc::new(p.clone()));
        assert_eq!(seen(&mid), [("n4".to_owned(), "default/again".to_owned())]);
        q.delete(&p);
        assert!(seen(&mid).is_empty());
    }

    #[test]
    fn backoff_doubles_to_the_max() {
        let q = queue();
        let d: Vec<u64> = (1..=6).map(|a| q.backoff_duration(a).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 10, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_move_on_their_plugins_events_only() {
        let q = queue();
        q.add(pod("p", 0));
        let p = q.pop().await.unwrap();
        let cycle = q.scheduling_cycle();
        q.requeue(
            p,
            cycle,
            HashSet::from(["NodeResourcesFit".to_owned()]),
            false,
        );
        assert_eq!(q.counts(), (0, 0, 1, 0));
        q.move_all(ClusterEvent::NodeTaintChange);
        assert_eq!(
            q.counts(),
            (0, 0, 1, 0),
            "not an event NodeResourcesFit registered"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        q.move_all(ClusterEvent::NodeAdd);
        assert_eq!(q.counts(), (1, 0, 0, 0), "its 1 s backoff is over: active");
        // Tried again and failed: 2 s of backoff now.
        let p = q.pop().await.unwrap();
        assert_eq!(p.attempts, 2);
        let cycle = q.scheduling_cycle();
        q.move_all(ClusterEvent::NodeAdd);
        q.requeue(
            p,
            cycle,
            HashSet::from(["NodeResourcesFit".to_owned()]),
            false,
        );
        assert_eq!(
            q.counts(),
            (0, 1, 0, 0),
            "an event during the cycle: backoff, not unschedulable"
        );
        tokio::time::advance(Duration::from_millis(1500)).await;
        q.flush_backoff();
        assert_eq!(q.counts(), (0, 1, 0, 0));
        tokio::time::advance(Duration::from_millis(600)).await;
        q.flush_backoff();
        assert_eq!(q.counts(), (1, 0, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn flush_after_five_minutes_and_gates() {
        let q = queue();
        q.add(pod("p", 0));
        let p = q.pop().await.unwrap();
        q.requeue(
            p,
            q.scheduling_cycle(),
            HashSet::from(["NodeResourcesFit".to_owned()]),
            false,
        );
        tokio::time::advance(Duration::from_secs(299)).await;
        q.flush_unschedulable();
        assert_eq!(q.counts().2, 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        q.flush_unschedulable();
        assert_eq!(q.counts().0, 1);

        let mut gated = (*pod("g", 0)).clone();
        gated.spec.as_mut().unwrap().scheduling_gates =
            Some(vec![PodSchedulingGate { name: "x".into() }]);
        q.add(Arc::new(gated.clone()));
        assert_eq!(q.counts().3, 1);
        gated.spec.as_mut().unwrap().scheduling_gates = None;
        q.update(Arc::new(gated));
        assert_eq!(q.counts(), (2, 0, 0, 0), "ungated: active");
    }
}
