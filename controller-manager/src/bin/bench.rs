//! `kube-controller-manager-bench`: how fast the deployment and replicaset
//! controllers turn a scale-up into pods. kube-apiserver (embedded store) and
//! kube-controller-manager run as separate processes, as in a cluster; the bench
//! creates a Deployment with zero replicas, scales it to `--replicas`, and counts
//! the pods that appear (from a watch, sampled every second) until all exist.
//! It reports the time, the average and per-second p50/p90 creation rate, and
//! the controller-manager's RSS and CPU, with `--kube-api-qps` as given
//! (upstream's default 20, or raised).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use component_base::bench::{Proc, cpu_seconds, exe_dir, free_port, rss_kib};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

const TOKEN: &str = "benchtoken";

#[derive(Parser, Debug)]
#[command(name = "kube-controller-manager-bench")]
struct Args {
    /// Replicas to scale the Deployment to.
    #[arg(long, default_value_t = 10_000)]
    replicas: usize,
    /// The controller-manager's --kube-api-qps (and burst 1.5×, as its defaults).
    #[arg(long, default_value_t = 20.0)]
    qps: f32,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

fn kubeconfig(dir: &Path, port: u16) -> PathBuf {
    component_base::bench::token_kubeconfig(dir, port, TOKEN)
}

/// Exits non-zero, printing no figures, when the pods did not all appear.
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
    let port = free_port();
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
            // No service account controller runs here: pods need no account.
            .args(["--disable-admission-plugins", "ServiceAccount"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("apiserver.log")).expect("log"))
            .spawn()
            .expect("start kube-apiserver (build it with --release first)"),
    );
    let api_pid = apiserver.0.id();
    let kc = kubeconfig(dir.path(), port);
    let config = client_base::config::load(Some(&kc), None)
        .await
        .expect("kubeconfig");
    let client = client_base::config::client(config, -1.0, 0).expect("client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(60);
    while pods.list(&Default::default()).await.is_err() {
        assert!(Instant::now() < deadline, "kube-apiserver did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let burst = (args.qps * 1.5).max(1.0) as u32;
    let kcm = Proc(
        Command::new(exe_dir().join("kube-controller-manager"))
            .arg("--kubeconfig")
            .arg(&kc)
            .args([
                "--leader-elect=false",
                "--controllers=deployment-controller,replicaset-controller",
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &free_port().to_string(),
                "--kube-api-qps",
                &args.qps.to_string(),
                "--kube-api-burst",
                &burst.to_string(),
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("kcm.log")).expect("log"))
            .spawn()
            .expect("start kube-controller-manager"),
    );

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "scale"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "scale"}},
            "template": {"metadata": {"labels": {"app": "scale"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    // The controller has synced it (its ReplicaSet exists) before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = deployments.get("scale").await.expect("get");
        if d.status.and_then(|s| s.observed_generation) == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the deployment was never synced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let watch = tokio::spawn(async move {
        let mut stream = watcher(pods, watcher::Config::default())
            .applied_objects()
            .boxed();
        let mut names = std::collections::HashSet::new();
        while let Some(Ok(p)) = stream.next().await {
            if names.insert(p.metadata.name.unwrap_or_default()) {
                counter.store(names.len(), Ordering::Relaxed);
            }
        }
    });
    let kcm_pid = kcm.0.id();
    let cpu_start = (cpu_seconds(api_pid), cpu_seconds(kcm_pid));
    let start = Instant::now();
    deployments
        .patch(
            "scale",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": args.replicas}})),
        )
        .await
        .expect("scale");
    let mut samples = Vec::new();
    let mut last = 0;
    let limit = Duration::from_secs(args.timeout);
    while seen.load(Ordering::Relaxed) < args.replicas && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = seen.load(Ordering::Relaxed);
        samples.push((now - last) as f64);
        last = now;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let created = seen.load(Ordering::Relaxed);
    watch.abort();
    if created < args.replicas {
        eprintln!(
            "only {created} of {} pods appeared in {elapsed:.0}s",
            args.replicas
        );
        return std::process::ExitCode::FAILURE;
    }
    let cpu = (
        cpu_seconds(api_pid) - cpu_start.0,
        cpu_seconds(kcm_pid) - cpu_start.1,
    );
    let rss = rss_kib(kcm_pid) as f64 / 1024.0;
    samples.sort_by(f64::total_cmp);
    let pct = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "| deployment 0→{} replicas, kube-api-qps {} | {:.1} s | {:.0} pods/s | {:.0} / {:.0} | {:.0} MiB |",
        args.replicas,
        args.qps,
        elapsed,
        created as f64 / elapsed,
        pct(0.5),
        pct(0.9),
        rss
    );
    eprintln!(
        "CPU over the run: kube-apiserver {:.1} s, kube-controller-manager {:.1} s, of {elapsed:.1} s wall on 2 cores",
        cpu.0, cpu.1
    );
    std::process::ExitCode::SUCCESS
}
