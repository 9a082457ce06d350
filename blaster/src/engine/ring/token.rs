//! `user_data` tokens: `(slot, generation, op)` packed into the 64 bits a completion carries.
//!
//! The slot indexes a slab of connection state; the generation (24 bits) tells a completion
//! of a connection's earlier life from one of its current life; the op (8 bits) says which
//! operation completed. The meaning of op values belongs to the user of the ring.

/// A packed completion token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub slot: u32,
    pub generation: u32,
    pub op: u8,
}

/// Generations wrap at 24 bits.
pub const GENERATION_MASK: u32 = (1 << 24) - 1;

impl Token {
    #[inline]
    pub fn new(slot: u32, generation: u32, op: u8) -> Token {
        Token {
            slot,
            generation: generation & GENERATION_MASK,
            op,
        }
    }

    #[inline]
    pub fn encode(self) -> u64 {
        (u64::from(self.slot) << 32)
            | (u64::from(self.generation & GENERATION_MASK) << 8)
            | u64::from(self.op)
    }

    #[inline]
    pub fn decode(user_data: u64) -> Token {
        Token {
            slot: (user_data >> 32) as u32,
            generation: ((user_data >> 8) as u32) & GENERATION_MASK,
            op: user_data as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_extremes() {
        for t in [
            Token::new(0, 0, 0),
            Token::new(u32::MAX, GENERATION_MASK, u8::MAX),
            Token::new(12345, 77, 3),
        ] {
            assert_eq!(Token::decode(t.encode()), t);
        }
    }

    #[test]
    fn generation_wraps_at_24_bits() {
        let t = Token::new(1, GENERATION_MASK + 2, 1);
        assert_eq!(t.generation, 1);
        assert_eq!(Token::decode(t.encode()).generation, 1);
    }
}
