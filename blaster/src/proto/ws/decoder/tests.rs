//! Tests of the frame decoder, byte by byte: every valid frame sequence is fed whole, split in
//! two at every byte boundary, and one byte at a time, and must give the same events; every
//! invalid one must fail with the same error kind however it is split.

use super::*;

/// A server frame (unmasked), formatted by tungstenite.
fn frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        is_final: fin,
        opcode,
        ..FrameHeader::default()
    };
    let mut out = Vec::new();
    header.format(payload.len() as u64, &mut out).unwrap();
    out.extend_from_slice(payload);
    out
}

fn text(fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(OpCode::Data(Data::Text), fin, payload)
}

fn binary(fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(OpCode::Data(Data::Binary), fin, payload)
}

fn cont(fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(OpCode::Data(Data::Continue), fin, payload)
}

fn control(control: Control, payload: &[u8]) -> Vec<u8> {
    frame(OpCode::Control(control), true, payload)
}

fn prefix(message: &[u8]) -> Prefix {
    Prefix::from_slice(&message[..message.len().min(PREFIX_LEN)]).unwrap()
}

fn text_event(message: &[u8]) -> Event {
    Event::Text {
        len: message.len() as u64,
        prefix: prefix(message),
    }
}

fn binary_event(message: &[u8]) -> Event {
    Event::Binary {
        len: message.len() as u64,
        prefix: prefix(message),
    }
}

fn small(bytes: &[u8]) -> ControlPayload {
    ControlPayload::from_slice(bytes).unwrap()
}

/// Feeds `pieces` with the documented caller loop, then signals EOF.
fn drive<'a>(
    decoder: &mut FrameDecoder,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Event>, WsError> {
    let mut events = Vec::new();
    for piece in pieces {
        let mut buf = piece;
        while !buf.is_empty() {
            let (used, event) = decoder.feed(buf)?;
            assert!(used <= buf.len(), "used more than given");
            assert!(used > 0 || event.is_some(), "no progress on {buf:?}");
            buf = &buf[used..];
            events.extend(event);
        }
    }
    decoder.eof()?;
    Ok(events)
}

/// Every way of feeding `bytes` checked: whole, in two pieces split at each byte, and one
/// byte at a time.
fn splittings(bytes: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut all = vec![vec![bytes]];
    all.extend((0..=bytes.len()).map(|at| {
        let (a, b) = bytes.split_at(at);
        vec![a, b]
    }));
    all.push(bytes.chunks(1).collect());
    all
}

/// Asserts that `bytes` decode to `expected` however they are split (one decoder for all, so
/// its reuse is checked too).
fn check(bytes: &[u8], expected: &[Event]) {
    check_with(WsLimits::default(), bytes, expected);
}

fn check_with(limits: WsLimits, bytes: &[u8], expected: &[Event]) {
    let mut decoder = FrameDecoder::new(limits, true);
    for pieces in splittings(bytes) {
        let got = drive(&mut decoder, pieces.iter().copied());
        assert_eq!(got.as_deref(), Ok(expected), "pieces {pieces:?}");
        assert!(!decoder.in_progress());
    }
}

/// Asserts that `bytes` fail with `kind` however they are split (EOF included).
fn check_error(limits: WsLimits, bytes: &[u8], kind: &str) {
    for pieces in splittings(bytes) {
        let mut decoder = FrameDecoder::new(limits, true);
        let err = drive(&mut decoder, pieces.iter().copied()).unwrap_err();
        assert_eq!(err.kind(), kind, "{err} with pieces {pieces:?}");
        assert!(!decoder.in_progress(), "an error resets the decoder");
    }
}

/// The error of feeding `bytes` in one piece.
fn error(limits: WsLimits, bytes: &[u8]) -> WsError {
    drive(&mut FrameDecoder::new(limits, true), [bytes]).unwrap_err()
}

fn small_limits() -> WsLimits {
    WsLimits {
        max_frame: 10,
        max_message: 15,
    }
}

// Valid frame sequences.

#[test]
fn single_frames_on_the_wire() {
    check(b"\x81\x05hello", &[text_event(b"hello")]);
    check(b"\x82\x03\x00\x01\x02", &[binary_event(&[0, 1, 2])]);
    check(b"\x89\x02hi", &[Event::Ping(small(b"hi"))]);
    check(b"\x8A\x00", &[Event::Pong(small(b""))]);
    check(b"\x81\x00", &[text_event(b"")]);
}

#[test]
fn several_messages_in_one_read() {
    let bytes = [
        text(true, "héllo".as_bytes()),
        binary(true, &[9; 40]),
        control(Control::Pong, b"t=1"),
        text(true, b""),
    ]
    .concat();
    check(
        &bytes,
        &[
            text_event("héllo".as_bytes()),
            binary_event(&[9; 40]),
            Event::Pong(small(b"t=1")),
            text_event(b""),
        ],
    );
}

#[test]
fn fragmented_text_with_a_ping_between_fragments() {
    // "wö" is cut inside the two-byte "ö" by the fragment boundary.
    let message = "Hello, wörld".as_bytes();
    let bytes = [
        text(false, &message[..3]),
        cont(false, &message[3..9]),
        control(Control::Ping, b"between"),
        cont(true, &message[9..]),
    ]
    .concat();
    check(
        &bytes,
        &[Event::Ping(small(b"between")), text_event(message)],
    );
}

#[test]
fn fragmented_binary_with_empty_fragments() {
    let bytes = [
        binary(false, b""),
        cont(false, b"ab"),
        control(Control::Pong, b""),
        cont(false, b""),
        cont(true, b"cd"),
    ]
    .concat();
    check(&bytes, &[Event::Pong(small(b"")), binary_event(b"abcd")]);
}

#[test]
fn prefix_is_the_first_bytes_of_the_message() {
    let message: Vec<u8> = (0..100).collect();
    check(&binary(true, &message), &[binary_event(&message)]);
    let Event::Binary { prefix, .. } = binary_event(&message) else {
        unreachable!()
    };
    assert_eq!(prefix.as_slice(), &message[..PREFIX_LEN]);

    // The prefix spans fragments.
    let bytes = [
        binary(false, &message[..5]),
        control(Control::Ping, b""),
        cont(false, &message[5..20]),
        cont(true, &message[20..]),
    ]
    .concat();
    check(&bytes, &[Event::Ping(small(b"")), binary_event(&message)]);
}

#[test]
fn length_encodings() {
    // 7-bit, 16-bit (126) and 64-bit (127) lengths, at the edges.
    for len in [125, 126, 300, 65535] {
        let payload = vec![b'x'; len];
        let bytes = binary(true, &payload);
        let extra = if len < 126 { 0 } else { 2 };
        assert_eq!(bytes.len(), 2 + extra + len);
        check(&bytes, &[binary_event(&payload)]);
    }
    let payload = vec![7; 65536];
    let bytes = binary(true, &payload);
    assert_eq!(&bytes[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    check(&bytes, &[binary_event(&payload)]);

    // Longer encodings than needed are accepted.
    check(b"\x82\x7E\x00\x02ab", &[binary_event(b"ab")]);
    check(
        b"\x82\x7F\x00\x00\x00\x00\x00\x00\x00\x02ab",
        &[binary_event(b"ab")],
    );
}

#[test]
fn close_frames() {
    let mut bytes = control(Control::Close, b"\x03\xE8bye");
    check(
        &bytes,
        &[Event::Close {
            code: Some(1000),
            reason: small(b"bye"),
        }],
    );
    check(
        &control(Control::Close, b""),
        &[Event::Close {
            code: None,
            reason: small(b""),
        }],
    );
    check(
        &control(Control::Close, b"\x0F\xA0"),
        &[Event::Close {
            code: Some(4000),
            reason: small(b""),
        }],
    );

    // A message, then the close; the decoder reports it is closed.
    bytes = [text(true, b"last"), bytes].concat();
    let mut decoder = FrameDecoder::new(WsLimits::default(), true);
    let (used, event) = decoder.feed(&bytes).unwrap();
    assert_eq!((used, event), (6, Some(text_event(b"last"))));
    assert!(!decoder.is_closed());
    let (used, event) = decoder.feed(&bytes[6..]).unwrap();
    assert_eq!(used, bytes.len() - 6);
    assert!(matches!(event, Some(Event::Close { .. })));
    assert!(decoder.is_closed());
    assert_eq!(decoder.eof(), Ok(()));
}

#[test]
fn utf8_check_can_be_disabled() {
    let mut decoder = FrameDecoder::new(WsLimits::default(), false);
    let got = drive(&mut decoder, [&text(true, b"\xFF\xFE")[..]]);
    assert_eq!(got, Ok(vec![text_event(b"\xFF\xFE")]));
}

#[test]
fn decoder_is_usable_after_an_error_and_a_reset() {
    let mut decoder = FrameDecoder::new(WsLimits::default(), true);
    assert!(decoder.feed(b"\x83\x00").is_err());
    assert_eq!(
        drive(&mut decoder, [&b"\x81\x01a"[..]]),
        Ok(vec![text_event(b"a")])
    );
    decoder.feed(b"\x01\x02ab").unwrap();
    assert!(decoder.in_progress());
    decoder.reset();
    assert!(!decoder.in_progress());
    assert_eq!(
        drive(&mut decoder, [&b"\x82\x01b"[..]]),
        Ok(vec![binary_event(b"b")])
    );
}

// Errors.

#[test]
fn masked_server_frame() {
    let limits = WsLimits::default();
    check_error(
        limits,
        b"\x81\x85\x01\x02\x03\x04abcde",
        "masked_server_frame",
    );
    assert_eq!(
        error(limits, b"\x82\x80\x00\x00\x00\x00").to_string(),
        "server sent a masked frame (servers must not mask frames, RFC 6455 section 5.1)"
    );
}

#[test]
fn reserved_bits() {
    let limits = WsLimits::default();
    for first in [0xC1, 0xA1, 0x91, 0xC9] {
        check_error(limits, &[first, 0x01, b'a'], "reserved_bits");
    }
    assert_eq!(
        error(limits, b"\xC1\x00").to_string(),
        "frame has reserved bits set (0b100) but no extension was negotiated"
    );
}

#[test]
fn bad_opcodes() {
    for opcode in (3..=7).chain(11..=15) {
        let bytes = [0x80 | opcode, 0x01, b'a'];
        check_error(WsLimits::default(), &bytes, "bad_opcode");
    }
    // Also mid-message, between fragments.
    let bytes = [text(false, b"ab"), vec![0x83, 0x00]].concat();
    check_error(WsLimits::default(), &bytes, "bad_opcode");
}

#[test]
fn bad_control_frames() {
    let limits = WsLimits::default();
    let long = control(Control::Ping, &[0; 126]);
    check_error(limits, &long, "bad_control_frame");
    assert_eq!(
        error(limits, &long).to_string(),
        "bad control frame: PING frame with 126 bytes of payload (control frames are final and \
         carry at most 125 bytes)"
    );
    let fragmented = frame(OpCode::Control(Control::Pong), false, b"x");
    check_error(limits, &fragmented, "bad_control_frame");
    let fragmented_close = frame(OpCode::Control(Control::Close), false, b"");
    check_error(limits, &fragmented_close, "bad_control_frame");
    // 125 bytes is fine.
    check(
        &control(Control::Ping, &[1; 125]),
        &[Event::Ping(small(&[1; 125]))],
    );
}

#[test]
fn bad_fragmentation() {
    let limits = WsLimits::default();
    check_error(limits, &cont(true, b"orphan"), "bad_fragmentation");
    let nested = [text(false, b"a"), binary(true, b"b")].concat();
    check_error(limits, &nested, "bad_fragmentation");
    let after_end = [text(true, b"a"), cont(true, b"b")].concat();
    check_error(limits, &after_end, "bad_fragmentation");
    assert_eq!(
        error(limits, &nested).to_string(),
        "bad fragmentation: new data message started before the fragmented one ended"
    );
}

#[test]
fn frame_and_message_limits() {
    let limits = small_limits();
    check_with(limits, &binary(true, &[0; 10]), &[binary_event(&[0; 10])]);
    check_error(limits, &binary(true, &[0; 11]), "frame_too_large");
    // Refused from the header alone, before the payload arrives.
    assert_eq!(
        error(limits, &[0x82, 126, 0xFF, 0xFF]),
        WsError::FrameTooLarge {
            len: 65535,
            limit: 10
        }
    );
    let huge = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
    check_error(WsLimits::default(), &huge, "frame_too_large");

    let fifteen = [binary(false, &[0; 10]), cont(true, &[0; 5])].concat();
    check_with(limits, &fifteen, &[binary_event(&[0; 15])]);
    let sixteen = [binary(false, &[0; 10]), cont(true, &[0; 6])].concat();
    check_error(limits, &sixteen, "message_too_large");
    assert_eq!(
        error(limits, &sixteen).to_string(),
        "message of at least 16 bytes exceeds the limit of 15 bytes"
    );
}

#[test]
fn invalid_utf8() {
    let limits = WsLimits::default();
    check_error(limits, &text(true, b"ok\xFFok"), "invalid_utf8");
    // Ends inside a character.
    check_error(limits, &text(true, b"ok\xE2\x82"), "invalid_utf8");
    let split = [text(false, b"ok\xE2"), cont(true, b"\x28\xA1")].concat();
    check_error(limits, &split, "invalid_utf8");
    assert_eq!(
        error(limits, &text(true, b"abc\xFF")).to_string(),
        "text message is not valid UTF-8 (near byte 3 of the message)"
    );
    // Binary messages are not checked.
    check(&binary(true, b"\xFF"), &[binary_event(b"\xFF")]);
}

#[test]
fn bad_close_frames() {
    let limits = WsLimits::default();
    for payload in [
        &b"\x03"[..],
        b"\x03\xED",      // 1005: no status, never sent
        b"\x03\xEE",      // 1006
        b"\x03\xF7",      // 1015
        b"\x03\xE7",      // 999
        b"\x07\xD0",      // 2000: reserved
        b"\x13\x88",      // 5000
        b"\x03\xE8\xFFx", // reason not UTF-8
    ] {
        check_error(limits, &control(Control::Close, payload), "bad_close");
    }
    assert_eq!(
        error(limits, &control(Control::Close, b"\x03\xED")).to_string(),
        "bad close frame: code 1005 may not be sent in a close frame"
    );
}

#[test]
fn data_after_close() {
    let bytes = [control(Control::Close, b"\x03\xE8"), text(true, b"late")].concat();
    check_error(WsLimits::default(), &bytes, "data_after_close");
}

#[test]
fn eof_mid_frame_or_message() {
    let limits = WsLimits::default();
    check_error(limits, b"\x82", "closed_mid_frame");
    check_error(limits, b"\x82\x05abc", "closed_mid_frame");
    check_error(limits, b"\x89\x05abc", "closed_mid_frame");
    check_error(limits, &text(false, b"first"), "closed_mid_frame");
}

#[test]
fn decoder_stays_small() {
    // Held per connection, for hundreds of thousands of connections; no heap behind it.
    assert!(std::mem::size_of::<FrameDecoder>() <= 256);
    assert!(std::mem::size_of::<Event>() <= 144);
}

// Server role: masked client frames.

const MASK: [u8; 4] = [0xA1, 0x07, 0x3C, 0xF2];

/// A client frame (masked), formatted by our client encoder.
fn masked(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::proto::ws::encode_frame(opcode, payload, MASK, fin, &mut out);
    out
}

/// A reassembled message (opcode and bytes) or a control event.
type Decoded = (Option<Data>, Vec<u8>, Option<Event>);

/// Feeds `pieces` to a server decoder in chunk mode: the messages reassembled from their
/// pieces (opcode, bytes) and the control events, in order.
fn drive_chunks<'a>(
    decoder: &mut FrameDecoder,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Decoded>, WsError> {
    let mut out = Vec::new();
    let mut message: Option<(Data, Vec<u8>)> = None;
    for piece in pieces {
        let mut buf = piece;
        while !buf.is_empty() {
            let (used, event) = decoder.feed_chunks(buf)?;
            assert!(used > 0 || event.is_some(), "no progress on {buf:?}");
            buf = &buf[used..];
            match event {
                Some(ChunkEvent::Data(chunk)) => {
                    assert_eq!(chunk.first, message.is_none(), "first flag");
                    let (opcode, bytes) = message.get_or_insert_with(|| (chunk.opcode, Vec::new()));
                    assert_eq!(*opcode, chunk.opcode);
                    chunk.unmask_into(bytes);
                    if chunk.last {
                        let (opcode, bytes) = message.take().unwrap();
                        out.push((Some(opcode), bytes, None));
                    }
                }
                Some(ChunkEvent::Control(event)) => out.push((None, Vec::new(), Some(event))),
                None => {}
            }
        }
    }
    decoder.eof()?;
    Ok(out)
}

#[test]
fn server_decodes_masked_frames_split_at_every_byte() {
    let message = "Hello, wörld".as_bytes();
    let big: Vec<u8> = (0..300u32).map(|i| (i * 13 % 256) as u8).collect();
    let bytes = [
        masked(OpCode::Data(Data::Text), false, &message[..3]),
        masked(OpCode::Data(Data::Continue), false, &message[3..9]),
        masked(OpCode::Control(Control::Ping), true, b"between"),
        masked(OpCode::Data(Data::Continue), true, &message[9..]),
        masked(OpCode::Data(Data::Binary), true, &big),
        masked(OpCode::Data(Data::Text), true, b""),
        masked(OpCode::Data(Data::Binary), false, b""),
        masked(OpCode::Data(Data::Continue), true, b"xyz"),
        masked(OpCode::Control(Control::Close), true, b"\x03\xE8bye"),
    ]
    .concat();
    let close = Event::Close {
        code: Some(1000),
        reason: small(b"bye"),
    };
    let expected = [
        Event::Ping(small(b"between")),
        text_event(message),
        binary_event(&big),
        text_event(b""),
        binary_event(b"xyz"),
        close,
    ];
    let mut decoder = FrameDecoder::server(WsLimits::default(), true);
    assert!(decoder.is_server());
    for pieces in splittings(&bytes) {
        let got = drive(&mut decoder, pieces.iter().copied());
        assert_eq!(got.as_deref(), Ok(&expected[..]), "pieces {pieces:?}");
        decoder.reset();
        let got = drive_chunks(&mut decoder, pieces.iter().copied()).unwrap();
        let want = vec![
            (None, Vec::new(), Some(Event::Ping(small(b"between")))),
            (Some(Data::Text), message.to_vec(), None),
            (Some(Data::Binary), big.clone(), None),
            (Some(Data::Text), Vec::new(), None),
            (Some(Data::Binary), b"xyz".to_vec(), None),
            (None, Vec::new(), Some(close)),
        ];
        assert_eq!(got, want, "pieces {pieces:?}");
        decoder.reset();
    }
}

#[test]
fn client_decoder_streams_chunks_too() {
    let bytes = [text(false, b"ab"), cont(true, b"cd")].concat();
    for pieces in splittings(&bytes) {
        let mut decoder = FrameDecoder::new(WsLimits::default(), true);
        let got = drive_chunks(&mut decoder, pieces.iter().copied()).unwrap();
        assert_eq!(got, vec![(Some(Data::Text), b"abcd".to_vec(), None)]);
    }
}

#[test]
fn server_requires_masked_frames() {
    let mut decoder = FrameDecoder::server(WsLimits::default(), true);
    let err = drive(&mut decoder, [&text(true, b"hi")[..]]).unwrap_err();
    assert_eq!(err.kind(), "unmasked_client_frame");
    let err = drive(&mut decoder, [&control(Control::Ping, b"")[..]]).unwrap_err();
    assert_eq!(err.kind(), "unmasked_client_frame");
    // The client role still refuses masked frames.
    let frame = masked(OpCode::Data(Data::Text), true, b"hi");
    let err = drive(
        &mut FrameDecoder::new(WsLimits::default(), true),
        [&frame[..]],
    )
    .unwrap_err();
    assert_eq!(err.kind(), "masked_server_frame");
}

#[test]
fn server_checks_utf8_and_limits_of_masked_frames() {
    let bad = masked(OpCode::Data(Data::Text), true, &[b'a', 0xFF, b'b']);
    for pieces in splittings(&bad) {
        let mut decoder = FrameDecoder::server(WsLimits::default(), true);
        let err = drive(&mut decoder, pieces.iter().copied()).unwrap_err();
        assert_eq!(err.kind(), "invalid_utf8");
    }
    let long = masked(OpCode::Data(Data::Binary), true, &[0; 11]);
    let err = drive(&mut FrameDecoder::server(small_limits(), true), [&long[..]]).unwrap_err();
    assert_eq!(err.kind(), "frame_too_large");
}
