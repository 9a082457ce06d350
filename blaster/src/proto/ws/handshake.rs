//! The client's half of the WebSocket opening handshake (RFC 6455 §4): the HTTP/1.1 Upgrade
//! request, and the check of the server's `101 Switching Protocols` answer.
//!
//! Boundary: bytes only. The request is rendered by the HTTP/1.1 codec's `encode_request`;
//! the answer's head is parsed by `httparse` and its accept key derived by tungstenite
//! (`derive_accept_key`); the checks of the answer's headers are written here, because
//! tungstenite's client handshake drives a blocking stream and owns an `http::Response`. Bytes
//! after the head (frames the server sent at once) are left to the caller.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tungstenite::handshake::derive_accept_key;

use super::error::{WsError, echo};
use crate::proto::http1::EncodeError;
use crate::proto::http1::encode_request;
use crate::proto::http1::request::is_tchar;

/// Longest handshake answer head accepted.
pub const MAX_HANDSHAKE_HEAD: usize = 16 * 1024;

/// Most header fields a handshake answer may have.
const MAX_HEADERS: usize = 64;

/// Length of a base64 `Sec-WebSocket-Key` (16 bytes).
const KEY_LEN: usize = 24;

/// Length of a base64 `Sec-WebSocket-Accept` (a SHA-1 digest).
const ACCEPT_LEN: usize = 28;

/// Header fields of an Upgrade request that a user may not set: the handshake writes them
/// itself, or (`Sec-WebSocket-Accept`) they are the server's answer. `blaster check` refuses
/// them in scenario files from this list; the encoder refuses them, and also
/// `Sec-WebSocket-Protocol`, which it takes from its `protocols` (a scenario's ws_connect
/// may write that one as a header: the engine moves it there).
pub const RESERVED_HEADERS: [&str; 6] = [
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Accept",
];

/// Whether `name` (any case, spaces around ignored) is one of [`RESERVED_HEADERS`].
pub fn is_reserved_header(name: &str) -> bool {
    RESERVED_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name.trim()))
}

/// An Upgrade request that cannot be built as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeRequestError {
    #[error(transparent)]
    Http(#[from] EncodeError),

    #[error(
        "header {0:?} is set by the WebSocket handshake itself (extensions are not supported); \
         remove it from the extra headers"
    )]
    HandshakeHeader(String),

    #[error(
        "invalid subprotocol {0:?}: subprotocols are tokens (letters, digits and \
         !#$%&'*+-.^_`|~), each offered once"
    )]
    InvalidProtocol(String),
}

/// A rendered Upgrade request whose `Sec-WebSocket-Key` is patched in place for each
/// connection, so a new connection costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    bytes: Vec<u8>,
    /// Where the base64 key starts in `bytes`.
    key_at: usize,
}

impl UpgradeRequest {
    /// Renders `GET path HTTP/1.1` with Host, `Upgrade: websocket`, `Connection: Upgrade`,
    /// a key, `Sec-WebSocket-Version: 13`, `Sec-WebSocket-Protocol` (if `protocols` is not
    /// empty) and then `extra_headers` in order.
    pub fn new(
        path: &str,
        host: &str,
        protocols: &[String],
        extra_headers: &[(String, String)],
    ) -> Result<Self, UpgradeRequestError> {
        for (i, protocol) in protocols.iter().enumerate() {
            let token = !protocol.is_empty() && protocol.bytes().all(is_tchar);
            if !token || protocols[..i].contains(protocol) {
                return Err(UpgradeRequestError::InvalidProtocol(protocol.clone()));
            }
        }
        if let Some((name, _)) = extra_headers.iter().find(|(name, _)| {
            is_reserved_header(name) || name.trim().eq_ignore_ascii_case("sec-websocket-protocol")
        }) {
            return Err(UpgradeRequestError::HandshakeHeader(name.clone()));
        }
        let header = |name: &str, value: &str| (name.to_owned(), value.to_owned());
        let mut headers = vec![
            header("Upgrade", "websocket"),
            header("Connection", "Upgrade"),
            header("Sec-WebSocket-Key", &"A".repeat(KEY_LEN)),
            header("Sec-WebSocket-Version", "13"),
        ];
        if !protocols.is_empty() {
            headers.push(header("Sec-WebSocket-Protocol", &protocols.join(", ")));
        }
        headers.extend_from_slice(extra_headers);
        let bytes = encode_request("GET", path, host, &headers, b"")?;
        // Neither the path nor header values may hold CR or LF, so this line is the key's.
        const KEY_LINE: &[u8] = b"\r\nSec-WebSocket-Key: ";
        let key_at = bytes
            .windows(KEY_LINE.len())
            .position(|window| window == KEY_LINE)
            .expect("the key header was rendered")
            + KEY_LINE.len();
        Ok(UpgradeRequest { bytes, key_at })
    }

    /// The request bytes with `key` (16 random bytes, base64-encoded here) as its
    /// `Sec-WebSocket-Key`. Pass the same key to [`HandshakeParser::new`].
    pub fn with_key(&mut self, key: &[u8; 16]) -> &[u8] {
        let key_field = &mut self.bytes[self.key_at..self.key_at + KEY_LEN];
        let written = STANDARD
            .encode_slice(key, key_field)
            .expect("16 bytes are 24 base64 characters");
        debug_assert_eq!(written, KEY_LEN);
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Renders a whole Upgrade request with `key`; see [`UpgradeRequest::new`]. To open many
/// connections, keep an [`UpgradeRequest`] and call [`UpgradeRequest::with_key`] instead.
pub fn encode_upgrade_request(
    path: &str,
    host: &str,
    key: &[u8; 16],
    protocols: &[String],
    extra_headers: &[(String, String)],
) -> Result<Vec<u8>, UpgradeRequestError> {
    let mut request = UpgradeRequest::new(path, host, protocols, extra_headers)?;
    request.with_key(key);
    Ok(request.into_bytes())
}

/// A valid handshake answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Index, in the offered list, of the subprotocol the server chose (`None`: it chose
    /// none).
    pub protocol: Option<usize>,
}

/// Reads and checks the answer to one Upgrade request, which may arrive split at any byte.
#[derive(Debug, Clone)]
pub struct HandshakeParser {
    /// The `Sec-WebSocket-Accept` value the key requires.
    accept: [u8; ACCEPT_LEN],
    /// The start of a head that did not fit in one input (reserved only then).
    buf: Vec<u8>,
}

impl HandshakeParser {
    /// A parser for the answer to a request sent with `key`.
    pub fn new(key: &[u8; 16]) -> Self {
        let mut encoded = [0; KEY_LEN];
        STANDARD
            .encode_slice(key, &mut encoded)
            .expect("16 bytes are 24 base64 characters");
        let mut accept = [0; ACCEPT_LEN];
        accept.copy_from_slice(derive_accept_key(&encoded).as_bytes());
        HandshakeParser {
            accept,
            buf: Vec::new(),
        }
    }

    /// Feed received bytes: returns how many belong to the answer's head and, once it is
    /// complete and valid, the [`Accepted`] answer. Bytes after the head are frames. `offered`
    /// is the subprotocol list the request was built with.
    ///
    /// With non-empty input every call uses at least one byte, returns the answer or fails.
    pub fn feed(
        &mut self,
        input: &[u8],
        offered: &[String],
    ) -> Result<(usize, Option<Accepted>), WsError> {
        let result = self.feed_inner(input, offered);
        if !matches!(result, Ok((_, None))) {
            self.buf.clear();
        }
        result
    }

    fn feed_inner(
        &mut self,
        input: &[u8],
        offered: &[String],
    ) -> Result<(usize, Option<Accepted>), WsError> {
        let too_large = WsError::HandshakeTooLarge {
            limit: MAX_HANDSHAKE_HEAD,
        };
        if self.buf.is_empty() {
            // Common case: the whole head is in `input`; parse it in place.
            return match parse_answer(input, &self.accept, offered)? {
                Some((len, _)) if len > MAX_HANDSHAKE_HEAD => Err(too_large),
                Some((len, accepted)) => Ok((len, Some(accepted))),
                None if input.len() >= MAX_HANDSHAKE_HEAD => Err(too_large),
                None => {
                    self.buf.extend_from_slice(input);
                    Ok((input.len(), None))
                }
            };
        }
        // Bytes past the head may be copied too; they are simply not counted as used.
        let before = self.buf.len();
        let taken = input.len().min(MAX_HANDSHAKE_HEAD - before);
        self.buf.extend_from_slice(&input[..taken]);
        match parse_answer(&self.buf, &self.accept, offered)? {
            Some((len, accepted)) => {
                // Earlier bytes held no complete head, so it ends in this input.
                debug_assert!(len > before);
                Ok((len - before, Some(accepted)))
            }
            None if self.buf.len() >= MAX_HANDSHAKE_HEAD => Err(too_large),
            None => Ok((taken, None)),
        }
    }
}

/// Parses and checks the answer head at the start of `buf`: its length and what it accepted,
/// or `None` if it is not complete yet.
fn parse_answer(
    buf: &[u8],
    accept: &[u8],
    offered: &[String],
) -> Result<Option<(usize, Accepted)>, WsError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(malformed(&err.to_string(), buf)),
    };
    if response.version != Some(1) {
        return Err(malformed("HTTP/1.0 answer, expected HTTP/1.1", buf));
    }
    let status = response.code.unwrap_or_default();
    if status != 101 {
        return Err(WsError::HandshakeStatus { status });
    }
    let values = |name: &'static str| {
        response
            .headers
            .iter()
            .filter(move |header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value)
    };
    check_token_list(values("upgrade"), "Upgrade", "websocket")?;
    check_token_list(values("connection"), "Connection", "upgrade")?;

    let mut accepts = values("sec-websocket-accept");
    match (accepts.next().map(<[u8]>::trim_ascii), accepts.next()) {
        (Some(got), None) if got == accept => {}
        (got, _) => {
            return Err(WsError::HandshakeAccept {
                got: got.map_or_else(|| "(missing)".to_owned(), echo),
                // The accept key is base64, so ASCII.
                expected: String::from_utf8_lossy(accept).into_owned(),
            });
        }
    }
    if let Some(got) = values("sec-websocket-extensions").find(|v| !v.trim_ascii().is_empty()) {
        return Err(WsError::HandshakeExtension { got: echo(got) });
    }

    let mut protocols = values("sec-websocket-protocol");
    let protocol = match (protocols.next().map(<[u8]>::trim_ascii), protocols.next()) {
        (None, _) => None,
        (Some(got), None) => match offered.iter().position(|p| p.as_bytes() == got) {
            Some(index) => Some(index),
            None => return Err(unoffered(echo(got), offered)),
        },
        (Some(_), Some(_)) => return Err(unoffered("several".to_owned(), offered)),
    };
    Ok(Some((len, Accepted { protocol })))
}

/// Checks that the `name` header fields hold `expected` in their comma-separated lists
/// (case-insensitive).
fn check_token_list<'a>(
    mut values: impl Iterator<Item = &'a [u8]> + Clone,
    header: &'static str,
    expected: &'static str,
) -> Result<(), WsError> {
    let found = values.clone().any(|value| {
        value
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(expected.as_bytes()))
    });
    if found {
        return Ok(());
    }
    Err(WsError::HandshakeUpgrade {
        header,
        got: values.next().map_or_else(|| "(missing)".to_owned(), echo),
        expected,
    })
}

fn unoffered(got: String, offered: &[String]) -> WsError {
    let offered = if offered.is_empty() {
        "none was".to_owned()
    } else {
        offered.join(", ")
    };
    WsError::HandshakeProtocol { got, offered }
}

fn malformed(what: &str, buf: &[u8]) -> WsError {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    WsError::HandshakeMalformed {
        what: what.to_owned(),
        near: echo(line.strip_suffix(b"\r").unwrap_or(line)),
    }
}

#[cfg(test)]
mod tests;
