//! Frame-level building blocks: a streaming header reader over tungstenite's
//! [`FrameHeader::parse`], client masking, and [`SmallBytes`], the inline byte buffer that
//! carries control payloads and message prefixes without touching the heap.
//!
//! Boundary: knows one frame header at a time; what frames mean (fragmentation, control
//! rules, limits) is the decoder's job.

use std::io::Cursor;

use tungstenite::protocol::frame::FrameHeader;

use super::error::WsError;

/// Longest frame header: 2 bytes, 8 extended length bytes, 4 mask bytes.
pub(crate) const MAX_HEADER: usize = 14;

/// Longest control frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Up to `N` bytes held inline (no heap): a control frame payload or a message prefix.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SmallBytes<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> SmallBytes<N> {
    /// Most bytes held.
    pub const CAPACITY: usize = N;

    /// Empty. `N` must fit in a `u8` (checked at compile time).
    pub const fn new() -> Self {
        const { assert!(N <= u8::MAX as usize) };
        SmallBytes {
            len: 0,
            bytes: [0; N],
        }
    }

    /// A copy of `bytes`, or `None` if it is longer than `N`.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut small = Self::new();
        (bytes.len() <= N).then(|| {
            small.fill_from(bytes);
            small
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends as much of `bytes` as fits; returns how many bytes were taken.
    pub(crate) fn fill_from(&mut self, bytes: &[u8]) -> usize {
        let start = self.len();
        let take = bytes.len().min(N - start);
        self.bytes[start..start + take].copy_from_slice(&bytes[..take]);
        // `start + take <= N <= u8::MAX`.
        self.len = (start + take) as u8;
        take
    }

    /// Removes (or applies) a mask over the bytes held, from phase 0.
    pub(crate) fn unmask(&mut self, mask: [u8; 4]) {
        let len = self.len();
        apply_mask(&mut self.bytes[..len], mask);
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const N: usize> Default for SmallBytes<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> std::fmt::Debug for SmallBytes<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.as_slice().escape_ascii())
    }
}

/// Payload of a close, ping or pong frame.
pub type ControlPayload = SmallBytes<MAX_CONTROL_PAYLOAD>;

/// A complete frame header and its payload length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub header: FrameHeader,
    pub len: u64,
}

/// Reads one frame header that may arrive split at any byte. Headers are parsed by
/// tungstenite; only a header split across inputs is copied (at most 13 bytes, inline).
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderReader {
    buf: SmallBytes<MAX_HEADER>,
}

impl HeaderReader {
    /// Reads (the rest of) a header from `input`: the bytes used and the header once it is
    /// complete. Without a header, all of `input` was used.
    pub fn read(&mut self, input: &[u8]) -> Result<(usize, Option<Header>), WsError> {
        if self.buf.is_empty() {
            // Common case: the whole header is in `input`; parse it in place.
            return match parse(input)? {
                Some((used, header)) => Ok((used, Some(header))),
                None => {
                    // A complete header is at most MAX_HEADER bytes, so all of them fit.
                    let taken = self.buf.fill_from(input);
                    debug_assert_eq!(taken, input.len());
                    Ok((taken, None))
                }
            };
        }
        let before = self.buf.len();
        let taken = self.buf.fill_from(input);
        match parse(self.buf.as_slice())? {
            Some((used, header)) => {
                // Earlier bytes held no complete header, so it ends in this input.
                debug_assert!(used > before);
                self.buf.clear();
                Ok((used - before, Some(header)))
            }
            None => Ok((taken, None)),
        }
    }

    /// Some bytes of a header were read but not all.
    pub fn in_progress(&self) -> bool {
        !self.buf.is_empty()
    }

    pub fn reset(&mut self) {
        self.buf.clear();
    }
}

/// A complete header at the start of `bytes` with its length, or `None` if more bytes are
/// needed.
fn parse(bytes: &[u8]) -> Result<Option<(usize, Header)>, WsError> {
    let mut cursor = Cursor::new(bytes);
    match FrameHeader::parse(&mut cursor) {
        // The position is at most MAX_HEADER.
        Ok(Some((header, len))) => Ok(Some((cursor.position() as usize, Header { header, len }))),
        Ok(None) => Ok(None),
        // Reading from a slice cannot fail, so tungstenite's only error here is a reserved
        // opcode (`ProtocolError::InvalidOpcode`).
        Err(_) => Err(WsError::BadOpcode {
            opcode: bytes[0] & 0x0F,
        }),
    }
}

/// XORs `buf` with the repeated 4-byte `mask` (RFC 6455 §5.3); masking twice restores it.
///
/// Written by hand because tungstenite 0.30 keeps its `apply_mask` private (it only masks
/// inside `Frame::format`, which needs an owned payload). Eight bytes at a time, safe code.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so its mask phase is 0.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::coding::{Data, OpCode};

    #[test]
    fn small_bytes() {
        let mut small = SmallBytes::<4>::new();
        assert!(small.is_empty());
        assert_eq!(small.fill_from(b"ab"), 2);
        assert_eq!(small.fill_from(b"cde"), 2);
        assert_eq!(small.as_slice(), b"abcd");
        assert_eq!(format!("{small:?}"), "b\"abcd\"");
        assert_eq!(SmallBytes::<2>::from_slice(b"abc"), None);
        assert_eq!(SmallBytes::<3>::from_slice(b"abc").unwrap().len(), 3);
    }

    #[test]
    fn header_split_at_every_byte() {
        // Binary, final, 16-bit length 300, then two payload bytes.
        let bytes = [0x82, 126, 0x01, 0x2C, b'x', b'y'];
        let expected = Header {
            header: FrameHeader {
                opcode: OpCode::Data(Data::Binary),
                ..FrameHeader::default()
            },
            len: 300,
        };
        for at in 0..=4 {
            let mut reader = HeaderReader::default();
            let (first, second) = bytes.split_at(at);
            let (used, header) = reader.read(first).unwrap();
            let (used, header) = match header {
                Some(header) => (used, header),
                None => {
                    assert_eq!(used, first.len());
                    let (more, header) = reader.read(second).unwrap();
                    (used + more, header.unwrap())
                }
            };
            assert_eq!((used, &header), (4, &expected), "split at {at}");
            assert!(!reader.in_progress());
        }
    }

    #[test]
    fn reserved_opcode() {
        let err = HeaderReader::default().read(&[0x83, 0]).unwrap_err();
        assert_eq!(err, WsError::BadOpcode { opcode: 3 });
        let err = HeaderReader::default().read(&[0x8B, 0]).unwrap_err();
        assert_eq!(err.to_string(), "frame has reserved opcode 0xb");
    }

    #[test]
    fn masking_is_an_involution_at_every_length() {
        let mask = [0x37, 0xFA, 0x21, 0x3D];
        for len in 0..40 {
            let original: Vec<u8> = (0..len as u8).collect();
            let mut buf = original.clone();
            apply_mask(&mut buf, mask);
            for (i, (&masked, &plain)) in buf.iter().zip(&original).enumerate() {
                assert_eq!(masked, plain ^ mask[i % 4]);
            }
            apply_mask(&mut buf, mask);
            assert_eq!(buf, original);
        }
    }
}
