//! HTTP/1.1 request encoding: validates the request parts and renders the request bytes once;
//! the engine then sends those same bytes for every request.
//!
//! Boundary: pure bytes out. No `Connection` header is added (HTTP/1.1 keeps the connection
//! alive by default); the user's headers are sent in the order given.

/// A request part that cannot be sent as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("invalid method {0:?}: methods are tokens (letters, digits and {TCHAR_SYMBOLS})")]
    InvalidMethod(String),

    #[error(
        "invalid path {0:?}: the path must start with \"/\" (or be \"*\") and contain no \
         spaces or control characters (percent-encode them)"
    )]
    InvalidPath(String),

    #[error(
        "invalid header name {0:?}: header names are tokens (letters, digits and {TCHAR_SYMBOLS})"
    )]
    InvalidHeaderName(String),

    #[error(
        "invalid value {value:?} for header {name:?}: header values must not contain CR, LF or NUL"
    )]
    InvalidHeaderValue { name: String, value: String },
}

/// The non-alphanumeric characters allowed in a token (RFC 9110 §5.6.2).
const TCHAR_SYMBOLS: &str = "!#$%&'*+-.^_`|~";

/// Whether `b` may appear in a token (method, header name).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || TCHAR_SYMBOLS.as_bytes().contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Whether responses to `method` have no body whatever their headers say. Methods are
/// case-sensitive, so only `HEAD` is.
pub fn is_head(method: &str) -> bool {
    method == "HEAD"
}

/// Renders a complete request:
/// `METHOD path HTTP/1.1`, `Host: host` (unless `headers` has a Host), the user headers in
/// order, `Content-Length` when there is a body or the method is POST, PUT or PATCH (unless
/// `headers` has a Content-Length or Transfer-Encoding), the empty line, then `body`.
pub fn encode_request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    validate(method, path, host, headers)?;

    let has = |wanted: &str| {
        headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(wanted))
    };
    let host = (!has("host")).then_some(host);
    let content_length = (!has("content-length") && !has("transfer-encoding"))
        .then_some(body.len())
        .filter(|&len| len > 0 || matches!(method, "POST" | "PUT" | "PATCH"))
        .map(|len| len.to_string());

    let content_length = content_length.as_deref();
    let len = encoded_len(method, path, host, headers, content_length, body.len());
    let mut out = Vec::with_capacity(len);
    for part in [method, " ", path, " HTTP/1.1\r\n"] {
        out.extend_from_slice(part.as_bytes());
    }
    if let Some(host) = host {
        push_header(&mut out, "Host", host);
    }
    for (name, value) in headers {
        push_header(&mut out, name, value);
    }
    if let Some(len) = content_length {
        push_header(&mut out, "Content-Length", len);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(out)
}

fn validate(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(String, String)],
) -> Result<(), EncodeError> {
    if !is_token(method) {
        return Err(EncodeError::InvalidMethod(method.to_owned()));
    }
    let path_ok = (path.starts_with('/') || path == "*")
        && !path.bytes().any(|b| b == b' ' || b.is_ascii_control());
    if !path_ok {
        return Err(EncodeError::InvalidPath(path.to_owned()));
    }
    check_value("Host", host)?;
    for (name, value) in headers {
        if !is_token(name) {
            return Err(EncodeError::InvalidHeaderName(name.clone()));
        }
        check_value(name, value)?;
    }
    Ok(())
}

fn check_value(name: &str, value: &str) -> Result<(), EncodeError> {
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
        return Err(EncodeError::InvalidHeaderValue {
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(())
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    for part in [name, ": ", value, "\r\n"] {
        out.extend_from_slice(part.as_bytes());
    }
}

/// Exact length of the encoded request, so the output is allocated once.
fn encoded_len(
    method: &str,
    path: &str,
    host: Option<&str>,
    headers: &[(String, String)],
    content_length: Option<&str>,
    body_len: usize,
) -> usize {
    let header_len = |name: &str, value: &str| name.len() + value.len() + 4;
    method.len()
        + 1
        + path.len()
        + 11
        + host.map_or(0, |host| header_len("Host", host))
        + headers.iter().map(|(n, v)| header_len(n, v)).sum::<usize>()
        + content_length.map_or(0, |len| header_len("Content-Length", len))
        + 2
        + body_len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn encode(method: &str, path: &str, pairs: &[(&str, &str)], body: &[u8]) -> String {
        let bytes = encode_request(method, path, "example.com:8080", &headers(pairs), body)
            .expect("valid request");
        String::from_utf8(bytes).unwrap()
    }

    fn error(method: &str, path: &str, pairs: &[(&str, &str)]) -> String {
        encode_request(method, path, "h", &headers(pairs), b"")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn get_without_body() {
        assert_eq!(
            encode("GET", "/index.html?q=1", &[("Accept", "*/*")], b""),
            "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\r\n"
        );
    }

    #[test]
    fn post_with_body() {
        assert_eq!(
            encode(
                "POST",
                "/submit",
                &[("Content-Type", "text/plain")],
                b"hello"
            ),
            "POST /submit HTTP/1.1\r\nHost: example.com:8080\r\nContent-Type: text/plain\r\n\
             Content-Length: 5\r\n\r\nhello"
        );
    }

    #[test]
    fn empty_body_content_length_rules() {
        assert_eq!(
            encode("PUT", "/x", &[], b""),
            "PUT /x HTTP/1.1\r\nHost: example.com:8080\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(
            encode("PATCH", "/x", &[], b""),
            "PATCH /x HTTP/1.1\r\nHost: example.com:8080\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(
            encode("DELETE", "/x", &[], b""),
            "DELETE /x HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"
        );
        assert_eq!(
            encode("OPTIONS", "*", &[], b""),
            "OPTIONS * HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"
        );
    }

    #[test]
    fn user_host_replaces_default() {
        assert_eq!(
            encode("GET", "/", &[("X-A", "1"), ("host", "other.test")], b""),
            "GET / HTTP/1.1\r\nX-A: 1\r\nhost: other.test\r\n\r\n"
        );
    }

    #[test]
    fn user_framing_headers_are_kept() {
        assert_eq!(
            encode("POST", "/", &[("content-length", "3")], b"abc"),
            "POST / HTTP/1.1\r\nHost: example.com:8080\r\ncontent-length: 3\r\n\r\nabc"
        );
        assert_eq!(
            encode(
                "POST",
                "/",
                &[("Transfer-Encoding", "chunked")],
                b"3\r\nabc\r\n0\r\n\r\n"
            ),
            "POST / HTTP/1.1\r\nHost: example.com:8080\r\nTransfer-Encoding: chunked\r\n\r\n\
             3\r\nabc\r\n0\r\n\r\n"
        );
    }

    #[test]
    fn allocates_once() {
        let body = [b'x'; 1000];
        let bytes = encode_request("POST", "/", "h", &headers(&[("A", "b")]), &body).unwrap();
        assert_eq!(bytes.capacity(), bytes.len());
    }

    #[test]
    fn invalid_method() {
        assert_eq!(
            error("G ET", "/", &[]),
            "invalid method \"G ET\": methods are tokens (letters, digits and !#$%&'*+-.^_`|~)"
        );
        assert!(error("", "/", &[]).starts_with("invalid method \"\": "));
    }

    #[test]
    fn invalid_path() {
        let expected = |shown: &str| {
            format!(
                "invalid path {shown}: the path must start with \"/\" (or be \"*\") and \
                 contain no spaces or control characters (percent-encode them)"
            )
        };
        assert_eq!(error("GET", "index.html", &[]), expected("\"index.html\""));
        assert_eq!(error("GET", "/a b", &[]), expected("\"/a b\""));
        assert_eq!(
            error("GET", "/a\r\nX: y", &[]),
            expected("\"/a\\r\\nX: y\"")
        );
        assert_eq!(error("GET", "", &[]), expected("\"\""));
        assert_eq!(error("GET", "/\x7f", &[]), expected("\"/\\u{7f}\""));
    }

    #[test]
    fn invalid_header_name() {
        assert_eq!(
            error("GET", "/", &[("X Y", "1")]),
            "invalid header name \"X Y\": header names are tokens (letters, digits and \
             !#$%&'*+-.^_`|~)"
        );
        assert!(error("GET", "/", &[("", "1")]).starts_with("invalid header name \"\": "));
        assert!(error("GET", "/", &[("X:", "1")]).starts_with("invalid header name \"X:\": "));
    }

    #[test]
    fn invalid_header_value() {
        assert_eq!(
            error("GET", "/", &[("X-A", "1\r\nEvil: 1")]),
            "invalid value \"1\\r\\nEvil: 1\" for header \"X-A\": header values must not \
             contain CR, LF or NUL"
        );
        assert!(error("GET", "/", &[("X-A", "a\0")]).starts_with("invalid value \"a\\0\""));
        let host_error = encode_request("GET", "/", "h\n", &[], b"").unwrap_err();
        assert!(
            host_error
                .to_string()
                .starts_with("invalid value \"h\\n\" for header \"Host\""),
            "{host_error}"
        );
    }

    #[test]
    fn head_detection() {
        assert!(is_head("HEAD"));
        assert!(!is_head("GET"));
        assert!(!is_head("head"));
    }
}
