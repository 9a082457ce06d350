//! Per-connection state of the load engine: one slot of a worker's slab.
//!
//! A slot's index is also its direct-descriptor index in the worker's ring (with several
//! rings, its index within its ring's run of slots), so a socket needs no lookup. The
//! generation changes every time the slot starts a new connection, so a completion from an
//! earlier life of the slot is recognised and ignored. A slot is reused only
//! once every operation submitted for its previous life has completed (`ops == 0`), which is
//! what makes reusing the descriptor index and the send buffers safe.
//!
//! A slot is kept small (88 bytes, checked by a test) because a held connection costs little
//! else: a million of them is the goal. What only some connections need lives elsewhere: the
//! target and source indexes follow from the slot's position (see `Worker::target_of`), start
//! times of a pipeline deeper than one are in [`Starts`], and the parser allocates only for
//! split heads and chunked bodies.

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
    /// Submitted operations that have not completed yet (a multishot receive counts once; at
    /// most a connect chain of four, a receive, a send, a cancel and a close).
    pub ops: u8,
    /// Consecutive failed connects, for backoff (saturating).
    pub connect_failures: u8,
    /// A send is in flight.
    pub sending: bool,
    /// Whether the multishot receive is armed.
    pub recv_armed: bool,
    /// Whether this slot has ever connected (for the "nothing listening" verdict).
    pub ever_connected: bool,
    /// Open model: the slot is in the worker's stack of connections that can take a request.
    pub in_free_list: bool,
    /// Churn picked this connection: close it once its requests in flight are answered.
    pub churn_pending: bool,
    /// Churn closed this slot and it has not connected again yet (kept across `begin`).
    pub reopening: bool,
    /// Bytes of the current send buffer already sent, and its length.
    pub send_done: u32,
    pub send_len: u32,
    /// Sequence number of the next request to send, and of the next response expected.
    pub seq_sent: u32,
    pub seq_done: u32,
    /// One timestamp (clock ns) whose meaning follows the state, so a slot needs one word
    /// instead of three: while connecting, when the connect began; when ready with a pipeline
    /// of one, the start time of the request in flight; when ready with nothing in flight (or
    /// with a deeper pipeline, whose start times are in [`Starts`]), when the connection last
    /// became able to take a request (open model).
    stamp: u64,
    pub parser: ResponseParser,
}

impl Default for Conn {
    fn default() -> Conn {
        Conn::new()
    }
}

impl Conn {
    pub fn new() -> Conn {
        Conn {
            generation: 0,
            state: State::Free,
            ops: 0,
            connect_failures: 0,
            sending: false,
            recv_armed: false,
            ever_connected: false,
            in_free_list: false,
            churn_pending: false,
            reopening: false,
            send_done: 0,
            send_len: 0,
            seq_sent: 0,
            seq_done: 0,
            stamp: 0,
            parser: ResponseParser::new(Limits::default()),
        }
    }

    /// Requests sent on this connection that have no response yet.
    #[inline]
    pub fn in_flight(&self) -> u32 {
        self.seq_sent.wrapping_sub(self.seq_done)
    }

    /// Records the start time of the next request to be sent. `deeper` is the slot's share of
    /// [`Starts`]: empty for a pipeline of one, whose start time is kept in the slot.
    #[inline]
    pub fn push_start(&mut self, start_ns: u64, deeper: &mut [u64]) {
        if deeper.is_empty() {
            debug_assert_eq!(self.in_flight(), 0, "a pipeline of one has one start time");
            self.stamp = start_ns;
        } else {
            deeper[self.seq_sent as usize % deeper.len()] = start_ns;
        }
        self.seq_sent = self.seq_sent.wrapping_add(1);
    }

    /// Takes the start time of the oldest request in flight (`deeper` as for `push_start`).
    #[inline]
    pub fn pop_start(&mut self, deeper: &[u64]) -> u64 {
        debug_assert!(self.in_flight() > 0);
        let start = if deeper.is_empty() {
            self.stamp
        } else {
            deeper[self.seq_done as usize % deeper.len()]
        };
        self.seq_done = self.seq_done.wrapping_add(1);
        start
    }

    /// Ends every request in flight without a start time (errors, close); returns how many.
    #[inline]
    pub fn drop_in_flight(&mut self) -> u32 {
        let n = self.in_flight();
        self.seq_done = self.seq_sent;
        n
    }

    /// When the current connect began (meaningful while connecting).
    #[inline]
    pub fn connect_started(&self) -> u64 {
        debug_assert_eq!(self.state, State::Connecting);
        self.stamp
    }

    /// Open model: the connection became able to take a request at `now_ns`.
    #[inline]
    pub fn set_idle_since(&mut self, now_ns: u64, pipeline: usize) {
        if pipeline > 1 || self.in_flight() == 0 {
            self.stamp = now_ns;
        }
    }

    /// Open model: when the connection became able to take a request (the connect time if it
    /// has not sent anything yet; with a pipeline of one and a request in flight, that
    /// request's start, which is never earlier).
    #[inline]
    pub fn idle_since(&self) -> u64 {
        self.stamp
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
        self.stamp = now_ns;
        self.in_free_list = false;
        self.churn_pending = false;
        self.parser.reset();
        self.generation
    }
}

/// Start times of the requests in flight for pipelines deeper than one: `depth` per slot,
/// a ring indexed by sequence number modulo the depth. Empty for a pipeline of one (the
/// start time then lives in the slot itself), so held and closed-model connections pay
/// nothing for it.
pub struct Starts {
    depth: usize,
    times: Vec<u64>,
}

impl Starts {
    pub fn new(depth: usize, slots: usize) -> Starts {
        let times = if depth > 1 {
            vec![0; depth * slots]
        } else {
            Vec::new()
        };
        Starts { depth, times }
    }

    /// Slot `slot`'s share (empty for a pipeline of one).
    #[inline]
    pub fn of(&mut self, slot: u32) -> &mut [u64] {
        if self.times.is_empty() {
            return &mut [];
        }
        let at = slot as usize * self.depth;
        &mut self.times[at..at + self.depth]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_come_back_in_order_across_wraparound() {
        let mut starts = Starts::new(3, 2);
        let mut c = Conn::new();
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for round in 0..5u64 {
            for i in 0..3u64 {
                c.push_start(round * 10 + i, starts.of(1));
                expected.push(round * 10 + i);
            }
            assert_eq!(c.in_flight(), 3);
            for _ in 0..3 {
                got.push(c.pop_start(starts.of(1)));
            }
        }
        assert_eq!(got, expected);
        assert_eq!(c.in_flight(), 0);
        assert!(starts.of(0).iter().all(|&t| t == 0), "slot 0 untouched");
    }

    #[test]
    fn a_pipeline_of_one_keeps_its_start_in_the_slot() {
        let mut starts = Starts::new(1, 1000);
        assert!(starts.of(999).is_empty());
        let mut c = Conn::new();
        c.begin(7);
        assert_eq!(c.connect_started(), 7);
        c.state = State::Ready;
        for t in [100, 200, 300] {
            c.push_start(t, starts.of(0));
            assert_eq!(c.pop_start(starts.of(0)), t);
        }
    }

    #[test]
    fn begin_bumps_generation_and_clears_requests() {
        let mut c = Conn::new();
        c.push_start(5, &mut []);
        let g1 = c.begin(100);
        let g2 = c.begin(200);
        assert_ne!(g1, g2);
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.connect_started(), 200);
        assert_eq!(c.state, State::Connecting);
    }

    #[test]
    fn a_slot_stays_small() {
        // An idle held connection costs its slot plus a share of the ring; the budget
        // for all of it is 256 bytes.
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 88, "Conn is {size} bytes");
    }
}
