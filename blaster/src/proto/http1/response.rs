//! Streaming HTTP/1.1 response parser: bytes in, at most one [`Response`] out per call.
//!
//! Boundary: one parser per connection, fed whatever the socket delivered; it never reads,
//! times or stores bodies, only counts them. Heads are parsed by `httparse` straight from the
//! caller's input; only a head split across reads is copied into an internal buffer (reserved
//! at construction, grown at most to [`Limits::max_head_bytes`]). Framing after the head
//! (Content-Length, chunked, read-until-close) is tracked here by hand, because httparse only
//! parses heads.

use super::chunked::ChunkedDecoder;
use super::error::ResponseError;
use super::head::{Framing, Head, parse_head};

/// Size limits of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest head (status line, header fields and the empty line), in bytes. Also bounds
    /// the trailer section of a chunked body.
    pub max_head_bytes: usize,
    /// Longest body: Content-Length, sum of the chunk sizes, or bytes until close.
    pub max_body_bytes: u64,
}

impl Default for Limits {
    /// 64 KiB head, 1 GiB body.
    fn default() -> Self {
        Limits {
            max_head_bytes: 64 * 1024,
            max_body_bytes: 1 << 30,
        }
    }
}

/// A complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Body bytes: the Content-Length, the sum of the chunk sizes (without the chunked
    /// framing), or the bytes read until close. 0 for bodiless responses.
    pub body_bytes: u64,
    /// The connection must not be reused: `Connection: close`, HTTP/1.0 without
    /// `Connection: keep-alive`, or a body delimited by the close.
    pub close: bool,
}

/// Result of one [`ResponseParser::feed`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input used; the rest belongs to the next response (call again with it).
    pub consumed: usize,
    /// The response that ended within the consumed bytes, if any.
    pub response: Option<Response>,
}

/// Where the parser is within the current response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a head (its first bytes may be in the spill's head buffer).
    Head,
    /// Skipping a Content-Length body (`remaining` bytes to go).
    Length,
    /// Skipping a chunked body (the decoder is in the spill).
    Chunked,
    /// Counting a body that ends when the connection does.
    UntilClose,
}

/// Head buffer reserved the first time a head is split across reads; grown (rarely) up to
/// [`Limits::max_head_bytes`]. Nothing is reserved up front: an idle connection must stay
/// small (hundreds of thousands of them are held at once), and most heads arrive whole.
const INITIAL_HEAD_CAPACITY: usize = 4096;

/// What a parser needs only for split heads and chunked bodies, allocated the first time one
/// of them arrives and kept for the connection's later responses (no per-response
/// allocation), so that a connection that never sees either costs one pointer.
#[derive(Debug, Clone)]
struct Spill {
    /// The start of a head that did not fit in one input.
    head: Vec<u8>,
    /// The chunked body being read (meaningful in [`State::Chunked`] only).
    chunked: ChunkedDecoder,
}

/// Incremental parser of the responses on one connection. Create once, reuse for every
/// response; call [`ResponseParser::reset`] after a reconnect. After an error it has already
/// reset itself (the connection should be dropped anyway).
///
/// Laid out to stay small (48 bytes): one lives in every connection slot, idle or not.
#[derive(Debug, Clone)]
pub struct ResponseParser {
    /// [`Limits::max_body_bytes`].
    max_body: u64,
    /// [`Limits::max_head_bytes`], saturated to `u32` (heads of 4 GiB are not a use case).
    max_head: u32,
    state: State,
    /// An interim (1xx) response was skipped; the final one has not arrived yet.
    interim: bool,
    /// Status and close flag of the response being read (known once its head is parsed).
    status: u16,
    close: bool,
    /// Body bytes of the response being read: the Content-Length, or bytes so far until close.
    body_bytes: u64,
    /// [`State::Length`]: body bytes still to skip.
    remaining: u64,
    spill: Option<Box<Spill>>,
}

impl ResponseParser {
    /// A parser for one connection. It allocates nothing until a head arrives split across
    /// reads or a chunked body starts; what it then reserves is kept for the connection's
    /// later responses.
    pub fn new(limits: Limits) -> Self {
        ResponseParser {
            max_body: limits.max_body_bytes,
            max_head: u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX),
            state: State::Head,
            interim: false,
            status: 0,
            close: false,
            body_bytes: 0,
            remaining: 0,
            spill: None,
        }
    }

    /// Feed received bytes. Parses at most one response per call. `head_request` says whether
    /// the response currently being parsed answers a HEAD request (no body whatever the
    /// headers).
    ///
    /// With non-empty input every call consumes at least one byte, returns a response or
    /// fails. Interim 1xx responses are skipped (101 Switching Protocols is returned; bytes
    /// after it are not HTTP). A body delimited by the close is only returned by
    /// [`ResponseParser::eof`].
    pub fn feed(&mut self, input: &[u8], head_request: bool) -> Result<Progress, ResponseError> {
        let result = self.feed_inner(input, head_request);
        if result.is_err() {
            self.reset();
        }
        result
    }

    /// The connection hit EOF: returns `Ok(Some(response))` if EOF legitimately ends a body
    /// that had no Content-Length and was not chunked (read-until-close body), `Ok(None)` if
    /// nothing was in progress, `Err(ResponseError::Incomplete)` if a response was cut short.
    /// The parser is reset either way.
    pub fn eof(&mut self) -> Result<Option<Response>, ResponseError> {
        let result = match self.state {
            State::UntilClose => Ok(Some(self.current())),
            _ if self.in_progress() => Err(ResponseError::Incomplete),
            _ => Ok(None),
        };
        self.reset();
        result
    }

    /// Forget any partial state (after a reconnect).
    pub fn reset(&mut self) {
        if let Some(spill) = &mut self.spill {
            spill.head.clear();
        }
        self.state = State::Head;
        self.status = 0;
        self.close = false;
        self.body_bytes = 0;
        self.remaining = 0;
        self.interim = false;
    }

    /// Some bytes of a response were consumed but it is not complete (this includes a
    /// skipped 1xx whose final response has not started yet).
    pub fn in_progress(&self) -> bool {
        self.state != State::Head || self.head_len() > 0 || self.interim
    }

    /// Bytes of a split head buffered so far.
    fn head_len(&self) -> usize {
        self.spill.as_ref().map_or(0, |s| s.head.len())
    }

    /// Capacity of the split-head buffer (0 before the first split head).
    #[cfg(test)]
    fn head_capacity(&self) -> usize {
        self.spill.as_ref().map_or(0, |s| s.head.capacity())
    }

    /// The response being read, as it stands.
    fn current(&self) -> Response {
        Response {
            status: self.status,
            body_bytes: self.body_bytes,
            close: self.close,
        }
    }

    fn feed_inner(&mut self, input: &[u8], head_request: bool) -> Result<Progress, ResponseError> {
        let mut consumed = 0;
        while consumed < input.len() {
            let rest = &input[consumed..];
            let (used, response) = match self.state {
                State::Head => self.read_head(rest, head_request)?,
                State::Length => {
                    let used = self.remaining.min(rest.len() as u64);
                    self.remaining -= used;
                    let done = self.remaining == 0;
                    (used as usize, done.then(|| self.finish()))
                }
                State::Chunked => {
                    let decoder = &mut self
                        .spill
                        .as_mut()
                        .expect("a chunked body has its decoder in the spill")
                        .chunked;
                    let decoded = decoder.decode(rest)?;
                    let body_bytes = decoder.data_total();
                    let response = decoded.done.then(|| {
                        self.body_bytes = body_bytes;
                        self.finish()
                    });
                    (decoded.consumed, response)
                }
                State::UntilClose => {
                    self.count_until_close(rest.len())?;
                    (rest.len(), None)
                }
            };
            debug_assert!(used > 0 || response.is_some(), "parser made no progress");
            consumed += used;
            if response.is_some() {
                return Ok(Progress { consumed, response });
            }
        }
        Ok(Progress {
            consumed,
            response: None,
        })
    }

    /// Reads (the rest of) a head from `input`; returns the bytes used and the response if
    /// it has no body.
    fn read_head(
        &mut self,
        input: &[u8],
        head_request: bool,
    ) -> Result<(usize, Option<Response>), ResponseError> {
        let max = self.max_head as usize;
        if self.head_len() == 0 {
            // Common case: the whole head is in `input`; parse it in place.
            return match parse_head(input, head_request)? {
                Some((len, head)) if len <= max => Ok((len, self.start(head)?)),
                Some(_) => Err(ResponseError::HeadersTooLarge { limit: max }),
                None if input.len() >= max => Err(ResponseError::HeadersTooLarge { limit: max }),
                None => {
                    self.buffer_head(input);
                    Ok((input.len(), None))
                }
            };
        }

        // The head started in an earlier input: copy up to where it may end (the next empty
        // line) and parse the buffer again. Body bytes after the head are never copied.
        let before = self.head_len();
        let room = &input[..input.len().min(max - before)];
        let end = empty_line_end(self.spill.as_ref().map_or(&[][..], |s| &s.head), room);
        let appended = &room[..end.unwrap_or(room.len())];
        self.buffer_head(appended);
        let head_buf = &mut self
            .spill
            .as_mut()
            .expect("buffer_head made the spill")
            .head;
        let parsed = if end.is_some() || head_buf.len() >= max {
            parse_head(head_buf, head_request)?
        } else {
            None
        };
        match parsed {
            Some((len, head)) => {
                // Earlier bytes held no complete head, so it ends in `appended`.
                debug_assert!(len > before);
                head_buf.clear();
                Ok((len - before, self.start(head)?))
            }
            None if head_buf.len() >= max => Err(ResponseError::HeadersTooLarge { limit: max }),
            // Not the end after all (an empty line before the status line): go on after it.
            None => Ok((appended.len(), None)),
        }
    }

    /// The spill space, allocated on first use.
    fn spill(&mut self) -> &mut Spill {
        let (max_body, max_trailer) = (self.max_body, self.max_head as usize);
        self.spill.get_or_insert_with(|| {
            Box::new(Spill {
                head: Vec::new(),
                chunked: ChunkedDecoder::new(max_body, max_trailer),
            })
        })
    }

    /// Appends to the partial head, growing the buffer by doubling but never beyond
    /// [`Limits::max_head_bytes`] (callers never append past it).
    fn buffer_head(&mut self, bytes: &[u8]) {
        let max = self.max_head as usize;
        let head = &mut self.spill().head;
        let needed = head.len() + bytes.len();
        if needed > head.capacity() {
            let target = (head.capacity() * 2)
                .max(INITIAL_HEAD_CAPACITY)
                .clamp(needed, max.max(needed));
            head.reserve_exact(target - head.len());
        }
        head.extend_from_slice(bytes);
    }

    /// A head was parsed: skip it if interim, else set up its body. Returns the response if
    /// it is already complete.
    fn start(&mut self, head: Head) -> Result<Option<Response>, ResponseError> {
        if (100..200).contains(&head.status) && head.status != 101 {
            self.interim = true;
            return Ok(None);
        }
        self.status = head.status;
        self.body_bytes = 0;
        self.close = head.close;
        Ok(match head.framing {
            Framing::None | Framing::Length(0) => Some(self.finish()),
            Framing::Length(length) => {
                if length > self.max_body {
                    return Err(ResponseError::BodyTooLarge {
                        size: length,
                        limit: self.max_body,
                    });
                }
                // Counted up front: an incomplete body is an error, never a response.
                self.body_bytes = length;
                self.remaining = length;
                self.state = State::Length;
                None
            }
            Framing::Chunked => {
                let (max_body, max_trailer) = (self.max_body, self.max_head as usize);
                self.spill().chunked = ChunkedDecoder::new(max_body, max_trailer);
                self.state = State::Chunked;
                None
            }
            Framing::UntilClose => {
                self.state = State::UntilClose;
                None
            }
        })
    }

    fn count_until_close(&mut self, len: usize) -> Result<(), ResponseError> {
        let size = self.body_bytes.saturating_add(len as u64);
        if size > self.max_body {
            return Err(ResponseError::BodyTooLarge {
                size,
                limit: self.max_body,
            });
        }
        self.body_bytes = size;
        Ok(())
    }

    /// The current response is complete: hand it out and get ready for the next head.
    fn finish(&mut self) -> Response {
        let response = self.current();
        self.state = State::Head;
        self.status = 0;
        self.close = false;
        self.body_bytes = 0;
        self.interim = false;
        response
    }
}

/// Index just past the first LF in `new` that ends an empty line (`\n\n` or `\n\r\n`, which
/// is where a head can end), looking back into `earlier` for the bytes before `new`.
fn empty_line_end(earlier: &[u8], new: &[u8]) -> Option<usize> {
    // The byte `back` positions before `new[i]`.
    let before = |i: usize, back: usize| match i.checked_sub(back) {
        Some(j) => new.get(j).copied(),
        None => earlier.len().checked_sub(back - i).map(|j| earlier[j]),
    };
    (0..new.len())
        .filter(|&i| new[i] == b'\n')
        .find(|&i| match before(i, 1) {
            Some(b'\n') => true,
            Some(b'\r') => before(i, 2) == Some(b'\n'),
            _ => false,
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests;
