//! The HTTPS accept loop every daemon serves with: TLS (rustls) on each accepted
//! connection, then hyper's automatic HTTP/1.1 or HTTP/2 with connection upgrades
//! (exec and port-forward streams need them), until `stop` resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;

/// What the connection a request arrived on says about the client; every request
/// served by [`serve_tls`] carries one in its extensions.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The client's address.
    pub addr: SocketAddr,
    /// The certificate chain the client presented (end entity first), unverified:
    /// the TLS layer only checked that the client holds its key.
    pub certs: Arc<Vec<rustls::pki_types::CertificateDer<'static>>>,
}

/// Serves `handler` over HTTPS on `listener` until `stop` resolves. Connections in
/// flight finish on their own.
pub async fn serve_tls<F, Fut, B>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    stop: impl Future<Output = ()>,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::pin!(stop);
    loop {
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept");
                    continue;
                }
            },
            () = &mut stop => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let info = PeerInfo {
                addr: peer,
                certs: Arc::new(
                    tls.get_ref()
                        .1
                        .peer_certificates()
                        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                        .unwrap_or_default(),
                ),
            };
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(info.clone());
                let fut = handler(req);
                async move { Ok::<_, std::convert::Infallible>(fut.await) }
            });
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}
