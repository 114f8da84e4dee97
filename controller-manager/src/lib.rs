//! kube-controller-manager: the control loops that drive the cluster toward the
//! state its objects declare.
//!
//! ```text
//!  kube-apiserver ◀──── kube-rs client (from --kubeconfig) ─────┐
//!        ▲                                                     │
//!        │ Lease kube-system/kube-controller-manager           │ metadata list+watch,
//!        │ (leaderelection: acquire, renew every 2 s)          │ get, delete, merge patch
//!        │                                                     │
//!   [leaderelection] ──leading──▶ controllers (garbagecollector, ...)
//!                         │
//!                 lost ───┘ → the process exits, as upstream's does
//!
//!  --secure-port (10257): /healthz (with the leaderElection check), /metrics
//! ```
//!
//! - [`options`]: upstream's flags and the `--controllers` selection.
//! - [`leaderelection`]: client-go's Lease election over a store trait.
//! - [`workqueue`]: client-go's deduplicating, rate-limited work queue with the
//!   `workqueue_*` metrics.
//! - [`clusterroleaggregation`]: ClusterRoles with an aggregationRule hold the rules of
//!   the roles their selectors match.
//! - [`pernamespace`]: one named object kept in every namespace, for
//!   [`serviceaccounts`] (the `default` ServiceAccount) and [`rootcacertpublisher`]
//!   (the `kube-root-ca.crt` ConfigMap).
//! - [`resourcequota`]: each ResourceQuota's `status.used`, recounted from what its
//!   namespace holds.
//! - [`garbagecollector`]: the dependency graph, its workers, and the monitors that
//!   feed it from metadata watches.
//!
//! Only one replica leads at a time; the others wait on the Lease. Controllers run
//! only while leading, and a leader that fails to renew exits rather than risk two
//! leaders acting at once.

pub mod clientbuilder;
pub mod clusterroleaggregation;
pub mod garbagecollector;
pub mod leaderelection;
pub mod options;
pub mod pernamespace;
pub mod resourcequota;
pub mod rootcacertpublisher;
pub mod serviceaccounts;
pub mod workqueue;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::{IntGaugeVec, Opts, Registry};

use crate::leaderelection::{Elector, KubeLease, SystemClock, Timing};
use crate::options::Options;

/// Start-up and run-time failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag is wrong.
    #[error("{0}")]
    Options(#[from] options::Error),
    /// The kubeconfig could not be loaded.
    #[error("invalid kubeconfig: {0}")]
    Kubeconfig(String),
    /// The serving certificate could not be loaded or generated.
    #[error("unable to load server certificate: {0}")]
    Tls(#[from] component_base::tls::Error),
    /// The secure port could not be bound.
    #[error("failed to listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A controller's credentials could not be set up.
    #[error("error starting controllers: {0}")]
    Credentials(#[from] clientbuilder::Error),
    /// The root CA bundle could not be read.
    #[error("{0}")]
    RootCa(String),
    /// Leadership was lost: exit so that only one leader acts.
    #[error("leaderelection lost")]
    LeaderElectionLost,
}

/// Builds the API client configuration from `--kubeconfig` and `--master`, else
/// in-cluster or the default kubeconfig.
async fn client_config(opts: &Options) -> Result<kube::Config, Error> {
    let mut config = match &opts.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Kubeconfig(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Kubeconfig(e.to_string()))?
        }
        None => {
            if opts.master.is_none() {
                tracing::warn!(
                    "Neither --kubeconfig nor --master was specified. Using the inClusterConfig. This might not work."
                );
            }
            kube::Config::infer()
                .await
                .map_err(|e| Error::Kubeconfig(e.to_string()))?
        }
    };
    if let Some(master) = &opts.master {
        config.cluster_url = master
            .parse()
            .map_err(|e| Error::Kubeconfig(format!("--master {master:?}: {e}")))?;
    }
    Ok(config)
}

/// This candidate's identity: the hostname and a random suffix, as upstream's.
fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    let r: u128 = rand::random();
    let h = format!("{r:032x}");
    format!(
        "{host}_{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The root CA bundle to publish: `--root-ca-file`, else the kubeconfig's CA (empty
/// when it trusts none), as upstream's.
fn root_ca(opts: &Options, config: &kube::Config) -> Result<String, Error> {
    if let Some(path) = &opts.root_ca_file {
        let pem = std::fs::read_to_string(path).map_err(|e| {
            Error::RootCa(format!(
                "error parsing root-ca-file at {}: {e}",
                path.display()
            ))
        })?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(Error::RootCa(format!(
                "error parsing root-ca-file at {}: data does not contain any valid RSA or ECDSA certificates",
                path.display()
            )));
        }
        return Ok(pem);
    }
    Ok(rootcacertpublisher::pem_bundle(
        config.root_cert.as_deref().unwrap_or_default(),
    ))
}

/// Runs the enabled controllers until `stop` resolves.
async fn run_controllers(
    opts: &Options,
    clients: &clientbuilder::ClientBuilder,
    registry: &Registry,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let controllers = opts.enabled_controllers()?;
    let mut tasks = Vec::new();
    for name in controllers {
        match name {
            "garbage-collector-controller" if opts.enable_garbage_collector => {
                tracing::info!(controller = name, "starting controller");
                let client = clients.client_for("generic-garbage-collector").await?;
                tasks.push(tokio::spawn(garbagecollector::monitors::run(
                    client,
                    opts.concurrent_gc_syncs,
                    workqueue::Metrics::new(registry),
                )));
            }
            "clusterrole-aggregation-controller" => {
                tracing::info!(controller = name, "starting controller");
                let client = clients
                    .client_for("clusterrole-aggregation-controller")
                    .await?;
                tasks.push(tokio::spawn(clusterroleaggregation::run(client)));
            }
            "serviceaccount-controller" => {
                tracing::info!(controller = name, "starting controller");
                let client = clients.client_for("service-account-controller").await?;
                tasks.push(tokio::spawn(pernamespace::run(
                    clients.root(),
                    client,
                    serviceaccounts::ServiceAccounts,
                    workqueue::Metrics::new(registry),
                )));
            }
            "root-ca-certificate-publisher-controller" => {
                tracing::info!(controller = name, "starting controller");
                let root_ca = root_ca(opts, clients.root_config())?;
                let client = clients.client_for("root-ca-cert-publisher").await?;
                tasks.push(tokio::spawn(pernamespace::run(
                    clients.root(),
                    client,
                    rootcacertpublisher::Publisher::new(root_ca, registry),
                    workqueue::Metrics::new(registry),
                )));
            }
            "resourcequota-controller" => {
                tracing::info!(controller = name, "starting controller");
                let client = clients.client_for("resourcequota-controller").await?;
                tasks.push(tokio::spawn(resourcequota::run(
                    client,
                    opts.concurrent_resource_quota_syncs,
                    opts.resource_quota_sync_period,
                    workqueue::Metrics::new(registry),
                )));
            }
            "garbage-collector-controller" => {
                tracing::info!(
                    controller = name,
                    "--enable-garbage-collector=false: not starting"
                )
            }
            _ if !Options::implemented(name) => tracing::warn!(
                controller = name,
                "controller is not implemented in Keelson yet; skipping"
            ),
            _ => {}
        }
    }
    stop.await;
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// Runs kube-controller-manager until SIGTERM, or until leadership is lost.
pub async fn run(opts: Options) -> Result<(), Error> {
    opts.validate()?;
    let config = client_config(&opts).await?;
    let clients = clientbuilder::ClientBuilder::new(config, opts.use_service_account_credentials)?;
    let client = clients.root();
    let registry = Registry::new();
    let master = IntGaugeVec::new(
        Opts::new(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
        ),
        &["name"],
    )
    .expect("valid metric");
    let _ = registry.register(Box::new(master.clone()));

    let timing = Timing {
        lease_duration: opts.leader_elect_lease_duration,
        renew_deadline: opts.leader_elect_renew_deadline,
        retry_period: opts.leader_elect_retry_period,
    };
    let mut elector = Elector::new(
        KubeLease::new(
            client.clone(),
            &opts.leader_elect_resource_namespace,
            &opts.leader_elect_resource_name,
        ),
        SystemClock,
        identity(),
        timing,
    );

    // The secure port: health (with the leader-election check) and metrics.
    let tls = match (&opts.tls_cert_file, &opts.tls_private_key_file) {
        (Some(c), Some(k)) => {
            component_base::tls::server_config(c, k, None, false, &[b"h2", b"http/1.1"])?
        }
        _ => {
            let sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
            match &opts.cert_dir {
                None => component_base::tls::self_signed_config(&sans)?,
                Some(dir) => {
                    let (c, k) = component_base::tls::self_signed_files(
                        dir,
                        "kube-controller-manager",
                        &sans,
                    )?;
                    component_base::tls::server_config(&c, &k, None, false, &[b"h2", b"http/1.1"])?
                }
            }
        }
    };
    let addr = SocketAddr::new(opts.bind_address, opts.secure_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    let mut checks: Vec<(&'static str, component_base::status::Check)> = Vec::new();
    if opts.leader_elect {
        checks.push(("leaderElection", Arc::new(elector.health_check())));
    }
    let status = component_base::status::Status {
        registry: registry.clone(),
        checks,
    };
    tracing::info!(%addr, "serving securely");
    tokio::spawn(component_base::status::serve(
        listener,
        tls,
        status,
        std::future::pending(),
    ));

    let lease = opts.leader_elect_resource_name.clone();
    if !opts.leader_elect {
        return run_controllers(
            &opts,
            &clients,
            &registry,
            component_base::signal::shutdown(),
        )
        .await;
    }
    master.with_label_values(&[&lease]).set(0);
    tokio::select! {
        () = elector.acquire() => {}
        () = component_base::signal::shutdown() => return Ok(()),
    }
    master.with_label_values(&[&lease]).set(1);
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let e = elector.renew_until_lost().await;
        let _ = lost_tx.send(e);
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<bool>();
    let stopper = async move {
        tokio::select! {
            _ = lost_rx => { let _ = stop_tx.send(true); }
            () = component_base::signal::shutdown() => { let _ = stop_tx.send(false); }
        }
    };
    run_controllers(&opts, &clients, &registry, stopper).await?;
    master.with_label_values(&[&lease]).set(0);
    match stop_rx.await {
        Ok(true) => Err(Error::LeaderElectionLost),
        _ => Ok(()),
    }
}
