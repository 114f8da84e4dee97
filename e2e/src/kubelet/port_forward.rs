//! A [`TestKubelet`](super::TestKubelet)'s port-forward: SPDY/3.1 sessions, tunnelled
//! in a WebSocket or over a plain upgrade, whose streams connect to 127.0.0.1.

use super::KubeletBody;
use super::upgrade::{accept_spdy, accept_websocket, frame_writer, header_list, websocket_bytes};

/// A kubelet's port-forward: SPDY/3.1 streams, either tunnelled in a WebSocket
/// (`SPDY/3.1+portforward.k8s.io`, what kubectl 1.30+ asks for) or over a plain
/// `SPDY/3.1` upgrade (the fallback, and kubectl before 1.30). Each pair of
/// `error` and `data` streams with one `requestid` is a connection to
/// `127.0.0.1:<port>`.
pub(super) fn port_forward(
    req: &mut http::Request<hyper::body::Incoming>,
) -> http::Response<KubeletBody> {
    use futures::StreamExt;
    let empty = || http_body_util::StreamBody::new(futures::stream::empty().boxed());
    let header = |n: &str| header_list(req, n);
    let websocket = header("upgrade")
        .iter()
        .any(|u| u.eq_ignore_ascii_case("websocket"));
    let mut r = http::Response::new(empty());
    if websocket {
        const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
        if !header("sec-websocket-protocol").iter().any(|p| p == TUNNEL) {
            *r.status_mut() = http::StatusCode::BAD_REQUEST;
            return r;
        }
        return accept_websocket(req, TUNNEL, |ws| async move {
            spdy_port_forward(websocket_bytes(ws)).await;
        });
    }
    if !header("upgrade")
        .iter()
        .any(|u| u.eq_ignore_ascii_case("SPDY/3.1"))
        || !header("x-stream-protocol-version")
            .iter()
            .any(|p| p == "portforward.k8s.io")
    {
        *r.status_mut() = http::StatusCode::BAD_REQUEST;
        return r;
    }
    accept_spdy(req, "portforward.k8s.io", |io| async move {
        spdy_port_forward(io).await;
    })
}

/// The kubelet's side of a SPDY port-forward session over `io`.
async fn spdy_port_forward<S>(io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use component_base::spdy::{self, FLAG_FIN, Frame, HeaderCodec};
    use std::collections::HashMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut rd, wr) = tokio::io::split(io);
    let tx = frame_writer(wr);
    let mut codec = HeaderCodec::new();
    let mut reply_codec = HeaderCodec::new();
    // requestid -> (error stream, data stream, port)
    let mut pairs: HashMap<String, (Option<u32>, Option<u32>, String)> = HashMap::new();
    // data stream -> the connection's writer
    let mut conns: HashMap<u32, tokio::sync::mpsc::Sender<Option<Vec<u8>>>> = HashMap::new();
    loop {
        let Ok(frame) = spdy::read_frame(&mut rd, &mut codec).await else {
            return;
        };
        match frame {
            Frame::SynStream {
                stream, headers, ..
            } => {
                let Ok(reply) = spdy::syn_reply(&mut reply_codec, stream, &[]) else {
                    return;
                };
                let _ = tx.send(reply).await;
                let id = spdy::header(&headers, "requestid").unwrap_or("").to_owned();
                let port = spdy::header(&headers, "port").unwrap_or("").to_owned();
                let entry = pairs.entry(id.clone()).or_insert((None, None, port));
                match spdy::header(&headers, "streamtype") {
                    Some("error") => entry.0 = Some(stream),
                    Some("data") => entry.1 = Some(stream),
                    _ => {}
                }
                if let (Some(err), Some(data), port) = entry.clone() {
                    pairs.remove(&id);
                    let (ctx, mut crx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(64);
                    conns.insert(data, ctx);
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await;
                        let tcp = match tcp {
                            Ok(t) => t,
                            Err(e) => {
                                let msg = format!("error forwarding port {port} to pod: {e}");
                                let _ = tx.send(spdy::data(err, 0, msg.as_bytes())).await;
                                let _ = tx.send(spdy::data(err, FLAG_FIN, &[])).await;
                                let _ = tx.send(spdy::data(data, FLAG_FIN, &[])).await;
                                return;
                            }
                        };
                        let (mut tr, mut tw) = tcp.into_split();
                        let up = tokio::spawn(async move {
                            while let Some(Some(chunk)) = crx.recv().await {
                                if tw.write_all(&chunk).await.is_err() {
                                    return;
                                }
                            }
                            let _ = tw.shutdown().await;
                        });
                        let mut buf = vec![0u8; 32 * 1024];
                        loop {
                            match tr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if tx.send(spdy::data(data, 0, &buf[..n])).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                        let _ = tx.send(spdy::data(data, FLAG_FIN, &[])).await;
                        let _ = tx.send(spdy::data(err, FLAG_FIN, &[])).await;
                        up.abort();
                    });
                }
            }
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                if let Some(c) = conns.get(&stream) {
                    if !data.is_empty() {
                        let _ = c.send(Some(data)).await;
                    }
                    if flags & FLAG_FIN != 0 {
                        let _ = c.send(None).await;
                        conns.remove(&stream);
                    }
                }
            }
            Frame::Ping(id) => {
                let _ = tx.send(spdy::ping(id)).await;
            }
            Frame::GoAway { .. } => return,
            Frame::RstStream { stream, .. } => {
                conns.remove(&stream);
            }
            _ => {}
        }
    }
}
