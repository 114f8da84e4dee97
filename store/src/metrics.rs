//! The store's Prometheus metrics, under etcd's names so dashboards and alerts written
//! for etcd work unchanged.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    exponential_buckets,
};

/// Every metric the store exports.
pub struct Metrics {
    /// The registry they are registered in.
    pub registry: Registry,
    /// `etcd_server_has_leader`.
    pub has_leader: IntGauge,
    /// `etcd_server_is_leader`.
    pub is_leader: IntGauge,
    /// `etcd_server_leader_changes_seen_total`.
    pub leader_changes: IntCounter,
    /// `etcd_server_proposals_committed_total`.
    pub proposals_committed: Gauge,
    /// `etcd_server_proposals_applied_total`.
    pub proposals_applied: Gauge,
    /// `etcd_server_proposals_pending`.
    pub proposals_pending: IntGauge,
    /// `etcd_server_proposals_failed_total`.
    pub proposals_failed: IntCounter,
    /// `etcd_disk_wal_fsync_duration_seconds`: durable Raft log writes.
    pub wal_fsync: Histogram,
    /// `etcd_disk_backend_commit_duration_seconds`: state machine commits.
    pub backend_commit: Histogram,
    /// `etcd_mvcc_db_total_size_in_bytes`.
    pub db_total_size: IntGauge,
    /// `etcd_mvcc_db_total_size_in_use_in_bytes`.
    pub db_in_use: IntGauge,
    /// `etcd_debugging_mvcc_keys_total`, as a gauge of keys in the index.
    pub keys_total: IntGauge,
    /// `etcd_debugging_mvcc_watcher_total`.
    pub watchers: IntGauge,
    /// `etcd_server_slow_apply_total`.
    pub slow_apply: IntCounter,
    /// `grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`.
    pub grpc_handled: IntCounterVec,
    /// `grpc_server_started_total{grpc_type,grpc_service,grpc_method}`.
    pub grpc_started: IntCounterVec,
    /// `etcd_server_id{server_id}` and `etcd_server_version{server_version}` info gauges.
    pub server_info: prometheus::IntGaugeVec,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let r = Registry::new();
        let disk = || exponential_buckets(0.001, 2.0, 14).expect("valid buckets");
        Self {
            has_leader: reg(&r, IntGauge::new("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.").unwrap()),
            is_leader: reg(&r, IntGauge::new("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.").unwrap()),
            leader_changes: reg(&r, IntCounter::new("etcd_server_leader_changes_seen_total", "The number of leader changes seen.").unwrap()),
            proposals_committed: reg(&r, Gauge::new("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.").unwrap()),
            proposals_applied: reg(&r, Gauge::new("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.").unwrap()),
            proposals_pending: reg(&r, IntGauge::new("etcd_server_proposals_pending", "The current number of pending proposals to commit.").unwrap()),
            proposals_failed: reg(&r, IntCounter::new("etcd_server_proposals_failed_total", "The total number of failed proposals seen.").unwrap()),
            wal_fsync: reg(&r, Histogram::with_opts(HistogramOpts::new("etcd_disk_wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL.").buckets(disk())).unwrap()),
            backend_commit: reg(&r, Histogram::with_opts(HistogramOpts::new("etcd_disk_backend_commit_duration_seconds", "The latency distributions of commit called by backend.").buckets(disk())).unwrap()),
            db_total_size: reg(&r, IntGauge::new("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.").unwrap()),
            db_in_use: reg(&r, IntGauge::new("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.").unwrap()),
            keys_total: reg(&r, IntGauge::new("etcd_debugging_mvcc_keys_total", "Total number of keys.").unwrap()),
            watchers: reg(&r, IntGauge::new("etcd_debugging_mvcc_watcher_total", "Total number of watchers.").unwrap()),
            slow_apply: reg(&r, IntCounter::new("etcd_server_slow_apply_total", "The total number of slow apply requests (likely overloaded from slow disk).").unwrap()),
            grpc_handled: reg(&r, IntCounterVec::new(Opts::new("grpc_server_handled_total", "Total number of RPCs completed on the server, regardless of success or failure."), &["grpc_type", "grpc_service", "grpc_method", "grpc_code"]).unwrap()),
            grpc_started: reg(&r, IntCounterVec::new(Opts::new("grpc_server_started_total", "Total number of RPCs started on the server."), &["grpc_type", "grpc_service", "grpc_method"]).unwrap()),
            server_info: reg(&r, prometheus::IntGaugeVec::new(Opts::new("etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID."), &["server_id"]).unwrap()),
            registry: r,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
