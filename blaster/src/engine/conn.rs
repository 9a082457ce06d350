//! Per-connection state of the load engine: one slot of a worker's slab.
//!
//! A slot's index is also its direct-descriptor index in the worker's ring, so a socket needs
//! no lookup. The generation changes every time the slot starts a new connection, so a
//! completion from an earlier life of the slot is recognised and ignored. A slot is reused only
//! once every operation submitted for its previous life has completed (`ops == 0`), which is
//! what makes reusing the descriptor index and the send buffers safe.

use crate::proto::http1::{Limits, ResponseParser};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No socket; waiting in the open queue.
    Free,
    /// Socket and connect submitted.
    Connecting,
    /// Connected; requests may be sent.
    Ready,
    /// Cancel and close submitted; waiting for every op to complete.
    Closing,
}

/// One connection slot.
pub struct Conn {
    pub generation: u32,
    pub state: State,
    /// Index of the target (and of its pre-encoded request) this slot connects to.
    pub target: u32,
    /// Index of the source address to bind, if sources were given.
    pub source: u32,
    /// Submitted operations that have not completed yet (a multishot receive counts once).
    pub ops: u16,
    /// A send is in flight.
    pub sending: bool,
    /// Bytes of the current send buffer already sent, and its length.
    pub send_done: u32,
    pub send_len: u32,
    /// Whether the multishot receive is armed.
    pub recv_armed: bool,
    /// Sequence number of the next request to send, and of the next response expected.
    pub seq_sent: u32,
    pub seq_done: u32,
    /// Start times (intended or actual send time, clock ns) of the requests in flight, a ring
    /// indexed by sequence number modulo its length (the pipeline depth).
    pub starts: Box<[u64]>,
    /// When the current connect began (clock ns).
    pub connect_started: u64,
    /// Whether this slot has ever connected (for the "nothing listening" verdict).
    pub ever_connected: bool,
    /// Open model: the slot is in the worker's stack of connections that can take a request.
    pub in_free_list: bool,
    /// When the slot last became able to take a request (open model, clock ns).
    pub idle_since: u64,
    /// Consecutive failed connects, for backoff.
    pub connect_failures: u32,
    pub parser: ResponseParser,
}

impl Conn {
    pub fn new(target: u32, source: u32, pipeline: usize) -> Conn {
        Conn {
            generation: 0,
            state: State::Free,
            target,
            source,
            ops: 0,
            sending: false,
            send_done: 0,
            send_len: 0,
            recv_armed: false,
            seq_sent: 0,
            seq_done: 0,
            starts: vec![0; pipeline].into_boxed_slice(),
            connect_started: 0,
            ever_connected: false,
            in_free_list: false,
            idle_since: 0,
            connect_failures: 0,
            parser: ResponseParser::new(Limits::default()),
        }
    }

    /// Requests sent on this connection that have no response yet.
    #[inline]
    pub fn in_flight(&self) -> u32 {
        self.seq_sent.wrapping_sub(self.seq_done)
    }

    /// Records the start time of the next request to be sent.
    #[inline]
    pub fn push_start(&mut self, start_ns: u64) {
        let len = self.starts.len() as u32;
        self.starts[(self.seq_sent % len) as usize] = start_ns;
        self.seq_sent = self.seq_sent.wrapping_add(1);
    }

    /// Takes the start time of the oldest request in flight.
    #[inline]
    pub fn pop_start(&mut self) -> u64 {
        debug_assert!(self.in_flight() > 0);
        let len = self.starts.len() as u32;
        let start = self.starts[(self.seq_done % len) as usize];
        self.seq_done = self.seq_done.wrapping_add(1);
        start
    }

    /// Resets per-connection state for a new life of the slot and returns its generation.
    pub fn begin(&mut self, now_ns: u64) -> u32 {
        self.generation = self.generation.wrapping_add(1) & crate::engine::ring::GENERATION_MASK;
        self.state = State::Connecting;
        self.sending = false;
        self.send_done = 0;
        self.send_len = 0;
        self.recv_armed = false;
        self.seq_sent = 0;
        self.seq_done = 0;
        self.connect_started = now_ns;
        self.in_free_list = false;
        self.parser.reset();
        self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_come_back_in_order_across_wraparound() {
        let mut c = Conn::new(0, 0, 3);
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for round in 0..5u64 {
            for i in 0..3u64 {
                c.push_start(round * 10 + i);
                expected.push(round * 10 + i);
            }
            assert_eq!(c.in_flight(), 3);
            for _ in 0..3 {
                got.push(c.pop_start());
            }
        }
        assert_eq!(got, expected);
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn begin_bumps_generation_and_clears_requests() {
        let mut c = Conn::new(0, 0, 1);
        c.push_start(5);
        let g1 = c.begin(100);
        let g2 = c.begin(200);
        assert_ne!(g1, g2);
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.connect_started, 200);
        assert_eq!(c.state, State::Connecting);
    }
}
