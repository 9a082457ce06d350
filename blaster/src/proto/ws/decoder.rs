//! Streaming decoder of server-to-client frames: bytes in, at most one [`Event`] out per call.
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

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

use super::error::WsError;
use super::frame::{ControlPayload, Header, HeaderReader, SmallBytes};
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
            header: HeaderReader::default(),
            state: State::Header,
            message: None,
            control: ControlPayload::new(),
        }
    }

    /// Feed received bytes; returns how many were used and the event that completed within
    /// them, if any. At most one event per call: call again with the rest of the input.
    ///
    /// With non-empty input every call uses at least one byte, returns an event or fails.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), WsError> {
        let result = self.feed_inner(input);
        if result.is_err() {
            self.reset();
        }
        result
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

    fn feed_inner(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), WsError> {
        let mut consumed = 0;
        while consumed < input.len() {
            let rest = &input[consumed..];
            let (used, event) = match self.state {
                State::Header => match self.header.read(rest)? {
                    (used, Some(header)) => (used, self.start_frame(header)?),
                    (used, None) => (used, None),
                },
                State::Data { remaining, fin } => self.read_data(rest, remaining, fin)?,
                State::Control { opcode, remaining } => {
                    let used = self.control.fill_from(&rest[..remaining.min(rest.len())]);
                    let event = if used == remaining {
                        Some(self.finish_control(opcode)?)
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
        if mask.is_some() {
            return Err(WsError::MaskedServerFrame);
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
        message.prefix.fill_from(bytes);
        if message.text && self.check_utf8 {
            let start = message.len;
            message
                .utf8
                .push(bytes)
                .map_err(|at| WsError::InvalidUtf8 {
                    offset: start + at as u64,
                })?;
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
        let payload = self.control;
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
