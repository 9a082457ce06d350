//! Frame encoding: header (by tungstenite's [`FrameHeader::format`]) plus the payload, masked
//! for client frames, unmasked for server frames (the `encode_server_*` functions), appended
//! to a caller-owned buffer.
//!
//! Boundary: pure bytes out; no allocation when `out` has the capacity (the engine keeps one
//! send buffer per connection). The mask key comes from the caller (RFC 6455 wants it
//! unpredictable; the engine draws it from its per-worker PRNG), which keeps tests
//! deterministic.

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

use super::error::WsError;
use super::frame::{MAX_CONTROL_PAYLOAD, apply_mask};

/// Appends one masked client frame: `opcode`, `fin` (last frame of its message) and
/// `payload`. Control frames must be final and at most 125 bytes; the helpers below check
/// that, this function does not.
pub fn encode_frame(opcode: OpCode, payload: &[u8], mask: [u8; 4], fin: bool, out: &mut Vec<u8>) {
    encode_parts(opcode, [&[], payload], Some(mask), fin, out);
}

/// Appends one unmasked server frame (see [`encode_frame`]; servers must not mask).
pub fn encode_server_frame(opcode: OpCode, payload: &[u8], fin: bool, out: &mut Vec<u8>) {
    encode_parts(opcode, [&[], payload], None, fin, out);
}

/// Appends only the header of an unmasked server frame with a `len`-byte payload, for a
/// server that appends the payload itself (for instance piece by piece with
/// [`DataChunk::unmask_into`](super::DataChunk::unmask_into)).
pub fn encode_server_header(opcode: OpCode, len: u64, fin: bool, out: &mut Vec<u8>) {
    let header = FrameHeader {
        is_final: fin,
        opcode,
        mask: None,
        ..FrameHeader::default()
    };
    header
        .format(len, out)
        .expect("writing to a Vec cannot fail");
}

/// Appends an unmasked ping or pong (or any control frame); fails if `payload` is longer
/// than 125 bytes.
pub fn encode_server_control(
    control: Control,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), WsError> {
    check_control(control, payload)?;
    encode_server_frame(OpCode::Control(control), payload, true, out);
    Ok(())
}

/// Appends an unmasked close frame; the rules of [`encode_close`] apply.
pub fn encode_server_close(
    code: Option<u16>,
    reason: &str,
    out: &mut Vec<u8>,
) -> Result<(), WsError> {
    close_parts(code, reason, None, out)
}

/// Appends an unfragmented text message. `text` should be UTF-8 (servers may fail the
/// connection otherwise); it is taken as bytes so that the engine can patch a prefix in
/// place.
pub fn encode_text(text: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    encode_frame(OpCode::Data(Data::Text), text, mask, true, out);
}

/// Appends an unfragmented binary message.
pub fn encode_binary(payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    encode_frame(OpCode::Data(Data::Binary), payload, mask, true, out);
}

/// Appends a ping; fails if `payload` is longer than 125 bytes.
pub fn encode_ping(payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) -> Result<(), WsError> {
    encode_control(Control::Ping, payload, mask, out)
}

/// Appends a pong (to answer a ping, with its payload); fails if `payload` is longer than
/// 125 bytes.
pub fn encode_pong(payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) -> Result<(), WsError> {
    encode_control(Control::Pong, payload, mask, out)
}

/// Appends a close frame: empty for `code` `None` (then `reason` must be empty too), else the
/// code and the reason. Fails for a code that may not be sent (1005, 1006, 1015, reserved or
/// out of range) or a reason longer than 123 bytes.
pub fn encode_close(
    code: Option<u16>,
    reason: &str,
    mask: [u8; 4],
    out: &mut Vec<u8>,
) -> Result<(), WsError> {
    close_parts(code, reason, Some(mask), out)
}

fn close_parts(
    code: Option<u16>,
    reason: &str,
    mask: Option<[u8; 4]>,
    out: &mut Vec<u8>,
) -> Result<(), WsError> {
    let opcode = OpCode::Control(Control::Close);
    let Some(code) = code else {
        if !reason.is_empty() {
            return Err(WsError::BadClose {
                what: "a reason without a code".to_owned(),
            });
        }
        encode_parts(opcode, [&[], &[]], mask, true, out);
        return Ok(());
    };
    if !CloseCode::from(code).is_allowed() {
        return Err(WsError::BadClose {
            what: format!("code {code} may not be sent in a close frame"),
        });
    }
    if reason.len() > MAX_CONTROL_PAYLOAD - 2 {
        return Err(WsError::BadClose {
            what: format!("reason of {} bytes exceeds 123 bytes", reason.len()),
        });
    }
    let code = code.to_be_bytes();
    encode_parts(opcode, [&code, reason.as_bytes()], mask, true, out);
    Ok(())
}

fn encode_control(
    control: Control,
    payload: &[u8],
    mask: [u8; 4],
    out: &mut Vec<u8>,
) -> Result<(), WsError> {
    check_control(control, payload)?;
    encode_frame(OpCode::Control(control), payload, mask, true, out);
    Ok(())
}

fn check_control(control: Control, payload: &[u8]) -> Result<(), WsError> {
    if payload.len() > MAX_CONTROL_PAYLOAD {
        return Err(WsError::BadControlFrame {
            what: format!("{control} frame with {} bytes of payload", payload.len()),
        });
    }
    Ok(())
}

/// Appends a frame whose payload is `parts` concatenated (so a close frame's code and reason
/// need no intermediate buffer).
fn encode_parts(
    opcode: OpCode,
    parts: [&[u8]; 2],
    mask: Option<[u8; 4]>,
    fin: bool,
    out: &mut Vec<u8>,
) {
    let len = parts[0].len() + parts[1].len();
    let header = FrameHeader {
        is_final: fin,
        opcode,
        mask,
        ..FrameHeader::default()
    };
    out.reserve(header.len(len as u64) + len);
    header
        .format(len as u64, out)
        .expect("writing to a Vec cannot fail");
    let start = out.len();
    out.extend_from_slice(parts[0]);
    out.extend_from_slice(parts[1]);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::Bytes;
    use tungstenite::protocol::frame::Frame;

    const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

    /// The same frame formatted by tungstenite (which masks with its own private code).
    fn tungstenite_frame(opcode: OpCode, payload: &[u8], fin: bool) -> Vec<u8> {
        let header = FrameHeader {
            is_final: fin,
            opcode,
            mask: Some(MASK),
            ..FrameHeader::default()
        };
        let mut out = Vec::new();
        Frame::from_payload(header, Bytes::copy_from_slice(payload))
            .format(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn matches_tungstenite_at_every_length_format() {
        // 125 and 126 straddle the 7-bit/16-bit length switch, 65535/65536 the 16/64-bit one.
        for len in [0, 1, 5, 124, 125, 126, 127, 1000, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            for (opcode, fin) in [
                (OpCode::Data(Data::Binary), true),
                (OpCode::Data(Data::Text), false),
                (OpCode::Data(Data::Continue), true),
            ] {
                let mut out = Vec::new();
                encode_frame(opcode, &payload, MASK, fin, &mut out);
                assert_eq!(out, tungstenite_frame(opcode, &payload, fin), "len {len}");
            }
        }
    }

    #[test]
    fn masking_round_trip() {
        let payload = b"Hello, masked world! 0123456789";
        let mut out = Vec::new();
        encode_binary(payload, MASK, &mut out);
        assert_eq!(&out[..2], &[0x82, 0x80 | payload.len() as u8]);
        assert_eq!(&out[2..6], &MASK);
        assert_ne!(&out[6..], payload);
        let mut unmasked = out[6..].to_vec();
        apply_mask(&mut unmasked, MASK);
        assert_eq!(&unmasked, payload);
    }

    #[test]
    fn length_encodings() {
        let mut out = Vec::new();
        encode_binary(&[0; 300], MASK, &mut out);
        assert_eq!(&out[..4], &[0x82, 0x80 | 126, 0x01, 0x2C]);
        assert_eq!(out.len(), 4 + 4 + 300);
        out.clear();
        encode_binary(&vec![0; 70000], MASK, &mut out);
        assert_eq!(
            &out[..10],
            &[0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]
        );
        assert_eq!(out.len(), 10 + 4 + 70000);
    }

    #[test]
    fn no_allocation_with_capacity() {
        let mut out = Vec::with_capacity(64);
        let before = out.as_ptr();
        encode_text(b"abc", MASK, &mut out);
        encode_ping(b"p", MASK, &mut out).unwrap();
        encode_close(Some(1000), "bye", MASK, &mut out).unwrap();
        assert_eq!(out.as_ptr(), before);
    }

    #[test]
    fn control_frames() {
        let mut out = Vec::new();
        encode_pong(b"xy", MASK, &mut out).unwrap();
        assert_eq!(
            out,
            tungstenite_frame(OpCode::Control(Control::Pong), b"xy", true)
        );

        out.clear();
        encode_close(Some(1000), "done", MASK, &mut out).unwrap();
        let expected = tungstenite_frame(OpCode::Control(Control::Close), b"\x03\xE8done", true);
        assert_eq!(out, expected);

        out.clear();
        encode_close(None, "", MASK, &mut out).unwrap();
        assert_eq!(out, [0x88, 0x80, 0x12, 0x34, 0x56, 0x78]);
    }

    #[test]
    fn invalid_control_frames() {
        let mut out = Vec::new();
        let err = encode_ping(&[0; 126], MASK, &mut out).unwrap_err();
        assert_eq!(err.kind(), "bad_control_frame");
        assert_eq!(
            err.to_string(),
            "bad control frame: PING frame with 126 bytes of payload (control frames are final \
             and carry at most 125 bytes)"
        );
        assert!(encode_pong(&[0; 125], MASK, &mut out).is_ok());
        for (code, reason) in [
            (Some(1005), ""),
            (Some(1006), ""),
            (Some(999), ""),
            (Some(5000), ""),
            (None, "why"),
        ] {
            let err = encode_close(code, reason, MASK, &mut out).unwrap_err();
            assert_eq!(err.kind(), "bad_close", "{code:?}");
        }
        let long = "r".repeat(124);
        let err = encode_close(Some(1000), &long, MASK, &mut out).unwrap_err();
        assert_eq!(err.kind(), "bad_close");
        assert!(encode_close(Some(4000), &long[..123], MASK, &mut out).is_ok());
    }

    #[test]
    fn server_frames_are_unmasked() {
        let mut out = Vec::new();
        encode_server_frame(OpCode::Data(Data::Text), b"hey", true, &mut out);
        assert_eq!(out, b"\x81\x03hey");
        out.clear();
        encode_server_header(OpCode::Data(Data::Binary), 70000, true, &mut out);
        assert_eq!(out, [0x82, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]);
        out.clear();
        encode_server_control(Control::Pong, b"p", &mut out).unwrap();
        assert_eq!(out, b"\x8A\x01p");
        out.clear();
        encode_server_close(Some(1009), "big", &mut out).unwrap();
        assert_eq!(out, b"\x88\x05\x03\xF1big");
        assert!(encode_server_close(Some(1005), "", &mut out).is_err());
        assert!(encode_server_control(Control::Ping, &[0; 126], &mut out).is_err());
    }
}
