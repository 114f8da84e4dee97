//! Deterministic Raft tests: real `Node`s (raft-rs RawNode, our RaftLog, state machine
//! and engine) driven round by round over an in-memory network that can drop messages,
//! cut links and isolate members. The network is the only fake; everything else is the
//! production code path. Randomness comes from a seeded generator, so a failure
//! reproduces with the same seed.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prost::Message as _;
use proto::etcdserverpb::{Member, PutRequest, RangeRequest};
use proto::peer::{ConfChangeContext, InternalRequest, internal_request::Request};
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Message};
use store::app::{Source, bootstrap_new, raft_config, record_join};
use store::engine::{self, EngineKind, KvEngine};
use store::lease::{Lessor, SystemClock};
use store::metrics::Metrics;
use store::node::{Command, Config, Node, Shared, Transport};
use store::raftlog::RaftLog;
use store::statemachine::{Applied, StateMachine};
use store::watch::WatchHub;
use tokio::sync::oneshot;

struct MemTransport(Arc<Mutex<Vec<Message>>>);

impl Transport for MemTransport {
    fn send(&self, msgs: Vec<Message>) {
        self.0.lock().extend(msgs);
    }
    fn update_peers(&self, _members: &[Member]) {}
}

struct SimNode {
    node: Node,
    sm: Arc<StateMachine>,
    shared: Arc<Shared>,
    pending: Vec<Command>,
}

struct Sim {
    dir: tempfile::TempDir,
    nodes: BTreeMap<u64, SimNode>,
    net: Arc<Mutex<Vec<Message>>>,
    seed: u64,
    drop_percent: u64,
    cut: HashSet<(u64, u64)>,
    isolated: HashSet<u64>,
    snapshot_count: u64,
}

fn member(id: u64) -> Member {
    Member {
        id,
        name: format!("n{id}"),
        peer_ur_ls: vec![format!("http://sim-{id}")],
        client_ur_ls: vec![],
        is_learner: false,
    }
}

impl Sim {
    fn new(n: u64, snapshot_count: u64, seed: u64) -> Sim {
        let mut sim = Sim {
            dir: tempfile::tempdir().unwrap(),
            nodes: BTreeMap::new(),
            net: Arc::new(Mutex::new(Vec::new())),
            seed,
            drop_percent: 0,
            cut: HashSet::new(),
            isolated: HashSet::new(),
            snapshot_count,
        };
        let members: Vec<Member> = (1..=n).map(member).collect();
        for id in 1..=n {
            sim.open(id, Some(&members), None);
        }
        sim
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("n{id}"))
    }

    /// Opens node `id` from its directory; bootstraps it into a new cluster of
    /// `bootstrap`, or records it as joining `join`.
    fn open(&mut self, id: u64, bootstrap: Option<&[Member]>, join: Option<&[Member]>) {
        let dir = self.path(id);
        let engine: Arc<dyn KvEngine> =
            Arc::from(engine::open(EngineKind::Redb, Path::new(&dir)).unwrap());
        let lessor = Arc::new(Lessor::new(Arc::new(SystemClock), 2));
        let sm = Arc::new(StateMachine::open(engine.clone(), lessor).unwrap());
        let log = RaftLog::open(&engine, Arc::new(Source(sm.clone()))).unwrap();
        if log.is_empty() {
            if let Some(members) = bootstrap {
                bootstrap_new(&*engine, &log, members, id, 42).unwrap();
            } else if let Some(members) = join {
                record_join(&*engine, members, id, 42).unwrap();
            }
            sm.reload().unwrap();
        }
        let (applied, _) = sm.consistent_index();
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = raft::RawNode::new(&raft_config(id, 10, applied), log.clone(), &logger).unwrap();
        let shared = Arc::new(Shared::new(id, applied));
        let node = Node::new(
            raw,
            log,
            sm.clone(),
            Arc::new(WatchHub::new(sm.mvcc().current_rev())),
            Arc::new(MemTransport(self.net.clone())),
            shared.clone(),
            Arc::new(Metrics::new()),
            Config {
                tick: Duration::from_millis(100),
                snapshot_count: self.snapshot_count,
                catchup_entries: 5.min(self.snapshot_count),
                lease_extend: Duration::from_secs(1),
            },
            applied,
        );
        self.nodes.insert(
            id,
            SimNode {
                node,
                sm,
                shared,
                pending: Vec::new(),
            },
        );
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*
        self.seed ^= self.seed >> 12;
        self.seed ^= self.seed << 25;
        self.seed ^= self.seed >> 27;
        self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Delivers the messages in flight (minus what the network drops), then runs one
    /// round on every node, ticking when `tick`.
    fn round(&mut self, tick: bool) {
        let msgs: Vec<Message> = std::mem::take(&mut *self.net.lock());
        for m in msgs {
            if self.isolated.contains(&m.from)
                || self.isolated.contains(&m.to)
                || self.cut.contains(&(m.from, m.to))
            {
                continue;
            }
            if self.drop_percent > 0 && self.rand() % 100 < self.drop_percent {
                continue;
            }
            if let Some(n) = self.nodes.get_mut(&m.to) {
                n.pending.push(Command::Step(vec![m]));
            }
        }
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            let n = self.nodes.get_mut(&id).unwrap();
            let cmds = std::mem::take(&mut n.pending);
            let alive = n.node.round(cmds, tick).expect("round");
            if !alive {
                self.nodes.remove(&id);
            }
        }
    }

    /// Runs rounds, ticking every third, until `done` or `max` rounds pass.
    fn run_until(&mut self, max: usize, mut done: impl FnMut(&Sim) -> bool) -> bool {
        for i in 0..max {
            if done(self) {
                return true;
            }
            self.round(i % 3 == 0);
        }
        done(self)
    }

    fn leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = self
            .nodes
            .iter()
            .filter(|(id, n)| n.node.is_leader() && !self.isolated.contains(id))
            .map(|(id, _)| *id)
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    fn wait_leader(&mut self) -> u64 {
        assert!(
            self.run_until(2000, |s| s.leader().is_some()),
            "no leader elected"
        );
        self.leader().unwrap()
    }

    /// Proposes a put through `via`; the receiver gets the apply result.
    fn put(&mut self, via: u64, key: &str, value: &str) -> oneshot::Receiver<Applied> {
        let n = self.nodes.get_mut(&via).unwrap();
        let id = n.shared.next_id();
        let (tx, rx) = oneshot::channel();
        n.shared.waiters.lock().insert(id, tx);
        let req = InternalRequest {
            id,
            request: Some(Request::Put(PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
                ..Default::default()
            })),
        };
        n.pending.push(Command::Propose(req.encode_to_vec()));
        rx
    }

    /// Puts through the leader until applied; returns false if it never is.
    fn put_committed(&mut self, key: &str, value: &str) -> bool {
        for _ in 0..20 {
            let leader = self.wait_leader();
            let mut rx = self.put(leader, key, value);
            let ok = self.run_until(300, |_| {
                !matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty))
            });
            let _ = ok;
            // try_recv consumed the value if it arrived; check the state instead.
            if self.nodes[&leader]
                .sm
                .mvcc()
                .range(&get(key))
                .unwrap()
                .kvs
                .iter()
                .any(|kv| kv.value == value.as_bytes())
            {
                return true;
            }
        }
        false
    }

    fn value(&self, id: u64, key: &str) -> Option<String> {
        self.nodes[&id]
            .sm
            .mvcc()
            .range(&get(key))
            .unwrap()
            .kvs
            .first()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
    }

    /// Every node has applied the same history.
    fn converged(&self) -> bool {
        let hashes: HashSet<(u32, i64)> = self
            .nodes
            .values()
            .map(|n| {
                let (h, _, rev) = n.sm.mvcc().hash_kv(0).unwrap();
                (h, rev)
            })
            .collect();
        hashes.len() == 1
    }
}

fn get(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }
}

#[test]
fn three_nodes_elect_and_replicate() {
    let mut s = Sim::new(3, 1000, 1);
    s.wait_leader();
    for i in 0..30 {
        assert!(s.put_committed(&format!("k{i}"), &format!("v{i}")));
    }
    assert!(s.run_until(500, Sim::converged), "replicas converge");
    for id in 1..=3 {
        assert_eq!(s.value(id, "k29").as_deref(), Some("v29"));
    }
}

/// Raft §5.2, §6 (check quorum): an isolated leader steps down, the majority elects a
/// new one and keeps committing; after healing, the old leader follows and converges.
#[test]
fn isolated_leader_steps_down_and_rejoins() {
    let mut s = Sim::new(3, 1000, 2);
    let old = s.wait_leader();
    assert!(s.put_committed("before", "1"));
    s.isolated.insert(old);
    // A proposal to the isolated leader cannot commit.
    let mut stuck = s.put(old, "lost", "x");
    let new = s.wait_leader();
    assert_ne!(new, old);
    assert!(s.put_committed("during", "2"));
    assert!(
        s.run_until(1000, |s| !s.nodes[&old].node.is_leader()),
        "check_quorum makes the isolated leader step down"
    );
    s.isolated.clear();
    assert!(s.run_until(2000, Sim::converged));
    assert_eq!(s.value(old, "during").as_deref(), Some("2"));
    // The isolated proposal was never applied anywhere; its waiter was not answered Ok.
    assert!(!matches!(stuck.try_recv(), Ok(Ok(_))));
    for id in 1..=3 {
        assert_eq!(s.value(id, "lost"), None);
    }
}

#[test]
fn progress_under_message_loss() {
    let mut s = Sim::new(3, 1000, 3);
    s.drop_percent = 20;
    for i in 0..20 {
        assert!(
            s.put_committed(&format!("lossy{i}"), "v"),
            "put {i} under 20% loss"
        );
    }
    s.drop_percent = 0;
    assert!(s.run_until(2000, Sim::converged));
}

/// A minority partition makes no progress; the majority does; healing converges.
#[test]
fn partition_minority_cannot_commit() {
    let mut s = Sim::new(5, 1000, 4);
    s.wait_leader();
    // {1,2} | {3,4,5}
    for a in [1, 2] {
        for b in [3, 4, 5] {
            s.cut.insert((a, b));
            s.cut.insert((b, a));
        }
    }
    let mut minority = s.put(1, "minority", "x");
    assert!(s.run_until(2000, |s| {
        s.nodes.iter().any(|(id, n)| *id >= 3 && n.node.is_leader())
    }));
    let majority_leader = s
        .nodes
        .iter()
        .find(|(id, n)| **id >= 3 && n.node.is_leader())
        .map(|(id, _)| *id)
        .unwrap();
    let _rx = s.put(majority_leader, "majority", "y");
    assert!(s.run_until(1000, |s| s.value(majority_leader, "majority").is_some()));
    assert_eq!(s.value(1, "minority"), None);
    s.cut.clear();
    assert!(s.run_until(3000, Sim::converged));
    for id in 1..=5 {
        assert_eq!(s.value(id, "majority").as_deref(), Some("y"));
        assert_eq!(
            s.value(id, "minority"),
            None,
            "the minority's proposal never committed"
        );
    }
    assert!(!matches!(minority.try_recv(), Ok(Ok(_))));
}

/// A member added after the log was compacted catches up by snapshot; removing a
/// member stops it.
#[test]
fn membership_change_and_snapshot_catch_up() {
    let mut s = Sim::new(3, 10, 5);
    for i in 0..60 {
        assert!(s.put_committed(&format!("s{i:02}"), "v"));
    }
    let leader = s.wait_leader();
    // Propose adding node 4.
    let m4 = member(4);
    let n = s.nodes.get_mut(&leader).unwrap();
    let id = n.shared.next_id();
    let (tx, mut rx) = oneshot::channel();
    n.shared.waiters.lock().insert(id, tx);
    let mut single = ConfChangeSingle::default();
    single.set_change_type(ConfChangeType::AddNode);
    single.node_id = 4;
    let cc = ConfChangeV2 {
        changes: vec![single].into(),
        context: ConfChangeContext {
            member: Some(m4.clone()),
            id,
        }
        .encode_to_vec()
        .into(),
        ..Default::default()
    };
    n.pending.push(Command::ConfChange(cc));
    assert!(s.run_until(500, |_| !matches!(
        rx.try_recv(),
        Err(oneshot::error::TryRecvError::Empty)
    )));
    let members: Vec<Member> = s.nodes[&leader].sm.members();
    assert_eq!(members.len(), 4);
    s.open(4, None, Some(&members));
    assert!(s.run_until(3000, Sim::converged), "node 4 catches up");
    assert_eq!(s.value(4, "s59").as_deref(), Some("v"));
    // Node 4 never saw the early entries: it must have installed a snapshot.
    let (first, _) = {
        let e: Arc<dyn KvEngine> = s.nodes[&4].sm.mvcc().engine().clone();
        let log = RaftLog::open(&e, Arc::new(Source(s.nodes[&4].sm.clone()))).unwrap();
        log.bounds()
    };
    assert!(
        first > 2,
        "node 4's log starts after a snapshot (first index {first})"
    );
    // Remove node 2; it stops.
    let leader = s.wait_leader();
    let n = s.nodes.get_mut(&leader).unwrap();
    let id = n.shared.next_id();
    let mut single = ConfChangeSingle::default();
    single.set_change_type(ConfChangeType::RemoveNode);
    single.node_id = 2;
    let cc = ConfChangeV2 {
        changes: vec![single].into(),
        context: ConfChangeContext { member: None, id }
            .encode_to_vec()
            .into(),
        ..Default::default()
    };
    n.pending.push(Command::ConfChange(cc));
    assert!(
        s.run_until(1000, |s| !s.nodes.contains_key(&2)),
        "node 2 stops after removal"
    );
    assert!(s.put_committed("after", "remove"));
    assert!(s.run_until(1000, Sim::converged));
}

/// Restarting a member from its data dir keeps every acknowledged write, including the
/// ones applied with buffered durability (replayed from the Raft log).
#[test]
fn restart_from_disk_keeps_state() {
    let mut s = Sim::new(3, 1000, 6);
    for i in 0..15 {
        assert!(s.put_committed(&format!("r{i}"), "v"));
    }
    assert!(s.run_until(500, Sim::converged));
    // Restart every node (drop closes the engines), then keep going.
    let ids: Vec<u64> = s.nodes.keys().copied().collect();
    s.nodes.clear();
    for id in ids {
        s.open(id, None, None);
    }
    s.wait_leader();
    assert!(s.put_committed("after-restart", "v"));
    assert!(s.run_until(1000, Sim::converged));
    for id in 1..=3 {
        assert_eq!(s.value(id, "r14").as_deref(), Some("v"));
    }
}
