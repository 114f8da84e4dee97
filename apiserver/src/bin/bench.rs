//! `kube-apiserver-bench`: kube-apiserver over keelson-store and over the real etcd
//! 3.4, started side by side on this machine, driven by the same HTTP/2 client.
//!
//! Both stacks (store + apiserver) run for the whole bench; every measurement is taken
//! `--reps` times, alternating between them, and the median is printed, as in
//! `keelson-store-bench` (this machine's speed drifts by tens of percent in minutes).
//!
//! Scenarios:
//! - `crud`: closed-loop pod create, get, update and delete at 1, 10 and 50 clients;
//!   throughput and p50/p99 per verb;
//! - `rate`: open-loop pod creates at `--rate` per second (500), latency p50/p99;
//! - `list`: a LIST of `--pods` (10k) pods, consistent and `resourceVersion=0`;
//! - `rss`: each apiserver's RSS at start and with those pods loaded;
//! - `watch`: `--watchers` (1000) watches on one namespace; 50 pod creates; delivery
//!   latency from the create request's start to each watcher's receipt.
//!
//! Pods are created with `gracePeriodSeconds=0` deletes (there is no kubelet).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use component_base::bench::{Samples, Stats, free_port, micros_since, rss_kib, stats};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

const TOKEN: &str = "benchtoken";

#[derive(Parser, Debug)]
#[command(name = "kube-apiserver-bench")]
struct Args {
    /// Seconds per closed- or open-loop measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Repetitions of each measurement (alternating between the two stacks).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Pods loaded for the LIST and RSS scenarios.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent watchers for the watch scenario.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Open-loop create rate for the `rate` scenario.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Scenarios to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "crud,rate,list,rss,watch"
    )]
    scenarios: Vec<String>,
    /// The etcd binary (Debian's etcd-server).
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A store and an apiserver over it.
struct Stack {
    name: &'static str,
    _store: Proc,
    apiserver: Proc,
    port: u16,
    conns: Vec<SendRequest<Full<Bytes>>>,
}

fn exe_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    exe.parent().expect("exe dir").to_path_buf()
}

fn start_stack(
    name: &'static str,
    store_bin: &PathBuf,
    dir: &std::path::Path,
) -> (Proc, Proc, u16) {
    let (client, peer) = (free_port(), free_port());
    let c = format!("http://127.0.0.1:{client}");
    let p = format!("http://127.0.0.1:{peer}");
    let store = Command::new(store_bin)
        .args(["--name", "m0", "--data-dir"])
        .arg(dir.join("store"))
        .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
        .args([
            "--listen-peer-urls",
            &p,
            "--initial-advertise-peer-urls",
            &p,
        ])
        .args(["--initial-cluster", &format!("m0={p}")])
        .args(["--quota-backend-bytes", "8589934592"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}'s store {}: {e}", store_bin.display()));
    std::fs::write(
        dir.join("tokens.csv"),
        format!("{TOKEN},bench,bench-uid,\"system:masters\"\n"),
    )
    .expect("tokens");
    let port = free_port();
    let log = std::fs::File::create(dir.join("apiserver.log")).expect("log");
    let apiserver = Command::new(exe_dir().join("kube-apiserver"))
        .args(["--etcd-servers", &c, "--cert-dir"])
        .arg(dir.join("certs"))
        .arg("--token-auth-file")
        .arg(dir.join("tokens.csv"))
        .args([
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start kube-apiserver");
    (Proc(store), Proc(apiserver), port)
}

fn tls() -> Arc<rustls::ClientConfig> {
    // The bench trusts whatever certificate its own apiservers generated.
    #[derive(Debug)]
    struct AnyCert(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

async fn connect(port: u16, tls: Arc<rustls::ClientConfig>) -> Option<SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    tcp.set_nodelay(true).ok()?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").ok()?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .ok()?;
    let (tx, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(tx)
}

async fn call(
    tx: &mut SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, Bytes) {
    let body = body
        .map(|b| serde_json::to_vec(b).unwrap_or_default())
        .unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(format!("https://127.0.0.1{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    if tx.ready().await.is_err() {
        return (0, Bytes::new());
    }
    match tx.send_request(req).await {
        Ok(r) => {
            let code = r.status().as_u16();
            let b = r
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            (code, b)
        }
        Err(_) => (0, Bytes::new()),
    }
}

fn pod(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "a"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]},
    })
}

async fn ensure_ns(tx: &mut SendRequest<Full<Bytes>>, ns: &str) {
    let body =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    call(tx, Method::POST, "/api/v1/namespaces", Some(&body)).await;
}

async fn wipe(tx: &mut SendRequest<Full<Bytes>>, ns: &str) {
    call(
        tx,
        Method::DELETE,
        &format!("/api/v1/namespaces/{ns}/pods?gracePeriodSeconds=0"),
        None,
    )
    .await;
}

/// Closed loop: `clients` workers each create, get, update and delete pods.
async fn bench_crud(s: &Stack, clients: usize, secs: u64, rep: usize) -> [Stats; 4] {
    let ns = "crud";
    ensure_ns(&mut s.conns[0].clone(), ns).await;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..clients {
        let mut tx = s.conns[w % s.conns.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut lat: [Vec<u32>; 4] = Default::default();
            let mut i = 0;
            while Instant::now() < deadline {
                let name = format!("p-{rep}-{clients}-{w}-{i}");
                i += 1;
                let base = format!("/api/v1/namespaces/{ns}/pods");
                let t = Instant::now();
                if call(&mut tx, Method::POST, &base, Some(&pod(&name)))
                    .await
                    .0
                    != 201
                {
                    continue;
                }
                lat[0].push(micros_since(t));
                let path = format!("{base}/{name}");
                let t = Instant::now();
                let (code, got) = call(&mut tx, Method::GET, &path, None).await;
                if code != 200 {
                    continue;
                }
                lat[1].push(micros_since(t));
                let mut obj: serde_json::Value = serde_json::from_slice(&got).unwrap_or_default();
                obj["metadata"]["labels"]["tier"] = "b".into();
                let t = Instant::now();
                if call(&mut tx, Method::PUT, &path, Some(&obj)).await.0 == 200 {
                    lat[2].push(micros_since(t));
                }
                let t = Instant::now();
                let del = format!("{path}?gracePeriodSeconds=0");
                if call(&mut tx, Method::DELETE, &del, None).await.0 == 200 {
                    lat[3].push(micros_since(t));
                }
            }
            lat
        }));
    }
    let mut all: [Vec<u32>; 4] = Default::default();
    for t in tasks {
        if let Ok(l) = t.await {
            for (a, b) in all.iter_mut().zip(l) {
                a.extend(b);
            }
        }
    }
    let el = start.elapsed();
    all.map(|l| stats(l, el))
}

/// Open loop: creates at `rate` per second for `secs`.
async fn bench_rate(s: &Stack, rate: u64, secs: u64, rep: usize) -> Stats {
    let ns = "rate";
    ensure_ns(&mut s.conns[0].clone(), ns).await;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = rate * secs;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tick.tick().await;
        let mut tx = s.conns[i as usize % s.conns.len()].clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let path = format!("/api/v1/namespaces/{ns}/pods");
            let code = call(
                &mut tx,
                Method::POST,
                &path,
                Some(&pod(&format!("r-{rep}-{i}"))),
            )
            .await
            .0;
            (code == 201).then(|| micros_since(t))
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        if let Ok(Some(l)) = t.await {
            lat.push(l);
        }
    }
    let st = stats(lat, start.elapsed());
    wipe(&mut s.conns[0].clone(), ns).await;
    st
}

/// Loads `n` pods into namespace `list` with 64 workers; returns pods/s.
async fn load_pods(s: &Stack, n: usize) -> f64 {
    let ns = "list";
    ensure_ns(&mut s.conns[0].clone(), ns).await;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..64 {
        let mut tx = s.conns[w % s.conns.len()].clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let path = format!("/api/v1/namespaces/{ns}/pods");
                call(
                    &mut tx,
                    Method::POST,
                    &path,
                    Some(&pod(&format!("l-{i:05}"))),
                )
                .await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Times a LIST of namespace `list` five times; returns the latencies in microseconds
/// and the item count.
async fn bench_list(s: &Stack, query: &str) -> (Vec<u32>, usize) {
    let mut tx = s.conns[0].clone();
    let mut lat = Vec::new();
    let mut items = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let (code, body) = call(
            &mut tx,
            Method::GET,
            &format!("/api/v1/namespaces/list/pods{query}"),
            None,
        )
        .await;
        if code == 200 {
            lat.push(micros_since(t));
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            items = v["items"].as_array().map_or(0, Vec::len);
        }
    }
    (lat, items)
}

/// `watchers` watches on namespace `watch`, then 50 creates: delivery latency from each
/// create's start to each watcher's receipt.
async fn bench_watch(
    s: &Stack,
    watchers: usize,
    rep: usize,
    tls: Arc<rustls::ClientConfig>,
) -> Stats {
    let ns = "watch";
    let events = 50usize;
    let mut tx = s.conns[0].clone();
    ensure_ns(&mut tx, ns).await;
    let (_, body) = call(
        &mut tx,
        Method::GET,
        &format!("/api/v1/namespaces/{ns}/pods?limit=1"),
        None,
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let rv = v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    // Watches get their own connections, 100 streams each, as informers would.
    let mut conns = Vec::new();
    for _ in 0..watchers.div_ceil(100) {
        if let Some(c) = connect(s.port, tls.clone()).await {
            conns.push(c);
        }
    }
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..events).map(|_| AtomicU64::new(0)).collect());
    let epoch = Instant::now();
    let ready = Arc::new(AtomicUsize::new(0));
    let prefix = format!("w-{rep}-");
    let mut tasks = Vec::new();
    for w in 0..watchers {
        let mut c = conns[w % conns.len()].clone();
        let path = format!(
            "https://127.0.0.1/api/v1/namespaces/{ns}/pods?watch=1&resourceVersion={rv}&timeoutSeconds=120"
        );
        let (sent, ready, prefix) = (sent.clone(), ready.clone(), prefix.clone());
        tasks.push(tokio::spawn(async move {
            let req = Request::builder()
                .uri(path)
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Full::new(Bytes::new()))
                .expect("request");
            let mut lat = Vec::new();
            if c.ready().await.is_err() {
                return lat;
            }
            let Ok(resp) = c.send_request(req).await else {
                return lat;
            };
            ready.fetch_add(1, Ordering::Relaxed);
            let mut body = resp.into_body();
            let mut buf = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while lat.len() < events {
                let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await
                else {
                    break;
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let now = epoch.elapsed().as_micros() as u64;
                buf.extend_from_slice(&data);
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let text = String::from_utf8_lossy(&line);
                    let needle = format!("\"name\":\"{prefix}");
                    let Some(at) = text.find(&needle) else {
                        continue;
                    };
                    let rest = &text[at + needle.len()..];
                    let idx: usize = rest
                        .split('"')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(usize::MAX);
                    if let Some(t0) = sent.get(idx) {
                        lat.push(now.saturating_sub(t0.load(Ordering::Relaxed)) as u32);
                    }
                }
            }
            lat
        }));
    }
    while ready.load(Ordering::Relaxed) < watchers {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = Instant::now();
    for (i, slot) in sent.iter().enumerate() {
        slot.store(epoch.elapsed().as_micros() as u64, Ordering::Relaxed);
        let path = format!("/api/v1/namespaces/{ns}/pods");
        call(
            &mut tx,
            Method::POST,
            &path,
            Some(&pod(&format!("{prefix}{i}"))),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    let st = stats(lat, start.elapsed());
    wipe(&mut tx, ns).await;
    st
}

#[tokio::main]
async fn main() {
    component_base::init();
    let args = Args::parse();
    let has = |s: &str| args.scenarios.iter().any(|x| x == s);
    let dir = std::env::temp_dir().join(format!("kube-apiserver-bench-{}", std::process::id()));
    let tls = tls();
    let mut stacks = Vec::new();
    for (name, bin) in [
        ("keelson-store", exe_dir().join("keelson-store")),
        ("etcd 3.4", args.etcd.clone()),
    ] {
        let d = dir.join(name.replace(' ', "-"));
        std::fs::create_dir_all(&d).expect("bench dir");
        let (store, apiserver, port) = start_stack(name, &bin, &d);
        let mut conns = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while conns.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{name}: apiserver did not come up; see {}",
                d.display()
            );
            if let Some(mut c) = connect(port, tls.clone()).await
                && call(&mut c, Method::GET, "/readyz", None).await.0 == 200
            {
                conns.push(c);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // A few HTTP/2 connections, as a handful of clients would open.
        for _ in 1..8 {
            conns.push(connect(port, tls.clone()).await.expect("connect"));
        }
        stacks.push(Stack {
            name,
            _store: store,
            apiserver,
            port,
            conns,
        });
    }
    println!(
        "| scenario | kube-apiserver on keelson-store | kube-apiserver on etcd 3.4 | ratio (keelson/etcd) |"
    );
    println!("|---|---|---|---|");
    let mut s = Samples::default();
    if has("rss") {
        // Before any load: the apiserver with only its bootstrap objects.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for (side, st) in stacks.iter().enumerate() {
            let mib = rss_kib(st.apiserver.0.id()) as f64 / 1024.0;
            s.add(side, "apiserver RSS at start".into(), mib, "MiB", false);
        }
    }
    for rep in 0..args.reps {
        for (side, st) in stacks.iter().enumerate() {
            if has("crud") {
                for c in [1usize, 10, 50] {
                    let r = bench_crud(st, c, args.seconds, rep).await;
                    eprintln!("rep {rep} {} crud c={c}: {r:?}", st.name);
                    for (verb, v) in ["create", "get", "update", "delete"].iter().zip(r) {
                        s.add_stats(side, &format!("pod {verb}, {c} clients"), v, "ops/s");
                    }
                }
            }
            if has("rate") {
                let r = bench_rate(st, args.rate, args.seconds, rep).await;
                eprintln!("rep {rep} {} rate {}: {r:?}", st.name, args.rate);
                s.add_stats(
                    side,
                    &format!("pod create at {}/s offered", args.rate),
                    r,
                    "creates/s",
                );
            }
        }
    }
    if has("list") || has("rss") {
        for (side, st) in stacks.iter().enumerate() {
            let r = load_pods(st, args.pods).await;
            eprintln!("{} loaded {} pods at {r:.0}/s", st.name, args.pods);
            s.add(
                side,
                format!("load {} pods, 64 clients", args.pods),
                r,
                "pods/s",
                true,
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
            if has("rss") {
                let after = rss_kib(st.apiserver.0.id()) as f64 / 1024.0;
                s.add(
                    side,
                    format!("apiserver RSS with {} pods", args.pods),
                    after,
                    "MiB",
                    false,
                );
            }
        }
        if has("list") {
            for _ in 0..args.reps {
                for (side, st) in stacks.iter().enumerate() {
                    for (label, q) in [
                        ("consistent", ""),
                        ("resourceVersion=0", "?resourceVersion=0"),
                    ] {
                        let (lat, items) = bench_list(st, q).await;
                        eprintln!("{} list {label}: {items} items, {lat:?} µs", st.name);
                        let st = stats(lat, Duration::from_secs(1));
                        s.add(
                            side,
                            format!("LIST {} pods ({label}) p50", args.pods),
                            st.p50_ms,
                            "ms",
                            false,
                        );
                    }
                }
            }
        }
    }
    if has("watch") {
        for rep in 0..args.reps {
            for (side, st) in stacks.iter().enumerate() {
                let r = bench_watch(st, args.watchers, rep, tls.clone()).await;
                eprintln!("rep {rep} {} watch: {r:?}", st.name);
                s.add(
                    side,
                    format!("{} watchers, delivery p50", args.watchers),
                    r.p50_ms,
                    "ms",
                    false,
                );
                s.add(
                    side,
                    format!("{} watchers, delivery p99", args.watchers),
                    r.p99_ms,
                    "ms",
                    false,
                );
                s.add(
                    side,
                    format!("{} watchers, events delivered", args.watchers),
                    r.ops_per_sec,
                    "events/s",
                    true,
                );
            }
        }
    }
    for r in s.rows() {
        println!("{r}");
    }
    drop(stacks);
    let _ = std::fs::remove_dir_all(&dir);
}
