//! The server's half of the WebSocket opening handshake (RFC 6455 §4.2): the check of a
//! client's Upgrade request and the `101 Switching Protocols` answer.
//!
//! Boundary: bytes only. The request head is parsed by `httparse` and the accept key derived
//! by tungstenite (`derive_accept_key`); the checks are written here, because tungstenite's
//! server handshake drives a blocking stream and owns an `http::Request`. Bytes after the head
//! (frames the client sent at once) are left to the caller.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tungstenite::handshake::derive_accept_key;

use super::error::WsError;

/// Most header fields an Upgrade request may have.
const MAX_HEADERS: usize = 64;

/// A valid Upgrade request, borrowing the head it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpgradeHead<'a> {
    /// The request target (path and query).
    pub target: &'a str,
    /// The `Sec-WebSocket-Key` (24 base64 characters of 16 bytes).
    pub key: &'a str,
    /// The first `Sec-WebSocket-Protocol` field's value (a comma-separated list), if any.
    protocols: Option<&'a [u8]>,
}

impl<'a> UpgradeHead<'a> {
    /// The subprotocols the client offered, in its order.
    pub fn offered(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.protocols
            .into_iter()
            .flat_map(|value| value.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|p| !p.is_empty())
            .filter_map(|p| std::str::from_utf8(p).ok())
    }

    /// Appends the `101 Switching Protocols` answer, choosing `protocol` (which should be one
    /// of [`UpgradeHead::offered`]) or none.
    pub fn encode_accept(&self, protocol: Option<&str>, out: &mut Vec<u8>) {
        encode_accept(self.key, protocol, out);
    }
}

/// Parses and checks the Upgrade request head at the start of `buf`: its length and the
/// request, or `None` if the head is not complete yet. Checked: GET, HTTP/1.1, `Upgrade`
/// holding `websocket`, `Connection` holding `upgrade`, `Sec-WebSocket-Version: 13` and one
/// `Sec-WebSocket-Key` that is the base64 of 16 bytes. Failures are
/// [`WsError::BadUpgradeRequest`] (answer 400) or, for a head httparse rejects,
/// [`WsError::HandshakeMalformed`].
pub fn check_upgrade_request(buf: &[u8]) -> Result<Option<(usize, UpgradeHead<'_>)>, WsError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => {
            return Err(WsError::HandshakeMalformed {
                what: err.to_string(),
                near: String::new(),
            });
        }
    };
    let bad = |what: &'static str| Err(WsError::BadUpgradeRequest { what });
    if request.method != Some("GET") {
        return bad("the upgrade request must use GET");
    }
    if request.version != Some(1) {
        return bad("the upgrade request must be HTTP/1.1");
    }
    let Some(target) = request.path else {
        return bad("missing request target");
    };
    let values = |name: &'static str| {
        request
            .headers
            .iter()
            .filter(move |header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    };
    if !has_token(values("upgrade"), "websocket") {
        return bad("the Upgrade header must hold \"websocket\"");
    }
    if !has_token(values("connection"), "upgrade") {
        return bad("the Connection header must hold \"upgrade\"");
    }
    let mut versions = values("sec-websocket-version");
    match (versions.next().map(<[u8]>::trim_ascii), versions.next()) {
        (Some(b"13"), None) => {}
        _ => return bad("Sec-WebSocket-Version must be 13"),
    }
    let mut keys = values("sec-websocket-key");
    let key = match (keys.next().map(<[u8]>::trim_ascii), keys.next()) {
        (Some(key), None) if is_key(key) => key,
        _ => return bad("Sec-WebSocket-Key must be one base64-encoded 16-byte value"),
    };
    let protocols = values("sec-websocket-protocol").next();
    // Both were checked to be ASCII (the target by httparse, the key as base64).
    let key = std::str::from_utf8(key).unwrap_or_default();
    Ok(Some((
        len,
        UpgradeHead {
            target,
            key,
            protocols,
        },
    )))
}

/// Whether any of the comma-separated lists in `values` holds `token` (case-insensitive).
fn has_token<'a>(mut values: impl Iterator<Item = &'a [u8]>, token: &str) -> bool {
    values.any(|value| {
        value
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// A base64 encoding of exactly 16 bytes.
fn is_key(key: &[u8]) -> bool {
    let mut decoded = [0u8; 18];
    key.len() == 24 && STANDARD.decode_slice(key, &mut decoded) == Ok(16)
}

/// Appends the `101 Switching Protocols` answer to a request with `key` (its
/// `Sec-WebSocket-Key`), choosing `protocol` or none.
pub fn encode_accept(key: &str, protocol: Option<&str>, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nServer: blaster\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(derive_accept_key(key.as_bytes()).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(protocol) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(protocol.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::super::{Accepted, HandshakeParser, UpgradeRequest};
    use super::*;

    const KEY: [u8; 16] = *b"0123456789abcdef";

    fn request(protocols: &[&str]) -> Vec<u8> {
        let protocols: Vec<String> = protocols.iter().map(|p| p.to_string()).collect();
        let mut request =
            UpgradeRequest::new("/ws/echo?close_after=3", "localhost", &protocols, &[]).unwrap();
        request.with_key(&KEY).to_vec()
    }

    #[test]
    fn accepts_our_own_client_request_and_the_client_accepts_the_answer() {
        let bytes = request(&["chat", "superchat"]);
        let (len, head) = check_upgrade_request(&bytes).unwrap().unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(head.target, "/ws/echo?close_after=3");
        assert_eq!(head.offered().collect::<Vec<_>>(), ["chat", "superchat"]);
        let mut answer = Vec::new();
        head.encode_accept(Some("superchat"), &mut answer);
        let offered = vec!["chat".to_owned(), "superchat".to_owned()];
        let mut parser = HandshakeParser::new(&KEY);
        let (used, accepted) = parser.feed(&answer, &offered).unwrap();
        assert_eq!(used, answer.len());
        assert_eq!(accepted, Some(Accepted { protocol: Some(1) }));
    }

    #[test]
    fn rfc_example_accept_key() {
        let mut out = Vec::new();
        encode_accept("dGhlIHNhbXBsZSBub25jZQ==", None, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.ends_with("\r\n\r\n") && !text.contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn split_at_every_byte_is_partial_until_complete() {
        let bytes = request(&[]);
        for cut in 0..bytes.len() {
            assert_eq!(check_upgrade_request(&bytes[..cut]), Ok(None), "cut {cut}");
        }
        let mut with_frame = bytes.clone();
        with_frame.extend_from_slice(b"\x81\x80abcd");
        let (len, _) = check_upgrade_request(&with_frame).unwrap().unwrap();
        assert_eq!(len, bytes.len());
    }

    #[test]
    fn rejects_bad_requests() {
        let good = "GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                    Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert!(check_upgrade_request(good.as_bytes()).unwrap().is_some());
        let cases = [
            ("GET /ws/echo", "POST /ws/echo"),
            ("HTTP/1.1\r\nHost", "HTTP/1.0\r\nHost"),
            ("Upgrade: websocket", "Upgrade: h2c"),
            ("Connection: keep-alive, Upgrade", "Connection: keep-alive"),
            ("Version: 13", "Version: 8"),
            ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ"),
            ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZXg="),
            ("dGhlIHNhbXBsZSBub25jZQ==", "not base64 at all!!!!!!!"),
            ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
        ];
        for (from, to) in cases {
            let bad = good.replace(from, to);
            let err = check_upgrade_request(bad.as_bytes()).unwrap_err();
            assert_eq!(err.kind(), "bad_upgrade_request", "{bad}");
        }
        let err = check_upgrade_request(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n").unwrap_err();
        assert_eq!(err.kind(), "handshake_malformed");
    }
}
