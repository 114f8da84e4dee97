//! Raft's log and state, persisted in the engine: the `raft::Storage` the RawNode reads.
//!
//! Entries live in [`Table::RaftLog`] keyed by big-endian index, and also in memory
//! from the last compaction point on (the tail a leader replicates from). The hard
//! state, the conf state and the compaction point (snapshot metadata) live in
//! [`Table::RaftState`]. Writes go into the caller's [`WriteBatch`] so that the Ready
//! loop makes one durable commit per round.
//!
//! Snapshots are not stored: [`raft::Storage::snapshot`] builds a fresh one from the
//! state machine through a [`SnapshotSource`], at the applied index.

use std::sync::Arc;

use parking_lot::RwLock;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::engine::{self, KvEngine, Table, WriteBatch};

const HS: &[u8] = b"hs";
const CS: &[u8] = b"cs";
const SNAP: &[u8] = b"snap";

/// Builds a snapshot of the state machine: its bytes and the applied index and term.
pub trait SnapshotSource: Send + Sync {
    /// The snapshot.
    fn build(&self) -> Result<(Vec<u8>, u64, u64), String>;
}

#[derive(Default)]
struct Core {
    hs: HardState,
    cs: ConfState,
    snap: SnapshotMetadata,
    entries: Vec<Entry>,
}

impl Core {
    fn first_index(&self) -> u64 {
        self.snap.index + 1
    }
    fn last_index(&self) -> u64 {
        self.snap.index + self.entries.len() as u64
    }
}

/// The Raft log.
#[derive(Clone)]
pub struct RaftLog {
    core: Arc<RwLock<Core>>,
    source: Arc<dyn SnapshotSource>,
}

fn idx_key(i: u64) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

fn pb<M: protobuf::Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes()
        .expect("protobuf encoding to memory cannot fail")
}

fn corrupt(what: &str) -> engine::Error {
    engine::Error::Io {
        op: "decode raft state",
        message: what.to_owned(),
    }
}

impl RaftLog {
    /// Loads the log from the engine.
    pub fn open(
        engine: &dyn KvEngine,
        source: Arc<dyn SnapshotSource>,
    ) -> Result<Self, engine::Error> {
        let mut core = Core::default();
        if let Some(b) = engine.get(Table::RaftState, HS)? {
            core.hs = HardState::parse_from_bytes(&b).map_err(|_| corrupt("hard state"))?;
        }
        if let Some(b) = engine.get(Table::RaftState, CS)? {
            core.cs = ConfState::parse_from_bytes(&b).map_err(|_| corrupt("conf state"))?;
        }
        if let Some(b) = engine.get(Table::RaftState, SNAP)? {
            core.snap =
                SnapshotMetadata::parse_from_bytes(&b).map_err(|_| corrupt("snapshot metadata"))?;
        }
        let mut bad = false;
        let start = idx_key(core.snap.index + 1);
        engine.scan(
            Table::RaftLog,
            &start,
            None,
            &mut |_, v| match Entry::parse_from_bytes(v) {
                Ok(e) => {
                    core.entries.push(e);
                    true
                }
                Err(_) => {
                    bad = true;
                    false
                }
            },
        )?;
        if bad {
            return Err(corrupt("entry"));
        }
        Ok(Self {
            core: Arc::new(RwLock::new(core)),
            source,
        })
    }

    /// Whether this log has never been initialised (no state, no entries).
    pub fn is_empty(&self) -> bool {
        let c = self.core.read();
        c.snap.index == 0 && c.entries.is_empty() && c.hs.term == 0
    }

    /// Bootstraps a member of a new cluster: the log starts after a synthetic snapshot
    /// at index 1, term 1, whose conf state holds the initial voters. A member that joins
    /// later has nothing at index 1, so the leader catches it up with a real snapshot.
    pub fn bootstrap(&self, voters: Vec<u64>, batch: &mut WriteBatch) {
        let mut c = self.core.write();
        c.cs = ConfState::from((voters, Vec::<u64>::new()));
        c.snap.index = 1;
        c.snap.term = 1;
        let cs = c.cs.clone();
        c.snap.set_conf_state(cs);
        c.hs.term = 1;
        c.hs.commit = 1;
        batch.put(Table::RaftState, CS, pb(&c.cs));
        batch.put(Table::RaftState, SNAP, pb(&c.snap));
        batch.put(Table::RaftState, HS, pb(&c.hs));
    }

    /// Appends entries, replacing any conflicting suffix.
    pub fn append(&self, ents: &[Entry], batch: &mut WriteBatch) {
        let Some(first) = ents.first() else {
            return;
        };
        let mut c = self.core.write();
        let first_idx = first.index;
        assert!(
            first_idx > c.snap.index,
            "append at {first_idx} below compaction point {}",
            c.snap.index
        );
        let last = c.last_index();
        if first_idx <= last {
            let keep = (first_idx - c.first_index()) as usize;
            c.entries.truncate(keep);
            batch.delete_range(Table::RaftLog, idx_key(first_idx), idx_key(last + 1));
        }
        for e in ents {
            batch.put(Table::RaftLog, idx_key(e.index), pb(e));
        }
        c.entries.extend_from_slice(ents);
    }

    /// Records the hard state.
    pub fn set_hard_state(&self, hs: &HardState, batch: &mut WriteBatch) {
        let mut c = self.core.write();
        c.hs = hs.clone();
        batch.put(Table::RaftState, HS, pb(hs));
    }

    /// Records a new commit index.
    pub fn set_commit(&self, commit: u64, batch: &mut WriteBatch) {
        let mut c = self.core.write();
        c.hs.commit = commit;
        batch.put(Table::RaftState, HS, pb(&c.hs));
    }

    /// Records the conf state after a membership change.
    pub fn set_conf_state(&self, cs: &ConfState, batch: &mut WriteBatch) {
        let mut c = self.core.write();
        c.cs = cs.clone();
        batch.put(Table::RaftState, CS, pb(cs));
    }

    /// The current conf state.
    pub fn conf_state(&self) -> ConfState {
        self.core.read().cs.clone()
    }

    /// Installs a received snapshot's metadata: the log restarts after it.
    pub fn apply_snapshot(&self, meta: &SnapshotMetadata, batch: &mut WriteBatch) {
        let mut c = self.core.write();
        let last = c.last_index();
        batch.delete_range(
            Table::RaftLog,
            idx_key(0),
            idx_key(last.max(meta.index) + 1),
        );
        c.entries.clear();
        c.snap = meta.clone();
        c.cs = meta.get_conf_state().clone();
        c.hs.term = c.hs.term.max(meta.term);
        c.hs.commit = c.hs.commit.max(meta.index);
        batch.put(Table::RaftState, SNAP, pb(&c.snap));
        batch.put(Table::RaftState, CS, pb(&c.cs));
        batch.put(Table::RaftState, HS, pb(&c.hs));
    }

    /// Drops entries up to and including `index` (which must be applied).
    pub fn compact(&self, index: u64, batch: &mut WriteBatch) {
        let mut c = self.core.write();
        if index <= c.snap.index || index > c.last_index() {
            return;
        }
        let term = c.entries[(index - c.first_index()) as usize].term;
        let drop = (index - c.snap.index) as usize;
        c.entries.drain(..drop);
        batch.delete_range(Table::RaftLog, idx_key(0), idx_key(index + 1));
        c.snap.index = index;
        c.snap.term = term;
        let cs = c.cs.clone();
        c.snap.set_conf_state(cs);
        batch.put(Table::RaftState, SNAP, pb(&c.snap));
    }

    /// `(first, last)` indexes held.
    pub fn bounds(&self) -> (u64, u64) {
        let c = self.core.read();
        (c.first_index(), c.last_index())
    }
}

impl raft::Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let c = self.core.read();
        Ok(RaftState::new(c.hs.clone(), c.cs.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let c = self.core.read();
        if low <= c.snap.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > c.last_index() + 1 {
            panic!(
                "entries' hi({high}) is out of bound lastindex({})",
                c.last_index()
            );
        }
        let off = c.first_index();
        let mut ents = c.entries[(low - off) as usize..(high - off) as usize].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let c = self.core.read();
        if idx == c.snap.index {
            return Ok(c.snap.term);
        }
        if idx < c.snap.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > c.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(c.entries[(idx - c.first_index()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.core.read().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.core.read().last_index())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let (data, index, term) = self.source.build().map_err(|e| {
            tracing::warn!(error = %e, to = %format!("{to:x}"), "building snapshot");
            raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)
        })?;
        if index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let mut snap = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.core.read().cs.clone());
        tracing::info!(index, term, to = %format!("{to:x}"), bytes = snap.data.len(), "sending database snapshot");
        Ok(snap)
    }
}
