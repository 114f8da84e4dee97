//! The peer service members serve each other.

use std::sync::Arc;

use proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use proto::peer::peer_server::Peer;
use proto::peer::{MembersRequest, MembersResponse, RaftBatch, RaftBatchAck};
use protobuf::Message as _;
use raft::prelude::Message;
use tonic::{Request, Response, Status};

use super::Core;
use crate::error::EtcdError;
use crate::node::Command;

/// The peer service.
pub struct PeerService(pub Arc<Core>);

#[tonic::async_trait]
impl Peer for PeerService {
    async fn send(&self, req: Request<RaftBatch>) -> Result<Response<RaftBatchAck>, Status> {
        let b = req.into_inner();
        if b.cluster_id != 0 && b.cluster_id != self.0.cluster_id {
            return Err(Status::failed_precondition(format!(
                "cluster ID mismatch: local {:x}, remote {:x}",
                self.0.cluster_id, b.cluster_id
            )));
        }
        if self.0.sm.is_removed(b.from) {
            return Err(Status::failed_precondition(crate::node::MEMBER_REMOVED));
        }
        let mut msgs = Vec::with_capacity(b.messages.len());
        for raw in &b.messages {
            let m = Message::parse_from_bytes(raw)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            msgs.push(m);
        }
        self.0.send(Command::Step(msgs)).map_err(Status::from)?;
        Ok(Response::new(RaftBatchAck {}))
    }

    async fn members(
        &self,
        _req: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse {
            cluster_id: self.0.cluster_id,
            members: self.0.sm.members(),
        }))
    }

    async fn lease_renew(
        &self,
        req: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        if !self.0.shared.status.read().is_leader {
            return Err(EtcdError::NotLeader.into());
        }
        super::lease::renew(&self.0, req.into_inner().id)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        if !self.0.shared.status.read().is_leader {
            return Err(EtcdError::NotLeader.into());
        }
        super::lease::time_to_live(&self.0, req.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from)
    }
}
