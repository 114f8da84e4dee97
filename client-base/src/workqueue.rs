//! A work queue with client-go's `workqueue` semantics, and its metrics.
//!
//! - An item is queued at most once (the dirty set), however often it is added.
//! - An item is handed to one worker at a time: one added while being processed is
//!   queued again when its worker calls [`Queue::done`].
//! - [`Queue::add_rate_limited`] re-adds after a per-item exponential backoff (5 ms
//!   doubling to 1000 s, client-go's `DefaultControllerRateLimiter` item limiter),
//!   which [`Queue::forget`] resets.
//! - [`Queue::add_after`] queues an item once a delay has passed (client-go's
//!   `AddAfter`), for controllers that must look again later (`minReadySeconds`).
//! - Metrics carry upstream's names with the queue's `name` label:
//!   `workqueue_depth`, `workqueue_adds_total`, `workqueue_retries_total`,
//!   `workqueue_queue_duration_seconds`, `workqueue_work_duration_seconds`. The
//!   families are registered once per process ([`Metrics::register`]) and every
//!   queue shares them, each under its own `name`.
//! - [`run_workers`] is the one worker loop: take an item, sync it, then forget it,
//!   back it off or queue it again later as the sync's [`Outcome`] says, and mark it
//!   done.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::{Debug, Display};
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::sync::Notify;

/// The workqueue metric families, registered once per process.
#[derive(Clone)]
pub struct Metrics {
    depth: IntGaugeVec,
    adds: IntCounterVec,
    retries: IntCounterVec,
    queue_duration: HistogramVec,
    work_duration: HistogramVec,
}

impl Metrics {
    /// Creates the families and registers them in `registry`. Call it once per
    /// registry and share the result: a second registration is refused by
    /// prometheus (and would leave that queue's metrics unexported).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let buckets = prometheus::exponential_buckets(1e-8, 10.0, 10).unwrap_or_default();
        let m = Metrics {
            depth: IntGaugeVec::new(
                Opts::new("workqueue_depth", "Current depth of workqueue"),
                &["name"],
            )
            .expect("valid metric"),
            adds: IntCounterVec::new(
                Opts::new(
                    "workqueue_adds_total",
                    "Total number of adds handled by workqueue",
                ),
                &["name"],
            )
            .expect("valid metric"),
            retries: IntCounterVec::new(
                Opts::new(
                    "workqueue_retries_total",
                    "Total number of retries handled by workqueue",
                ),
                &["name"],
            )
            .expect("valid metric"),
            queue_duration: HistogramVec::new(
                HistogramOpts::new(
                    "workqueue_queue_duration_seconds",
                    "How long in seconds an item stays in workqueue before being requested.",
                )
                .buckets(buckets.clone()),
                &["name"],
            )
            .expect("valid metric"),
            work_duration: HistogramVec::new(
                HistogramOpts::new(
                    "workqueue_work_duration_seconds",
                    "How long in seconds processing an item from workqueue takes.",
                )
                .buckets(buckets),
                &["name"],
            )
            .expect("valid metric"),
        };
        for c in [
            Box::new(m.depth.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.adds.clone()),
            Box::new(m.retries.clone()),
            Box::new(m.queue_duration.clone()),
            Box::new(m.work_duration.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(m)
    }

    /// Sets every family's series for queue `name` to zero, so that a queue shows in
    /// `/metrics` from its start, as client-go's do once the provider creates them.
    fn init(&self, name: &str) {
        self.depth.with_label_values(&[name]).set(0);
        self.adds.with_label_values(&[name]);
        self.retries.with_label_values(&[name]);
        self.queue_duration.with_label_values(&[name]);
        self.work_duration.with_label_values(&[name]);
    }
}

struct State<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    added_at: HashMap<T, Instant>,
    started_at: HashMap<T, Instant>,
    failures: HashMap<T, u32>,
    shut_down: bool,
}

/// A deduplicating, rate-limited work queue.
pub struct Queue<T> {
    name: String,
    state: Mutex<State<T>>,
    notify: Notify,
    metrics: Option<Metrics>,
}

const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1000);

impl<T: Hash + Eq + Clone + Send + Sync + 'static> Queue<T> {
    /// An empty queue called `name` in the metrics.
    pub fn new(name: &str, metrics: Option<Metrics>) -> Arc<Self> {
        if let Some(m) = &metrics {
            m.init(name);
        }
        Arc::new(Queue {
            name: name.to_owned(),
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                added_at: HashMap::new(),
                started_at: HashMap::new(),
                failures: HashMap::new(),
                shut_down: false,
            }),
            notify: Notify::new(),
            metrics,
        })
    }

    /// Queues `item` unless it is already queued.
    pub fn add(&self, item: T) {
        let mut s = self.state.lock();
        if s.shut_down || s.dirty.contains(&item) {
            return;
        }
        if let Some(m) = &self.metrics {
            m.adds.with_label_values(&[&self.name]).inc();
        }
        s.dirty.insert(item.clone());
        if s.processing.contains(&item) {
            return;
        }
        s.added_at.insert(item.clone(), Instant::now());
        s.queue.push_back(item);
        self.set_depth(&s);
        drop(s);
        self.notify.notify_one();
    }

    /// Queues `item` again after its backoff.
    pub fn add_rate_limited(self: &Arc<Self>, item: T) {
        let delay = {
            let mut s = self.state.lock();
            let n = s.failures.entry(item.clone()).or_insert(0);
            let delay = BASE_DELAY
                .checked_mul(1u32.checked_shl(*n).unwrap_or(u32::MAX))
                .unwrap_or(MAX_DELAY)
                .min(MAX_DELAY);
            *n = n.saturating_add(1);
            delay
        };
        if let Some(m) = &self.metrics {
            m.retries.with_label_values(&[&self.name]).inc();
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(item);
        });
    }

    /// Queues `item` once `delay` has passed (at once when it is zero).
    pub fn add_after(self: &Arc<Self>, item: T, delay: Duration) {
        if delay.is_zero() {
            self.add(item);
            return;
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(item);
        });
    }

    /// The queue's name, as in its metrics.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Resets `item`'s backoff.
    pub fn forget(&self, item: &T) {
        self.state.lock().failures.remove(item);
    }

    /// How many times `item` has been re-added with backoff since it was forgotten.
    pub fn requeues(&self, item: &T) -> u32 {
        self.state.lock().failures.get(item).copied().unwrap_or(0)
    }

    /// The next item, waiting for one; `None` once shut down.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.notify.notified();
            if let Some(item) = self.try_get() {
                return Some(item);
            }
            if self.state.lock().shut_down {
                return None;
            }
            notified.await;
        }
    }

    /// The next item if one is queued, without waiting.
    pub fn try_get(&self) -> Option<T> {
        let mut s = self.state.lock();
        let item = s.queue.pop_front()?;
        s.dirty.remove(&item);
        s.processing.insert(item.clone());
        if let (Some(m), Some(at)) = (&self.metrics, s.added_at.remove(&item)) {
            m.queue_duration
                .with_label_values(&[&self.name])
                .observe(at.elapsed().as_secs_f64());
        }
        s.started_at.insert(item.clone(), Instant::now());
        self.set_depth(&s);
        Some(item)
    }

    /// Marks `item` processed; queues it again if it was added meanwhile.
    pub fn done(&self, item: &T) {
        let mut s = self.state.lock();
        s.processing.remove(item);
        if let (Some(m), Some(at)) = (&self.metrics, s.started_at.remove(item)) {
            m.work_duration
                .with_label_values(&[&self.name])
                .observe(at.elapsed().as_secs_f64());
        }
        if s.dirty.contains(item) {
            s.added_at.insert(item.clone(), Instant::now());
            s.queue.push_back(item.clone());
            self.set_depth(&s);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Stops handing out items; waiting workers get `None`.
    pub fn shut_down(&self) {
        self.state.lock().shut_down = true;
        self.notify.notify_waiters();
    }

    /// Items queued and not yet handed out.
    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn set_depth(&self, s: &State<T>) {
        if let Some(m) = &self.metrics {
            m.depth
                .with_label_values(&[&self.name])
                .set(s.queue.len() as i64);
        }
    }
}

/// What a sync asks of the queue for its item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Done: the item's backoff is reset.
    Forget,
    /// Try again after the item's exponential backoff.
    Backoff,
    /// Try again after this long; the backoff is reset.
    After(Duration),
}

/// A sync's result, as the worker loop reads it.
pub trait Outcome {
    /// What to do with `item` of queue `queue`; errors are logged here.
    fn requeue(self, queue: &str, item: &dyn Debug) -> Requeue;
}

impl Outcome for Requeue {
    fn requeue(self, _queue: &str, _item: &dyn Debug) -> Requeue {
        self
    }
}

impl<E: Display> Outcome for Result<(), E> {
    fn requeue(self, queue: &str, item: &dyn Debug) -> Requeue {
        match self {
            Ok(()) => Requeue::Forget,
            Err(e) => {
                tracing::info!(queue, ?item, error = %e, "sync failed; requeueing with backoff");
                Requeue::Backoff
            }
        }
    }
}

/// Runs `workers` workers on `queue` until it is shut down: each takes an item,
/// awaits `sync(item)`, applies its [`Outcome`] and marks the item done. An item is
/// never synced by two workers at once (the queue's guarantee).
pub async fn run_workers<T, F, Fut>(queue: Arc<Queue<T>>, workers: usize, sync: F)
where
    T: Hash + Eq + Clone + Debug + Send + Sync + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future + Send,
    Fut::Output: Outcome,
{
    let sync = Arc::new(sync);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let sync = sync.clone();
        set.spawn(async move {
            while let Some(item) = queue.get().await {
                let outcome = sync(item.clone()).await.requeue(queue.name(), &item);
                match outcome {
                    Requeue::Forget => queue.forget(&item),
                    Requeue::Backoff => queue.add_rate_limited(item.clone()),
                    Requeue::After(d) => {
                        queue.forget(&item);
                        queue.add_after(item.clone(), d);
                    }
                }
                queue.done(&item);
            }
        });
    }
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedups_and_requeues_items_added_while_processing() {
        let reg = Registry::new();
        let q = Queue::new("t", Some(Metrics::register(&reg).unwrap()));
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let a = q.get().await.unwrap();
        assert_eq!(a, "a");
        // Added while processing: not handed to a second worker...
        q.add("a");
        assert_eq!(q.get().await.unwrap(), "b");
        assert!(q.is_empty());
        // ...but queued again once done.
        q.done(&"a");
        assert_eq!(q.get().await.unwrap(), "a");
        q.done(&"a");
        q.done(&"b");
        let text = component_base::metrics::render(&reg);
        assert!(
            text.contains("workqueue_adds_total{name=\"t\"} 3"),
            "{text}"
        );
        assert!(text.contains("workqueue_depth{name=\"t\"} 0"), "{text}");
        q.shut_down();
        assert_eq!(q.get().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_adds_back_off_exponentially_until_forgotten() {
        let q = Queue::new("t", None);
        q.add_rate_limited("x");
        q.add_rate_limited("x");
        q.add_rate_limited("x");
        assert_eq!(q.requeues(&"x"), 3);
        tokio::time::sleep(Duration::from_millis(6)).await;
        assert_eq!(q.get().await, Some("x"), "first retry after 5 ms");
        q.forget(&"x");
        assert_eq!(q.requeues(&"x"), 0);
        q.done(&"x");
    }

    #[tokio::test]
    async fn every_queue_sharing_the_metrics_is_exported() {
        let reg = Registry::new();
        let m = Metrics::register(&reg).unwrap();
        assert!(Metrics::register(&reg).is_err(), "registered once");
        let a: Arc<Queue<&str>> = Queue::new("first", Some(m.clone()));
        let b: Arc<Queue<&str>> = Queue::new("second", Some(m));
        a.add("x");
        b.add("y");
        b.add("z");
        let text = component_base::metrics::render(&reg);
        assert!(text.contains("workqueue_depth{name=\"first\"} 1"), "{text}");
        assert!(
            text.contains("workqueue_depth{name=\"second\"} 2"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn workers_forget_back_off_and_requeue_later() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let q: Arc<Queue<&'static str>> = Queue::new("t", None);
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        q.add("fails-once");
        let runner = tokio::spawn(run_workers(q.clone(), 2, move |item: &'static str| {
            let c = c.clone();
            async move {
                let n = c.fetch_add(1, Ordering::SeqCst);
                match (item, n) {
                    ("fails-once", 0) => Err("boom"),
                    _ => Ok(()),
                }
            }
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "retried after its backoff");
        assert_eq!(q.requeues(&"fails-once"), 0, "forgotten once it succeeded");
        q.shut_down();
        runner.await.unwrap();

        let q: Arc<Queue<u32>> = Queue::new("later", None);
        q.add(1);
        let seen = Arc::new(AtomicU32::new(0));
        let s = seen.clone();
        let runner = tokio::spawn(run_workers(q.clone(), 1, move |_| {
            let s = s.clone();
            async move {
                if s.fetch_add(1, Ordering::SeqCst) == 0 {
                    Requeue::After(Duration::from_secs(30))
                } else {
                    Requeue::Forget
                }
            }
        }));
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(seen.load(Ordering::SeqCst), 2, "queued again after 30 s");
        q.shut_down();
        runner.await.unwrap();
    }
}
