//! `kubelet-bench`: pod startup on one real node, side by side with the same CRI
//! calls made straight to the node's containerd.
//!
//! - **kubelet**: kube-apiserver (with the ServiceAccount plugin, as a cluster has
//!   it), kube-controller-manager (service accounts and the root CA ConfigMap) and
//!   one node (a network namespace with containerd and the kubelet, as the e2e tests
//!   run it). `--pods` pods bound straight to the node (`spec.nodeName`: the
//!   scheduler is not measured), busybox already pulled, are created at once; each
//!   pod's latency is from its create call to a watch seeing it Ready. The kubelet
//!   does everything it does for any pod: the service account token volume
//!   (TokenRequest), the sandbox, the container, its status.
//! - **raw CRI**: the same number of sandboxes and containers, with the configs the
//!   kubelet generates for such pods, through `RunPodSandbox`, `CreateContainer` and
//!   `StartContainer` on the same containerd, all at once; each pod's latency is
//!   from its first call to `StartContainer` returning.
//!
//! The kubelet rounds run first; the raw rounds after the kubelet is stopped (it
//! kills sandboxes of pods it does not know, as upstream's does). Then the kubelet's
//! resident memory idle and with the pods running, and its CPU over 10 s with them
//! running. Needs root and containerd, as the node tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use component_base::bench::{cpu_seconds, rss_kib};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use kubelet::cri::Runtime;
use parking_lot::Mutex;

#[derive(Parser, Debug)]
#[command(name = "kubelet-bench")]
struct Args {
    /// Pods started at once.
    #[arg(long, default_value_t = 30)]
    pods: usize,
    /// Rounds of each side (interleaved); medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn pod(name: &str, node: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}
    }))
    .expect("pod")
}

/// Creates `n` pods at once and returns each one's create → Ready latency (ms); the
/// pods stay (see [`delete_round`]).
async fn kubelet_round(client: &kube::Client, node: &str, n: usize, round: usize) -> Vec<f64> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "bench");
    let ready: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let done = Arc::new(tokio::sync::Notify::new());
    let watch = {
        let (ready, done, api) = (ready.clone(), done.clone(), api.clone());
        tokio::spawn(async move {
            let mut s = watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = s.next().await {
                let pods = match ev {
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => vec![p],
                    _ => continue,
                };
                for p in pods {
                    let is_ready = p
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    if is_ready {
                        let mut r = ready.lock();
                        r.entry(p.metadata.name.clone().unwrap_or_default())
                            .or_insert_with(Instant::now);
                        if r.len() >= n {
                            done.notify_one();
                        }
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut created = HashMap::new();
    let mut calls = Vec::new();
    for i in 0..n {
        let name = format!("p{round}-{i}");
        created.insert(name.clone(), Instant::now());
        let (api, p) = (api.clone(), pod(&name, node));
        calls.push(tokio::spawn(async move {
            api.create(&PostParams::default(), &p).await
        }));
    }
    for c in calls {
        c.await.expect("join").expect("create pod");
    }
    tokio::time::timeout(Duration::from_secs(300), done.notified())
        .await
        .expect("every pod Ready within 5 min");
    watch.abort();
    let r = ready.lock();
    created
        .iter()
        .map(|(name, t0)| r[name].duration_since(*t0).as_secs_f64() * 1000.0)
        .collect()
}

/// Deletes a round's pods.
async fn delete_round(client: &kube::Client, n: usize, round: usize) {
    let api: Api<Pod> = Api::namespaced(client.clone(), "bench");
    for i in 0..n {
        let _ = api
            .delete(
                &format!("p{round}-{i}"),
                &DeleteParams::default().grace_period(0),
            )
            .await;
    }
}

/// The same pods as raw CRI calls: sandbox, container, start, all at once.
async fn raw_round(
    rt: Arc<dyn Runtime>,
    node: &str,
    logs: &str,
    cgroup_root: &str,
    n: usize,
    round: usize,
) -> Vec<f64> {
    let image = rt
        .pull_image("busybox:1.36", None, None)
        .await
        .expect("pull");
    let mut tasks = Vec::new();
    for i in 0..n {
        let rt = rt.clone();
        let mut p = pod(&format!("raw{round}-{i}"), node);
        p.metadata.uid = Some(format!("raw-{round}-{i}-{}", std::process::id()));
        let image = image.clone();
        let ctx = kubelet::kuberuntime::SandboxContext {
            pod_logs_dir: logs.to_owned(),
            dns: Default::default(),
            cgroup_parent: kubelet::kuberuntime::cgroup_parent(&p, cgroup_root),
            node_hostname: node.to_owned(),
        };
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let sc = kubelet::kuberuntime::sandbox_config(&p, 0, &ctx);
            let sid = rt.run_pod_sandbox(sc.clone()).await.expect("sandbox");
            let c = &p.spec.as_ref().expect("spec").containers[0];
            let cc = kubelet::kuberuntime::container_config(
                &p,
                c,
                &kubelet::kuberuntime::ContainerContext {
                    image_ref: image,
                    ..Default::default()
                },
            );
            let cid = rt.create_container(&sid, cc, sc).await.expect("create");
            rt.start_container(&cid).await.expect("start");
            (t0.elapsed().as_secs_f64() * 1000.0, sid, cid)
        }));
    }
    let mut lat = Vec::new();
    let mut made = Vec::new();
    for t in tasks {
        let (l, sid, cid) = t.await.expect("join");
        lat.push(l);
        made.push((sid, cid));
    }
    for (sid, cid) in made {
        let _ = rt.stop_container(&cid, Duration::ZERO).await;
        let _ = rt.remove_container(&cid).await;
        let _ = rt.stop_pod_sandbox(&sid).await;
        let _ = rt.remove_pod_sandbox(&sid).await;
    }
    lat
}

/// Waits until the runtime holds no sandbox (the kubelet cleaned up).
async fn drained(rt: &dyn Runtime) {
    for _ in 0..600 {
        if rt
            .list_pod_sandbox(None)
            .await
            .map(|s| s.is_empty())
            .unwrap_or(false)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the node never drained");
}

fn main() {
    component_base::init();
    let args = Args::parse();
    let Some(env) = e2e::NodeEnv::start("10.97", "kbench") else {
        std::process::exit(2);
    };
    let mut flags = env.apiserver_flags();
    flags.push("--enable-admission-plugins=ServiceAccount".into());
    let api = e2e::ApiServer::start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let ca = api.dir.path().join("pki/ca.crt").display().to_string();
    let _kcm = e2e::Component::start(
        &api,
        "kcm",
        &["--leader-elect=false", &format!("--root-ca-file={ca}")],
    );
    let mut node = e2e::Node::start(&env, &api, "bench", 1, "");
    node.wait_ready(&api, Duration::from_secs(120));
    api.ok("kubectl.1.33", &["create", "namespace", "bench"]);
    api.ok(
        "kubectl.1.33",
        &[
            "wait",
            "--for=create",
            "-n",
            "bench",
            "serviceaccount/default",
            "--timeout=60s",
        ],
    );
    let pid = node.kubelet_pid().expect("kubelet pid");
    let sock = format!("unix://{}/containerd/containerd.sock", node.dir.display());
    let logs = node.dir.join("raw-logs").display().to_string();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let cfg = client_base_config(&api).await;
        let client = kube::Client::try_from(cfg).expect("client");
        let cri: Arc<dyn Runtime> = Arc::new(
            kubelet::cri::remote::RemoteRuntime::connect(
                &sock,
                Duration::from_secs(120),
                kubelet::cri::remote::Metrics::register(&prometheus::Registry::new()),
            )
            .await
            .expect("connect to containerd"),
        );
        // Warm up: the image present, one pod through the kubelet.
        kubelet_round(&client, "bench", 1, 999).await;
        delete_round(&client, 1, 999).await;
        drained(cri.as_ref()).await;
        let idle_rss = rss_kib(pid);
        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        let mut busy_rss = 0;
        let mut busy_cpu = 0.0;
        for round in 0..args.rounds {
            ours.extend(kubelet_round(&client, "bench", args.pods, round).await);
            let c0 = cpu_seconds(pid);
            tokio::time::sleep(Duration::from_secs(10)).await;
            busy_cpu = (cpu_seconds(pid) - c0) / 10.0;
            busy_rss = busy_rss.max(rss_kib(pid));
            delete_round(&client, args.pods, round).await;
            drained(cri.as_ref()).await;
        }
        // The raw side runs with the kubelet stopped: it would kill sandboxes of
        // pods it does not know, as upstream's does.
        node.kill_kubelet();
        for round in 0..args.rounds {
            raw.extend(raw_round(cri.clone(), "bench", &logs, "/keelson-bench", args.pods, round).await);
        }
        let row = |name: &str, v: &[f64]| {
            format!(
                "| {name} | {:.0} | {:.0} | {:.0} |",
                pct(v.to_vec(), 0.5),
                pct(v.to_vec(), 0.9),
                pct(v.to_vec(), 0.99)
            )
        };
        println!("{} pods at once on one node, {} rounds; latency in ms", args.pods, args.rounds);
        println!("| path | p50 | p90 | p99 |\n|---|---|---|---|");
        println!("{}", row("kubelet: create → Ready (watch)", &ours));
        println!("{}", row("raw CRI: RunPodSandbox + CreateContainer + StartContainer", &raw));
        println!(
            "ratio kubelet/raw: p50 {:.2}×, p99 {:.2}×",
            pct(ours.clone(), 0.5) / pct(raw.clone(), 0.5),
            pct(ours, 0.99) / pct(raw, 0.99)
        );
        println!(
            "kubelet RSS idle {:.1} MiB, with {} pods {:.1} MiB; CPU with them running {:.2}% of a core",
            idle_rss as f64 / 1024.0,
            args.pods,
            busy_rss as f64 / 1024.0,
            busy_cpu * 100.0
        );
    });
}

async fn client_base_config(api: &e2e::ApiServer) -> kube::Config {
    let kc = kube::config::Kubeconfig::read_from(api.kubeconfig()).expect("kubeconfig");
    kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config")
}
