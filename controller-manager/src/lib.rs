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
//! - The client, leader election, the work queue and its metrics come from
//!   [`client_base`], shared with the other daemons.
//! - [`clusterroleaggregation`]: ClusterRoles with an aggregationRule hold the rules of
//!   the roles their selectors match.
//! - [`pernamespace`]: one named object kept in every namespace, for
//!   [`serviceaccounts`] (the `default` ServiceAccount) and [`rootcacertpublisher`]
//!   (the `kube-root-ca.crt` ConfigMap).
//! - [`resourcequota`]: each ResourceQuota's `status.used`, recounted from what its
//!   namespace holds.
//! - [`replicationcontroller`]: the replicaset controller over ReplicationControllers.
//! - [`nodelifecycle`]: node health (status posts and Leases) and the taints it calls for.
//! - [`namespace`]: namespaces being deleted are emptied, finalized and removed.
//! - [`deployment`]: each Deployment's rollout through ReplicaSets (RollingUpdate,
//!   Recreate, revisions, progress conditions).
//! - [`replicaset`]: each ReplicaSet's pods, with [`controller_utils`] (expectations,
//!   readiness, deletion ranking, slow start) and [`controller_ref`] (adoption and
//!   release), which the other workload controllers share.
//!
//! Controllers are registered in one table (`CONTROLLERS`, by upstream's
//! `--controllers` name); each is started with a [`Context`] holding the shared
//! informer factory, which lists and watches once for all of them.
//! - [`garbagecollector`]: the dependency graph, its workers, and the monitors that
//!   feed it from metadata watches.
//!
//! Only one replica leads at a time; the others wait on the Lease. Controllers run
//! only while leading, and a leader that fails to renew exits rather than risk two
//! leaders acting at once.

pub mod clusterroleaggregation;
pub mod controller_ref;
pub mod controller_utils;
pub mod deployment;
pub mod garbagecollector;
pub mod namespace;
pub mod nodelifecycle;
pub mod options;
pub mod pernamespace;
pub mod replicaset;
pub mod replicationcontroller;
pub mod resourcequota;
pub mod rootcacertpublisher;
pub mod serviceaccounts;

use std::net::SocketAddr;
use std::sync::Arc;

use client_base::informer::SharedInformerFactory;
use client_base::leaderelection::{Ended, Leader};
use client_base::{clientbuilder, workqueue};
use futures::FutureExt;
use futures::future::BoxFuture;
use prometheus::Registry;

use crate::options::Options;

/// Start-up and run-time failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag is wrong.
    #[error("{0}")]
    Options(#[from] options::Error),
    /// The kubeconfig could not be loaded.
    #[error("{0}")]
    Kubeconfig(#[from] client_base::config::Error),
    /// A metric could not be registered.
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A controller's credentials could not be set up.
    #[error("error starting controllers: {0}")]
    Credentials(#[from] clientbuilder::Error),
    /// The root CA bundle could not be read.
    #[error("{0}")]
    RootCa(String),
    /// Delegated authentication or authorization could not be set up.
    #[error("{0}")]
    Delegation(#[from] client_base::delegated::Error),
    /// Leadership was lost: exit so that only one leader acts.
    #[error("{0}")]
    LeaderElection(#[from] client_base::leaderelection::Error),
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

/// What a controller is started with.
#[derive(Clone)]
pub struct Context {
    /// The flags.
    pub opts: Arc<Options>,
    /// Clients per controller (its own service account with
    /// `--use-service-account-credentials`).
    pub clients: Arc<clientbuilder::ClientBuilder>,
    /// The metrics registry.
    pub registry: Registry,
    /// The workqueue families, registered once and shared by every queue.
    pub metrics: workqueue::Metrics,
    /// The informers every controller reads from (one list+watch per kind).
    pub factory: Arc<SharedInformerFactory>,
}

/// A running controller.
type Running = BoxFuture<'static, ()>;
/// Starts a controller: what runs, or `None` when its flags turn it off.
type Start = fn(Context) -> BoxFuture<'static, Result<Option<Running>, Error>>;

/// Every controller Keelson has, by upstream's `--controllers` name.
const CONTROLLERS: &[(&str, Start)] = &[
    ("garbage-collector-controller", |c| {
        start_garbage_collector(c).boxed()
    }),
    ("clusterrole-aggregation-controller", |c| {
        start_clusterrole_aggregation(c).boxed()
    }),
    ("serviceaccount-controller", |c| {
        start_serviceaccounts(c).boxed()
    }),
    ("root-ca-certificate-publisher-controller", |c| {
        start_root_ca_publisher(c).boxed()
    }),
    ("resourcequota-controller", |c| {
        start_resourcequota(c).boxed()
    }),
    (replicaset::NAME, |c| start_replicaset(c).boxed()),
    (deployment::NAME, |c| start_deployment(c).boxed()),
    (namespace::NAME, |c| start_namespace(c).boxed()),
    (nodelifecycle::NAME, |c| start_node_lifecycle(c).boxed()),
    (replicationcontroller::NAME, |c| {
        start_replicationcontroller(c).boxed()
    }),
];

async fn start_garbage_collector(c: Context) -> Result<Option<Running>, Error> {
    if !c.opts.enable_garbage_collector {
        tracing::info!("--enable-garbage-collector=false: not starting the garbage collector");
        return Ok(None);
    }
    let client = c.clients.client_for("generic-garbage-collector").await?;
    let run = garbagecollector::monitors::run(client, c.opts.concurrent_gc_syncs, c.metrics);
    Ok(Some(run.boxed()))
}

async fn start_clusterrole_aggregation(c: Context) -> Result<Option<Running>, Error> {
    let client = c
        .clients
        .client_for("clusterrole-aggregation-controller")
        .await?;
    Ok(Some(clusterroleaggregation::run(client).boxed()))
}

async fn start_serviceaccounts(c: Context) -> Result<Option<Running>, Error> {
    let client = c.clients.client_for("service-account-controller").await?;
    let run = pernamespace::run(
        c.clients.root(),
        client,
        serviceaccounts::ServiceAccounts,
        c.metrics,
    );
    Ok(Some(run.boxed()))
}

async fn start_root_ca_publisher(c: Context) -> Result<Option<Running>, Error> {
    let root_ca = root_ca(&c.opts, c.clients.root_config())?;
    let client = c.clients.client_for("root-ca-cert-publisher").await?;
    let publisher = rootcacertpublisher::Publisher::new(root_ca, &c.registry);
    let run = pernamespace::run(c.clients.root(), client, publisher, c.metrics);
    Ok(Some(run.boxed()))
}

async fn start_resourcequota(c: Context) -> Result<Option<Running>, Error> {
    let client = c.clients.client_for("resourcequota-controller").await?;
    let run = resourcequota::run(
        client,
        c.opts.concurrent_resource_quota_syncs,
        c.opts.resource_quota_sync_period,
        c.metrics,
    );
    Ok(Some(run.boxed()))
}

async fn start_replicaset(c: Context) -> Result<Option<Running>, Error> {
    let client = c.clients.client_for(replicaset::NAME).await?;
    let recorder = client_base::events::Recorder::legacy(client.clone(), replicaset::NAME);
    let run = replicaset::run(
        client,
        c.factory,
        recorder,
        c.opts.concurrent_replicaset_syncs,
        c.metrics,
    );
    Ok(Some(run.boxed()))
}

async fn start_deployment(c: Context) -> Result<Option<Running>, Error> {
    let client = c.clients.client_for(deployment::NAME).await?;
    let recorder = client_base::events::Recorder::legacy(client.clone(), deployment::NAME);
    let run = deployment::run(
        client,
        c.factory,
        recorder,
        c.opts.concurrent_deployment_syncs,
        c.metrics,
    );
    Ok(Some(run.boxed()))
}

async fn start_replicationcontroller(c: Context) -> Result<Option<Running>, Error> {
    let client = c.clients.client_for(replicationcontroller::ACCOUNT).await?;
    let recorder =
        client_base::events::Recorder::legacy(client.clone(), replicationcontroller::ACCOUNT);
    let run = replicationcontroller::run(
        client,
        c.factory,
        recorder,
        c.opts.concurrent_rc_syncs,
        c.metrics,
    );
    Ok(Some(run.boxed()))
}

async fn start_node_lifecycle(c: Context) -> Result<Option<Running>, Error> {
    let client = c.clients.client_for(nodelifecycle::ACCOUNT).await?;
    let settings = nodelifecycle::Settings {
        monitor_period: c.opts.node_monitor_period,
        grace_period: c.opts.node_monitor_grace_period,
        startup_grace_period: c.opts.node_startup_grace_period,
        eviction_rate: c.opts.node_eviction_rate,
    };
    let run = nodelifecycle::run(client, c.factory, settings, c.metrics);
    Ok(Some(run.boxed()))
}

async fn start_namespace(c: Context) -> Result<Option<Running>, Error> {
    let client = c.clients.client_for(namespace::NAME).await?;
    let run = namespace::run(
        client,
        c.factory,
        c.opts.concurrent_namespace_syncs,
        c.metrics,
    );
    Ok(Some(run.boxed()))
}

/// Runs the enabled controllers until the future is dropped (their tasks are
/// aborted with it).
async fn run_controllers(
    opts: Arc<Options>,
    clients: Arc<clientbuilder::ClientBuilder>,
    registry: &Registry,
) -> Result<(), Error> {
    let enabled = opts.enabled_controllers()?;
    // The informers read as the manager itself, as upstream's "shared-informers".
    let factory = Arc::new(
        SharedInformerFactory::new(clients.own("shared-informers")?).without_managed_fields(),
    );
    let ctx = Context {
        opts: opts.clone(),
        clients,
        registry: registry.clone(),
        // The workqueue families, registered once; every controller's queues share them.
        metrics: workqueue::Metrics::register(registry)?,
        factory: factory.clone(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for name in enabled {
        let Some((_, start)) = CONTROLLERS.iter().find(|(n, _)| *n == name) else {
            if !Options::implemented(name) {
                tracing::warn!(
                    controller = name,
                    "controller is not implemented in Keelson yet; skipping"
                );
            }
            continue;
        };
        tracing::info!(controller = name, "starting controller");
        if let Some(running) = start(ctx.clone()).await? {
            tasks.spawn(running);
        }
    }
    // Every informer the controllers asked for lists and watches from here on.
    factory.start();
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            tracing::error!(error = %e, "a controller stopped");
        }
    }
    std::future::pending().await
}

/// Runs kube-controller-manager until SIGTERM, or until leadership is lost.
pub async fn run(opts: Options) -> Result<(), Error> {
    opts.validate()?;
    let opts = Arc::new(opts);
    let config =
        client_base::config::load(opts.kubeconfig.as_deref(), opts.master.as_deref()).await?;
    let clients = Arc::new(clientbuilder::ClientBuilder::new(
        config,
        opts.use_service_account_credentials,
        opts.kube_api_qps,
        opts.kube_api_burst,
    )?);
    let registry = Registry::new();
    // Leader election always talks as the manager itself, on a client of its own
    // (as upstream's), so that renewals never queue behind the controllers' requests.
    let leader = Leader::new(
        clients.own("leader-election")?,
        opts.leader_election_config(),
        &registry,
    )?;

    // The secure port: health (with the leader-election check) and metrics, behind
    // delegated authentication and authorization.
    let checks = leader
        .health_check()
        .map(|c| ("leaderElection", c))
        .into_iter()
        .collect();
    client_base::delegated::serve_secure(
        "kube-controller-manager",
        SocketAddr::new(opts.bind_address, opts.secure_port),
        &opts.serving,
        &opts.delegation,
        registry.clone(),
        checks,
    )
    .await?;

    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
    let work = async {
        if let Err(e) = run_controllers(opts.clone(), clients.clone(), &registry).await {
            let _ = failed_tx.send(e);
        }
    };
    match leader.run(component_base::signal::shutdown(), work).await? {
        Ended::Shutdown => Ok(()),
        Ended::Finished => match failed_rx.await {
            Ok(e) => Err(e),
            Err(_) => Ok(()),
        },
    }
}
