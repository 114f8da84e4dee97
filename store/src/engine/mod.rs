//! The storage engine: an ordered, durable key-value map with named tables and
//! atomic batches. Everything the store persists (MVCC revisions, leases, members,
//! the Raft log and its state) goes through [`KvEngine`], so engines are swappable and
//! one conformance suite (`conformance.rs`) runs against each of them.
//!
//! Engines: [`redb`](redb_engine) (the default) and [`sled`](sled_engine). Why redb is the
//! default is recorded in the crate docs and BENCHMARKS.md.

use std::path::Path;

pub(crate) mod redb_engine;
pub(crate) mod sled_engine;

#[cfg(test)]
mod conformance;

/// A table (etcd calls them buckets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Table {
    /// MVCC revisions: `rev` -> `mvccpb.KeyValue`.
    Kv = 1,
    /// Small state: consistent index, compaction revisions, alarms.
    Meta = 2,
    /// Leases: id -> TTL.
    Lease = 3,
    /// Cluster members: id -> `etcdserverpb.Member`.
    Members = 4,
    /// Raft log entries: index -> `eraftpb.Entry`.
    RaftLog = 5,
    /// Raft hard state, conf state and snapshot metadata.
    RaftState = 6,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 6] = [
        Table::Kv,
        Table::Meta,
        Table::Lease,
        Table::Members,
        Table::RaftLog,
        Table::RaftState,
    ];

    /// Tables that make up the replicated state machine (what a snapshot carries).
    pub const STATE_MACHINE: [Table; 4] = [Table::Kv, Table::Meta, Table::Lease, Table::Members];

    /// The table's stable name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Kv => "key",
            Table::Meta => "meta",
            Table::Lease => "lease",
            Table::Members => "members",
            Table::RaftLog => "raft_log",
            Table::RaftState => "raft_state",
        }
    }

    /// The table with the given numeric tag.
    pub fn from_u8(v: u8) -> Option<Table> {
        Table::ALL.into_iter().find(|t| *t as u8 == v)
    }
}

/// One mutation in a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put(Table, Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Table, Vec<u8>),
    /// Remove every key in `[start, end)`.
    DeleteRange(Table, Vec<u8>, Vec<u8>),
}

/// Mutations applied atomically by [`KvEngine::write`]: all or none.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    ops: Vec<Op>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a put.
    pub fn put(&mut self, table: Table, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(table, key.into(), value.into()));
    }
    /// Adds a delete.
    pub fn delete(&mut self, table: Table, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(table, key.into()));
    }
    /// Adds a range delete of `[start, end)`.
    pub fn delete_range(
        &mut self,
        table: Table,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
    ) {
        self.ops
            .push(Op::DeleteRange(table, start.into(), end.into()));
    }
    /// Whether the batch holds no mutation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// The number of mutations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// The mutations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
    /// Appends another batch's mutations.
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }
}

/// Whether a write must be on stable storage before [`KvEngine::write`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before returning. Everything written before is durable too.
    Sync,
    /// Atomic and visible to readers, but made durable only by a later `Sync` write.
    /// A crash may lose it (whole, never in part).
    Buffered,
}

/// Errors from an engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine's files could not be opened or created.
    #[error("open {path}: {message}")]
    Open {
        /// The data file or directory.
        path: String,
        /// The engine's own message.
        message: String,
    },
    /// A read or write failed.
    #[error("{op}: {message}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The engine's own message.
        message: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, e: impl std::fmt::Display) -> Self {
        Error::Io {
            op,
            message: e.to_string(),
        }
    }
}

/// Result alias for engine calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A key-value visitor for [`KvEngine::scan`]: return `false` to stop.
pub type Visitor<'a> = dyn FnMut(&[u8], &[u8]) -> bool + 'a;

/// An ordered, durable key-value engine with named tables.
///
/// Implementations must make [`write`](KvEngine::write) atomic (a crash leaves all of a
/// batch or none of it), keep `Buffered` writes ordered before later `Sync` ones, and
/// return keys in byte order from [`scan`](KvEngine::scan).
pub trait KvEngine: Send + Sync + 'static {
    /// The value of `key`, if any.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Visits keys in `[start, end)` in ascending order (`end == None`: to the end of
    /// the table) until the visitor returns `false`.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut Visitor<'_>,
    ) -> Result<()>;
    /// Applies a batch atomically.
    fn write(&self, batch: &WriteBatch, durability: Durability) -> Result<()>;
    /// Bytes the engine occupies on disk.
    fn size_on_disk(&self) -> Result<u64>;
    /// Bytes in use by live data, as far as the engine knows (`dbSizeInUse`).
    fn size_in_use(&self) -> Result<u64> {
        self.size_on_disk()
    }
    /// Returns free space to the file system where the engine can (etcd's defragment).
    fn compact(&self) -> Result<()>;
    /// The engine's name, as given to `--backend-engine`.
    fn name(&self) -> &'static str;
}

/// Which engine to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EngineKind {
    /// redb: copy-on-write B-tree, fsync per durable commit. The default.
    #[default]
    Redb,
    /// sled 0.34: log-structured; durable only after an explicit flush.
    Sled,
}

/// Opens (creating if needed) the engine of `kind` in `dir`.
pub fn open(kind: EngineKind, dir: &Path) -> Result<Box<dyn KvEngine>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Open {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(match kind {
        EngineKind::Redb => Box::new(redb_engine::RedbEngine::open(&dir.join("db.redb"))?),
        EngineKind::Sled => Box::new(sled_engine::SledEngine::open(&dir.join("db.sled"))?),
    })
}

/// The engine kind whose files exist in `dir`, if any.
pub fn detect(dir: &Path) -> Option<EngineKind> {
    if dir.join("db.redb").exists() {
        Some(EngineKind::Redb)
    } else if dir.join("db.sled").exists() {
        Some(EngineKind::Sled)
    } else {
        None
    }
}
