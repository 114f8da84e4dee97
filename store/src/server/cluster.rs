//! The Cluster service: membership changes go through Raft ConfChange entries.

use std::sync::Arc;

use prost::Message;
use proto::etcdserverpb::cluster_server::Cluster;
use proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use proto::peer::ConfChangeContext;
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use super::kv::unexpected;
use super::{Core, observe};
use crate::error::EtcdError;
use crate::node::Command;
use crate::statemachine::Output;

/// The Cluster service.
pub struct ClusterService(pub Arc<Core>);

impl ClusterService {
    async fn conf_change(
        &self,
        ty: ConfChangeType,
        node: u64,
        member: Option<Member>,
    ) -> Result<Vec<Member>, EtcdError> {
        self.0.wait_leader().await?;
        let id = self.0.shared.next_id();
        let mut single = ConfChangeSingle::default();
        single.set_change_type(ty);
        single.node_id = node;
        let cc = ConfChangeV2 {
            changes: vec![single].into(),
            context: ConfChangeContext { member, id }.encode_to_vec().into(),
            ..Default::default()
        };
        let (tx, rx) = oneshot::channel();
        self.0.shared.waiters.lock().insert(id, tx);
        if let Err(e) = self.0.send(Command::ConfChange(cc)) {
            self.0.shared.waiters.lock().remove(&id);
            return Err(e);
        }
        match self.0.await_result(id, rx).await? {
            Output::Members(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    async fn add(&self, r: MemberAddRequest) -> Result<MemberAddResponse, EtcdError> {
        if r.peer_ur_ls.is_empty() || r.peer_ur_ls.iter().any(|u| url::Url::parse(u).is_err()) {
            return Err(EtcdError::MemberBadUrls);
        }
        let existing = self.0.sm.members();
        if existing
            .iter()
            .any(|m| m.peer_ur_ls.iter().any(|u| r.peer_ur_ls.contains(u)))
        {
            return Err(EtcdError::PeerUrlExists);
        }
        if r.is_learner && existing.iter().filter(|m| m.is_learner).count() >= 1 {
            return Err(EtcdError::TooManyLearners);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let id = crate::membership::member_id(&r.peer_ur_ls, &self.0.name_token(), Some(now));
        if existing.iter().any(|m| m.id == id) {
            return Err(EtcdError::MemberExists);
        }
        let member = Member {
            id,
            name: String::new(),
            peer_ur_ls: r.peer_ur_ls.clone(),
            client_ur_ls: Vec::new(),
            is_learner: r.is_learner,
        };
        let ty = if r.is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        let members = self.conf_change(ty, id, Some(member.clone())).await?;
        Ok(MemberAddResponse {
            header: Some(self.0.header(0)),
            member: Some(member),
            members,
        })
    }

    async fn remove(&self, r: MemberRemoveRequest) -> Result<MemberRemoveResponse, EtcdError> {
        let existing = self.0.sm.members();
        if !existing.iter().any(|m| m.id == r.id) {
            return Err(EtcdError::MemberNotFound);
        }
        let members = self
            .conf_change(ConfChangeType::RemoveNode, r.id, None)
            .await?;
        Ok(MemberRemoveResponse {
            header: Some(self.0.header(0)),
            members,
        })
    }

    async fn promote(&self, r: MemberPromoteRequest) -> Result<MemberPromoteResponse, EtcdError> {
        let m = self.0.sm.member(r.id).ok_or(EtcdError::MemberNotFound)?;
        if !m.is_learner {
            return Err(EtcdError::MemberNotLearner);
        }
        // etcd: the learner must have at least 90% of the leader's log.
        let st = self.0.shared.status.read().clone();
        if !st.is_leader {
            return Err(EtcdError::NotLeader);
        }
        let leader_match = st
            .progress
            .get(&self.0.shared.id)
            .copied()
            .unwrap_or(st.last_index);
        let learner_match = st.progress.get(&r.id).copied().unwrap_or(0);
        if (learner_match as f64) < leader_match as f64 * 0.9 {
            return Err(EtcdError::LearnerNotReady);
        }
        let members = self
            .conf_change(ConfChangeType::AddNode, r.id, Some(m))
            .await?;
        Ok(MemberPromoteResponse {
            header: Some(self.0.header(0)),
            members,
        })
    }
}

impl Core {
    /// The cluster token member IDs are computed with.
    pub fn name_token(&self) -> String {
        self.peers.token.clone()
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let res = self
            .add(req.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from);
        observe(&self.0, "etcdserverpb.Cluster", "MemberAdd", &res);
        res
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let res = self
            .remove(req.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from);
        observe(&self.0, "etcdserverpb.Cluster", "MemberRemove", &res);
        res
    }

    async fn member_update(
        &self,
        _req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(Status::unimplemented(
            "member update is not supported by keelson-store",
        ))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if req.get_ref().linearizable {
            self.0.linearizable().await.map_err(Status::from)?;
        }
        let members = self.0.sm.members();
        Ok(Response::new(MemberListResponse {
            header: Some(self.0.header(0)),
            members,
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let res = self
            .promote(req.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from);
        observe(&self.0, "etcdserverpb.Cluster", "MemberPromote", &res);
        res
    }
}
