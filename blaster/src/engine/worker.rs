//! One load worker: a pinned thread with its own rings, connection slab, buffers and metrics.
//!
//! The loop: read the clock once, start due connects, send due requests, expire timeouts,
//! then submit everything and wait for completions (or the next deadline), and handle the
//! batch of completions. Nothing here is shared with other workers except the read-only
//! configuration, the clock and the stop flag.
//!
//! A worker drives as many rings as its connections need: one ring's registered file table
//! holds at most RLIMIT_NOFILE direct descriptors. Slots are split into contiguous runs, one
//! per ring (`slot = ring * ring_slots + descriptor`); a completion's ring is the ring it was
//! reaped from, so tokens stay `(slot, generation, op)`. The thread blocks on the first ring
//! only; the others signal a shared eventfd that the first ring polls (see
//! [`Worker::wait`] and docs/ARCHITECTURE.md). With one ring (the common case) the only extra
//! work is a length check where a slot is turned into its ring and descriptor.
//!
//! Memory the kernel reads (pre-encoded requests, socket addresses, the connect timeout, the
//! socket option value) is allocated before the first submission and lives in the worker
//! until every operation has completed; see [`Worker::shutdown`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use io_uring::{cqueue, opcode, types};
use socket2::SockAddr;

use super::clock::{Clock, ns_to_us};
use super::conn::{Conn, Starts, State};
use super::pacing::Schedule;
use super::ring::{RingConfig, Token};
use super::ringset::RingSet;
use super::{EngineError, WorkerPlan};
use crate::config::{LoadModel, RunConfig};
use crate::metrics::interval::{Counters, IntervalSnapshot};
use crate::metrics::{ErrorKind, WorkerMetrics};
use crate::proto::http1::{self, ResponseError};

/// Operation codes carried in completion tokens.
use super::ringset::op;

/// Buffer group id of the worker's receive buffer ring.
const BGID: u16 = 0;
/// Size of one receive buffer.
const RECV_BUF_SIZE: u32 = 4096;
/// Most receive buffers per worker (8 MiB of 4 KiB buffers).
const MAX_RECV_BUFFERS: usize = 2048;
/// Receive buffers per worker in hold mode: held connections receive only keep-alive
/// responses, a few per loop turn (when the ring runs dry the receive is re-armed).
const HOLD_RECV_BUFFERS: u16 = 128;
/// Delay before reconnecting after a failed connect.
const CONNECT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest the loop sleeps when nothing is scheduled (it still wakes on completions).
const MAX_WAIT: Duration = Duration::from_millis(50);
/// After the load phase, how long in-flight requests may still finish (capped by --timeout).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long shutdown waits for cancelled operations to complete, plus this per 10,000
/// connections (closing 20,000 takes more than a second on loopback).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);
const SHUTDOWN_WAIT_PER_10K: Duration = Duration::from_secs(1);
/// Connects started per loop turn at most (see `open_due`).
const CONNECTS_PER_LOOP: usize = 256;

/// What a completion of data on a connection asks the loop to do next.
enum After {
    Nothing,
    /// Close the connection; the peer closed it (true) or an error did (false).
    Close {
        by_peer: bool,
    },
}

pub struct Worker {
    index: usize,
    config: Arc<RunConfig>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    /// The worker's rings and their receive buffer rings (see [`RingSet`]).
    io: RingSet,
    conns: Vec<Conn>,
    /// Start times of requests in flight for pipelines deeper than one.
    starts: Starts,
    /// Pre-encoded request of each target, repeated `pipeline` times (closed model batches).
    requests: Vec<Vec<u8>>,
    /// Length of one request of each target.
    request_len: Vec<u32>,
    targets: Vec<SockAddr>,
    sources: Vec<SockAddr>,
    /// Connect deadlines in start order (the timeout is one value, so appending keeps the
    /// order): (deadline, slot, generation).
    connect_deadlines: VecDeque<(u64, u32, u32)>,
    /// Slots below this have been opened at least once; the ones from here on wait for their
    /// first connect in slot order (a cursor, not a queue entry per slot).
    next_new: u32,
    /// Slots waiting to reconnect, by the time they may.
    to_open: BinaryHeap<Reverse<(u64, u32)>>,
    /// Request deadlines in send order: (deadline, slot, generation, sequence).
    timeouts: VecDeque<(u64, u32, u32, u32)>,
    /// Open model: connections that can take another request.
    free: Vec<u32>,
    schedule: Option<Schedule>,
    plan: WorkerPlan,
    cqes: Vec<(u64, i32, u32)>,
    metrics: WorkerMetrics,
    /// Requests sent by this worker.
    sent: u64,
    /// Connect attempts started (for --connect-rate).
    connects_started: u64,
    /// Connects in flight (sockets in `State::Connecting`), bounded by `max_connecting`.
    connecting: usize,
    max_connecting: usize,
    /// A connect ever succeeded on this worker.
    any_connected: bool,
    /// Slots whose first connect failed, while none ever succeeded.
    first_connects_failed: usize,
    /// Load phase over: no new requests or connections.
    draining: bool,
    timeout_ns: u64,
    /// The method is HEAD: responses carry no body whatever their headers say.
    head: bool,
    /// Where interval snapshots go (the observer thread); `None` when nobody listens.
    snapshots: Option<Sender<IntervalSnapshot>>,
    interval_index: u64,
    next_interval_ns: u64,
    /// Connections established and not yet closing.
    open_now: u64,
    /// Hold model: send one request per connection this often.
    keepalive_ns: Option<u64>,
    /// --churn: this worker's share of the close-and-reopen schedule.
    churn: Option<Schedule>,
    /// Churn closes taken from the schedule so far (closed, waiting for a response to close,
    /// or skipped because no connection was open).
    churn_taken: u64,
    /// Where the search for the next connection to churn goes on (round-robin over slots).
    churn_cursor: u32,
    /// Slots closed by churn whose reconnect has not succeeded yet; the drain at the end of
    /// the run waits for them so the run ends with every connection open again.
    churn_reopening: u64,
    /// Hold model: when each connection sends its next keep-alive request, soonest first:
    /// (due, slot, generation). A heap, not a FIFO: the first ones are spread over a period.
    keepalives: BinaryHeap<Reverse<(u64, u32, u32)>>,
}

impl Worker {
    pub fn new(
        index: usize,
        config: Arc<RunConfig>,
        clock: Clock,
        stop: Arc<AtomicBool>,
        plan: WorkerPlan,
        snapshots: Option<Sender<IntervalSnapshot>>,
    ) -> Result<Worker, EngineError> {
        let conns_n = plan.connections;
        let hold = matches!(config.model, LoadModel::Hold { .. });
        let max_connecting = config.connecting_per_worker();
        // As many rings as one ring's file table requires, with the slots spread evenly.
        let io = RingSet::open(conns_n, plan.ring_slots, BGID, RECV_BUF_SIZE, |n| {
            // Held connections are mostly idle: queues sized for one loop turn's connects
            // and closes rather than a request per connection keep the ring's memory
            // (mapped into this process, 64 bytes per submission entry) small. A buffer is
            // held only from a receive's completion until that batch is parsed, so the
            // ring needs about one batch's worth, not one per connection; when it runs dry
            // the receive re-arms (counted as recv_buffer_exhausted). Capped so that idle
            // connections cost little memory.
            if hold {
                (RingConfig::for_held_connections(n), HOLD_RECV_BUFFERS)
            } else {
                (
                    RingConfig::for_connections(n),
                    n.clamp(64, MAX_RECV_BUFFERS).next_power_of_two() as u16,
                )
            }
        })?;
        let ring_slots = io.slots() as usize;
        let cq_entries = if hold {
            RingConfig::for_held_connections(ring_slots)
        } else {
            RingConfig::for_connections(ring_slots)
        }
        .cq_entries;
        let mut requests = Vec::with_capacity(config.targets.len());
        let mut request_len = Vec::with_capacity(config.targets.len());
        for t in &config.targets {
            let one = http1::encode_request(
                &config.request.method,
                &t.path,
                &t.host_header,
                &config.request.headers,
                &config.request.body,
            )
            .map_err(|e| EngineError::Config(e.to_string()))?;
            request_len.push(one.len() as u32);
            requests.push(one.repeat(config.pipeline));
        }
        let targets = config
            .targets
            .iter()
            .map(|t| SockAddr::from(t.addr))
            .collect();
        let sources = config
            .sources
            .iter()
            .map(|&ip| SockAddr::from(SocketAddr::new(ip, 0)))
            .collect();
        let conns = (0..conns_n).map(|_| Conn::new()).collect();
        let starts = Starts::new(config.pipeline, conns_n);
        let timeouts = if hold {
            // A held connection has no request in flight most of the time.
            VecDeque::new()
        } else {
            // The request models have requests in flight on every connection from the start.
            VecDeque::with_capacity(conns_n * config.pipeline)
        };
        let timeout_ns = config.timeout.as_nanos() as u64;
        let config_method = config.request.method.clone();
        let schedule = match config.model {
            LoadModel::Open { rate } => Some(Schedule::new(
                rate,
                config.threads,
                index,
                plan.start_ns,
                plan.end_ns,
                plan.request_limit,
            )),
            LoadModel::Closed | LoadModel::Hold { .. } => None,
        };
        let churn = config.churn.map(|rate| {
            Schedule::new(
                rate,
                config.threads,
                index,
                plan.start_ns,
                plan.end_ns,
                u64::MAX,
            )
        });
        let keepalive_ns = match config.model {
            LoadModel::Hold {
                keepalive: Some(every),
            } => Some(every.as_nanos() as u64),
            _ => None,
        };
        Ok(Worker {
            index,
            connect_deadlines: VecDeque::new(),
            config,
            clock,
            stop,
            io,
            conns,
            requests,
            request_len,
            targets,
            sources,
            starts,
            next_new: 0,
            to_open: BinaryHeap::new(),
            timeouts,
            free: if schedule.is_some() {
                Vec::with_capacity(conns_n)
            } else {
                Vec::new()
            },
            schedule,
            plan,
            cqes: Vec::with_capacity(cq_entries as usize),
            metrics: WorkerMetrics::new(),
            sent: 0,
            connects_started: 0,
            connecting: 0,
            max_connecting,
            any_connected: false,
            first_connects_failed: 0,
            draining: false,
            timeout_ns,
            head: http1::is_head(&config_method),
            snapshots,
            interval_index: 0,
            next_interval_ns: plan.start_ns + plan.interval_ns,
            open_now: 0,
            keepalive_ns,
            keepalives: BinaryHeap::new(),
            churn,
            churn_taken: 0,
            churn_cursor: 0,
            churn_reopening: 0,
        })
    }

    /// How many rings this worker drives.
    pub fn ring_count(&self) -> usize {
        self.io.rings.len()
    }

    /// Runs the load until the plan's end, the request budget or the stop flag, then drains
    /// and closes everything. Returns the worker's metrics.
    pub fn run(mut self) -> Result<WorkerMetrics, EngineError> {
        let (user0, system0) = super::rusage(libc::RUSAGE_THREAD);
        let result = self.event_loop();
        let ended = if self.metrics.ended_ns > 0 {
            self.metrics.ended_ns
        } else {
            self.clock.now_ns()
        };
        self.publish_interval(ended, true);
        // Measured over the load phase, the same window as the run's duration.
        let (user1, system1) = super::rusage(libc::RUSAGE_THREAD);
        self.shutdown();
        self.metrics.extra_rings = self.io.rings.len() as u64 - 1;
        self.metrics.cpu_user_ns = user1.saturating_sub(user0).as_nanos() as u64;
        self.metrics.cpu_system_ns = system1.saturating_sub(system0).as_nanos() as u64;
        result.map(|()| std::mem::take(&mut self.metrics))
    }

    fn event_loop(&mut self) -> Result<(), EngineError> {
        let mut drain_until = u64::MAX;
        loop {
            let now = self.clock.now_ns();
            while now >= self.next_interval_ns {
                self.publish_interval(self.next_interval_ns, false);
            }
            if !self.draining {
                let stopped = self.stop.load(Ordering::Relaxed);
                if stopped || now >= self.plan.end_ns || self.budget_spent() {
                    self.begin_drain(now);
                    drain_until = if stopped {
                        now
                    } else {
                        now + (self.timeout_ns).min(DRAIN_GRACE.as_nanos() as u64)
                    };
                }
            } else if self.stop.load(Ordering::Relaxed) {
                drain_until = now;
            }
            if self.draining
                && ((self.in_flight() == 0 && self.churn_reopening == 0) || now >= drain_until)
            {
                self.metrics.ended_ns = now;
                return Ok(());
            }
            if !self.draining {
                self.open_due(now)?;
                if self.schedule.is_some() {
                    self.send_due(now)?;
                }
                self.send_keepalives(now)?;
                self.churn_due(now)?;
            } else if self.churn_reopening > 0 {
                // Connections churn closed just before the end are reopened in the drain.
                self.open_due(now)?;
            }
            self.expire_timeouts(now)?;
            self.expire_connects(now)?;
            if self.first_connects_failed > 0
                && self.first_connects_failed == self.conns.len()
                && !self.any_connected
            {
                return Err(self.nothing_listening());
            }

            let wake_at = self.next_wake(now).min(drain_until);
            let wait = Duration::from_nanos(wake_at.saturating_sub(now)).min(MAX_WAIT);
            self.io.wait(wait).map_err(EngineError::Io)?;
            let woke = self.clock.now_ns();
            if wake_at != u64::MAX && woke >= wake_at {
                self.metrics
                    .loop_lag
                    .saturating_record(ns_to_us(woke - wake_at));
            }
            self.handle_completions(woke)?;
        }
    }

    /// Ends the current interval and sends its snapshot to the observer. Once per interval,
    /// never per request: the channel send and the histogram copy are off the hot path.
    fn publish_interval(&mut self, end_ns: u64, last: bool) {
        let latency = self.metrics.take_interval();
        if let Some(tx) = &self.snapshots {
            // The observer may have gone (it only reports); the run goes on regardless.
            let _ = tx.send(IntervalSnapshot {
                worker: self.index,
                index: self.interval_index,
                end_ns,
                counters: Counters::of(&self.metrics),
                open_connections: self.open_now,
                latency,
                steps: Vec::new(),
                ws: None,
                last,
            });
        }
        self.interval_index += 1;
        self.next_interval_ns += self.plan.interval_ns;
    }

    fn budget_spent(&self) -> bool {
        if matches!(self.config.model, LoadModel::Hold { .. }) {
            // Holding ends with the duration (or a signal), not with a request count.
            return false;
        }
        match self.schedule {
            Some(s) => self.sent >= s.total() && self.in_flight() == 0,
            None => self.sent >= self.plan.request_limit && self.in_flight() == 0,
        }
    }

    /// Requests sent and not yet ended by a response or an error (no scan of the slab).
    fn in_flight(&self) -> u64 {
        let m = &self.metrics;
        m.requests - m.responses - m.request_errors()
    }

    /// The load phase ends: count what never went out, stop sending.
    fn begin_drain(&mut self, now: u64) {
        self.draining = true;
        if let Some(s) = self.schedule {
            self.metrics.dropped = s.due(now).saturating_sub(self.sent);
        }
    }

    /// The soonest time the loop has something to do without a completion.
    fn next_wake(&self, now: u64) -> u64 {
        let mut at = if self.draining {
            u64::MAX
        } else {
            self.plan.end_ns
        };
        if (!self.draining || self.churn_reopening > 0)
            && let Some(ready) = self.next_open_at()
        {
            at = at.min(ready.max(self.next_connect_token(now)));
        }
        if !self.draining {
            if let Some(churn) = self.churn {
                at = at.min(churn.intended(self.churn_taken));
            }
            if let Some(s) = self.schedule
                && !self.free.is_empty()
                && self.sent < s.total()
            {
                at = at.min(s.intended(self.sent));
            }
        }
        if let Some(&(deadline, ..)) = self.timeouts.front() {
            at = at.min(deadline);
        }
        if let Some(&(deadline, ..)) = self.connect_deadlines.front() {
            at = at.min(deadline);
        }
        if let Some(&Reverse((due, ..))) = self.keepalives.peek()
            && !self.draining
        {
            at = at.min(due);
        }
        at
    }

    /// Hold model: sends the keep-alive requests that are due, one per idle connection, and
    /// schedules each connection's next one.
    fn send_keepalives(&mut self, now: u64) -> Result<(), EngineError> {
        let Some(every) = self.keepalive_ns else {
            return Ok(());
        };
        while let Some(&Reverse((due, slot, generation))) = self.keepalives.peek() {
            if due > now {
                break;
            }
            self.keepalives.pop();
            let conn = &self.conns[slot as usize];
            if conn.generation != generation || conn.state != State::Ready {
                // That connection is gone; its successor schedules its own.
                continue;
            }
            if !conn.sending && conn.in_flight() == 0 {
                self.send_requests(slot, 1, now, now)?;
            }
            self.keepalives
                .push(Reverse((now + every, slot, generation)));
        }
        Ok(())
    }

    /// Churn: closes the connections whose turn has come (round-robin over the open ones); each
    /// is reopened as soon as its close completes. A connection with a request in flight is
    /// marked and closes after its response, so churn itself causes no errors. When no
    /// connection is open, the closes due are skipped rather than saved up for a burst.
    fn churn_due(&mut self, now: u64) -> Result<(), EngineError> {
        let Some(schedule) = self.churn else {
            return Ok(());
        };
        let due = schedule.due(now);
        let slots = self.conns.len() as u32;
        let mut scanned = 0;
        while self.churn_taken < due {
            if scanned == slots {
                self.churn_taken = due;
                break;
            }
            let slot = self.churn_cursor;
            self.churn_cursor = if slot + 1 == slots { 0 } else { slot + 1 };
            scanned += 1;
            let conn = &mut self.conns[slot as usize];
            if conn.state != State::Ready || conn.churn_pending {
                continue;
            }
            self.churn_taken += 1;
            if conn.in_flight() == 0 && !conn.sending {
                self.churn_close(slot)?;
            } else {
                conn.churn_pending = true;
            }
        }
        Ok(())
    }

    /// Closes a ready connection for churn; it is reopened once the close completes.
    fn churn_close(&mut self, slot: u32) -> Result<(), EngineError> {
        self.metrics.churned += 1;
        self.churn_reopening += 1;
        self.conns[slot as usize].reopening = true;
        self.close(slot)
    }

    /// When the connect-rate limit next allows a connect.
    fn next_connect_token(&self, now: u64) -> u64 {
        match self.connect_rate_per_worker() {
            None => now,
            Some(rate) => {
                let at = self.plan.start_ns as f64 + self.connects_started as f64 * 1e9 / rate;
                at as u64
            }
        }
    }

    fn connect_rate_per_worker(&self) -> Option<f64> {
        self.config
            .connect_rate
            .map(|r| r / self.config.threads as f64)
    }

    /// Starts connects whose time has come, within the connect-rate limit.
    ///
    /// At most [`CONNECTS_PER_LOOP`] per loop turn: on loopback a connect completes inside the
    /// submit call, so starting 20,000 at once kept a worker from reaping completions (and
    /// publishing progress) for seconds and inflated every connect latency by the whole batch.
    fn open_due(&mut self, now: u64) -> Result<(), EngineError> {
        let mut started = 0;
        while let Some(ready) = self.next_open_at() {
            if ready > now
                || self.next_connect_token(now) > now
                || started == CONNECTS_PER_LOOP
                || self.connecting >= self.max_connecting
            {
                break;
            }
            let slot = if self.first_connects_left() {
                self.next_new += 1;
                self.next_new - 1
            } else {
                let Some(Reverse((_, slot))) = self.to_open.pop() else {
                    break;
                };
                slot
            };
            self.start_connect(slot, now)?;
            started += 1;
        }
        Ok(())
    }

    /// When the next slot waiting to connect may: slots never opened first (time 0), then
    /// reconnects by their time.
    fn next_open_at(&self) -> Option<u64> {
        if self.first_connects_left() {
            return Some(0);
        }
        self.to_open.peek().map(|Reverse((ready, _))| *ready)
    }

    /// Slots that never connected are still waiting, and the load phase goes on (the drain
    /// only reopens connections churn closed).
    fn first_connects_left(&self) -> bool {
        !self.draining && (self.next_new as usize) < self.conns.len()
    }

    /// Index of the target (and of its pre-encoded request) slot `slot` connects to: the
    /// worker's connections continue the run's global numbering, spread round-robin.
    #[inline]
    fn target_of(&self, slot: u32) -> usize {
        match self.targets.len() {
            1 => 0,
            n => (self.plan.first_connection + slot as usize) % n,
        }
    }

    /// Index of the source address slot `slot` binds, if sources were given (spread like
    /// targets).
    fn source_of(&self, slot: u32) -> Option<usize> {
        match self.sources.len() {
            0 => None,
            n => Some((self.plan.first_connection + slot as usize) % n),
        }
    }

    fn start_connect(&mut self, slot: u32, now: u64) -> Result<(), EngineError> {
        self.connects_started += 1;
        self.connecting += 1;
        let generation = self.conns[slot as usize].begin(now);
        let target = &self.targets[self.target_of(slot)];
        let source = self.source_of(slot).map(|i| &self.sources[i]);
        // SAFETY: the socket addresses live in the worker (or are leaked) until every
        // completion has arrived; see `shutdown`.
        let ops = unsafe { self.io.push_connect(slot, generation, target, source) }?;
        self.conns[slot as usize].ops += ops;
        // The connect's deadline is kept here rather than as a linked timeout: one fewer
        // operation and no kernel timer armed and cancelled per connection.
        self.connect_deadlines
            .push_back((now + self.timeout_ns, slot, generation));
        Ok(())
    }

    /// Open model: sends every request whose intended time has come, while connections can
    /// take them.
    fn send_due(&mut self, now: u64) -> Result<(), EngineError> {
        let Some(schedule) = self.schedule else {
            return Ok(());
        };
        let due = schedule.due(now);
        let late_after = self.config.late_after.as_nanos() as u64;
        while self.sent < due {
            let Some(slot) = self.free.pop() else { break };
            let conn = &mut self.conns[slot as usize];
            conn.in_free_list = false;
            if conn.state != State::Ready
                || conn.sending
                || conn.churn_pending
                || conn.in_flight() as usize >= self.config.pipeline
            {
                continue;
            }
            let intended = schedule.intended(self.sent);
            if now.saturating_sub(intended) > late_after {
                self.metrics.late += 1;
                if conn.idle_since() <= intended {
                    self.metrics.late_by_generator += 1;
                }
            }
            self.send_requests(slot, 1, intended, now)?;
        }
        Ok(())
    }

    /// Sends `count` requests (1, or the pipeline depth) on a ready connection.
    fn send_requests(
        &mut self,
        slot: u32,
        count: u32,
        start_ns: u64,
        now: u64,
    ) -> Result<(), EngineError> {
        let target = self.target_of(slot);
        let conn = &mut self.conns[slot as usize];
        let deeper = self.starts.of(slot);
        for _ in 0..count {
            conn.push_start(start_ns, deeper);
            self.timeouts.push_back((
                now + self.timeout_ns,
                slot,
                conn.generation,
                conn.seq_sent.wrapping_sub(1),
            ));
        }
        self.sent += u64::from(count);
        self.metrics.requests += u64::from(count);
        conn.send_len = self.request_len[target] * count;
        conn.send_done = 0;
        self.push_send(slot)
    }

    /// Submits a send of the rest of the connection's current request bytes.
    fn push_send(&mut self, slot: u32) -> Result<(), EngineError> {
        let (ring, fd) = self.ring_of(slot);
        let buf = &self.requests[self.target_of(slot)];
        let conn = &mut self.conns[slot as usize];
        let rest = &buf[conn.send_done as usize..conn.send_len as usize];
        let entry = opcode::Send::new(types::Fixed(fd), rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(Token::new(slot, conn.generation, op::SEND).encode());
        conn.sending = true;
        conn.ops += 1;
        // SAFETY: `requests` is never modified after setup and outlives every operation.
        unsafe { self.io.rings[ring].push(&entry) }.map_err(EngineError::Io)
    }

    fn arm_recv(&mut self, slot: u32) -> Result<(), EngineError> {
        let (ring, fd) = self.ring_of(slot);
        let conn = &mut self.conns[slot as usize];
        let entry = opcode::RecvMulti::new(types::Fixed(fd), BGID)
            .build()
            .user_data(Token::new(slot, conn.generation, op::RECV).encode());
        conn.recv_armed = true;
        conn.ops += 1;
        // SAFETY: the receive writes only into the ring's registered buffer ring, which
        // outlives it.
        unsafe { self.io.rings[ring].push(&entry) }.map_err(EngineError::Io)
    }

    /// Starts closing a connection: cancel its long-lived operation (the multishot receive, or
    /// the connect), then close the descriptor.
    ///
    /// The cancel names the operation by its `user_data`, which the kernel finds with a hash
    /// lookup; cancelling "everything on this descriptor" scans every pending request instead,
    /// which made closing 10,000 connections quadratic (37% of a run's CPU). A send in flight
    /// finishes by itself.
    fn close(&mut self, slot: u32) -> Result<(), EngineError> {
        let (ring, fd) = self.ring_of(slot);
        let conn = &mut self.conns[slot as usize];
        let target_op = match conn.state {
            State::Closing | State::Free => return Ok(()),
            State::Connecting => Some(op::CONNECT),
            State::Ready => conn.recv_armed.then_some(op::RECV),
        };
        match conn.state {
            State::Ready => self.open_now -= 1,
            State::Connecting => self.connecting -= 1,
            _ => {}
        }
        conn.state = State::Closing;
        let tok = |op| Token::new(slot, conn.generation, op).encode();
        let cancel = target_op.map(|t| (tok(t), tok(op::CANCEL)));
        conn.ops += self.io.rings[ring]
            .close_slot(fd, cancel, tok(op::CLOSE))
            .map_err(EngineError::Io)?;
        Ok(())
    }

    /// Ends every request in flight on a connection with `kind`, then closes it.
    fn fail_connection(&mut self, slot: u32, kind: ErrorKind) -> Result<(), EngineError> {
        let conn = &mut self.conns[slot as usize];
        let n = conn.drop_in_flight();
        self.metrics.errors[kind as usize] += u64::from(n);
        self.metrics.closed_on_error += 1;
        self.close(slot)
    }

    /// Fails connects that took longer than `--timeout` (their connect is cancelled by the
    /// close), and drops finished ones from the front of the queue.
    fn expire_connects(&mut self, now: u64) -> Result<(), EngineError> {
        while let Some(&(deadline, slot, generation)) = self.connect_deadlines.front() {
            let conn = &self.conns[slot as usize];
            let pending = conn.generation == generation && conn.state == State::Connecting;
            if pending && deadline > now {
                break;
            }
            self.connect_deadlines.pop_front();
            if pending {
                self.connect_failed(slot, libc::ETIMEDOUT, now)?;
            }
        }
        Ok(())
    }

    /// Expires requests whose deadline passed, and drops answered ones from the front of the
    /// queue so it stays about as long as the number of requests in flight.
    fn expire_timeouts(&mut self, now: u64) -> Result<(), EngineError> {
        while let Some(&(deadline, slot, generation, seq)) = self.timeouts.front() {
            let conn = &self.conns[slot as usize];
            // Still waiting for this request (its sequence is not answered yet)?
            let pending = conn.generation == generation
                && conn.state == State::Ready
                && seq.wrapping_sub(conn.seq_done) < conn.in_flight();
            if pending && deadline > now {
                break;
            }
            self.timeouts.pop_front();
            if pending {
                self.fail_connection(slot, ErrorKind::Timeout)?;
            }
        }
        Ok(())
    }

    fn handle_completions(&mut self, now: u64) -> Result<(), EngineError> {
        let mut overflows = 0;
        for r in 0..self.io.rings.len() {
            overflows += u64::from(self.io.rings[r].reap(&mut self.cqes));
            for i in 0..self.cqes.len() {
                let (user_data, res, flags) = self.cqes[i];
                let tok = Token::decode(user_data);
                if tok.op == op::RECV {
                    self.on_recv(r, tok, res, flags, now)?;
                } else {
                    self.on_completion(tok, res, flags, now)?;
                }
            }
            self.io.bufs[r].commit();
        }
        self.metrics.cq_overflows = overflows;
        Ok(())
    }

    /// The ring and direct-descriptor index of slot `slot`.
    #[inline]
    fn ring_of(&self, slot: u32) -> (usize, u32) {
        self.io.ring_of(slot)
    }

    fn on_recv(
        &mut self,
        ring: usize,
        tok: Token,
        res: i32,
        flags: u32,
        now: u64,
    ) -> Result<(), EngineError> {
        let slot = tok.slot;
        let finished = !cqueue::more(flags);
        let current = self.conns[slot as usize].generation == tok.generation;
        let mut after = After::Nothing;
        if let Some(bid) = cqueue::buffer_select(flags) {
            if res > 0 && current && self.conns[slot as usize].state == State::Ready {
                self.metrics.bytes_received += res as u64;
                let data = self.io.bufs[ring].get(bid, res as usize);
                after = on_data(
                    &mut self.conns[slot as usize],
                    self.starts.of(slot),
                    data,
                    self.head,
                    now,
                    &mut self.metrics,
                );
            }
            // The buffer is ours from this completion on; give it straight back.
            self.io.bufs[ring].recycle(bid);
        }
        let conn = &mut self.conns[slot as usize];
        if finished {
            conn.ops -= 1;
            conn.recv_armed = false;
        }
        if !current {
            return self.maybe_release(slot, now);
        }
        match after {
            After::Close { by_peer } => {
                if by_peer {
                    self.metrics.closed_by_peer += 1;
                }
                return self.close_or_release(slot, now);
            }
            After::Nothing => {}
        }
        let conn = &mut self.conns[slot as usize];
        if conn.state != State::Ready {
            return self.maybe_release(slot, now);
        }
        if res == 0 {
            // EOF: the peer closed. A read-until-close body ends here.
            self.metrics.closed_by_peer += 1;
            match conn.parser.eof() {
                Ok(Some(resp)) => {
                    let start = conn.pop_start(self.starts.of(slot));
                    self.metrics
                        .record_response(resp.status, ns_to_us(now.saturating_sub(start)));
                }
                Ok(None) => {}
                Err(_) => {}
            }
            let outstanding = conn.drop_in_flight();
            self.metrics.errors[ErrorKind::ClosedMidResponse as usize] += u64::from(outstanding);
            return self.close(slot);
        }
        if res < 0 {
            let errno = -res;
            if errno == libc::ENOBUFS {
                self.metrics.recv_buffer_exhausted += 1;
                return self.arm_recv(slot);
            }
            let kind = if errno == libc::ECONNRESET {
                ErrorKind::Reset
            } else {
                ErrorKind::RecvFailed
            };
            if conn.in_flight() == 0 {
                self.metrics.closed_by_peer += 1;
                return self.close(slot);
            }
            return self.fail_connection(slot, kind);
        }
        if finished {
            self.arm_recv(slot)?;
        }
        self.after_progress(slot, now)
    }

    /// After responses arrived (or a send finished): send the next batch or free the slot.
    fn after_progress(&mut self, slot: u32, now: u64) -> Result<(), EngineError> {
        let conn = &mut self.conns[slot as usize];
        if conn.state != State::Ready || conn.sending || self.draining {
            return Ok(());
        }
        if conn.churn_pending {
            if conn.in_flight() == 0 {
                return self.churn_close(slot);
            }
            return Ok(());
        }
        if matches!(self.config.model, LoadModel::Hold { .. }) {
            // Held connections send only their keep-alive requests.
            return Ok(());
        }
        match self.schedule {
            None => {
                if conn.in_flight() == 0 && self.sent < self.plan.request_limit {
                    let count = (self.config.pipeline as u64)
                        .min(self.plan.request_limit - self.sent)
                        as u32;
                    return self.send_requests(slot, count, now, now);
                }
            }
            Some(_) => {
                if (conn.in_flight() as usize) < self.config.pipeline && !conn.in_free_list {
                    conn.in_free_list = true;
                    conn.set_idle_since(now, self.config.pipeline);
                    self.free.push(slot);
                }
            }
        }
        Ok(())
    }

    fn on_completion(
        &mut self,
        tok: Token,
        res: i32,
        flags: u32,
        now: u64,
    ) -> Result<(), EngineError> {
        if tok.op == op::WAKE {
            return self.io.on_wake(res, flags);
        }
        let slot = tok.slot;
        let conn = &mut self.conns[slot as usize];
        if conn.generation != tok.generation {
            // Cannot happen while slots are reused only after all ops complete; ignore.
            return Ok(());
        }
        conn.ops -= 1;
        match tok.op {
            op::SOCKET | op::SOCKOPT | op::BIND => {
                if res < 0 && res != -libc::ECANCELED && conn.state == State::Connecting {
                    return self.connect_failed(slot, -res, now);
                }
                self.maybe_release(slot, now)
            }
            op::CONNECT => {
                if conn.state != State::Connecting {
                    return self.maybe_release(slot, now);
                }
                if res < 0 {
                    return self.connect_failed(slot, -res, now);
                }
                self.metrics
                    .connect_latency
                    .saturating_record(ns_to_us(now.saturating_sub(conn.connect_started())));
                conn.state = State::Ready;
                self.connecting -= 1;
                conn.ever_connected = true;
                conn.connect_failures = 0;
                if conn.reopening {
                    conn.reopening = false;
                    self.churn_reopening -= 1;
                }
                self.any_connected = true;
                self.open_now += 1;
                self.metrics.conns_opened += 1;
                if self.open_now == self.plan.connections as u64
                    && self.metrics.workers_all_open == 0
                {
                    self.metrics.workers_all_open = 1;
                    self.metrics.all_open_after_ns = now.saturating_sub(self.plan.start_ns);
                }
                if let Some(every) = self.keepalive_ns {
                    // Spread the first keep-alives over one period by slot, so connections
                    // opened together do not all send at the same instant.
                    let offset = every * u64::from(slot) / self.conns.len() as u64;
                    self.keepalives
                        .push(Reverse((now + offset.max(1), slot, tok.generation)));
                }
                self.arm_recv(slot)?;
                self.after_progress(slot, now)
            }
            op::CANCEL => self.maybe_release(slot, now),
            op::CLOSE => self.maybe_release(slot, now),
            op::SEND => {
                conn.sending = false;
                if conn.state != State::Ready {
                    return self.maybe_release(slot, now);
                }
                if res < 0 {
                    let kind = if res == -libc::ECONNRESET || res == -libc::EPIPE {
                        ErrorKind::Reset
                    } else {
                        ErrorKind::SendFailed
                    };
                    return self.fail_connection(slot, kind);
                }
                self.metrics.bytes_sent += res as u64;
                conn.send_done += res as u32;
                if conn.send_done < conn.send_len {
                    return self.push_send(slot);
                }
                self.after_progress(slot, now)
            }
            _ => unreachable!("unknown op {} in a completion token", tok.op),
        }
    }

    fn connect_failed(&mut self, slot: u32, errno: i32, now: u64) -> Result<(), EngineError> {
        let conn = &mut self.conns[slot as usize];
        self.metrics.conns_failed += 1;
        let kind = if errno == libc::ECONNREFUSED {
            ErrorKind::ConnectRefused
        } else {
            ErrorKind::ConnectFailed
        };
        self.metrics.record_error(kind);
        if !conn.ever_connected && conn.connect_failures == 0 && !self.any_connected {
            self.first_connects_failed += 1;
        }
        conn.connect_failures = conn.connect_failures.saturating_add(1);
        self.close(slot)?;
        self.maybe_release(slot, now)
    }

    /// Closes a ready connection, or releases it if already closing.
    fn close_or_release(&mut self, slot: u32, now: u64) -> Result<(), EngineError> {
        self.close(slot)?;
        self.maybe_release(slot, now)
    }

    /// A closing slot whose operations all completed becomes free and, unless the run is
    /// ending, is queued to reconnect.
    fn maybe_release(&mut self, slot: u32, now: u64) -> Result<(), EngineError> {
        let conn = &mut self.conns[slot as usize];
        if conn.state != State::Closing || conn.ops != 0 {
            return Ok(());
        }
        conn.state = State::Free;
        if self.draining && !conn.reopening {
            return Ok(());
        }
        let ready = if conn.connect_failures > 0 {
            let backoff =
                CONNECT_BACKOFF.as_nanos() as u64 * u64::from(conn.connect_failures.min(10));
            now + backoff
        } else {
            self.metrics.reconnects += 1;
            now
        };
        self.to_open.push(Reverse((ready, slot)));
        Ok(())
    }

    fn nothing_listening(&self) -> EngineError {
        let refused = self.metrics.error_count(ErrorKind::ConnectRefused) > 0;
        let addrs: Vec<String> = self
            .config
            .targets
            .iter()
            .map(|t| t.addr.to_string())
            .collect();
        EngineError::NoConnection {
            targets: addrs.join(", "),
            refused,
        }
    }

    /// Ends the run: requests still in flight are counted, every connection is closed and the
    /// loop waits (bounded) until the kernel has finished with every operation, so no buffer
    /// is freed while the kernel may still use it.
    fn shutdown(&mut self) {
        let now = self.clock.now_ns();
        if !self.draining {
            self.begin_drain(now);
        }
        for slot in 0..self.conns.len() as u32 {
            let conn = &mut self.conns[slot as usize];
            if conn.state == State::Ready {
                self.metrics.open_at_end += 1;
                self.metrics.in_flight_at_end += u64::from(conn.drop_in_flight());
            }
            if matches!(conn.state, State::Ready | State::Connecting) && self.close(slot).is_err() {
                break;
            }
        }
        let wait = SHUTDOWN_WAIT + SHUTDOWN_WAIT_PER_10K * (self.conns.len() / 10_000) as u32;
        let deadline = self.clock.now_ns() + wait.as_nanos() as u64;
        while self.conns.iter().any(|c| c.ops > 0) && self.clock.now_ns() < deadline {
            if self.io.wait(Duration::from_millis(10)).is_err() {
                break;
            }
            let now = self.clock.now_ns();
            if self.handle_completions(now).is_err() {
                break;
            }
        }
        let pending = self.conns.iter().filter(|c| c.ops > 0).count() as u64;
        if pending > 0 {
            // The kernel still holds operations that point into our buffers: leak them rather
            // than free memory it may write to. Closing the ring cancels those operations.
            self.metrics.closing_at_exit = pending;
            std::mem::forget(std::mem::take(&mut self.requests));
            std::mem::forget(std::mem::take(&mut self.targets));
        }
        self.io.unregister_bufs();
    }
}

/// Feeds received bytes to a connection's parser and records every complete response.
fn on_data(
    conn: &mut Conn,
    deeper: &mut [u64],
    mut data: &[u8],
    head_request: bool,
    now: u64,
    metrics: &mut WorkerMetrics,
) -> After {
    while !data.is_empty() {
        if conn.in_flight() == 0 {
            // Bytes nobody asked for: the server is broken.
            metrics.record_error(ErrorKind::UnexpectedData);
            metrics.closed_on_error += 1;
            return After::Close { by_peer: false };
        }
        match conn.parser.feed(data, head_request) {
            Ok(progress) => {
                data = &data[progress.consumed..];
                if let Some(resp) = progress.response {
                    let start = conn.pop_start(deeper);
                    metrics.record_response(resp.status, ns_to_us(now.saturating_sub(start)));
                    if resp.close {
                        let outstanding = conn.drop_in_flight();
                        metrics.errors[ErrorKind::ClosedMidResponse as usize] +=
                            u64::from(outstanding);
                        return After::Close { by_peer: true };
                    }
                }
            }
            Err(e) => {
                let kind = response_error_kind(&e);
                let outstanding = conn.drop_in_flight();
                metrics.errors[kind as usize] += u64::from(outstanding);
                metrics.closed_on_error += 1;
                return After::Close { by_peer: false };
            }
        }
    }
    After::Nothing
}

fn response_error_kind(e: &ResponseError) -> ErrorKind {
    match e.kind() {
        "headers_too_large" => ErrorKind::HeadersTooLarge,
        "invalid_chunk" => ErrorKind::InvalidChunk,
        "invalid_content_length" => ErrorKind::InvalidContentLength,
        "body_too_large" => ErrorKind::BodyTooLarge,
        "closed_mid_response" => ErrorKind::ClosedMidResponse,
        _ => ErrorKind::MalformedResponse,
    }
}
