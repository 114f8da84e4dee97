//! A [`TestKubelet`](super::TestKubelet)'s exec and attach sessions, over WebSocket
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`) or SPDY/3.1, running a few commands
//! for real.

use super::KubeletBody;
use super::upgrade::{accept_spdy, accept_websocket, frame_writer, header_list};

/// A kubelet's exec over WebSocket (`v5.channel.k8s.io` or `v4.channel.k8s.io`):
/// upgrade, then the command's stdin from channel 0 (closed by v5's close signal),
/// stdout on 1, stderr on 2, the Status on 3, and a close frame. Commands: `echo`,
/// `cat` and `tar` run for real (so `kubectl cp` works on the test's own files),
/// `exit <code>` fails with that code. `/attach` gets the same session: a `cat` of
/// stdin, or one line without it.
pub(super) fn websocket_exec(
    req: &mut http::Request<hyper::body::Incoming>,
    path_and_query: &str,
) -> http::Response<KubeletBody> {
    use futures::StreamExt;
    let header_values = |name: &str| header_list(req, name);
    let empty = || http_body_util::StreamBody::new(futures::stream::empty().boxed());
    let query = path_and_query.split_once('?').map(|(_, q)| q).unwrap_or("");
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let wants_stdin = pairs
        .iter()
        .any(|(k, v)| k == "stdin" && (v == "true" || v == "1"));
    // An attached "container" is a `cat` when given stdin, else it prints one line.
    let command: Vec<String> = if path_and_query.starts_with("/attach/") {
        let container = path_and_query
            .split('?')
            .next()
            .and_then(|p| p.rsplit('/').next())
            .unwrap_or("")
            .to_owned();
        if wants_stdin {
            vec!["cat".into()]
        } else {
            vec!["echo".into(), format!("attached to {container}")]
        }
    } else {
        pairs
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect()
    };
    // SPDY (kubectl before 1.30): v4.channel.k8s.io negotiated in a header.
    if header_values("upgrade")
        .iter()
        .any(|u| u.eq_ignore_ascii_case("SPDY/3.1"))
    {
        let mut r = http::Response::new(empty());
        if !header_values("x-stream-protocol-version")
            .iter()
            .any(|p| p == "v4.channel.k8s.io")
        {
            *r.status_mut() = http::StatusCode::FORBIDDEN;
            return r;
        }
        return accept_spdy(req, "v4.channel.k8s.io", |io| async move {
            spdy_exec(io, command, pairs).await;
        });
    }
    let offered = header_values("sec-websocket-protocol");
    let protocol = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p));
    let Some(protocol) = protocol else {
        let mut r = http::Response::new(empty());
        *r.status_mut() = http::StatusCode::BAD_REQUEST;
        return r;
    };
    let v5 = protocol == "v5.channel.k8s.io";
    accept_websocket(req, protocol, move |ws| async move {
        run_exec(ws, command, wants_stdin, v5).await;
    })
}

/// Input to an exec session's command: chunks of stdin, `None` when it closes.
type StdinRx = tokio::sync::mpsc::Receiver<Option<Vec<u8>>>;
/// Output of an exec session's command: (channel, bytes), 1 stdout and 2 stderr.
type OutputTx = tokio::sync::mpsc::Sender<(u8, Vec<u8>)>;

/// Runs an exec session's command, whatever carries it: `echo`, `cat` and `tar` for
/// real, `exit <code>`; returns the Status the kubelet reports (JSON).
async fn run_command(command: Vec<String>, stdin: Option<StdinRx>, out: OutputTx) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    match command.first().map(String::as_str) {
        Some("exit") => {
            let code = command.get(1).cloned().unwrap_or_else(|| "1".into());
            non_zero(&command, &code)
        }
        Some("echo" | "cat" | "tar") => {
            let spawned = tokio::process::Command::new(&command[0])
                .args(&command[1..])
                .stdin(if stdin.is_some() {
                    std::process::Stdio::piped()
                } else {
                    std::process::Stdio::null()
                })
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn();
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) => {
                    return format!(r#"{{"metadata":{{}},"status":"Failure","message":"{e}"}}"#);
                }
            };
            let feeder = stdin.map(|mut rx| {
                let mut pipe = child.stdin.take();
                tokio::spawn(async move {
                    while let Some(Some(chunk)) = rx.recv().await {
                        if let Some(p) = pipe.as_mut()
                            && p.write_all(&chunk).await.is_err()
                        {
                            pipe = None;
                        }
                    }
                    // Closed: dropping the pipe ends the command's stdin.
                })
            });
            let pump = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>, ch: u8| {
                let out = out.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if out.send((ch, buf[..n].to_vec())).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                })
            };
            let o = pump(Box::new(child.stdout.take().expect("stdout")), 1);
            let e = pump(Box::new(child.stderr.take().expect("stderr")), 2);
            let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(1);
            let _ = o.await;
            let _ = e.await;
            if let Some(f) = feeder {
                f.abort();
            }
            if code == 0 {
                r#"{"metadata":{},"status":"Success"}"#.to_owned()
            } else {
                non_zero(&command, &code.to_string())
            }
        }
        _ => r#"{"metadata":{},"status":"Failure","message":"unknown command"}"#.to_owned(),
    }
}

/// Runs an exec session over the WebSocket `ws` (channel byte first in each binary
/// message; v5's close signal ends stdin).
async fn run_exec<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    command: Vec<String>,
    wants_stdin: bool,
    v5: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut sink, mut incoming) = ws.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(64);
    let writer = tokio::spawn(async move {
        while let Some((ch, bytes)) = out_rx.recv().await {
            let mut frame = Vec::with_capacity(bytes.len() + 1);
            frame.push(ch);
            frame.extend_from_slice(&bytes);
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                return;
            }
        }
        let _ = sink
            .send(Message::Close(Some(
                tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code:
                        tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                    reason: "".into(),
                },
            )))
            .await;
        let _ = sink.flush().await;
    });
    let stdin = wants_stdin.then(|| {
        let (tx, rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(64);
        tokio::spawn(async move {
            while let Some(Ok(msg)) = incoming.next().await {
                match msg {
                    Message::Binary(b) => match b.first() {
                        Some(0) if tx.send(Some(b[1..].to_vec())).await.is_err() => return,
                        // v5: the close signal for stream 0 (stdin).
                        Some(255) if v5 && b.get(1) == Some(&0) => {
                            let _ = tx.send(None).await;
                        }
                        _ => {}
                    },
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = tx.send(None).await;
        });
        rx
    });
    let status = run_command(command, stdin, out_tx.clone()).await;
    let _ = out_tx.send((3, status.into_bytes())).await;
    drop(out_tx);
    let _ = writer.await;
}

/// Runs an exec session over SPDY (kubectl before 1.30): the client opens `error`,
/// `stdin`, `stdout` and `stderr` streams (as the query asks), the command runs once
/// they are all there, and the Status goes on `error` (v4.channel.k8s.io).
async fn spdy_exec<S>(io: S, command: Vec<String>, query: Vec<(String, String)>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use component_base::spdy::{self, FLAG_FIN, Frame, HeaderCodec};
    let want = |k: &str| {
        query
            .iter()
            .any(|(n, v)| n == k && (v == "true" || v == "1"))
    };
    let (mut rd, wr) = tokio::io::split(io);
    let tx = frame_writer(wr);
    let mut codec = HeaderCodec::new();
    let mut reply_codec = HeaderCodec::new();
    let (mut error, mut stdin_id, mut stdout, mut stderr) = (None, None, None, None);
    let mut resize = None;
    let (stdin_tx, stdin_rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(64);
    let mut stdin_rx = Some(stdin_rx);
    let mut started = false;
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let mut done_tx = Some(done_tx);
    loop {
        let frame = tokio::select! {
            f = spdy::read_frame(&mut rd, &mut codec) => match f {
                Ok(f) => f,
                Err(_) => return,
            },
            _ = &mut done_rx => return,
        };
        match frame {
            Frame::SynStream {
                stream, headers, ..
            } => {
                let Ok(reply) = spdy::syn_reply(&mut reply_codec, stream, &[]) else {
                    return;
                };
                let _ = tx.send(reply).await;
                match spdy::header(&headers, "streamtype") {
                    Some("error") => error = Some(stream),
                    Some("stdin") => stdin_id = Some(stream),
                    Some("stdout") => stdout = Some(stream),
                    Some("stderr") => stderr = Some(stream),
                    Some("resize") => resize = Some(stream),
                    _ => {}
                }
            }
            Frame::Data {
                stream,
                flags,
                data,
            } if Some(stream) == stdin_id => {
                if !data.is_empty() {
                    let _ = stdin_tx.send(Some(data)).await;
                }
                if flags & FLAG_FIN != 0 {
                    let _ = stdin_tx.send(None).await;
                }
            }
            Frame::Ping(id) => {
                let _ = tx.send(spdy::ping(id)).await;
            }
            Frame::GoAway { .. } => return,
            _ => {}
        }
        let ready = error.is_some()
            && (!want("stdin") || stdin_id.is_some())
            && (!want("stdout") || stdout.is_some())
            && (!want("stderr") || stderr.is_some())
            // With a terminal, the client also opens a resize stream (and no stderr).
            && (!want("tty") || resize.is_some());
        if ready && !started {
            started = true;
            let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(64);
            let tx = tx.clone();
            let stdin = want("stdin").then(|| stdin_rx.take()).flatten();
            let command = command.clone();
            let done = done_tx.take();
            let (err_id, out_id, errout_id) = (error.unwrap_or(0), stdout, stderr);
            tokio::spawn(async move {
                let relay = {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        while let Some((ch, bytes)) = out_rx.recv().await {
                            let id = if ch == 1 { out_id } else { errout_id };
                            if let Some(id) = id
                                && tx.send(spdy::data(id, 0, &bytes)).await.is_err()
                            {
                                return;
                            }
                        }
                    })
                };
                let status = run_command(command, stdin, out_tx).await;
                let _ = relay.await;
                let _ = tx.send(spdy::data(err_id, 0, status.as_bytes())).await;
                for id in [Some(err_id), out_id, errout_id].into_iter().flatten() {
                    let _ = tx.send(spdy::data(id, FLAG_FIN, &[])).await;
                }
                let _ = tx.send(spdy::go_away(0)).await;
                if let Some(d) = done {
                    let _ = d.send(());
                }
            });
        }
    }
}

/// The Status a kubelet sends for a command that exited with `code`.
fn non_zero(command: &[String], code: &str) -> String {
    format!(
        r#"{{"metadata":{{}},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [{}], exit code {code}","reason":"NonZeroExitCode","details":{{"causes":[{{"reason":"ExitCode","message":"{code}"}}]}}}}"#,
        command.join(" ")
    )
}
