//! The KV service.

use std::sync::Arc;

use proto::etcdserverpb::kv_server::Kv;
use proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RangeStreamResponse, TxnRequest, TxnResponse,
};
use proto::peer::internal_request::Request as Internal;
use tonic::{Request, Response, Status};

use super::{Core, observe};
use crate::error::EtcdError;
use crate::statemachine::{Output, check_put_request, check_txn};

/// The KV service.
pub struct KvService(pub Arc<Core>);

fn check_range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

impl KvService {
    async fn do_range(&self, r: RangeRequest) -> Result<RangeResponse, EtcdError> {
        check_range(&r)?;
        if !r.serializable {
            self.0.linearizable().await?;
        }
        let mut resp = self.0.sm.mvcc().range(&r)?;
        resp.header = Some(self.0.header(0));
        Ok(resp)
    }

    async fn do_put(&self, r: PutRequest) -> Result<PutResponse, EtcdError> {
        check_put_request(&r)?;
        match self.0.propose(Internal::Put(r)).await? {
            Output::Put(mut resp) => {
                self.0.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    async fn do_delete(&self, r: DeleteRangeRequest) -> Result<DeleteRangeResponse, EtcdError> {
        if r.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
        match self.0.propose(Internal::DeleteRange(r)).await? {
            Output::DeleteRange(mut resp) => {
                self.0.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    async fn do_txn(&self, r: TxnRequest) -> Result<TxnResponse, EtcdError> {
        check_txn(&r, self.0.limits.max_txn_ops)?;
        match self.0.propose(Internal::Txn(r)).await? {
            Output::Txn(mut resp) => {
                self.0.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }

    async fn do_compact(&self, r: CompactionRequest) -> Result<CompactionResponse, EtcdError> {
        let physical = r.physical;
        let rev = r.revision;
        let mut done = self.0.shared.compacted.subscribe();
        match self.0.propose(Internal::Compaction(r)).await? {
            Output::Compaction(mut resp) => {
                if physical {
                    let _ = done.wait_for(|c| *c >= rev).await;
                }
                self.0.fill(&mut resp.header);
                Ok(resp)
            }
            other => Err(unexpected(other)),
        }
    }
}

pub(crate) fn unexpected(o: Output) -> EtcdError {
    EtcdError::Internal(format!("unexpected apply result {o:?}"))
}

type RangeStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<RangeStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let res = self
            .do_range(req.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from);
        observe(&self.0, "etcdserverpb.KV", "Range", &res);
        res
    }

    type RangeStreamStream = RangeStream;

    async fn range_stream(
        &self,
        _req: Request<RangeRequest>,
    ) -> Result<Response<RangeStream>, Status> {
        // Not part of etcd 3.4/3.5; newer etcd versions only.
        Err(Status::unimplemented(
            "unknown method RangeStream for service etcdserverpb.KV",
        ))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let res = self
            .do_put(req.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from);
        observe(&self.0, "etcdserverpb.KV", "Put", &res);
        res
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let res = self
            .do_delete(req.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from);
        observe(&self.0, "etcdserverpb.KV", "DeleteRange", &res);
        res
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let res = self
            .do_txn(req.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from);
        observe(&self.0, "etcdserverpb.KV", "Txn", &res);
        res
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let res = self
            .do_compact(req.into_inner())
            .await
            .map(Response::new)
            .map_err(Status::from);
        observe(&self.0, "etcdserverpb.KV", "Compact", &res);
        res
    }
}
