//! Request parsing and routing for the target server: bytes in, a [`Request`] (what to answer
//! and how to frame the connection) out.
//!
//! Pure: no sockets, no clocks, no allocation for the built-in routes. [`parse`] looks at the
//! start of a buffer that may hold a partial request, one request, or several pipelined ones,
//! and says how many bytes the first request's head took; the caller skips its body
//! ([`Request::body_len`]) and calls again. Heads are parsed with `httparse`; routes are
//! matched on the path (the query string only matters to `/chunked` and the WebSocket routes).
//! [`parse_with`] is the same parser with another router: the mock mode's
//! (`super::mock`).

use std::time::Duration;

use super::mock::{MockReply, MockUpgrade};
use crate::proto::ws;

/// Longest request head accepted; a longer one is answered with 431 and the connection closed.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one request head (more is answered with 431).
const MAX_HEADERS: usize = 64;
/// Largest body `/bytes/{n}` and `/chunked/{n}` send.
pub const MAX_BODY: u64 = 1 << 30;
/// Longest delay `/delay/{ms}` accepts (one hour).
pub const MAX_DELAY_MS: u32 = 3_600_000;

/// What to answer one request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `/`: 200 with the body `ok`.
    Ok,
    /// `/delay/{ms}`: 200 `ok` after `ms` milliseconds.
    Delay { ms: u32 },
    /// `/status/{code}`: that status with an empty body.
    Status(u16),
    /// `/bytes/{n}`: 200 with `n` bytes of body.
    Bytes(u64),
    /// `/chunked/{n}`: 200 with `n` bytes in chunks of at most 4096, optionally a trailer.
    Chunked { len: u64, trailer: bool },
    /// No such route: 404.
    NotFound,
    /// A known route with a bad parameter: 400, the connection stays open.
    BadParam(&'static str),
    /// A method other than GET, HEAD, POST or PUT: 405.
    MethodNotAllowed,
    /// Not HTTP/1.x: 400 and close.
    Malformed(&'static str),
    /// The head is larger than [`MAX_HEAD`] or has too many fields: 431 and close.
    HeadTooLarge,
    /// A `Transfer-Encoding` request body: 501 and close.
    ChunkedBody,
    /// `/ws/echo` or `/ws/pubsub/{topic}` with a valid WebSocket Upgrade request: the worker
    /// answers 101 and switches the connection to WebSocket (it re-reads the head for the
    /// key and the target).
    WebSocket,
    /// A WebSocket route requested without `Upgrade: websocket`: 426.
    UpgradeRequired,
    /// Mock mode: a rendered response (boxed, so the built-in replies stay 16 bytes).
    Mock(Box<MockReply>),
    /// Mock mode: a valid upgrade on a WebSocket route.
    MockUpgrade(Box<MockUpgrade>),
    /// Mock mode: which route answers depends on the request body: read it, then route
    /// the request again with it.
    ReadBody,
    /// Mock mode: a body the mock would have to read is larger than its `max_body`: 413.
    BodyTooLarge { max: u64 },
}

impl Reply {
    /// Whether the connection must close after this reply (the request stream can no
    /// longer be trusted).
    pub fn closes(&self) -> bool {
        matches!(
            self,
            Reply::Malformed(_) | Reply::HeadTooLarge | Reply::ChunkedBody
        )
    }

    /// How long the answer waits before it is sent (`None`: at once).
    #[inline]
    pub fn delay(&self) -> Option<Duration> {
        match self {
            Reply::Delay { ms } if *ms > 0 => Some(Duration::from_millis(u64::from(*ms))),
            Reply::Mock(mock) if !mock.delay.is_zero() => Some(mock.delay),
            _ => None,
        }
    }
}

/// One parsed request, reduced to what the server needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub reply: Reply,
    /// HEAD: send the head only.
    pub head: bool,
    /// The connection stays open after the response.
    pub keep_alive: bool,
    /// The request was HTTP/1.0 (no chunked responses; keep-alive must be announced).
    pub http10: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// Body bytes following the head (Content-Length), to read and discard.
    pub body_len: u64,
}

impl Request {
    /// A request that could not be parsed: answered with `reply`, then the connection closes.
    pub fn reject(reply: Reply) -> Request {
        Request {
            reply,
            head: false,
            keep_alive: false,
            http10: false,
            expect_continue: false,
            body_len: 0,
        }
    }
}

/// What the start of a buffer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A complete head of `len` bytes (the body, if any, follows).
    Complete { request: Request, len: usize },
    /// The head is incomplete (and not yet over [`MAX_HEAD`]): wait for more bytes.
    Partial,
    /// Unusable input: answer with this reply and close.
    Reject(Reply),
}

/// A complete request head, as a router sees it.
pub struct Head<'h, 'b> {
    pub method: &'b str,
    /// The request target: path and optional query.
    pub target: &'b str,
    pub headers: &'h [httparse::Header<'b>],
    /// The head's bytes, from the request line to the blank line.
    pub raw: &'b [u8],
    /// Body bytes following the head (Content-Length).
    pub body_len: u64,
}

impl<'b> Head<'_, 'b> {
    /// The value of the first header field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Parses the request head at the start of `buf` and routes it to a built-in route.
pub fn parse(buf: &[u8]) -> Parsed {
    parse_with(buf, builtin_reply)
}

/// The built-in routes' answer to a complete head.
pub fn builtin_reply(head: &Head<'_, '_>) -> Reply {
    let reply = if head.method == "HEAD" || matches!(head.method, "GET" | "POST" | "PUT") {
        route(head.target)
    } else {
        Reply::MethodNotAllowed
    };
    if reply == Reply::WebSocket {
        return websocket_reply(head.raw, head.headers, head.body_len);
    }
    reply
}

/// Parses the request head at the start of `buf`; `answer` decides the reply of a complete
/// head (framing, limits and malformed input are handled here, the same for every router).
#[inline]
pub fn parse_with(buf: &[u8], answer: impl FnOnce(&Head<'_, '_>) -> Reply) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Parsed::Reject(Reply::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Reject(Reply::HeadTooLarge),
        Err(e) => return Parsed::Reject(Reply::Malformed(parse_error(e))),
    };
    if len > MAX_HEAD {
        return Parsed::Reject(Reply::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::Reject(Reply::Malformed("incomplete request line"));
    };
    let http10 = version == 0;
    let (mut saw_close, mut saw_keep_alive) = (false, false);
    let mut body_len: Option<u64> = None;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let Some(n) = parse_decimal(h.value) else {
                return Parsed::Reject(Reply::Malformed("invalid Content-Length"));
            };
            if body_len.is_some_and(|old| old != n) {
                return Parsed::Reject(Reply::Malformed("conflicting Content-Length headers"));
            }
            body_len = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Parsed::Reject(Reply::ChunkedBody);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                saw_close |= token.eq_ignore_ascii_case(b"close");
                saw_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    let keep_alive = !saw_close && (!http10 || saw_keep_alive);
    let head = method == "HEAD";
    let reply = answer(&Head {
        method,
        target,
        headers: req.headers,
        raw: &buf[..len],
        body_len: body_len.unwrap_or(0),
    });
    let request = Request {
        reply,
        head,
        keep_alive,
        http10,
        expect_continue: expect_continue && !http10,
        body_len: body_len.unwrap_or(0),
    };
    Parsed::Complete { request, len }
}

/// The answer to a request for a WebSocket route: the upgrade (checked by the WebSocket
/// codec's server handshake), 426 without `Upgrade: websocket`, or 400 for a bad upgrade.
pub fn websocket_reply(head: &[u8], headers: &[httparse::Header<'_>], body_len: u64) -> Reply {
    let upgrading = headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("upgrade")
            && h.value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    });
    if !upgrading {
        return Reply::UpgradeRequired;
    }
    if body_len > 0 {
        return Reply::BadParam("a WebSocket upgrade request has no body");
    }
    match ws::check_upgrade_request(head) {
        Ok(Some(_)) => Reply::WebSocket,
        Err(ws::WsError::BadUpgradeRequest { what }) => Reply::BadParam(what),
        _ => Reply::BadParam("malformed WebSocket upgrade request"),
    }
}

/// A WebSocket route's target: pubsub topic (`None`: echo) and misbehaviour knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WsTarget<'a> {
    /// `/ws/pubsub/{topic}`: the topic; `None` for `/ws/echo`.
    pub topic: Option<&'a str>,
    /// `close_after=N`: close (1000) after N messages.
    pub close_after: Option<u64>,
    /// `delay_ms=D`: delay every echo by D ms.
    pub delay_ms: Option<u32>,
    /// `drop_at_ms=T`: drop the TCP connection (no close frame) T ms after the upgrade.
    pub drop_at_ms: Option<u32>,
}

/// Reads a WebSocket route's target; `None` if it is not one, `Err` for a bad parameter.
pub fn ws_target(target: &str) -> Option<Result<WsTarget<'_>, &'static str>> {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (target, ""),
    };
    let topic = if path == "/ws/echo" {
        None
    } else {
        let topic = path.strip_prefix("/ws/pubsub/")?;
        if topic.is_empty() || topic.contains('/') {
            return Some(Err(
                "/ws/pubsub/{topic} takes a non-empty topic without '/'",
            ));
        }
        Some(topic)
    };
    Some(ws_knobs(query).map(|knobs| WsTarget { topic, ..knobs }))
}

/// The misbehaviour knobs of a WebSocket route's query string (`topic` stays `None`).
pub fn ws_knobs(query: &str) -> Result<WsTarget<'static>, &'static str> {
    let mut parsed = WsTarget::default();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let n = parse_decimal(value.as_bytes());
        let ms = n
            .filter(|&n| n <= u64::from(MAX_DELAY_MS))
            .map(|n| n as u32);
        match key {
            "close_after" => match n {
                Some(n) if n > 0 => parsed.close_after = Some(n),
                _ => return Err("close_after takes a message count of 1 or more"),
            },
            "delay_ms" => match ms {
                Some(ms) => parsed.delay_ms = Some(ms),
                None => return Err("delay_ms takes milliseconds from 0 to 3600000"),
            },
            "drop_at_ms" => match ms {
                Some(ms) => parsed.drop_at_ms = Some(ms),
                None => return Err("drop_at_ms takes milliseconds from 0 to 3600000"),
            },
            _ => {}
        }
    }
    Ok(parsed)
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::Token => "invalid method or request target",
        httparse::Error::Version => "not an HTTP/1.0 or HTTP/1.1 request",
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        _ => "malformed request head",
    }
}

/// Maps a request target (path and optional query) to a reply.
pub fn route(target: &str) -> Reply {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    if path == "/" {
        return Reply::Ok;
    }
    if let Some(ws) = ws_target(target) {
        return match ws {
            Ok(_) => Reply::WebSocket,
            Err(why) => Reply::BadParam(why),
        };
    }
    if let Some(ms) = path.strip_prefix("/delay/") {
        return match parse_decimal(ms.as_bytes()) {
            Some(ms) if ms <= u64::from(MAX_DELAY_MS) => Reply::Delay { ms: ms as u32 },
            _ => Reply::BadParam("/delay/{ms} takes milliseconds from 0 to 3600000"),
        };
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return match parse_decimal(code.as_bytes()) {
            Some(code @ 200..=599) => Reply::Status(code as u16),
            _ => Reply::BadParam("/status/{code} takes a status code from 200 to 599"),
        };
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        return match parse_decimal(n.as_bytes()) {
            Some(n) if n <= MAX_BODY => Reply::Bytes(n),
            _ => Reply::BadParam("/bytes/{n} takes a byte count from 0 to 1073741824"),
        };
    }
    if let Some(n) = path.strip_prefix("/chunked/") {
        return match parse_decimal(n.as_bytes()) {
            Some(len) if len <= MAX_BODY => Reply::Chunked {
                len,
                trailer: query.is_some_and(wants_trailer),
            },
            _ => Reply::BadParam("/chunked/{n} takes a byte count from 0 to 1073741824"),
        };
    }
    Reply::NotFound
}

fn wants_trailer(query: &str) -> bool {
    query
        .split('&')
        .any(|kv| matches!(kv, "trailer=1" | "trailer=true"))
}

/// A plain decimal number (digits only, at most 19 of them so it fits a u64).
fn parse_decimal(s: &[u8]) -> Option<u64> {
    let s = s.trim_ascii();
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (Request, usize) {
        match parse(buf) {
            Parsed::Complete { request, len } => (request, len),
            other => panic!(
                "expected a complete request from {:?}, got {other:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }

    fn reply_of(target: &str) -> Reply {
        complete(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .0
            .reply
    }

    #[test]
    fn routes_each_path() {
        assert_eq!(reply_of("/"), Reply::Ok);
        assert_eq!(reply_of("/?cache=1"), Reply::Ok);
        assert_eq!(reply_of("/delay/50"), Reply::Delay { ms: 50 });
        assert_eq!(reply_of("/delay/0"), Reply::Delay { ms: 0 });
        assert_eq!(reply_of("/status/503"), Reply::Status(503));
        assert_eq!(reply_of("/status/204"), Reply::Status(204));
        assert_eq!(reply_of("/bytes/1000000"), Reply::Bytes(1_000_000));
        assert_eq!(reply_of("/bytes/1073741824"), Reply::Bytes(MAX_BODY));
        assert_eq!(
            reply_of("/chunked/10000"),
            Reply::Chunked {
                len: 10_000,
                trailer: false
            }
        );
        assert_eq!(
            reply_of("/chunked/10000?trailer=1"),
            Reply::Chunked {
                len: 10_000,
                trailer: true
            }
        );
        assert_eq!(
            reply_of("/chunked/7?x=2&trailer=true"),
            Reply::Chunked {
                len: 7,
                trailer: true
            }
        );
        assert_eq!(
            reply_of("/chunked/7?trailer=0"),
            Reply::Chunked {
                len: 7,
                trailer: false
            }
        );
    }

    #[test]
    fn bad_paths_and_parameters() {
        for target in ["/nope", "/bytes", "/delay", "/index.html", "//", "/status"] {
            assert_eq!(reply_of(target), Reply::NotFound, "{target}");
        }
        for target in [
            "/bytes/",
            "/bytes/-1",
            "/bytes/10/",
            "/bytes/1x",
            "/bytes/1073741825",
            "/bytes/99999999999999999999",
            "/delay/abc",
            "/delay/3600001",
            "/status/101",
            "/status/100",
            "/status/199",
            "/status/600",
            "/status/20",
            "/chunked/",
            "/chunked/1073741825",
        ] {
            assert!(
                matches!(reply_of(target), Reply::BadParam(_)),
                "{target}: {:?}",
                reply_of(target)
            );
        }
    }

    #[test]
    fn methods() {
        let (r, _) = complete(b"HEAD /bytes/100 HTTP/1.1\r\n\r\n");
        assert!(r.head);
        assert_eq!(r.reply, Reply::Bytes(100));
        for m in ["POST", "PUT"] {
            let (r, _) =
                complete(format!("{m} / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").as_bytes());
            assert_eq!((r.reply, r.head, r.body_len), (Reply::Ok, false, 3));
        }
        let (r, _) = complete(b"DELETE / HTTP/1.1\r\n\r\n");
        assert_eq!(r.reply, Reply::MethodNotAllowed);
        assert!(r.keep_alive);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(complete(b"GET / HTTP/1.1\r\n\r\n").0.keep_alive);
        assert!(
            !complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !complete(b"GET / HTTP/1.1\r\nconnection: Keep-Alive, CLOSE\r\n\r\n")
                .0
                .keep_alive
        );
        let (r, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!r.keep_alive && r.http10);
        assert!(
            complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !complete(b"GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn bodies_and_expect() {
        let (r, len) =
            complete(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
        assert_eq!(
            len,
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n".len()
        );
        assert_eq!(r.body_len, 5);
        assert!(r.expect_continue);
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Parsed::Reject(Reply::Malformed("conflicting Content-Length headers"))
        );
        assert_eq!(
            complete(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n")
                .0
                .body_len,
            5
        );
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Parsed::Reject(Reply::Malformed(_))
        ));
        assert_eq!(
            parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Parsed::Reject(Reply::ChunkedBody)
        );
        assert!(Reply::ChunkedBody.closes());
    }

    #[test]
    fn malformed_and_oversized() {
        assert!(matches!(
            parse(b"GARBAGE\r\n\r\n"),
            Parsed::Reject(Reply::Malformed(_))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/2.0\r\n\r\n"),
            Parsed::Reject(Reply::Malformed(_))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"),
            Parsed::Reject(Reply::Malformed(_))
        ));
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse(&big), Parsed::Reject(Reply::HeadTooLarge));
        big.truncate(MAX_HEAD - 100);
        assert_eq!(parse(&big), Parsed::Partial);
        big.extend_from_slice(&[b'a'; 200]);
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&big), Parsed::Reject(Reply::HeadTooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Parsed::Reject(Reply::HeadTooLarge));
    }

    #[test]
    fn pipelined_requests_in_one_buffer() {
        let buf = b"GET / HTTP/1.1\r\n\r\nPOST /status/503 HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyHEAD /bytes/9 HTTP/1.1\r\n\r\nGET /x";
        let mut pos = 0;
        let mut replies = Vec::new();
        while let Parsed::Complete { request, len } = parse(&buf[pos..]) {
            replies.push((request.reply, request.head));
            pos += len + request.body_len as usize;
        }
        assert_eq!(
            replies,
            vec![
                (Reply::Ok, false),
                (Reply::Status(503), false),
                (Reply::Bytes(9), true)
            ]
        );
        assert_eq!(&buf[pos..], b"GET /x");
        assert_eq!(parse(&buf[pos..]), Parsed::Partial);
    }

    #[test]
    fn request_split_at_every_byte() {
        let buf: &[u8] = b"GET /chunked/5?trailer=1 HTTP/1.1\r\nHost: localhost:8080\r\nConnection: close\r\n\r\n";
        for cut in 0..buf.len() {
            assert_eq!(parse(&buf[..cut]), Parsed::Partial, "cut at {cut}");
        }
        let (r, len) = complete(buf);
        assert_eq!(len, buf.len());
        assert_eq!(
            r.reply,
            Reply::Chunked {
                len: 5,
                trailer: true
            }
        );
        assert!(!r.keep_alive);
    }

    #[test]
    fn websocket_routes() {
        let upgrade = |target: &str, extra: &str| {
            let head = format!(
                "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
            );
            complete(head.as_bytes()).0.reply
        };
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        assert_eq!(upgrade("/ws/echo", key), Reply::WebSocket);
        assert_eq!(
            upgrade("/ws/pubsub/t1?close_after=3", key),
            Reply::WebSocket
        );
        assert!(matches!(upgrade("/ws/echo", ""), Reply::BadParam(_)));
        assert!(matches!(
            upgrade("/ws/echo", "Sec-WebSocket-Key: short\r\n"),
            Reply::BadParam(_)
        ));
        assert!(matches!(upgrade("/ws/pubsub/", key), Reply::BadParam(_)));
        assert!(matches!(
            upgrade("/ws/echo?close_after=0", key),
            Reply::BadParam(_)
        ));
        assert_eq!(reply_of("/ws/echo"), Reply::UpgradeRequired);
        assert_eq!(reply_of("/ws/pubsub/x"), Reply::UpgradeRequired);
        assert_eq!(reply_of("/ws/other"), Reply::NotFound);
        assert_eq!(
            ws_target("/ws/pubsub/t?close_after=3&delay_ms=5&drop_at_ms=200&x=1"),
            Some(Ok(WsTarget {
                topic: Some("t"),
                close_after: Some(3),
                delay_ms: Some(5),
                drop_at_ms: Some(200),
            }))
        );
        assert_eq!(ws_target("/ws/echo"), Some(Ok(WsTarget::default())));
        assert!(matches!(ws_target("/ws/echo?delay_ms=x"), Some(Err(_))));
    }

    #[test]
    fn decimal_parsing() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b" 42 "), Some(42));
        assert_eq!(parse_decimal(b"18446744073709551615"), None);
        assert_eq!(
            parse_decimal(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(parse_decimal(b""), None);
    }
}
