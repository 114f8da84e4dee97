//! kube-scheduler's metrics, by upstream's names and labels
//! (`pkg/scheduler/metrics/metrics.go`).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::framework::Code;

/// The scheduler's metric families.
#[derive(Clone)]
pub struct Metrics {
    /// `scheduler_schedule_attempts_total{result,profile}`.
    pub schedule_attempts: IntCounterVec,
    /// `scheduler_scheduling_attempt_duration_seconds{result,profile}`.
    pub attempt_duration: HistogramVec,
    /// `scheduler_pod_scheduling_sli_duration_seconds{attempts}`.
    pub sli_duration: HistogramVec,
    /// `scheduler_pending_pods{queue}`.
    pub pending_pods: IntGaugeVec,
    /// `scheduler_queue_incoming_pods_total{queue,event}`.
    pub incoming_pods: IntCounterVec,
    /// `scheduler_framework_extension_point_duration_seconds{extension_point,status,profile}`.
    pub extension_point_duration: HistogramVec,
    /// `scheduler_plugin_execution_duration_seconds{plugin,extension_point,status}`.
    pub plugin_duration: HistogramVec,
    /// `scheduler_preemption_attempts_total`.
    pub preemption_attempts: prometheus::IntCounter,
    /// `scheduler_preemption_victims`.
    pub preemption_victims: Histogram,
    /// `scheduler_permit_wait_duration_seconds{result}`.
    pub permit_wait_duration: HistogramVec,
}

fn exp(start: f64, factor: f64, n: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, n).unwrap_or_default()
}

impl Metrics {
    /// Creates and registers the families.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Metrics {
            schedule_attempts: IntCounterVec::new(
                Opts::new(
                    "scheduler_schedule_attempts_total",
                    "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
                ),
                &["result", "profile"],
            )?,
            attempt_duration: HistogramVec::new(
                HistogramOpts::new(
                    "scheduler_scheduling_attempt_duration_seconds",
                    "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
                )
                .buckets(exp(0.001, 2.0, 15)),
                &["result", "profile"],
            )?,
            sli_duration: HistogramVec::new(
                HistogramOpts::new(
                    "scheduler_pod_scheduling_sli_duration_seconds",
                    "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.",
                )
                .buckets(exp(0.01, 2.0, 20)),
                &["attempts"],
            )?,
            pending_pods: IntGaugeVec::new(
                Opts::new(
                    "scheduler_pending_pods",
                    "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the number of unschedulable pods that the scheduler never attempted to schedule because they are gated.",
                ),
                &["queue"],
            )?,
            incoming_pods: IntCounterVec::new(
                Opts::new(
                    "scheduler_queue_incoming_pods_total",
                    "Number of pods added to scheduling queues by event and queue type.",
                ),
                &["queue", "event"],
            )?,
            extension_point_duration: HistogramVec::new(
                HistogramOpts::new(
                    "scheduler_framework_extension_point_duration_seconds",
                    "Latency for running all plugins of a specific extension point.",
                )
                .buckets(exp(0.0001, 2.0, 12)),
                &["extension_point", "status", "profile"],
            )?,
            plugin_duration: HistogramVec::new(
                HistogramOpts::new(
                    "scheduler_plugin_execution_duration_seconds",
                    "Duration for running a plugin at a specific extension point.",
                )
                .buckets(exp(0.00001, 1.5, 20)),
                &["plugin", "extension_point", "status"],
            )?,
            preemption_attempts: prometheus::IntCounter::new(
                "scheduler_preemption_attempts_total",
                "Total preemption attempts in the cluster till now",
            )?,
            preemption_victims: Histogram::with_opts(
                HistogramOpts::new("scheduler_preemption_victims", "Number of selected preemption victims")
                    .buckets(exp(1.0, 2.0, 7)),
            )?,
            permit_wait_duration: HistogramVec::new(
                HistogramOpts::new(
                    "scheduler_permit_wait_duration_seconds",
                    "Duration of waiting on permit.",
                )
                .buckets(exp(0.001, 2.0, 15)),
                &["result"],
            )?,
        };
        registry.register(Box::new(m.schedule_attempts.clone()))?;
        registry.register(Box::new(m.permit_wait_duration.clone()))?;
        registry.register(Box::new(m.attempt_duration.clone()))?;
        registry.register(Box::new(m.sli_duration.clone()))?;
        registry.register(Box::new(m.pending_pods.clone()))?;
        registry.register(Box::new(m.incoming_pods.clone()))?;
        registry.register(Box::new(m.extension_point_duration.clone()))?;
        registry.register(Box::new(m.plugin_duration.clone()))?;
        registry.register(Box::new(m.preemption_attempts.clone()))?;
        registry.register(Box::new(m.preemption_victims.clone()))?;
        for q in ["active", "backoff", "unschedulable", "gated"] {
            m.pending_pods.with_label_values(&[q]).set(0);
        }
        Ok(m)
    }

    /// Unregistered families, for tests.
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("fresh registry")
    }

    /// Records one extension point's run.
    pub fn extension_point(&self, point: &str, code: Code, profile: &str, seconds: f64) {
        self.extension_point_duration
            .with_label_values(&[point, code.as_str(), profile])
            .observe(seconds);
    }
}
