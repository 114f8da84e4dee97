//! `keelson-store snapshot restore`: a new data directory from a snapshot file, as
//! `etcdutl snapshot restore` makes one. The restored member starts a *new* cluster
//! (new member and cluster IDs from the given flags) holding the snapshot's keys,
//! leases and revisions.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

use crate::engine::{self, Durability, EngineKind, Table, WriteBatch};
use crate::raftlog::{RaftLog, SnapshotSource};

/// Restores a snapshot into a new data directory.
#[derive(Debug, Parser)]
#[command(name = "keelson-store snapshot restore")]
pub struct RestoreArgs {
    /// The snapshot file (from `etcdctl snapshot save`).
    pub file: PathBuf,
    /// Path to the data directory to create (default: `${name}.etcd`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Initial cluster configuration for the restored cluster.
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Initial cluster token for the restored cluster.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// This member's peer URLs.
    #[arg(long, default_value = "http://localhost:2380", value_delimiter = ',')]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Storage engine for the new data directory.
    #[arg(long, value_enum, default_value_t = EngineKind::Redb)]
    pub backend_engine: EngineKind,
}

/// Restore errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory already holds data.
    #[error("data-dir {0:?} exists")]
    Exists(PathBuf),
    /// The file could not be read.
    #[error("open {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid snapshot.
    #[error("{0}")]
    Snapshot(#[from] crate::snapshot::Error),
    /// Bad membership flags.
    #[error("{0}")]
    Membership(#[from] crate::membership::Error),
    /// The engine failed.
    #[error("{0}")]
    Engine(#[from] engine::Error),
}

struct NoSource;
impl SnapshotSource for NoSource {
    fn build(&self) -> Result<(Vec<u8>, u64, u64), String> {
        Err("restoring".into())
    }
}

/// Runs the restore.
pub fn run(args: &RestoreArgs) -> Result<PathBuf, Error> {
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", args.name)));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
    {
        return Err(Error::Exists(dir));
    }
    let data = std::fs::read(&args.file).map_err(|source| Error::Read {
        path: args.file.clone(),
        source,
    })?;
    // Verify before creating anything, so a bad file leaves nothing behind.
    let records = crate::snapshot::parse(&data)?;
    let initial_cluster = args.initial_cluster.clone().unwrap_or_else(|| {
        args.initial_advertise_peer_urls
            .iter()
            .map(|u| format!("{}={u}", args.name))
            .collect::<Vec<_>>()
            .join(",")
    });
    let members = crate::membership::initial_members(
        &initial_cluster,
        &args.initial_cluster_token,
        &args.name,
        &args.initial_advertise_peer_urls,
    )?;
    let me = members
        .iter()
        .find(|m| m.name == args.name)
        .map(|m| m.id)
        .unwrap_or(0);
    let cid = crate::membership::cluster_id(members.iter().map(|m| m.id));
    let engine: Arc<dyn engine::KvEngine> = Arc::from(engine::open(args.backend_engine, &dir)?);
    let mut b = WriteBatch::new();
    for (t, k, v) in records {
        // Keys, leases and compaction state carry over; membership and Raft state do not.
        if matches!(t, Table::Kv | Table::Lease)
            || (t == Table::Meta && k.starts_with(b"finishedCompactRev"))
        {
            b.put(t, k, v);
        }
    }
    let log = RaftLog::open(&engine, Arc::new(NoSource))?;
    crate::app::bootstrap_batch(&mut b, &log, &members, me, cid);
    engine.write(&b, Durability::Sync)?;
    Ok(dir)
}
