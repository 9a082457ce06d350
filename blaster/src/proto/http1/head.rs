//! One response head: parsed by `httparse` from a byte slice, then reduced to what the
//! connection needs (status, whether it closes, how the body is framed, RFC 9112 §6.3).
//!
//! Boundary: works on a slice that starts at the status line; knows nothing of reads, buffers
//! or bodies. Header fields live in a fixed stack array; nothing is allocated except on errors.

use super::error::{ResponseError, echo};
use super::request::is_tchar;

/// Most header fields a response head may have.
pub(crate) const MAX_HEADERS: usize = 64;

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD request, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

/// What the parser keeps of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub status: u16,
    /// The server will close the connection after this response.
    pub close: bool,
    pub framing: Framing,
}

/// Parses the head at the start of `buf`: `Ok(Some((head_len, head)))` when it is complete,
/// `Ok(None)` when more bytes are needed.
pub(crate) fn parse_head(
    buf: &[u8],
    head_request: bool,
) -> Result<Option<(usize, Head)>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some((len, interpret(&response, head_request)?))),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(err) => Err(malformed(err, buf)),
    }
}

fn interpret(response: &httparse::Response, head_request: bool) -> Result<Head, ResponseError> {
    // httparse sets both once the head is complete.
    let status = response.code.unwrap_or_default();
    let http10 = response.version == Some(0);

    let mut close = false;
    let mut keep_alive = false;
    let mut content_length: Option<u64> = None;
    // Whether the last transfer coding named so far is `chunked`; `None` if no coding at all.
    let mut last_coding_chunked: Option<bool> = None;
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = parse_content_length(header.value)?;
            if let Some(earlier) = content_length.filter(|&earlier| earlier != value) {
                return Err(ResponseError::InvalidContentLength {
                    value: format!(
                        "{} (conflicts with an earlier {earlier})",
                        echo(header.value)
                    ),
                });
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in list_elements(header.value) {
                last_coding_chunked = Some(coding.eq_ignore_ascii_case(b"chunked"));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for option in list_elements(header.value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }

    let bodiless = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = match (bodiless, last_coding_chunked, content_length) {
        (true, _, _) => Framing::None,
        // Transfer-Encoding wins over Content-Length; a final coding other than chunked
        // can only be delimited by the close (RFC 9112 §6.3 items 3 and 4).
        (false, Some(true), _) => Framing::Chunked,
        (false, Some(false), _) => Framing::UntilClose,
        (false, None, Some(length)) => Framing::Length(length),
        (false, None, None) => Framing::UntilClose,
    };
    close |= (http10 && !keep_alive) || framing == Framing::UntilClose;
    Ok(Head {
        status,
        close,
        framing,
    })
}

/// Content-Length: one decimal number, or a list of identical ones (RFC 9110 §8.6).
fn parse_content_length(value: &[u8]) -> Result<u64, ResponseError> {
    let invalid = || ResponseError::InvalidContentLength { value: echo(value) };
    let mut parsed: Option<u64> = None;
    for element in value.split(|&b| b == b',').map(trim_ows) {
        if element.is_empty() || !element.iter().all(u8::is_ascii_digit) {
            return Err(invalid());
        }
        let number = element.iter().try_fold(0u64, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        match (number, parsed) {
            (None, _) => return Err(invalid()),
            (Some(n), Some(earlier)) if n != earlier => return Err(invalid()),
            (Some(n), _) => parsed = Some(n),
        }
    }
    parsed.ok_or_else(invalid)
}

/// The non-empty elements of a comma-separated header list, without surrounding whitespace.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |p| p + 1);
    &bytes[start..end]
}

fn malformed(err: httparse::Error, buf: &[u8]) -> ResponseError {
    let (what, line) = match err {
        httparse::Error::Version => ("invalid HTTP version, expected HTTP/1.0 or HTTP/1.1", 0),
        httparse::Error::Status => ("invalid status code, expected 3 digits", 0),
        httparse::Error::TooManyHeaders => {
            return ResponseError::Malformed {
                what: format!("more than {MAX_HEADERS} header fields"),
                near: echo(first_line(buf)),
            };
        }
        httparse::Error::HeaderName => ("invalid header line, expected `name: value`", 1),
        httparse::Error::HeaderValue => ("invalid header value", 1),
        httparse::Error::NewLine | httparse::Error::Token => ("invalid line ending", 1),
    };
    let near = if line == 0 {
        first_line(buf)
    } else {
        bad_header_line(buf).unwrap_or_else(|| first_line(buf))
    };
    ResponseError::Malformed {
        what: what.to_owned(),
        near: echo(near),
    }
}

fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    buf.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

fn first_line(buf: &[u8]) -> &[u8] {
    lines(buf).next().unwrap_or_default()
}

/// Best guess at the header line httparse rejected, for the error message only.
fn bad_header_line(buf: &[u8]) -> Option<&[u8]> {
    lines(buf).skip(1).find(|line| {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return true;
        };
        let name_ok = colon > 0 && line[..colon].iter().all(|&b| is_tchar(b));
        let value_ok = line[colon + 1..]
            .iter()
            .all(|&b| b == b'\t' || !b.is_ascii_control());
        !(name_ok && value_ok)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8], head_request: bool) -> Result<Head, ResponseError> {
        let (len, head) = parse_head(bytes, head_request)?.expect("complete head");
        assert_eq!(len, bytes.len());
        Ok(head)
    }

    fn framing(bytes: &[u8]) -> Framing {
        head(bytes, false).unwrap().framing
    }

    #[test]
    fn framing_rules() {
        let f = framing;
        assert_eq!(
            f(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            f(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            f(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            f(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            Framing::Chunked
        );
        assert_eq!(
            f(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"),
            Framing::Chunked
        );
        assert_eq!(
            f(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Framing::UntilClose
        );
        assert_eq!(f(b"HTTP/1.1 200 OK\r\n\r\n"), Framing::UntilClose);
        assert_eq!(
            f(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
            Framing::None
        );
        assert_eq!(f(b"HTTP/1.1 304 Not Modified\r\n\r\n"), Framing::None);
        assert_eq!(
            f(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            Framing::None
        );
        let head_response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(head(head_response, true).unwrap().framing, Framing::None);
    }

    #[test]
    fn close_rules() {
        let close = |bytes: &[u8]| head(bytes, false).unwrap().close;
        assert!(!close(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(close(
            b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(close(
            b"HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!close(
            b"HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(close(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!close(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(close(b"HTTP/1.1 200 OK\r\n\r\n"));
    }

    #[test]
    fn missing_reason_phrase_is_accepted() {
        let h = head(b"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n", false).unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(1));
    }

    #[test]
    fn invalid_content_lengths() {
        for value in [
            "",
            "abc",
            "-1",
            "+1",
            "1 2",
            "5, 6",
            "5,",
            "0x10",
            "99999999999999999999",
        ] {
            let bytes = format!("HTTP/1.1 200 OK\r\nContent-Length: {value}\r\n\r\n");
            let err = head(bytes.as_bytes(), false).unwrap_err();
            assert_eq!(err.kind(), "invalid_content_length", "{value:?}: {err}");
        }
        let err = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid Content-Length \"6\" (conflicts with an earlier 5): expected one \
             non-negative decimal integer (repeated values must be identical)"
        );
    }

    #[test]
    fn malformed_messages_point_at_the_line() {
        let err = parse_head(
            b"HTTP/1.1 200 OK\r\nGood: yes\r\nNo colon here\r\n\r\n",
            false,
        )
        .unwrap_err();
        assert_eq!(err.kind(), "malformed_response");
        assert_eq!(
            err.to_string(),
            "malformed response head (invalid header line, expected `name: value`) near \
             \"No colon here\""
        );
        let err = parse_head(b"garbage\r\n\r\n", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed response head (invalid HTTP version, expected HTTP/1.0 or HTTP/1.1) \
             near \"garbage\""
        );
    }

    #[test]
    fn too_many_headers() {
        let mut bytes = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            bytes.extend(format!("X-{i}: v\r\n").as_bytes());
        }
        bytes.extend(b"\r\n");
        let err = parse_head(&bytes, false).unwrap_err();
        assert_eq!(err.kind(), "malformed_response");
        assert!(
            err.to_string().contains("more than 64 header fields"),
            "{err}"
        );
    }
}
