//! Test support: real `keelson-store` processes (and real etcd, for side-by-side
//! checks) on loopback ports, driven by the real `etcdctl`.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Which server binary a member runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// keelson-store.
    Keelson,
    /// Debian's etcd (the reference).
    Etcd,
}

/// One member process.
pub struct MemberProc {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data_dir: PathBuf,
    pub child: Option<Child>,
    pub log: PathBuf,
    pub extra: Vec<String>,
    pub flavor: Flavor,
    pub initial_cluster: String,
    pub state: String,
    /// `http` or `https` for client and peer URLs.
    pub scheme: &'static str,
    /// If set, peers reach this member through a proxy on this port (its advertised
    /// peer URL), while it listens on `peer_port`.
    pub proxy_port: Option<u16>,
}

impl MemberProc {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.peer_port)
    }

    /// The peer URL other members use: the proxy's, if there is one.
    pub fn advertised_peer_url(&self) -> String {
        match self.proxy_port {
            Some(p) => format!("{}://127.0.0.1:{p}", self.scheme),
            None => self.peer_url(),
        }
    }

    fn command(&self) -> Command {
        let bin = match self.flavor {
            Flavor::Keelson => PathBuf::from(env!("CARGO_BIN_EXE_keelson-store")),
            Flavor::Etcd => PathBuf::from("etcd"),
        };
        let mut c = Command::new(bin);
        let client = format!("{}://127.0.0.1:{}", self.scheme, self.client_port);
        c.args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args(["--listen-peer-urls", &self.peer_url()])
            .args(["--initial-advertise-peer-urls", &self.advertised_peer_url()])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", &self.state])
            .args(["--initial-cluster-token", "keelson-test"])
            .args(&self.extra);
        c
    }

    /// Starts (or restarts) the process.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = self
            .command()
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn member");
        self.child = Some(child);
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for MemberProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A cluster of member processes in a temp dir.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<MemberProc>,
    pub flavor: Flavor,
}

impl Cluster {
    /// Starts `n` members and waits until every one is healthy.
    pub fn start(n: usize, flavor: Flavor, extra: &[&str]) -> Cluster {
        Self::start_with(n, flavor, extra, false)
    }

    /// Like [`Cluster::start`]; with `proxied`, every member's peer traffic goes through
    /// a proxy port (see [`Proxy`]), so tests can partition members.
    pub fn start_with(n: usize, flavor: Flavor, extra: &[&str], proxied: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut members: Vec<MemberProc> = (0..n)
            .map(|i| MemberProc {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.path().join(format!("m{i}")),
                child: None,
                log: dir.path().join(format!("m{i}.log")),
                extra: extra.iter().map(|s| s.to_string()).collect(),
                flavor,
                initial_cluster: String::new(),
                state: "new".into(),
                scheme: "http",
                proxy_port: proxied.then(free_port),
            })
            .collect();
        let ic = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.advertised_peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial_cluster = ic.clone();
        }
        let mut c = Cluster {
            dir,
            members,
            flavor,
        };
        // With proxies, the caller starts them first and then calls `start_all`.
        if !proxied {
            c.start_all();
        }
        c
    }

    /// Starts every member and waits until each is healthy.
    pub fn start_all(&mut self) {
        for m in &mut self.members {
            m.start();
        }
        self.wait_healthy(Duration::from_secs(30));
    }

    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.endpoint())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every running member answers `endpoint health`.
    pub fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            loop {
                let out = etcdctl(
                    &m.endpoint(),
                    &["endpoint", "health", "--command-timeout=2s"],
                );
                if out.status.success() {
                    break;
                }
                if Instant::now() > deadline {
                    panic!(
                        "member {} not healthy: {}\n--- log ---\n{}",
                        m.name,
                        text(&out),
                        tail(&m.log_text(), 40)
                    );
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// The index of the current leader, from `endpoint status`.
    pub fn leader(&self) -> Option<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let out = etcdctl(
                &m.endpoint(),
                &["endpoint", "status", "-w", "json", "--command-timeout=2s"],
            );
            if !out.status.success() {
                continue;
            }
            let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
                Ok(v) => v,
                Err(_) => continue,
            };
            let st = &v[0]["Status"];
            let leader = st["leader"].as_u64().unwrap_or(0);
            let me = st["header"]["member_id"].as_u64().unwrap_or(0);
            if leader != 0 && leader == me {
                return Some(i);
            }
        }
        None
    }

    /// Waits for a leader.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader elected");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs the real etcdctl (API v3) against `endpoints`.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> Output {
    etcdctl_in(endpoints, args, None)
}

/// Runs etcdctl with optional stdin.
pub fn etcdctl_in(endpoints: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut c = Command::new("etcdctl");
    c.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = c
        .spawn()
        .expect("etcdctl is installed (apt-get install etcd-client)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("etcdctl output")
}

/// stdout and stderr, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// stdout of a command that must succeed.
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "etcdctl failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The `Error: ...` line of a command that must fail.
pub fn err(o: Output) -> String {
    assert!(
        !o.status.success(),
        "etcdctl unexpectedly succeeded: {}",
        text(&o)
    );
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .find(|l| l.starts_with("Error:"))
        .unwrap_or_default()
        .to_owned()
}

/// Whether the real etcd binary is available.
pub fn have_etcd() -> bool {
    Command::new("etcd").arg("--version").output().is_ok()
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// A TCP proxy in front of a member's peer port. `block` drops every connection and
/// refuses new ones until `unblock`: the member is cut off from inbound peer traffic.
pub struct Proxy {
    blocked: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Proxy {
    /// Forwards `listen` to `target` on the current tokio runtime.
    pub async fn start(listen: u16, target: u16) -> Proxy {
        let (tx, _) = tokio::sync::watch::channel(false);
        let tx = std::sync::Arc::new(tx);
        let l = tokio::net::TcpListener::bind(("127.0.0.1", listen))
            .await
            .expect("proxy bind");
        let blocked = tx.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = l.accept().await else {
                    continue;
                };
                if *blocked.borrow() {
                    continue;
                }
                let mut rx = blocked.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|b| *b) => {}
                    }
                });
            }
        });
        Proxy { blocked: tx }
    }

    /// Cuts the member off.
    pub fn block(&self) {
        self.blocked.send_replace(true);
    }

    /// Heals the cut.
    pub fn unblock(&self) {
        self.blocked.send_replace(false);
    }
}
