//! Tests of the Upgrade request and of the answer check, with answers split at every byte.

use super::*;
use crate::proto::ws::{Event, FrameDecoder, Prefix, WsLimits};

/// The key of RFC 6455 §1.3's example: base64 "dGhlIHNhbXBsZSBub25jZQ==".
const KEY: &[u8; 16] = b"the sample nonce";

/// Its accept value, from the same example.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn offered() -> Vec<String> {
    vec!["chat".to_owned(), "superchat".to_owned()]
}

fn answer(extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// Feeds `pieces` until the answer is accepted: the bytes used and the answer.
fn drive<'a>(
    parser: &mut HandshakeParser,
    pieces: impl IntoIterator<Item = &'a [u8]>,
    offered: &[String],
) -> Result<Option<(usize, Accepted)>, WsError> {
    let mut total = 0;
    for piece in pieces {
        let mut buf = piece;
        while !buf.is_empty() {
            let (used, accepted) = parser.feed(buf, offered)?;
            assert!(used <= buf.len(), "used more than given");
            assert!(used > 0 || accepted.is_some(), "no progress on {buf:?}");
            total += used;
            if let Some(accepted) = accepted {
                return Ok(Some((total, accepted)));
            }
            buf = &buf[used..];
        }
    }
    Ok(None)
}

fn splittings(bytes: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut all = vec![vec![bytes]];
    all.extend((0..=bytes.len()).map(|at| {
        let (a, b) = bytes.split_at(at);
        vec![a, b]
    }));
    all.push(bytes.chunks(1).collect());
    all
}

/// Asserts that the answer `bytes` (followed by `after`) is accepted with `protocol` however
/// it is split, using exactly its own bytes.
fn check(bytes: &[u8], after: &[u8], protocol: Option<usize>) {
    let input = [bytes, after].concat();
    for pieces in splittings(&input) {
        let mut parser = HandshakeParser::new(KEY);
        let got = drive(&mut parser, pieces.iter().copied(), &offered());
        assert_eq!(
            got,
            Ok(Some((bytes.len(), Accepted { protocol }))),
            "pieces {pieces:?}"
        );
    }
}

/// Asserts that the answer `bytes` fails with `kind` however it is split.
fn check_error(bytes: &[u8], offered: &[String], kind: &str) -> WsError {
    let mut first = None;
    for pieces in splittings(bytes) {
        let mut parser = HandshakeParser::new(KEY);
        let err = drive(&mut parser, pieces.iter().copied(), offered).unwrap_err();
        assert_eq!(err.kind(), kind, "{err} with pieces {pieces:?}");
        first.get_or_insert(err);
    }
    first.unwrap()
}

// The request.

#[test]
fn request_bytes() {
    let request = encode_upgrade_request(
        "/chat?room=1",
        "server.example.com",
        KEY,
        &offered(),
        &[("Origin".to_owned(), "http://example.com".to_owned())],
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(request).unwrap(),
        "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
         Origin: http://example.com\r\n\r\n"
    );
    let bare = encode_upgrade_request("/", "h", KEY, &[], &[]).unwrap();
    assert!(!String::from_utf8(bare).unwrap().contains("Protocol"));
}

#[test]
fn key_is_patched_in_place() {
    let mut request = UpgradeRequest::new("/", "h", &[], &[]).unwrap();
    let first = request.with_key(KEY).to_vec();
    let second = request.with_key(&[0xFF; 16]).to_vec();
    assert_eq!(first.len(), second.len());
    let text = String::from_utf8(second).unwrap();
    assert!(
        text.contains("\r\nSec-WebSocket-Key: /////////////////////w==\r\n"),
        "{text}"
    );
    assert_eq!(
        first,
        encode_upgrade_request("/", "h", KEY, &[], &[]).unwrap()
    );
}

#[test]
fn invalid_requests() {
    let err = UpgradeRequest::new("/", "h", &["a b".to_owned()], &[]).unwrap_err();
    assert!(
        matches!(err, UpgradeRequestError::InvalidProtocol(_)),
        "{err}"
    );
    let twice = ["x".to_owned(), "x".to_owned()];
    assert!(UpgradeRequest::new("/", "h", &twice, &[]).is_err());
    assert!(UpgradeRequest::new("/", "h", &[String::new()], &[]).is_err());

    let header = [("sec-websocket-key".to_owned(), "k".to_owned())];
    let err = UpgradeRequest::new("/", "h", &[], &header).unwrap_err();
    assert_eq!(
        err.to_string(),
        "header \"sec-websocket-key\" is set by the WebSocket handshake itself (extensions are \
         not supported); remove it from the extra headers"
    );
    let err = UpgradeRequest::new("no-slash", "h", &[], &[]).unwrap_err();
    assert!(matches!(err, UpgradeRequestError::Http(_)), "{err}");
}

// The answer.

#[test]
fn good_answers() {
    check(&answer(""), b"", None);
    check(
        &answer("Sec-WebSocket-Protocol: superchat\r\n"),
        b"",
        Some(1),
    );
    // Header names and tokens are case-insensitive; lists are allowed.
    let mixed = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n\
         CONNECTION: keep-alive, UPGRADE\r\nsec-websocket-accept:  {ACCEPT} \r\n\r\n"
    );
    check(mixed.as_bytes(), b"", None);
}

#[test]
fn frames_right_after_the_head() {
    let head = answer("");
    let frames = b"\x81\x02hi\x89\x00";
    check(&head, frames, None);

    // The engine's path: the rest of the same read goes to the frame decoder.
    let input = [&head[..], frames].concat();
    let (used, accepted) = HandshakeParser::new(KEY).feed(&input, &[]).unwrap();
    assert_eq!(
        (used, accepted),
        (head.len(), Some(Accepted { protocol: None }))
    );
    let mut decoder = FrameDecoder::new(WsLimits::default(), true);
    let (first, event) = decoder.feed(&input[used..]).unwrap();
    let prefix = Prefix::from_slice(b"hi").unwrap();
    assert_eq!(event, Some(Event::Text { len: 2, prefix }));
    let (_, event) = decoder.feed(&input[used + first..]).unwrap();
    assert!(matches!(event, Some(Event::Ping(p)) if p.is_empty()));
}

#[test]
fn wrong_or_missing_accept() {
    let wrong = String::from_utf8(answer(""))
        .unwrap()
        .replace(ACCEPT, "S3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let err = check_error(wrong.as_bytes(), &[], "handshake_accept");
    assert_eq!(
        err.to_string(),
        format!(
            "handshake response has Sec-WebSocket-Accept: \"S3pPLMBiTxaQ9kYGzzhZRbK+xOo=\", \
             expected \"{ACCEPT}\""
        )
    );
    let missing = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                    Connection: Upgrade\r\n\r\n";
    check_error(missing, &[], "handshake_accept");
    let twice = answer(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n"));
    check_error(&twice, &[], "handshake_accept");
}

#[test]
fn missing_or_wrong_upgrade() {
    let no_upgrade = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
    );
    let err = check_error(no_upgrade.as_bytes(), &[], "handshake_upgrade");
    assert_eq!(
        err.to_string(),
        "handshake response has Upgrade: (missing), expected a value containing \"websocket\""
    );
    let h2c = no_upgrade.replace("Connection", "Upgrade: h2c\r\nConnection");
    check_error(h2c.as_bytes(), &[], "handshake_upgrade");
    let no_connection = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: keep-alive\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
    );
    let err = check_error(no_connection.as_bytes(), &[], "handshake_upgrade");
    assert!(
        err.to_string().contains("Connection: \"keep-alive\""),
        "{err}"
    );
}

#[test]
fn status_other_than_101() {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno";
    let err = check_error(ok, &[], "handshake_status");
    assert_eq!(
        err.to_string(),
        "handshake answered with status 200, expected 101 Switching Protocols"
    );
    check_error(
        b"HTTP/1.1 426 Upgrade Required\r\n\r\n",
        &[],
        "handshake_status",
    );
}

#[test]
fn subprotocols() {
    let unoffered = answer("Sec-WebSocket-Protocol: graphql-ws\r\n");
    let err = check_error(&unoffered, &offered(), "handshake_protocol");
    assert_eq!(
        err.to_string(),
        "handshake response chose subprotocol \"graphql-ws\", which was not offered (chat, \
         superchat)"
    );
    let err = check_error(
        &answer("Sec-WebSocket-Protocol: chat\r\n"),
        &[],
        "handshake_protocol",
    );
    assert!(err.to_string().contains("(none was)"), "{err}");
    let list = answer("Sec-WebSocket-Protocol: chat, superchat\r\n");
    check_error(&list, &offered(), "handshake_protocol");
    let twice = answer("Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n");
    check_error(&twice, &offered(), "handshake_protocol");
}

#[test]
fn unrequested_extension() {
    let deflate = answer("Sec-WebSocket-Extensions: permessage-deflate\r\n");
    check_error(&deflate, &[], "handshake_extension");
}

#[test]
fn malformed_answers() {
    let err = check_error(
        b"HTTP/1.1 1O1 Switching\r\n\r\n",
        &[],
        "handshake_malformed",
    );
    assert!(
        err.to_string().contains("near \"HTTP/1.1 1O1 Switching\""),
        "{err}"
    );
    check_error(b"garbage\r\n\r\n", &[], "handshake_malformed");
    let http10 = String::from_utf8(answer(""))
        .unwrap()
        .replace("HTTP/1.1", "HTTP/1.0");
    check_error(http10.as_bytes(), &[], "handshake_malformed");
}

#[test]
fn head_too_large() {
    let filler = "a".repeat(MAX_HANDSHAKE_HEAD);
    let bytes = answer(&format!("X-Filler: {filler}\r\n"));
    let mut parser = HandshakeParser::new(KEY);
    let err = drive(&mut parser, [&bytes[..]], &[]).unwrap_err();
    assert_eq!(err.kind(), "handshake_too_large");
    let mut parser = HandshakeParser::new(KEY);
    let err = drive(&mut parser, bytes.chunks(1000), &[]).unwrap_err();
    assert_eq!(err.kind(), "handshake_too_large");
}
