//! The secure serving endpoint every non-apiserver component runs (upstream's
//! `--secure-port`, 10257 for kube-controller-manager, 10259 for kube-scheduler):
//! `/healthz`, `/livez` and `/readyz` with named checks in upstream's format, and
//! `/metrics` in the Prometheus text format.
//!
//! Upstream delegates authentication and authorization of `/metrics` to the
//! apiserver (TokenReview, SubjectAccessReview); until those APIs exist the endpoint
//! is open, and the health paths are open as upstream's
//! `--authorization-always-allow-paths` default makes them.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use prometheus::Registry;
use tokio::net::TcpListener;

/// A named health check: `Ok` when healthy, else the reason (logged, never served).
pub type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What the endpoint serves.
#[derive(Clone)]
pub struct Status {
    /// Rendered at `/metrics`.
    pub registry: Registry,
    /// Run for `/healthz` (and `/livez`, `/readyz`), in order.
    pub checks: Vec<(&'static str, Check)>,
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
                let (code, body) = if req.method() == http::Method::GET {
                    status.reply(req.uri().path(), req.uri().query().unwrap_or(""))
                } else {
                    (
                        StatusCode::METHOD_NOT_ALLOWED,
                        "Method Not Allowed\n".into(),
                    )
                };
                let ctype = if req.uri().path() == "/metrics" {
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
