//! The kubelet API on port 10250 (HTTPS), as upstream's `pkg/kubelet/server`:
//!
//! - authentication by client certificate (`authentication.x509.clientCAFile`) and
//!   bearer token (TokenReview), anonymous requests refused (401) unless
//!   `authentication.anonymous.enabled`;
//! - authorization by SubjectAccessReview on the node's subresources (`nodes/proxy`
//!   for pods, logs, exec; `nodes/metrics`, `nodes/stats`, `nodes/log`), as the
//!   `Webhook` mode (`AlwaysAllow` skips it);
//! - `/healthz`, `/pods`, `/configz`, `/metrics`, `/containerLogs/<ns>/<pod>/<c>`,
//!   and `/exec`, `/attach`, `/portForward`, which ask the runtime for a streaming
//!   URL (CRI Exec/Attach/PortForward) and splice the upgraded connection to it.

use std::sync::Arc;

use bytes::Bytes;
use client_base::delegated::Delegated;
use component_base::serve::PeerInfo;
use component_base::status::{Caller, Refusal};
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use k8s_openapi::api::authorization::v1::ResourceAttributes;
use k8s_openapi::jiff::Timestamp;

use crate::agent::Agent;
use crate::config::KubeletConfiguration;
use crate::cri::v1;
use crate::logs;

/// Response bodies.
pub type Body = BoxBody<Bytes, std::io::Error>;

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, content_type.parse().expect("valid"));
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", body.into())
}

/// The kubelet API's state.
pub struct Server {
    /// The pods.
    pub agent: Arc<Agent>,
    /// The configuration (for `/configz` and auth modes).
    pub cfg: KubeletConfiguration,
    /// The node's name (authorization's resource name).
    pub node_name: String,
    /// Authentication and authorization through the apiserver.
    pub delegated: Option<Delegated>,
    /// Every metric the kubelet exports.
    pub registry: prometheus::Registry,
}

/// The node subresource a path is authorized against, as upstream's
/// `NodeRequestAttributesGetter`.
fn subresource(path: &str) -> &'static str {
    if path.starts_with("/stats") {
        "stats"
    } else if path.starts_with("/metrics") {
        "metrics"
    } else if path.starts_with("/logs") {
        "log"
    } else if path.starts_with("/checkpoint") {
        "checkpoint"
    } else {
        "proxy"
    }
}

fn verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    }
}

impl Server {
    async fn admit(&self, req: &Request<Incoming>) -> Result<(), Response<Body>> {
        let path = req.uri().path();
        let certs = req
            .extensions()
            .get::<PeerInfo>()
            .map(|p| p.certs.clone())
            .unwrap_or_default();
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(d) = &self.delegated else {
            return Ok(());
        };
        let caller = Caller {
            method: req.method().as_str(),
            path,
            bearer,
            certs: &certs,
        };
        let Ok(user) = d.authenticate(&caller).await else {
            return Err(text(StatusCode::UNAUTHORIZED, "Unauthorized"));
        };
        if user.name == "system:anonymous" && !self.cfg.authentication.anonymous.enabled {
            return Err(text(StatusCode::UNAUTHORIZED, "Unauthorized"));
        }
        if self.cfg.authorization.mode == "AlwaysAllow" {
            return Ok(());
        }
        let verb = verb(req.method());
        let sub = subresource(path);
        let attrs = ResourceAttributes {
            verb: Some(verb.into()),
            group: Some(String::new()),
            version: Some("v1".into()),
            resource: Some("nodes".into()),
            subresource: Some(sub.into()),
            name: Some(self.node_name.clone()),
            ..Default::default()
        };
        let message = format!(
            "Forbidden (user={}, verb={verb}, resource=nodes, subresource={sub})",
            user.name
        );
        match d.authorize_resource(&user, attrs, message).await {
            Ok(()) => Ok(()),
            Err(Refusal::Forbidden(m)) => Err(text(StatusCode::FORBIDDEN, m)),
            Err(Refusal::Unauthorized) => Err(text(StatusCode::UNAUTHORIZED, "Unauthorized")),
        }
    }

    /// Serves one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if let Err(r) = self.admit(&req).await {
            return r;
        }
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["healthz"] | ["healthz", ..] => text(StatusCode::OK, "ok"),
            ["pods"] => {
                let items: Vec<serde_json::Value> = self
                    .agent
                    .pods()
                    .iter()
                    .map(|p| serde_json::to_value(p.as_ref()).unwrap_or_default())
                    .collect();
                let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
                full(StatusCode::OK, "application/json", list.to_string())
            }
            ["configz"] => {
                let body = serde_json::json!({ "kubeletconfig": self.cfg });
                full(StatusCode::OK, "application/json", body.to_string())
            }
            ["metrics"] => full(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                component_base::metrics::render(&self.registry),
            ),
            ["containerLogs", ns, pod, container] => {
                self.container_logs(ns, pod, container, &query).await
            }
            ["exec" | "attach", ns, pod, container]
            | ["exec" | "attach", ns, pod, _, container] => {
                let kind = parts[0];
                self.stream(req, kind, ns, pod, Some(container), &query)
                    .await
            }
            ["portForward", ns, pod] | ["portForward", ns, pod, _] => {
                self.stream(req, "portForward", ns, pod, None, &query).await
            }
            _ => text(StatusCode::NOT_FOUND, "404 page not found"),
        }
    }

    async fn container_logs(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        query: &str,
    ) -> Response<Body> {
        let opts = match logs::Options::from_query(query, Timestamp::now()) {
            Ok(o) => o,
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        };
        let previous = url::form_urlencoded::parse(query.as_bytes())
            .any(|(k, v)| k == "previous" && (v == "true" || v == "1"));
        let (path, running) = match self.agent.log_path(ns, pod, container, previous).await {
            Ok(x) => x,
            Err(e) => return text(StatusCode::NOT_FOUND, e),
        };
        let agent = self.agent.clone();
        let (ns, pod, container) = (ns.to_owned(), pod.to_owned(), container.to_owned());
        let follow_running = move || {
            let agent = agent.clone();
            let (ns, pod, container) = (ns.clone(), pod.clone(), container.clone());
            async move {
                running
                    && match agent.container_id(&ns, &pod, Some(&container)).await {
                        Ok((id, _)) => agent.still_running(&id).await,
                        Err(_) => false,
                    }
            }
        };
        let s = logs::stream(path, opts, follow_running).map(|r| r.map(Frame::data));
        let mut resp = Response::new(BodyExt::boxed(StreamBody::new(s)));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, "text/plain".parse().expect("valid"));
        resp
    }

    /// exec, attach, portForward: the runtime's streaming URL, then the upgraded
    /// connection spliced to it.
    async fn stream(
        &self,
        mut req: Request<Incoming>,
        kind: &str,
        ns: &str,
        pod: &str,
        container: Option<&str>,
        query: &str,
    ) -> Response<Body> {
        let (id, sandbox) = match self.agent.container_id(ns, pod, container).await {
            Ok(x) => x,
            Err(e) => return text(StatusCode::NOT_FOUND, e),
        };
        let q: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let flag = |name: &str| {
            q.iter()
                .any(|(k, v)| k == name && (v == "1" || v == "true"))
        };
        let command: Vec<String> = q
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect();
        let rt = self.agent.runtime();
        let url = match kind {
            "exec" => {
                rt.exec(v1::ExecRequest {
                    container_id: id,
                    cmd: command,
                    tty: flag("tty"),
                    stdin: flag("input") || flag("stdin"),
                    stdout: flag("output") || flag("stdout"),
                    stderr: flag("error") || flag("stderr"),
                })
                .await
            }
            "attach" => {
                rt.attach(v1::AttachRequest {
                    container_id: id,
                    stdin: flag("input") || flag("stdin"),
                    tty: flag("tty"),
                    stdout: flag("output") || flag("stdout"),
                    stderr: flag("error") || flag("stderr"),
                })
                .await
            }
            _ => {
                let port: Vec<i32> = q
                    .iter()
                    .filter(|(k, _)| k == "port" || k == "ports")
                    .flat_map(|(_, v)| {
                        v.split(',')
                            .filter_map(|p| p.trim().parse().ok())
                            .collect::<Vec<_>>()
                    })
                    .collect();
                rt.port_forward(v1::PortForwardRequest {
                    pod_sandbox_id: sandbox,
                    port,
                })
                .await
            }
        };
        let url = match url {
            Ok(u) => u,
            Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        match splice(&url, req, on_upgrade).await {
            Ok(r) => r,
            Err(e) => text(
                StatusCode::BAD_GATEWAY,
                format!("error dialing backend: {e}"),
            ),
        }
    }
}

/// Forwards the upgrade request to the runtime's streaming server at `url` and,
/// once both sides switched protocols, copies bytes both ways.
async fn splice(
    url: &str,
    req: Request<Incoming>,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Result<Response<Body>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("no host in the streaming URL")?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(header::HOST, format!("{host}:{port}"));
    for (k, v) in req.headers() {
        if k != header::HOST && k != header::AUTHORIZATION {
            out = out.header(k, v);
        }
    }
    let out = out
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let mut resp = sender.send_request(out).await.map_err(|e| e.to_string())?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Ok(full(status, "text/plain", body));
    }
    let mut client_resp = Response::new(
        http_body_util::Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    *client_resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (k, v) in resp.headers() {
        client_resp.headers_mut().append(k.clone(), v.clone());
    }
    let backend = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, backend) = match tokio::try_join!(on_upgrade, backend) {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut backend = hyper_util::rt::TokioIo::new(backend);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
    });
    Ok(client_resp)
}
