//! Starting a member: open or bootstrap the data directory, start the Raft thread,
//! serve the client, peer and metrics listeners, publish the member's attributes, and
//! stop cleanly.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use proto::etcdserverpb::{
    cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use proto::peer::peer_server::PeerServer;
use proto::peer::{MemberAttributes, MembersRequest, internal_request::Request};
use raft::RawNode;

use crate::config::{AutoCompaction, Flags};
use crate::engine::{self, Durability, KvEngine, Table, WriteBatch};
use crate::lease::{Lessor, SystemClock};
use crate::metrics::Metrics;
use crate::node::{Command, Node, Shared};
use crate::raftlog::{RaftLog, SnapshotSource};
use crate::server::{Core, Limits};
use crate::statemachine::StateMachine;
use crate::transport::{GrpcTransport, PeerClients, PeerTls};
use crate::watch::WatchHub;

const MEMBER_ID: &[u8] = b"member_id";
const CLUSTER_ID: &[u8] = b"cluster_id";

/// Start-up errors, printed by `main`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags.
    #[error("{0}")]
    Config(String),
    /// The engine failed.
    #[error("{0}")]
    Engine(#[from] engine::Error),
    /// Membership configuration is wrong.
    #[error("{0}")]
    Membership(#[from] crate::membership::Error),
    /// A listener failed.
    #[error("{0}")]
    Listen(#[from] crate::serve::Error),
    /// TLS material is unusable.
    #[error("{0}")]
    Tls(#[from] component_base::tls::Error),
    /// Raft refused its configuration.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The state machine could not be loaded.
    #[error("{0}")]
    State(#[from] crate::error::EtcdError),
}

fn read_u64(e: &dyn KvEngine, k: &[u8]) -> Result<u64, engine::Error> {
    Ok(e.get(Table::Meta, k)?
        .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0))
}

/// Snapshots of a state machine, for Raft catch-up.
pub struct Source(pub Arc<StateMachine>);

impl SnapshotSource for Source {
    fn build(&self) -> Result<(Vec<u8>, u64, u64), String> {
        let mvcc = self.0.mvcc();
        mvcc.with_read_lock(|| {
            let (index, term) = self.0.consistent_index();
            crate::snapshot::export(&**mvcc.engine(), &Table::STATE_MACHINE)
                .map(|d| (d, index, term))
                .map_err(|e| e.to_string())
        })
    }
}

/// Adds the member's identity to a batch: the members, this member's ID, the cluster ID.
fn put_identity(
    b: &mut WriteBatch,
    members: &[proto::etcdserverpb::Member],
    me: u64,
    cluster_id: u64,
) {
    for m in members {
        crate::membership::put(b, m);
    }
    b.put(Table::Meta, MEMBER_ID, me.to_be_bytes().to_vec());
    b.put(Table::Meta, CLUSTER_ID, cluster_id.to_be_bytes().to_vec());
}

/// Adds a new cluster's initial state to a batch: identity, the consistent index, and
/// the Raft log's bootstrap snapshot (see [`RaftLog::bootstrap`]). Shared by a new
/// member's first start and by `snapshot restore`.
pub fn bootstrap_batch(
    b: &mut WriteBatch,
    log: &RaftLog,
    members: &[proto::etcdserverpb::Member],
    me: u64,
    cluster_id: u64,
) {
    put_identity(b, members, me, cluster_id);
    b.put(
        Table::Meta,
        crate::mvcc::meta::CONSISTENT_INDEX,
        1u64.to_be_bytes().to_vec(),
    );
    b.put(
        Table::Meta,
        crate::mvcc::meta::CONSISTENT_TERM,
        1u64.to_be_bytes().to_vec(),
    );
    log.bootstrap(members.iter().map(|m| m.id).collect(), b);
}

/// Writes a new cluster's initial state in one durable write.
pub fn bootstrap_new(
    engine: &dyn KvEngine,
    log: &RaftLog,
    members: &[proto::etcdserverpb::Member],
    me: u64,
    cluster_id: u64,
) -> Result<(), engine::Error> {
    let mut b = WriteBatch::new();
    bootstrap_batch(&mut b, log, members, me, cluster_id);
    engine.write(&b, Durability::Sync)
}

/// Records the membership learned from a running cluster, for a joining member.
pub fn record_join(
    engine: &dyn KvEngine,
    members: &[proto::etcdserverpb::Member],
    me: u64,
    cluster_id: u64,
) -> Result<(), engine::Error> {
    let mut b = WriteBatch::new();
    put_identity(&mut b, members, me, cluster_id);
    engine.write(&b, Durability::Sync)
}

/// The Raft configuration a member runs with.
pub fn raft_config(id: u64, election_ticks: usize, applied: u64) -> raft::Config {
    raft::Config {
        id,
        election_tick: election_ticks,
        heartbeat_tick: 1,
        applied,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        read_only_option: raft::ReadOnlyOption::Safe,
        ..Default::default()
    }
}

/// A running member.
pub struct Member {
    /// The shared core (for tests and embedding).
    pub core: Arc<Core>,
    /// The addresses the client listeners bound (port 0 resolved), for embedding.
    pub client_addrs: Vec<std::net::SocketAddr>,
    cmd: std::sync::mpsc::Sender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Discovers this member's ID and the cluster's members from running peers
/// (`--initial-cluster-state existing`).
async fn join_existing(
    flags: &Flags,
    peers: &PeerClients,
) -> Result<(u64, u64, Vec<proto::etcdserverpb::Member>), Error> {
    let ic = crate::membership::parse_initial_cluster(&flags.initial_cluster())?;
    let urls: Vec<String> = ic
        .iter()
        .filter(|(n, _)| **n != flags.name)
        .flat_map(|(_, u)| u.clone())
        .collect();
    for _ in 0..30 {
        for url in &urls {
            let Some(mut c) = peers.connect_url(url) else {
                continue;
            };
            if let Ok(resp) = c.members(MembersRequest {}).await {
                let resp = resp.into_inner();
                let mut mine = flags.initial_advertise_peer_urls.clone();
                mine.sort();
                let me = resp.members.iter().find(|m| {
                    let mut u = m.peer_ur_ls.clone();
                    u.sort();
                    u == mine
                });
                return match me {
                    Some(m) => Ok((m.id, resp.cluster_id, resp.members.clone())),
                    None => Err(Error::Config(format!(
                        "error validating peerURLs: member with peer URLs {} is not in the cluster; add it first with 'etcdctl member add'",
                        flags.initial_advertise_peer_urls.join(",")
                    ))),
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(Error::Config(
        "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs".into(),
    ))
}

fn tls_for(
    cert: &Option<std::path::PathBuf>,
    key: &Option<std::path::PathBuf>,
    ca: &Option<std::path::PathBuf>,
    require: bool,
) -> Result<Option<Arc<rustls::ServerConfig>>, Error> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some(component_base::tls::server_config(
            c,
            k,
            ca.as_deref(),
            require,
            &[b"h2", b"http/1.1"],
        )?)),
        _ => Ok(None),
    }
}

impl Member {
    /// Starts a member from its flags. Returns once it serves clients.
    pub async fn start(flags: Flags) -> Result<Member, Error> {
        let dir = flags.data_dir();
        let kind = engine::detect(&dir).unwrap_or(flags.backend_engine);
        let engine: Arc<dyn KvEngine> = Arc::from(engine::open(kind, &dir)?);
        tracing::info!(data_dir = %dir.display(), engine = engine.name(), "opened backend");
        let auto_compaction = flags.auto_compaction().map_err(Error::Config)?;
        if flags.election_timeout < 5 * flags.heartbeat_interval {
            return Err(Error::Config(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                flags.election_timeout, flags.heartbeat_interval
            )));
        }
        let tick = Duration::from_millis(flags.heartbeat_interval);
        let election_ticks = (flags.election_timeout / flags.heartbeat_interval) as usize;
        // etcd's minimum TTL: 1.5 election timeouts, in whole seconds, rounded up.
        let min_ttl = ((3 * flags.election_timeout).div_ceil(2)).div_ceil(1000) as i64;
        let lessor = Arc::new(Lessor::new(Arc::new(SystemClock), min_ttl));
        let sm = Arc::new(StateMachine::open(engine.clone(), lessor)?);

        let peer_tls = PeerTls {
            ca: flags
                .peer_trusted_ca_file
                .as_ref()
                .and_then(|p| std::fs::read(p).ok()),
            identity: match (&flags.peer_cert_file, &flags.peer_key_file) {
                (Some(c), Some(k)) => Some((
                    std::fs::read(c)
                        .map_err(|e| Error::Config(format!("open {}: {e}", c.display())))?,
                    std::fs::read(k)
                        .map_err(|e| Error::Config(format!("open {}: {e}", k.display())))?,
                )),
                _ => None,
            },
        };

        let log = RaftLog::open(&engine, Arc::new(Source(sm.clone())))?;
        let (id, cluster_id) = if !log.is_empty() {
            let id = read_u64(&*engine, MEMBER_ID)?;
            let cid = read_u64(&*engine, CLUSTER_ID)?;
            tracing::info!(member = %format!("{id:x}"), cluster = %format!("{cid:x}"), "restarting member from data dir");
            (id, cid)
        } else if flags.initial_cluster_state == "new" {
            let members = crate::membership::initial_members(
                &flags.initial_cluster(),
                &flags.initial_cluster_token,
                &flags.name,
                &flags.initial_advertise_peer_urls,
            )?;
            let me = members
                .iter()
                .find(|m| m.name == flags.name)
                .map(|m| m.id)
                .ok_or_else(|| Error::Config("local member missing".into()))?;
            let cid = crate::membership::cluster_id(members.iter().map(|m| m.id));
            bootstrap_new(&*engine, &log, &members, me, cid)?;
            sm.reload()?;
            tracing::info!(member = %format!("{me:x}"), cluster = %format!("{cid:x}"), members = members.len(), "bootstrapped new cluster");
            (me, cid)
        } else {
            let probe = PeerClients::new(0, peer_tls.clone(), flags.initial_cluster_token.clone());
            let (me, cid, members) = join_existing(&flags, &probe).await?;
            record_join(&*engine, &members, me, cid)?;
            sm.reload()?;
            tracing::info!(member = %format!("{me:x}"), cluster = %format!("{cid:x}"), "joining existing cluster");
            (me, cid)
        };

        let (applied, _) = sm.consistent_index();
        if applied > log.commit() {
            // Data written before the applied and commit indexes were stored together:
            // what was applied was committed, so raise the commit index to match.
            tracing::warn!(
                applied,
                commit = log.commit(),
                "repairing commit index behind applied index"
            );
            let mut b = WriteBatch::new();
            log.ensure_commit(applied, &mut b);
            engine.write(&b, Durability::Sync)?;
        }
        let cfg = raft_config(id, election_ticks, applied);
        cfg.validate()?;
        let logger = slog::Logger::root(crate::slog_bridge::TracingDrain, slog::o!());
        let raw = RawNode::new(&cfg, log.clone(), &logger)?;

        let metrics = Arc::new(Metrics::new());
        metrics
            .server_info
            .with_label_values(&[&format!("{id:x}")])
            .set(1);
        let shared = Arc::new(Shared::new(id, applied));
        let hub = Arc::new(WatchHub::new(sm.mvcc().current_rev()));
        let peers = Arc::new(PeerClients::new(
            id,
            peer_tls,
            flags.initial_cluster_token.clone(),
        ));
        peers.update(&sm.members());
        let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
        let transport = Arc::new(GrpcTransport::new(
            id,
            cluster_id,
            peers.clone(),
            cmd_tx.clone(),
            tokio::runtime::Handle::current(),
        ));
        let election_timeout = Duration::from_millis(flags.election_timeout);
        let node = Node::new(
            raw,
            log,
            sm.clone(),
            hub.clone(),
            transport,
            shared.clone(),
            metrics.clone(),
            crate::node::Config {
                tick,
                snapshot_count: flags.snapshot_count.max(1),
                catchup_entries: 5000.min(flags.snapshot_count),
                lease_extend: election_timeout,
            },
            applied,
        );
        let thread = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || node.run(cmd_rx))
            .map_err(|e| Error::Config(format!("spawning raft thread: {e}")))?;

        let core = Arc::new(Core {
            sm,
            hub,
            shared,
            cmd: parking_lot::Mutex::new(cmd_tx.clone()),
            metrics,
            limits: Limits {
                max_request_bytes: flags.max_request_bytes,
                max_txn_ops: flags.max_txn_ops,
                quota_bytes: flags.quota_backend_bytes,
                request_timeout: Duration::from_secs(5) + 2 * election_timeout,
                election_timeout,
                progress_notify_interval: flags.experimental_watch_progress_notify_interval,
            },
            cluster_id,
            name: flags.name.clone(),
            peers,
        });

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        // Peers first, so the cluster can form while clients wait.
        let peer_tls = tls_for(
            &flags.peer_cert_file,
            &flags.peer_key_file,
            &flags.peer_trusted_ca_file,
            flags.peer_client_cert_auth,
        )?;
        let peer_router = tonic::service::Routes::new(
            PeerServer::new(crate::server::peer::PeerService(core.clone()))
                .max_decoding_message_size(usize::MAX),
        )
        .into_axum_router();
        for url in &flags.listen_peer_urls {
            let b = crate::serve::bind(url, peer_tls.clone()).await?;
            tracing::info!(address = %url, "starting peer listener");
            tasks.push(tokio::spawn(b.serve(peer_router.clone(), stop_rx.clone())));
        }
        let client_tls = tls_for(
            &flags.cert_file,
            &flags.key_file,
            &flags.trusted_ca_file,
            flags.client_cert_auth,
        )?;
        let client_router = client_router(&core);
        let mut client_bound = Vec::new();
        for url in &flags.listen_client_urls {
            client_bound.push(crate::serve::bind(url, client_tls.clone()).await?);
        }
        for url in &flags.listen_metrics_urls {
            let b = crate::serve::bind(url, client_tls.clone()).await?;
            tracing::info!(address = %url, "serving metrics");
            tasks.push(tokio::spawn(b.serve(http_router(&core), stop_rx.clone())));
        }
        tasks.push(tokio::spawn(background(
            core.clone(),
            auto_compaction,
            stop_rx.clone(),
        )));
        // etcd publishes the member's attributes through Raft before serving clients.
        let attrs = MemberAttributes {
            id,
            name: flags.name.clone(),
            client_urls: flags.advertise_client_urls.clone(),
        };
        publish(&core, attrs).await;
        let client_addrs = client_bound.iter().filter_map(|b| b.local_addr()).collect();
        for b in client_bound {
            let secure = b.url.starts_with("https");
            tracing::info!(address = %b.url, "ready to serve client requests");
            if !secure {
                tracing::warn!(address = %b.url, "serving client traffic insecurely; this is strongly discouraged!");
            }
            tasks.push(tokio::spawn(
                b.serve(client_router.clone(), stop_rx.clone()),
            ));
        }
        Ok(Member {
            core,
            client_addrs,
            cmd: cmd_tx,
            thread: Some(thread),
            stop_tx,
            tasks,
        })
    }

    /// Resolves when the member stops by itself (it was removed from the cluster).
    pub async fn stopped(&self) {
        let mut rx = self.core.shared.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Stops serving, stops the Raft thread, and makes every applied write durable.
    pub async fn shutdown(mut self) {
        let _ = self.stop_tx.send(true);
        let _ = self.cmd.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // One durable write flushes every buffered state-machine write before it.
        let mut b = WriteBatch::new();
        b.put(Table::Meta, b"shutdown".to_vec(), vec![1]);
        if let Err(e) = self.core.sm.mvcc().engine().write(&b, Durability::Sync) {
            tracing::error!(error = %e, "final sync");
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
        tracing::info!("stopped member");
    }
}

/// Publishes name and client URLs through Raft, retrying until a leader takes it.
async fn publish(core: &Arc<Core>, attrs: MemberAttributes) {
    let core = core.clone();
    let fut = async move {
        loop {
            match core.propose(Request::MemberAttributes(attrs.clone())).await {
                Ok(_) => {
                    tracing::info!(
                        member = %format!("{:x}", attrs.id),
                        "published {{Name:{} ClientURLs:[{}]}} to cluster {:x}",
                        attrs.name,
                        attrs.client_urls.join(" "),
                        core.cluster_id
                    );
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "publish");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    // A member that cannot reach quorum still serves (serializable reads, status), as
    // etcd does after its publish times out; publishing continues in the background.
    let handle = tokio::spawn(fut);
    let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
}

fn http_router(core: &Arc<Core>) -> Router {
    let c1 = core.clone();
    let c2 = core.clone();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let core = c1.clone();
                async move {
                    refresh_gauges(&core);
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            component_base::metrics::TEXT_CONTENT_TYPE,
                        )],
                        component_base::metrics::render(&core.metrics.registry),
                    )
                }
            }),
        )
        .route(
            "/health",
            get(move |q: axum::extract::RawQuery| {
                let core = c2.clone();
                async move { health(&core, q.0.unwrap_or_default()).await }
            }),
        )
        .route(
            "/version",
            get(|| async {
                axum::Json(serde_json::json!({
                    "etcdserver": crate::server::maintenance::ETCD_VERSION,
                    "etcdcluster": crate::server::maintenance::ETCD_VERSION,
                }))
            }),
        )
}

fn client_router(core: &Arc<Core>) -> Router {
    let max = core.limits.max_request_bytes + 512 * 1024;
    let routes = tonic::service::Routes::new(
        KvServer::new(crate::server::kv::KvService(core.clone())).max_decoding_message_size(max),
    )
    .add_service(
        WatchServer::new(crate::server::watch::WatchService(core.clone()))
            .max_decoding_message_size(max),
    )
    .add_service(
        LeaseServer::new(crate::server::lease::LeaseService(core.clone()))
            .max_decoding_message_size(max),
    )
    .add_service(
        ClusterServer::new(crate::server::cluster::ClusterService(core.clone()))
            .max_decoding_message_size(max),
    )
    .add_service(
        MaintenanceServer::new(crate::server::maintenance::MaintenanceService(core.clone()))
            .max_decoding_message_size(max),
    );
    routes.into_axum_router().merge(http_router(core))
}

/// etcd's `/health`: healthy with a leader and no alarm; `?exclude=NOSPACE` ignores
/// that alarm, `?serializable=true` skips the linearizable read.
async fn health(core: &Core, query: String) -> (http::StatusCode, axum::Json<serde_json::Value>) {
    let exclude_nospace = query.contains("exclude=NOSPACE");
    let serializable = query.contains("serializable=true");
    let mut reason = String::new();
    if *core.shared.leader.borrow() == 0 {
        reason = "RAFT NO LEADER".into();
    } else if core.sm.no_space() && !exclude_nospace {
        reason = "ALARM NOSPACE".into();
    } else if !serializable && core.linearizable().await.is_err() {
        reason = "QGET ERROR".into();
    }
    let ok = reason.is_empty();
    let code = if ok {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(serde_json::json!({"health": ok.to_string(), "reason": reason})),
    )
}

fn refresh_gauges(core: &Core) {
    let engine = core.sm.mvcc().engine();
    core.metrics
        .db_total_size
        .set(engine.size_on_disk().unwrap_or(0) as i64);
    core.metrics
        .db_in_use
        .set(engine.size_in_use().unwrap_or(0) as i64);
    core.metrics.watchers.set(core.hub.watchers() as i64);
}

/// Leader-only auto-compaction, as etcd's compactor does it.
async fn background(
    core: Arc<Core>,
    policy: Option<AutoCompaction>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(policy) = policy else {
        let _ = stop.wait_for(|s| *s).await;
        return;
    };
    let (every, keep_secs) = match policy {
        AutoCompaction::Periodic(d) => ((d / 10).max(Duration::from_secs(1)), d),
        AutoCompaction::Revision(_) => (Duration::from_secs(300), Duration::ZERO),
    };
    let mut samples: std::collections::VecDeque<(tokio::time::Instant, i64)> = Default::default();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = tokio::time::Instant::now();
        let (current, compacted) = core.sm.mvcc().revs();
        samples.push_back((now, current));
        if !core.shared.status.read().is_leader {
            continue;
        }
        let target = match policy {
            AutoCompaction::Revision(n) => current - n,
            AutoCompaction::Periodic(_) => {
                while samples.len() > 1 && now.duration_since(samples[1].0) >= keep_secs {
                    samples.pop_front();
                }
                match samples.front() {
                    Some((t, rev)) if now.duration_since(*t) >= keep_secs => *rev,
                    _ => continue,
                }
            }
        };
        if target > compacted {
            let req = Request::Compaction(proto::etcdserverpb::CompactionRequest {
                revision: target,
                physical: false,
            });
            match core.propose(req).await {
                Ok(_) => tracing::info!(revision = target, "completed auto revision compaction"),
                Err(e) => tracing::warn!(revision = target, error = %e, "auto compaction failed"),
            }
        }
    }
}
