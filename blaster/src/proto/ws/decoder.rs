//! Streaming decoder of WebSocket frames: bytes in, at most one [`Event`] (or [`ChunkEvent`])
//! out per call. A client's decoder ([`FrameDecoder::new`]) reads a server's unmasked frames;
//! a server's decoder ([`FrameDecoder::server`]) reads a client's frames, which must be masked.
//!
//! Boundary: one decoder per connection, fed whatever the socket delivered after the
//! handshake head. Frame headers are parsed by tungstenite (module `frame`); the state
//! machine around them (headers and payloads split at any byte, fragmentation and
//! reassembly, control frames between fragments, limits, the UTF-8 check, close payloads) is
//! written by hand, because tungstenite's own reader (`FrameCodec`) owns its buffers and needs
//! `std::io::Read`.
//!
//! Payloads are never stored: a message is reported once complete, with its length and an
//! inline copy of its first [`PREFIX_LEN`] bytes (enough for the sequence number and send
//! timestamp the engine puts at the start of its payloads). Control payloads (at most 125
//! bytes) are copied inline too. So the decoder never allocates, whether frames arrive whole,
//! split across reads or fragmented, and a large message costs no memory.
//!
//! A server that must forward payloads (an echo or fan-out server) uses
//! [`FrameDecoder::feed_chunks`] instead: it reports each piece of a data message's payload
//! as it streams in ([`DataChunk`], a slice of the input plus the mask to remove), so the
//! caller copies (and unmasks) the bytes straight to wherever they go, and the decoder still
//! keeps nothing.

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

use super::error::WsError;
use super::frame::{ControlPayload, Header, HeaderReader, SmallBytes, apply_mask};
use super::utf8::Utf8Stream;

/// How many leading bytes of each data message an [`Event`] carries.
pub const PREFIX_LEN: usize = 32;

/// The first (up to) [`PREFIX_LEN`] bytes of a message.
pub type Prefix = SmallBytes<PREFIX_LEN>;

/// Size limits of received frames and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// Longest frame payload.
    pub max_frame: u64,
    /// Longest message: the sum of its frames' payloads.
    pub max_message: u64,
}

impl Default for WsLimits {
    /// 16 MiB frames, 64 MiB messages.
    fn default() -> Self {
        WsLimits {
            max_frame: 16 << 20,
            max_message: 64 << 20,
        }
    }
}

/// What a server sent, reported once it is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A whole text message (all its fragments): its length and first bytes.
    Text { len: u64, prefix: Prefix },
    /// A whole binary message (all its fragments): its length and first bytes.
    Binary { len: u64, prefix: Prefix },
    /// A ping; answer with a pong carrying the same payload.
    Ping(ControlPayload),
    /// A pong; its payload is that of the ping it answers (if the server behaves).
    Pong(ControlPayload),
    /// The server's close frame: its code (`None` if the payload was empty) and the UTF-8
    /// reason. Anything after it is an error.
    Close {
        code: Option<u16>,
        reason: ControlPayload,
    },
}

/// A piece of a data message's payload, as received (see [`FrameDecoder::feed_chunks`]).
///
/// Pieces arrive in order; `first` marks the message's first piece and `last` its last (a
/// message may be a single empty piece with both set). Frame boundaries of a fragmented
/// message are not reported: the pieces concatenated are the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataChunk<'a> {
    /// [`Data::Text`] or [`Data::Binary`]: the message's opcode (never `Continue`).
    pub opcode: Data,
    /// The first piece of its message.
    pub first: bool,
    /// The last piece: the message is complete (and, for text, valid UTF-8 when checked).
    pub last: bool,
    /// The bytes as they were on the wire (masked, for a server's decoder).
    raw: &'a [u8],
    /// The mask in phase with `raw[0]` (all zero when the frame was not masked).
    mask: [u8; 4],
}

impl DataChunk<'_> {
    /// Payload bytes in this piece.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Appends the (unmasked) payload bytes to `out`.
    pub fn unmask_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(self.raw);
        if self.mask != [0; 4] {
            apply_mask(&mut out[start..], self.mask);
        }
    }
}

/// What [`FrameDecoder::feed_chunks`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkEvent<'a> {
    /// A piece of a data message's payload.
    Data(DataChunk<'a>),
    /// A ping, pong or close ([`Event::Ping`], [`Event::Pong`], [`Event::Close`]); never a
    /// data message.
    Control(Event),
}

/// One step of the decoder: a whole event, or a payload piece (chunk mode).
enum Step<'a> {
    Event(Event),
    Chunk(DataChunk<'a>),
}

/// Where the decoder is within the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a frame header (its first bytes may be in the header reader).
    Header,
    /// Reading a data frame's payload.
    Data { remaining: u64, fin: bool },
    /// Reading a control frame's payload into `control`.
    Control { opcode: Control, remaining: usize },
    /// The server's close frame was received.
    Closed,
}

/// The data message being received (possibly over several frames).
#[derive(Debug, Clone, Copy)]
struct Message {
    text: bool,
    /// Payload bytes received so far.
    len: u64,
    prefix: Prefix,
    utf8: Utf8Stream,
}

/// Incremental decoder of the frames on one connection. Create once per connection (no heap:
/// it is about 250 bytes inline); call [`FrameDecoder::reset`] after a reconnect. After an
/// error it has already reset itself (the connection should be failed anyway).
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    limits: WsLimits,
    check_utf8: bool,
    /// Server role: frames come from a client and must be masked.
    server: bool,
    /// Chunk mode: a piece of the current message was already reported.
    delivered: bool,
    /// The current masked frame's mask, rotated so that `mask[0]` applies to the next byte.
    mask: [u8; 4],
    header: HeaderReader,
    state: State,
    message: Option<Message>,
    control: ControlPayload,
}

impl FrameDecoder {
    /// A decoder for one connection. With `check_utf8`, text messages must be valid UTF-8
    /// (RFC 6455 requires it; the check reads every payload byte once).
    pub fn new(limits: WsLimits, check_utf8: bool) -> Self {
        FrameDecoder {
            limits,
            check_utf8,
            server: false,
            delivered: false,
            mask: [0; 4],
            header: HeaderReader::default(),
            state: State::Header,
            message: None,
            control: ControlPayload::new(),
        }
    }

    /// A server's decoder of one client connection: every frame must be masked (RFC 6455
    /// §5.1; an unmasked one fails with [`WsError::UnmaskedClientFrame`]), and payloads are
    /// unmasked before the prefix and UTF-8 check see them.
    pub fn server(limits: WsLimits, check_utf8: bool) -> Self {
        FrameDecoder {
            server: true,
            ..FrameDecoder::new(limits, check_utf8)
        }
    }

    /// Whether this decoder reads a client's (masked) frames.
    pub fn is_server(&self) -> bool {
        self.server
    }

    /// Feed received bytes; returns how many were used and the event that completed within
    /// them, if any. At most one event per call: call again with the rest of the input.
    ///
    /// With non-empty input every call uses at least one byte, returns an event or fails.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), WsError> {
        let result = self.feed_inner(input, false);
        if result.is_err() {
            self.reset();
        }
        result.map(|(used, step)| match step {
            Some(Step::Event(event)) => (used, Some(event)),
            // Chunks are only produced in chunk mode.
            _ => (used, None),
        })
    }

    /// Like [`FrameDecoder::feed`], but a data message is reported piece by piece as its
    /// payload arrives ([`ChunkEvent::Data`], borrowing `input`) instead of once complete;
    /// control frames come as [`ChunkEvent::Control`]. For servers that forward payloads
    /// without keeping whole messages. Limits and the UTF-8 check apply as with `feed` (a
    /// text message found invalid fails after its earlier pieces were reported).
    ///
    /// With non-empty input every call uses at least one byte, returns an event or fails.
    /// Do not mix `feed` and `feed_chunks` within one message.
    pub fn feed_chunks<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<ChunkEvent<'a>>), WsError> {
        let result = self.feed_inner(input, true);
        if result.is_err() {
            self.reset();
        }
        result.map(|(used, step)| match step {
            Some(Step::Event(event)) => (used, Some(ChunkEvent::Control(event))),
            Some(Step::Chunk(chunk)) => (used, Some(ChunkEvent::Data(chunk))),
            None => (used, None),
        })
    }

    /// The connection hit EOF: fails with [`WsError::Incomplete`] inside a frame or a
    /// fragmented message. The decoder is reset either way.
    pub fn eof(&mut self) -> Result<(), WsError> {
        let result = if self.in_progress() {
            Err(WsError::Incomplete)
        } else {
            Ok(())
        };
        self.reset();
        result
    }

    /// Forget any partial state (after a reconnect).
    pub fn reset(&mut self) {
        self.header.reset();
        self.state = State::Header;
        self.message = None;
        self.control.clear();
        self.delivered = false;
        self.mask = [0; 4];
    }

    /// Some bytes of a frame or message were used but it is not complete.
    pub fn in_progress(&self) -> bool {
        self.header.in_progress()
            || self.message.is_some()
            || matches!(self.state, State::Data { .. } | State::Control { .. })
    }

    /// The server's close frame has been received.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    fn feed_inner<'a>(
        &mut self,
        input: &'a [u8],
        chunks: bool,
    ) -> Result<(usize, Option<Step<'a>>), WsError> {
        let mut consumed = 0;
        while consumed < input.len() {
            let rest = &input[consumed..];
            let (used, event) = match self.state {
                State::Header => match self.header.read(rest)? {
                    (used, Some(header)) => {
                        let event = self.start_frame(header)?;
                        (used, self.step(event, chunks, &[]))
                    }
                    (used, None) => (used, None),
                },
                State::Data { remaining, fin } => {
                    let (used, event) = self.read_data(rest, remaining, fin)?;
                    let delivered = &rest[..used];
                    if chunks && !delivered.is_empty() && event.is_none() {
                        (used, Some(self.chunk(delivered, false, None)))
                    } else {
                        (used, self.step(event, chunks, delivered))
                    }
                }
                State::Control { opcode, remaining } => {
                    let used = self.control.fill_from(&rest[..remaining.min(rest.len())]);
                    let event = if used == remaining {
                        Some(Step::Event(self.finish_control(opcode)?))
                    } else {
                        self.state = State::Control {
                            opcode,
                            remaining: remaining - used,
                        };
                        None
                    };
                    (used, event)
                }
                State::Closed => return Err(WsError::DataAfterClose),
            };
            debug_assert!(used > 0 || event.is_some(), "decoder made no progress");
            consumed += used;
            if event.is_some() {
                return Ok((consumed, event));
            }
        }
        Ok((consumed, None))
    }

    /// Wraps an event of the current frame: in chunk mode a completed data message becomes
    /// its last piece (`bytes`, possibly empty).
    fn step<'a>(
        &mut self,
        event: Option<Event>,
        chunks: bool,
        bytes: &'a [u8],
    ) -> Option<Step<'a>> {
        match event? {
            Event::Text { .. } if chunks => Some(self.chunk(bytes, true, Some(Data::Text))),
            Event::Binary { .. } if chunks => Some(self.chunk(bytes, true, Some(Data::Binary))),
            event => Some(Step::Event(event)),
        }
    }

    /// A payload piece of the current message (`opcode` given once the message is complete
    /// and taken). `bytes` were read with `self.mask` rotated past them; the chunk carries the
    /// mask in phase with their start.
    fn chunk<'a>(&mut self, bytes: &'a [u8], last: bool, opcode: Option<Data>) -> Step<'a> {
        let opcode = opcode.unwrap_or(match self.message {
            Some(Message { text: true, .. }) => Data::Text,
            _ => Data::Binary,
        });
        let mut mask = self.mask;
        if self.server {
            // `self.mask` now applies to the byte after `bytes`: rotate it back.
            mask.rotate_right(bytes.len() % 4);
        }
        let first = !self.delivered;
        self.delivered = !last;
        Step::Chunk(DataChunk {
            opcode,
            first,
            last,
            raw: bytes,
            mask,
        })
    }

    /// A header was read: checks it and sets up its payload. Returns the event if the frame
    /// is already complete (empty payload).
    fn start_frame(&mut self, Header { header, len }: Header) -> Result<Option<Event>, WsError> {
        let FrameHeader {
            is_final,
            rsv1,
            rsv2,
            rsv3,
            opcode,
            mask,
        } = header;
        match (self.server, mask) {
            (false, Some(_)) => return Err(WsError::MaskedServerFrame),
            (true, None) => return Err(WsError::UnmaskedClientFrame),
            (_, mask) => self.mask = mask.unwrap_or_default(),
        }
        if rsv1 || rsv2 || rsv3 {
            let bits = u8::from(rsv1) << 2 | u8::from(rsv2) << 1 | u8::from(rsv3);
            return Err(WsError::ReservedBits { bits });
        }
        let data = match opcode {
            OpCode::Control(control) => return self.start_control(control, is_final, len),
            OpCode::Data(data) => data,
        };
        if len > self.limits.max_frame {
            return Err(WsError::FrameTooLarge {
                len,
                limit: self.limits.max_frame,
            });
        }
        let message = match (data, &mut self.message) {
            (Data::Continue, Some(message)) => message,
            (Data::Continue, None) => {
                return Err(WsError::BadFragmentation {
                    what: "continuation frame without a fragmented message to continue",
                });
            }
            (Data::Text | Data::Binary, Some(_)) => {
                return Err(WsError::BadFragmentation {
                    what: "new data message started before the fragmented one ended",
                });
            }
            (Data::Text | Data::Binary, None) => self.message.insert(Message {
                text: data == Data::Text,
                len: 0,
                prefix: Prefix::new(),
                utf8: Utf8Stream::default(),
            }),
            (Data::Reserved(opcode), _) => return Err(WsError::BadOpcode { opcode }),
        };
        let total = message.len.saturating_add(len);
        if total > self.limits.max_message {
            return Err(WsError::MessageTooLarge {
                len: total,
                limit: self.limits.max_message,
            });
        }
        self.state = State::Data {
            remaining: len,
            fin: is_final,
        };
        if len == 0 {
            return self.end_data_frame(is_final);
        }
        Ok(None)
    }

    fn start_control(
        &mut self,
        opcode: Control,
        is_final: bool,
        len: u64,
    ) -> Result<Option<Event>, WsError> {
        if !is_final {
            return Err(WsError::BadControlFrame {
                what: format!("fragmented {opcode} frame"),
            });
        }
        if len > ControlPayload::CAPACITY as u64 {
            return Err(WsError::BadControlFrame {
                what: format!("{opcode} frame with {len} bytes of payload"),
            });
        }
        self.control.clear();
        if len == 0 {
            return self.finish_control(opcode).map(Some);
        }
        self.state = State::Control {
            opcode,
            remaining: len as usize,
        };
        Ok(None)
    }

    /// Uses payload bytes of the current data frame.
    fn read_data(
        &mut self,
        input: &[u8],
        remaining: u64,
        fin: bool,
    ) -> Result<(usize, Option<Event>), WsError> {
        let take = remaining.min(input.len() as u64) as usize;
        let bytes = &input[..take];
        // A data frame's payload is only read while a message is in progress.
        let message = self.message.as_mut().expect("data frame without message");
        let check_utf8 = message.text && self.check_utf8;
        if self.server {
            // Unmask in pieces on the stack for the prefix and the UTF-8 check.
            let mut mask = self.mask;
            let wanted = if check_utf8 {
                take
            } else {
                take.min(PREFIX_LEN - message.prefix.len())
            };
            let mut buf = [0u8; 256];
            let mut done = 0;
            while done < wanted {
                let n = (wanted - done).min(buf.len());
                let piece = &mut buf[..n];
                piece.copy_from_slice(&bytes[done..done + n]);
                apply_mask(piece, mask);
                mask.rotate_left(n % 4);
                message.prefix.fill_from(piece);
                if check_utf8 {
                    let start = message.len + done as u64;
                    message
                        .utf8
                        .push(piece)
                        .map_err(|at| WsError::InvalidUtf8 {
                            offset: start + at as u64,
                        })?;
                }
                done += n;
            }
            self.mask.rotate_left(take % 4);
        } else {
            message.prefix.fill_from(bytes);
            if check_utf8 {
                let start = message.len;
                message
                    .utf8
                    .push(bytes)
                    .map_err(|at| WsError::InvalidUtf8 {
                        offset: start + at as u64,
                    })?;
            }
        }
        message.len += take as u64;
        let remaining = remaining - take as u64;
        if remaining > 0 {
            self.state = State::Data { remaining, fin };
            return Ok((take, None));
        }
        Ok((take, self.end_data_frame(fin)?))
    }

    /// A data frame's payload is complete; returns the message if the frame was its last.
    fn end_data_frame(&mut self, fin: bool) -> Result<Option<Event>, WsError> {
        self.state = State::Header;
        if !fin {
            return Ok(None);
        }
        let mut message = self.message.take().expect("data frame without message");
        let Message { len, prefix, .. } = message;
        if !message.text {
            return Ok(Some(Event::Binary { len, prefix }));
        }
        if self.check_utf8 && message.utf8.finish().is_err() {
            return Err(WsError::InvalidUtf8 { offset: len });
        }
        Ok(Some(Event::Text { len, prefix }))
    }

    /// A control frame's payload (in `self.control`) is complete.
    fn finish_control(&mut self, opcode: Control) -> Result<Event, WsError> {
        self.state = State::Header;
        let mut payload = self.control;
        if self.server {
            payload.unmask(self.mask);
        }
        match opcode {
            Control::Ping => Ok(Event::Ping(payload)),
            Control::Pong => Ok(Event::Pong(payload)),
            Control::Close => {
                let (code, reason) = parse_close(payload.as_slice())?;
                self.state = State::Closed;
                Ok(Event::Close {
                    code,
                    // The reason is a suffix of a ControlPayload, so it fits.
                    reason: ControlPayload::from_slice(reason).unwrap_or_default(),
                })
            }
            // tungstenite rejects reserved opcodes while parsing the header.
            Control::Reserved(opcode) => Err(WsError::BadOpcode { opcode }),
        }
    }
}

/// A close payload's code and reason (RFC 6455 §5.5.1, §7.4).
fn parse_close(payload: &[u8]) -> Result<(Option<u16>, &[u8]), WsError> {
    let (code, reason) = match payload {
        [] => return Ok((None, &[])),
        [_] => {
            return Err(WsError::BadClose {
                what: "1-byte payload (a close payload is empty or starts with a 2-byte code)"
                    .to_owned(),
            });
        }
        [high, low, reason @ ..] => (u16::from_be_bytes([*high, *low]), reason),
    };
    if !CloseCode::from(code).is_allowed() {
        return Err(WsError::BadClose {
            what: format!("code {code} may not be sent in a close frame"),
        });
    }
    if std::str::from_utf8(reason).is_err() {
        return Err(WsError::BadClose {
            what: format!("reason \"{}\" is not valid UTF-8", reason.escape_ascii()),
        });
    }
    Ok((Some(code), reason))
}

#[cfg(test)]
mod tests;
