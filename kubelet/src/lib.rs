//! The kubelet: the node agent that registers its Node, runs the pods bound to it
//! through a CRI runtime (containerd), and reports their status.
//!
//! ```text
//!   --config (KubeletConfiguration) + flags ─▶ run()
//!      │
//!      ├─ node::NodeAgent ── register Node ─▶ status every nodeStatusUpdateFrequency
//!      │                  └─ Lease kube-node-lease/<node> every leaseDuration/4
//!      ├─ pods informer (fieldSelector spec.nodeName=<node>) ─▶ agent::Agent
//!      │      one worker per pod: RuntimePod::read ─▶ kuberuntime::compute_actions
//!      │      ─▶ images::ImageManager, volumes::VolumeManager, env ─▶ CRI calls
//!      │      ─▶ status::api_status ─▶ status::Manager (pods/status PATCH, final delete)
//!      ├─ agent PLEG: CRI relist every second wakes the workers of changed pods
//!      ├─ server::Server on :10250 (TLS, TokenReview/x509 + SubjectAccessReview):
//!      │      /pods /healthz /configz /metrics /containerLogs /exec /attach /portForward
//!      └─ healthz on 127.0.0.1:10248
//! ```
//!
//! The runtime is a [`cri::Runtime`] trait object: [`cri::remote::RemoteRuntime`]
//! speaks gRPC to containerd's socket. Everything that decides (configs, actions,
//! statuses, DNS, env, log parsing) is pure and unit-tested; the e2e tests run the
//! kubelet on real containerd.

pub mod agent;
pub mod config;
pub mod cri;
pub mod env;
pub mod images;
pub mod kuberuntime;
pub mod logs;
pub mod machine;
pub mod metrics;
pub mod node;
pub mod options;
pub mod prober;
pub mod server;
pub mod static_pods;
pub mod status;
pub mod volumes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use parking_lot::Mutex;

use crate::cri::Runtime;

/// Why the kubelet could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// The runtime could not be reached.
    #[error("failed to run Kubelet: validate service connection: {0}")]
    Runtime(#[from] cri::Error),
    /// The API client could not be built.
    #[error("failed to run Kubelet: {0}")]
    Client(#[from] client_base::config::Error),
    /// Standalone mode (no --kubeconfig) is not supported yet.
    #[error("failed to run Kubelet: --kubeconfig is required (standalone mode is not supported)")]
    NoKubeconfig,
    /// The serving certificate could not be made or loaded.
    #[error("failed to run Kubelet: {0}")]
    Tls(#[from] component_base::tls::Error),
    /// Delegated authentication could not be set up.
    #[error("failed to run Kubelet: {0}")]
    Auth(#[from] client_base::delegated::Error),
    /// A port could not be bound.
    #[error("failed to listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Connects to the runtime, retrying for up to 30 s while it starts.
async fn connect_runtime(
    endpoint: &str,
    timeout: Duration,
    metrics: cri::remote::Metrics,
) -> Result<cri::remote::RemoteRuntime, cri::Error> {
    let mut last = None;
    for _ in 0..60 {
        match cri::remote::RemoteRuntime::connect(endpoint, timeout, metrics.clone()).await {
            Ok(r) => match r.version().await {
                Ok(_) => return Ok(r),
                Err(e) => last = Some(e),
            },
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last.expect("tried at least once"))
}

/// The runtime's readiness as the node's Ready condition words it.
async fn runtime_state(rt: &dyn Runtime, version: &str) -> node::RuntimeState {
    let mut not_ready = Vec::new();
    match rt.status().await {
        Ok(s) => {
            for c in s.status.map(|s| s.conditions).unwrap_or_default() {
                if c.status {
                    continue;
                }
                let what = match c.r#type.as_str() {
                    "RuntimeReady" => "container runtime not ready",
                    "NetworkReady" => "container runtime network not ready",
                    _ => continue,
                };
                not_ready.push(format!(
                    "{what}: {}=false reason:{} message:{}",
                    c.r#type, c.reason, c.message
                ));
            }
        }
        Err(e) => not_ready.push(format!("container runtime is down: {e}")),
    }
    let mut images: Vec<k8s_openapi::api::core::v1::ContainerImage> = rt
        .list_images()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|i| k8s_openapi::api::core::v1::ContainerImage {
            names: Some(i.repo_digests.into_iter().chain(i.repo_tags).collect()),
            size_bytes: Some(i.size as i64),
        })
        .collect();
    images.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
    node::RuntimeState {
        runtime_version: version.to_owned(),
        not_ready,
        images,
    }
}

/// Runs the kubelet until SIGTERM or SIGINT.
pub async fn run(opts: options::Options) -> Result<(), Error> {
    let cfg = opts.configuration()?;
    let node_name = opts.node_name();
    let hostname = node_name.clone();
    let labels = opts.labels()?;
    let kubeconfig = opts.kubeconfig.clone().ok_or(Error::NoKubeconfig)?;
    let machine = machine::MachineInfo::read(&opts.root_dir);
    let registry = prometheus::Registry::new();
    let rt_metrics = cri::remote::Metrics::register(&registry);
    let metrics = metrics::Metrics::register(&registry);
    let runtime: Arc<dyn Runtime> = Arc::new(
        connect_runtime(
            &cfg.container_runtime_endpoint,
            cfg.runtime_request_timeout.0,
            rt_metrics,
        )
        .await?,
    );
    let version = runtime.version().await?;
    let runtime_version = format!("{}://{}", version.runtime_name, version.runtime_version);
    tracing::info!(runtime = %runtime_version, node = %node_name, "Container runtime initialized");
    let kcfg = client_base::config::load(Some(&kubeconfig), None).await?;
    let client = client_base::config::client(kcfg, 50.0, 100)?;
    let recorder = client_base::events::Recorder::legacy_on_host(
        client.clone(),
        "kubelet",
        Some(node_name.clone()),
    );
    let objects: Arc<dyn env::Objects> = Arc::new(env::ApiObjects(client.clone()));
    let volumes = volumes::VolumeManager::new(
        opts.root_dir.join("pods"),
        Some(client.clone()),
        objects.clone(),
        Arc::new(volumes::SystemMounter),
    );
    std::fs::create_dir_all(&cfg.pod_logs_dir).ok();
    let agent = agent::Agent::new(
        agent::AgentConfig {
            node_name: node_name.clone(),
            hostname: hostname.clone(),
            node_ip: opts.node_ip,
            cfg: cfg.clone(),
            root_dir: opts.root_dir.clone(),
            machine: machine.clone(),
        },
        runtime.clone(),
        version.runtime_name.clone(),
        objects,
        volumes,
        Some(recorder),
        metrics,
        Some(client.clone()),
    );
    tokio::spawn(agent.status.clone().run(client.clone()));

    // The node: registration, status, Lease.
    let state = Arc::new(Mutex::new(
        runtime_state(runtime.as_ref(), &runtime_version).await,
    ));
    let node_agent = Arc::new(node::NodeAgent {
        info: node::NodeInfo {
            name: node_name.clone(),
            ip: opts.node_ip,
            hostname: hostname.clone(),
            port: cfg.port,
            machine,
            labels,
            external_cloud_provider: opts.cloud_provider == "external",
        },
        cfg: cfg.clone(),
        client: client.clone(),
        runtime: state.clone(),
    });
    {
        let (rt, state, v) = (runtime.clone(), state.clone(), runtime_version.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let s = runtime_state(rt.as_ref(), &v).await;
                *state.lock() = s;
            }
        });
    }
    // Static pods run from the start, with or without the apiserver.
    if !cfg.static_pod_path.is_empty() {
        tokio::spawn(static_pod_source(
            agent.clone(),
            cfg.static_pod_path.clone().into(),
            node_name.clone(),
            cfg.file_check_frequency.0,
        ));
    }
    if cfg.register_node {
        let node = node_agent.register().await;
        let uid = node.metadata.uid.unwrap_or_default();
        agent.set_node_uid(uid.clone());
        tokio::spawn(node_agent.clone().lease_loop(uid));
    }
    tokio::spawn(node_agent.clone().status_loop());

    // The pods bound here.
    let factory = client_base::informer::SharedInformerFactory::new(client.clone());
    let pods = factory.informer_with::<Pod>(
        watcher::Config::default().fields(&format!("spec.nodeName={node_name}")),
    );
    {
        // Mirror pods are the API's view of static pods, not pods to run.
        let (a1, a2, a3) = (agent.clone(), agent.clone(), agent.clone());
        pods.add_handler(
            client_base::informer::Funcs::new()
                .on_add(move |p: &Arc<Pod>, _| {
                    if static_pods::is_mirror(p) {
                        a1.mirror_seen(p);
                    } else {
                        a1.upsert(p.clone());
                    }
                })
                .on_update(move |_, p: &Arc<Pod>| {
                    if static_pods::is_mirror(p) {
                        a2.mirror_seen(p);
                    } else {
                        a2.upsert(p.clone());
                    }
                })
                .on_delete(move |p: &Arc<Pod>| {
                    if static_pods::is_mirror(p) {
                        a3.mirror_gone(p);
                    } else {
                        a3.remove(p.metadata.uid.as_deref().unwrap_or_default());
                    }
                }),
        );
    }
    factory.start();
    tokio::spawn(agent.clone().pleg());

    // The kubelet API.
    let cert_dir = opts.cert_dir.clone();
    let (cert, key) = if cfg.tls_cert_file.is_empty() {
        let mut sans = vec![hostname.clone()];
        if let Some(ip) = opts.node_ip {
            sans.push(ip.to_string());
        }
        component_base::tls::self_signed_files(&cert_dir, "kubelet", &sans)?
    } else {
        (
            cfg.tls_cert_file.clone().into(),
            cfg.tls_private_key_file.clone().into(),
        )
    };
    let client_ca = (!cfg.authentication.x509.client_ca_file.is_empty())
        .then(|| std::path::PathBuf::from(&cfg.authentication.x509.client_ca_file));
    let cas: Vec<&std::path::Path> = client_ca.as_deref().into_iter().collect();
    let tls = component_base::tls::request_client_cert_config(&cert, &key, &cas, &[b"http/1.1"])?;
    let flags = client_base::delegated::Flags {
        authentication_kubeconfig: cfg
            .authentication
            .webhook
            .enabled
            .then(|| kubeconfig.clone()),
        authentication_skip_lookup: true,
        authentication_token_webhook_cache_ttl: cfg.authentication.webhook.cache_ttl.0,
        authentication_tolerate_lookup_failure: true,
        client_ca_file: client_ca.clone(),
        authorization_kubeconfig: Some(kubeconfig.clone()),
        authorization_always_allow_paths: Vec::new(),
        authorization_webhook_cache_authorized_ttl: cfg
            .authorization
            .webhook
            .cache_authorized_ttl
            .0,
        authorization_webhook_cache_unauthorized_ttl: cfg
            .authorization
            .webhook
            .cache_unauthorized_ttl
            .0,
    };
    let delegated = client_base::delegated::Delegated::new(&flags).await?;
    let server = Arc::new(server::Server {
        agent: agent.clone(),
        cfg: cfg.clone(),
        node_name: node_name.clone(),
        delegated: Some(delegated),
        registry,
    });
    let ip: std::net::IpAddr = cfg.address.parse().unwrap_or([0, 0, 0, 0].into());
    let addr = SocketAddr::new(ip, cfg.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    tracing::info!(%addr, "Starting to listen");
    tokio::spawn(component_base::serve::serve_tls(
        listener,
        tls,
        std::future::pending(),
        move |req| server.clone().handle(req),
    ));
    if cfg.healthz_port != 0 {
        let ip: std::net::IpAddr = cfg
            .healthz_bind_address
            .parse()
            .unwrap_or([127, 0, 0, 1].into());
        let addr = SocketAddr::new(ip, cfg.healthz_port);
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                tokio::spawn(serve_healthz(l));
            }
            Err(e) => tracing::warn!(%addr, error = %e, "healthz server failed"),
        }
    }
    component_base::signal::shutdown().await;
    tracing::info!("kubelet shutting down");
    Ok(())
}

/// Reads the static pod path every `period` and hands new, changed (a new UID) and
/// removed static pods to the agent.
async fn static_pod_source(
    agent: Arc<agent::Agent>,
    dir: std::path::PathBuf,
    node: String,
    period: Duration,
) {
    let mut known: std::collections::HashSet<String> = Default::default();
    let mut tick = tokio::time::interval(period.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let seen = k8s_openapi::jiff::Timestamp::now().to_string();
        let pods = static_pods::read_dir(&dir, &node, &seen);
        let now: std::collections::HashSet<String> =
            pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        for p in pods {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            if !known.contains(&uid) {
                tracing::info!(pod = ?p.metadata.name, "static pod added");
                agent.upsert(Arc::new(p));
            }
        }
        for uid in known.difference(&now) {
            agent.remove(uid);
        }
        known = now;
    }
}

/// The plain-HTTP `/healthz` on `healthzBindAddress:healthzPort`.
async fn serve_healthz(listener: tokio::net::TcpListener) {
    use tokio::io::AsyncWriteExt;
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .await;
        });
    }
}
