//! Streaming decoder for the chunked transfer coding (RFC 9112 §7.1), counting and skipping
//! the data.
//!
//! Written by hand: `httparse::parse_chunk_size` needs a whole chunk-size line in one buffer,
//! while here every part (size digits, extensions, CRLFs, the last chunk, trailer fields and
//! the final empty line) may be split at any byte across reads. The decoder keeps no data and
//! does not allocate except to build an error message. Its boundary: it starts right after the
//! response head and stops right after the final CRLF, leaving any following bytes (the next
//! pipelined response) unconsumed.

use super::error::{ECHO_MAX, ResponseError, echo};

/// Longest chunk-size line (digits, whitespace and extensions) accepted.
pub(crate) const MAX_SIZE_LINE: usize = 4096;

/// Bytes of the current chunk-size line kept for error messages: one more than is echoed, so
/// that the echo shows it was truncated.
const LINE_KEEP: usize = ECHO_MAX + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of the chunk size.
    Size,
    /// Whitespace after the digits, before `;` or CR.
    SizeWs,
    /// A chunk extension: skipped up to CR.
    Ext,
    /// CR of the chunk-size line seen, LF expected.
    SizeLf,
    /// Chunk data still to skip.
    Data { remaining: u64 },
    /// Chunk data done, CR expected.
    DataCr,
    /// CR after chunk data seen, LF expected.
    DataLf,
    /// After the last chunk: a trailer field line or the final empty line starts here.
    TrailerStart,
    /// Inside a trailer field line: skipped up to CR.
    Trailer,
    /// CR of a trailer field line seen, LF expected.
    TrailerLf,
    /// CR of the final empty line seen, LF expected.
    FinalLf,
    /// The body is complete.
    Done,
}

/// Result of one [`ChunkedDecoder::decode`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// Bytes of the input that belong to the chunked body.
    pub consumed: usize,
    /// The body ended (final CRLF consumed); bytes after `consumed` are not part of it.
    pub done: bool,
}

/// State of one chunked body. Create one per body with [`ChunkedDecoder::new`]; no heap.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Chunk size parsed so far (in [`State::Size`]) or of the chunk being read.
    size: u64,
    /// Hex digits seen in the current chunk-size line.
    digits: u32,
    /// Length of the current chunk-size line so far; its first bytes are kept in `line`.
    line_len: usize,
    line: [u8; LINE_KEEP],
    /// Bytes of the trailer section so far.
    trailer_len: usize,
    /// Sum of all chunk sizes so far.
    data_total: u64,
    max_body: u64,
    max_trailer: usize,
}

impl ChunkedDecoder {
    /// A decoder for one body: at most `max_body` data bytes, at most `max_trailer` bytes of
    /// trailer fields.
    pub(crate) fn new(max_body: u64, max_trailer: usize) -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            digits: 0,
            line_len: 0,
            line: [0; LINE_KEEP],
            trailer_len: 0,
            data_total: 0,
            max_body,
            max_trailer,
        }
    }

    /// Data bytes (the sum of the chunk sizes) of the body so far.
    pub(crate) fn data_total(&self) -> u64 {
        self.data_total
    }

    /// Consumes as much of `input` as belongs to the body. Consumes every byte unless the
    /// body ends inside `input`, so a non-empty input always makes progress.
    pub(crate) fn decode(&mut self, input: &[u8]) -> Result<Decoded, ResponseError> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            if let State::Data { remaining } = self.state {
                // Skip as much data as is here at once.
                let take = remaining.min((input.len() - i) as u64);
                i += take as usize;
                self.state = match remaining - take {
                    0 => State::DataCr,
                    remaining => State::Data { remaining },
                };
            } else {
                self.step(input[i], &input[i..])?;
                i += 1;
            }
        }
        Ok(Decoded {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    /// Advances over one framing byte `b`; `rest` (starting with `b`) is only for messages.
    fn step(&mut self, b: u8, rest: &[u8]) -> Result<(), ResponseError> {
        if matches!(
            self.state,
            State::Size | State::SizeWs | State::Ext | State::SizeLf
        ) {
            self.keep_line_byte(b, rest)?;
        }
        self.state = match (self.state, b) {
            (State::Size, _) if b.is_ascii_hexdigit() => {
                self.push_digit(b, rest)?;
                State::Size
            }
            (State::Size, _) if self.digits == 0 => {
                return Err(self.line_error(rest, "expected hex digits"));
            }
            (State::Size | State::SizeWs, b' ' | b'\t') => State::SizeWs,
            (State::Size | State::SizeWs, b';') => State::Ext,
            (State::Size | State::SizeWs | State::Ext, b'\r') => State::SizeLf,
            (State::Size | State::SizeWs, _) => {
                return Err(self.line_error(
                    rest,
                    "expected hex digits, then optional ';' extensions, then CRLF",
                ));
            }
            (State::Ext, _) if b == b'\t' || !b.is_ascii_control() => State::Ext,
            (State::Ext, _) => {
                return Err(self.line_error(rest, "control character in chunk extension"));
            }
            (State::SizeLf, b'\n') => self.end_size_line()?,
            (State::SizeLf, _) => {
                return Err(self.line_error(rest, "expected LF after CR"));
            }
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => {
                self.size = 0;
                State::Size
            }
            (State::DataCr | State::DataLf, _) => {
                return Err(ResponseError::InvalidChunk(format!(
                    "expected CRLF after {} bytes of chunk data, found {}",
                    self.size,
                    echo(rest)
                )));
            }
            (State::TrailerStart, b'\r') => State::FinalLf,
            (State::TrailerStart | State::Trailer, b'\n') => {
                return Err(trailer_error(rest, "bare LF (expected CRLF)"));
            }
            (State::TrailerStart | State::Trailer, _) => {
                self.trailer_len += 1;
                if self.trailer_len > self.max_trailer {
                    return Err(ResponseError::InvalidChunk(format!(
                        "trailer section longer than {} bytes",
                        self.max_trailer
                    )));
                }
                if b == b'\r' {
                    State::TrailerLf
                } else {
                    State::Trailer
                }
            }
            (State::TrailerLf | State::FinalLf, b'\n') => {
                if self.state == State::FinalLf {
                    State::Done
                } else {
                    State::TrailerStart
                }
            }
            (State::TrailerLf | State::FinalLf, _) => {
                return Err(trailer_error(rest, "expected LF after CR"));
            }
            (State::Data { .. } | State::Done, _) => {
                unreachable!("decode handles data and stops when done")
            }
        };
        Ok(())
    }

    /// Records one byte of the chunk-size line, enforcing [`MAX_SIZE_LINE`].
    fn keep_line_byte(&mut self, b: u8, rest: &[u8]) -> Result<(), ResponseError> {
        if self.line_len >= MAX_SIZE_LINE {
            return Err(self.line_error(rest, "chunk-size line too long"));
        }
        if self.line_len < LINE_KEEP {
            self.line[self.line_len] = b;
        }
        self.line_len += 1;
        Ok(())
    }

    fn push_digit(&mut self, b: u8, rest: &[u8]) -> Result<(), ResponseError> {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        if self.size > u64::MAX >> 4 {
            return Err(self.line_error(rest, "chunk size overflows 64 bits"));
        }
        self.size = (self.size << 4) | u64::from(digit);
        self.digits += 1;
        Ok(())
    }

    /// The chunk-size line ended: start the chunk data, or the trailers after the last chunk.
    fn end_size_line(&mut self) -> Result<State, ResponseError> {
        self.line_len = 0;
        self.digits = 0;
        if self.size == 0 {
            return Ok(State::TrailerStart);
        }
        let total = self.data_total.saturating_add(self.size);
        if total > self.max_body {
            return Err(ResponseError::BodyTooLarge {
                size: total,
                limit: self.max_body,
            });
        }
        self.data_total = total;
        // `size` stays set until the next chunk-size line starts, for the missing-CRLF message.
        Ok(State::Data {
            remaining: self.size,
        })
    }

    /// An error about the current chunk-size line: echoes the line so far (which already
    /// holds `rest[0]`, the offending byte) and, unless that byte ended it, the rest of the
    /// line from `rest`.
    fn line_error(&self, rest: &[u8], why: &str) -> ResponseError {
        let mut shown = self.line[..self.line_len.min(LINE_KEEP)].to_vec();
        let after = match rest.first() {
            Some(b'\r' | b'\n') | None => &[],
            Some(_) => &rest[1..],
        };
        let line_end = after
            .iter()
            .position(|&c| c == b'\r' || c == b'\n')
            .unwrap_or(after.len());
        shown.extend(after[..line_end].iter().take(LINE_KEEP));
        ResponseError::InvalidChunk(format!("{why} in chunk-size line {}", echo(&shown)))
    }
}

fn trailer_error(rest: &[u8], why: &str) -> ResponseError {
    ResponseError::InvalidChunk(format!("{why} in trailer section at {}", echo(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"5;name=value\r\nhello\r\n7 ; q=\"a b\"\r\n, world\r\n\
        00A\r\n0123456789\r\n0;last\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n";

    /// Decodes `pieces` in order; returns (data bytes, bytes consumed, done).
    fn decode_all(pieces: &[&[u8]]) -> Result<(u64, usize, bool), ResponseError> {
        let mut decoder = ChunkedDecoder::new(u64::MAX, 1024);
        let mut consumed = 0;
        for piece in pieces {
            let decoded = decoder.decode(piece)?;
            consumed += decoded.consumed;
            if decoded.done {
                return Ok((decoder.data_total(), consumed, true));
            }
            assert_eq!(decoded.consumed, piece.len(), "consumed all while not done");
        }
        Ok((decoder.data_total(), consumed, false))
    }

    fn error(input: &[u8]) -> String {
        decode_all(&[input]).unwrap_err().to_string()
    }

    #[test]
    fn whole_split_and_bytewise() {
        let expected = Ok((22, BODY.len(), true));
        assert_eq!(decode_all(&[BODY]), expected);
        for at in 0..=BODY.len() {
            let (a, b) = BODY.split_at(at);
            assert_eq!(decode_all(&[a, b]), expected, "split at {at}");
        }
        let bytes: Vec<&[u8]> = BODY.chunks(1).collect();
        assert_eq!(decode_all(&bytes), expected);
    }

    #[test]
    fn stops_at_the_end_of_the_body() {
        let mut input = BODY.to_vec();
        input.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(decode_all(&[&input]), Ok((22, BODY.len(), true)));
        assert_eq!(decode_all(&[b"0\r\n\r\nX"]), Ok((0, 5, true)));
    }

    #[test]
    fn uppercase_hex_and_leading_zeros() {
        assert_eq!(
            decode_all(&[b"000F\r\n0123456789abcde\r\n0\r\n\r\n"]),
            Ok((15, 28, true))
        );
    }

    #[test]
    fn bad_chunk_sizes() {
        assert_eq!(
            error(b"zz\r\n"),
            "invalid chunked body: expected hex digits in chunk-size line \"zz\""
        );
        assert_eq!(
            error(b"\r\n"),
            "invalid chunked body: expected hex digits in chunk-size line \"\\r\""
        );
        assert_eq!(
            error(b"10000000000000000\r\n"),
            "invalid chunked body: chunk size overflows 64 bits in chunk-size line \
             \"10000000000000000\""
        );
        assert_eq!(
            error(b"5x\r\n"),
            "invalid chunked body: expected hex digits, then optional ';' extensions, then \
             CRLF in chunk-size line \"5x\""
        );
        assert_eq!(
            error(b"5\rx"),
            "invalid chunked body: expected LF after CR in chunk-size line \"5\\rx\""
        );
        assert_eq!(
            error(b"5;a\nb"),
            "invalid chunked body: control character in chunk extension in chunk-size line \
             \"5;a\\n\""
        );
        // Split input: the message shows what arrived so far of the line.
        let err = decode_all(&[b"1", b"2", b"g3"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid chunked body: expected hex digits, then optional ';' extensions, then \
             CRLF in chunk-size line \"12g3\""
        );
    }

    #[test]
    fn long_lines_are_truncated_in_messages_and_bounded() {
        let mut line = b"1;".to_vec();
        line.extend(std::iter::repeat_n(b'x', MAX_SIZE_LINE));
        let err = error(&line);
        assert!(
            err.starts_with("invalid chunked body: chunk-size line too long"),
            "{err}"
        );
        assert!(
            err.ends_with(&format!("\"1;{}\"...", "x".repeat(30))),
            "{err}"
        );
    }

    #[test]
    fn missing_crlf_after_data() {
        assert_eq!(
            error(b"5\r\nhelloXY\r\n"),
            "invalid chunked body: expected CRLF after 5 bytes of chunk data, found \"XY\\r\\n\""
        );
        assert!(error(b"5\r\nhello\rX").contains("found \"X\""));
        assert!(decode_all(&[b"5\r\nhello", b"\r", b"X"]).is_err());
    }

    #[test]
    fn trailer_errors() {
        assert!(error(b"0\r\nX: 1\n").contains("bare LF"));
        assert!(error(b"0\r\n\rX").contains("expected LF after CR"));
        let mut decoder = ChunkedDecoder::new(u64::MAX, 8);
        let err = decoder.decode(b"0\r\nX-Long: 1\r\n\r\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid chunked body: trailer section longer than 8 bytes"
        );
    }

    #[test]
    fn body_limit_is_checked_when_a_chunk_is_announced() {
        let mut decoder = ChunkedDecoder::new(10, 1024);
        decoder.decode(b"6\r\nabcdef\r\n").unwrap();
        let err = decoder.decode(b"5\r\n").unwrap_err();
        assert_eq!(err.kind(), "body_too_large");
        assert_eq!(
            err.to_string(),
            "response body of at least 11 bytes exceeds the limit of 10 bytes"
        );
        let mut decoder = ChunkedDecoder::new(10, 1024);
        let err = decoder.decode(b"ffffffffffffffff\r\n").unwrap_err();
        assert_eq!(err.kind(), "body_too_large");
    }
}
