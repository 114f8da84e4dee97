//! The Maintenance service: status, alarms, defragment, hashes, snapshots, leadership.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use proto::etcdserverpb::alarm_request::AlarmAction;
use proto::etcdserverpb::maintenance_server::Maintenance;
use proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use proto::peer::internal_request::Request as Internal;
use tonic::{Request, Response, Status};

use super::kv::unexpected;
use super::{Core, observe};
use crate::engine::Table;
use crate::error::EtcdError;
use crate::node::Command;
use crate::statemachine::Output;

/// The etcd server version this store reports: the API it implements.
pub const ETCD_VERSION: &str = "3.5.0";

/// The Maintenance service.
pub struct MaintenanceService(pub Arc<Core>);

/// Snapshot chunk size (etcd sends 32 KiB chunks).
const CHUNK: usize = 32 * 1024;

impl MaintenanceService {
    async fn alarm(&self, r: AlarmRequest) -> Result<AlarmResponse, EtcdError> {
        if r.action == AlarmAction::Get as i32 {
            return Ok(AlarmResponse {
                header: Some(self.0.header(0)),
                alarms: self.0.sm.alarms(),
            });
        }
        match self.0.propose(Internal::Alarm(r)).await? {
            Output::Alarm(mut resp) => {
                self.0.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    fn status(&self) -> StatusResponse {
        let st = self.0.shared.status.read().clone();
        let engine = self.0.sm.mvcc().engine();
        let mut errors = Vec::new();
        if self.0.sm.no_space() {
            errors.push("memberID:".to_owned() + &format!("{} alarm:NOSPACE ", self.0.shared.id));
        }
        StatusResponse {
            header: Some(self.0.header(0)),
            version: ETCD_VERSION.to_owned(),
            db_size: engine.size_on_disk().unwrap_or(0) as i64,
            leader: st.leader,
            raft_index: st.commit,
            raft_term: st.term,
            raft_applied_index: *self.0.shared.applied.borrow(),
            errors,
            db_size_in_use: engine.size_in_use().unwrap_or(0) as i64,
            is_learner: self
                .0
                .sm
                .member(self.0.shared.id)
                .is_some_and(|m| m.is_learner),
            ..Default::default()
        }
    }
}

type SnapStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let res = MaintenanceService::alarm(self, req.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from);
        observe(&self.0, "etcdserverpb.Maintenance", "Alarm", &res);
        res
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(MaintenanceService::status(self)))
    }

    async fn defragment(
        &self,
        _req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let core = self.0.clone();
        tracing::info!("starting defragment");
        let res = tokio::task::spawn_blocking(move || {
            // Hold the MVCC read lock: no apply round runs while the file is rewritten.
            core.sm
                .mvcc()
                .with_read_lock(|| core.sm.mvcc().engine().compact())
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        res.map_err(|e| Status::from(EtcdError::from(e)))?;
        tracing::info!("finished defragment");
        Ok(Response::new(DefragmentResponse {
            header: Some(self.0.header(0)),
        }))
    }

    async fn hash(&self, _req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let (hash, _, _) = self
            .0
            .sm
            .mvcc()
            .hash_kv(0)
            .map_err(|e| Status::from(EtcdError::from(e)))?;
        Ok(Response::new(HashResponse {
            header: Some(self.0.header(0)),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let (hash, compact_revision, hash_revision) = self
            .0
            .sm
            .mvcc()
            .hash_kv(req.get_ref().revision)
            .map_err(|e| Status::from(EtcdError::from(e)))?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.0.header(0)),
            hash,
            compact_revision,
            hash_revision,
        }))
    }

    type SnapshotStream = SnapStream;

    async fn snapshot(
        &self,
        _req: Request<SnapshotRequest>,
    ) -> Result<Response<SnapStream>, Status> {
        let core = self.0.clone();
        let data = tokio::task::spawn_blocking(move || {
            let mvcc = core.sm.mvcc();
            mvcc.with_read_lock(|| crate::snapshot::export(&**mvcc.engine(), &Table::STATE_MACHINE))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(bytes = data.len(), "sending database snapshot to client");
        let header = self.0.header(0);
        let total = data.len();
        let chunks: Vec<Result<SnapshotResponse, Status>> = data
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, c)| {
                Ok(SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: (total - (i * CHUNK + c.len())) as u64,
                    blob: c.to_vec(),
                    version: ETCD_VERSION.to_owned(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = req.get_ref().target_id;
        let st = self.0.shared.status.read().clone();
        if !st.is_leader {
            return Err(EtcdError::NotLeader.into());
        }
        match self.0.sm.member(target) {
            Some(m) if !m.is_learner => {}
            _ => {
                return Err(Status::failed_precondition(
                    "etcdserver: bad leader transferee",
                ));
            }
        }
        self.0
            .send(Command::TransferLeader(target))
            .map_err(Status::from)?;
        let mut rx = self.0.shared.leader.subscribe();
        let wait = rx.wait_for(|l| *l == target);
        if tokio::time::timeout(
            self.0.limits.election_timeout * 5 + Duration::from_secs(1),
            wait,
        )
        .await
        .is_err()
        {
            return Err(EtcdError::TimeoutDueToLeaderFail.into());
        }
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.0.header(0)),
        }))
    }

    async fn downgrade(
        &self,
        _req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented(
            "downgrade is not supported by keelson-store",
        ))
    }
}
