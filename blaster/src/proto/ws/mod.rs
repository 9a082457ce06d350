//! WebSocket codec (RFC 6455): the Upgrade handshake, client frame encoding with masking, and
//! a streaming decoder of the server's frames; plus the server role (used by the built-in
//! target): the check of an Upgrade request and its 101 answer ([`accept`]), unmasked server
//! frames (`encode_server_*`), and a decoder of masked client frames
//! ([`FrameDecoder::server`]) that can stream payload pieces ([`FrameDecoder::feed_chunks`]).
//!
//! Sans-IO: bytes in, bytes out; no sockets, clocks or per-message allocation. tungstenite
//! supplies the protocol rules that fit this design: frame header parsing and formatting,
//! opcodes, close-code validity and the accept key. Written by hand (each file says why):
//! the streaming state machine around headers (split reads, fragmentation, control frames
//! between fragments, limits), masking, the streaming UTF-8 check and the handshake checks.
//!
//! A connection's life, as the engine drives it:
//! 1. Send [`UpgradeRequest::with_key`] (render the [`UpgradeRequest`] once per run, patch a
//!    fresh random key per connection) and feed what arrives to a [`HandshakeParser`] made
//!    with the same key, until it returns [`Accepted`]; bytes after the head it used are
//!    frames.
//! 2. Feed frames to a [`FrameDecoder`]; each [`Event`] is a complete message (length and
//!    first [`PREFIX_LEN`] bytes), a ping (answer with [`encode_pong`]), a pong, or the
//!    server's close (answer with [`encode_close`], then wait for the server to close TCP).
//! 3. Send messages with [`encode_text`] / [`encode_binary`] (or [`encode_frame`] to
//!    fragment), pings with [`encode_ping`], and [`encode_close`] to end.
//!
//! - [`handshake`]: the Upgrade request and the check of the 101 answer.
//! - [`accept`]: the server's check of an Upgrade request and its 101 answer.
//! - [`decoder`]: the frame decoder, its events and limits.
//! - [`encoder`]: client frames, masked.
//! - `frame`: the header reader over tungstenite, masking, inline byte buffers.
//! - `utf8`: the streaming UTF-8 check of text messages.
//! - `error`: [`WsError`] and its stable [`WsError::kind`] names.

pub mod accept;
pub mod decoder;
pub mod encoder;
mod error;
mod frame;
pub mod handshake;
mod utf8;

pub use accept::{UpgradeHead, check_upgrade_request, encode_accept};
pub use decoder::{ChunkEvent, DataChunk, Event, FrameDecoder, PREFIX_LEN, Prefix, WsLimits};
pub use encoder::{
    encode_binary, encode_close, encode_frame, encode_ping, encode_pong, encode_server_close,
    encode_server_control, encode_server_frame, encode_server_header, encode_text,
};
pub use error::WsError;
pub use frame::{ControlPayload, MAX_CONTROL_PAYLOAD, SmallBytes, apply_mask};
pub use handshake::{
    Accepted, HandshakeParser, MAX_HANDSHAKE_HEAD, RESERVED_HEADERS, UpgradeRequest,
    UpgradeRequestError, encode_upgrade_request, is_reserved_header,
};
pub use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
