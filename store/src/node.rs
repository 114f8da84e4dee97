//! The Raft node: one thread that owns the `RawNode` and drives it.
//!
//! The loop waits for a [`Command`] or the next tick, then handles `Ready` in the order
//! raft-rs requires:
//!
//! 1. send `messages` (they need no persistence);
//! 2. install a received snapshot (state machine and log, one durable write);
//! 3. apply `committed_entries` (already durable in the log);
//! 4. append `entries` and the hard state: **one fsync** (`Durability::Sync`);
//! 5. only then send `persisted_messages` (votes and appends acknowledged to peers);
//! 6. `advance`, then send and apply what the light ready carries.
//!
//! Applying writes the state machine with `Durability::Buffered`: the Raft log is the
//! durable record, and the consistent index stored atomically with the state tells a
//! restart where to resume. Every `Sync` write (the next append, or log compaction)
//! makes earlier buffered writes durable too, so the log is only truncated behind state
//! that is on disk.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use prost::Message as _;
use proto::etcdserverpb::LeaseRevokeRequest;
use proto::peer::{ConfChangeContext, InternalRequest, internal_request::Request};
use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, Message,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::{oneshot, watch};

use crate::engine::{Durability, Table, WriteBatch};
use crate::error::EtcdError;
use crate::metrics::Metrics;
use crate::raftlog::RaftLog;
use crate::statemachine::{Applied, MemberChange, StateMachine};
use crate::watch::WatchHub;

/// Work for the Raft thread.
pub enum Command {
    /// Propose an encoded [`InternalRequest`]; its id is registered in the waiters.
    Propose(Vec<u8>),
    /// Propose a membership change.
    ConfChange(ConfChangeV2),
    /// Ask for a read index; the context is registered in the read waiters.
    ReadIndex(u64),
    /// Messages from peers.
    Step(Vec<Message>),
    /// A peer could not be reached.
    Unreachable(u64),
    /// A snapshot to a peer finished (true) or failed.
    SnapshotDone(u64, bool),
    /// Hand leadership to another member.
    TransferLeader(u64),
    /// A peer refused our messages because this member was removed from the cluster.
    Removed,
    /// Stop the thread.
    Stop,
}

/// What a peer answers a removed member (etcd's wording).
pub const MEMBER_REMOVED: &str = "the member has been permanently removed from the cluster";

/// Sends Raft messages to peers.
pub trait Transport: Send + Sync {
    /// Queues messages; never blocks.
    fn send(&self, msgs: Vec<Message>);
    /// The members changed: (re)connect to their peer URLs.
    fn update_peers(&self, members: &[proto::etcdserverpb::Member]);
}

/// Node status, for status RPCs and metrics.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The known leader (0: none).
    pub leader: u64,
    /// The current term.
    pub term: u64,
    /// Whether this member leads.
    pub is_leader: bool,
    /// The last log index.
    pub last_index: u64,
    /// The commit index.
    pub commit: u64,
    /// Leader only: each follower's matched index.
    pub progress: HashMap<u64, u64>,
}

/// State shared between the Raft thread and the RPC layer.
pub struct Shared {
    /// The member's ID.
    pub id: u64,
    /// Status, refreshed every round.
    pub status: RwLock<Status>,
    /// The applied index; waiters for linearizable reads watch it.
    pub applied: watch::Sender<u64>,
    /// The leader ID; changes wake anyone waiting for a leader.
    pub leader: watch::Sender<u64>,
    /// Finished physical compactions.
    pub compacted: watch::Sender<i64>,
    /// Proposals waiting for their result.
    pub waiters: Mutex<HashMap<u64, oneshot::Sender<Applied>>>,
    /// Read index requests waiting for their index.
    pub reads: Mutex<HashMap<u64, oneshot::Sender<u64>>>,
    /// Set when this member was removed from the cluster or stopped.
    pub stopped: watch::Sender<bool>,
    next_id: AtomicU64,
}

impl Shared {
    /// Fresh shared state for member `id`.
    pub fn new(id: u64, applied: u64) -> Self {
        Self {
            id,
            status: RwLock::new(Status::default()),
            applied: watch::channel(applied).0,
            leader: watch::channel(0).0,
            compacted: watch::channel(0).0,
            waiters: Mutex::new(HashMap::new()),
            reads: Mutex::new(HashMap::new()),
            stopped: watch::channel(false).0,
            // Like etcd's idutil: the member ID's low bits in the high bits, then a counter.
            next_id: AtomicU64::new((id & 0xffff) << 48 | (now_millis() & 0xff_ffff_ffff) << 8),
        }
    }

    /// A request ID unique across the cluster's members.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Tuning.
#[derive(Debug, Clone)]
pub struct Config {
    /// One Raft tick (`--heartbeat-interval`).
    pub tick: Duration,
    /// Applied entries between log compactions (`--snapshot-count`).
    pub snapshot_count: u64,
    /// Entries kept behind a compaction for slow followers (etcd: 5000).
    pub catchup_entries: u64,
    /// How far a new leader extends leases (the election timeout).
    pub lease_extend: Duration,
}

/// The Raft thread's state.
pub struct Node {
    raw: RawNode<RaftLog>,
    log: RaftLog,
    sm: Arc<StateMachine>,
    hub: Arc<WatchHub>,
    transport: Arc<dyn Transport>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    cfg: Config,
    last_compact_at: u64,
    applied: u64,
    leader: u64,
    ticks: u64,
}

impl Node {
    /// Wraps a RawNode.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        raw: RawNode<RaftLog>,
        log: RaftLog,
        sm: Arc<StateMachine>,
        hub: Arc<WatchHub>,
        transport: Arc<dyn Transport>,
        shared: Arc<Shared>,
        metrics: Arc<Metrics>,
        cfg: Config,
        applied: u64,
    ) -> Self {
        Self {
            raw,
            log,
            sm,
            hub,
            transport,
            shared,
            metrics,
            cfg,
            last_compact_at: applied,
            applied,
            leader: 0,
            ticks: 0,
        }
    }

    /// Runs until [`Command::Stop`] or removal from the cluster.
    pub fn run(mut self, rx: Receiver<Command>) {
        let mut last_tick = Instant::now();
        loop {
            let wait = self.cfg.tick.saturating_sub(last_tick.elapsed());
            let mut cmds = Vec::new();
            match rx.recv_timeout(wait) {
                Ok(cmd) => {
                    cmds.push(cmd);
                    // Batch whatever else is queued into this round.
                    while cmds.len() < 4096 {
                        match rx.try_recv() {
                            Ok(cmd) => cmds.push(cmd),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let tick = last_tick.elapsed() >= self.cfg.tick;
            if tick {
                last_tick = Instant::now();
            }
            match self.round(cmds, tick) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(error = %e, "raft ready handling failed; stopping");
                    break;
                }
            }
        }
        self.fail_all_waiters(EtcdError::Stopped);
        let _ = self.shared.stopped.send_replace(true);
        tracing::info!("raft node stopped");
    }

    /// One round of the loop, synchronously: handle `cmds`, tick if asked (a tick also
    /// checks lease expiry every fifth time), then handle Ready. Returns false when the
    /// node must stop. Deterministic tests drive nodes with this directly.
    pub fn round(&mut self, cmds: Vec<Command>, tick: bool) -> Result<bool, String> {
        for cmd in cmds {
            if !self.handle(cmd) {
                return Ok(false);
            }
        }
        if tick {
            self.raw.tick();
            self.ticks += 1;
            if self.ticks.is_multiple_of(5) {
                self.revoke_expired_leases();
            }
        }
        self.on_ready()?;
        Ok(!*self.shared.stopped.borrow())
    }

    /// The Raft role, for tests.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The applied index.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Propose(data) => {
                if let Err(e) = self.raw.propose(Vec::new(), data.clone()) {
                    self.metrics.proposals_failed.inc();
                    let id = InternalRequest::decode(data.as_slice())
                        .map(|r| r.id)
                        .unwrap_or(0);
                    self.fail(id, propose_error(&e, self.leader));
                }
            }
            Command::ConfChange(cc) => {
                if let Err(e) = self.raw.propose_conf_change(Vec::new(), cc.clone()) {
                    self.metrics.proposals_failed.inc();
                    let id = ConfChangeContext::decode(&cc.context[..])
                        .map(|c| c.id)
                        .unwrap_or(0);
                    self.fail(id, propose_error(&e, self.leader));
                }
            }
            Command::ReadIndex(ctx) => self.raw.read_index(ctx.to_be_bytes().to_vec()),
            Command::Step(msgs) => {
                for m in msgs {
                    if let Err(e) = self.raw.step(m) {
                        tracing::debug!(error = %e, "step");
                    }
                }
            }
            Command::Unreachable(id) => self.raw.report_unreachable(id),
            Command::SnapshotDone(id, ok) => self.raw.report_snapshot(
                id,
                if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                },
            ),
            Command::TransferLeader(id) => self.raw.transfer_leader(id),
            Command::Removed => {
                tracing::warn!("{MEMBER_REMOVED}");
                let _ = self.shared.stopped.send_replace(true);
                return false;
            }
            Command::Stop => return false,
        }
        true
    }

    fn fail(&self, id: u64, e: EtcdError) {
        if let Some(tx) = self.shared.waiters.lock().remove(&id) {
            let _ = tx.send(Err(e));
        }
    }

    fn fail_all_waiters(&self, e: EtcdError) {
        for (_, tx) in self.shared.waiters.lock().drain() {
            let _ = tx.send(Err(e.clone()));
        }
        self.shared.reads.lock().clear();
    }

    fn revoke_expired_leases(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            return;
        }
        // etcd revokes at most 1000 leases a second.
        for id in self.sm.lessor().take_expired(500, Duration::from_secs(3)) {
            tracing::info!(lease = %format!("{id:016x}"), "lease expired; revoking");
            let req = InternalRequest {
                id: 0,
                request: Some(Request::LeaseRevoke(LeaseRevokeRequest { id })),
            };
            let _ = self.raw.propose(Vec::new(), req.encode_to_vec());
        }
    }

    fn on_ready(&mut self) -> Result<(), String> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            self.on_soft_state(ss.leader_id, ss.raft_state);
        }
        self.transport.send(rd.take_messages());
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone())?;
        }
        self.apply(rd.take_committed_entries())?;
        let mut batch = WriteBatch::new();
        self.log.append(rd.entries(), &mut batch);
        if let Some(hs) = rd.hs() {
            self.log.set_hard_state(hs, &mut batch);
        }
        if !batch.is_empty() {
            let t = Instant::now();
            let durability = if rd.must_sync() {
                Durability::Sync
            } else {
                Durability::Buffered
            };
            self.sm
                .mvcc()
                .engine()
                .write(&batch, durability)
                .map_err(|e| format!("persisting raft log: {e}"))?;
            if durability == Durability::Sync {
                self.metrics.wal_fsync.observe(t.elapsed().as_secs_f64());
            }
            self.log.trim_cache();
        }
        self.transport.send(rd.take_persisted_messages());
        for rs in rd.take_read_states() {
            let ctx = u64::from_be_bytes(rs.request_ctx.as_slice().try_into().unwrap_or_default());
            if let Some(tx) = self.shared.reads.lock().remove(&ctx) {
                let _ = tx.send(rs.index);
            }
        }
        let mut light = self.raw.advance(rd);
        // The new commit index rides with the apply round's write (it needs no fsync:
        // a lost commit index is learned again from the leader).
        let mut extra = WriteBatch::new();
        if let Some(commit) = light.commit_index() {
            self.log.set_commit(commit, &mut extra);
        }
        self.transport.send(light.take_messages());
        let entries = light.take_committed_entries();
        if entries.is_empty() {
            if !extra.is_empty() {
                self.sm
                    .mvcc()
                    .engine()
                    .write(&extra, Durability::Buffered)
                    .map_err(|e| format!("persisting commit index: {e}"))?;
            }
        } else {
            self.apply_with(entries, extra)?;
        }
        self.raw.advance_apply();
        self.maybe_compact_log()?;
        self.refresh_status();
        Ok(())
    }

    fn on_soft_state(&mut self, leader: u64, role: StateRole) {
        if leader != self.leader {
            if leader != 0 {
                self.metrics.leader_changes.inc();
                tracing::info!(
                    member = %format!("{:x}", self.shared.id),
                    leader = %format!("{leader:x}"),
                    term = self.raw.raft.term,
                    "raft.node: elected leader at term"
                );
            } else {
                tracing::info!(member = %format!("{:x}", self.shared.id), "raft.node: lost leader");
            }
            self.leader = leader;
            let _ = self.shared.leader.send_replace(leader);
            // Proposals in flight may be lost with the old leader; their waiters time out.
        }
        let is_leader = role == StateRole::Leader;
        self.metrics.has_leader.set(i64::from(leader != 0));
        self.metrics.is_leader.set(i64::from(is_leader));
        if is_leader && !self.sm.lessor().is_primary() {
            self.sm.lessor().promote(self.cfg.lease_extend);
        } else if !is_leader && self.sm.lessor().is_primary() {
            self.sm.lessor().demote();
        }
    }

    fn refresh_status(&self) {
        let raft = &self.raw.raft;
        let mut st = self.shared.status.write();
        st.leader = raft.leader_id;
        st.term = raft.term;
        st.is_leader = raft.state == StateRole::Leader;
        st.last_index = raft.raft_log.last_index();
        st.commit = raft.raft_log.committed;
        st.progress.clear();
        if st.is_leader {
            for (id, pr) in raft.prs().iter() {
                st.progress.insert(*id, pr.matched);
            }
        }
    }

    fn install_snapshot(&mut self, snap: raft::prelude::Snapshot) -> Result<(), String> {
        let meta = snap.get_metadata().clone();
        tracing::info!(
            index = meta.index,
            term = meta.term,
            "applying database snapshot from leader"
        );
        let mut batch = crate::snapshot::restore_batch(&snap.data, &Table::STATE_MACHINE)
            .map_err(|e| e.to_string())?;
        let mvcc = self.sm.mvcc();
        mvcc.restore(|| {
            self.log.apply_snapshot(&meta, &mut batch);
            mvcc.engine().write(&batch, Durability::Sync)
        })
        .map_err(|e| format!("installing snapshot: {e}"))?;
        self.sm.reload().map_err(|e| e.to_string())?;
        self.hub.reset(self.sm.mvcc().current_rev());
        self.transport.update_peers(&self.sm.members());
        self.applied = meta.index;
        self.last_compact_at = meta.index;
        let _ = self.shared.applied.send_replace(meta.index);
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), String> {
        self.apply_with(entries, WriteBatch::new())
    }

    /// Applies committed entries in one state-machine round whose engine write also
    /// carries `extra`.
    fn apply_with(&mut self, entries: Vec<Entry>, extra: WriteBatch) -> Result<(), String> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let (last_index, last_term) = (last.index, last.term);
        let started = Instant::now();
        let mut replies: Vec<(u64, Applied)> = Vec::new();
        let mut removed_self = false;
        let mut members_changed = false;
        let mut session = self.sm.session();
        for e in entries {
            if e.index <= self.applied {
                continue;
            }
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    if e.data.is_empty() {
                        continue; // a new leader's empty entry
                    }
                    match InternalRequest::decode(&e.data[..]) {
                        Ok(req) => {
                            let id = req.id;
                            let res = self.sm.apply_request(&mut session, req);
                            replies.push((id, res));
                        }
                        Err(err) => {
                            tracing::error!(index = e.index, error = %err, "undecodable entry skipped")
                        }
                    }
                }
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    let cc = if e.get_entry_type() == EntryType::EntryConfChange {
                        let mut c = ConfChange::default();
                        c.merge_from_bytes(&e.data).map_err(|e| e.to_string())?;
                        raft_proto::ConfChangeI::into_v2(c)
                    } else {
                        let mut c = ConfChangeV2::default();
                        c.merge_from_bytes(&e.data).map_err(|e| e.to_string())?;
                        c
                    };
                    let ctx = ConfChangeContext::decode(&cc.context[..]).unwrap_or_default();
                    let change = conf_change_to_member_change(&cc, &ctx, &self.sm);
                    let cs = self.raw.apply_conf_change(&cc).map_err(|e| e.to_string())?;
                    self.log.set_conf_state(&cs, session.batch_mut());
                    if let Some(change) = change {
                        if matches!(change, MemberChange::Remove(id) if id == self.shared.id) {
                            removed_self = true;
                        }
                        let res = self.sm.apply_member_change(&mut session, &change);
                        replies.push((ctx.id, res));
                        members_changed = true;
                    }
                }
            }
        }
        StateMachine::set_consistent_index(&mut session, last_index, last_term);
        session.batch_mut().extend(extra);
        self.log.ensure_commit(last_index, session.batch_mut());
        let t = Instant::now();
        let committed = session
            .commit(Durability::Buffered)
            .map_err(|e| e.to_string())?;
        self.metrics
            .backend_commit
            .observe(t.elapsed().as_secs_f64());
        self.applied = last_index;
        self.hub
            .publish(&committed.changes, self.sm.mvcc().current_rev());
        if let Some((rev, keep)) = committed.compaction {
            let sm = self.sm.clone();
            let shared = self.shared.clone();
            std::thread::spawn(move || match sm.mvcc().finish_compaction(rev, &keep) {
                Ok(()) => {
                    tracing::info!(revision = rev, "finished scheduled compaction");
                    let _ = shared.compacted.send_replace(rev);
                }
                Err(e) => tracing::error!(revision = rev, error = %e, "compaction failed"),
            });
        }
        let _ = self.shared.applied.send_replace(last_index);
        self.metrics.proposals_applied.set(last_index as f64);
        self.metrics
            .proposals_committed
            .set(self.raw.raft.raft_log.committed as f64);
        {
            let mut waiters = self.shared.waiters.lock();
            for (id, res) in replies {
                if id == 0 {
                    continue;
                }
                if let Some(tx) = waiters.remove(&id) {
                    let _ = tx.send(res);
                }
            }
            self.metrics.proposals_pending.set(waiters.len() as i64);
        }
        if members_changed {
            self.transport.update_peers(&self.sm.members());
        }
        if started.elapsed() > Duration::from_millis(100) {
            self.metrics.slow_apply.inc();
            tracing::warn!(took = ?started.elapsed(), "apply request took too long");
        }
        if removed_self {
            tracing::warn!("{MEMBER_REMOVED}");
            let _ = self.shared.stopped.send_replace(true);
        }
        Ok(())
    }

    fn maybe_compact_log(&mut self) -> Result<(), String> {
        if self.applied.saturating_sub(self.last_compact_at) < self.cfg.snapshot_count {
            return Ok(());
        }
        self.last_compact_at = self.applied;
        let to = self.applied.saturating_sub(self.cfg.catchup_entries);
        let (first, _) = self.log.bounds();
        if to < first {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        self.log.compact(to, &mut batch);
        // Durable: it also makes every buffered state-machine write before it durable,
        // so the log is never truncated ahead of the state on disk.
        self.sm
            .mvcc()
            .engine()
            .write(&batch, Durability::Sync)
            .map_err(|e| format!("compacting raft log: {e}"))?;
        tracing::info!(
            applied = self.applied,
            compact_index = to,
            "compacted raft logs"
        );
        Ok(())
    }
}

fn propose_error(e: &raft::Error, leader: u64) -> EtcdError {
    match e {
        raft::Error::ProposalDropped if leader == 0 => EtcdError::NoLeader,
        raft::Error::ProposalDropped => EtcdError::LeaderChanged,
        other => EtcdError::Internal(other.to_string()),
    }
}

fn conf_change_to_member_change(
    cc: &ConfChangeV2,
    ctx: &ConfChangeContext,
    sm: &StateMachine,
) -> Option<MemberChange> {
    let single: &ConfChangeSingle = cc.changes.first()?;
    match single.get_change_type() {
        ConfChangeType::AddNode => match sm.member(single.node_id) {
            Some(m) if m.is_learner => Some(MemberChange::Promote(single.node_id)),
            Some(_) => None,
            None => ctx.member.clone().map(|mut m| {
                m.is_learner = false;
                MemberChange::Add(m)
            }),
        },
        ConfChangeType::AddLearnerNode => ctx.member.clone().map(|mut m| {
            m.is_learner = true;
            MemberChange::Add(m)
        }),
        ConfChangeType::RemoveNode => Some(MemberChange::Remove(single.node_id)),
    }
}
