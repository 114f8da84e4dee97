//! `pods/proxy` and `services/proxy`: HTTP requests carried from the client to a pod,
//! directly to its IP, as upstream's pod and service `ResourceLocation` and its proxy
//! handler do.
//!
//! ```text
//! /api/v1/namespaces/<ns>/pods/[<scheme>:]<pod>[:<port>]/proxy/<path>
//!     -> the pod's IP (global unicast only: "address not allowed"), the port asked
//!        for or the pod's first container port
//! /api/v1/namespaces/<ns>/services/[<scheme>:]<svc>[:<port name or number>]/proxy/<path>
//!     -> a port number is mapped to the service port's name, then an endpoint
//!        address with that port whose target pod still has the address
//! ```
//!
//! The request (method, path, query, body and end-to-end headers, without the
//! client's credentials) is sent over HTTP/1.1, or TLS without verification for the
//! `https` scheme (upstream's proxy transport does not verify pods either), and the
//! response is streamed back with hop-by-hop headers dropped.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, header};
use rand::Rng;
use serde_json::Value;

use crate::catalog::catalog;
use crate::error::ApiError;
use crate::handlers::Ctx;

/// How long connecting to a pod may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// upstream's `SplitSchemeNamePort`: `name`, `name:port` or `scheme:name:port`, with
/// scheme `http`, `https` or empty.
pub fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [n] => ("", *n, ""),
        [n, p] => ("", *n, *p),
        [s, n, p] => (*s, *n, *p),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

/// Go's `IP.IsGlobalUnicast`: not unspecified, loopback, multicast, link-local or
/// the IPv4 broadcast address.
pub fn is_global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_multicast()
                || v4.is_link_local()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            let seg0 = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (seg0 & 0xffc0) == 0xfe80)
        }
    }
}

/// Where a proxied request goes.
#[derive(Debug, PartialEq, Eq)]
pub struct Location {
    /// `http` or `https`.
    pub scheme: String,
    /// `ip:port` (IPv6 in brackets), or the IP alone: the Host header.
    pub host: String,
    /// What to dial: `host` with the scheme's default port when it names none.
    pub addr: String,
}

impl Location {
    fn new(scheme: &str, ip: &str, port: &str) -> Location {
        let scheme = if scheme.is_empty() { "http" } else { scheme };
        let default = if scheme == "https" { "443" } else { "80" };
        Location {
            scheme: scheme.to_owned(),
            host: join_host(ip, port),
            addr: join_host(ip, if port.is_empty() { default } else { port }),
        }
    }
}

fn join_host(ip: &str, port: &str) -> String {
    let ip = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    if port.is_empty() {
        ip
    } else {
        format!("{ip}:{port}")
    }
}

/// A pod's location (upstream's pod `ResourceLocation`).
pub fn pod_location(pod: &Value, scheme: &str, port: &str) -> Result<Location, ApiError> {
    let mut port = port.to_owned();
    if port.is_empty()
        && let Some(p) = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find_map(|c| c.pointer("/ports/0/containerPort").and_then(Value::as_i64))
            })
    {
        port = p.to_string();
    }
    let ip = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .unwrap_or("");
    match ip.parse::<IpAddr>() {
        Ok(a) if is_global_unicast(a) => Ok(Location::new(scheme, ip, &port)),
        _ => Err(ApiError::BadRequest("address not allowed".into())),
    }
}

/// Whether an endpoint address still belongs to the pod it names in this namespace.
fn address_belongs(addr: &Value, ns: &str, pods: &[Value]) -> bool {
    let ip = addr["ip"].as_str().unwrap_or("");
    if ip.parse::<IpAddr>().is_err() {
        return false;
    }
    let Some(target) = addr.get("targetRef") else {
        return false;
    };
    if target["namespace"].as_str().unwrap_or("") != ns {
        return false;
    }
    let name = target["name"].as_str().unwrap_or("");
    pods.iter()
        .filter(|p| crate::meta::name(p) == name)
        .any(|p| {
            p.pointer("/status/podIPs")
                .and_then(Value::as_array)
                .is_some_and(|ips| ips.iter().any(|x| x["ip"].as_str() == Some(ip)))
                || p.pointer("/status/podIP").and_then(Value::as_str) == Some(ip)
        })
}

/// A service's location (upstream's service `ResourceLocation`): `pods` are the
/// endpoint addresses' target pods, `pick` chooses among candidates.
pub fn service_location(
    id: &str,
    svc: &Value,
    endpoints: Option<&Value>,
    pods: &[Value],
    ns: &str,
    pick: &mut dyn FnMut(usize) -> usize,
) -> Result<Location, ApiError> {
    let Some((scheme, name, port)) = split_scheme_name_port(id) else {
        return Err(ApiError::BadRequest(format!(
            "invalid service request {id:?}"
        )));
    };
    let mut port_name = port.to_owned();
    if let Ok(num) = port.parse::<i64>() {
        let ports = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        match ports.iter().find(|p| p["port"].as_i64() == Some(num)) {
            Some(p) => port_name = p["name"].as_str().unwrap_or("").to_owned(),
            None => {
                return Err(ApiError::ServiceUnavailable(format!(
                    "no service port {num} found for service {name:?}"
                )));
            }
        }
    }
    let subsets = endpoints
        .and_then(|e| e.get("subsets"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if subsets.is_empty() {
        return Err(ApiError::ServiceUnavailable(format!(
            "no endpoints available for service {name:?}"
        )));
    }
    let start = pick(subsets.len());
    for i in 0..subsets.len() {
        let ss = &subsets[(start + i) % subsets.len()];
        let addrs = ss["addresses"].as_array().cloned().unwrap_or_default();
        if addrs.is_empty() {
            continue;
        }
        for p in ss["ports"].as_array().into_iter().flatten() {
            if p["name"].as_str().unwrap_or("") != port_name {
                continue;
            }
            let first = pick(addrs.len());
            for t in 0..addrs.len() {
                let a = &addrs[(first + t) % addrs.len()];
                if !address_belongs(a, ns, pods) {
                    tracing::debug!(address = %a, "endpoint address skipped");
                    continue;
                }
                return Ok(Location::new(
                    scheme,
                    a["ip"].as_str().unwrap_or(""),
                    &p["port"].as_i64().unwrap_or(0).to_string(),
                ));
            }
        }
    }
    Err(ApiError::ServiceUnavailable(format!(
        "no endpoints available for service {id:?}"
    )))
}

/// Request headers not passed on: hop-by-hop ones, and the client's credentials.
fn forwarded(name: &str) -> bool {
    !matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "authorization"
            | "content-length"
    ) && !name.starts_with("impersonate-")
}

/// The pods an Endpoints object's addresses name.
fn target_pods(endpoints: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    let subsets = endpoints
        .and_then(|e| e.get("subsets"))
        .and_then(Value::as_array);
    for ss in subsets.into_iter().flatten() {
        for a in ss["addresses"].as_array().into_iter().flatten() {
            if let Some(n) = a.pointer("/targetRef/name").and_then(Value::as_str)
                && !out.iter().any(|x| x == n)
            {
                out.push(n.to_owned());
            }
        }
    }
    out
}

/// `pods/proxy` and `services/proxy`.
pub async fn proxy(
    ctx: &Ctx<'_>,
    method: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<Body>, ApiError> {
    let id = ctx.info.name.clone().unwrap_or_default();
    let ns = ctx.info.namespace.clone().unwrap_or_default();
    let pods_res = catalog().get("", "v1", "pods").expect("pods");
    let loc = match ctx.res.kind {
        "Pod" => {
            let Some((scheme, name, port)) = split_scheme_name_port(&id) else {
                return Err(ApiError::BadRequest(format!("invalid pod request {id:?}")));
            };
            let pod = ctx.api.registry.get(pods_res, &ns, name).await?;
            pod_location(&pod, scheme, port)?
        }
        _ => {
            let Some((_, name, _)) = split_scheme_name_port(&id) else {
                return Err(ApiError::BadRequest(format!(
                    "invalid service request {id:?}"
                )));
            };
            let svcs = catalog().get("", "v1", "services").expect("services");
            let eps = catalog().get("", "v1", "endpoints").expect("endpoints");
            let svc = ctx.api.registry.get(svcs, &ns, name).await?;
            let endpoints = match ctx.api.registry.get(eps, &ns, name).await {
                Ok(e) => Some(e),
                Err(ApiError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            let targets = target_pods(endpoints.as_ref());
            let mut pods = Vec::new();
            for target in &targets {
                if let Ok(p) = ctx.api.registry.get(pods_res, &ns, target).await {
                    pods.push(p);
                }
            }
            let mut rng = rand::rng();
            service_location(&id, &svc, endpoints.as_ref(), &pods, &ns, &mut |n| {
                rng.random_range(0..n)
            })?
        }
    };
    send(
        &loc,
        method,
        &crate::nodes::proxy_path(ctx),
        headers,
        body.clone(),
    )
    .await
}

/// Sends the request to `loc` and streams the answer back.
async fn send(
    loc: &Location,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let unreachable =
        |e: String| ApiError::ServiceUnavailable(format!("error trying to reach service: {e}"));
    let addr = loc.addr.clone();
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| unreachable(format!("dial tcp {addr}: i/o timeout")))?
        .map_err(|e| unreachable(format!("dial tcp {addr}: connect: {e}")))?;
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        if forwarded(k.as_str()) {
            req = req.header(k, v);
        }
    }
    let req = req
        .header(header::HOST, loc.host.as_str())
        .body(http_body_util::Full::new(body))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let resp = if loc.scheme == "https" {
        let host = loc
            .addr
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&loc.addr)
            .trim_matches(['[', ']']);
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| unreachable(e.to_string()))?;
        let tls = // TLS to pods is not verified, as upstream's proxy transport.
        tokio_rustls::TlsConnector::from(component_base::tls::unverified_client_config())
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(format!("tls: {e}")))?;
        request(hyper_util::rt::TokioIo::new(tls), req).await
    } else {
        request(hyper_util::rt::TokioIo::new(tcp), req).await
    }
    .map_err(unreachable)?;
    let (parts, incoming) = resp.into_parts();
    let mut out = Response::new(Body::new(incoming));
    *out.status_mut() = parts.status;
    for (k, v) in &parts.headers {
        if !matches!(
            k.as_str(),
            "connection" | "keep-alive" | "transfer-encoding" | "upgrade" | "trailer"
        ) {
            out.headers_mut().append(k.clone(), v.clone());
        }
    }
    Ok(out)
}

async fn request<T>(
    io: T,
    req: Request<http_body_util::Full<Bytes>>,
) -> Result<Response<hyper::body::Incoming>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_split_like_upstream() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(
            split_scheme_name_port("web:8080"),
            Some(("", "web", "8080"))
        );
        assert_eq!(
            split_scheme_name_port("https:web:443"),
            Some(("https", "web", "443"))
        );
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }

    #[test]
    fn pods_are_reached_at_global_unicast_addresses_only() {
        let pod = |ip: &str| {
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "ports": [{"containerPort": 8080}]}]},
                   "status": {"podIP": ip}})
        };
        let loc = pod_location(&pod("10.1.2.3"), "", "").unwrap();
        assert_eq!(
            (loc.scheme.as_str(), loc.host.as_str()),
            ("http", "10.1.2.3:8080")
        );
        let bare =
            json!({"spec": {"containers": [{"name": "a"}]}, "status": {"podIP": "10.1.2.3"}});
        let loc = pod_location(&bare, "https", "").unwrap();
        assert_eq!(
            (loc.host.as_str(), loc.addr.as_str()),
            ("10.1.2.3", "10.1.2.3:443")
        );
        assert_eq!(
            pod_location(&pod("fd00::1"), "https", "9").unwrap().host,
            "[fd00::1]:9"
        );
        for bad in ["127.0.0.1", "169.254.1.1", "0.0.0.0", "", "::1", "fe80::1"] {
            let e = pod_location(&pod(bad), "", "").unwrap_err();
            assert_eq!(e.to_string(), "address not allowed", "{bad}");
        }
    }

    #[test]
    fn services_pick_a_ready_address_of_the_named_port() {
        let svc = json!({"spec": {"ports": [{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}]}});
        let eps = json!({"subsets": [{"addresses": [
                {"ip": "10.0.0.5", "targetRef": {"kind": "Pod", "namespace": "ns", "name": "gone"}},
                {"ip": "10.0.0.6", "targetRef": {"kind": "Pod", "namespace": "ns", "name": "web"}}],
            "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}]}]});
        let pods =
            vec![json!({"metadata": {"name": "web"}, "status": {"podIPs": [{"ip": "10.0.0.6"}]}})];
        let mut first = |_: usize| 0;
        let loc = service_location("web:80", &svc, Some(&eps), &pods, "ns", &mut first).unwrap();
        assert_eq!(loc.host, "10.0.0.6:8080");
        let loc = service_location(
            "https:web:metrics",
            &svc,
            Some(&eps),
            &pods,
            "ns",
            &mut first,
        )
        .unwrap();
        assert_eq!(
            (loc.scheme.as_str(), loc.host.as_str()),
            ("https", "10.0.0.6:9100")
        );
        let e = service_location("web:81", &svc, Some(&eps), &pods, "ns", &mut first).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no service port 81 found for service \"web\""
        );
        let e = service_location("web", &svc, None, &pods, "ns", &mut first).unwrap_err();
        assert_eq!(e.to_string(), "no endpoints available for service \"web\"");
        let e = service_location("web:80", &svc, Some(&eps), &[], "ns", &mut first).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no endpoints available for service \"web:80\""
        );
    }
}
