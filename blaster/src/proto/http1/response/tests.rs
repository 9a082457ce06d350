//! Tests of the response parser, byte by byte: every valid fixture is fed whole, split in two
//! at every byte boundary, and one byte at a time, and must give the same responses.

use super::*;

fn ok(status: u16, body_bytes: u64, close: bool) -> Response {
    Response {
        status,
        body_bytes,
        close,
    }
}

/// Feeds `pieces` with the documented caller loop, then signals EOF.
fn drive<'a>(
    parser: &mut ResponseParser,
    pieces: impl IntoIterator<Item = &'a [u8]>,
    head_request: bool,
) -> Result<Vec<Response>, ResponseError> {
    let mut responses = Vec::new();
    for piece in pieces {
        let mut buf = piece;
        while !buf.is_empty() {
            let progress = parser.feed(buf, head_request)?;
            assert!(progress.consumed <= buf.len(), "consumed more than given");
            assert!(
                progress.consumed > 0 || progress.response.is_some(),
                "no progress on {buf:?}"
            );
            buf = &buf[progress.consumed..];
            responses.extend(progress.response);
        }
    }
    responses.extend(parser.eof()?);
    Ok(responses)
}

/// Every way of feeding `bytes` checked: whole, in two pieces split at each byte, and one
/// byte at a time.
fn splittings(bytes: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut all = vec![vec![bytes]];
    all.extend((0..=bytes.len()).map(|at| {
        let (a, b) = bytes.split_at(at);
        vec![a, b]
    }));
    all.push(bytes.chunks(1).collect());
    all
}

/// A response the fixtures are followed by, to prove they consume exactly their own bytes.
const NEXT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

/// Asserts that `bytes` parse to `expected` however they are split. Unless the last response
/// ends with the connection (or switches protocols), also asserts it with [`NEXT`] appended.
fn check(bytes: &[u8], head_request: bool, expected: &[Response]) {
    check_with(Limits::default(), bytes, head_request, expected);
}

fn check_with(limits: Limits, bytes: &[u8], head_request: bool, expected: &[Response]) {
    let mut parser = ResponseParser::new(limits);
    for pieces in splittings(bytes) {
        let got = drive(&mut parser, pieces.iter().copied(), head_request);
        assert_eq!(got.as_deref(), Ok(expected), "pieces {pieces:?}");
        assert!(!parser.in_progress());
    }
    let last = expected.last().expect("fixtures have a response");
    if !last.close && last.status != 101 {
        let followed = [bytes, NEXT].concat();
        let mut expected = expected.to_vec();
        expected.push(ok(204, 0, false));
        for pieces in splittings(&followed) {
            let got = drive(&mut parser, pieces.iter().copied(), head_request);
            assert_eq!(got, Ok(expected.clone()), "pieces {pieces:?}");
        }
    }
}

/// Asserts that `bytes` fail with `kind` however they are split (EOF included).
fn check_error(limits: Limits, bytes: &[u8], kind: &str) {
    for pieces in splittings(bytes) {
        let mut parser = ResponseParser::new(limits);
        let err = drive(&mut parser, pieces.iter().copied(), false).unwrap_err();
        assert_eq!(err.kind(), kind, "{err} with pieces {pieces:?}");
        assert!(!parser.in_progress(), "an error resets the parser");
    }
}

/// The error of feeding `bytes` in one piece.
fn error(limits: Limits, bytes: &[u8]) -> ResponseError {
    drive(&mut ResponseParser::new(limits), [bytes], false).unwrap_err()
}

const CONTENT_LENGTH: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nhello world!";

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
    5;name=value\r\nhello\r\n7 ; q=\"a b\"\r\n, world\r\nA\r\n0123456789\r\n\
    0;last\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n";

fn small_limits() -> Limits {
    Limits {
        max_head_bytes: 64,
        max_body_bytes: 10,
    }
}

// Valid responses.

#[test]
fn content_length() {
    check(CONTENT_LENGTH, false, &[ok(200, 12, false)]);
    check(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        false,
        &[ok(404, 0, false)],
    );
}

#[test]
fn chunked_with_extensions_and_trailers() {
    check(CHUNKED, false, &[ok(200, 22, false)]);
    check(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        false,
        &[ok(200, 0, false)],
    );
}

#[test]
fn chunked_wins_over_content_length() {
    check(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n0\r\n\r\n",
        false,
        &[ok(200, 3, false)],
    );
}

#[test]
fn head_response_has_no_body() {
    let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    check(bytes, true, &[ok(200, 0, false)]);
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    check(chunked, true, &[ok(200, 0, false)]);
    // No length at all: still no body, and the connection stays usable.
    check(b"HTTP/1.1 200 OK\r\n\r\n", true, &[ok(200, 0, false)]);
}

#[test]
fn no_content_and_not_modified_have_no_body() {
    check(
        b"HTTP/1.1 204 No Content\r\n\r\n",
        false,
        &[ok(204, 0, false)],
    );
    check(
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5000\r\nETag: \"x\"\r\n\r\n",
        false,
        &[ok(304, 0, false)],
    );
}

#[test]
fn interim_responses_are_skipped() {
    check(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        false,
        &[ok(200, 2, false)],
    );
    check(
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
          HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        false,
        &[ok(201, 0, false)],
    );
}

#[test]
fn switching_protocols_is_returned() {
    let head =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    check(head, false, &[ok(101, 0, false)]);
    // The bytes after it are the new protocol's: they are left to the caller.
    let with_frame = [&head[..], b"\x81\x05hello"].concat();
    let mut parser = ResponseParser::new(Limits::default());
    let progress = parser.feed(&with_frame, false).unwrap();
    assert_eq!(progress.consumed, head.len());
    assert_eq!(progress.response, Some(ok(101, 0, false)));
}

#[test]
fn connection_close() {
    check(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
        false,
        &[ok(200, 3, true)],
    );
}

#[test]
fn http10() {
    check(
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        false,
        &[ok(200, 3, true)],
    );
    check(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc",
        false,
        &[ok(200, 3, false)],
    );
    check(
        b"HTTP/1.0 200 OK\r\n\r\nuntil close",
        false,
        &[ok(200, 11, true)],
    );
}

#[test]
fn read_until_close_ends_at_eof() {
    check(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome bytes until close",
        false,
        &[ok(200, 22, true)],
    );
    // A final coding other than chunked can only be delimited by the close.
    check(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nxyz",
        false,
        &[ok(200, 3, true)],
    );
    check(b"HTTP/1.1 200 OK\r\n\r\n", false, &[ok(200, 0, true)]);

    let mut parser = ResponseParser::new(Limits::default());
    let progress = parser.feed(b"HTTP/1.1 500 Oops\r\n\r\nab", false).unwrap();
    assert_eq!(progress.response, None);
    assert!(parser.in_progress());
    assert_eq!(parser.eof(), Ok(Some(ok(500, 2, true))));
    assert!(!parser.in_progress());
    assert_eq!(parser.eof(), Ok(None));
}

#[test]
fn bare_lf_heads_are_accepted() {
    check(
        b"HTTP/1.1 200 OK\nContent-Length: 1\n\nx",
        false,
        &[ok(200, 1, false)],
    );
}

#[test]
fn pipelined_responses_one_per_feed() {
    let responses: [&[u8]; 4] = [
        CONTENT_LENGTH,
        CHUNKED,
        NEXT,
        b"HTTP/1.1 503 Busy\r\nContent-Length: 1\r\n\r\nx",
    ];
    let expected = [
        ok(200, 12, false),
        ok(200, 22, false),
        ok(204, 0, false),
        ok(503, 1, false),
    ];
    let all = responses.concat();
    check(&all, false, &expected);

    let mut parser = ResponseParser::new(Limits::default());
    let mut buf = &all[..];
    for (bytes, response) in responses.iter().zip(expected) {
        let progress = parser.feed(buf, false).unwrap();
        assert_eq!(progress.consumed, bytes.len());
        assert_eq!(progress.response, Some(response));
        buf = &buf[progress.consumed..];
    }
    assert!(buf.is_empty());
}

#[test]
fn body_spanning_many_feeds() {
    let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
    bytes.resize(bytes.len() + 100_000, b'x');
    let mut parser = ResponseParser::new(Limits::default());
    assert_eq!(
        drive(&mut parser, bytes.chunks(1000), false),
        Ok(vec![ok(200, 100_000, false)])
    );

    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..10 {
        chunked.extend(b"2710\r\n");
        chunked.resize(chunked.len() + 10_000, b'y');
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    assert_eq!(
        drive(&mut parser, chunked.chunks(999), false),
        Ok(vec![ok(200, 100_000, false)])
    );
}

#[test]
fn head_at_the_size_limit_is_accepted() {
    let head = b"HTTP/1.1 200 OK\r\nX-Pad: 01234567890123456\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(head.len(), small_limits().max_head_bytes);
    check_with(small_limits(), head, false, &[ok(200, 0, false)]);
}

#[test]
fn whole_heads_are_parsed_in_place() {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..60 {
        head.extend(format!("X-Header-{i:02}: {}\r\n", "v".repeat(150)).as_bytes());
    }
    head.extend(b"Content-Length: 0\r\n\r\n");
    assert!(head.len() > INITIAL_HEAD_CAPACITY);

    let mut parser = ResponseParser::new(Limits::default());
    assert_eq!(
        drive(&mut parser, [&head[..]], false),
        Ok(vec![ok(200, 0, false)])
    );
    assert_eq!(
        parser.head_capacity(),
        0,
        "head was not copied (nothing is reserved until a head is split)"
    );

    // Split, it is copied: the buffer grows and keeps its capacity for the next time.
    let (a, b) = head.split_at(head.len() - 10);
    assert_eq!(
        drive(&mut parser, [a, b], false),
        Ok(vec![ok(200, 0, false)])
    );
    let grown = parser.head_capacity();
    assert!(grown >= head.len() - 10);
    assert_eq!(
        drive(&mut parser, [a, b], false),
        Ok(vec![ok(200, 0, false)])
    );
    assert_eq!(parser.head_capacity(), grown, "no new allocation");
}

#[test]
fn split_heads_copy_only_head_bytes() {
    let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 50000\r\n\r\n".to_vec();
    bytes.resize(bytes.len() + 50_000, b'\n');
    let mut parser = ResponseParser::new(Limits::default());
    let progress = parser.feed(&bytes[..10], false).unwrap();
    assert_eq!(progress.consumed, 10);
    let progress = parser.feed(&bytes[10..], false).unwrap();
    assert_eq!(progress.response, Some(ok(200, 50_000, false)));
    assert_eq!(parser.head_capacity(), INITIAL_HEAD_CAPACITY);
}

#[test]
fn head_buffer_never_grows_past_the_limit() {
    let limits = Limits {
        max_head_bytes: 5000,
        ..Limits::default()
    };
    let mut parser = ResponseParser::new(limits);
    let long = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'x'; 6000]].concat();
    let err = drive(&mut parser, long.chunks(100), false).unwrap_err();
    assert_eq!(err.kind(), "headers_too_large");
    assert_eq!(parser.head_capacity(), 5000);
}

#[test]
fn empty_lines_before_the_status_line_are_skipped() {
    check(
        b"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        false,
        &[ok(200, 1, false)],
    );
}

#[test]
fn empty_line_ends() {
    assert_eq!(empty_line_end(b"", b"a\r\n\r\nb"), Some(5));
    assert_eq!(empty_line_end(b"", b"a\n\nb"), Some(3));
    assert_eq!(empty_line_end(b"a\r\n", b"\r\nb"), Some(2));
    assert_eq!(empty_line_end(b"a\r", b"\n\r\n"), Some(3));
    assert_eq!(empty_line_end(b"a\n", b"\n"), Some(1));
    assert_eq!(empty_line_end(b"", b"\n"), None);
    assert_eq!(empty_line_end(b"a\r\nb: c\r\n", b"d"), None);
    assert_eq!(empty_line_end(b"a\r\nb", b"\r\n"), None);
}

#[test]
fn progress_on_every_call_with_random_splits() {
    let fixtures: [(&[u8], Response); 5] = [
        (CONTENT_LENGTH, ok(200, 12, false)),
        (CHUNKED, ok(200, 22, false)),
        (NEXT, ok(204, 0, false)),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
            ok(200, 1, false),
        ),
        (
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
            ok(304, 0, false),
        ),
    ];
    // A small linear congruential generator: deterministic, no dependency.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |bound: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % bound
    };
    let mut parser = ResponseParser::new(Limits::default());
    for _ in 0..200 {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..1 + next(6) {
            let (bytes, response) = fixtures[next(fixtures.len())];
            stream.extend_from_slice(bytes);
            expected.push(response);
        }
        let mut pieces = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at((1 + next(40)).min(rest.len()));
            pieces.push(piece);
            rest = tail;
        }
        assert_eq!(drive(&mut parser, pieces, false), Ok(expected));
    }
}

#[test]
fn reset_forgets_partial_state() {
    let mut parser = ResponseParser::new(Limits::default());
    assert!(!parser.in_progress());
    parser
        .feed(b"HTTP/1.1 200 OK\r\nContent-Le", false)
        .unwrap();
    assert!(parser.in_progress());
    parser.reset();
    assert!(!parser.in_progress());
    assert_eq!(
        drive(&mut parser, [CONTENT_LENGTH], false),
        Ok(vec![ok(200, 12, false)])
    );

    parser
        .feed(&CONTENT_LENGTH[..CONTENT_LENGTH.len() - 1], false)
        .unwrap();
    assert!(parser.in_progress());
    parser.reset();
    assert_eq!(
        drive(&mut parser, [CHUNKED], false),
        Ok(vec![ok(200, 22, false)])
    );
}

#[test]
fn empty_input_is_a_no_op() {
    let mut parser = ResponseParser::new(Limits::default());
    let progress = parser.feed(b"", false).unwrap();
    assert_eq!(
        progress,
        Progress {
            consumed: 0,
            response: None
        }
    );
    assert!(!parser.in_progress());
}

// Errors.

#[test]
fn malformed_status_lines() {
    let limits = Limits::default();
    check_error(limits, b"garbage\r\n\r\n", "malformed_response");
    check_error(limits, b"HTTP/1.1 2x0 OK\r\n\r\n", "malformed_response");
    check_error(limits, b"HTTP/2.0 200 OK\r\n\r\n", "malformed_response");
    check_error(
        limits,
        b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 OK\r\n\r\n",
        "malformed_response",
    );
    assert_eq!(
        error(limits, b"SSH-2.0-OpenSSH_9.6\r\n").to_string(),
        "malformed response head (invalid HTTP version, expected HTTP/1.0 or HTTP/1.1) near \
         \"SSH-2.0-OpenSSH_9.6\""
    );
}

#[test]
fn header_without_colon() {
    let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nNoColon\r\n\r\n";
    check_error(Limits::default(), bytes, "malformed_response");
    assert!(
        error(Limits::default(), bytes)
            .to_string()
            .ends_with("near \"NoColon\"")
    );
}

#[test]
fn oversized_head() {
    // 65 bytes of head against a 64-byte limit, complete or not, whole or split.
    let head = b"HTTP/1.1 200 OK\r\nX-Pad: 012345678901234567\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(head.len(), 65);
    check_error(small_limits(), head, "headers_too_large");
    check_error(small_limits(), &head[..64], "headers_too_large");
    assert_eq!(
        error(small_limits(), head).to_string(),
        "response head exceeds the limit of 64 bytes without ending in an empty line (CRLF CRLF)"
    );

    // Growing over many feeds with the default limit: fails once past the limit.
    let mut parser = ResponseParser::new(Limits::default());
    parser.feed(b"HTTP/1.1 200 OK\r\n", false).unwrap();
    let line = format!("X-Filler: {}\r\n", "f".repeat(1000));
    let mut fed = 0;
    let err = loop {
        match parser.feed(line.as_bytes(), false) {
            Ok(progress) => {
                assert_eq!(progress.consumed, line.len());
                fed += line.len();
                assert!(fed < 64 * 1024);
            }
            Err(err) => break err,
        }
    };
    assert_eq!(err.kind(), "headers_too_large");
    assert!(fed + line.len() >= 64 * 1024);
    assert!(!parser.in_progress());
}

#[test]
fn bad_chunk_sizes() {
    let bad = |size: &str| {
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nabc\r\n0\r\n\r\n")
    };
    check_error(Limits::default(), bad("zz").as_bytes(), "invalid_chunk");
    check_error(
        Limits::default(),
        bad("10000000000000000").as_bytes(),
        "invalid_chunk",
    );
    check_error(Limits::default(), bad("").as_bytes(), "invalid_chunk");
    assert_eq!(
        error(Limits::default(), bad("zz").as_bytes()).to_string(),
        "invalid chunked body: expected hex digits in chunk-size line \"zz\""
    );
}

#[test]
fn missing_crlf_after_chunk_data() {
    let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n";
    check_error(Limits::default(), bytes, "invalid_chunk");
}

#[test]
fn conflicting_content_length() {
    let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";
    check_error(Limits::default(), bytes, "invalid_content_length");
    let negative = b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n";
    check_error(Limits::default(), negative, "invalid_content_length");
}

#[test]
fn body_over_limit() {
    let limits = small_limits();
    let long = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n01234567890";
    check_error(limits, long, "body_too_large");
    assert_eq!(
        error(limits, long).to_string(),
        "response body of at least 11 bytes exceeds the limit of 10 bytes"
    );
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n5\r\n";
    check_error(limits, chunked, "body_too_large");
    let until_close = b"HTTP/1.1 200 OK\r\n\r\n01234567890";
    check_error(limits, until_close, "body_too_large");
    // At the limit is fine.
    check_with(
        limits,
        b"HTTP/1.1 200 OK\r\n\r\n0123456789",
        false,
        &[ok(200, 10, true)],
    );
}

#[test]
fn eof_mid_response() {
    let limits = Limits::default();
    check_error(
        limits,
        &CONTENT_LENGTH[..CONTENT_LENGTH.len() - 1],
        "closed_mid_response",
    );
    check_error(limits, &CHUNKED[..CHUNKED.len() - 1], "closed_mid_response");
    check_error(
        limits,
        b"HTTP/1.1 200 OK\r\nContent-Len",
        "closed_mid_response",
    );
    check_error(
        limits,
        b"HTTP/1.1 100 Continue\r\n\r\n",
        "closed_mid_response",
    );
    let mut parser = ResponseParser::new(limits);
    parser
        .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", false)
        .unwrap();
    let err = parser.eof().unwrap_err();
    assert_eq!(err, ResponseError::Incomplete);
    assert_eq!(
        err.to_string(),
        "connection closed mid-response (before the response was complete)"
    );
    assert!(!parser.in_progress());
}

#[test]
fn an_idle_parser_is_small() {
    // One parser lives in every connection slot; a million held connections multiply it.
    assert!(
        std::mem::size_of::<ResponseParser>() <= 48,
        "ResponseParser is {} bytes",
        std::mem::size_of::<ResponseParser>()
    );
}
