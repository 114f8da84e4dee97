//! [`Kv`] over the etcd v3 gRPC API, with the generated clients from `proto`.
//!
//! Writes are single transactions that compare a key's create or mod revision, as
//! upstream's `storage/etcd3` store does, so a write either lands whole or not at all.

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::request_op::Request as Op;
use proto::etcdserverpb::response_op::Response as OpResp;
use proto::etcdserverpb::watch_client::WatchClient;
use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, WatchCreateRequest, WatchRequest,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{KeyValue, Kv, KvError, KvResult, RangePage, WatchEvent, WatchStream};

/// TLS material for talking to etcd (`--etcd-cafile`, `--etcd-certfile`,
/// `--etcd-keyfile`).
#[derive(Clone, Debug, Default)]
pub struct EtcdTls {
    /// CA bundle.
    pub ca_file: Option<PathBuf>,
    /// Client certificate.
    pub cert_file: Option<PathBuf>,
    /// Client key.
    pub key_file: Option<PathBuf>,
}

/// An etcd v3 client over one load-balanced channel.
#[derive(Clone)]
pub struct EtcdKv {
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
}

fn status_err(s: tonic::Status) -> KvError {
    let msg = s.message();
    if msg.contains("required revision has been compacted") {
        return KvError::Compacted(0);
    }
    if msg.contains("required revision is a future revision") {
        return KvError::FutureRevision;
    }
    KvError::Unavailable(msg.to_owned())
}

fn kv_of(kv: proto::mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        value: kv.value,
        mod_revision: kv.mod_revision as u64,
        create_revision: kv.create_revision as u64,
        stale: false,
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, KvError> {
    std::fs::read(path).map_err(|e| KvError::Unavailable(format!("{}: {e}", path.display())))
}

impl EtcdKv {
    /// Connects lazily to `servers` (`--etcd-servers`, http or https URLs).
    pub fn connect(servers: &[String], tls: &EtcdTls) -> KvResult<Self> {
        let mut tls_cfg = None;
        if servers.iter().any(|s| s.starts_with("https://")) {
            let mut cfg = ClientTlsConfig::new();
            if let Some(ca) = &tls.ca_file {
                cfg = cfg.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let (Some(c), Some(k)) = (&tls.cert_file, &tls.key_file) {
                cfg = cfg.identity(Identity::from_pem(read(c)?, read(k)?));
            }
            tls_cfg = Some(cfg);
        }
        let mut endpoints = Vec::new();
        for s in servers {
            let mut ep = Endpoint::from_shared(s.clone())
                .map_err(|e| KvError::Unavailable(format!("invalid --etcd-servers {s:?}: {e}")))?
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_while_idle(true);
            if s.starts_with("https://")
                && let Some(cfg) = &tls_cfg
            {
                ep = ep
                    .tls_config(cfg.clone())
                    .map_err(|e| KvError::Unavailable(e.to_string()))?;
            }
            endpoints.push(ep);
        }
        if endpoints.is_empty() {
            return Err(KvError::Unavailable("no --etcd-servers".into()));
        }
        let channel = Channel::balance_list(endpoints.into_iter());
        Ok(Self {
            kv: KvClient::new(channel.clone()).max_decoding_message_size(usize::MAX),
            watch: WatchClient::new(channel).max_decoding_message_size(usize::MAX),
        })
    }

    /// Runs `op` if `key`'s mod revision is `expected`; otherwise returns the current
    /// value in [`KvError::CompareFailed`].
    async fn compare_mod_and(&self, key: Vec<u8>, expected: u64, op: Op) -> KvResult<u64> {
        let resp = self
            .txn(TxnRequest {
                compare: vec![cmp(
                    &key,
                    CompareTarget::Mod,
                    TargetUnion::ModRevision(expected as i64),
                )],
                success: vec![RequestOp { request: Some(op) }],
                failure: vec![get_op(&key)],
            })
            .await?;
        if !resp.succeeded {
            return Err(KvError::CompareFailed(failed_value(resp)));
        }
        Ok(revision_of(&resp))
    }

    async fn txn(&self, req: TxnRequest) -> KvResult<proto::etcdserverpb::TxnResponse> {
        let mut kv = self.kv.clone();
        Ok(kv.txn(req).await.map_err(status_err)?.into_inner())
    }
}

fn cmp(key: &[u8], target: CompareTarget, union: TargetUnion) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(union),
    }
}

fn get_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

fn failed_value(resp: proto::etcdserverpb::TxnResponse) -> Option<KeyValue> {
    resp.responses.into_iter().find_map(|r| match r.response {
        Some(OpResp::ResponseRange(rr)) => rr.kvs.into_iter().next().map(kv_of),
        _ => None,
    })
}

fn revision_of(resp: &proto::etcdserverpb::TxnResponse) -> u64 {
    resp.header.as_ref().map(|h| h.revision as u64).unwrap_or(0)
}

impl Kv for EtcdKv {
    fn get(&self, key: &[u8]) -> BoxFuture<'_, KvResult<(Option<KeyValue>, u64)>> {
        let key = key.to_vec();
        async move {
            let mut kv = self.kv.clone();
            let resp = kv
                .range(RangeRequest {
                    key,
                    ..Default::default()
                })
                .await
                .map_err(status_err)?
                .into_inner();
            let rev = resp.header.map(|h| h.revision as u64).unwrap_or(0);
            Ok((resp.kvs.into_iter().next().map(kv_of), rev))
        }
        .boxed()
    }

    fn range(
        &self,
        start: &[u8],
        end: &[u8],
        revision: u64,
        limit: u64,
    ) -> BoxFuture<'_, KvResult<RangePage>> {
        let (start, end) = (start.to_vec(), end.to_vec());
        async move {
            let mut kv = self.kv.clone();
            let resp = kv
                .range(RangeRequest {
                    key: start,
                    range_end: end,
                    revision: revision as i64,
                    limit: limit as i64,
                    ..Default::default()
                })
                .await
                .map_err(status_err)?
                .into_inner();
            Ok(RangePage {
                revision: resp.header.map(|h| h.revision as u64).unwrap_or(0),
                more: resp.more,
                count: resp.count as u64,
                kvs: resp.kvs.into_iter().map(kv_of).collect(),
            })
        }
        .boxed()
    }

    fn create(&self, key: &[u8], value: Vec<u8>) -> BoxFuture<'_, KvResult<u64>> {
        let key = key.to_vec();
        async move {
            let resp = self
                .txn(TxnRequest {
                    compare: vec![cmp(
                        &key,
                        CompareTarget::Create,
                        TargetUnion::CreateRevision(0),
                    )],
                    success: vec![RequestOp {
                        request: Some(Op::RequestPut(PutRequest {
                            key: key.clone(),
                            value,
                            ..Default::default()
                        })),
                    }],
                    failure: Vec::new(),
                })
                .await?;
            if !resp.succeeded {
                return Err(KvError::Exists);
            }
            Ok(revision_of(&resp))
        }
        .boxed()
    }

    fn update(&self, key: &[u8], value: Vec<u8>, expected: u64) -> BoxFuture<'_, KvResult<u64>> {
        let op = Op::RequestPut(PutRequest {
            key: key.to_vec(),
            value,
            ..Default::default()
        });
        self.compare_mod_and(key.to_vec(), expected, op).boxed()
    }

    fn delete(&self, key: &[u8], expected: u64) -> BoxFuture<'_, KvResult<u64>> {
        let op = Op::RequestDeleteRange(DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        });
        self.compare_mod_and(key.to_vec(), expected, op).boxed()
    }

    fn watch(
        &self,
        start: &[u8],
        end: &[u8],
        revision: u64,
    ) -> BoxFuture<'_, KvResult<WatchStream>> {
        let (start, end) = (start.to_vec(), end.to_vec());
        async move {
            let mut client = self.watch.clone();
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let _ = tx
                .send(WatchRequest {
                    request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                        key: start,
                        range_end: end,
                        start_revision: revision as i64,
                        progress_notify: true,
                        prev_kv: true,
                        ..Default::default()
                    })),
                })
                .await;
            let inbound = client
                .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .map_err(status_err)?
                .into_inner();
            // The request sender lives as long as the stream: dropping it would end the
            // watch from the client side.
            let progress_tx = tx.clone();
            let stream = inbound
                .map(move |r| {
                    let _keep = &tx;
                    r
                })
                .flat_map(|resp| {
                    let out: Vec<KvResult<WatchEvent>> = match resp {
                        Err(s) => vec![Err(status_err(s))],
                        Ok(r) if r.canceled => {
                            if r.compact_revision > 0 {
                                vec![Err(KvError::Compacted(r.compact_revision as u64))]
                            } else {
                                vec![Err(KvError::Unavailable(format!(
                                    "watch canceled: {}",
                                    r.cancel_reason
                                )))]
                            }
                        }
                        Ok(r) if r.created => Vec::new(),
                        Ok(r) if r.events.is_empty() => {
                            let revision = r.header.map(|h| h.revision as u64).unwrap_or(0);
                            vec![Ok(WatchEvent::Progress { revision })]
                        }
                        Ok(r) => r
                            .events
                            .into_iter()
                            .filter_map(|ev| {
                                let kv = ev.kv?;
                                let prev = ev.prev_kv.map(kv_of);
                                Some(Ok(if ev.r#type == 1 {
                                    WatchEvent::Delete {
                                        key: kv.key.clone(),
                                        revision: kv.mod_revision as u64,
                                        prev,
                                    }
                                } else {
                                    WatchEvent::Put {
                                        kv: kv_of(kv),
                                        prev,
                                    }
                                }))
                            })
                            .collect(),
                    };
                    futures::stream::iter(out)
                })
                .boxed();
            let request_progress = Box::new(move || {
                let _ = progress_tx.try_send(WatchRequest {
                    request_union: Some(RequestUnion::ProgressRequest(
                        proto::etcdserverpb::WatchProgressRequest {},
                    )),
                });
            });
            Ok(WatchStream {
                events: stream,
                request_progress,
            })
        }
        .boxed()
    }

    fn current_revision(&self) -> BoxFuture<'_, KvResult<u64>> {
        async move {
            let mut kv = self.kv.clone();
            let resp = kv
                .range(RangeRequest {
                    key: b"\0".to_vec(),
                    count_only: true,
                    ..Default::default()
                })
                .await
                .map_err(status_err)?
                .into_inner();
            Ok(resp.header.map(|h| h.revision as u64).unwrap_or(0))
        }
        .boxed()
    }

    fn compact(&self, revision: u64) -> BoxFuture<'_, KvResult<()>> {
        async move {
            let mut kv = self.kv.clone();
            kv.compact(CompactionRequest {
                revision: revision as i64,
                physical: false,
            })
            .await
            .map_err(status_err)?;
            Ok(())
        }
        .boxed()
    }
}
