//! A complete HTTP/1.1 response, as received, turned into status, headers and body for
//! checks and captures. The engine collects these bytes only for steps that need them
//! ([`needs_response_bytes`]); its streaming parser (`proto::http1`) has already framed the
//! response, so this works on one buffer: the head with `httparse`, a chunked body
//! de-chunked with `httparse::parse_chunk_size` into the caller's scratch buffer.
//! Content codings (gzip, ...) are not decoded.

use super::RuntimeError;
use crate::scenario::model::{CheckCondition, HttpStep};

/// Most header fields read from one response.
const MAX_HEADERS: usize = 128;

/// Bytes of input an error message quotes.
const ECHO: usize = 40;

/// A parsed response. Header names and values and the body borrow the raw bytes (the body
/// borrows the scratch buffer when it was chunked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseView<'a> {
    pub status: u16,
    /// In order of arrival; names as sent (compare them case-insensitively).
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// The body without framing: empty for 1xx, 204, 304 and a HEAD request's response
    /// (a Content-Length with no bytes after the head).
    pub body: &'a [u8],
}

/// Parses one complete response. Interim responses (100 Continue, ...) before the final one
/// are skipped; after a 101 the body is empty (the bytes are another protocol's).
pub fn parse_response<'a>(
    raw: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<ResponseView<'a>, RuntimeError> {
    let mut rest = raw;
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Response::new(&mut slots);
        let head_len = match head.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return Err(bad(format!(
                    "the head does not end in an empty line (CRLF CRLF) within {} bytes: {}",
                    rest.len(),
                    echo(rest)
                )));
            }
            Err(e) => return Err(bad(format!("malformed head ({e}) in {}", echo(rest)))),
        };
        // httparse sets the code once the head is complete.
        let status = head.code.unwrap_or_default();
        let after = &rest[head_len..];
        if (100..200).contains(&status) && status != 101 {
            rest = after;
            continue;
        }
        let headers: Vec<(&'a str, &'a [u8])> =
            head.headers.iter().map(|h| (h.name, h.value)).collect();
        let body: &'a [u8] = if status < 200 || status == 204 || status == 304 {
            &[]
        } else if is_chunked(&headers) {
            dechunk(after, scratch)?;
            let scratch: &'a Vec<u8> = scratch;
            scratch
        } else if let Some(len) = content_length(&headers)? {
            if after.is_empty() {
                &[]
            } else if (after.len() as u64) < len {
                return Err(bad(format!(
                    "the body has {} of the {len} bytes its Content-Length announces",
                    after.len()
                )));
            } else {
                &after[..len as usize]
            }
        } else {
            after
        };
        return Ok(ResponseView {
            status,
            headers,
            body,
        });
    }
}

/// Whether a step needs the response's headers or body: false when its checks only look at
/// status and latency and it captures nothing.
pub fn needs_response_bytes(step: &HttpStep) -> bool {
    // A retry reads the answer's Retry-After.
    !step.captures.is_empty()
        || step.retry.is_some()
        || step.checks.iter().any(|c| {
            c.conditions.iter().any(|cond| match cond {
                CheckCondition::StatusIn(_)
                | CheckCondition::LatencyBelow(_)
                | CheckCondition::RetryAfterHonoured => false,
                CheckCondition::BodyContains(_)
                | CheckCondition::JsonEquals { .. }
                | CheckCondition::HeaderEquals { .. } => true,
            })
        })
}

fn bad(what: String) -> RuntimeError {
    RuntimeError::Response(what)
}

/// `bytes` quoted for a message: printable ASCII as is, the rest escaped, cut after [`ECHO`].
fn echo(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(ECHO)];
    let dots = if bytes.len() > ECHO { "..." } else { "" };
    format!("\"{}\"{dots}", shown.escape_ascii())
}

/// The last transfer coding is `chunked` (RFC 9112 §6.3).
fn is_chunked(headers: &[(&str, &[u8])]) -> bool {
    let mut chunked = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in value.split(|&b| b == b',') {
                let coding = coding.trim_ascii();
                if !coding.is_empty() {
                    chunked = coding.eq_ignore_ascii_case(b"chunked");
                }
            }
        }
    }
    chunked
}

fn content_length(headers: &[(&str, &[u8])]) -> Result<Option<u64>, RuntimeError> {
    let Some((_, value)) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    else {
        return Ok(None);
    };
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            bad(format!(
                "invalid Content-Length {}: expected a decimal number",
                echo(value)
            ))
        })
}

/// Appends the data of the chunked body at the start of `input` to `out` (cleared first).
/// Trailer fields after the last chunk are ignored.
fn dechunk(mut input: &[u8], out: &mut Vec<u8>) -> Result<(), RuntimeError> {
    out.clear();
    loop {
        let (used, size) = match httparse::parse_chunk_size(input) {
            Ok(httparse::Status::Complete(c)) => c,
            Ok(httparse::Status::Partial) => {
                return Err(bad(format!(
                    "the chunked body ends inside a chunk-size line: {}",
                    echo(input)
                )));
            }
            Err(_) => {
                return Err(bad(format!(
                    "invalid chunk-size line in the chunked body: {}",
                    echo(input)
                )));
            }
        };
        input = &input[used..];
        if size == 0 {
            return Ok(());
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if input.len() < size.saturating_add(2) {
            return Err(bad(format!(
                "the chunked body ends inside a chunk of {size} bytes ({} left)",
                input.len()
            )));
        }
        if &input[size..size + 2] != b"\r\n" {
            return Err(bad(format!(
                "expected CRLF after {size} bytes of chunk data, found {}",
                echo(&input[size..])
            )));
        }
        out.extend_from_slice(&input[..size]);
        input = &input[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::runtime::testing::parse;

    /// Status, headers and body, owned.
    type Owned = (u16, Vec<(String, Vec<u8>)>, Vec<u8>);

    fn view(raw: &[u8]) -> Result<Owned, RuntimeError> {
        let mut scratch = Vec::new();
        let v = parse_response(raw, &mut scratch)?;
        let headers = v
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        Ok((v.status, headers, v.body.to_vec()))
    }

    fn body(raw: &[u8]) -> Vec<u8> {
        view(raw).unwrap_or_else(|e| panic!("{e}")).2
    }

    fn err(raw: &[u8]) -> String {
        view(raw).unwrap_err().to_string()
    }

    #[test]
    fn content_length_body() {
        let (status, headers, b) =
            view(b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello").unwrap();
        assert_eq!(status, 201);
        assert_eq!(
            headers,
            [
                ("Content-Length".into(), b"5".to_vec()),
                ("X-A".into(), b"1".to_vec())
            ]
        );
        assert_eq!(b, b"hello");
        // Bytes after the body (a pipelined response) are not part of it.
        assert_eq!(
            body(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"),
            b"ok"
        );
    }

    #[test]
    fn chunked_bodies_are_dechunked() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n7\r\n, world\r\n00A\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n";
        assert_eq!(body(raw), b"hello, world0123456789");
        let json = b"HTTP/1.1 200 OK\r\ntransfer-encoding: CHUNKED\r\n\r\n\
            4\r\n{\"a\"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n";
        assert_eq!(body(json), br#"{"a": 1}"#);
        assert_eq!(
            body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            b""
        );
        // Chunked is not the last coding: the body runs to the end.
        assert_eq!(
            body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nraw"),
            b"raw"
        );
    }

    #[test]
    fn scratch_is_reused() {
        let mut scratch = b"old contents".to_vec();
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
        let v = parse_response(raw, &mut scratch).unwrap();
        assert_eq!(v.body, b"hi");
    }

    #[test]
    fn bad_chunked_bodies() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let with = |b: &[u8]| [head.as_slice(), b].concat();
        assert_eq!(
            err(&with(b"zz\r\n")),
            "cannot read the response for checks and captures: invalid chunk-size line in the chunked body: \"zz\\r\\n\""
        );
        assert_eq!(
            err(&with(b"5\r\nhel")),
            "cannot read the response for checks and captures: the chunked body ends inside a chunk of 5 bytes (3 left)"
        );
        assert_eq!(
            err(&with(b"5\r\nhelloXY0\r\n\r\n")),
            "cannot read the response for checks and captures: expected CRLF after 5 bytes of chunk data, found \"XY0\\r\\n\\r\\n\""
        );
        assert!(err(&with(b"5")).contains("ends inside a chunk-size line: \"5\""));
    }

    #[test]
    fn bodiless_responses() {
        assert_eq!(body(b"HTTP/1.1 204 No Content\r\n\r\n"), b"");
        assert_eq!(
            body(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
            b""
        );
        // A HEAD request's response: a Content-Length and nothing after the head.
        assert_eq!(body(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"), b"");
        // Read until close: everything after the head.
        assert_eq!(
            body(b"HTTP/1.0 200 OK\r\n\r\nuntil the end"),
            b"until the end"
        );
    }

    #[test]
    fn interim_responses_are_skipped() {
        let (status, headers, b) = view(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        )
        .unwrap();
        assert_eq!((status, b.as_slice()), (200, b"ok".as_slice()));
        assert_eq!(headers.len(), 1);
        let (status, _, b) =
            view(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi")
                .unwrap();
        assert_eq!((status, b.len()), (101, 0));
    }

    #[test]
    fn malformed_and_incomplete() {
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"),
            "cannot read the response for checks and captures: the body has 3 of the 5 bytes its Content-Length announces"
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello"),
            "cannot read the response for checks and captures: invalid Content-Length \"5x\": expected a decimal number"
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nX: 1\r\n"),
            "cannot read the response for checks and captures: the head does not end in an empty line (CRLF CRLF) within 23 bytes: \"HTTP/1.1 200 OK\\r\\nX: 1\\r\\n\""
        );
        let e = err(b"HTTP/1.1 2x0 OK\r\n\r\n");
        assert!(
            e.contains(
                "malformed head (invalid response status) in \"HTTP/1.1 2x0 OK\\r\\n\\r\\n\""
            ),
            "{e}"
        );
        let e = err(&[b'x'; 100]);
        assert!(e.ends_with(&format!("\"{}\"...", "x".repeat(40))), "{e}");
    }

    #[test]
    fn which_steps_need_the_bytes() {
        let f = parse(
            r#"
[scenarios.a]
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.a.steps]]
request = "GET http://127.0.0.1/plain"
[[scenarios.a.steps]]
request = "GET http://127.0.0.1/status"
checks = [{ status = [200], latency_below = "1s" }, { latency_below = "2s" }]
[[scenarios.a.steps]]
request = "GET http://127.0.0.1/body"
checks = [{ status = [200] }, { body_contains = "ok" }]
[[scenarios.a.steps]]
request = "GET http://127.0.0.1/json"
checks = [{ json = "$.a", equals = 1 }]
[[scenarios.a.steps]]
request = "GET http://127.0.0.1/header"
checks = [{ header = "X-A", equals = "1" }]
[[scenarios.a.steps]]
request = "GET http://127.0.0.1/capture"
capture = { t = "header:X-Token" }
"#,
        );
        let needs: Vec<bool> = f.scenarios[0].flows[0]
            .steps
            .iter()
            .map(|s| match &s.kind {
                crate::scenario::model::StepKind::Http(h) => needs_response_bytes(h),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(needs, [false, false, true, true, true, true]);
    }
}
