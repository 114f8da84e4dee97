//! A linearizability check under faults. Concurrent clients record a history of puts,
//! linearizable gets and compare-and-swaps (txns) against a 3-member cluster while a
//! nemesis kills members with SIGKILL and cuts them off behind their peer proxies; the
//! checker in `support::linearizability` then verifies the history.

mod support;
// The checker and its own unit tests live in one file, compiled into this test only.
#[path = "support/linearizability.rs"]
#[allow(unreachable_pub)]
mod checker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use checker::{Event, Op, Outcome, Verdict, check};
use parking_lot::Mutex;
use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::request_op::Request as OpReq;
use proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use support::*;

const KEYS: [&str; 3] = ["lin/a", "lin/b", "lin/c"];
const CLIENTS: usize = 6;
const RUN: Duration = Duration::from_secs(12);

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

async fn client(
    id: usize,
    endpoints: Vec<String>,
    origin: Instant,
    history: Arc<Mutex<Vec<Event>>>,
) {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (id as u64 + 1);
    let mut n = 0u64;
    let mut last_seen: Option<String> = None;
    while origin.elapsed() < RUN {
        let ep = &endpoints[(rng(&mut seed) % endpoints.len() as u64) as usize];
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{ep}"))
            .unwrap()
            .connect_timeout(Duration::from_millis(300))
            .timeout(Duration::from_secs(2))
            .connect_lazy();
        let mut kv = KvClient::new(ch);
        let key = KEYS[(rng(&mut seed) % KEYS.len() as u64) as usize].to_owned();
        let call = origin.elapsed().as_nanos() as u64;
        let (op, outcome) = match rng(&mut seed) % 3 {
            0 => {
                n += 1;
                let value = format!("c{id}-{n}");
                let res = kv
                    .put(PutRequest {
                        key: key.clone().into_bytes(),
                        value: value.clone().into_bytes(),
                        ..Default::default()
                    })
                    .await;
                (
                    Op::Put { value },
                    if res.is_ok() {
                        Outcome::PutOk
                    } else {
                        Outcome::Unknown
                    },
                )
            }
            1 => {
                let res = kv
                    .range(RangeRequest {
                        key: key.clone().into_bytes(),
                        ..Default::default()
                    })
                    .await;
                match res {
                    Ok(r) => {
                        let v = r
                            .into_inner()
                            .kvs
                            .first()
                            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                        last_seen = v.clone();
                        (Op::Get, Outcome::GetOk(v))
                    }
                    Err(_) => (Op::Get, Outcome::Unknown),
                }
            }
            _ => {
                n += 1;
                let new = format!("c{id}-{n}");
                let expect = last_seen.clone();
                let compare = match &expect {
                    Some(v) => Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Value as i32,
                        key: key.clone().into_bytes(),
                        target_union: Some(TargetUnion::Value(v.clone().into_bytes())),
                        range_end: vec![],
                    },
                    None => Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Create as i32,
                        key: key.clone().into_bytes(),
                        target_union: Some(TargetUnion::CreateRevision(0)),
                        range_end: vec![],
                    },
                };
                let res = kv
                    .txn(TxnRequest {
                        compare: vec![compare],
                        success: vec![RequestOp {
                            request: Some(OpReq::RequestPut(PutRequest {
                                key: key.clone().into_bytes(),
                                value: new.clone().into_bytes(),
                                ..Default::default()
                            })),
                        }],
                        failure: vec![],
                    })
                    .await;
                let outcome = match res {
                    Ok(r) => Outcome::CasOk(r.into_inner().succeeded),
                    Err(_) => Outcome::Unknown,
                };
                (Op::Cas { expect, new }, outcome)
            }
        };
        let ret = origin.elapsed().as_nanos() as u64;
        history.lock().push(Event {
            client: id,
            key,
            op,
            outcome,
            call,
            ret,
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_under_kills_and_partitions_is_linearizable() {
    let mut c = tokio::task::spawn_blocking(|| Cluster::start_with(3, Flavor::Keelson, &[], true))
        .await
        .unwrap();
    let mut proxies = Vec::new();
    for m in &c.members {
        proxies.push(Proxy::start(m.proxy_port.unwrap(), m.peer_port).await);
    }
    let mut c = tokio::task::spawn_blocking(move || {
        c.start_all();
        c
    })
    .await
    .unwrap();
    let endpoints: Vec<String> = c.members.iter().map(MemberProc::endpoint).collect();
    let origin = Instant::now();
    let history = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for id in 0..CLIENTS {
        tasks.push(tokio::spawn(client(
            id,
            endpoints.clone(),
            origin,
            history.clone(),
        )));
    }
    // Nemesis: alternate kill -9 + restart and an inbound partition, on rotating members.
    let mut round = 0usize;
    let mut faults = Vec::new();
    while origin.elapsed() < RUN - Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let victim = round % 3;
        if round.is_multiple_of(2) {
            c.members[victim].kill9();
            faults.push(format!("kill {victim}"));
            tokio::time::sleep(Duration::from_millis(1000)).await;
            c.members[victim].start();
        } else {
            proxies[victim].block();
            faults.push(format!("partition {victim}"));
            tokio::time::sleep(Duration::from_millis(1500)).await;
            proxies[victim].unblock();
        }
        round += 1;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let history = std::mem::take(&mut *history.lock());
    let acked = history
        .iter()
        .filter(|e| !matches!(e.outcome, Outcome::Unknown))
        .count();
    assert!(
        acked > 100,
        "the clients made progress ({acked} acknowledged of {})",
        history.len()
    );
    let verdict = tokio::task::spawn_blocking(move || check(&history, Duration::from_secs(120)))
        .await
        .unwrap();
    match verdict {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable { key, detail } => {
            panic!("history is not linearizable on {key}: {detail} (faults: {faults:?})")
        }
        Verdict::Timeout => panic!("checker ran out of time"),
    }
}
