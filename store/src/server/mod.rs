//! The gRPC services, over one [`Core`] handle.
//!
//! Writes are proposed through Raft and answered when applied ([`Core::propose`]).
//! Linearizable reads first get a read index from the leader and wait until it is
//! applied locally ([`Core::linearizable`]); serializable reads are served from the
//! local state at once. Every error leaves through [`crate::error::EtcdError`]'s one
//! conversion to a gRPC status.

pub mod cluster;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod peer;
pub mod watch;

use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use prost::Message;
use proto::etcdserverpb::ResponseHeader;
use proto::peer::InternalRequest;
use proto::peer::internal_request::Request;
use tokio::sync::oneshot;

use crate::error::EtcdError;
use crate::metrics::Metrics;
use crate::node::{Command, Shared};
use crate::statemachine::{Output, StateMachine};
use crate::watch::WatchHub;

/// Limits and timeouts the services enforce.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// `--quota-backend-bytes` (0: the 2 GiB default; negative: no quota).
    pub quota_bytes: i64,
    /// How long a proposal may take (etcd: 5 s plus two election timeouts).
    pub request_timeout: Duration,
    /// The election timeout.
    pub election_timeout: Duration,
    /// Interval of watch progress notifications.
    pub progress_notify_interval: Duration,
}

/// Everything a service needs.
pub struct Core {
    /// The state machine.
    pub sm: Arc<StateMachine>,
    /// The watch hub.
    pub hub: Arc<WatchHub>,
    /// State shared with the Raft thread.
    pub shared: Arc<Shared>,
    /// Commands to the Raft thread.
    pub cmd: parking_lot::Mutex<Sender<Command>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Limits.
    pub limits: Limits,
    /// The cluster ID.
    pub cluster_id: u64,
    /// This member's name.
    pub name: String,
    /// Clients to peers, for leader forwarding.
    pub peers: Arc<crate::transport::PeerClients>,
}

/// The default quota, as etcd's `DefaultQuotaBytes`.
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;

impl Core {
    /// A response header at `rev` (0: the current revision).
    pub fn header(&self, rev: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.shared.id,
            revision: if rev == 0 {
                self.sm.mvcc().current_rev()
            } else {
                rev
            },
            raft_term: self.shared.status.read().term,
        }
    }

    /// Fills in a header returned by the state machine (which only knows the revision).
    pub fn fill(&self, h: &mut Option<ResponseHeader>) {
        let rev = h.as_ref().map(|h| h.revision).unwrap_or(0);
        *h = Some(self.header(rev));
    }

    pub(crate) fn send(&self, cmd: Command) -> Result<(), EtcdError> {
        self.cmd.lock().send(cmd).map_err(|_| EtcdError::Stopped)
    }

    /// Waits until a leader is known, up to the election timeout times three.
    pub async fn wait_leader(&self) -> Result<u64, EtcdError> {
        let mut rx = self.shared.leader.subscribe();
        let deadline = tokio::time::Instant::now() + self.limits.election_timeout * 3;
        loop {
            let l = *rx.borrow_and_update();
            if l != 0 {
                return Ok(l);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(EtcdError::NoLeader);
            }
        }
    }

    /// Quota check before a write (etcd's `quotaKVServer`): past the quota the NOSPACE
    /// alarm is raised through Raft and the write fails.
    async fn check_quota(&self, cost: usize) -> Result<(), EtcdError> {
        let quota = match self.limits.quota_bytes {
            q if q < 0 => return Ok(()),
            0 => DEFAULT_QUOTA_BYTES,
            q => q,
        };
        let size = self.sm.mvcc().engine().size_on_disk().unwrap_or(0) as i64;
        if size + cost as i64 <= quota {
            return Ok(());
        }
        if !self.sm.no_space() {
            tracing::warn!(
                size,
                quota,
                "database space exceeded; raising NOSPACE alarm"
            );
            let req = Request::Alarm(proto::etcdserverpb::AlarmRequest {
                action: proto::etcdserverpb::alarm_request::AlarmAction::Activate as i32,
                member_id: self.shared.id,
                alarm: proto::etcdserverpb::AlarmType::Nospace as i32,
            });
            let _ = self.propose_raw(req).await;
        }
        Err(EtcdError::NoSpace)
    }

    /// Proposes a write, after the quota check for requests that add data.
    pub async fn propose(&self, req: Request) -> Result<Output, EtcdError> {
        let cost = match &req {
            Request::Put(p) => Some(p.key.len() + p.value.len() + 64),
            Request::Txn(t) => Some(t.encoded_len() + 64),
            Request::LeaseGrant(_) => Some(64),
            _ => None,
        };
        if let Some(cost) = cost {
            self.check_quota(cost).await?;
        }
        self.propose_raw(req).await
    }

    async fn propose_raw(&self, req: Request) -> Result<Output, EtcdError> {
        let id = self.shared.next_id();
        let data = InternalRequest {
            id,
            request: Some(req),
        }
        .encode_to_vec();
        if data.len() > self.limits.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        if *self.shared.stopped.borrow() {
            return Err(EtcdError::Stopped);
        }
        self.wait_leader().await?;
        let (tx, rx) = oneshot::channel();
        self.shared.waiters.lock().insert(id, tx);
        if let Err(e) = self.send(Command::Propose(data)) {
            self.shared.waiters.lock().remove(&id);
            return Err(e);
        }
        self.await_result(id, rx).await
    }

    /// Waits for a proposal registered under `id`.
    pub(crate) async fn await_result(
        &self,
        id: u64,
        rx: oneshot::Receiver<crate::statemachine::Applied>,
    ) -> Result<Output, EtcdError> {
        let leader_before = *self.shared.leader.borrow();
        match tokio::time::timeout(self.limits.request_timeout, rx).await {
            Ok(Ok(res)) => res,
            Ok(Err(_)) => Err(EtcdError::Stopped),
            Err(_) => {
                self.shared.waiters.lock().remove(&id);
                if *self.shared.leader.borrow() != leader_before {
                    Err(EtcdError::TimeoutDueToLeaderFail)
                } else {
                    Err(EtcdError::Timeout)
                }
            }
        }
    }

    /// A linearizable read barrier: after it returns, the local state includes every
    /// write acknowledged before the call (Raft ReadIndex).
    pub async fn linearizable(&self) -> Result<(), EtcdError> {
        let deadline = tokio::time::Instant::now() + self.limits.request_timeout;
        loop {
            self.wait_leader().await?;
            let ctx = self.shared.next_id();
            let (tx, rx) = oneshot::channel();
            self.shared.reads.lock().insert(ctx, tx);
            self.send(Command::ReadIndex(ctx))?;
            // A read index can be dropped (leader change); retry until the deadline.
            let attempt = tokio::time::Instant::now()
                + self.limits.election_timeout.max(Duration::from_millis(500));
            match tokio::time::timeout_at(attempt.min(deadline), rx).await {
                Ok(Ok(index)) => {
                    let mut applied = self.shared.applied.subscribe();
                    let wait = applied.wait_for(|a| *a >= index);
                    return match tokio::time::timeout_at(deadline, wait).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(_)) => Err(EtcdError::Stopped),
                        Err(_) => Err(EtcdError::Timeout),
                    };
                }
                Ok(Err(_)) => return Err(EtcdError::Stopped),
                Err(_) => {
                    self.shared.reads.lock().remove(&ctx);
                    if tokio::time::Instant::now() >= deadline {
                        return Err(EtcdError::Timeout);
                    }
                }
            }
        }
    }

    /// The current leader's client for forwarding, or `None` if this member leads.
    pub async fn leader_peer(&self) -> Result<Option<crate::transport::PeerClient>, EtcdError> {
        let leader = self.wait_leader().await?;
        if leader == self.shared.id {
            return Ok(None);
        }
        self.peers.get(leader).map(Some).ok_or(EtcdError::NoLeader)
    }
}

/// Records an RPC's outcome under `grpc_server_handled_total`.
pub(crate) fn observe<T>(core: &Core, service: &str, method: &str, res: &Result<T, tonic::Status>) {
    let code = match res {
        Ok(_) => "OK".to_owned(),
        Err(s) => format!("{:?}", s.code()),
    };
    core.metrics
        .grpc_handled
        .with_label_values(&["unary", service, method, &code])
        .inc();
}
