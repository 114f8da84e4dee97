//! The connection upgrades a [`TestKubelet`](super::TestKubelet)'s streaming sessions
//! run on: accepting WebSocket and SPDY/3.1 upgrades, a WebSocket as a byte stream,
//! and a SPDY connection's frame writer.

use super::KubeletBody;

/// The values of a request header, comma lists split.
pub(super) fn header_list(req: &http::Request<hyper::body::Incoming>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(',')
                .map(|p| p.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The upgraded connection a session runs on.
type Upgraded = hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>;

/// Accepts a WebSocket upgrade speaking `protocol`: the 101 answer, and `session`
/// run on the socket once the connection is handed over.
pub(super) fn accept_websocket<F, Fut>(
    req: &mut http::Request<hyper::body::Incoming>,
    protocol: &'static str,
    session: F,
) -> http::Response<KubeletBody>
where
    F: FnOnce(tokio_tungstenite::WebSocketStream<Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use base64::Engine;
    use futures::StreamExt;
    use sha1::Digest;
    let key = header_list(req, "sec-websocket-key")
        .first()
        .cloned()
        .unwrap_or_default();
    let accept = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    ));
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(io) = on_upgrade.await else {
            return;
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(io),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        session(ws).await;
    });
    let mut r = http::Response::new(http_body_util::StreamBody::new(
        futures::stream::empty().boxed(),
    ));
    *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        "sec-websocket-accept",
        http::HeaderValue::from_str(&accept).expect("accept header"),
    );
    h.insert(
        "sec-websocket-protocol",
        http::HeaderValue::from_static(protocol),
    );
    r
}

/// Accepts a SPDY/3.1 upgrade whose `X-Stream-Protocol-Version` is `version`: the 101
/// answer, and `session` run on the connection once it is handed over.
pub(super) fn accept_spdy<F, Fut>(
    req: &mut http::Request<hyper::body::Incoming>,
    version: &'static str,
    session: F,
) -> http::Response<KubeletBody>
where
    F: FnOnce(Upgraded) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use futures::StreamExt;
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(io) = on_upgrade.await {
            session(hyper_util::rt::TokioIo::new(io)).await;
        }
    });
    let mut r = http::Response::new(http_body_util::StreamBody::new(
        futures::stream::empty().boxed(),
    ));
    *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("SPDY/3.1"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        "x-stream-protocol-version",
        http::HeaderValue::from_static(version),
    );
    r
}

/// One writer for a SPDY connection's frames, whichever task produces them; the
/// connection is shut down when every sender is gone.
pub(super) fn frame_writer<W>(mut wr: W) -> tokio::sync::mpsc::Sender<Vec<u8>>
where
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::AsyncWriteExt;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        while let Some(f) = rx.recv().await {
            if wr.write_all(&f).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    tx
}

/// A WebSocket as the byte stream it tunnels: binary messages in, binary messages out.
pub(super) fn websocket_bytes<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
) -> tokio::io::DuplexStream
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use futures::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut rd, mut wr) = tokio::io::split(theirs);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            match m {
                Message::Binary(b) if wr.write_all(&b).await.is_err() => return,
                Message::Close(_) => return,
                _ => {}
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = sink.close().await;
                    return;
                }
                Ok(n) => {
                    if sink
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    ours
}
