//! The client side of the webhooks the apiserver calls, admission webhooks and the
//! authorization webhook: one HTTPS POST of JSON, answered with JSON, within a
//! deadline, with errors in the words of Go's HTTP client (`failed to call
//! webhook: Post "https://...": dial tcp ...: connect: connection refused`).
//!
//! The authorization webhook is configured by a kubeconfig file, as upstream's:
//! [`from_kubeconfig`] reads its server, CA, client certificate and token.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;

/// Where a webhook is served.
#[derive(Clone, Debug)]
pub struct Target {
    /// The host to connect to (name or address).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The TLS server name to verify.
    pub server_name: String,
    /// The path and query.
    pub path: String,
}

/// An I/O error as Go's net package words it.
pub fn go_errno(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_owned(),
        std::io::ErrorKind::ConnectionReset => "connection reset by peer".to_owned(),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_owned();
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        }
    }
}

/// How a webhook's server certificate is checked.
pub enum Trust<'a> {
    /// The PEM certificates given; none given: the system's roots, as upstream's.
    Ca(&'a [u8]),
    /// Not at all (a kubeconfig's `insecure-skip-tls-verify`).
    Insecure,
}

/// A TLS client config with `trust`, and an optional client certificate and key
/// (PEM).
pub fn tls_config(
    trust: Trust<'_>,
    client: Option<(&[u8], &[u8])>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = match trust {
        Trust::Insecure => rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(component_base::tls::AnyServerCert::new()),
        Trust::Ca(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            if ca.is_empty() {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
            for cert in rustls_pemfile::certs(&mut &*ca).flatten() {
                let _ = roots.add(cert);
            }
            rustls::ClientConfig::builder().with_root_certificates(roots)
        }
    };
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs: Vec<_> = rustls_pemfile::certs(&mut &*cert).flatten().collect();
            let key = rustls_pemfile::private_key(&mut &*key)
                .map_err(|e| e.to_string())?
                .ok_or("no private key found")?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| e.to_string())?
        }
    };
    Ok(Arc::new(config))
}

/// A failed call: upstream's text, and whether it is worth retrying.
#[derive(Debug)]
pub struct CallError {
    /// `Post "https://...": ...`.
    pub message: String,
    /// The answer's status code, when the server answered.
    pub status: Option<u16>,
    /// The connection was reset.
    pub reset: bool,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl CallError {
    /// Upstream's `DefaultShouldRetry`: a reset connection, or a 500, 504 or 429.
    pub fn should_retry(&self) -> bool {
        self.reset || matches!(self.status, Some(500 | 504 | 429))
    }
}

/// POSTs `body` to the target; returns the JSON answer.
pub async fn post_json(
    target: &Target,
    tls: Arc<rustls::ClientConfig>,
    bearer: Option<&str>,
    body: &Value,
    timeout: Duration,
) -> Result<Value, CallError> {
    let status = std::sync::atomic::AtomicU16::new(0);
    let reset = std::sync::atomic::AtomicBool::new(false);
    let Target {
        host,
        port,
        server_name,
        path,
    } = target;
    let url = format!("https://{server_name}:{port}{path}");
    let fut = async {
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let tcp = tokio::net::TcpStream::connect(&addr).await.map_err(|e| {
            reset.store(
                e.kind() == std::io::ErrorKind::ConnectionReset,
                std::sync::atomic::Ordering::Relaxed,
            );
            format!("dial tcp {addr}: connect: {}", go_errno(&e))
        })?;
        let name = rustls::pki_types::ServerName::try_from(server_name.clone())
            .map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls: failed to verify certificate: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = http::Request::post(path.as_str())
            .header(http::header::HOST, format!("{server_name}:{port}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json");
        if let Some(t) = bearer {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(http_body_util::Full::new(Bytes::from(
                serde_json::to_vec(body).unwrap_or_default(),
            )))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| {
            reset.store(true, std::sync::atomic::Ordering::Relaxed);
            e.to_string()
        })?;
        let code = resp.status();
        status.store(code.as_u16(), std::sync::atomic::Ordering::Relaxed);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !code.is_success() {
            return Err(format!(
                "the server responded with the status code {} but did not return more information",
                code.as_u16()
            ));
        }
        serde_json::from_slice::<Value>(&body).map_err(|e| format!("decoding the response: {e}"))
    };
    let result = tokio::time::timeout(timeout, fut).await;
    let error = |message: String| CallError {
        message,
        status: Some(status.load(std::sync::atomic::Ordering::Relaxed)).filter(|s| *s != 0),
        reset: reset.load(std::sync::atomic::Ordering::Relaxed),
    };
    match result {
        Ok(r) => r.map_err(|e| error(format!("Post {url:?}: {e}"))),
        Err(_) => Err(error(format!("Post {url:?}: context deadline exceeded"))),
    }
}

/// A webhook configured by a kubeconfig file: its target, TLS config and token.
pub struct KubeconfigClient {
    /// Where.
    pub target: Target,
    /// TLS, with the kubeconfig's CA and client certificate.
    pub tls: Arc<rustls::ClientConfig>,
    /// The kubeconfig user's token.
    pub token: Option<String>,
}

/// Reads a webhook kubeconfig (the current context's, else the first cluster and
/// user), as upstream's `--authorization-webhook-config-file`.
pub fn from_kubeconfig(path: &std::path::Path) -> Result<KubeconfigClient, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let kc: Value =
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let named = |list: &str, name: Option<&str>, field: &str| -> Value {
        let items = kc
            .get(list)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        items
            .iter()
            .find(|i| name.is_some() && i.get("name").and_then(Value::as_str) == name)
            .or(items.first())
            .and_then(|i| i.get(field).cloned())
            .unwrap_or(Value::Null)
    };
    let current = kc.get("current-context").and_then(Value::as_str);
    let context = named("contexts", current, "context");
    let cluster = named(
        "clusters",
        context.get("cluster").and_then(Value::as_str),
        "cluster",
    );
    let user = named("users", context.get("user").and_then(Value::as_str), "user");
    // `<field>-data` (base64) or `<field>` (a path relative to the kubeconfig).
    let material = |v: &Value, field: &str| -> Result<Option<Vec<u8>>, String> {
        if let Some(d) = v.get(format!("{field}-data")).and_then(Value::as_str) {
            return base64::engine::general_purpose::STANDARD
                .decode(d)
                .map(Some)
                .map_err(|e| format!("{field}-data: {e}"));
        }
        match v.get(field).and_then(Value::as_str) {
            Some(p) => std::fs::read(dir.join(p))
                .map(Some)
                .map_err(|e| format!("{field} {p}: {e}")),
            None => Ok(None),
        }
    };
    let server = cluster
        .get("server")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{}: no cluster server", path.display()))?;
    let url: http::Uri = server
        .parse()
        .map_err(|e| format!("server {server:?}: {e}"))?;
    if url.scheme_str() != Some("https") {
        return Err(format!("server {server:?}: only https is supported"));
    }
    let host = url.host().unwrap_or("").trim_matches(['[', ']']).to_owned();
    let ca = material(&cluster, "certificate-authority")?.unwrap_or_default();
    let trust = if cluster
        .get("insecure-skip-tls-verify")
        .and_then(Value::as_bool)
        == Some(true)
    {
        Trust::Insecure
    } else {
        Trust::Ca(&ca)
    };
    let cert = material(&user, "client-certificate")?;
    let key = material(&user, "client-key")?;
    let client = match (&cert, &key) {
        (Some(c), Some(k)) => Some((c.as_slice(), k.as_slice())),
        _ => None,
    };
    let path_and_query = url
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    Ok(KubeconfigClient {
        target: Target {
            server_name: cluster
                .get("tls-server-name")
                .and_then(Value::as_str)
                .unwrap_or(&host)
                .to_owned(),
            host,
            port: url.port_u16().unwrap_or(443),
            path: path_and_query,
        },
        tls: tls_config(trust, client)?,
        token: user.get("token").and_then(Value::as_str).map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_failures_are_retried() {
        let e = |status: Option<u16>, reset: bool| CallError {
            message: String::new(),
            status,
            reset,
        };
        assert!(e(Some(500), false).should_retry());
        assert!(e(Some(429), false).should_retry());
        assert!(e(Some(504), false).should_retry());
        assert!(e(None, true).should_retry());
        assert!(!e(Some(403), false).should_retry());
        assert!(!e(None, false).should_retry());
    }

    #[tokio::test]
    async fn a_refused_connection_is_worded_as_go_words_it() {
        let port = component_base::bench::free_port();
        let target = Target {
            host: "127.0.0.1".into(),
            port,
            server_name: "127.0.0.1".into(),
            path: "/authorize".into(),
        };
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls = tls_config(Trust::Ca(b"-"), None).unwrap();
        let e = post_json(&target, tls, None, &Value::Null, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "Post \"https://127.0.0.1:{port}/authorize\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
        );
        assert!(!e.should_retry());
    }
}
