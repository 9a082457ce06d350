//! Errors of the HTTP/1.1 response parser, and the byte escaping used in their messages.
//!
//! Only the error path allocates (to echo the offending bytes); the parser itself does not.

use std::fmt::Write as _;

/// Most offending bytes an error message echoes before it truncates them.
pub(crate) const ECHO_MAX: usize = 32;

/// Why a response could not be parsed. [`ResponseError::kind`] gives a stable short name
/// for counting errors by cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Bad status line, version, header syntax, or more header fields than the parser holds.
    #[error("malformed response head ({what}) near {near}")]
    Malformed { what: String, near: String },

    /// The head did not end (empty line) within the limit.
    #[error(
        "response head exceeds the limit of {limit} bytes without ending in an empty line (CRLF CRLF)"
    )]
    HeadersTooLarge { limit: usize },

    /// Bad chunked framing: chunk-size line, missing CRLF after chunk data, trailers.
    #[error("invalid chunked body: {0}")]
    InvalidChunk(String),

    /// Content-Length that is not a decimal number, or duplicates that disagree.
    #[error(
        "invalid Content-Length {value}: expected one non-negative decimal integer (repeated values must be identical)"
    )]
    InvalidContentLength { value: String },

    /// The body is (or announces it will be) longer than the limit.
    #[error("response body of at least {size} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge { size: u64, limit: u64 },

    /// The connection ended before the response was complete.
    #[error("connection closed mid-response (before the response was complete)")]
    Incomplete,
}

impl ResponseError {
    /// Stable short name of the error cause, one of: `malformed_response`,
    /// `headers_too_large`, `invalid_chunk`, `invalid_content_length`, `body_too_large`,
    /// `closed_mid_response`.
    pub fn kind(&self) -> &'static str {
        match self {
            ResponseError::Malformed { .. } => "malformed_response",
            ResponseError::HeadersTooLarge { .. } => "headers_too_large",
            ResponseError::InvalidChunk(_) => "invalid_chunk",
            ResponseError::InvalidContentLength { .. } => "invalid_content_length",
            ResponseError::BodyTooLarge { .. } => "body_too_large",
            ResponseError::Incomplete => "closed_mid_response",
        }
    }
}

/// Quotes `bytes` for an error message: printable ASCII as is, everything else escaped
/// (`\r`, `\n`, `\x00`, ...), cut after [`ECHO_MAX`] input bytes with `...` appended.
pub(crate) fn echo(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(ECHO_MAX)];
    let mut out = String::with_capacity(shown.len() + 8);
    out.push('"');
    for &b in shown {
        // `escape_ascii` also escapes `"` and `\`, so the quoting stays unambiguous.
        let _ = write!(out, "{}", b.escape_ascii());
    }
    out.push('"');
    if bytes.len() > ECHO_MAX {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_escapes_and_truncates() {
        assert_eq!(echo(b"zz\r\n"), r#""zz\r\n""#);
        assert_eq!(echo(b"a\"b\0"), r#""a\"b\x00""#);
        let long = [b'f'; 40];
        assert_eq!(echo(&long), format!("\"{}\"...", "f".repeat(32)));
    }

    #[test]
    fn kinds_are_stable() {
        let cases = [
            (
                ResponseError::Malformed {
                    what: String::new(),
                    near: String::new(),
                },
                "malformed_response",
            ),
            (
                ResponseError::HeadersTooLarge { limit: 1 },
                "headers_too_large",
            ),
            (ResponseError::InvalidChunk(String::new()), "invalid_chunk"),
            (
                ResponseError::InvalidContentLength {
                    value: String::new(),
                },
                "invalid_content_length",
            ),
            (
                ResponseError::BodyTooLarge { size: 2, limit: 1 },
                "body_too_large",
            ),
            (ResponseError::Incomplete, "closed_mid_response"),
        ];
        for (err, kind) in cases {
            assert_eq!(err.kind(), kind);
        }
    }
}
