//! [`WsError`]: why a WebSocket handshake answer or a server frame was refused, with stable
//! [`WsError::kind`] names for counting errors by cause in reports.
//!
//! Only the error path allocates (to echo the offending bytes).

/// A handshake answer or frame that breaks RFC 6455 (or the configured limits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// The answer to the Upgrade request is not a well-formed HTTP/1.1 response head.
    #[error("malformed handshake response ({what}) near {near}")]
    HandshakeMalformed { what: String, near: String },

    /// The answer's head did not end within the limit.
    #[error(
        "handshake response head exceeds the limit of {limit} bytes without ending in an empty \
         line (CRLF CRLF)"
    )]
    HandshakeTooLarge { limit: usize },

    /// The server answered something other than 101 Switching Protocols.
    #[error("handshake answered with status {status}, expected 101 Switching Protocols")]
    HandshakeStatus { status: u16 },

    /// `Upgrade: websocket` or `Connection: upgrade` is missing or says something else.
    #[error("handshake response has {header}: {got}, expected a value containing {expected:?}")]
    HandshakeUpgrade {
        header: &'static str,
        got: String,
        expected: &'static str,
    },

    /// `Sec-WebSocket-Accept` is missing or does not match the key that was sent.
    #[error("handshake response has Sec-WebSocket-Accept: {got}, expected {expected:?}")]
    HandshakeAccept { got: String, expected: String },

    /// The server chose a subprotocol that was not offered (or several).
    #[error("handshake response chose subprotocol {got}, which was not offered ({offered})")]
    HandshakeProtocol { got: String, offered: String },

    /// The server enabled an extension; none is ever requested.
    #[error(
        "handshake response enables extensions {got}, but none were requested (blaster supports \
         none)"
    )]
    HandshakeExtension { got: String },

    /// A server frame with the mask bit set (RFC 6455 §5.1: servers must not mask).
    #[error("server sent a masked frame (servers must not mask frames, RFC 6455 section 5.1)")]
    MaskedServerFrame,

    /// A client frame without the mask bit (RFC 6455 §5.1: clients must mask every frame).
    #[error("client sent an unmasked frame (clients must mask every frame, RFC 6455 section 5.1)")]
    UnmaskedClientFrame,

    /// An Upgrade request a server cannot accept (server role of the handshake).
    #[error("bad WebSocket upgrade request: {what}")]
    BadUpgradeRequest { what: &'static str },

    /// RSV1-3 set while no extension was negotiated.
    #[error("frame has reserved bits set ({bits:#05b}) but no extension was negotiated")]
    ReservedBits { bits: u8 },

    /// Opcode 0x3-0x7 or 0xB-0xF.
    #[error("frame has reserved opcode {opcode:#x}")]
    BadOpcode { opcode: u8 },

    /// A control frame (close, ping, pong) that is fragmented or longer than 125 bytes.
    #[error("bad control frame: {what} (control frames are final and carry at most 125 bytes)")]
    BadControlFrame { what: String },

    /// A continuation frame with no message started, or a new message inside a fragmented one.
    #[error("bad fragmentation: {what}")]
    BadFragmentation { what: &'static str },

    /// A frame payload longer than the limit.
    #[error("frame payload of {len} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { len: u64, limit: u64 },

    /// A message (sum of its frames) longer than the limit.
    #[error("message of at least {len} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { len: u64, limit: u64 },

    /// A text message that is not valid UTF-8.
    #[error("text message is not valid UTF-8 (near byte {offset} of the message)")]
    InvalidUtf8 { offset: u64 },

    /// A close frame with a 1-byte payload, a code that may not be sent, or a non-UTF-8 reason.
    #[error("bad close frame: {what}")]
    BadClose { what: String },

    /// A frame after the server's close frame.
    #[error("server sent bytes after its close frame")]
    DataAfterClose,

    /// The connection ended inside a frame or a fragmented message.
    #[error("connection closed mid-frame (inside a frame or a fragmented message)")]
    Incomplete,
}

impl WsError {
    /// Stable short name of the error cause, one of: `handshake_malformed`,
    /// `handshake_too_large`, `handshake_status`, `handshake_upgrade`, `handshake_accept`,
    /// `handshake_protocol`, `handshake_extension`, `masked_server_frame`, `reserved_bits`,
    /// `bad_opcode`, `bad_control_frame`, `bad_fragmentation`, `frame_too_large`,
    /// `message_too_large`, `invalid_utf8`, `bad_close`, `data_after_close`, `closed_mid_frame`,
    /// and in the server role `unmasked_client_frame`, `bad_upgrade_request`.
    pub fn kind(&self) -> &'static str {
        match self {
            WsError::HandshakeMalformed { .. } => "handshake_malformed",
            WsError::HandshakeTooLarge { .. } => "handshake_too_large",
            WsError::HandshakeStatus { .. } => "handshake_status",
            WsError::HandshakeUpgrade { .. } => "handshake_upgrade",
            WsError::HandshakeAccept { .. } => "handshake_accept",
            WsError::HandshakeProtocol { .. } => "handshake_protocol",
            WsError::HandshakeExtension { .. } => "handshake_extension",
            WsError::MaskedServerFrame => "masked_server_frame",
            WsError::UnmaskedClientFrame => "unmasked_client_frame",
            WsError::BadUpgradeRequest { .. } => "bad_upgrade_request",
            WsError::ReservedBits { .. } => "reserved_bits",
            WsError::BadOpcode { .. } => "bad_opcode",
            WsError::BadControlFrame { .. } => "bad_control_frame",
            WsError::BadFragmentation { .. } => "bad_fragmentation",
            WsError::FrameTooLarge { .. } => "frame_too_large",
            WsError::MessageTooLarge { .. } => "message_too_large",
            WsError::InvalidUtf8 { .. } => "invalid_utf8",
            WsError::BadClose { .. } => "bad_close",
            WsError::DataAfterClose => "data_after_close",
            WsError::Incomplete => "closed_mid_frame",
        }
    }

    /// The close code that answers this error on an open connection (RFC 6455 section 7.4.1):
    /// 1009 for a frame or message over the limit, 1007 for invalid UTF-8, 1002 for other
    /// protocol errors; `None` when no close frame should be sent (a handshake that failed,
    /// a peer that already closed, or a connection that ended mid-frame).
    pub fn close_code(&self) -> Option<u16> {
        match self {
            WsError::FrameTooLarge { .. } | WsError::MessageTooLarge { .. } => Some(1009),
            WsError::InvalidUtf8 { .. } => Some(1007),
            WsError::MaskedServerFrame
            | WsError::UnmaskedClientFrame
            | WsError::ReservedBits { .. }
            | WsError::BadOpcode { .. }
            | WsError::BadControlFrame { .. }
            | WsError::BadFragmentation { .. }
            | WsError::BadClose { .. } => Some(1002),
            _ => None,
        }
    }
}

/// Most offending bytes an error message echoes before it cuts them.
const ECHO_MAX: usize = 64;

/// Quotes `bytes` for an error message: printable ASCII as is, the rest escaped, cut after
/// [`ECHO_MAX`] bytes with `...` appended.
pub(crate) fn echo(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(ECHO_MAX)];
    let more = if bytes.len() > ECHO_MAX { "..." } else { "" };
    format!("\"{}\"{more}", shown.escape_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_errors_close_with_1009() {
        let frame = WsError::FrameTooLarge { len: 9, limit: 8 };
        let message = WsError::MessageTooLarge { len: 9, limit: 8 };
        assert_eq!(frame.close_code(), Some(1009));
        assert_eq!(message.close_code(), Some(1009));
        assert_eq!(WsError::InvalidUtf8 { offset: 0 }.close_code(), Some(1007));
        assert_eq!(WsError::BadOpcode { opcode: 3 }.close_code(), Some(1002));
        assert_eq!(WsError::Incomplete.close_code(), None);
        assert_eq!(WsError::HandshakeStatus { status: 200 }.close_code(), None);
    }

    #[test]
    fn echo_escapes_and_cuts() {
        assert_eq!(echo(b"a\r\n\"b"), r#""a\r\n\"b""#);
        assert_eq!(echo(&[b'x'; 70]), format!("\"{}\"...", "x".repeat(64)));
    }

    #[test]
    fn kinds_are_stable() {
        let s = String::new;
        let cases = [
            (
                WsError::HandshakeMalformed {
                    what: s(),
                    near: s(),
                },
                "handshake_malformed",
            ),
            (
                WsError::HandshakeTooLarge { limit: 1 },
                "handshake_too_large",
            ),
            (WsError::HandshakeStatus { status: 200 }, "handshake_status"),
            (
                WsError::HandshakeUpgrade {
                    header: "Upgrade",
                    got: s(),
                    expected: "websocket",
                },
                "handshake_upgrade",
            ),
            (
                WsError::HandshakeAccept {
                    got: s(),
                    expected: s(),
                },
                "handshake_accept",
            ),
            (
                WsError::HandshakeProtocol {
                    got: s(),
                    offered: s(),
                },
                "handshake_protocol",
            ),
            (
                WsError::HandshakeExtension { got: s() },
                "handshake_extension",
            ),
            (WsError::MaskedServerFrame, "masked_server_frame"),
            (WsError::UnmaskedClientFrame, "unmasked_client_frame"),
            (
                WsError::BadUpgradeRequest { what: "" },
                "bad_upgrade_request",
            ),
            (WsError::ReservedBits { bits: 4 }, "reserved_bits"),
            (WsError::BadOpcode { opcode: 3 }, "bad_opcode"),
            (WsError::BadControlFrame { what: s() }, "bad_control_frame"),
            (WsError::BadFragmentation { what: "" }, "bad_fragmentation"),
            (
                WsError::FrameTooLarge { len: 2, limit: 1 },
                "frame_too_large",
            ),
            (
                WsError::MessageTooLarge { len: 2, limit: 1 },
                "message_too_large",
            ),
            (WsError::InvalidUtf8 { offset: 0 }, "invalid_utf8"),
            (WsError::BadClose { what: s() }, "bad_close"),
            (WsError::DataAfterClose, "data_after_close"),
            (WsError::Incomplete, "closed_mid_frame"),
        ];
        for (err, kind) in cases {
            assert_eq!(err.kind(), kind, "{err}");
        }
    }
}
