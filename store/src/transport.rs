//! The Raft transport: per-peer tasks that batch messages into `Peer.Send` calls.
//!
//! The Raft thread hands messages over without blocking ([`Transport::send`]); each
//! peer's task drains its queue, encodes the batch and sends it. A failed send reports
//! the peer unreachable (and a failed snapshot as failed) back to the Raft thread, which
//! then probes again. Peer addresses follow the membership ([`Transport::update_peers`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use proto::etcdserverpb::Member;
use proto::peer::RaftBatch;
use proto::peer::peer_client::PeerClient as GenPeerClient;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use tokio::sync::mpsc;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::node::{Command, Transport};

/// A client of one peer's service.
pub type PeerClient = GenPeerClient<Channel>;

/// TLS for connections to peers.
#[derive(Clone, Default)]
pub struct PeerTls {
    /// CA to verify peers with, PEM.
    pub ca: Option<Vec<u8>>,
    /// Our certificate and key, PEM.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Clients to every other member, keyed by member ID.
pub struct PeerClients {
    me: u64,
    clients: RwLock<HashMap<u64, (Vec<String>, PeerClient)>>,
    tls: PeerTls,
    /// The cluster token, for member IDs.
    pub token: String,
    /// Lazy channels spawn their workers here; the Raft thread has no runtime of its own.
    rt: tokio::runtime::Handle,
}

fn endpoint(url: &str, tls: &PeerTls) -> Option<Endpoint> {
    let ep = Endpoint::from_shared(url.to_owned()).ok()?;
    let ep = ep
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10));
    if url.starts_with("https://") {
        let mut cfg = ClientTlsConfig::new();
        if let Some(ca) = &tls.ca {
            cfg = cfg.ca_certificate(tonic::transport::Certificate::from_pem(ca));
        }
        if let Some((c, k)) = &tls.identity {
            cfg = cfg.identity(tonic::transport::Identity::from_pem(c, k));
        }
        return ep.tls_config(cfg).ok();
    }
    Some(ep)
}

impl PeerClients {
    /// No peers yet. Must be called inside a tokio runtime.
    pub fn new(me: u64, tls: PeerTls, token: String) -> Self {
        Self {
            me,
            clients: RwLock::new(HashMap::new()),
            tls,
            token,
            rt: tokio::runtime::Handle::current(),
        }
    }

    /// A client for a peer URL that is not a member yet (joining).
    pub fn connect_url(&self, url: &str) -> Option<PeerClient> {
        let _rt = self.rt.enter();
        endpoint(url, &self.tls)
            .map(|ep| GenPeerClient::new(ep.connect_lazy()).max_decoding_message_size(usize::MAX))
    }

    /// Points the clients at the current members.
    pub fn update(&self, members: &[Member]) {
        let mut clients = self.clients.write();
        clients.retain(|id, _| members.iter().any(|m| m.id == *id));
        for m in members {
            if m.id == self.me || m.peer_ur_ls.is_empty() {
                continue;
            }
            if clients
                .get(&m.id)
                .is_some_and(|(urls, _)| urls == &m.peer_ur_ls)
            {
                continue;
            }
            if let Some(c) = self.connect_url(&m.peer_ur_ls[0]) {
                clients.insert(m.id, (m.peer_ur_ls.clone(), c));
            }
        }
    }

    /// The client for member `id`.
    pub fn get(&self, id: u64) -> Option<PeerClient> {
        self.clients.read().get(&id).map(|(_, c)| c.clone())
    }
}

/// The gRPC transport.
pub struct GrpcTransport {
    me: u64,
    cluster_id: u64,
    peers: Arc<PeerClients>,
    queues: Mutex<HashMap<u64, mpsc::UnboundedSender<Message>>>,
    cmd: Mutex<Sender<Command>>,
    rt: tokio::runtime::Handle,
}

impl GrpcTransport {
    /// A transport sending from member `me`, reporting failures to the Raft thread.
    pub fn new(
        me: u64,
        cluster_id: u64,
        peers: Arc<PeerClients>,
        cmd: Sender<Command>,
        rt: tokio::runtime::Handle,
    ) -> Self {
        Self {
            me,
            cluster_id,
            peers,
            queues: Mutex::new(HashMap::new()),
            cmd: Mutex::new(cmd),
            rt,
        }
    }

    fn queue(&self, to: u64) -> mpsc::UnboundedSender<Message> {
        let mut queues = self.queues.lock();
        if let Some(q) = queues.get(&to)
            && !q.is_closed()
        {
            return q.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = PeerWorker {
            me: self.me,
            to,
            cluster_id: self.cluster_id,
            peers: self.peers.clone(),
            cmd: self.cmd.lock().clone(),
        };
        self.rt.spawn(worker.run(rx));
        queues.insert(to, tx.clone());
        tx
    }
}

impl Transport for GrpcTransport {
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            if to == self.me {
                continue;
            }
            let _ = self.queue(to).send(m);
        }
    }

    fn update_peers(&self, members: &[Member]) {
        self.peers.update(members);
        let mut queues = self.queues.lock();
        queues.retain(|id, _| members.iter().any(|m| m.id == *id));
    }
}

struct PeerWorker {
    me: u64,
    to: u64,
    cluster_id: u64,
    peers: Arc<PeerClients>,
    cmd: Sender<Command>,
}

impl PeerWorker {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Message>) {
        let mut down_logged = false;
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < 1024 {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let snapshot = batch
                .iter()
                .any(|m| m.get_msg_type() == MessageType::MsgSnapshot);
            let encoded: Vec<Bytes> = batch
                .iter()
                .map(|m| {
                    Bytes::from(
                        m.write_to_bytes()
                            .expect("protobuf encoding to memory cannot fail"),
                    )
                })
                .collect();
            let req = RaftBatch {
                from: self.me,
                cluster_id: self.cluster_id,
                messages: encoded,
            };
            let ok = match self.peers.get(self.to) {
                Some(mut c) => match c.send(req).await {
                    Ok(_) => true,
                    Err(e) if e.message() == crate::node::MEMBER_REMOVED => {
                        let _ = self.cmd.send(Command::Removed);
                        return;
                    }
                    Err(e) => {
                        if !down_logged {
                            tracing::warn!(peer = %format!("{:x}", self.to), error = %e.message(), "lost TCP streaming connection with remote peer");
                            down_logged = true;
                        }
                        false
                    }
                },
                None => false,
            };
            if ok && down_logged {
                tracing::info!(peer = %format!("{:x}", self.to), "peer became active");
                down_logged = false;
            }
            if !ok {
                let _ = self.cmd.send(Command::Unreachable(self.to));
            }
            if snapshot {
                let _ = self.cmd.send(Command::SnapshotDone(self.to, ok));
            }
        }
    }
}
