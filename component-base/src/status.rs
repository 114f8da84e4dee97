//! The secure serving endpoint every non-apiserver component runs (upstream's
//! `--secure-port`, 10257 for kube-controller-manager, 10259 for kube-scheduler):
//! `/healthz`, `/livez` and `/readyz` with named checks in upstream's format, and
//! `/metrics` in the Prometheus text format.
//!
//! Who may read what is a [`Guard`]'s decision, asked before every request: the
//! components delegate it to the apiserver (TokenReview, SubjectAccessReview; see
//! `client_base::delegated`). Refusals are upstream's `Status` bodies (401
//! `Unauthorized`, 403 `forbidden: User ... cannot get path ...`). Without a guard
//! everything is open.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use prometheus::Registry;
use tokio::net::TcpListener;

/// A named health check: `Ok` when healthy, else the reason (logged, never served).
pub type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A request, as a [`Guard`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The path.
    pub path: &'a str,
    /// The bearer token, if one was sent.
    pub bearer: Option<&'a str>,
    /// The client certificate chain (unverified), if one was presented.
    pub certs: &'a [rustls::pki_types::CertificateDer<'static>],
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Credentials were presented and are not valid (401).
    Unauthorized,
    /// The caller may not do this (403), with upstream's message.
    Forbidden(String),
}

/// Decides who may read the endpoint.
pub trait Guard: Send + Sync {
    /// `Ok` to serve the request.
    fn admit<'a>(
        &'a self,
        caller: Caller<'a>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Refusal>> + Send + 'a>>;
}

/// What the endpoint serves.
#[derive(Clone)]
pub struct Status {
    /// Rendered at `/metrics`.
    pub registry: Registry,
    /// Run for `/healthz` (and `/livez`, `/readyz`), in order.
    pub checks: Vec<(&'static str, Check)>,
    /// Asked before every request; `None` serves everyone.
    pub guard: Option<Arc<dyn Guard>>,
}

/// Upstream's `Status` body for a refusal.
pub fn refusal_body(r: &Refusal) -> (StatusCode, String) {
    let (code, reason, message) = match r {
        Refusal::Unauthorized => (
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".to_owned(),
        ),
        Refusal::Forbidden(m) => (StatusCode::FORBIDDEN, "Forbidden", m.clone()),
    };
    let mut body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if code == StatusCode::FORBIDDEN {
        body["details"] = serde_json::json!({});
    }
    (code, format!("{body}\n"))
}

impl Status {
    /// The reply to one GET of `path` (with its `query`).
    pub fn reply(&self, path: &str, query: &str) -> (StatusCode, String) {
        let path = path.trim_end_matches('/');
        match path {
            "/metrics" => (StatusCode::OK, crate::metrics::render(&self.registry)),
            "/healthz" | "/livez" | "/readyz" => {
                let verbose = query.split('&').any(|p| {
                    p == "verbose"
                        || p.strip_prefix("verbose=")
                            .is_some_and(|v| v != "false" && v != "0")
                });
                self.health(path, verbose)
            }
            _ => match path.rsplit_once('/') {
                // One check by name, as upstream's /healthz/<name>.
                Some(("/healthz" | "/livez" | "/readyz", "ping")) => (StatusCode::OK, "ok".into()),
                Some((base @ ("/healthz" | "/livez" | "/readyz"), name)) => {
                    match self.checks.iter().find(|(n, _)| *n == name) {
                        Some((_, c)) => match c() {
                            Ok(()) => (StatusCode::OK, "ok".into()),
                            Err(e) => {
                                tracing::info!(check = name, path = base, reason = %e, "health check failed");
                                (
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    format!("internal server error: {e}\n"),
                                )
                            }
                        },
                        None => (StatusCode::NOT_FOUND, "404 page not found\n".into()),
                    }
                }
                _ => (StatusCode::NOT_FOUND, "404 page not found\n".into()),
            },
        }
    }

    fn health(&self, path: &str, verbose: bool) -> (StatusCode, String) {
        let mut out = String::from("[+]ping ok\n");
        let mut failed = false;
        for (name, check) in &self.checks {
            match check() {
                Ok(()) => out.push_str(&format!("[+]{name} ok\n")),
                Err(e) => {
                    failed = true;
                    tracing::info!(check = name, path, reason = %e, "health check failed");
                    out.push_str(&format!("[-]{name} failed: reason withheld\n"));
                }
            }
        }
        let what = &path[1..];
        if failed {
            out.push_str(&format!("{what} check failed\n"));
            return (StatusCode::INTERNAL_SERVER_ERROR, out);
        }
        if verbose {
            out.push_str(&format!("{what} check passed\n"));
            (StatusCode::OK, out)
        } else {
            (StatusCode::OK, "ok".into())
        }
    }
}

/// Serves `status` over HTTPS on `listener` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    status: Status,
    stop: impl std::future::Future<Output = ()>,
) {
    let status = Arc::new(status);
    crate::serve::serve_tls(
        listener,
        tls,
        stop,
        move |req: Request<hyper::body::Incoming>| {
            let status = status.clone();
            async move {
                let refused = match &status.guard {
                    None => None,
                    Some(guard) => {
                        let certs = req
                            .extensions()
                            .get::<crate::serve::PeerInfo>()
                            .map(|p| p.certs.clone())
                            .unwrap_or_default();
                        let bearer = req
                            .headers()
                            .get(header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.strip_prefix("Bearer "))
                            .map(str::trim)
                            .filter(|t| !t.is_empty());
                        let caller = Caller {
                            method: req.method().as_str(),
                            path: req.uri().path(),
                            bearer,
                            certs: &certs,
                        };
                        guard.admit(caller).await.err()
                    }
                };
                let json = refused.is_some();
                let (code, body) = if let Some(r) = refused {
                    refusal_body(&r)
                } else if req.method() == http::Method::GET {
                    status.reply(req.uri().path(), req.uri().query().unwrap_or(""))
                } else {
                    (
                        StatusCode::METHOD_NOT_ALLOWED,
                        "Method Not Allowed\n".into(),
                    )
                };
                let ctype = if json {
                    "application/json"
                } else if req.uri().path() == "/metrics" {
                    "text/plain; version=0.0.4; charset=utf-8"
                } else {
                    "text/plain; charset=utf-8"
                };
                let mut r = Response::new(Full::new(Bytes::from(body)));
                *r.status_mut() = code;
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(ctype),
                );
                r.headers_mut().insert(
                    "x-content-type-options",
                    header::HeaderValue::from_static("nosniff"),
                );
                r
            }
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn health_in_upstreams_format() {
        let ok = Arc::new(AtomicBool::new(true));
        let flag = ok.clone();
        let s = Status {
            registry: Registry::new(),
            guard: None,
            checks: vec![(
                "leaderElection",
                Arc::new(move || {
                    if flag.load(Ordering::SeqCst) {
                        Ok(())
                    } else {
                        Err("lease expired".into())
                    }
                }),
            )],
        };
        assert_eq!(s.reply("/healthz", ""), (StatusCode::OK, "ok".into()));
        assert_eq!(
            s.reply("/healthz", "verbosity=1"),
            (StatusCode::OK, "ok".into())
        );
        assert_eq!(
            s.reply("/healthz", "verbose"),
            (
                StatusCode::OK,
                "[+]ping ok\n[+]leaderElection ok\nhealthz check passed\n".into()
            )
        );
        assert_eq!(
            s.reply("/healthz/leaderElection", ""),
            (StatusCode::OK, "ok".into())
        );
        ok.store(false, Ordering::SeqCst);
        assert_eq!(
            s.reply("/livez", ""),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "[+]ping ok\n[-]leaderElection failed: reason withheld\nlivez check failed\n"
                    .into()
            )
        );
        assert_eq!(s.reply("/healthz/nope", "").0, StatusCode::NOT_FOUND);
        assert_eq!(s.reply("/readyz/ping", ""), (StatusCode::OK, "ok".into()));
        assert_eq!(s.reply("/other", "").0, StatusCode::NOT_FOUND);
        assert_eq!(s.reply("/metrics", "").0, StatusCode::OK);
    }
}
