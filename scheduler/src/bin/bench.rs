//! `kube-scheduler-bench`: modelled on upstream's scheduler_perf `SchedulingBasic`.
//! kube-apiserver (embedded store) and kube-scheduler run as separate processes, as
//! in a cluster; the bench creates `--nodes` Node objects and `--pods` pending pods,
//! then starts the scheduler and measures how fast it binds them:
//!
//! - SchedulingThroughput: pods bound per second, sampled every second (upstream's
//!   throughput collector), as the average and the p50/p90/p99 of the samples;
//! - the scheduler's `scheduler_scheduling_attempt_duration_seconds` percentiles
//!   (interpolated from the histogram, as Prometheus' `histogram_quantile`);
//! - the scheduler's RSS at the end.
//!
//! The pods are created before the scheduler starts, so that the apiserver's create
//! rate (about 1800 pods/s on this machine, see BENCHMARKS.md) does not cap the
//! measurement; the scheduler still lists, watches, binds and writes an event per
//! pod through the apiserver. `--workload` picks the pods: `basic` (requests only),
//! `topology` (a zone PodTopologySpread constraint), `affinity` (preferred
//! anti-affinity on the hostname), `preemption` (nodes filled with low-priority
//! pods, then high-priority pods that must preempt).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use component_base::bench::{Proc, cpu_seconds, exe_dir};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

const TOKEN: &str = "benchtoken";

#[derive(Parser, Debug)]
#[command(name = "kube-scheduler-bench")]
struct Args {
    /// Node objects to create.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods to schedule.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// `basic`, `topology`, `affinity` or `preemption`.
    #[arg(long, default_value = "basic")]
    workload: String,
    /// The scheduler's --kube-api-qps and --kube-api-burst (upstream's perf runs use 5000).
    #[arg(long, default_value_t = 5000)]
    qps: u32,
    /// Concurrent creates while loading.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Give up after this many seconds of scheduling.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// The scheduler's `parallelism` (upstream's default 16).
    #[arg(long, default_value_t = 16)]
    parallelism: u32,
}

fn kubeconfig(dir: &Path, port: u16) -> PathBuf {
    component_base::bench::token_kubeconfig(dir, port, TOKEN)
}

fn node(i: usize) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("node-{i}"), "labels": {
            "kubernetes.io/hostname": format!("node-{i}"),
            "topology.kubernetes.io/zone": format!("zone-{}", i % 10),
        }},
    }))
    .expect("node")
}

fn node_status() -> serde_json::Value {
    json!({"status": {
        "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
        "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "bench"}],
    }})
}

fn pod(i: usize, workload: &str, priority_class: Option<&str>, cpu: &str) -> Pod {
    let mut spec = json!({
        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": cpu, "memory": "100Mi"}}}],
    });
    match workload {
        "topology" => {
            spec["topologySpreadConstraints"] = json!([{
                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "bench"}},
            }]);
        }
        "affinity" => {
            spec["affinity"] = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 1,
                "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                    "labelSelector": {"matchLabels": {"app": "bench"}}},
            }]}});
        }
        _ => {}
    }
    if let Some(pc) = priority_class {
        spec["priorityClassName"] = json!(pc);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": if i >= 1_000_000 { format!("low-{}", i - 1_000_000) } else { format!("pod-{i}") }, "namespace": "default", "labels": {"app": "bench"}},
        "spec": spec,
    }))
    .expect("pod")
}

/// `histogram_quantile` over a Prometheus text histogram's cumulative buckets.
fn quantile(metrics: &str, name: &str, q: f64) -> Option<f64> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(&format!("{name}_bucket{{")) else {
            continue;
        };
        if !rest.contains("result=\"scheduled\"") {
            continue;
        }
        // The last `le="`: `profile="` ends in `le="` too.
        let le = rest.rsplit("le=\"").next()?.split('"').next()?;
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().ok()?
        };
        let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
        buckets.push((le, count));
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut prev_le, mut prev_count) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev_le);
            }
            let frac = if count > prev_count {
                (rank - prev_count) / (count - prev_count)
            } else {
                0.0
            };
            return Some(prev_le + (le - prev_le) * frac);
        }
        prev_le = le;
        prev_count = count;
    }
    None
}

/// A process's user+system CPU time in seconds (`/proc/<pid>/stat`, 100 Hz ticks).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i]
}

async fn create_all<K, F>(api: &Api<K>, n: usize, concurrency: usize, make: F)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(usize) -> K,
{
    futures::stream::iter((0..n).map(|i| {
        let obj = make(i);
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &obj)
                .await
                .unwrap_or_else(|e| panic!("create: {e}"));
        }
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<()>>()
    .await;
}

/// Exits non-zero when pods were not all bound or the scheduler's metrics could
/// not be read: a bench never reports figures from a failed run.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    component_base::init();
    let args = Args::parse();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("tokens.csv"),
        format!("{TOKEN},bench,bench-uid,\"system:masters\"\n"),
    )
    .expect("tokens");
    let port = component_base::bench::free_port();
    let log = std::fs::File::create(dir.path().join("apiserver.log")).expect("log");
    let apiserver = Proc(
        Command::new(exe_dir().join("kube-apiserver"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--cert-dir")
            .arg(dir.path().join("certs"))
            .arg("--token-auth-file")
            .arg(dir.path().join("tokens.csv"))
            .args([
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &port.to_string(),
            ])
            .args([
                "--disable-admission-plugins",
                "ServiceAccount,TaintNodesByCondition",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kube-apiserver (build it with --release first)"),
    );
    let api_pid = apiserver.0.id();
    let kc = kubeconfig(dir.path(), port);
    let config = client_base::config::load(Some(&kc), None)
        .await
        .expect("kubeconfig");
    let client = client_base::config::client(config, -1.0, 0).expect("client");
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.list(&Default::default()).await.is_err() {
        assert!(Instant::now() < deadline, "kube-apiserver did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Nodes.
    let t = Instant::now();
    create_all(&nodes, args.nodes, args.concurrency, node).await;
    futures::stream::iter((0..args.nodes).map(|i| {
        let nodes = nodes.clone();
        async move {
            nodes
                .patch_status(
                    &format!("node-{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(node_status()),
                )
                .await
                .expect("node status");
        }
    }))
    .buffer_unordered(args.concurrency)
    .collect::<Vec<()>>()
    .await;
    eprintln!("{} nodes in {:.1}s", args.nodes, t.elapsed().as_secs_f64());

    // Pods (and for preemption: priority classes and nodes full of low pods).
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut expected = args.pods;
    let (class, cpu) = if args.workload == "preemption" {
        let pcs: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(client.clone());
        for (name, value) in [("low", 100), ("high", 1000)] {
            let pc = serde_json::from_value(
                json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value}),
            )
            .expect("pc");
            pcs.create(&PostParams::default(), &pc)
                .await
                .expect("priority class");
        }
        // One low pod filling each node, bound directly (no scheduler yet).
        create_all(&pods, args.nodes, args.concurrency, |i| {
            let mut p = pod(1_000_000 + i, "basic", Some("low"), "32");
            p.spec.as_mut().expect("spec").node_name = Some(format!("node-{i}"));
            p
        })
        .await;
        expected = args.pods.min(args.nodes);
        (Some("high"), "1")
    } else {
        (None, "100m")
    };
    let t = Instant::now();
    create_all(&pods, expected, args.concurrency, |i| {
        pod(i, &args.workload, class, cpu)
    })
    .await;
    eprintln!(
        "{expected} pending pods in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // Count binds from a watch.
    let bound = Arc::new(AtomicUsize::new(0));
    let counter = bound.clone();
    let watch_pods = pods.clone();
    tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        let mut events = watcher(watch_pods, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Ok(Some(p)) = events.try_next().await {
            let name = p.metadata.name.clone().unwrap_or_default();
            if name.starts_with("pod-")
                && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                && seen.insert(name)
            {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });

    // For preemption, victims have no kubelet: finish their deletion as one would.
    if args.workload == "preemption" {
        let p = pods.clone();
        tokio::spawn(async move {
            let mut events = watcher(p.clone(), watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Ok(Some(pod)) = events.try_next().await {
                if pod.metadata.deletion_timestamp.is_some() {
                    let dp = kube::api::DeleteParams {
                        grace_period_seconds: Some(0),
                        ..Default::default()
                    };
                    let _ = p
                        .delete(pod.metadata.name.as_deref().unwrap_or_default(), &dp)
                        .await;
                }
            }
        });
    }

    // The scheduler, configured by file as a deployment would be.
    let sched_config = dir.path().join("scheduler.yaml");
    std::fs::write(
        &sched_config,
        format!(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nparallelism: {}\nleaderElection:\n  leaderElect: false\nclientConnection:\n  kubeconfig: {}\n  qps: {}\n  burst: {}\n",
            args.parallelism,
            kc.display(),
            args.qps,
            args.qps
        ),
    )
    .expect("scheduler config");
    let sport = component_base::bench::free_port();
    let slog = dir.path().join("scheduler.log");
    let sched = Proc(
        Command::new(exe_dir().join("kube-scheduler"))
            .arg("--config")
            .arg(&sched_config)
            .args([
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &sport.to_string(),
            ])
            .arg("--authentication-kubeconfig")
            .arg(&kc)
            .arg("--authorization-kubeconfig")
            .arg(&kc)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&slog).expect("log"))
            .spawn()
            .expect("start kube-scheduler"),
    );
    let start = Instant::now();
    let cpu_start = (cpu_seconds(api_pid), cpu_seconds(sched.0.id()));
    let mut samples = Vec::new();
    let mut last = 0;
    let mut first_bind: Option<Instant> = None;
    let mut last_bind = start;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = bound.load(Ordering::Relaxed);
        if now > 0 && first_bind.is_none() {
            first_bind = Some(Instant::now());
        } else if first_bind.is_some() {
            samples.push((now - last) as f64);
        }
        if now > last {
            last_bind = Instant::now();
        }
        last = now;
        if now >= expected || start.elapsed() > Duration::from_secs(args.timeout) {
            break;
        }
    }
    let scheduled = bound.load(Ordering::Relaxed);
    let metrics = Command::new("curl")
        .args(["-sk", "-H", &format!("Authorization: Bearer {TOKEN}")])
        .arg(format!("https://127.0.0.1:{sport}/metrics"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let cpu_end = (cpu_seconds(api_pid), cpu_seconds(sched.0.id()));
    if quantile(
        &metrics,
        "scheduler_scheduling_attempt_duration_seconds",
        0.5,
    )
    .is_none()
    {
        let _ = std::fs::write("/tmp/kube-scheduler-bench.metrics", &metrics);
        eprintln!(
            "no attempt histogram in the scheduler's metrics (saved to /tmp/kube-scheduler-bench.metrics)"
        );
        return std::process::ExitCode::FAILURE;
    }
    if scheduled < expected {
        eprintln!(
            "only {scheduled} of {expected} pods were bound; scheduler log: {}",
            slog.display()
        );
        let _ = std::fs::copy(&slog, "/tmp/kube-scheduler-bench.log");
        return std::process::ExitCode::FAILURE;
    }
    let rss = component_base::bench::rss_kib(sched.0.id());
    let window = first_bind.map_or(0.0, |f| last_bind.duration_since(f).as_secs_f64().max(1.0));
    samples.sort_by(f64::total_cmp);
    let name = "scheduler_scheduling_attempt_duration_seconds";
    println!(
        "| {}, parallelism {} | {} nodes, {} pods | {:.0} pods/s | {:.0} / {:.0} / {:.0} | {:.1} / {:.1} / {:.1} ms | {:.0} MiB |",
        args.workload,
        args.parallelism,
        args.nodes,
        scheduled,
        scheduled as f64 / window,
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        quantile(&metrics, name, 0.5).unwrap_or(0.0) * 1000.0,
        quantile(&metrics, name, 0.9).unwrap_or(0.0) * 1000.0,
        quantile(&metrics, name, 0.99).unwrap_or(0.0) * 1000.0,
        rss as f64 / 1024.0,
    );
    eprintln!(
        "CPU over the run: kube-apiserver {:.1} s, kube-scheduler {:.1} s, of {:.1} s wall on 2 cores",
        cpu_end.0 - cpu_start.0,
        cpu_end.1 - cpu_start.1,
        start.elapsed().as_secs_f64()
    );
    std::process::ExitCode::SUCCESS
}
