//! SPDY/3.1 framing, as Kubernetes streams use it (moby/spdystream): what kubectl
//! speaks for `port-forward` (plain, or tunnelled in a WebSocket as
//! `SPDY/3.1+portforward.k8s.io`) and, before WebSockets, for `exec` and `attach`.
//!
//! A connection is a sequence of frames. Control frames (SYN_STREAM, SYN_REPLY,
//! RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE) carry a version and a
//! type; data frames carry a stream id. Header blocks (name/value pairs) are
//! zlib-compressed with SPDY/3's preset dictionary, one compression context per
//! direction for the whole connection ([`HeaderCodec`]).

use std::io;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The SPDY version Kubernetes speaks.
pub const VERSION: u16 = 3;
/// FIN on a data or control frame: the sender's side of the stream is done.
pub const FLAG_FIN: u8 = 0x01;
/// Frames larger than this are refused (Kubernetes' data frames are at most 32 KiB).
pub const MAX_FRAME: usize = 1 << 24;

/// SPDY/3's zlib dictionary for header blocks (1423 bytes, Adler-32 0xe3c6a7c2), as
/// moby/spdystream and the SPDY/3 draft define it.
pub const DICTIONARY: &[u8] = b"\x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03put\x00\x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00\x0eaccept-charset\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-language\x00\x00\x00\x0daccept-ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00\x0dauthorization\x00\x00\x00\x0dcache-control\x00\x00\x00\x0aconnection\x00\x00\x00\x0ccontent-base\x00\x00\x00\x10content-encoding\x00\x00\x00\x10content-language\x00\x00\x00\x0econtent-length\x00\x00\x00\x10content-location\x00\x00\x00\x0bcontent-md5\x00\x00\x00\x0dcontent-range\x00\x00\x00\x0ccontent-type\x00\x00\x00\x04date\x00\x00\x00\x04etag\x00\x00\x00\x06expect\x00\x00\x00\x07expires\x00\x00\x00\x04from\x00\x00\x00\x04host\x00\x00\x00\x08if-match\x00\x00\x00\x11if-modified-since\x00\x00\x00\x0dif-none-match\x00\x00\x00\x08if-range\x00\x00\x00\x13if-unmodified-since\x00\x00\x00\x0dlast-modified\x00\x00\x00\x08location\x00\x00\x00\x0cmax-forwards\x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00\x00\x00\x13proxy-authorization\x00\x00\x00\x05range\x00\x00\x00\x07referer\x00\x00\x00\x0bretry-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\x00\x00\x07trailer\x00\x00\x00\x11transfer-encoding\x00\x00\x00\x07upgrade\x00\x00\x00\x0auser-agent\x00\x00\x00\x04vary\x00\x00\x00\x03via\x00\x00\x00\x07warning\x00\x00\x00\x10www-authenticate\x00\x00\x00\x06method\x00\x00\x00\x03get\x00\x00\x00\x06status\x00\x00\x00\x06200 OK\x00\x00\x00\x07version\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url\x00\x00\x00\x06public\x00\x00\x00\x0aset-cookie\x00\x00\x00\x0akeep-alive\x00\x00\x00\x06origin100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// Header name/value pairs, names lowercase.
pub type Headers = Vec<(String, String)>;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// SYN_STREAM: a new stream and its headers.
    SynStream {
        /// The stream.
        stream: u32,
        /// FLAG_FIN, unidirectional.
        flags: u8,
        /// Its headers.
        headers: Headers,
    },
    /// SYN_REPLY: the stream is accepted.
    SynReply {
        /// The stream.
        stream: u32,
        /// Flags.
        flags: u8,
        /// Reply headers.
        headers: Headers,
    },
    /// RST_STREAM: the stream is aborted.
    RstStream {
        /// The stream.
        stream: u32,
        /// Why.
        status: u32,
    },
    /// PING: to be echoed.
    Ping(u32),
    /// GOAWAY: the peer is closing the connection.
    GoAway {
        /// The last stream it accepted.
        last_stream: u32,
        /// Why.
        status: u32,
    },
    /// Data on a stream.
    Data {
        /// The stream.
        stream: u32,
        /// FLAG_FIN.
        flags: u8,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A frame this implementation reads and ignores (SETTINGS, WINDOW_UPDATE,
    /// HEADERS, unknown types).
    Other(u16),
}

/// The connection's header compression: a deflate stream each way, both primed with
/// [`DICTIONARY`].
pub struct HeaderCodec {
    inflate: Decompress,
    deflate: Compress,
}

impl Default for HeaderCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCodec {
    /// A fresh pair of contexts.
    pub fn new() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(DICTIONARY)
            .expect("zlib accepts the SPDY dictionary");
        HeaderCodec {
            inflate: Decompress::new(true),
            deflate,
        }
    }

    /// Decompresses one header block and parses its name/value pairs.
    pub fn decode(&mut self, block: &[u8]) -> io::Result<Headers> {
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            out.reserve(4096);
            let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
            let r = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.inflate.total_in() - in0) as usize;
            let produced = self.inflate.total_out() - out0;
            input = &input[used..];
            match r {
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| bad(format!("header dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(bad(format!("header block: {e}"))),
                Ok(_) => {}
            }
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if used == 0 && produced == 0 {
                return Err(bad("header block does not decompress".into()));
            }
            if out.len() > MAX_FRAME {
                return Err(bad("header block too large".into()));
            }
        }
        parse_headers(&out).ok_or_else(|| bad("malformed header block".into()))
    }

    /// Serializes and compresses a header block (sync-flushed, as spdystream does).
    pub fn encode(&mut self, headers: &[(&str, &str)]) -> io::Result<Vec<u8>> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input: &[u8] = &raw;
        loop {
            out.reserve(raw.len() + 64);
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| io::Error::other(format!("header compression: {e}")))?;
            input = &input[(self.deflate.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        Ok(out)
    }
}

/// A name/value block: a 32-bit count, then 32-bit-length-prefixed names and values.
/// Repeated values of one name are NUL-separated; they are kept joined.
fn parse_headers(b: &[u8]) -> Option<Headers> {
    let u32_at = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
    };
    let n = u32_at(b, 0)? as usize;
    let mut i = 4;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let kl = u32_at(b, i)? as usize;
        let k = std::str::from_utf8(b.get(i + 4..i + 4 + kl)?).ok()?;
        i += 4 + kl;
        let vl = u32_at(b, i)? as usize;
        let v = std::str::from_utf8(b.get(i + 4..i + 4 + vl)?).ok()?;
        i += 4 + vl;
        out.push((k.to_ascii_lowercase(), v.to_owned()));
    }
    Some(out)
}

/// Reads the next frame.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    codec: &mut HeaderCodec,
) -> io::Result<Frame> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head).await?;
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    let word = |i: usize| -> u32 {
        body.get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0)
    };
    if head[0] & 0x80 == 0 {
        let stream = u32::from_be_bytes([head[0] & 0x7f, head[1], head[2], head[3]]);
        return Ok(Frame::Data {
            stream,
            flags,
            data: body,
        });
    }
    let ty = u16::from_be_bytes([head[2], head[3]]);
    Ok(match ty {
        1 => Frame::SynStream {
            stream: word(0) & 0x7fff_ffff,
            flags,
            headers: codec.decode(body.get(10..).unwrap_or(&[]))?,
        },
        2 => Frame::SynReply {
            stream: word(0) & 0x7fff_ffff,
            flags,
            headers: codec.decode(body.get(4..).unwrap_or(&[]))?,
        },
        3 => Frame::RstStream {
            stream: word(0) & 0x7fff_ffff,
            status: word(4),
        },
        6 => Frame::Ping(word(0)),
        7 => Frame::GoAway {
            last_stream: word(0) & 0x7fff_ffff,
            status: word(4),
        },
        8 => {
            // HEADERS still advances the decompression context.
            codec.decode(body.get(4..).unwrap_or(&[]))?;
            Frame::Other(ty)
        }
        other => Frame::Other(other),
    })
}

fn control(ty: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + body.len());
    f.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    f.extend_from_slice(&ty.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(body);
    f
}

/// A SYN_REPLY for `stream`.
pub fn syn_reply(
    codec: &mut HeaderCodec,
    stream: u32,
    headers: &[(&str, &str)],
) -> io::Result<Vec<u8>> {
    let mut body = stream.to_be_bytes().to_vec();
    body.extend(codec.encode(headers)?);
    Ok(control(2, 0, &body))
}

/// A SYN_STREAM opening `stream`.
pub fn syn_stream(
    codec: &mut HeaderCodec,
    stream: u32,
    flags: u8,
    headers: &[(&str, &str)],
) -> io::Result<Vec<u8>> {
    let mut body = stream.to_be_bytes().to_vec();
    body.extend_from_slice(&0u32.to_be_bytes());
    body.extend_from_slice(&[0, 0]);
    body.extend(codec.encode(headers)?);
    Ok(control(1, flags, &body))
}

/// A PING answer (same id).
pub fn ping(id: u32) -> Vec<u8> {
    control(6, 0, &id.to_be_bytes())
}

/// A RST_STREAM.
pub fn rst_stream(stream: u32, status: u32) -> Vec<u8> {
    let mut body = stream.to_be_bytes().to_vec();
    body.extend_from_slice(&status.to_be_bytes());
    control(3, 0, &body)
}

/// A GOAWAY.
pub fn go_away(last_stream: u32) -> Vec<u8> {
    let mut body = last_stream.to_be_bytes().to_vec();
    body.extend_from_slice(&0u32.to_be_bytes());
    control(7, 0, &body)
}

/// A data frame (split by the caller into frames of at most [`MAX_FRAME`] - 1 bytes).
pub fn data(stream: u32, flags: u8, bytes: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + bytes.len());
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(bytes.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(bytes);
    f
}

/// The header's value, if present.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(bytes: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for x in bytes {
            a = (a + u32::from(*x)) % 65_521;
            b = (b + a) % 65_521;
        }
        (b << 16) | a
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(adler32(DICTIONARY), 0xe3c6_a7c2);
    }

    /// A SYN_STREAM as Go's spdystream writes it (stream 1, `streamtype: stdout`).
    #[tokio::test]
    async fn reads_what_spdystream_writes() {
        let wire: &[u8] = b"\x80\x03\x00\x01\x00\x00\x00\x2b\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x78\xf9\xe3\xc6\xa7\xc2\x62\x60\x60\x60\x04\xa7\xb3\x92\xa2\xd4\xc4\x5c\x68\x51\xc2\x56\x5c\x92\x92\x5f\x5a\x02\x00\x00\x00\xff\xff";
        let mut codec = HeaderCodec::new();
        let mut r = wire;
        let f = read_frame(&mut r, &mut codec).await.unwrap();
        assert_eq!(
            f,
            Frame::SynStream {
                stream: 1,
                flags: 0,
                headers: vec![("streamtype".into(), "stdout".into())]
            }
        );
    }

    #[tokio::test]
    async fn frames_round_trip_with_one_context_per_direction() {
        let (mut tx, mut rx) = (HeaderCodec::new(), HeaderCodec::new());
        let mut wire = Vec::new();
        wire.extend(
            syn_stream(
                &mut tx,
                1,
                0,
                &[("streamtype", "error"), ("port", "80"), ("requestid", "0")],
            )
            .unwrap(),
        );
        wire.extend(
            syn_stream(
                &mut tx,
                3,
                FLAG_FIN,
                &[("streamtype", "data"), ("port", "80"), ("requestid", "0")],
            )
            .unwrap(),
        );
        wire.extend(data(3, FLAG_FIN, b"hello"));
        wire.extend(ping(7));
        wire.extend(syn_reply(&mut tx, 3, &[]).unwrap());
        let mut r: &[u8] = &wire;
        let f1 = read_frame(&mut r, &mut rx).await.unwrap();
        assert!(
            matches!(&f1, Frame::SynStream { stream: 1, headers, .. } if header(headers, "streamtype") == Some("error"))
        );
        let f2 = read_frame(&mut r, &mut rx).await.unwrap();
        assert!(
            matches!(&f2, Frame::SynStream { stream: 3, flags: FLAG_FIN, headers } if header(headers, "port") == Some("80"))
        );
        assert_eq!(
            read_frame(&mut r, &mut rx).await.unwrap(),
            Frame::Data {
                stream: 3,
                flags: FLAG_FIN,
                data: b"hello".to_vec()
            }
        );
        assert_eq!(read_frame(&mut r, &mut rx).await.unwrap(), Frame::Ping(7));
        assert_eq!(
            read_frame(&mut r, &mut rx).await.unwrap(),
            Frame::SynReply {
                stream: 3,
                flags: 0,
                headers: vec![]
            }
        );
    }
}
