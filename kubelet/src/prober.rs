//! Container probes, as upstream's `pkg/kubelet/prober`: one worker per probe of a
//! running container instance (startup, then liveness and readiness), timed by
//! `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`,
//! `successThreshold`/`failureThreshold`, over exec (CRI ExecSync), httpGet and
//! tcpSocket. Results are kept per container and wake the pod's worker when they
//! change; a failed liveness or startup probe has the worker kill the container
//! (`Container c failed liveness probe, will be restarted`). Failures are recorded as
//! `Unhealthy` events in upstream's words.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use parking_lot::Mutex;

use crate::cri;

/// The kind of a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `startupProbe`.
    Startup,
    /// `livenessProbe`.
    Liveness,
    /// `readinessProbe`.
    Readiness,
}

impl Kind {
    /// Upstream's capitalized name (`Liveness probe failed: ...`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }

    fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Kind::Startup => c.startup_probe.as_ref(),
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
        }
    }
}

/// One probe's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Success,
    /// It failed, with upstream's message (`HTTP probe failed with statuscode: 500`).
    Failure(String),
}

/// Where probes reach a container: its pod's IP and its exec runtime.
#[derive(Clone)]
pub struct Target {
    /// The CRI container ID.
    pub container_id: String,
    /// The pod's IP (httpGet and tcpSocket without a host).
    pub pod_ip: String,
}

/// The named or numbered port of a probe, resolved against the container's ports.
fn port(p: &IntOrString, c: &Container) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port number: {n}")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .ok_or_else(|| format!("couldn't find port: {name} in {}", c.name)),
    }
}

/// Runs `probe` once against `t`.
pub async fn run(runtime: &dyn cri::Runtime, probe: &Probe, c: &Container, t: &Target) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(e) = &probe.exec {
        let cmd = e.command.clone().unwrap_or_default();
        return match runtime.exec_sync(&t.container_id, cmd, timeout).await {
            Ok(r) if r.exit_code == 0 => Outcome::Success,
            Ok(r) => {
                let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
                out.push_str(&String::from_utf8_lossy(&r.stderr));
                Outcome::Failure(out.trim_end().to_owned())
            }
            Err(e) => Outcome::Failure(format!("command timed out or failed: {e}")),
        };
    }
    if let Some(h) = &probe.http_get {
        let port = match port(&h.port, c) {
            Ok(p) => p,
            Err(e) => return Outcome::Failure(e),
        };
        let host = h
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| t.pod_ip.clone());
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let scheme = h.scheme.as_deref().unwrap_or("HTTP");
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|hh| (hh.name.clone(), hh.value.clone()))
            .collect();
        return match tokio::time::timeout(timeout, http_get(scheme, &host, port, &path, &headers))
            .await
        {
            Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
            Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
            Ok(Err(e)) => Outcome::Failure(format!(
                "Get \"{}://{host}:{port}{path}\": {e}",
                scheme.to_lowercase()
            )),
            Err(_) => Outcome::Failure(format!(
                "Get \"{}://{host}:{port}{path}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                scheme.to_lowercase()
            )),
        };
    }
    if let Some(s) = &probe.tcp_socket {
        let port = match port(&s.port, c) {
            Ok(p) => p,
            Err(e) => return Outcome::Failure(e),
        };
        let host = s
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| t.pod_ip.clone());
        return match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(e)) => {
                Outcome::Failure(format!("dial tcp {host}:{port}: connect: {}", go_errno(&e)))
            }
            Err(_) => Outcome::Failure(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    // gRPC probes are not supported yet: upstream reports unknown handlers this way.
    Outcome::Failure("missing probe handler".into())
}

/// Go's wording of a connect error (`connection refused`).
fn go_errno(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

/// A plain HTTP GET (HTTPS is not verified, as upstream's prober): the status code.
async fn http_get(
    scheme: &str,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<u16, String> {
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("dial tcp {host}:{port}: connect: {}", go_errno(&e)))?;
    let mut req = http::Request::get(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::USER_AGENT, "kube-probe/1.33")
        .header(http::header::ACCEPT, "*/*");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let code = if scheme.eq_ignore_ascii_case("HTTPS") {
        let cfg = component_base::tls::unverified_client_config();
        let name = rustls_name(host)?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        send(hyper_util::rt::TokioIo::new(tls), req).await?
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), req).await?
    };
    Ok(code)
}

fn rustls_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
    rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())
}

async fn send<T>(
    io: T,
    req: http::Request<http_body_util::Empty<bytes::Bytes>>,
) -> Result<u16, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    Ok(resp.status().as_u16())
}

/// The latest results of a container's probes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The container instance the results are for.
    pub container_id: String,
    /// Readiness: `None` before the first result (not ready), or without a probe.
    pub ready: Option<bool>,
    /// Startup: whether the startup probe passed (`None` without one).
    pub started: Option<bool>,
    /// Set when liveness or startup failed past its threshold: kill and restart.
    pub kill: Option<String>,
}

/// A probe worker: the container instance it probes, and its task.
type Worker = (String, tokio::task::JoinHandle<()>);

/// Probe workers and their results, by pod UID and container name.
#[derive(Default)]
pub struct Manager {
    states: Mutex<HashMap<(String, String), State>>,
    workers: Mutex<HashMap<(String, String, Kind), Worker>>,
}

/// What a probe worker reports to.
pub trait Sink: Send + Sync + 'static {
    /// The results of `uid`'s container changed.
    fn changed(&self, uid: &str);
    /// A probe failed: record `Unhealthy`.
    fn unhealthy(&self, uid: &str, container: &str, message: String);
}

impl Manager {
    /// The results for one container, if probed.
    pub fn state(&self, uid: &str, container: &str) -> Option<State> {
        self.states
            .lock()
            .get(&(uid.to_owned(), container.to_owned()))
            .cloned()
    }

    /// Makes sure every probe of `c` (running as `target`) has a worker for this
    /// instance; workers of older instances stop.
    pub fn ensure(
        self: &Arc<Self>,
        uid: &str,
        c: &Container,
        target: Target,
        runtime: Arc<dyn cri::Runtime>,
        sink: Arc<dyn Sink>,
    ) {
        let key = (uid.to_owned(), c.name.clone());
        {
            let mut states = self.states.lock();
            let s = states.entry(key.clone()).or_default();
            if s.container_id != target.container_id {
                *s = State {
                    container_id: target.container_id.clone(),
                    ready: c.readiness_probe.as_ref().map(|_| false),
                    started: c.startup_probe.as_ref().map(|_| false),
                    kill: None,
                };
            }
        }
        for kind in [Kind::Startup, Kind::Liveness, Kind::Readiness] {
            let Some(probe) = kind.of(c).cloned() else {
                continue;
            };
            let wkey = (uid.to_owned(), c.name.clone(), kind);
            let mut workers = self.workers.lock();
            if workers
                .get(&wkey)
                .is_some_and(|(id, h)| id == &target.container_id && !h.is_finished())
            {
                continue;
            }
            if let Some((_, h)) = workers.remove(&wkey) {
                h.abort();
            }
            let this = self.clone();
            let (c, t, rt, sink) = (c.clone(), target.clone(), runtime.clone(), sink.clone());
            let uid = uid.to_owned();
            let h =
                tokio::spawn(async move { this.worker(uid, kind, probe, c, t, rt, sink).await });
            workers.insert(wkey, (target.container_id.clone(), h));
        }
    }

    /// Stops every worker of a pod and forgets its results.
    pub fn forget_pod(&self, uid: &str) {
        self.workers.lock().retain(|(u, _, _), (_, h)| {
            if u == uid {
                h.abort();
                false
            } else {
                true
            }
        });
        self.states.lock().retain(|(u, _), _| u != uid);
    }

    #[allow(clippy::too_many_arguments)]
    async fn worker(
        self: Arc<Self>,
        uid: String,
        kind: Kind,
        probe: Probe,
        c: Container,
        t: Target,
        runtime: Arc<dyn cri::Runtime>,
        sink: Arc<dyn Sink>,
    ) {
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
        let key = (uid.clone(), c.name.clone());
        tokio::time::sleep(Duration::from_secs(
            probe.initial_delay_seconds.unwrap_or(0).max(0) as u64,
        ))
        .await;
        let (mut successes, mut failures) = (0i32, 0i32);
        loop {
            // Liveness and readiness wait for the startup probe to pass.
            let started = self.states.lock().get(&key).and_then(|s| s.started);
            if kind != Kind::Startup && started == Some(false) {
                tokio::time::sleep(period).await;
                continue;
            }
            let outcome = run(runtime.as_ref(), &probe, &c, &t).await;
            let mut changed = false;
            match outcome {
                Outcome::Success => {
                    failures = 0;
                    successes += 1;
                    if successes >= success_threshold {
                        let mut states = self.states.lock();
                        if let Some(s) = states.get_mut(&key) {
                            match kind {
                                Kind::Readiness if s.ready != Some(true) => {
                                    s.ready = Some(true);
                                    changed = true;
                                }
                                Kind::Startup if s.started != Some(true) => {
                                    s.started = Some(true);
                                    changed = true;
                                }
                                _ => {}
                            }
                        }
                    }
                    if kind == Kind::Startup && successes >= success_threshold {
                        if changed {
                            sink.changed(&uid);
                        }
                        return;
                    }
                }
                Outcome::Failure(msg) => {
                    successes = 0;
                    failures += 1;
                    sink.unhealthy(
                        &uid,
                        &c.name,
                        format!("{} probe failed: {msg}", kind.name()),
                    );
                    if failures >= failure_threshold {
                        let mut states = self.states.lock();
                        if let Some(s) = states.get_mut(&key) {
                            match kind {
                                Kind::Readiness if s.ready != Some(false) => {
                                    s.ready = Some(false);
                                    changed = true;
                                }
                                Kind::Liveness | Kind::Startup if s.kill.is_none() => {
                                    s.kill = Some(format!(
                                        "Container {} failed {} probe, will be restarted",
                                        c.name,
                                        kind.name().to_lowercase()
                                    ));
                                    changed = true;
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            if changed {
                sink.changed(&uid);
            }
            tokio::time::sleep(period).await;
        }
    }
}
