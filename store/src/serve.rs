//! Listeners: gRPC and plain HTTP (`/metrics`, `/health`, `/version`) share each port,
//! over http or https, as etcd's client port does.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Listener errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A URL could not be parsed or has no port.
    #[error("invalid listen URL {0:?}")]
    BadUrl(String),
    /// Binding failed.
    #[error("listen tcp {addr}: bind: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// https was asked for without a certificate.
    #[error(
        "{0}: https listener needs --cert-file and --key-file (--peer-cert-file and --peer-key-file for peers)"
    )]
    NoTls(String),
}

/// A bound listener, ready to serve.
pub struct Bound {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    /// The URL it was bound for.
    pub url: String,
}

/// Binds a listen URL (`http://host:port` or `https://host:port`).
pub async fn bind(url: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Result<Bound, Error> {
    let u = url::Url::parse(url).map_err(|_| Error::BadUrl(url.to_owned()))?;
    let host = u.host_str().ok_or_else(|| Error::BadUrl(url.to_owned()))?;
    let port = u.port().ok_or_else(|| Error::BadUrl(url.to_owned()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = if host == "localhost" {
        format!("127.0.0.1:{port}")
    } else {
        format!("{host}:{port}")
    };
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| Error::Bind {
            addr: addr.clone(),
            source,
        })?;
    let tls = match u.scheme() {
        "https" | "unixs" => Some(TlsAcceptor::from(
            tls.ok_or_else(|| Error::NoTls(url.to_owned()))?,
        )),
        _ => None,
    };
    Ok(Bound {
        listener,
        tls,
        url: url.to_owned(),
    })
}

impl Bound {
    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves `router` until `shutdown` resolves.
    pub async fn serve(self, router: Router, shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut shutdown = shutdown;
        loop {
            let (tcp, _) = tokio::select! {
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept");
                        continue;
                    }
                },
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let _ = tcp.set_nodelay(true);
            let router = router.clone();
            let tls = self.tls.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        router.clone().oneshot(req.map(axum::body::Body::new))
                    });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                        tokio::select! {
                            _ = conn => {}
                            _ = stop.wait_for(|s| *s) => {}
                        }
                    }
                    None => {
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
                        tokio::select! {
                            _ = conn => {}
                            _ = stop.wait_for(|s| *s) => {}
                        }
                    }
                }
            });
        }
    }
}
