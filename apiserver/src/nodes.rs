//! Requests upstream proxies to a node's kubelet: `pods/log` and `nodes/proxy`
//! stream through here, over TLS with the apiserver's kubelet client certificate
//! (`--kubelet-client-certificate`, `--kubelet-client-key`), verifying the kubelet
//! against `--kubelet-certificate-authority` when given (upstream skips verification
//! without it). The node's address comes from `status.addresses` in
//! `--kubelet-preferred-address-types` order, the port from
//! `status.daemonEndpoints.kubeletEndpoint`.
//!
//! exec, attach and port-forward are connection upgrades (WebSocket
//! `v5.channel.k8s.io` and older, or SPDY): the request goes to the kubelet's
//! `/exec`, `/attach` or `/portForward` with its upgrade headers, and once the kubelet
//! answers 101 the two connections are spliced byte for byte, as upstream's
//! upgrade-aware proxy does; the streaming protocol runs between client and kubelet.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::Value;

use crate::catalog::catalog;
use crate::error::ApiError;
use crate::handlers::Ctx;

/// The kubelet's port when a Node does not report one.
const DEFAULT_KUBELET_PORT: u16 = 10250;

/// How the apiserver reaches kubelets.
#[derive(Clone)]
pub struct KubeletClient {
    tls: Arc<ClientConfig>,
    preferred: Vec<String>,
    timeout: Duration,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient")
            .field("preferred", &self.preferred)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl KubeletClient {
    /// From the `--kubelet-*` flags.
    pub fn new(
        ca: Option<&std::path::Path>,
        cert: Option<&std::path::Path>,
        key: Option<&std::path::Path>,
        preferred: &[String],
        timeout: Duration,
    ) -> Result<Self, component_base::tls::Error> {
        let mut tls = match ca {
            Some(_) => (*component_base::tls::client_config(ca, cert, key)?).clone(),
            // Upstream does not verify kubelets without a CA.
            None => {
                let b = ClientConfig::builder()
                    .dangerous()
                    .with_custom_certificate_verifier(component_base::tls::AnyServerCert::new());
                match (cert, key) {
                    (Some(c), Some(k)) => b.with_client_auth_cert(
                        component_base::tls::load_certs(c)?,
                        component_base::tls::load_key(k)?,
                    )?,
                    _ => b.with_no_client_auth(),
                }
            }
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient {
            tls: Arc::new(tls),
            preferred: preferred.to_vec(),
            timeout,
        })
    }

    /// The node's kubelet `host:port`, as upstream's `GetPreferredNodeAddress`.
    fn location(&self, node: &Value) -> Result<(String, u16), ApiError> {
        let addrs = node
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let host = self.preferred.iter().find_map(|ty| {
            addrs
                .iter()
                .find(|a| a["type"].as_str() == Some(ty.as_str()))
                .and_then(|a| a["address"].as_str())
                .map(str::to_owned)
                .or_else(|| {
                    (ty == "Hostname")
                        .then(|| node.pointer("/metadata/labels/kubernetes.io~1hostname"))
                        .flatten()
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
        });
        let Some(host) = host else {
            let known: Vec<String> = addrs
                .iter()
                .map(|x| {
                    format!(
                        "{{{} {}}}",
                        x["type"].as_str().unwrap_or(""),
                        x["address"].as_str().unwrap_or("")
                    )
                })
                .collect();
            return Err(ApiError::Internal(format!(
                "no preferred addresses found; known addresses: [{}]",
                known.join(" ")
            )));
        };
        let port = node
            .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .unwrap_or(DEFAULT_KUBELET_PORT);
        Ok((host, port))
    }

    /// Opens an HTTP/1.1 connection over TLS to the kubelet at `host:port` and sends
    /// `req` (upgrades allowed).
    async fn request(
        &self,
        host: &str,
        port: u16,
        req: http::request::Builder,
        body: Bytes,
    ) -> Result<Response<hyper::body::Incoming>, ApiError> {
        let unreachable =
            |e: String| ApiError::ServiceUnavailable(format!("error trying to reach service: {e}"));
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let tcp = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(&addr))
            .await
            .map_err(|_| unreachable(format!("dial tcp {addr}: i/o timeout")))?
            .map_err(|e| unreachable(format!("dial tcp {addr}: connect: {e}")))?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| unreachable(format!("invalid kubelet host {host}: {e}")))?;
        let tls = tokio::time::timeout(
            self.timeout,
            tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| unreachable("net/http: TLS handshake timeout".into()))?
        .map_err(|e| unreachable(format!("tls: {e}")))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let req = req
            .header(header::HOST, addr.as_str())
            .body(http_body_util::Full::new(body))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(e.to_string()))
    }

    /// Sends `method path_and_query` to the kubelet at `host:port` and returns its
    /// response, body streamed.
    async fn send(
        &self,
        host: &str,
        port: u16,
        method: &str,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Response<Body>, ApiError> {
        let mut req = Request::builder().method(method).uri(path_and_query);
        if let Some(ct) = content_type.filter(|c| !c.is_empty()) {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let resp = self.request(host, port, req, body).await?;
        let (parts, incoming) = resp.into_parts();
        let mut out = Response::new(Body::new(incoming));
        *out.status_mut() = parts.status;
        for (k, v) in &parts.headers {
            if !is_hop_by_hop(k.as_str()) {
                out.headers_mut().append(k.clone(), v.clone());
            }
        }
        Ok(out)
    }
}

fn is_hop_by_hop(h: &str) -> bool {
    matches!(
        h,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

async fn node(ctx: &Ctx<'_>, name: &str) -> Result<Value, ApiError> {
    let nodes = catalog().get("", "v1", "nodes").expect("nodes");
    ctx.api.registry.get(nodes, "", name).await
}

fn container_names(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a pod request names, or the only one; upstream's errors otherwise.
fn pick_container(pod: &Value, name: &str, requested: Option<&str>) -> Result<String, ApiError> {
    let containers = container_names(pod, "containers");
    let inits = container_names(pod, "initContainers");
    let ephemeral = container_names(pod, "ephemeralContainers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if !containers
                .iter()
                .chain(&inits)
                .chain(&ephemeral)
                .any(|x| x == c)
            {
                return Err(ApiError::BadRequest(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            Ok(c.to_owned())
        }
        None => match containers.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(ApiError::BadRequest(format!(
                "pod {name} does not have a container"
            ))),
            _ => {
                let mut m = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                );
                if !inits.is_empty() {
                    m.push_str(&format!(
                        " or one of the init containers: [{}]",
                        inits.join(" ")
                    ));
                }
                Err(ApiError::BadRequest(m))
            }
        },
    }
}

/// Headers of an upgrade request the kubelet needs, as upstream's proxy forwards.
const UPGRADE_HEADERS: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
    "user-agent",
];

/// exec, attach, portforward: the upgrade forwarded to the kubelet, then spliced.
pub async fn upgrade(
    ctx: &Ctx<'_>,
    method: &str,
    headers: &http::HeaderMap,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Result<Response<Body>, ApiError> {
    let name = ctx.info.name.clone().unwrap_or_default();
    let ns = ctx.info.namespace.clone().unwrap_or_default();
    let sub = ctx.info.subresource.clone().unwrap_or_default();
    let pods = catalog().get("", "v1", "pods").expect("pods");
    let pod = ctx.api.registry.get(pods, &ns, &name).await?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if node_name.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let base = match sub.as_str() {
        "portforward" => format!("/portForward/{ns}/{name}"),
        "exec" | "attach" => {
            let c = pick_container(&pod, &name, ctx.query.get("container"))?;
            format!("/{sub}/{ns}/{name}/{c}")
        }
        _ => return Err(ApiError::NoRoute),
    };
    let q = {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, vs) in &ctx.query.0 {
            if k != "container" {
                for v in vs {
                    q.append_pair(k, v);
                }
            }
        }
        q.finish()
    };
    let path = if q.is_empty() {
        base
    } else {
        format!("{base}?{q}")
    };
    let node = node(ctx, &node_name).await?;
    let kubelet = &ctx.api.config.kubelet;
    let (host, port) = kubelet.location(&node)?;
    let mut req = Request::builder().method(method).uri(path);
    for h in UPGRADE_HEADERS {
        for v in headers.get_all(*h) {
            req = req.header(*h, v.clone());
        }
    }
    let mut resp = kubelet.request(&host, port, req, Bytes::new()).await?;
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let (parts, incoming) = resp.into_parts();
        let mut out = Response::new(Body::new(incoming));
        *out.status_mut() = parts.status;
        if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
            out.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
        }
        return Ok(out);
    }
    let mut out = Response::new(Body::empty());
    *out.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    for (k, v) in resp.headers() {
        out.headers_mut().append(k.clone(), v.clone());
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
    Ok(out)
}

/// `pods/log` and `nodes/proxy`: streamed from the kubelet.
pub async fn proxy(
    ctx: &Ctx<'_>,
    method: &str,
    body: &Bytes,
    content_type: &str,
) -> Result<Response<Body>, ApiError> {
    let kubelet = &ctx.api.config.kubelet;
    let name = ctx.info.name.clone().unwrap_or_default();
    match (ctx.res.kind, ctx.info.subresource.as_deref()) {
        ("Pod", Some("log")) => {
            let ns = ctx.info.namespace.clone().unwrap_or_default();
            let pods = catalog().get("", "v1", "pods").expect("pods");
            let pod = ctx.api.registry.get(pods, &ns, &name).await?;
            let container = pick_container(&pod, &name, ctx.query.get("container"))?;
            let node_name = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if node_name.is_empty() {
                // Not scheduled: no logs yet, as upstream's empty location.
                return Ok(Response::new(Body::empty()));
            }
            let q = log_query(ctx)?;
            let path = format!(
                "/containerLogs/{ns}/{name}/{container}{}{q}",
                if q.is_empty() { "" } else { "?" }
            );
            let node = node(ctx, node_name).await?;
            let (host, port) = kubelet.location(&node)?;
            let mut resp = kubelet
                .send(&host, port, "GET", &path, None, Bytes::new())
                .await?;
            if resp.status().is_success() {
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            }
            Ok(resp)
        }
        ("Node", Some("proxy")) => {
            let node = node(ctx, &name).await?;
            let (host, port) = kubelet.location(&node)?;
            let path = proxy_path(ctx);
            kubelet
                .send(&host, port, method, &path, Some(content_type), body.clone())
                .await
        }
        _ => Err(no_kubelet(ctx).await),
    }
}

/// The kubelet's query for a `pods/log` request (PodLogOptions, validated).
fn log_query(ctx: &Ctx<'_>) -> Result<String, ApiError> {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for flag in ["follow", "previous", "timestamps"] {
        if ctx.query.get(flag) == Some("true") {
            q.append_pair(flag, "true");
        }
    }
    for (param, what) in [
        ("sinceSeconds", "sinceSeconds"),
        ("tailLines", "tailLines"),
        ("limitBytes", "limitBytes"),
    ] {
        if let Some(v) = ctx.query.get(param) {
            match v.parse::<i64>() {
                Ok(n) if n >= 0 && !(param != "tailLines" && n == 0) => {
                    q.append_pair(param, v);
                }
                _ => {
                    return Err(ApiError::Invalid {
                        group: String::new(),
                        kind: "PodLogOptions".into(),
                        name: String::new(),
                        causes: vec![crate::error::FieldError::invalid(
                            what,
                            serde_json::json!(v),
                            if param == "tailLines" {
                                "must be greater than or equal to 0"
                            } else {
                                "must be greater than 0"
                            },
                        )],
                    });
                }
            }
        }
    }
    if let Some(t) = ctx.query.get("sinceTime") {
        q.append_pair("sinceTime", t);
    }
    Ok(q.finish())
}

/// The path after `/proxy` (and the query) of a proxy request: `nodes/proxy` to the
/// kubelet, `pods/proxy` and `services/proxy` to the pod.
pub(crate) fn proxy_path(ctx: &Ctx<'_>) -> String {
    let mut path = format!("/{}", ctx.info.rest.join("/"));
    if ctx.info.path.ends_with('/') && !path.ends_with('/') {
        path.push('/');
    }
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, vs) in &ctx.query.0 {
        for v in vs {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if !q.is_empty() {
        path.push('?');
        path.push_str(&q);
    }
    path
}

/// The error for a kubelet-bound request this server does not carry (`pods/proxy`,
/// `services/proxy` until they are built).
pub async fn no_kubelet(ctx: &Ctx<'_>) -> ApiError {
    let name = ctx.info.name.clone().unwrap_or_default();
    let ns = ctx.info.namespace.clone().unwrap_or_default();
    let node_name = if ctx.res.kind == "Pod" {
        let pods = catalog().get("", "v1", "pods").expect("pods");
        let pod = match ctx.api.registry.get(pods, &ns, &name).await {
            Ok(p) => p,
            Err(e) => return e,
        };
        match pod.pointer("/spec/nodeName").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ => return ApiError::BadRequest(format!("pod {name} does not have a host assigned")),
        }
    } else if ctx.res.kind == "Node" {
        name.clone()
    } else {
        return ApiError::ServiceUnavailable("no endpoints available for service".into());
    };
    let node = match node(ctx, &node_name).await {
        Ok(n) => n,
        Err(e) => return e,
    };
    match ctx.api.config.kubelet.location(&node) {
        Err(e) => e,
        Ok((host, port)) => ApiError::ServiceUnavailable(format!(
            "error trying to reach service: {} through the kubelet at {host}:{port} is not supported",
            ctx.info.subresource.as_deref().unwrap_or("this request")
        )),
    }
}
