//! Multi-version concurrency control, as etcd's `mvcc` package does it.
//!
//! - Every write transaction gets the next **main revision**; each change within it a
//!   **sub revision**. A transaction that changes nothing does not bump the revision.
//! - Values are stored in [`Table::Kv`] under their encoded revision ([`Rev::encode`]),
//!   as `mvccpb.KeyValue` (a tombstone is a `KeyValue` with only the key, under a
//!   revision with a trailing `t`), so a scan of the table is the history in order.
//! - The [`TreeIndex`] (in memory, rebuilt from the table at start) maps each key to
//!   the revisions where it changed, so reads at any uncompacted revision are cheap.
//! - Compaction drops index history at or below a revision and then deletes the values
//!   that no read at or above it needs.
//!
//! Concurrency: one writer (the Raft apply thread) holds the state's write lock for a
//! whole apply round via [`WriteSession`]; readers take the read lock for the duration
//! of one read, so a read never sees half of a transaction.

pub mod index;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use prost::Message;
use proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use proto::etcdserverpb::{RangeRequest, RangeResponse};
use proto::mvccpb::{Event, KeyValue, event::EventType};

pub use index::{KeyRange, Rev, TreeIndex};

use crate::engine::{self, KvEngine, Table, WriteBatch};

/// Meta keys.
pub(crate) mod meta {
    /// The Raft index of the last applied entry.
    pub(crate) const CONSISTENT_INDEX: &[u8] = b"consistent_index";
    /// The term of the last applied entry.
    pub(crate) const CONSISTENT_TERM: &[u8] = b"term";
    /// The revision of the last compaction that finished.
    pub(crate) const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
    /// The revision of the last compaction that was scheduled.
    pub(crate) const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
}

/// MVCC errors. Their texts are etcd's, since clients print them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The read revision is below the compaction revision.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The read revision is above the current revision.
    #[error("mvcc: required revision is a future revision")]
    FutureRev,
    /// The engine failed.
    #[error("storage engine: {0}")]
    Engine(#[from] engine::Error),
    /// A stored record could not be decoded.
    #[error("corrupt record at {0}")]
    Corrupt(String),
}

/// Result alias for MVCC calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The state the read/write lock protects.
#[derive(Debug, Default)]
pub struct State {
    index: TreeIndex,
    current_rev: i64,
    compact_rev: i64,
}

/// A change made by a write: what watchers see.
#[derive(Debug, Clone)]
pub struct Change {
    /// The event (PUT with the new KeyValue, DELETE with key and mod revision).
    pub event: Event,
}

/// The MVCC key-value store.
pub struct MvccStore {
    engine: Arc<dyn KvEngine>,
    state: RwLock<State>,
}

fn decode_kv(rev: Rev, raw: &[u8]) -> Result<KeyValue> {
    KeyValue::decode(raw).map_err(|_| Error::Corrupt(format!("{}_{}", rev.main, rev.sub)))
}

pub(crate) fn read_i64(engine: &dyn KvEngine, key: &[u8]) -> Result<i64> {
    Ok(engine
        .get(Table::Meta, key)?
        .and_then(|v| v.try_into().ok().map(i64::from_be_bytes))
        .unwrap_or(0))
}

impl MvccStore {
    /// Opens the store over `engine`, rebuilding the index from the stored history and
    /// finishing a compaction that was scheduled but not finished.
    pub fn open(engine: Arc<dyn KvEngine>) -> Result<Self> {
        let store = Self {
            engine,
            state: RwLock::new(State::default()),
        };
        store.reload()?;
        Ok(store)
    }

    /// Rebuilds the index from the engine (at open, and after a snapshot replaced the
    /// stored state).
    pub fn reload(&self) -> Result<()> {
        let mut state = State::default();
        let mut err = None;
        self.engine.scan(Table::Kv, b"", None, &mut |k, v| {
            let Some((rev, tomb)) = Rev::decode(k) else {
                err = Some(Error::Corrupt(format!("{k:?}")));
                return false;
            };
            let kv = match decode_kv(rev, v) {
                Ok(kv) => kv,
                Err(e) => {
                    err = Some(e);
                    return false;
                }
            };
            if tomb {
                state.index.tombstone(&kv.key, rev);
            } else {
                state.index.put(&kv.key, rev);
            }
            state.current_rev = state.current_rev.max(rev.main);
            true
        })?;
        if let Some(e) = err {
            return Err(e);
        }
        let finished = read_i64(&*self.engine, meta::FINISHED_COMPACT)?;
        let scheduled = read_i64(&*self.engine, meta::SCHEDULED_COMPACT)?;
        state.compact_rev = finished.max(scheduled);
        // A fresh store starts at revision 1, as etcd does.
        state.current_rev = state.current_rev.max(state.compact_rev).max(1);
        *self.state.write() = state;
        if scheduled > finished {
            tracing::info!(revision = scheduled, "resuming unfinished compaction");
            let avail = self.state.write().index.compact(scheduled);
            self.finish_compaction(scheduled, &avail)?;
        } else if finished > 0 {
            self.state.write().index.compact(finished);
        }
        Ok(())
    }

    /// Replaces the stored state: runs `f` (which rewrites the engine's tables) with the
    /// write lock held, then rebuilds the index, so no reader sees a mix.
    pub fn restore<E: Into<Error>>(
        &self,
        f: impl FnOnce() -> std::result::Result<(), E>,
    ) -> Result<()> {
        let mut g = self.state.write();
        f().map_err(Into::into)?;
        let mut state = State::default();
        std::mem::swap(&mut *g, &mut state);
        drop(g);
        self.reload()
    }

    /// Runs `f` with the read lock held: nothing is applied meanwhile (for snapshots).
    pub fn with_read_lock<T>(&self, f: impl FnOnce() -> T) -> T {
        let _g = self.state.read();
        f()
    }

    /// The engine underneath.
    pub fn engine(&self) -> &Arc<dyn KvEngine> {
        &self.engine
    }

    /// The current revision.
    pub fn current_rev(&self) -> i64 {
        self.state.read().current_rev
    }

    /// The compaction revision.
    pub fn compact_rev(&self) -> i64 {
        self.state.read().compact_rev
    }

    /// `(current, compact)` revisions read together.
    pub fn revs(&self) -> (i64, i64) {
        let s = self.state.read();
        (s.current_rev, s.compact_rev)
    }

    /// Serves a Range request at the store's current state.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let st = self.state.read();
        let reader = |rev: Rev| -> Result<KeyValue> { self.read_committed(rev) };
        range_in(&st.index, st.current_rev, st.compact_rev, &reader, req)
    }

    /// The value at `key` as of revision `at` (for watchers' prev_kv), if any.
    pub fn get_at(&self, key: &[u8], at: i64) -> Result<Option<KeyValue>> {
        let st = self.state.read();
        if at < st.compact_rev {
            return Err(Error::Compacted);
        }
        match st.index.get(key, at) {
            Some(f) => self.read_committed(f.modified).map(Some),
            None => Ok(None),
        }
    }

    fn read_committed(&self, rev: Rev) -> Result<KeyValue> {
        match self.engine.get(Table::Kv, &rev.encode(false))? {
            Some(raw) => decode_kv(rev, &raw),
            None => Err(Error::Corrupt(format!(
                "missing revision {}_{}",
                rev.main, rev.sub
            ))),
        }
    }

    /// The events with main revision in `[from, to]` whose key is in `range`, in
    /// revision order, for watchers catching up. Fails if `from` is compacted.
    pub fn events_between(
        &self,
        from: i64,
        to: i64,
        matches: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Vec<Event>> {
        if from > to {
            return Ok(Vec::new());
        }
        if from < self.compact_rev() {
            return Err(Error::Compacted);
        }
        let mut out = Vec::new();
        let mut err = None;
        let end = Rev::main_start(to.saturating_add(1));
        self.engine.scan(
            Table::Kv,
            &Rev::main_start(from),
            Some(&end),
            &mut |k, v| {
                let Some((rev, tomb)) = Rev::decode(k) else {
                    return true;
                };
                match decode_kv(rev, v) {
                    Ok(mut kv) => {
                        if matches(&kv.key) {
                            let ty = if tomb {
                                kv.mod_revision = rev.main;
                                EventType::Delete
                            } else {
                                EventType::Put
                            };
                            out.push(Event {
                                r#type: ty as i32,
                                kv: Some(kv),
                                prev_kv: None,
                            });
                        }
                        true
                    }
                    Err(e) => {
                        err = Some(e);
                        false
                    }
                }
            },
        )?;
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Starts an apply round: takes the write lock until [`WriteSession::commit`].
    pub fn write(&self) -> WriteSession<'_> {
        let guard = self.state.write();
        WriteSession {
            store: self,
            st: guard,
            batch: WriteBatch::new(),
            pending: HashMap::new(),
            txn_rev: None,
            sub: 0,
            changes: Vec::new(),
            compaction: None,
        }
    }

    /// Deletes the values compacted at `rev` that are not in `keep`, in bounded
    /// batches, then records the compaction as finished.
    pub fn finish_compaction(&self, rev: i64, keep: &std::collections::HashSet<Rev>) -> Result<()> {
        const BATCH: usize = 10_000;
        let end = Rev::main_start(rev.saturating_add(1));
        let mut start = Vec::new();
        loop {
            let mut doomed = Vec::new();
            let mut last = None;
            self.engine
                .scan(Table::Kv, &start, Some(&end), &mut |k, _| {
                    last = Some(k.to_vec());
                    if let Some((r, _)) = Rev::decode(k)
                        && !keep.contains(&r)
                    {
                        doomed.push(k.to_vec());
                    }
                    doomed.len() < BATCH
                })?;
            let mut batch = WriteBatch::new();
            for k in doomed.drain(..) {
                batch.delete(Table::Kv, k);
            }
            let done = batch.len() < BATCH;
            if done {
                batch.put(
                    Table::Meta,
                    meta::FINISHED_COMPACT.to_vec(),
                    rev.to_be_bytes().to_vec(),
                );
            }
            self.engine.write(&batch, engine::Durability::Buffered)?;
            if done {
                return Ok(());
            }
            match last {
                Some(mut l) => {
                    l.push(0);
                    start = l;
                }
                None => return Ok(()),
            }
        }
    }

    /// etcd's HashKV: a CRC-32C over every stored revision up to `rev` (0: current),
    /// returning `(hash, compact revision, hashed revision)`.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64)> {
        let (current, compact) = self.revs();
        let rev = if rev <= 0 { current } else { rev };
        if rev > current {
            return Err(Error::FutureRev);
        }
        if rev < compact {
            return Err(Error::Compacted);
        }
        let mut crc = crate::crc32c::Crc32c::new();
        let end = Rev::main_start(rev.saturating_add(1));
        self.engine.scan(Table::Kv, b"", Some(&end), &mut |k, v| {
            crc.update(k);
            crc.update(v);
            true
        })?;
        Ok((crc.finish(), compact, rev))
    }
}

/// Resolves a RangeRequest against a state, reading values through `read`.
fn range_in(
    index: &TreeIndex,
    current_rev: i64,
    compact_rev: i64,
    read: &dyn Fn(Rev) -> Result<KeyValue>,
    req: &RangeRequest,
) -> Result<RangeResponse> {
    let at = if req.revision <= 0 {
        current_rev
    } else {
        req.revision
    };
    if at > current_rev {
        return Err(Error::FutureRev);
    }
    if at < compact_rev {
        return Err(Error::Compacted);
    }
    let range = KeyRange::from_etcd(&req.key, &req.range_end);
    let order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    // Like etcd: the limit is pushed into the index only when results come out in key
    // order and unfiltered; one extra row tells whether there are more.
    let push_limit = order == SortOrder::None && !filtered && req.limit > 0;
    let mut count = 0i64;
    let mut revs = Vec::new();
    index.range(&range, at, |_, f| {
        count += 1;
        if !req.count_only && (!push_limit || (revs.len() as i64) <= req.limit) {
            revs.push(f.modified);
        }
        true
    });
    let mut resp = RangeResponse {
        count,
        ..Default::default()
    };
    if req.count_only {
        return Ok(resp);
    }
    let mut kvs = revs.into_iter().map(read).collect::<Result<Vec<_>>>()?;
    if req.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= req.max_mod_revision);
    }
    if req.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= req.min_mod_revision);
    }
    if req.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= req.max_create_revision);
    }
    if req.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= req.min_create_revision);
    }
    let order = if target != SortTarget::Key && order == SortOrder::None {
        SortOrder::Ascend
    } else {
        order
    };
    if order != SortOrder::None {
        // Stable sorts on top of key order, as Go's sort.Sort on etcd's slices is not
        // guaranteed stable but ties are rare; stable keeps results deterministic.
        match target {
            SortTarget::Key => kvs.sort_by(|a, b| a.key.cmp(&b.key)),
            SortTarget::Version => kvs.sort_by_key(|kv| kv.version),
            SortTarget::Create => kvs.sort_by_key(|kv| kv.create_revision),
            SortTarget::Mod => kvs.sort_by_key(|kv| kv.mod_revision),
            SortTarget::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
        }
        if order == SortOrder::Descend {
            kvs.reverse();
        }
    }
    if req.limit > 0 && kvs.len() as i64 > req.limit {
        kvs.truncate(req.limit as usize);
        resp.more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    resp.kvs = kvs;
    Ok(resp)
}

/// One apply round: any number of write transactions under one write lock, written to
/// the engine in one batch by [`commit`](WriteSession::commit).
pub struct WriteSession<'a> {
    store: &'a MvccStore,
    st: RwLockWriteGuard<'a, State>,
    batch: WriteBatch,
    pending: HashMap<Rev, KeyValue>,
    txn_rev: Option<i64>,
    sub: i64,
    changes: Vec<(i64, Change)>,
    compaction: Option<(i64, std::collections::HashSet<Rev>)>,
}

/// What a committed session hands back.
#[derive(Debug, Default)]
pub struct Committed {
    /// Changes by revision, in order.
    pub changes: Vec<(i64, Change)>,
    /// A compaction to finish physically: its revision and the revisions to keep.
    pub compaction: Option<(i64, std::collections::HashSet<Rev>)>,
}

impl WriteSession<'_> {
    fn read(&self, rev: Rev) -> Result<KeyValue> {
        match self.pending.get(&rev) {
            Some(kv) => Ok(kv.clone()),
            None => self.store.read_committed(rev),
        }
    }

    /// The revision the open transaction writes at (current + 1).
    fn next_rev(&self) -> i64 {
        self.st.current_rev + 1
    }

    /// The revision reads inside the open transaction see: its own writes included.
    pub fn read_rev(&self) -> i64 {
        if self.sub > 0 {
            self.next_rev()
        } else {
            self.st.current_rev
        }
    }

    /// Opens a write transaction. Must be paired with [`end_txn`](Self::end_txn).
    pub fn begin_txn(&mut self) {
        debug_assert!(self.txn_rev.is_none());
        self.txn_rev = Some(self.next_rev());
        self.sub = 0;
    }

    /// Closes the transaction; bumps the revision if it changed anything. Returns the
    /// revision clients see in the response header.
    pub fn end_txn(&mut self) -> i64 {
        self.txn_rev = None;
        if self.sub > 0 {
            self.st.current_rev += 1;
        }
        self.sub = 0;
        self.st.current_rev
    }

    /// Serves a range inside the transaction (it sees the transaction's own writes).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let reader = |rev: Rev| self.read(rev);
        range_in(
            &self.st.index,
            self.read_rev(),
            self.st.compact_rev,
            &reader,
            req,
        )
    }

    /// The live KeyValue of `key` as the transaction sees it.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        match self.st.index.get(key, self.read_rev()) {
            Some(f) => self.read(f.modified).map(Some),
            None => Ok(None),
        }
    }

    /// Puts `key`. Create revision and version come from the index, so no stored value
    /// is read.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Result<()> {
        let rev = Rev::new(self.next_rev(), self.sub);
        let (create, ver) = match self.st.index.get(key, self.read_rev()) {
            Some(f) => (f.created.main, f.version),
            None => (rev.main, 0),
        };
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: create,
            mod_revision: rev.main,
            version: ver + 1,
            value,
            lease,
        };
        self.batch
            .put(Table::Kv, rev.encode(false), kv.encode_to_vec());
        self.st.index.put(key, rev);
        self.pending.insert(rev, kv.clone());
        self.sub += 1;
        self.changes.push((
            rev.main,
            Change {
                event: Event {
                    r#type: EventType::Put as i32,
                    kv: Some(kv),
                    prev_kv: None,
                },
            },
        ));
        Ok(())
    }

    /// Deletes every live key in `range`. Returns the deleted KeyValues when
    /// `with_values`, otherwise KeyValues holding only the key (no value is read).
    pub fn delete_range(&mut self, range: &KeyRange, with_values: bool) -> Result<Vec<KeyValue>> {
        let keys = {
            let mut keys = Vec::new();
            self.st.index.range(range, self.read_rev(), |k, f| {
                keys.push((k.to_vec(), f.modified));
                true
            });
            keys
        };
        let mut deleted = Vec::with_capacity(keys.len());
        for (key, modified) in keys {
            let prev = if with_values {
                self.read(modified)?
            } else {
                KeyValue {
                    key: key.clone(),
                    ..Default::default()
                }
            };
            let rev = Rev::new(self.next_rev(), self.sub);
            let tomb = KeyValue {
                key: key.clone(),
                ..Default::default()
            };
            self.batch
                .put(Table::Kv, rev.encode(true), tomb.encode_to_vec());
            self.st.index.tombstone(&key, rev);
            self.sub += 1;
            self.changes.push((
                rev.main,
                Change {
                    event: Event {
                        r#type: EventType::Delete as i32,
                        kv: Some(KeyValue {
                            key,
                            mod_revision: rev.main,
                            ..Default::default()
                        }),
                        prev_kv: None,
                    },
                },
            ));
            deleted.push(prev);
        }
        Ok(deleted)
    }

    /// Compacts at `rev`: validates, drops index history, and schedules the physical
    /// deletion (returned from [`commit`](Self::commit)).
    pub fn compact(&mut self, rev: i64) -> Result<()> {
        if rev <= self.st.compact_rev {
            return Err(Error::Compacted);
        }
        if rev > self.st.current_rev {
            return Err(Error::FutureRev);
        }
        let keep = self.st.index.compact(rev);
        self.st.compact_rev = rev;
        self.batch.put(
            Table::Meta,
            meta::SCHEDULED_COMPACT.to_vec(),
            rev.to_be_bytes().to_vec(),
        );
        self.compaction = Some((rev, keep));
        Ok(())
    }

    /// The current revision as this session sees it.
    pub fn current_rev(&self) -> i64 {
        self.st.current_rev
    }

    /// The compaction revision.
    pub fn compact_rev(&self) -> i64 {
        self.st.compact_rev
    }

    /// Adds non-MVCC mutations (leases, meta, members) to the round's batch.
    pub fn batch_mut(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    /// Writes the round to the engine and releases the lock.
    pub fn commit(self, durability: engine::Durability) -> Result<Committed> {
        debug_assert!(self.txn_rev.is_none(), "commit inside a transaction");
        if !self.batch.is_empty() {
            self.store.engine.write(&self.batch, durability)?;
        }
        drop(self.st);
        Ok(Committed {
            changes: self.changes,
            compaction: self.compaction,
        })
    }
}

/// A read guard, for callers that need several consistent reads.
pub type ReadGuard<'a> = RwLockReadGuard<'a, State>;

#[cfg(test)]
mod tests;
