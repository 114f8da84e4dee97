//! [`TestKubelet`], a kubelet-side test server for the apiserver's kubelet proxying
//! (logs, exec, attach, port-forward), and [`KubeletCluster`], an apiserver with one
//! behind Node `node1`. The streaming sessions live in the submodules.

mod exec;
mod port_forward;
mod upgrade;

use std::time::Duration;

use crate::apiserver::ApiServer;
use crate::pki::Pki;
use exec::websocket_exec;
use port_forward::port_forward;

/// A kubelet-side test server for the apiserver's kubelet proxying: HTTPS with a
/// client certificate required (signed by the test CA), serving the kubelet's
/// `/containerLogs/<ns>/<pod>/<container>` (five numbered lines; `tailLines`,
/// `timestamps`; `follow` keeps sending) and echoing every other request as
/// `kubelet: <METHOD> <path?query>`. `/exec` upgrades to WebSocket
/// (`v5.channel.k8s.io` or `v4.channel.k8s.io`) and runs `echo <args>` (stdout on
/// channel 1) or `exit <code>`, ending with the Status on channel 3. Real kubelets
/// arrive with the kubelet crate.
pub struct TestKubelet {
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The requests it received, as `METHOD path?query client-CN`.
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TestKubelet {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl TestKubelet {
    /// Starts one serving `pki`'s kubelet certificate and requiring client
    /// certificates from `pki`'s CA.
    pub fn start(pki: &Pki) -> TestKubelet {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls = component_base::tls::server_config(
            &pki.kubelet.0,
            &pki.kubelet.1,
            Some(&pki.ca),
            true,
            &[b"http/1.1"],
        )
        .expect("kubelet tls");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let log = requests.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                tokio::pin!(stop_rx);
                loop {
                    let tcp = tokio::select! {
                        r = listener.accept() => match r { Ok((t, _)) => t, Err(_) => continue },
                        _ = &mut stop_rx => return,
                    };
                    let acceptor = acceptor.clone();
                    let log = log.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let cn = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| client_cn(c.as_ref()))
                            .unwrap_or_default();
                        let svc = hyper::service::service_fn(
                            move |mut req: http::Request<hyper::body::Incoming>| {
                                let log = log.clone();
                                let cn = cn.clone();
                                async move {
                                    let pq = req
                                        .uri()
                                        .path_and_query()
                                        .map(|p| p.to_string())
                                        .unwrap_or_default();
                                    // Upgrades are logged with their protocol.
                                    let upgrade = req
                                        .headers()
                                        .get(http::header::UPGRADE)
                                        .and_then(|v| v.to_str().ok())
                                        .map(|u| {
                                            let protocols = req
                                                .headers()
                                                .get("sec-websocket-protocol")
                                                .and_then(|v| v.to_str().ok())
                                                .map(|p| {
                                                    format!(" protocols={}", p.replace(' ', ""))
                                                })
                                                .unwrap_or_default();
                                            format!(" upgrade={u}{protocols}")
                                        })
                                        .unwrap_or_default();
                                    log.lock()
                                        .expect("log")
                                        .push(format!("{} {pq}{upgrade} {cn}", req.method()));
                                    if req.uri().path().starts_with("/portForward/")
                                        && req.headers().contains_key(http::header::UPGRADE)
                                    {
                                        return Ok::<_, std::convert::Infallible>(port_forward(
                                            &mut req,
                                        ));
                                    }
                                    if (req.uri().path().starts_with("/exec/")
                                        || req.uri().path().starts_with("/attach/"))
                                        && req.headers().contains_key(http::header::UPGRADE)
                                    {
                                        return Ok::<_, std::convert::Infallible>(websocket_exec(
                                            &mut req, &pq,
                                        ));
                                    }
                                    Ok::<_, std::convert::Infallible>(kubelet_reply(
                                        req.method().as_str(),
                                        &pq,
                                    ))
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                            .with_upgrades()
                            .await;
                    });
                }
            });
        });
        TestKubelet {
            port,
            requests,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Registers Node `name` on `api` with this kubelet's address (InternalIP
    /// 127.0.0.1) and port. Status is the status subresource's: it is written after
    /// the create, as a kubelet does.
    pub fn add_node(&self, api: &ApiServer, name: &str) {
        let k = "kubectl.1.33";
        api.ok_stdin(
            k,
            &["create", "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n"
            )),
        );
        let status = format!(
            r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{}}}}}}}}}"#,
            self.port
        );
        api.ok(
            k,
            &[
                "patch",
                "node",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &status,
            ],
        );
    }
}

/// An apiserver with a [`TestKubelet`] behind Node `node1`: the apiserver presents a
/// client certificate from the same generated PKI, and verifies the kubelet with it.
pub struct KubeletCluster {
    /// The apiserver.
    pub api: ApiServer,
    /// The kubelet-side test server.
    pub kubelet: TestKubelet,
    _pki_dir: tempfile::TempDir,
}

impl KubeletCluster {
    /// Generates the PKI, starts both, and registers `node1`.
    pub fn start() -> KubeletCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::generate(dir.path());
        let kubelet = TestKubelet::start(&pki);
        let flags = pki.apiserver_flags();
        let api = ApiServer::start_with(&flags.iter().map(String::as_str).collect::<Vec<_>>());
        kubelet.add_node(&api, "node1");
        KubeletCluster {
            api,
            kubelet,
            _pki_dir: dir,
        }
    }
}

/// The subject CN of a DER certificate, found by its OID (2.5.4.3) followed by a
/// string; enough for the test certificates this harness makes.
fn client_cn(der: &[u8]) -> String {
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    der.windows(oid.len())
        .rposition(|w| w == oid)
        .and_then(|i| {
            let len = *der.get(i + oid.len() + 1)? as usize;
            let start = i + oid.len() + 2;
            der.get(start..start + len)
        })
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

type KubeletBody = http_body_util::StreamBody<
    futures::stream::BoxStream<
        'static,
        Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
    >,
>;

fn kubelet_reply(method: &str, path_and_query: &str) -> http::Response<KubeletBody> {
    use futures::StreamExt;
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let param = |k: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .map(str::to_owned)
    };
    let frame = |s: String| Ok(hyper::body::Frame::data(bytes::Bytes::from(s)));
    let body: futures::stream::BoxStream<'static, _> = if path.starts_with("/containerLogs/") {
        let container = path.rsplit('/').next().unwrap_or("").to_owned();
        let stamp = param("timestamps").is_some();
        let line = move |i: usize| {
            let text = format!("{container} line {i}\n");
            if stamp {
                format!("2026-11-23T00:00:0{i}.000000000Z {text}")
            } else {
                text
            }
        };
        let tail: usize = param("tailLines").and_then(|t| t.parse().ok()).unwrap_or(5);
        let first: Vec<_> = (1..=5)
            .skip(5usize.saturating_sub(tail))
            .map(|i| frame(line(i)))
            .collect();
        if param("follow").is_some() {
            let more = futures::stream::unfold(6usize, move |i| async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                (i < 600).then(|| {
                    (
                        Ok(hyper::body::Frame::data(bytes::Bytes::from(format!(
                            "tick {i}\n"
                        )))),
                        i + 1,
                    )
                })
            });
            futures::stream::iter(first).chain(more).boxed()
        } else {
            futures::stream::iter(first).boxed()
        }
    } else {
        futures::stream::iter(vec![frame(format!("kubelet: {method} {path_and_query}"))]).boxed()
    };
    http::Response::new(http_body_util::StreamBody::new(body))
}
