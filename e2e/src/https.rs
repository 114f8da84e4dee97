//! Requests to the apiserver that kubectl cannot make: plain HTTPS GETs (with or
//! without a client certificate) and a WebSocket ping.

use std::path::Path;
use std::time::Duration;

use crate::apiserver::ADMIN_TOKEN;

/// Opens a WebSocket to the apiserver at `path` (as the admin, offering `protocol`),
/// sends a Ping and returns the payload of the Pong that comes back: through the
/// apiserver's splice, from whatever answers at the other end.
pub async fn websocket_ping(port: u16, path: &str, protocol: &str) -> Result<Vec<u8>, String> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // The apiserver's serving certificate is self-signed here.
    let tls = component_base::tls::unverified_client_config();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let mut req = format!("wss://127.0.0.1:{port}{path}")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let h = req.headers_mut();
    h.insert(
        "authorization",
        http::HeaderValue::from_str(&format!("Bearer {ADMIN_TOKEN}")).map_err(|e| e.to_string())?,
    );
    h.insert(
        "sec-websocket-protocol",
        http::HeaderValue::from_str(protocol).map_err(|e| e.to_string())?,
    );
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(|e| e.to_string())?;
    ws.send(Message::Ping(b"keelson".to_vec().into()))
        .await
        .map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| "no pong within 10 s".to_owned())?;
        match next {
            Some(Ok(Message::Pong(p))) => {
                let _ = ws.close(None).await;
                return Ok(p.to_vec());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed before the pong".into()),
        }
    }
}

/// One HTTPS GET to the apiserver on 127.0.0.1:`port` with `headers` and no client
/// certificate (the server is not verified); returns the status and body. For the
/// requests kubectl cannot make, such as one without any credentials (kubectl would
/// prompt for a password).
pub fn https_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    https_get_as(port, path, headers, None)
}

/// [`https_get`], presenting a client certificate and key (PEM files) when given.
pub fn https_get_as(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    client: Option<(&Path, &Path)>,
) -> (u16, String) {
    let config = match client {
        None => component_base::tls::unverified_client_config(),
        Some((cert, key)) => {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let certs = component_base::tls::load_certs(cert).expect("client cert");
            let key = rustls_pemfile::private_key(&mut std::fs::read(key).expect("key").as_slice())
                .expect("key")
                .expect("a key");
            let mut c = rustls::ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(component_base::tls::AnyServerCert::new())
                .with_client_auth_cert(certs, key)
                .expect("client auth");
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            std::sync::Arc::new(c)
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use http_body_util::BodyExt;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("tls");
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        let mut req = http::Request::get(path).header("host", format!("127.0.0.1:{port}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = send
            .send_request(
                req.body(http_body_util::Empty::<bytes::Bytes>::new())
                    .expect("request"),
            )
            .await
            .expect("send");
        let code = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    })
}
