//! Raft's log and state, persisted in the engine: the `raft::Storage` the RawNode reads.
//!
//! Entries live in [`Table::RaftLog`] keyed by big-endian index. Memory holds every
//! entry's term (8 bytes each, for `term()`) and a bounded cache of the newest entries
//! (what a leader replicates from in the steady state); older entries are read back
//! from the engine. The hard
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

/// Entries kept in memory at most (by count and by bytes), newest first.
const CACHE_ENTRIES: usize = 4096;
const CACHE_BYTES: usize = 32 << 20;

#[derive(Default)]
struct Core {
    hs: HardState,
    cs: ConfState,
    snap: SnapshotMetadata,
    /// The term of every entry after `snap.index`.
    terms: Vec<u64>,
    /// The newest entries, contiguous, ending at the last index.
    cache: std::collections::VecDeque<Entry>,
    cache_bytes: usize,
}

impl Core {
    fn first_index(&self) -> u64 {
        self.snap.index + 1
    }
    fn last_index(&self) -> u64 {
        self.snap.index + self.terms.len() as u64
    }
    /// The index of the first cached entry (last + 1 when the cache is empty).
    fn cache_start(&self) -> u64 {
        self.last_index() + 1 - self.cache.len() as u64
    }
}

/// The Raft log.
#[derive(Clone)]
pub struct RaftLog {
    core: Arc<RwLock<Core>>,
    source: Arc<dyn SnapshotSource>,
    engine: Arc<dyn KvEngine>,
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
        engine: &Arc<dyn KvEngine>,
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
                    core.terms.push(e.term);
                    core.cache_bytes += e.compute_size() as usize;
                    core.cache.push_back(e);
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
        let log = Self {
            core: Arc::new(RwLock::new(core)),
            source,
            engine: engine.clone(),
        };
        log.trim_cache();
        Ok(log)
    }

    /// Drops cached entries beyond the cache limits. Call only after the appended
    /// entries are written to the engine.
    pub fn trim_cache(&self) {
        let mut c = self.core.write();
        while c.cache.len() > CACHE_ENTRIES || (c.cache_bytes > CACHE_BYTES && c.cache.len() > 1) {
            if let Some(e) = c.cache.pop_front() {
                c.cache_bytes = c.cache_bytes.saturating_sub(e.compute_size() as usize);
            }
        }
    }

    fn read_engine(&self, low: u64, high: u64) -> raft::Result<Vec<Entry>> {
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut bad = false;
        self.engine
            .scan(
                Table::RaftLog,
                &idx_key(low),
                Some(&idx_key(high)),
                &mut |_, v| {
                    match Entry::parse_from_bytes(v) {
                        Ok(e) => out.push(e),
                        Err(_) => bad = true,
                    }
                    !bad
                },
            )
            .map_err(|e| raft::Error::Store(StorageError::Other(Box::new(e))))?;
        if bad || out.len() as u64 != high - low {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(out)
    }

    /// Whether this log has never been initialised (no state, no entries).
    pub fn is_empty(&self) -> bool {
        let c = self.core.read();
        c.snap.index == 0 && c.terms.is_empty() && c.hs.term == 0
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
            c.terms.truncate(keep);
            let cache_start = c.cache_start();
            if first_idx <= cache_start {
                c.cache.clear();
                c.cache_bytes = 0;
            } else {
                let keep = (first_idx - cache_start) as usize;
                let dropped: usize = c
                    .cache
                    .iter()
                    .skip(keep)
                    .map(|e| e.compute_size() as usize)
                    .sum();
                c.cache.truncate(keep);
                c.cache_bytes = c.cache_bytes.saturating_sub(dropped);
            }
            batch.delete_range(Table::RaftLog, idx_key(first_idx), idx_key(last + 1));
        }
        for e in ents {
            batch.put(Table::RaftLog, idx_key(e.index), pb(e));
            c.terms.push(e.term);
            c.cache_bytes += e.compute_size() as usize;
            c.cache.push_back(e.clone());
        }
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

    /// Raises the commit index to at least `index` (entries that were applied are
    /// committed by definition). Written in the same batch as the applied state, so on
    /// disk the applied index never exceeds the commit index, whatever order an engine
    /// makes buffered writes durable in.
    pub fn ensure_commit(&self, index: u64, batch: &mut WriteBatch) {
        let mut c = self.core.write();
        if c.hs.commit < index {
            c.hs.commit = index;
        }
        batch.put(Table::RaftState, HS, pb(&c.hs));
    }

    /// The commit index held.
    pub fn commit(&self) -> u64 {
        self.core.read().hs.commit
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
        c.terms.clear();
        c.cache.clear();
        c.cache_bytes = 0;
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
        let term = c.terms[(index - c.first_index()) as usize];
        let cache_start = c.cache_start();
        let drop = (index - c.snap.index) as usize;
        c.terms.drain(..drop);
        if index >= cache_start {
            let n = ((index + 1 - cache_start) as usize).min(c.cache.len());
            let dropped: usize = c
                .cache
                .iter()
                .take(n)
                .map(|e| e.compute_size() as usize)
                .sum();
            c.cache.drain(..n);
            c.cache_bytes = c.cache_bytes.saturating_sub(dropped);
        }
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
        let max_size = max_size.into();
        let cache_start = c.cache_start();
        let mut ents = if low < cache_start {
            let upto = high.min(cache_start);
            drop(c);
            let mut ents = self.read_engine(low, upto)?;
            if high > upto {
                let c = self.core.read();
                let cs = c.cache_start();
                if cs > upto {
                    // The cache moved on meanwhile (cannot happen on the Raft thread).
                    return Err(raft::Error::Store(StorageError::Unavailable));
                }
                ents.extend(
                    c.cache
                        .range((upto - cs) as usize..(high - cs) as usize)
                        .cloned(),
                );
            }
            ents
        } else {
            c.cache
                .range((low - cache_start) as usize..(high - cache_start) as usize)
                .cloned()
                .collect()
        };
        raft::util::limit_size(&mut ents, max_size);
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
        Ok(c.terms[(idx - c.first_index()) as usize])
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

#[cfg(test)]
mod tests {
    use raft::Storage;

    use super::*;
    use crate::engine::{Durability, EngineKind};

    struct NoSnap;
    impl SnapshotSource for NoSnap {
        fn build(&self) -> Result<(Vec<u8>, u64, u64), String> {
            Err("none".into())
        }
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("entry-{index}").into_bytes().into(),
            ..Default::default()
        }
    }

    fn get(log: &RaftLog, lo: u64, hi: u64) -> Vec<u64> {
        log.entries(lo, hi, None, GetEntriesContext::empty(false))
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect()
    }

    #[test]
    fn reads_span_engine_and_cache_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let engine: Arc<dyn KvEngine> =
            Arc::from(engine::open(EngineKind::Redb, dir.path()).unwrap());
        let log = RaftLog::open(&engine, Arc::new(NoSnap)).unwrap();
        let n = CACHE_ENTRIES as u64 * 2 + 100;
        let mut b = WriteBatch::new();
        log.bootstrap(vec![1], &mut b);
        let ents: Vec<Entry> = (2..=n).map(|i| entry(i, 1 + i / 1000)).collect();
        log.append(&ents, &mut b);
        engine.write(&b, Durability::Sync).unwrap();
        log.trim_cache();
        assert!(log.core.read().cache.len() <= CACHE_ENTRIES);
        assert_eq!(log.bounds(), (2, n));
        // Entirely from the engine, across the boundary, and entirely cached.
        assert_eq!(get(&log, 2, 12), (2..12).collect::<Vec<_>>());
        let boundary = log.core.read().cache_start();
        assert_eq!(
            get(&log, boundary - 5, boundary + 5),
            (boundary - 5..boundary + 5).collect::<Vec<_>>()
        );
        assert_eq!(get(&log, n - 3, n + 1), (n - 3..=n).collect::<Vec<_>>());
        assert_eq!(log.term(1500).unwrap(), 2);
        assert_eq!(log.term(1).unwrap(), 1, "the compaction point's term");
        // A conflicting append truncates the suffix, in memory and on disk.
        let mut b = WriteBatch::new();
        log.append(&[entry(n - 10, 99)], &mut b);
        engine.write(&b, Durability::Sync).unwrap();
        assert_eq!(log.bounds(), (2, n - 10));
        assert_eq!(log.term(n - 10).unwrap(), 99);
        // Compaction drops the head.
        let mut b = WriteBatch::new();
        log.compact(3000, &mut b);
        engine.write(&b, Durability::Sync).unwrap();
        assert_eq!(log.bounds(), (3001, n - 10));
        assert!(
            log.entries(2999, 3005, None, GetEntriesContext::empty(false))
                .is_err()
        );
        drop(log);
        let log = RaftLog::open(&engine, Arc::new(NoSnap)).unwrap();
        assert_eq!(log.bounds(), (3001, n - 10));
        assert_eq!(get(&log, 3001, 3004), vec![3001, 3002, 3003]);
        assert_eq!(log.term(n - 10).unwrap(), 99);
    }
}
