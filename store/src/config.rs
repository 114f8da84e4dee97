//! Command-line flags. The names, defaults and meanings are etcd's, so kubeadm-style
//! manifests and operators' habits carry over unchanged.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::engine::EngineKind;

/// keelson-store: a Raft-replicated key-value store that speaks the etcd v3 API.
#[derive(Debug, Clone, Parser)]
#[command(name = "keelson-store", version, about)]
pub struct Flags {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory (default: `${name}.etcd`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// List of URLs to listen on for client traffic.
    #[arg(long, default_value = "http://localhost:2379", value_delimiter = ',')]
    pub listen_client_urls: Vec<String>,
    /// List of this member's client URLs to advertise to the public.
    #[arg(long, default_value = "http://localhost:2379", value_delimiter = ',')]
    pub advertise_client_urls: Vec<String>,
    /// List of URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380", value_delimiter = ',')]
    pub listen_peer_urls: Vec<String>,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380", value_delimiter = ',')]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Initial cluster configuration for bootstrapping (name=url,...). Default:
    /// `${name}=${initial-advertise-peer-urls}`.
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, default_value = "new", value_parser = ["new", "existing"])]
    pub initial_cluster_state: String,
    /// Initial cluster token for the etcd cluster during bootstrap.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// Raise alarms when backend size exceeds the given quota. 0 means use the default quota.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub quota_backend_bytes: i64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, default_value_t = 1_572_864)]
    pub max_request_bytes: usize,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Interpret 'auto-compaction-retention' one of: periodic|revision.
    #[arg(long, default_value = "periodic", value_parser = ["periodic", "revision"])]
    pub auto_compaction_mode: String,
    /// Auto compaction retention length. 0 means disable auto compaction.
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,
    /// List of URLs to listen on for the metrics and health endpoints.
    #[arg(long, value_delimiter = ',')]
    pub listen_metrics_urls: Vec<String>,
    /// Path to the client server TLS cert file.
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,
    /// Enable client cert authentication.
    #[arg(long, default_value_t = false)]
    pub client_cert_auth: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long)]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long)]
    pub peer_key_file: Option<PathBuf>,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long)]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Enable peer client cert authentication.
    #[arg(long, default_value_t = false)]
    pub peer_client_cert_auth: bool,
    /// Duration of periodic watch progress notifications.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub experimental_watch_progress_notify_interval: Duration,
    /// Storage engine for a new data directory (an existing one keeps its engine).
    #[arg(long, value_enum, default_value_t = EngineKind::Redb)]
    pub backend_engine: EngineKind,
    /// Accepted for compatibility with etcd manifests; logs always go to stderr.
    #[arg(long, default_value = "zap")]
    pub logger: String,
    /// Log level: debug, info, warn, error. `RUST_LOG` overrides it.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

impl Flags {
    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", self.name)))
    }

    /// `--initial-cluster`, or its default.
    pub fn initial_cluster(&self) -> String {
        self.initial_cluster.clone().unwrap_or_else(|| {
            self.initial_advertise_peer_urls
                .iter()
                .map(|u| format!("{}={u}", self.name))
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    /// The auto-compaction policy, if enabled.
    pub fn auto_compaction(&self) -> Result<Option<AutoCompaction>, String> {
        let r = self.auto_compaction_retention.trim();
        if self.auto_compaction_mode == "revision" {
            let n: i64 = r.parse().map_err(|_| {
                format!("invalid auto-compaction-retention {r:?} for revision mode")
            })?;
            return Ok((n > 0).then_some(AutoCompaction::Revision(n)));
        }
        // periodic: a bare number is hours, as etcd reads it.
        let d = match r.parse::<u64>() {
            Ok(h) => Duration::from_secs(h * 3600),
            Err(_) => parse_duration(r)
                .map_err(|e| format!("invalid auto-compaction-retention {r:?}: {e}"))?,
        };
        Ok((!d.is_zero()).then_some(AutoCompaction::Periodic(d)))
    }
}

/// How automatic compaction keeps history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep this much time of history.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

pub use component_base::duration::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_defaults() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("10").is_err());
        let f = Flags::parse_from(["keelson-store", "--name", "n1"]);
        assert_eq!(f.data_dir(), PathBuf::from("n1.etcd"));
        assert_eq!(f.initial_cluster(), "n1=http://localhost:2380");
        assert_eq!(f.max_request_bytes, 1_572_864);
        assert_eq!(f.auto_compaction().unwrap(), None);
        let f = Flags::parse_from(["keelson-store", "--auto-compaction-retention", "1"]);
        assert_eq!(
            f.auto_compaction().unwrap(),
            Some(AutoCompaction::Periodic(Duration::from_secs(3600)))
        );
        let f = Flags::parse_from([
            "keelson-store",
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "1000",
        ]);
        assert_eq!(
            f.auto_compaction().unwrap(),
            Some(AutoCompaction::Revision(1000))
        );
    }
}
