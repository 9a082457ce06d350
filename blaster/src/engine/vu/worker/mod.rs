//! One virtual-user worker: a pinned thread with its own ring, VUs, buffers and metrics.
//!
//! Each VU is a program counter into its flow's [`Op`] list plus one connection slot (its
//! index is the direct-descriptor index). The loop: read the clock, let the executors start
//! or stop iterations, fire due timers (think time, deadlines, paced sends), submit and wait,
//! then handle completions, which resume the VUs waiting on them.
//!
//! Memory the kernel reads or writes (a VU's send buffer, the socket addresses) stays put
//! until the completion arrives: a send buffer is never touched while its send is in flight
//! (new bytes go to the VU's queue, swapped in when the send completes), addresses are boxed
//! once and never freed during the run, and a slot reconnects only when every operation of
//! its previous connection has completed. See [`VuWorker::shutdown`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use io_uring::{cqueue, opcode, types};
use socket2::SockAddr;

use super::plan::{Builtin, MAX_LOOP_DEPTH, Op, Plan};
use super::rate::{Arrivals, RateCurve, vus_at};
use crate::config::share;
use crate::engine::EngineError;
use crate::engine::clock::{Clock, ns_to_us};
use crate::engine::ring::{GENERATION_MASK, RingConfig, Token};
use crate::engine::ringset::RingSet;
use crate::metrics::flow::{FlowMetrics, ScenarioStats, StepStats};
use crate::metrics::interval::{Counters, IntervalSnapshot, StepTracker};
use crate::metrics::{ErrorKind, WorkerMetrics};
use crate::proto::http1::{Limits, ResponseParser};
use crate::proto::ws::{
    self, ChunkEvent, Data, Event, FrameDecoder, HandshakeParser, PREFIX_LEN, UpgradeRequest,
};
use crate::scenario::model::{Executor, Repeat, StepKind};
use crate::scenario::runtime::{self, Shared, VuState};

mod conn;
mod exec;
mod http;
mod websocket;

pub(crate) use conn::split_url;

use crate::engine::ringset::op;

const BGID: u16 = 0;
const RECV_BUF_SIZE: u32 = 4096;
const MAX_RECV_BUFFERS: usize = 2048;
const MAX_WAIT: Duration = Duration::from_millis(50);
/// How often ramping executors re-read their VU target.
const RAMP_TICK_NS: u64 = 20_000_000;
/// Most ops a VU runs without blocking before it yields to the loop (a loop of skipped
/// steps must not starve the other VUs).
const OPS_PER_TURN: u32 = 10_000;
/// Most bytes of one received WebSocket message kept for ws_expect matching and captures.
const MAX_KEPT_MESSAGE: usize = 16 << 20;
/// Most bytes of one HTTP response kept for checks and captures.
const MAX_KEPT_RESPONSE: usize = 64 << 20;
/// How long ws_close waits for the server's close frame.
const CLOSE_WAIT_NS: u64 = 2_000_000_000;
/// Most paced sends one timer turn may catch up on for one VU.
const CATCH_UP: u32 = 64;
/// Connect attempts started per loop turn at most (see the HTTP worker's CONNECTS_PER_LOOP).
const CONNECTS_PER_LOOP: usize = 256;
/// Marks the 32-byte prefix of the ws:// modes' messages.
const MAGIC: &[u8; 4] = b"BLST";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Free,
    Connecting,
    Ready,
    Closing,
}

/// What a connection speaks.
#[derive(Debug)]
enum Proto {
    None,
    Http(ResponseParser),
    Handshake(Box<HandshakeParser>),
    Ws(Box<FrameDecoder>),
}

/// What a VU is waiting for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wait {
    /// Not running an iteration (not wanted, or done).
    Off,
    /// In an arrival-rate executor's pool, waiting to be given an iteration.
    Idle,
    /// Waiting out a reconnect backoff before its next iteration (timer).
    Backoff,
    /// Running: the program goes on at the next turn (timer at now).
    Yield,
    /// Think time (timer).
    Sleep,
    /// Before sending an HTTP request again after a retry status (timer).
    Retry,
    /// Needs a connection (queued bytes go out once connected).
    Connect,
    /// An HTTP response (timer: deadline).
    Response,
    /// The 101 answer (timer: deadline).
    Handshake,
    /// ws_expect (timer: deadline).
    Message,
    /// ws_subscribe with a duration (timer: end).
    Listen,
    /// ws_close sent, waiting for the server's close (timer).
    CloseAck,
    /// A ws:// mode (timer: next paced send or ping, if any).
    Builtin(Builtin),
}

/// One virtual user.
struct Vu {
    scenario: u16,
    /// Index among its scenario's VUs (0-based, global across workers).
    index: u64,
    /// VU number, global and unique (from 1).
    number: u64,
    generation: u32,
    link: Link,
    /// Operations submitted and not completed (a multishot receive counts once).
    ops: u16,
    recv_armed: bool,
    sending: bool,
    send_done: u32,
    /// Bytes being sent: the kernel reads them until the send's completion.
    send_buf: Vec<u8>,
    /// Bytes to send next (appended while a send is in flight).
    queue: Vec<u8>,
    /// Peer address id of the connection (`u32::MAX`: none).
    addr: u32,
    proto: Proto,
    wait: Wait,
    wake_gen: u32,
    iterating: bool,
    flow: u16,
    pc: u32,
    loops: [u64; MAX_LOOP_DEPTH],
    iter_start: u64,
    /// Intended start of the iteration (arrival-rate), consumed by its first request.
    intended: Option<u64>,
    iterations_done: u64,
    /// Consecutive failed iterations (reset by a successful one): the backoff's exponent.
    failures: u32,
    /// A step of this iteration failed without an answer (refused, reset, timed out...).
    iter_failed: bool,
    /// The HTTP step being retried: retries so far, whether the last wait was the server's
    /// Retry-After, and whether an answer after such a wait was again a retry status.
    retries: u32,
    waited_retry_after: bool,
    retry_after_broken: bool,
    /// The step being waited on.
    step: u32,
    req_start: u64,
    /// Keep the response bytes (checks or captures need them).
    collect: bool,
    resp: Vec<u8>,
    msg: Vec<u8>,
    msg_len: u64,
    /// The flow matches ws messages against text or captures from them: keep them whole.
    keep_messages: bool,
    connect_started: u64,
    /// The WebSocket session: its ws_connect step and when it opened (0: none).
    ws_step: u32,
    ws_open_at: u64,
    last_send: u64,
    expect_start: u64,
    /// When its session was lost (0: not lost), for reconnect-herd timing.
    dropped_at: u64,
    /// ws:// modes: messages sent, next expected sequence, next paced send.
    seq_sent: u64,
    seq_expected: u64,
    next_send: u64,
    /// Subscriber: next expected sequence per publisher VU.
    publishers: Vec<(u64, u64)>,
    /// Subprotocols offered by the current session's Upgrade request.
    offered: Vec<String>,
    /// The step received messages count for: the session's latest ws_subscribe, else its
    /// ws_connect.
    listen_step: u32,
    state: VuState,
    rng: u64,
}

impl Vu {
    fn random(&mut self) -> u64 {
        // xorshift64*: engine-level randomness (keys, masks, jitter) that needs no quality
        // beyond "spread"; a dependency would add nothing.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.random() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn mask(&mut self) -> [u8; 4] {
        (self.random() as u32).to_le_bytes()
    }

    fn is_ws(&self) -> bool {
        self.link == Link::Ready && matches!(self.proto, Proto::Ws(_))
    }
}

/// The executor of one scenario, as this worker runs it.
struct Exec {
    /// Local VU indices, by their index in the scenario.
    vus: Vec<u32>,
    start_ns: u64,
    end_ns: u64,
    hard_end_ns: u64,
    kind: ExecKind,
    next_scan_ns: u64,
    done: bool,
    /// VUs of this executor running an iteration.
    running: u64,
}

enum ExecKind {
    /// constant-vus and ramping-vus: VU `i` runs while `i` is below the target count.
    Vus {
        start_vus: u64,
        stages: Option<Vec<crate::scenario::model::Stage>>,
        count: u64,
        start_rate: Option<f64>,
    },
    PerVu {
        iterations: u64,
    },
    Shared {
        left: u64,
    },
    Arrival {
        arrivals: Arrivals,
        idle: Vec<u32>,
    },
}

pub struct WorkerSetup {
    pub index: usize,
    pub threads: usize,
    pub plan: Arc<Plan>,
    pub shared: Arc<Shared>,
    pub clock: Clock,
    pub stop: Arc<AtomicBool>,
    pub start_ns: u64,
    pub interval_ns: u64,
    pub late_after: Duration,
    /// Connects this worker keeps in flight at most.
    pub max_connecting: usize,
    /// Source addresses to bind before connecting (empty: the kernel chooses).
    pub sources: Vec<std::net::IpAddr>,
    pub seed: u64,
    pub snapshots: Option<Sender<IntervalSnapshot>>,
    /// Live metric snapshots (when the plan is `live`): (worker, interval, metrics).
    pub flow_snapshots: Option<Sender<FlowSnapshot>>,
}

/// One worker's cumulative scenario metrics at the end of an interval.
pub type FlowSnapshot = (usize, u64, Box<FlowMetrics>);

pub struct VuWorker {
    index: usize,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    /// The worker's rings (several when its VUs need more direct descriptors than one
    /// ring's table holds) and their receive buffer rings; VU `v` is connection slot `v`.
    io: RingSet,
    vus: Vec<Vu>,
    /// Peer addresses, boxed so they never move while a connect reads them.
    #[expect(
        clippy::vec_box,
        reason = "a connect reads the address by pointer: the box keeps it in place while the Vec grows"
    )]
    addrs: Vec<Box<SockAddr>>,
    addr_ids: HashMap<String, u32>,
    timers: BinaryHeap<Reverse<(u64, u32, u32)>>,
    execs: Vec<Exec>,
    metrics: WorkerMetrics,
    flow: FlowMetrics,
    cqes: Vec<(u64, i32, u32)>,
    snapshots: Option<Sender<IntervalSnapshot>>,
    flow_snapshots: Option<Sender<FlowSnapshot>>,
    interval_index: u64,
    interval_ns: u64,
    next_interval_ns: u64,
    /// What the interval snapshots already shipped of `flow` (per-name time series).
    tracker: StepTracker,
    open_now: u64,
    active: u64,
    late_after_ns: u64,
    timeout_ns: u64,
    /// Received bytes of the completion being handled (copied out of the buffer ring so the
    /// VU logic can borrow the worker mutably; at most one 4 KiB buffer per completion).
    rx: Vec<u8>,
    scratch: Vec<u8>,
    scratch2: Vec<u8>,
    /// VUs waiting to connect, in order (connects are started a batch per turn).
    to_connect: std::collections::VecDeque<(u32, u32)>,
    /// Connect chains started whose connect completion has not arrived, and the bound on
    /// them: a storm of VUs runs as fast as the target accepts instead of overflowing its
    /// accept queue (dropped SYNs come back only after the kernel's 1 s / 3 s retransmits).
    connecting: usize,
    max_connecting: usize,
    /// Source addresses (port 0). Filled once and never resized, so they do not move while
    /// a bind reads them.
    sources: Vec<SockAddr>,
    /// Workers in the run, to spread the sources over every VU of the run.
    threads: usize,
}

type R = Result<(), EngineError>;

impl VuWorker {
    pub fn new(s: WorkerSetup) -> Result<VuWorker, EngineError> {
        let plan = Arc::clone(&s.plan);
        let mut vus = Vec::new();
        let mut execs = Vec::new();
        for (si, sp) in plan.scenarios.iter().enumerate() {
            let max = sp.executor.max_vus();
            let mut local = Vec::new();
            let mut i = s.index as u64;
            while i < max {
                let number = sp.first_vu + i;
                let state = VuState::new(number, si, s.seed, &s.shared)
                    .map_err(|e| EngineError::Config(e.to_string()))?;
                local.push(vus.len() as u32);
                let keep = sp.flows.iter().any(|f| {
                    f.ops.iter().any(|o| match o {
                        Op::WsExpect(id) => match &plan.steps[*id as usize].kind {
                            StepKind::WsExpect {
                                contains, captures, ..
                            } => contains.is_some() || !captures.is_empty(),
                            _ => false,
                        },
                        _ => false,
                    })
                });
                vus.push(Vu {
                    scenario: si as u16,
                    index: i,
                    number,
                    generation: 0,
                    link: Link::Free,
                    ops: 0,
                    recv_armed: false,
                    sending: false,
                    send_done: 0,
                    send_buf: Vec::new(),
                    queue: Vec::new(),
                    addr: u32::MAX,
                    proto: Proto::None,
                    wait: Wait::Off,
                    wake_gen: 0,
                    iterating: false,
                    flow: 0,
                    pc: 0,
                    loops: [0; MAX_LOOP_DEPTH],
                    iter_start: 0,
                    intended: None,
                    iterations_done: 0,
                    failures: 0,
                    iter_failed: false,
                    retries: 0,
                    waited_retry_after: false,
                    retry_after_broken: false,
                    step: 0,
                    req_start: 0,
                    collect: false,
                    resp: Vec::new(),
                    msg: Vec::new(),
                    msg_len: 0,
                    keep_messages: keep,
                    connect_started: 0,
                    ws_step: 0,
                    ws_open_at: 0,
                    last_send: 0,
                    expect_start: 0,
                    dropped_at: 0,
                    seq_sent: 0,
                    seq_expected: 0,
                    next_send: 0,
                    publishers: Vec::new(),
                    offered: Vec::new(),
                    listen_step: 0,
                    state,
                    rng: (s.seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1,
                });
                i += s.threads as u64;
            }
            let start_ns = s.start_ns + sp.start.as_nanos() as u64;
            let end_ns = s.start_ns + sp.end().as_nanos() as u64;
            let hard_end_ns = s.start_ns + sp.hard_end().as_nanos() as u64;
            let kind = match &sp.executor {
                Executor::ConstantVus { vus: n, .. } => ExecKind::Vus {
                    start_vus: *n,
                    stages: None,
                    count: *n,
                    start_rate: sp.vu_start_rate,
                },
                Executor::RampingVus { start_vus, stages } => ExecKind::Vus {
                    start_vus: *start_vus,
                    stages: Some(stages.clone()),
                    count: 0,
                    start_rate: sp.vu_start_rate,
                },
                Executor::PerVuIterations { iterations, .. } => ExecKind::PerVu {
                    iterations: *iterations,
                },
                Executor::SharedIterations { iterations, .. } => ExecKind::Shared {
                    left: share(*iterations as usize, s.threads, s.index) as u64,
                },
                Executor::ConstantArrivalRate { rate, duration, .. } => ExecKind::Arrival {
                    arrivals: Arrivals::new(
                        RateCurve::constant(*rate, *duration),
                        s.index,
                        s.threads,
                    ),
                    idle: Vec::new(),
                },
                Executor::RampingArrivalRate {
                    start_rate, stages, ..
                } => ExecKind::Arrival {
                    arrivals: Arrivals::new(
                        RateCurve::ramping(*start_rate, stages),
                        s.index,
                        s.threads,
                    ),
                    idle: Vec::new(),
                },
            };
            execs.push(Exec {
                vus: local,
                start_ns,
                end_ns,
                hard_end_ns,
                kind,
                next_scan_ns: start_ns,
                done: false,
                running: 0,
            });
        }
        let ring_slots = crate::engine::ring_slots(
            crate::engine::ring::raise_nofile_limit(),
            std::env::var(crate::engine::RING_SLOTS_ENV).ok().as_deref(),
        )?;
        let io = RingSet::open(vus.len(), ring_slots, BGID, RECV_BUF_SIZE, |n| {
            (
                RingConfig::for_connections(n),
                n.clamp(64, MAX_RECV_BUFFERS).next_power_of_two() as u16,
            )
        })?;
        let flow = FlowMetrics {
            steps: plan
                .steps
                .iter()
                .map(|st| StepStats::new(st.http().map_or(0, |h| h.checks.len())))
                .collect(),
            scenarios: plan
                .scenarios
                .iter()
                .map(|_| ScenarioStats::default())
                .collect(),
            ..FlowMetrics::default()
        };
        Ok(VuWorker {
            index: s.index,
            timeout_ns: plan.timeout.as_nanos() as u64,
            plan,
            shared: s.shared,
            clock: s.clock,
            stop: s.stop,
            io,
            vus,
            addrs: Vec::new(),
            addr_ids: HashMap::new(),
            timers: BinaryHeap::new(),
            execs,
            metrics: WorkerMetrics::new(),
            flow,
            cqes: Vec::with_capacity(65536),
            snapshots: s.snapshots,
            flow_snapshots: s.flow_snapshots,
            interval_index: 0,
            tracker: StepTracker::default(),
            interval_ns: s.interval_ns,
            next_interval_ns: s.start_ns + s.interval_ns,
            open_now: 0,
            active: 0,
            late_after_ns: s.late_after.as_nanos() as u64,
            rx: Vec::with_capacity(RECV_BUF_SIZE as usize),
            scratch: Vec::new(),
            scratch2: Vec::new(),
            to_connect: std::collections::VecDeque::new(),
            connecting: 0,
            max_connecting: s.max_connecting.max(1),
            sources: s
                .sources
                .iter()
                .map(|&ip| SockAddr::from(std::net::SocketAddr::new(ip, 0)))
                .collect(),
            threads: s.threads,
        })
    }

    /// Runs until every scenario ended or the stop flag; returns the worker's metrics.
    pub fn run(mut self) -> Result<(WorkerMetrics, FlowMetrics), EngineError> {
        let (user0, system0) = crate::engine::rusage(libc::RUSAGE_THREAD);
        let result = self.event_loop();
        let ended = self.clock.now_ns();
        self.metrics.ended_ns = ended;
        self.publish_interval(ended, true);
        let (user1, system1) = crate::engine::rusage(libc::RUSAGE_THREAD);
        self.shutdown();
        self.metrics.extra_rings = self.io.rings.len() as u64 - 1;
        self.metrics.cpu_user_ns = user1.saturating_sub(user0).as_nanos() as u64;
        self.metrics.cpu_system_ns = system1.saturating_sub(system0).as_nanos() as u64;
        result.map(|()| {
            (
                std::mem::take(&mut self.metrics),
                std::mem::take(&mut self.flow),
            )
        })
    }

    fn event_loop(&mut self) -> R {
        loop {
            let now = self.clock.now_ns();
            while now >= self.next_interval_ns {
                self.publish_interval(self.next_interval_ns, false);
            }
            if self.stop.load(Ordering::Relaxed) {
                self.interrupt_all(now);
                return Ok(());
            }
            self.tick_executors(now)?;
            if self.execs.iter().all(|e| e.done) {
                return Ok(());
            }
            self.fire_timers(now)?;
            self.connect_due(now)?;
            let wake = self.next_wake(now);
            let wait = Duration::from_nanos(wake.saturating_sub(now)).min(MAX_WAIT);
            self.io.wait(wait).map_err(EngineError::Io)?;
            let woke = self.clock.now_ns();
            if wake != u64::MAX && woke >= wake {
                self.metrics
                    .loop_lag
                    .saturating_record(ns_to_us(woke - wake));
            }
            self.handle_completions(woke)?;
        }
    }

    fn publish_interval(&mut self, end_ns: u64, last: bool) {
        if let Some(tx) = &self.flow_snapshots {
            // Sent before the interval's snapshot, so the observer has every worker's flow
            // metrics when the interval completes.
            let _ = tx.send((
                self.index,
                self.interval_index,
                Box::new(self.flow.snapshot()),
            ));
        }
        let latency = self.metrics.take_interval();
        if let Some(tx) = &self.snapshots {
            let steps = self.tracker.steps(&self.flow.steps);
            let ws = self.tracker.ws(&self.flow.ws);
            let _ = tx.send(IntervalSnapshot {
                worker: self.index,
                index: self.interval_index,
                end_ns,
                counters: Counters::of(&self.metrics),
                open_connections: self.open_now,
                latency,
                steps,
                ws,
                last,
            });
        }
        self.interval_index += 1;
        self.next_interval_ns += self.interval_ns;
    }

    fn next_wake(&self, now: u64) -> u64 {
        let mut at = u64::MAX;
        if let Some(&Reverse((due, ..))) = self.timers.peek() {
            at = at.min(due);
        }
        for e in self.execs.iter().filter(|e| !e.done) {
            at = at.min(e.next_scan_ns.max(now)).min(e.hard_end_ns);
            if let ExecKind::Arrival { arrivals, idle } = &e.kind
                && let Some(t) = arrivals.peek()
            {
                let _ = idle;
                at = at.min(e.start_ns + (t * 1e9) as u64);
            }
        }
        if !self.to_connect.is_empty() {
            at = now;
        }
        at
    }

    // ----- executors -------------------------------------------------------------------

    /// Runs the VU's ops until one blocks.
    fn run_vu(&mut self, v: u32, now: u64) -> R {
        let plan = Arc::clone(&self.plan);
        let mut budget = OPS_PER_TURN;
        loop {
            let vu = &mut self.vus[v as usize];
            if !vu.iterating {
                return Ok(());
            }
            let ops = &plan.scenarios[vu.scenario as usize].flows[vu.flow as usize].ops;
            let Some(op) = ops.get(vu.pc as usize) else {
                return self.end_iteration(v, now, true);
            };
            budget -= 1;
            if budget == 0 {
                vu.wait = Wait::Yield;
                self.set_timer(v, now);
                return Ok(());
            }
            match op {
                Op::Maybe { p, skip } => {
                    if !runtime::chance(*p, vu.state.rng()) {
                        vu.pc += skip;
                    }
                    vu.pc += 1;
                }
                Op::LoopStart { depth, repeat, end } => {
                    let d = *depth as usize;
                    match repeat {
                        Repeat::Count(0) => vu.pc = *end,
                        Repeat::Count(n) => {
                            vu.loops[d] = *n;
                            vu.pc += 1;
                        }
                        Repeat::For(dur) => {
                            vu.loops[d] = now + dur.as_nanos() as u64;
                            vu.pc += 1;
                        }
                    }
                }
                Op::LoopEnd { depth, start } => {
                    let d = *depth as usize;
                    let again = match &ops[*start as usize] {
                        Op::LoopStart {
                            repeat: Repeat::Count(_),
                            ..
                        } => {
                            vu.loops[d] -= 1;
                            vu.loops[d] > 0
                        }
                        _ => now < vu.loops[d],
                    };
                    vu.pc = if again { start + 1 } else { vu.pc + 1 };
                }
                Op::SleepFor(t) => {
                    let text = vu.state.render_string(t, &self.shared);
                    let d = runtime::rendered_sleep(&text).unwrap_or_default();
                    vu.pc += 1;
                    vu.wait = Wait::Sleep;
                    self.set_timer(v, now + d.as_nanos().min(u128::from(u64::MAX / 4)) as u64);
                    return Ok(());
                }
                Op::Sleep(t) => {
                    let d = runtime::think_time(t, vu.state.rng());
                    vu.pc += 1;
                    vu.wait = Wait::Sleep;
                    self.set_timer(v, now + d.as_nanos() as u64);
                    return Ok(());
                }
                Op::Http(id) => return self.http_request(v, *id, now),
                Op::WsConnect(id) => return self.ws_connect(v, *id, now),
                Op::WsSend(id) | Op::WsSubscribe(id) => {
                    let id = *id;
                    if !self.ws_send(v, id, now)? {
                        return self.end_iteration(v, now, false);
                    }
                    let vu = &mut self.vus[v as usize];
                    vu.pc += 1;
                    if matches!(op, Op::WsSubscribe(_)) {
                        // Messages from now on count for this subscription.
                        vu.listen_step = id;
                    }
                    if let StepKind::WsSubscribe {
                        duration: Some(d), ..
                    } = &plan.steps[id as usize].kind
                    {
                        vu.wait = Wait::Listen;
                        self.set_timer(v, now + d.as_nanos() as u64);
                        return Ok(());
                    }
                }
                Op::WsExpect(id) => {
                    let id = *id;
                    if !vu.is_ws() {
                        self.flow.steps[id as usize].error("ws_not_connected");
                        return self.end_iteration(v, now, false);
                    }
                    let StepKind::WsExpect { timeout, .. } = &plan.steps[id as usize].kind else {
                        unreachable!()
                    };
                    vu.step = id;
                    vu.expect_start = now;
                    vu.wait = Wait::Message;
                    self.set_timer(v, now + timeout.as_nanos() as u64);
                    return Ok(());
                }
                Op::WsClose(id) => {
                    let id = *id;
                    if !vu.is_ws() {
                        vu.pc += 1;
                        continue;
                    }
                    let StepKind::WsClose { code } = &plan.steps[id as usize].kind else {
                        unreachable!()
                    };
                    let mask = vu.mask();
                    let _ = ws::encode_close(Some(*code), "", mask, &mut vu.queue);
                    vu.step = id;
                    vu.wait = Wait::CloseAck;
                    self.flush(v)?;
                    self.set_timer(v, now + CLOSE_WAIT_NS);
                    return Ok(());
                }
                Op::Builtin(b) => return self.builtin_start(v, *b, now),
            }
        }
    }

    /// Continues the program after the op the VU waited on.
    fn resume(&mut self, v: u32, now: u64) -> R {
        let vu = &mut self.vus[v as usize];
        vu.wake_gen = vu.wake_gen.wrapping_add(1);
        vu.retries = 0;
        vu.waited_retry_after = false;
        vu.retry_after_broken = false;
        vu.pc += 1;
        vu.wait = Wait::Yield;
        self.run_vu(v, now)
    }

    fn set_timer(&mut self, v: u32, due: u64) {
        let vu = &mut self.vus[v as usize];
        vu.wake_gen = vu.wake_gen.wrapping_add(1);
        self.timers.push(Reverse((due, v, vu.wake_gen)));
    }

    /// Fires the timers due by `now`. At most as many as were queued when the pass began:
    /// timers set while it runs (a zero think time, a yield) wait for the next pass, so a VU
    /// that never blocks cannot keep the loop from completions and the stop flag.
    fn fire_timers(&mut self, now: u64) -> R {
        let mut budget = self.timers.len();
        while let Some(&Reverse((due, v, wake_gen))) = self.timers.peek() {
            if due > now || budget == 0 {
                break;
            }
            budget -= 1;
            self.timers.pop();
            if self.vus[v as usize].wake_gen != wake_gen {
                continue;
            }
            self.on_timer(v, now)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, v: u32, now: u64) -> R {
        let vu = &mut self.vus[v as usize];
        match vu.wait {
            Wait::Sleep | Wait::Yield => {
                vu.wait = Wait::Yield;
                self.run_vu(v, now)
            }
            Wait::Retry => {
                let step = vu.step;
                self.http_request(v, step, now)
            }
            Wait::Backoff => {
                vu.wait = Wait::Off;
                let ei = vu.scenario as usize;
                // A backoff that ends after the executor stopped starts nothing.
                if self.execs[ei].done || now >= self.execs[ei].end_ns {
                    return Ok(());
                }
                self.begin_iteration(v, now, None)
            }
            Wait::Response => {
                let step = vu.step as usize;
                self.metrics.record_error(ErrorKind::Timeout);
                self.fail_step(v, step, "timeout");
                self.close(v)?;
                self.resume(v, now)
            }
            Wait::Connect if matches!(vu.proto, Proto::Http(_)) => {
                // The connect of an HTTP step took longer than the request timeout.
                let step = vu.step as usize;
                self.metrics.conns_failed += 1;
                self.metrics.record_error(ErrorKind::ConnectFailed);
                self.fail_step(v, step, "connect_timeout");
                self.close(v)?;
                self.resume(v, now)
            }
            Wait::Handshake | Wait::Connect => {
                let step = vu.step as usize;
                self.flow.steps[step].error("timeout");
                self.flow.ws.sessions_failed += 1;
                self.flow.ws.error("handshake_timeout");
                self.close(v)?;
                self.end_iteration(v, now, false)
            }
            Wait::Message => {
                let step = vu.step as usize;
                self.flow.steps[step].error("ws_expect_timeout");
                self.resume(v, now)
            }
            Wait::Listen => self.resume(v, now),
            Wait::CloseAck => {
                self.account_session_end(v, now, true);
                self.close(v)?;
                self.resume(v, now)
            }
            Wait::Builtin(b) => self.builtin_tick(v, b, now),
            Wait::Off | Wait::Idle => Ok(()),
        }
    }

    // ----- HTTP --------------------------------------------------------------------------
}

#[cfg(test)]
mod tests {
    use super::conn::split_url;
    use super::http::itoa_buf;
    use super::websocket::track_seq;

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            split_url(b"http://127.0.0.1:8080/a/b?c=1", false),
            Ok(("127.0.0.1:8080", "/a/b?c=1"))
        );
        assert_eq!(split_url(b"http://h", false), Ok(("h", "/")));
        assert_eq!(split_url(b"http://h?x", false), Ok(("h", "?x")));
        assert_eq!(split_url(b"https://h/", false), Err("tls_not_supported"));
        assert_eq!(split_url(b"ws://h:1/ws", true), Ok(("h:1", "/ws")));
        assert_eq!(split_url(b"h/x", false), Err("bad_url"));
    }

    #[test]
    fn sequence_tracking_counts_gaps_and_repeats() {
        let mut ws = crate::metrics::flow::WsStats::default();
        let mut next = 0;
        for s in [0, 1, 3, 3, 4, 2] {
            track_seq(&mut next, s, &mut ws);
        }
        assert_eq!(ws.lost, 1);
        assert_eq!(ws.duplicates, 2);
        assert_eq!(next, 5);
    }

    #[test]
    fn request_targets_are_percent_encoded_where_needed() {
        let mut out = Vec::new();
        super::http::push_target(&mut out, "/search?q=judo seminar&x=\"é\"&y=%20".as_bytes());
        assert_eq!(out, b"/search?q=judo%20seminar&x=%22%C3%A9%22&y=%20");
    }

    #[test]
    fn itoa_formats_decimal() {
        assert_eq!(itoa_buf(0, &mut [0; 20]), b"0");
        assert_eq!(itoa_buf(1_048_576, &mut [0; 20]), b"1048576");
        assert_eq!(
            itoa_buf(u64::MAX, &mut [0; 20]),
            u64::MAX.to_string().as_bytes()
        );
    }
}
