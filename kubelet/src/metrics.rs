//! The kubelet's own metrics, by upstream's names (`kubelet_*`), registered once.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntGauge, IntGaugeVec, Opts, Registry};

/// The kubelet's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// `kubelet_pod_start_duration_seconds`: first seen to running and ready.
    pub pod_start_duration: Histogram,
    /// `kubelet_pod_worker_duration_seconds{operation_type}`.
    pub pod_worker_duration: HistogramVec,
    /// `kubelet_running_pods`.
    pub running_pods: IntGauge,
    /// `kubelet_running_containers{container_state}`.
    pub running_containers: IntGaugeVec,
    /// `kubelet_pleg_relist_duration_seconds`.
    pub pleg_relist_duration: Histogram,
}

impl Metrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Registry) -> Metrics {
        let start_buckets = vec![
            0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0,
            240.0, 300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
        ];
        let m = Metrics {
            pod_start_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "pod_start_duration_seconds",
                    "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
                )
                .subsystem("kubelet")
                .buckets(start_buckets),
            )
            .expect("valid histogram"),
            pod_worker_duration: HistogramVec::new(
                HistogramOpts::new(
                    "pod_worker_duration_seconds",
                    "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
                )
                .subsystem("kubelet")
                .buckets(prometheus::exponential_buckets(0.005, 2.0, 15).unwrap_or_default()),
                &["operation_type"],
            )
            .expect("valid histogram"),
            running_pods: IntGauge::with_opts(
                Opts::new("running_pods", "Number of pods that have a running pod sandbox")
                    .subsystem("kubelet"),
            )
            .expect("valid gauge"),
            running_containers: IntGaugeVec::new(
                Opts::new("running_containers", "Number of containers currently running")
                    .subsystem("kubelet"),
                &["container_state"],
            )
            .expect("valid gauge"),
            pleg_relist_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "pleg_relist_duration_seconds",
                    "Duration in seconds for relisting pods in PLEG.",
                )
                .subsystem("kubelet")
                .buckets(prometheus::exponential_buckets(0.005, 2.0, 15).unwrap_or_default()),
            )
            .expect("valid histogram"),
        };
        for c in [
            Box::new(m.pod_start_duration.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.pod_worker_duration.clone()),
            Box::new(m.running_pods.clone()),
            Box::new(m.running_containers.clone()),
            Box::new(m.pleg_relist_duration.clone()),
        ] {
            if let Err(e) = registry.register(c) {
                tracing::warn!(error = %e, "registering kubelet metrics");
            }
        }
        m
    }
}
