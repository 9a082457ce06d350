//! Encoding replies into a connection's output buffer.
//!
//! Pure: [`encode`] appends a response head (and a small body) to a `Vec<u8>`; a large body
//! comes back as a [`Stream`] the worker sends piece by piece, most pieces straight from
//! static memory ([`BODY`], [`CHUNK_FRAMES`]) so a 1 GiB response costs no allocation and no
//! copying. Headers are a fixed cheap set (`Server: blaster`, framing, `Connection` when
//! needed; no `Date`).
//!
//! Body bytes follow one fixed pattern: byte `i` of every body is `PATTERN[i % 64]`, so any
//! body's checksum ([`body_sum`]) is known without reading it.

use super::http::Reply;
use super::mock::MockReply;

/// The repeating body pattern.
pub const PATTERN: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
/// Size of one static body piece (a multiple of 64, so every piece starts the pattern anew).
const STATIC_LEN: usize = 64 * 1024;
/// Largest chunk of a chunked response.
pub const CHUNK: usize = 4096;
/// One full chunk on the wire: `1000\r\n`, 4096 bytes, `\r\n`.
const FRAME: usize = 6 + CHUNK + 2;
/// Full chunks sent by one send.
const FRAMES: usize = 16;
/// Bodies up to this size are copied behind the head (one send) instead of streamed.
const INLINE_BODY: u64 = 16 * 1024;

/// 64 KiB of body pattern, sent repeatedly for `/bytes/{n}`.
pub static BODY: [u8; STATIC_LEN] = pattern_body();
/// [`FRAMES`] complete 4096-byte chunks (identical, since 4096 is a multiple of 64).
static CHUNK_FRAMES: [u8; FRAME * FRAMES] = chunk_frames();

const fn pattern_body() -> [u8; STATIC_LEN] {
    let mut body = [0u8; STATIC_LEN];
    let mut i = 0;
    while i < STATIC_LEN {
        body[i] = PATTERN[i % PATTERN.len()];
        i += 1;
    }
    body
}

const fn chunk_frames() -> [u8; FRAME * FRAMES] {
    let mut frames = [0u8; FRAME * FRAMES];
    let mut f = 0;
    while f < FRAMES {
        let base = f * FRAME;
        let size = b"1000\r\n";
        let mut i = 0;
        while i < size.len() {
            frames[base + i] = size[i];
            i += 1;
        }
        let mut j = 0;
        while j < CHUNK {
            frames[base + 6 + j] = PATTERN[j % PATTERN.len()];
            j += 1;
        }
        frames[base + 6 + CHUNK] = b'\r';
        frames[base + 7 + CHUNK] = b'\n';
        f += 1;
    }
    frames
}

/// The sum of the first `n` body bytes (the `X-Checksum` trailer of `/chunked/{n}?trailer=1`).
pub fn body_sum(n: u64) -> u64 {
    let full: u64 = PATTERN.iter().map(|&b| u64::from(b)).sum();
    let rest: u64 = PATTERN[..(n % 64) as usize]
        .iter()
        .map(|&b| u64::from(b))
        .sum();
    (n / 64) * full + rest
}

/// How the request asked for its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// HEAD: the head only.
    pub head: bool,
    /// Announce `Connection: close` (the connection closes after this response).
    pub close: bool,
    /// The request was HTTP/1.0: announce keep-alive, never chunk.
    pub http10: bool,
    /// Send `100 Continue` first (the client waits for it before sending its body).
    pub expect_continue: bool,
}

/// The rest of a large body, produced piece by piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Bytes {
        left: u64,
    },
    Chunked {
        left: u64,
        total: u64,
        trailer: bool,
        ended: bool,
    },
}

/// The next piece of a [`Stream`].
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Send this static slice next.
    Send(&'static [u8]),
    /// The piece was appended to the output buffer.
    Appended,
}

impl Stream {
    /// Produces the next piece: static memory for full 64 KiB / 16-chunk pieces, otherwise
    /// the tail appended to `out`.
    pub fn next_piece(&mut self, out: &mut Vec<u8>) -> Piece {
        match self {
            Stream::Bytes { left } => {
                let n = (*left).min(STATIC_LEN as u64);
                *left -= n;
                Piece::Send(&BODY[..n as usize])
            }
            Stream::Chunked { left, .. } => {
                let frames = (*left / CHUNK as u64).min(FRAMES as u64);
                if frames > 0 {
                    *left -= frames * CHUNK as u64;
                    return Piece::Send(&CHUNK_FRAMES[..frames as usize * FRAME]);
                }
                self.append_tail(out);
                Piece::Appended
            }
        }
    }

    /// Whether every byte has been produced.
    pub fn finished(&self) -> bool {
        match *self {
            Stream::Bytes { left } => left == 0,
            Stream::Chunked { ended, .. } => ended,
        }
    }

    /// Appends everything still to come (for small bodies sent together with their head).
    fn append_all(&mut self, out: &mut Vec<u8>) {
        if let Stream::Chunked { left, .. } = self {
            while *left >= CHUNK as u64 {
                out.extend_from_slice(&CHUNK_FRAMES[..FRAME]);
                *left -= CHUNK as u64;
            }
        }
        self.append_tail(out);
    }

    /// The last partial chunk, the last-chunk and the trailer section.
    fn append_tail(&mut self, out: &mut Vec<u8>) {
        if let Stream::Chunked {
            left,
            total,
            trailer,
            ended,
        } = self
        {
            debug_assert!(*left < CHUNK as u64);
            if *left > 0 {
                put_hex(out, *left);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&BODY[..*left as usize]);
                out.extend_from_slice(b"\r\n");
                *left = 0;
            }
            out.extend_from_slice(b"0\r\n");
            if *trailer {
                out.extend_from_slice(b"X-Checksum: ");
                put_decimal(out, body_sum(*total));
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            *ended = true;
        }
    }
}

/// The whole keep-alive `GET /` response, the hot path.
const OK_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: blaster\r\nContent-Length: 2\r\n\r\nok";
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How a response body is framed.
enum Framing {
    Length(u64),
    Chunked {
        trailer: bool,
    },
    /// 204 and 304: no body and no Content-Length.
    None,
}

/// Appends the response to `reply` to `out`; returns the part of the body still to send.
pub fn encode(out: &mut Vec<u8>, reply: &Reply, meta: Meta) -> Option<Stream> {
    if meta.expect_continue {
        out.extend_from_slice(CONTINUE);
    }
    match *reply {
        Reply::Mock(ref mock) => {
            mock_response(out, mock, meta);
            None
        }
        Reply::Ok | Reply::Delay { .. } => {
            if !meta.head && !meta.close && !meta.http10 {
                out.extend_from_slice(OK_RESPONSE);
            } else {
                text(out, 200, meta, &[b"ok"], b"");
            }
            None
        }
        Reply::Status(code) => {
            let framing = if code == 204 || code == 304 {
                Framing::None
            } else {
                Framing::Length(0)
            };
            head(out, code, framing, meta, b"");
            None
        }
        Reply::Bytes(n) => bytes(out, n, meta),
        Reply::Chunked { len, .. } if meta.http10 => bytes(out, len, meta),
        Reply::Chunked { len, trailer } => {
            head(out, 200, Framing::Chunked { trailer }, meta, b"");
            if meta.head {
                return None;
            }
            let mut stream = Stream::Chunked {
                left: len,
                total: len,
                trailer,
                ended: false,
            };
            if len <= INLINE_BODY {
                stream.append_all(out);
                return None;
            }
            Some(stream)
        }
        Reply::NotFound => {
            text(
                out,
                404,
                meta,
                &[b"not found: try /, /delay/{ms}, /status/{code}, /bytes/{n} or /chunked/{n}\n"],
                b"",
            );
            None
        }
        Reply::BadParam(why) => {
            text(out, 400, meta, &[why.as_bytes(), b"\n"], b"");
            None
        }
        Reply::MethodNotAllowed => {
            text(
                out,
                405,
                meta,
                &[b"method not allowed: use GET, HEAD, POST or PUT\n"],
                b"Allow: GET, HEAD, POST, PUT\r\n",
            );
            None
        }
        Reply::Malformed(why) => {
            text(
                out,
                400,
                meta,
                &[b"bad request: ", why.as_bytes(), b"\n"],
                b"",
            );
            None
        }
        Reply::HeadTooLarge => {
            text(
                out,
                431,
                meta,
                &[b"request head too large: at most 65536 bytes and 64 header fields\n"],
                b"",
            );
            None
        }
        Reply::UpgradeRequired => {
            text(
                out,
                426,
                meta,
                &[b"upgrade required: this route speaks WebSocket\n"],
                b"Upgrade: websocket\r\n",
            );
            None
        }
        Reply::BodyTooLarge { max } => {
            let mut limit = Vec::new();
            put_decimal(&mut limit, max);
            text(
                out,
                413,
                meta,
                &[
                    b"request body too large for this mock: at most ",
                    &limit,
                    b" bytes (raise max_body in the mock file)\n",
                ],
                b"",
            );
            None
        }
        // The worker answers a valid upgrade itself and reads the body a route needs; these
        // are only reached if it could not.
        Reply::WebSocket | Reply::MockUpgrade(_) | Reply::ReadBody => {
            text(
                out,
                400,
                meta,
                &[b"WebSocket upgrade not possible here\n"],
                b"",
            );
            None
        }
        Reply::ChunkedBody => {
            text(out, 501, meta, &[b"chunked request bodies are not supported: send the body with Content-Length\n"], b"");
            None
        }
    }
}

/// A mock route's rendered response: its status, its header lines, and its body (none for
/// HEAD, 1xx, 204 and 304).
fn mock_response(out: &mut Vec<u8>, mock: &MockReply, meta: Meta) {
    let (headers, body) = mock.bytes.split_at(mock.body_at.min(mock.bytes.len()));
    let bodiless = matches!(mock.status, 100..=199 | 204 | 304);
    let framing = if bodiless {
        Framing::None
    } else {
        Framing::Length(body.len() as u64)
    };
    head(out, mock.status, framing, meta, headers);
    if !meta.head && !bodiless {
        out.extend_from_slice(body);
    }
}

fn bytes(out: &mut Vec<u8>, n: u64, meta: Meta) -> Option<Stream> {
    head(out, 200, Framing::Length(n), meta, b"");
    if meta.head || n == 0 {
        return None;
    }
    if n <= INLINE_BODY {
        out.extend_from_slice(&BODY[..n as usize]);
        return None;
    }
    Some(Stream::Bytes { left: n })
}

/// A response with a small body made of `parts`.
fn text(out: &mut Vec<u8>, code: u16, meta: Meta, parts: &[&[u8]], extra: &[u8]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    head(out, code, Framing::Length(len as u64), meta, extra);
    if !meta.head {
        for part in parts {
            out.extend_from_slice(part);
        }
    }
}

fn head(out: &mut Vec<u8>, code: u16, framing: Framing, meta: Meta, extra: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    put_decimal(out, u64::from(code));
    out.push(b' ');
    out.extend_from_slice(reason(code).as_bytes());
    out.extend_from_slice(b"\r\nServer: blaster\r\n");
    if meta.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if meta.http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            put_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked { trailer } => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            if trailer {
                out.extend_from_slice(b"Trailer: X-Checksum\r\n");
            }
        }
        Framing::None => {}
    }
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

/// The reason phrase of a status code (IANA registry; "Status" for unregistered codes).
pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        511 => "Network Authentication Required",
        _ => "Status",
    }
}

pub(super) fn put_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn put_hex(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(reply: Reply, meta: Meta) -> (String, Option<Stream>) {
        let mut out = Vec::new();
        let stream = encode(&mut out, &reply, meta);
        (String::from_utf8(out).expect("ascii"), stream)
    }

    /// Drains a stream the way the worker does, collecting every byte.
    fn drain(mut stream: Stream, out: &mut Vec<u8>) {
        for _ in 0..1_000_000 {
            if stream.finished() {
                return;
            }
            match stream.next_piece(out) {
                Piece::Send(s) => out.extend_from_slice(s),
                Piece::Appended => {}
            }
        }
        panic!("stream never finished");
    }

    #[test]
    fn root_fast_path_and_variants() {
        let (text, stream) = encoded(Reply::Ok, Meta::default());
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nServer: blaster\r\nContent-Length: 2\r\n\r\nok"
        );
        assert!(stream.is_none());
        let (text, _) = encoded(
            Reply::Ok,
            Meta {
                close: true,
                ..Meta::default()
            },
        );
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nServer: blaster\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
        );
        let (text, _) = encoded(
            Reply::Delay { ms: 5 },
            Meta {
                head: true,
                http10: true,
                ..Meta::default()
            },
        );
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nServer: blaster\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n"
        );
        let (text, _) = encoded(
            Reply::Ok,
            Meta {
                expect_continue: true,
                ..Meta::default()
            },
        );
        assert!(text.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn status_bodies() {
        let (text, _) = encoded(Reply::Status(503), Meta::default());
        assert_eq!(
            text,
            "HTTP/1.1 503 Service Unavailable\r\nServer: blaster\r\nContent-Length: 0\r\n\r\n"
        );
        for code in [204, 304] {
            let (text, _) = encoded(Reply::Status(code), Meta::default());
            assert!(!text.contains("Content-Length"), "{text}");
            assert!(text.ends_with("\r\n\r\n"));
        }
        let (text, _) = encoded(Reply::Status(299), Meta::default());
        assert!(text.starts_with("HTTP/1.1 299 Status\r\n"));
    }

    #[test]
    fn bytes_inline_and_streamed() {
        let (text, stream) = encoded(Reply::Bytes(100), Meta::default());
        assert!(stream.is_none());
        assert!(text.ends_with(&format!(
            "Content-Length: 100\r\n\r\n{}",
            String::from_utf8_lossy(&BODY[..100])
        )));
        let (text, stream) = encoded(
            Reply::Bytes(100),
            Meta {
                head: true,
                ..Meta::default()
            },
        );
        assert!(stream.is_none() && text.ends_with("Content-Length: 100\r\n\r\n"));
        for n in [16 * 1024 + 1, 65536, 65537, 1_000_000] {
            let mut out = Vec::new();
            let stream = encode(&mut out, &Reply::Bytes(n), Meta::default()).expect("streamed");
            let head_len = out.len();
            drain(stream, &mut out);
            let body = &out[head_len..];
            assert_eq!(body.len() as u64, n);
            assert!(body.iter().enumerate().all(|(i, &b)| b == PATTERN[i % 64]));
        }
    }

    /// Decodes a chunked body; returns (body, trailer section).
    fn dechunk(mut wire: &[u8]) -> (Vec<u8>, String) {
        let mut body = Vec::new();
        loop {
            let line_end = wire
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("size line");
            let size =
                usize::from_str_radix(std::str::from_utf8(&wire[..line_end]).expect("ascii"), 16)
                    .expect("hex");
            wire = &wire[line_end + 2..];
            if size == 0 {
                return (body, String::from_utf8(wire.to_vec()).expect("ascii"));
            }
            assert!(size <= CHUNK);
            body.extend_from_slice(&wire[..size]);
            assert_eq!(&wire[size..size + 2], b"\r\n");
            wire = &wire[size + 2..];
        }
    }

    #[test]
    fn chunked_sizes_and_trailer() {
        for n in [
            0u64,
            1,
            4095,
            4096,
            4097,
            16 * 1024,
            16 * 1024 + 1,
            65536,
            200_000,
        ] {
            for trailer in [false, true] {
                let mut out = Vec::new();
                if let Some(stream) = encode(
                    &mut out,
                    &Reply::Chunked { len: n, trailer },
                    Meta::default(),
                ) {
                    drain(stream, &mut out);
                }
                let text = String::from_utf8_lossy(&out).to_string();
                let split = text.find("\r\n\r\n").expect("head") + 4;
                assert!(text[..split].contains("Transfer-Encoding: chunked\r\n"));
                assert_eq!(text[..split].contains("Trailer: X-Checksum\r\n"), trailer);
                let (body, trailers) = dechunk(&out[split..]);
                assert_eq!(body.len() as u64, n);
                assert!(body.iter().enumerate().all(|(i, &b)| b == PATTERN[i % 64]));
                let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
                if trailer {
                    assert_eq!(trailers, format!("X-Checksum: {sum}\r\n\r\n"));
                } else {
                    assert_eq!(trailers, "\r\n");
                }
            }
        }
    }

    #[test]
    fn chunked_for_http10_is_plain() {
        let (text, stream) = encoded(
            Reply::Chunked {
                len: 10,
                trailer: true,
            },
            Meta {
                http10: true,
                ..Meta::default()
            },
        );
        assert!(stream.is_none());
        assert!(text.contains("Content-Length: 10\r\n") && !text.contains("chunked"));
    }

    #[test]
    fn errors_say_what_to_do() {
        let (text, _) = encoded(Reply::MethodNotAllowed, Meta::default());
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n") && text.contains("Allow: GET")
        );
        let (text, _) = encoded(
            Reply::Malformed("invalid method"),
            Meta {
                close: true,
                ..Meta::default()
            },
        );
        assert!(
            text.contains("Connection: close\r\n")
                && text.ends_with("bad request: invalid method\n")
        );
        let body = "bad request: invalid method\n";
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
        let (text, _) = encoded(
            Reply::HeadTooLarge,
            Meta {
                close: true,
                ..Meta::default()
            },
        );
        assert!(text.starts_with("HTTP/1.1 431 "));
        let (text, _) = encoded(
            Reply::ChunkedBody,
            Meta {
                close: true,
                ..Meta::default()
            },
        );
        assert!(text.starts_with("HTTP/1.1 501 "));
    }

    #[test]
    fn number_formatting() {
        for n in [0u64, 9, 10, 4095, u64::MAX] {
            let mut out = Vec::new();
            put_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
            out.clear();
            put_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}").as_bytes());
        }
        assert_eq!(
            body_sum(130),
            BODY[..130].iter().map(|&b| u64::from(b)).sum::<u64>()
        );
    }
}
