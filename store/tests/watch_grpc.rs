//! Watch features etcdctl cannot drive, over the gRPC API: many watches on one stream,
//! filters, cancel, progress requests and notifications, and fragmenting.

mod support;

use std::time::Duration;

use futures::StreamExt;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::request_op::Request as OpReq;
use proto::etcdserverpb::watch_client::WatchClient;
use proto::etcdserverpb::watch_create_request::FilterType;
use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse,
};
use proto::mvccpb::event::EventType;
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

struct Stream {
    tx: mpsc::UnboundedSender<WatchRequest>,
    rx: tonic::Streaming<WatchResponse>,
}

async fn open(ep: &str) -> (Stream, KvClient<tonic::transport::Channel>) {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{ep}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let stream = WatchClient::new(ch.clone())
        .watch(UnboundedReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (Stream { tx, rx: stream }, KvClient::new(ch))
}

impl Stream {
    fn send(&self, r: RequestUnion) {
        self.tx
            .send(WatchRequest {
                request_union: Some(r),
            })
            .unwrap();
    }
    async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(5), self.rx.next())
            .await
            .expect("a watch response in time")
            .expect("stream open")
            .expect("no error")
    }
}

fn create(key: &str, f: impl FnOnce(&mut WatchCreateRequest)) -> RequestUnion {
    let mut c = WatchCreateRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    f(&mut c);
    RequestUnion::CreateRequest(c)
}

async fn put(kv: &mut KvClient<tonic::transport::Channel>, k: &str, v: &str) -> i64 {
    kv.put(PutRequest {
        key: k.as_bytes().to_vec(),
        value: v.as_bytes().to_vec(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .header
    .unwrap()
    .revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watches_filters_cancel_and_progress() {
    let c = tokio::task::spawn_blocking(|| {
        Cluster::start(
            1,
            Flavor::Keelson,
            &["--experimental-watch-progress-notify-interval", "500ms"],
        )
    })
    .await
    .unwrap();
    let (mut s, mut kv) = open(&c.endpoints()).await;
    s.send(create("f", |_| {}));
    let r = s.next().await;
    assert!(r.created && r.watch_id == 0);
    s.send(create("f", |c| c.filters = vec![FilterType::Noput as i32]));
    let r = s.next().await;
    assert!(r.created && r.watch_id == 1);
    // A client-chosen ID, and a duplicate of it.
    s.send(create("g", |c| {
        c.watch_id = 7;
        c.progress_notify = true;
    }));
    let r = s.next().await;
    assert!(r.created && r.watch_id == 7);
    s.send(create("g", |c| c.watch_id = 7));
    let r = s.next().await;
    assert!(
        r.created && r.canceled && r.watch_id == -1,
        "duplicate watch ID: {r:?}"
    );

    let rev = put(&mut kv, "f", "1").await;
    let r = s.next().await;
    assert_eq!(
        (r.watch_id, r.events.len()),
        (0, 1),
        "the NOPUT watch sees nothing"
    );
    assert_eq!(r.header.unwrap().revision, rev);
    kv.delete_range(DeleteRangeRequest {
        key: b"f".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut got: Vec<(i64, i32)> = Vec::new();
    for _ in 0..2 {
        let r = s.next().await;
        got.push((r.watch_id, r.events[0].r#type));
    }
    got.sort_unstable();
    assert_eq!(
        got,
        vec![(0, EventType::Delete as i32), (1, EventType::Delete as i32)]
    );

    // A progress request is answered with the current revision and watch ID -1.
    s.send(RequestUnion::ProgressRequest(WatchProgressRequest {}));
    let r = s.next().await;
    assert_eq!(r.watch_id, -1);
    assert_eq!(r.header.unwrap().revision, rev + 1);
    assert!(r.events.is_empty());

    // progress_notify: the idle watch 7 gets an empty notification.
    let r = s.next().await;
    assert_eq!(
        (r.watch_id, r.events.len()),
        (7, 0),
        "progress notification: {r:?}"
    );

    // Cancel.
    s.send(RequestUnion::CancelRequest(WatchCancelRequest {
        watch_id: 0,
    }));
    let r = s.next().await;
    assert!(r.canceled && r.watch_id == 0);
    put(&mut kv, "f", "2").await;
    put(&mut kv, "g", "x").await;
    let r = s.next().await;
    assert_eq!(r.watch_id, 7, "the canceled watch stays quiet: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_responses_are_fragmented() {
    let c = tokio::task::spawn_blocking(|| {
        Cluster::start(1, Flavor::Keelson, &["--max-request-bytes", "8192"])
    })
    .await
    .unwrap();
    let (mut s, mut kv) = open(&c.endpoints()).await;
    // One txn writes 20 keys of 1000 bytes: one revision, ~20 KB of events.
    let ops: Vec<RequestOp> = (0..20)
        .map(|i| RequestOp {
            request: Some(OpReq::RequestPut(PutRequest {
                key: format!("frag/{i:02}").into_bytes(),
                value: vec![b'x'; 1000],
                ..Default::default()
            })),
        })
        .collect();
    // Two txns, since one request must stay under 8 KiB.
    let (a, b) = ops.split_at(7);
    let (b, c2) = b.split_at(7);
    let mut first_rev = 0;
    for part in [a, b, c2] {
        let r = kv
            .txn(TxnRequest {
                success: part.to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if first_rev == 0 {
            first_rev = r.header.unwrap().revision;
        }
    }
    s.send(create("frag/", |c| {
        c.range_end = b"frag0".to_vec();
        c.start_revision = first_rev;
        c.fragment = true;
    }));
    assert!(s.next().await.created);
    let mut events = 0;
    let mut fragments = 0;
    while events < 20 {
        let r = s.next().await;
        events += r.events.len();
        if r.fragment {
            fragments += 1;
        }
    }
    assert_eq!(events, 20);
    assert!(
        fragments >= 1,
        "a 20 KB catch-up over an 8 KiB limit is fragmented"
    );
}
