//! Container logs as the CRI writes them (`<RFC 3339 nano time> <stream> <P|F>
//! <content>` per line, `P` for a partial line) read back as `kubectl logs` shows
//! them, as upstream's `pkg/kubelet/kuberuntime/logs`: `tailLines`, `sinceTime`,
//! `timestamps`, `limitBytes` and `follow` (until the container stops).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// What to show.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// Keep streaming while the container runs.
    pub follow: bool,
    /// Only the last lines.
    pub tail_lines: Option<i64>,
    /// Prefix each line with its time.
    pub timestamps: bool,
    /// Only lines at or after this time.
    pub since: Option<Timestamp>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
}

impl Options {
    /// From the kubelet API's query (`follow=true&tailLines=10&...`), as
    /// PodLogOptions, with `sinceSeconds` relative to `now`.
    pub fn from_query(query: &str, now: Timestamp) -> Result<Options, String> {
        let mut o = Options::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let flag = || v == "true" || v == "1";
            match k.as_ref() {
                "follow" => o.follow = flag(),
                "timestamps" => o.timestamps = flag(),
                "tailLines" => {
                    o.tail_lines = Some(v.parse().map_err(|_| format!("invalid tailLines {v:?}"))?)
                }
                "limitBytes" => {
                    o.limit_bytes =
                        Some(v.parse().map_err(|_| format!("invalid limitBytes {v:?}"))?)
                }
                "sinceSeconds" => {
                    let s: i64 = v
                        .parse()
                        .map_err(|_| format!("invalid sinceSeconds {v:?}"))?;
                    o.since = Some(now - k8s_openapi::jiff::SignedDuration::from_secs(s));
                }
                "sinceTime" => {
                    o.since = Some(v.parse().map_err(|_| format!("invalid sinceTime {v:?}"))?)
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

/// One parsed CRI log line.
#[derive(Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// The time, as written.
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// A partial line (`P`): no newline follows its content.
    pub partial: bool,
    /// The content, without the newline.
    pub content: &'a [u8],
}

/// Parses one line of a CRI log file (without its newline).
pub fn parse(line: &[u8]) -> Option<Line<'_>> {
    let mut it = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(it.next()?).ok()?;
    let stream = std::str::from_utf8(it.next()?).ok()?;
    let tag = it.next()?;
    let content = it.next().unwrap_or_default();
    Some(Line {
        time,
        stream,
        partial: tag.first() == Some(&b'P'),
        content,
    })
}

/// Renders the lines of `data` (whole lines only) that pass `opts`' time filter.
fn render(data: &[u8], opts: &Options, out: &mut Vec<u8>) {
    for raw in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Some(l) = parse(raw) else { continue };
        if let Some(since) = opts.since
            && l.time.parse::<Timestamp>().is_ok_and(|t| t < since)
        {
            continue;
        }
        if opts.timestamps {
            out.extend_from_slice(l.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(l.content);
        if !l.partial {
            out.push(b'\n');
        }
    }
}

/// Where to start so that only the last `n` lines are shown; a line written in
/// partial pieces (`P` tags, then `F`) counts once, from its first piece.
fn tail_offset(data: &[u8], n: i64) -> usize {
    if n < 0 {
        return 0;
    }
    let mut starts = Vec::new();
    let mut offset = 0;
    let mut continues = false;
    for raw in data.split_inclusive(|b| *b == b'\n') {
        if !continues {
            starts.push(offset);
        }
        continues = parse(raw.strip_suffix(b"\n").unwrap_or(raw)).is_some_and(|l| l.partial);
        offset += raw.len();
    }
    let n = n as usize;
    if n >= starts.len() {
        0
    } else if n == 0 {
        data.len()
    } else {
        starts[starts.len() - n]
    }
}

/// Streams the log at `path`; while following, `running` tells whether the
/// container still runs (the stream ends once it stopped and the file is drained).
pub fn stream<F, Fut>(
    path: PathBuf,
    opts: Options,
    running: F,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut left = opts.limit_bytes.unwrap_or(u64::MAX);
        let send = |mut chunk: Vec<u8>, left: &mut u64| {
            if chunk.len() as u64 > *left {
                chunk.truncate(*left as usize);
            }
            *left -= chunk.len() as u64;
            chunk
        };
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let mut data = Vec::new();
        if let Err(e) = file.read_to_end(&mut data).await {
            let _ = tx.send(Err(e)).await;
            return;
        }
        // Only whole lines now; a trailing fragment waits for its newline.
        let whole = data
            .iter()
            .rposition(|b| *b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        let start = opts
            .tail_lines
            .map(|n| tail_offset(&data[..whole], n))
            .unwrap_or(0);
        let mut out = Vec::new();
        render(&data[start..whole], &opts, &mut out);
        let mut pos = whole as u64;
        if !out.is_empty()
            && tx
                .send(Ok(Bytes::from(send(out, &mut left))))
                .await
                .is_err()
        {
            return;
        }
        if !opts.follow {
            return;
        }
        let mut pending: Vec<u8> = data[whole..].to_vec();
        loop {
            if left == 0 {
                return;
            }
            let alive = running().await;
            if file.seek(std::io::SeekFrom::Start(pos)).await.is_err() {
                return;
            }
            let mut more = Vec::new();
            if file.read_to_end(&mut more).await.is_err() {
                return;
            }
            pos += more.len() as u64;
            pending.extend_from_slice(&more);
            if let Some(i) = pending.iter().rposition(|b| *b == b'\n') {
                let rest = pending.split_off(i + 1);
                let mut out = Vec::new();
                render(&pending, &opts, &mut out);
                pending = rest;
                if !out.is_empty()
                    && tx
                        .send(Ok(Bytes::from(send(out, &mut left))))
                        .await
                        .is_err()
                {
                    return;
                }
            }
            if !alive && more.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    const LOG: &str = "2026-12-08T01:00:00.000000001Z stdout F one\n2026-12-08T01:00:01.000000001Z stderr P tw\n2026-12-08T01:00:01.500000001Z stderr F o\n2026-12-08T01:00:02.000000001Z stdout F three\n";

    async fn read(opts: Options) -> String {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("0.log");
        std::fs::write(&p, LOG).unwrap();
        let chunks: Vec<_> = stream(p, opts, || async { false }).collect().await;
        chunks
            .into_iter()
            .map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn options_as_kubectl_logs() {
        assert_eq!(read(Options::default()).await, "one\ntwo\nthree\n");
        assert_eq!(
            read(Options {
                tail_lines: Some(2),
                ..Default::default()
            })
            .await,
            "two\nthree\n"
        );
        assert_eq!(
            read(Options {
                tail_lines: Some(0),
                ..Default::default()
            })
            .await,
            ""
        );
        assert_eq!(
            read(Options {
                tail_lines: Some(1),
                timestamps: true,
                ..Default::default()
            })
            .await,
            "2026-12-08T01:00:02.000000001Z three\n"
        );
        assert_eq!(
            read(Options {
                limit_bytes: Some(5),
                ..Default::default()
            })
            .await,
            "one\nt"
        );
        let since = "2026-12-08T01:00:01.9Z".parse().unwrap();
        assert_eq!(
            read(Options {
                since: Some(since),
                ..Default::default()
            })
            .await,
            "three\n"
        );
        let o = Options::from_query(
            "follow=true&tailLines=10&timestamps=true",
            Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        assert!(o.follow && o.timestamps && o.tail_lines == Some(10));
    }
}
