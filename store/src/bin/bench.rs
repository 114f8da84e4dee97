//! `keelson-store-bench`: the same load against keelson-store and the real etcd,
//! started side by side on this machine, one after the other, with the ratios.
//!
//! Scenarios (each with 1 and then 3 members unless `--members` says otherwise):
//! - put throughput and p50/p99 latency at 1, 16, 100 and 1000 clients (8-byte keys
//!   over a 100k keyspace, 256-byte values, as etcd's benchmark tool does it);
//! - range throughput, linearizable and serializable, 100 clients;
//! - watch fan-out: 1000 watchers on one key, delivery latency from put to receipt;
//! - RSS of the leader after loading `--keys` keys (default 1M) of 256 bytes.
//!
//! Both stores of a comparison run at the same time (idle but for heartbeats while the
//! other is measured), and every throughput and latency figure is measured `--reps`
//! times, alternating between them, with the median reported: this machine's disk and
//! CPU drift by tens of percent over minutes, which a single sequential run would
//! attribute to one side. Prints a Markdown table for BENCHMARKS.md.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use component_base::bench::{Samples, Stats, free_port, micros_since, rss_kib, stats};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::request_op::Request as Op;
use proto::etcdserverpb::watch_client::WatchClient;
use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::{
    PutRequest, RangeRequest, RequestOp, StatusRequest, TxnRequest, WatchCreateRequest,
    WatchRequest,
};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Parser)]
#[command(name = "keelson-store-bench")]
struct Args {
    /// Cluster sizes to run.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    members: Vec<usize>,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Keys loaded for the RSS measurement.
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    /// Scenarios to run.
    #[arg(long, value_delimiter = ',', default_value = "put,range,watch,rss")]
    scenarios: Vec<String>,
    /// The keelson-store binary (default: next to this one).
    #[arg(long)]
    keelson: Option<PathBuf>,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    etcd: PathBuf,
    /// Repetitions of each throughput and latency measurement (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Compare keelson-store's engines (redb against sled) instead of keelson-store
    /// against etcd.
    #[arg(long)]
    compare_engines: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavor {
    Keelson,
    KeelsonSled,
    Etcd,
}

struct Proc {
    child: Child,
    client: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    procs: Vec<Proc>,
    _dir: tempfile::TempDir,
}

fn start(flavor: Flavor, n: usize, args: &Args) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let ic = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let bin = match flavor {
        Flavor::Keelson | Flavor::KeelsonSled => args.keelson.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .expect("exe")
                .with_file_name("keelson-store")
        }),
        Flavor::Etcd => args.etcd.clone(),
    };
    let engine: &[&str] = if flavor == Flavor::KeelsonSled {
        &["--backend-engine", "sled"]
    } else {
        &[]
    };
    let procs = ports
        .iter()
        .enumerate()
        .map(|(i, (c, p))| {
            let client = format!("http://127.0.0.1:{c}");
            let peer = format!("http://127.0.0.1:{p}");
            let child = Command::new(&bin)
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("m{i}")))
                .args([
                    "--listen-client-urls",
                    &client,
                    "--advertise-client-urls",
                    &client,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer,
                    "--initial-advertise-peer-urls",
                    &peer,
                ])
                .args(["--initial-cluster", &ic, "--initial-cluster-token", "bench"])
                .args(["--quota-backend-bytes", "8589934592"])
                .args(engine)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn server");
            Proc { child, client }
        })
        .collect();
    Cluster { procs, _dir: dir }
}

async fn channel(url: &str) -> Channel {
    let ep = Endpoint::from_shared(url.to_owned())
        .expect("url")
        .tcp_nodelay(true);
    for _ in 0..200 {
        if let Ok(ch) = ep.connect().await {
            return ch;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot connect to {url}");
}

/// Waits for a leader; returns the index of the leader's process.
async fn leader(c: &Cluster) -> usize {
    for _ in 0..300 {
        for (i, p) in c.procs.iter().enumerate() {
            let Ok(ch) = Endpoint::from_shared(p.client.clone())
                .expect("url")
                .connect()
                .await
            else {
                continue;
            };
            if let Ok(st) = MaintenanceClient::new(ch).status(StatusRequest {}).await {
                let st = st.into_inner();
                if st.leader != 0 && st.header.map(|h| h.member_id) == Some(st.leader) {
                    // A put must go through before we measure.
                    let mut kv = KvClient::new(channel(&p.client).await);
                    if kv
                        .put(PutRequest {
                            key: b"warmup".to_vec(),
                            value: b"x".to_vec(),
                            ..Default::default()
                        })
                        .await
                        .is_ok()
                    {
                        return i;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no leader");
}

/// Runs `clients` tasks over up to 100 connections for `secs`, each calling `op`.
async fn load<F, Fut>(url: &str, clients: usize, secs: u64, op: F) -> Stats
where
    F: Fn(Channel, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let conns = clients.clamp(1, 100);
    let mut chans = Vec::new();
    for _ in 0..conns {
        chans.push(channel(url).await);
    }
    let op = Arc::new(op);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let counter = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let ch = chans[i % conns].clone();
        let op = op.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                if op(ch.clone(), n).await {
                    lat.push(micros_since(t));
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    stats(all, start.elapsed())
}

fn key(n: u64) -> Vec<u8> {
    // 8-byte keys over a 100k keyspace, as `benchmark put --key-space-size 100000`.
    (n.wrapping_mul(2_654_435_761) % 100_000)
        .to_be_bytes()
        .to_vec()
}

async fn bench_put(url: &str, clients: usize, secs: u64) -> Stats {
    let value = Arc::new(vec![b'v'; 256]);
    load(url, clients, secs, move |ch, n| {
        let value = value.clone();
        async move {
            KvClient::new(ch)
                .put(PutRequest {
                    key: key(n),
                    value: value.to_vec(),
                    ..Default::default()
                })
                .await
                .is_ok()
        }
    })
    .await
}

async fn bench_range(url: &str, serializable: bool, secs: u64) -> Stats {
    load(url, 100, secs, move |ch, _| async move {
        KvClient::new(ch)
            .range(RangeRequest {
                key: b"warmup".to_vec(),
                serializable,
                ..Default::default()
            })
            .await
            .is_ok()
    })
    .await
}

/// 1000 watchers on one key over 10 streams; 50 puts; delivery latency per event.
async fn bench_watch(url: &str) -> Stats {
    use futures::StreamExt;
    const WATCHERS: usize = 1000;
    const STREAMS: usize = 10;
    const PUTS: usize = 50;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut handles = Vec::new();
    let created = Arc::new(AtomicU64::new(0));
    for _ in 0..STREAMS {
        let ch = channel(url).await;
        let (req_tx, req_rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..WATCHERS / STREAMS {
            let _ = req_tx.send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: b"watched".to_vec(),
                    ..Default::default()
                })),
            });
        }
        let mut stream = WatchClient::new(ch)
            .watch(tokio_stream::wrappers::UnboundedReceiverStream::new(req_rx))
            .await
            .expect("watch")
            .into_inner();
        let tx = tx.clone();
        let created = created.clone();
        handles.push(tokio::spawn(async move {
            let _keep = req_tx;
            while let Some(Ok(resp)) = stream.next().await {
                if resp.created {
                    created.fetch_add(1, Ordering::Relaxed);
                }
                for ev in resp.events {
                    let v = ev.kv.map(|kv| kv.value).unwrap_or_default();
                    let i: usize = String::from_utf8_lossy(&v).parse().unwrap_or(0);
                    let _ = tx.send((i, Instant::now()));
                }
            }
        }));
    }
    while created.load(Ordering::Relaxed) < WATCHERS as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut kv = KvClient::new(channel(url).await);
    let mut sent = vec![Instant::now(); PUTS];
    let mut lat = Vec::with_capacity(PUTS * WATCHERS);
    let start = Instant::now();
    for (i, at) in sent.iter_mut().enumerate() {
        *at = Instant::now();
        kv.put(PutRequest {
            key: b"watched".to_vec(),
            value: i.to_string().into_bytes(),
            ..Default::default()
        })
        .await
        .expect("put");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while lat.len() < PUTS * WATCHERS && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some((i, at))) => lat.push(at.duration_since(sent[i]).as_micros() as u32),
            _ => break,
        }
    }
    for h in handles {
        h.abort();
    }
    stats(lat, start.elapsed())
}

/// Loads `keys` keys with 100-put txns from 32 clients; returns the leader's RSS in MiB.
async fn bench_rss(c: &Cluster, leader: usize, keys: usize) -> f64 {
    let url = c.procs[leader].client.clone();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let ch = channel(&url).await;
    for _ in 0..32 {
        let ch = ch.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut kv = KvClient::new(ch);
            loop {
                let start = next.fetch_add(100, Ordering::Relaxed) as usize;
                if start >= keys {
                    return;
                }
                let ops = (start..(start + 100).min(keys))
                    .map(|i| RequestOp {
                        request: Some(Op::RequestPut(PutRequest {
                            key: format!("/registry/pods/default/pod-{i:08}").into_bytes(),
                            value: vec![b'p'; 256],
                            ..Default::default()
                        })),
                    })
                    .collect();
                let _ = kv
                    .txn(TxnRequest {
                        success: ops,
                        ..Default::default()
                    })
                    .await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    rss_kib(c.procs[leader].child.id()) as f64 / 1024.0
}

fn dir_mib(p: &std::path::Path) -> f64 {
    fn walk(p: &std::path::Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else {
            return std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        };
        rd.filter_map(Result::ok).map(|e| walk(&e.path())).sum()
    }
    walk(p) as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() {
    component_base::init();
    let args = Args::parse();
    let has = |s: &str| args.scenarios.iter().any(|x| x == s);
    let flavors = if args.compare_engines {
        println!("| scenario | keelson-store (redb) | keelson-store (sled) | ratio (redb/sled) |");
        [Flavor::Keelson, Flavor::KeelsonSled]
    } else {
        println!("| scenario | keelson-store | etcd 3.4 | ratio (keelson/etcd) |");
        [Flavor::Keelson, Flavor::Etcd]
    };
    println!("|---|---|---|---|");
    for &n in &args.members {
        // Both clusters run for the whole size; measurements alternate between them so
        // drift in this machine's disk and CPU hits both alike. Medians are reported.
        let mut clusters = Vec::new();
        for flavor in flavors {
            let c = start(flavor, n, &args);
            let l = leader(&c).await;
            let url = c.procs[l].client.clone();
            clusters.push((flavor, c, l, url));
        }
        let mut s = Samples::default();
        for rep in 0..args.reps {
            for (fi, (flavor, _, _, url)) in clusters.iter().enumerate() {
                if has("put") {
                    for clients in [1usize, 16, 100, 1000] {
                        let st = bench_put(url, clients, args.seconds).await;
                        eprintln!("rep {rep} {flavor:?} n={n} put c={clients}: {st:?}");
                        s.add(
                            fi,
                            format!("{n}m put {clients} clients"),
                            st.ops_per_sec,
                            "ops/s",
                            true,
                        );
                        s.add(
                            fi,
                            format!("{n}m put {clients} clients p50"),
                            st.p50_ms,
                            "ms",
                            false,
                        );
                        s.add(
                            fi,
                            format!("{n}m put {clients} clients p99"),
                            st.p99_ms,
                            "ms",
                            false,
                        );
                    }
                }
                if has("range") {
                    for (ser, label) in [(false, "linearizable"), (true, "serializable")] {
                        let st = bench_range(url, ser, args.seconds).await;
                        eprintln!("rep {rep} {flavor:?} n={n} range {label}: {st:?}");
                        s.add(
                            fi,
                            format!("{n}m range {label} 100 clients"),
                            st.ops_per_sec,
                            "ops/s",
                            true,
                        );
                        s.add(
                            fi,
                            format!("{n}m range {label} p99"),
                            st.p99_ms,
                            "ms",
                            false,
                        );
                    }
                }
                if has("watch") {
                    let st = bench_watch(url).await;
                    eprintln!("rep {rep} {flavor:?} n={n} watch: {st:?}");
                    s.add(
                        fi,
                        format!("{n}m watch 1000 watchers delivery p50"),
                        st.p50_ms,
                        "ms",
                        false,
                    );
                    s.add(
                        fi,
                        format!("{n}m watch 1000 watchers delivery p99"),
                        st.p99_ms,
                        "ms",
                        false,
                    );
                    s.add(
                        fi,
                        format!("{n}m watch events delivered"),
                        st.ops_per_sec,
                        "events/s",
                        true,
                    );
                }
            }
        }
        if has("rss") {
            for (fi, (flavor, c, l, _)) in clusters.iter().enumerate() {
                let mib = bench_rss(c, *l, args.keys).await;
                eprintln!("{flavor:?} n={n} rss {} keys: {mib:.1} MiB", args.keys);
                s.add(
                    fi,
                    format!("{n}m leader RSS with {} keys", args.keys),
                    mib,
                    "MiB",
                    false,
                );
                let disk = dir_mib(&c._dir.path().join(format!("m{l}")));
                s.add(
                    fi,
                    format!("{n}m leader data dir with {} keys", args.keys),
                    disk,
                    "MiB",
                    false,
                );
            }
        }
        drop(clusters);
        for r in s.rows() {
            println!("{r}");
        }
    }
}
