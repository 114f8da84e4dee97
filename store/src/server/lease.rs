//! The Lease service. Keep-alive and time-to-live are answered by the leader, which
//! owns expiry; other members forward them over the peer service.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use proto::etcdserverpb::lease_server::Lease;
use proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use proto::peer::internal_request::Request as Internal;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::kv::unexpected;
use super::{Core, observe};
use crate::error::EtcdError;
use crate::lease::MAX_LEASE_TTL;
use crate::statemachine::Output;

/// The Lease service.
pub struct LeaseService(pub Arc<Core>);

/// Renews a lease on the leader (locally or forwarded). Returns the TTL, or 0 for a
/// lease that does not exist, as etcd's keep-alive response does.
pub(crate) async fn renew(core: &Core, id: i64) -> Result<LeaseKeepAliveResponse, EtcdError> {
    match core.leader_peer().await? {
        None => {
            let ttl = core.sm.lessor().renew(id).unwrap_or(0);
            Ok(LeaseKeepAliveResponse {
                header: Some(core.header(0)),
                id,
                ttl,
            })
        }
        Some(mut peer) => {
            let resp = peer
                .lease_renew(LeaseKeepAliveRequest { id })
                .await
                .map_err(|s| EtcdError::from_status(&s))?;
            let mut r = resp.into_inner();
            r.header = Some(core.header(0));
            Ok(r)
        }
    }
}

/// Time-to-live, answered by the leader.
pub(crate) async fn time_to_live(
    core: &Core,
    r: LeaseTimeToLiveRequest,
) -> Result<LeaseTimeToLiveResponse, EtcdError> {
    // The lease must be visible: etcd does a linearizable barrier first.
    core.linearizable().await?;
    match core.leader_peer().await? {
        None => {
            let info = core.sm.lessor().info(r.id);
            Ok(match info {
                Some(i) => LeaseTimeToLiveResponse {
                    header: Some(core.header(0)),
                    id: r.id,
                    ttl: i.remaining,
                    granted_ttl: i.granted_ttl,
                    keys: if r.keys { i.keys } else { Vec::new() },
                },
                // etcd answers an unknown lease with TTL -1 rather than an error.
                None => LeaseTimeToLiveResponse {
                    header: Some(core.header(0)),
                    id: r.id,
                    ttl: -1,
                    granted_ttl: 0,
                    keys: Vec::new(),
                },
            })
        }
        Some(mut peer) => {
            let mut resp = peer
                .lease_time_to_live(r)
                .await
                .map_err(|s| EtcdError::from_status(&s))?
                .into_inner();
            resp.header = Some(core.header(0));
            Ok(resp)
        }
    }
}

impl LeaseService {
    async fn grant(&self, mut r: LeaseGrantRequest) -> Result<LeaseGrantResponse, EtcdError> {
        if r.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        if r.id == 0 {
            // etcd picks a positive random-looking ID from its request ID generator.
            r.id = (self.0.shared.next_id() & (i64::MAX as u64)) as i64;
        }
        match self.0.propose(Internal::LeaseGrant(r)).await? {
            Output::LeaseGrant(mut resp) => {
                self.0.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    async fn revoke(&self, r: LeaseRevokeRequest) -> Result<LeaseRevokeResponse, EtcdError> {
        match self.0.propose(Internal::LeaseRevoke(r)).await? {
            Output::LeaseRevoke(mut resp) => {
                self.0.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let res = self
            .grant(req.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from);
        observe(&self.0, "etcdserverpb.Lease", "LeaseGrant", &res);
        res
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let res = self
            .revoke(req.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from);
        observe(&self.0, "etcdserverpb.Lease", "LeaseRevoke", &res);
        res
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let core = self.0.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(Ok(r)) = inbound.next().await {
                let out = renew(&core, r.id).await.map_err(Status::from);
                let stop = out.is_err();
                if tx.send(out).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let res = time_to_live(&self.0, req.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from);
        observe(&self.0, "etcdserverpb.Lease", "LeaseTimeToLive", &res);
        res
    }

    async fn lease_leases(
        &self,
        _req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.0.linearizable().await.map_err(Status::from)?;
        let leases = self
            .0
            .sm
            .lessor()
            .ids()
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.0.header(0)),
            leases,
        }))
    }
}
