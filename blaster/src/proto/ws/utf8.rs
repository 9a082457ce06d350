//! Streaming UTF-8 check of a text message whose bytes arrive in pieces split anywhere (even
//! inside a character), without keeping the message.
//!
//! Written by hand: tungstenite's incremental UTF-8 decoder is private, and std only checks
//! whole slices. This carries the at most 3 bytes of a character cut by a piece boundary and
//! lets `std::str::from_utf8` do the rest.

/// Validation state of one text message.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Utf8Stream {
    /// Start of a character whose remaining bytes have not arrived yet.
    pending: [u8; 4],
    pending_len: usize,
}

impl Utf8Stream {
    /// Checks the next bytes of the message. On error, returns the index in `bytes` near which
    /// the invalid sequence is (0 when it started in an earlier piece).
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), usize> {
        if self.pending_len > 0 {
            let width = char_width(self.pending[0]);
            let take = (width - self.pending_len).min(bytes.len());
            let end = self.pending_len + take;
            self.pending[self.pending_len..end].copy_from_slice(&bytes[..take]);
            match std::str::from_utf8(&self.pending[..end]) {
                Ok(_) => self.pending_len = 0,
                // Still a valid start of a character, still incomplete.
                Err(err) if err.error_len().is_none() => {
                    self.pending_len = end;
                    return Ok(());
                }
                Err(_) => return Err(0),
            }
            bytes = &bytes[take..];
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(err) if err.error_len().is_none() => {
                let tail = &bytes[err.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(())
            }
            Err(err) => Err(err.valid_up_to()),
        }
    }

    /// The message ended: fails if it ended inside a character.
    pub fn finish(&mut self) -> Result<(), ()> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete { Ok(()) } else { Err(()) }
    }
}

/// Length of the character a lead byte starts (only called on the lead byte of a valid but
/// incomplete sequence, so 2 to 4).
fn char_width(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pieces: &[&[u8]]) -> bool {
        let mut stream = Utf8Stream::default();
        pieces.iter().all(|piece| stream.push(piece).is_ok()) && stream.finish().is_ok()
    }

    #[test]
    fn valid_text_split_at_every_byte() {
        let text = "aé€😀z".as_bytes();
        for at in 0..=text.len() {
            let (a, b) = text.split_at(at);
            assert!(check(&[a, b]), "split at {at}");
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert!(check(&bytes));
    }

    #[test]
    fn invalid_text_split_at_every_byte() {
        let cases: [&[u8]; 5] = [
            b"ab\xFFcd",
            b"a\xE2\x82",            // ends inside a character
            b"\xE2\x28\xA1",         // bad continuation byte
            b"\xED\xA0\x80",         // surrogate
            b"\xF0\x9F\x98\x80\x80", // stray continuation byte
        ];
        for bytes in cases {
            for at in 0..=bytes.len() {
                let (a, b) = bytes.split_at(at);
                assert!(!check(&[a, b]), "{bytes:?} split at {at}");
            }
            let one: Vec<&[u8]> = bytes.chunks(1).collect();
            assert!(!check(&one), "{bytes:?} byte by byte");
        }
    }

    #[test]
    fn error_index() {
        assert_eq!(Utf8Stream::default().push(b"abc\xFF"), Err(3));
    }
}
