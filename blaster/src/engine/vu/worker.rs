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

use io_uring::{cqueue, opcode, squeue, types};
use socket2::SockAddr;

use super::plan::{Builtin, MAX_LOOP_DEPTH, Op, Plan};
use super::rate::{Arrivals, RateCurve, vus_at};
use crate::config::share;
use crate::engine::EngineError;
use crate::engine::clock::{Clock, ns_to_us};
use crate::engine::ring::{BufRing, GENERATION_MASK, Ring, RingConfig, Token};
use crate::metrics::flow::{FlowMetrics, ScenarioStats, StepStats};
use crate::metrics::interval::{Counters, IntervalSnapshot};
use crate::metrics::{ErrorKind, WorkerMetrics};
use crate::proto::http1::{Limits, ResponseParser};
use crate::proto::ws::{
    self, ChunkEvent, Data, Event, FrameDecoder, HandshakeParser, PREFIX_LEN, UpgradeRequest,
    WsLimits,
};
use crate::scenario::model::{Executor, Repeat, StepKind};
use crate::scenario::runtime::{self, Shared, VuState};

mod op {
    pub const SOCKET: u8 = 1;
    pub const CONNECT: u8 = 4;
    pub const RECV: u8 = 6;
    pub const SEND: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const CLOSE: u8 = 9;
}

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
    failures: u32,
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
    ring: Ring,
    bufs: BufRing,
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
    ws_limits: WsLimits,
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
        let ring = Ring::new(RingConfig::for_connections(vus.len().max(1)))?;
        let entries = vus.len().clamp(64, MAX_RECV_BUFFERS).next_power_of_two() as u16;
        let bufs = ring.register_buf_ring(BGID, entries, RECV_BUF_SIZE)?;
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
            ring,
            bufs,
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
            interval_ns: s.interval_ns,
            next_interval_ns: s.start_ns + s.interval_ns,
            open_now: 0,
            active: 0,
            late_after_ns: s.late_after.as_nanos() as u64,
            rx: Vec::with_capacity(RECV_BUF_SIZE as usize),
            scratch: Vec::new(),
            scratch2: Vec::new(),
            to_connect: std::collections::VecDeque::new(),
            ws_limits: WsLimits::default(),
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
            self.ring
                .submit_and_wait(Some(wait))
                .map_err(EngineError::Io)?;
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
            let _ = tx.send(IntervalSnapshot {
                worker: self.index,
                index: self.interval_index,
                end_ns,
                counters: Counters::of(&self.metrics),
                open_connections: self.open_now,
                latency,
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

    fn tick_executors(&mut self, now: u64) -> R {
        for ei in 0..self.execs.len() {
            let e = &self.execs[ei];
            if e.done || now < e.start_ns {
                continue;
            }
            if now >= e.hard_end_ns {
                self.end_exec(ei, now);
                continue;
            }
            if now < e.end_ns {
                self.start_iterations(ei, now)?;
            }
            let e = &self.execs[ei];
            let exhausted = match &e.kind {
                ExecKind::Vus { .. } => now >= e.end_ns,
                ExecKind::PerVu { iterations } => {
                    now >= e.end_ns
                        || e.vus
                            .iter()
                            .all(|&v| self.vus[v as usize].iterations_done >= *iterations)
                }
                ExecKind::Shared { left } => now >= e.end_ns || *left == 0,
                ExecKind::Arrival { arrivals, .. } => now >= e.end_ns || arrivals.peek().is_none(),
            };
            if exhausted
                && !e.vus.iter().any(|&v| {
                    let vu = &self.vus[v as usize];
                    vu.iterating || vu.wait == Wait::Backoff
                })
            {
                self.end_exec(ei, now);
            }
        }
        Ok(())
    }

    /// The scenario is over: cut off running iterations and close its connections.
    fn end_exec(&mut self, ei: usize, now: u64) {
        self.execs[ei].done = true;
        for k in 0..self.execs[ei].vus.len() {
            let v = self.execs[ei].vus[k];
            self.stop_vu(v, now);
        }
    }

    fn stop_vu(&mut self, v: u32, now: u64) {
        let vu = &mut self.vus[v as usize];
        if vu.iterating {
            self.flow.scenarios[vu.scenario as usize].interrupted += 1;
            vu.iterating = false;
            self.active -= 1;
            self.execs[vu.scenario as usize].running -= 1;
        }
        if vu.wait == Wait::Response {
            // The request in flight ends with the run.
            self.metrics.in_flight_at_end += 1;
        }
        if vu.link == Link::Ready {
            self.metrics.open_at_end += 1;
        }
        self.account_session_end(v, now, false);
        let vu = &mut self.vus[v as usize];
        vu.wait = Wait::Off;
        vu.wake_gen = vu.wake_gen.wrapping_add(1);
        let _ = self.close(v);
    }

    fn interrupt_all(&mut self, now: u64) {
        for ei in 0..self.execs.len() {
            if !self.execs[ei].done {
                self.end_exec(ei, now);
            }
        }
    }

    fn start_iterations(&mut self, ei: usize, now: u64) -> R {
        if now < self.execs[ei].next_scan_ns
            && !matches!(self.execs[ei].kind, ExecKind::Arrival { .. })
        {
            return Ok(());
        }
        let start_ns = self.execs[ei].start_ns;
        let t = (now - start_ns) as f64 / 1e9;
        match &mut self.execs[ei].kind {
            ExecKind::Vus {
                start_vus,
                stages,
                count,
                start_rate,
            } => {
                let wanted = match stages {
                    Some(st) => vus_at(*start_vus, st, t),
                    None => *count,
                };
                let mut next_scan = if stages.is_some() {
                    now + RAMP_TICK_NS
                } else {
                    u64::MAX
                };
                let rate = *start_rate;
                let vus = self.execs[ei].vus.clone();
                for v in vus {
                    let vu = &self.vus[v as usize];
                    if vu.index >= wanted || vu.wait != Wait::Off {
                        continue;
                    }
                    if let Some(r) = rate {
                        let at = start_ns + (vu.index as f64 * 1e9 / r) as u64;
                        if at > now {
                            next_scan = next_scan.min(at);
                            continue;
                        }
                    }
                    self.begin_iteration(v, now, None)?;
                }
                self.execs[ei].next_scan_ns = next_scan;
            }
            ExecKind::PerVu { .. } | ExecKind::Shared { .. } => {
                let vus = self.execs[ei].vus.clone();
                for v in vus {
                    if self.vus[v as usize].wait == Wait::Off && self.wants_more(ei, v, now) {
                        self.take_shared(ei);
                        self.begin_iteration(v, now, None)?;
                    }
                }
                self.execs[ei].next_scan_ns = u64::MAX;
            }
            ExecKind::Arrival { .. } => {
                if self.execs[ei].next_scan_ns != u64::MAX {
                    // First turn: every VU joins the idle pool.
                    let vus = self.execs[ei].vus.clone();
                    for &v in vus.iter().rev() {
                        self.vus[v as usize].wait = Wait::Idle;
                    }
                    if let ExecKind::Arrival { idle, .. } = &mut self.execs[ei].kind {
                        idle.extend(vus.iter().rev());
                    }
                    self.execs[ei].next_scan_ns = u64::MAX;
                }
                let end_ns = self.execs[ei].end_ns;
                loop {
                    let ExecKind::Arrival { arrivals, idle } = &mut self.execs[ei].kind else {
                        unreachable!()
                    };
                    let Some(at) = arrivals.peek() else { break };
                    let intended = start_ns + (at * 1e9) as u64;
                    if intended > now || intended >= end_ns {
                        break;
                    }
                    arrivals.advance();
                    let stats = &mut self.flow.scenarios[ei];
                    match idle.pop() {
                        Some(v) => {
                            if now - intended > self.late_after_ns {
                                stats.late += 1;
                                self.metrics.late += 1;
                            }
                            self.begin_iteration(v, now, Some(intended))?;
                        }
                        None => {
                            stats.dropped += 1;
                            self.metrics.dropped += 1;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether VU `v` of executor `ei` should run another iteration.
    fn wants_more(&self, ei: usize, v: u32, now: u64) -> bool {
        let e = &self.execs[ei];
        if now >= e.end_ns || e.done {
            return false;
        }
        let vu = &self.vus[v as usize];
        match &e.kind {
            ExecKind::Vus {
                start_vus,
                stages,
                count,
                ..
            } => {
                let wanted = match stages {
                    Some(st) => vus_at(*start_vus, st, (now - e.start_ns) as f64 / 1e9),
                    None => *count,
                };
                vu.index < wanted
            }
            ExecKind::PerVu { iterations } => vu.iterations_done < *iterations,
            ExecKind::Shared { left } => *left > 0,
            ExecKind::Arrival { .. } => false,
        }
    }

    fn take_shared(&mut self, ei: usize) {
        if let ExecKind::Shared { left } = &mut self.execs[ei].kind {
            *left = left.saturating_sub(1);
        }
    }

    fn begin_iteration(&mut self, v: u32, now: u64, intended: Option<u64>) -> R {
        let plan = Arc::clone(&self.plan);
        let vu = &mut self.vus[v as usize];
        let sp = &plan.scenarios[vu.scenario as usize];
        vu.state.begin_iteration(&self.shared);
        vu.flow = if sp.flows.len() == 1 {
            0
        } else {
            runtime::pick_weighted(&sp.weights(), vu.state.rng()) as u16
        };
        vu.pc = 0;
        vu.iterating = true;
        vu.iter_start = intended.unwrap_or(now);
        vu.intended = intended;
        self.active += 1;
        self.flow.vus_max = self.flow.vus_max.max(self.active);
        let ei = vu.scenario as usize;
        self.execs[ei].running += 1;
        let stats = &mut self.flow.scenarios[ei];
        stats.vus_max = stats.vus_max.max(self.execs[ei].running);
        self.run_vu(v, now)
    }

    fn end_iteration(&mut self, v: u32, now: u64, ok: bool) -> R {
        let vu = &mut self.vus[v as usize];
        if !vu.iterating {
            return Ok(());
        }
        vu.iterating = false;
        self.active -= 1;
        vu.iterations_done += 1;
        let ei = vu.scenario as usize;
        self.execs[ei].running -= 1;
        let stats = &mut self.flow.scenarios[ei];
        stats.iterations += 1;
        stats
            .duration
            .saturating_record(ns_to_us(now.saturating_sub(vu.iter_start)));
        vu.failures = if ok { 0 } else { vu.failures + 1 };
        if matches!(self.execs[ei].kind, ExecKind::Arrival { .. }) {
            vu.wait = Wait::Idle;
            if let ExecKind::Arrival { idle, .. } = &mut self.execs[ei].kind {
                idle.push(v);
            }
            return Ok(());
        }
        vu.wait = Wait::Off;
        if !self.wants_more(ei, v, now) {
            return Ok(());
        }
        self.take_shared(ei);
        let failures = self.vus[v as usize].failures;
        if failures > 0 {
            let unit = self.vus[v as usize].unit();
            let delay = self.plan.scenarios[ei].backoff.delay(failures, unit);
            if !delay.is_zero() {
                self.vus[v as usize].wait = Wait::Backoff;
                self.set_timer(v, now + delay.as_nanos() as u64);
                return Ok(());
            }
        }
        // A fresh iteration right away would recurse; yield to the loop instead when the
        // iteration did no I/O (it cannot make progress by recursing).
        self.vus[v as usize].wait = Wait::Backoff;
        self.set_timer(v, now);
        Ok(())
    }

    // ----- the program -------------------------------------------------------------------

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
        vu.pc += 1;
        vu.wait = Wait::Yield;
        self.run_vu(v, now)
    }

    fn set_timer(&mut self, v: u32, due: u64) {
        let vu = &mut self.vus[v as usize];
        vu.wake_gen = vu.wake_gen.wrapping_add(1);
        self.timers.push(Reverse((due, v, vu.wake_gen)));
    }

    fn fire_timers(&mut self, now: u64) -> R {
        while let Some(&Reverse((due, v, wake_gen))) = self.timers.peek() {
            if due > now {
                break;
            }
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
            Wait::Backoff => {
                vu.wait = Wait::Off;
                let ei = vu.scenario as usize;
                if self.execs[ei].done {
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

    fn http_request(&mut self, v: u32, id: u32, now: u64) -> R {
        let plan = Arc::clone(&self.plan);
        let step = &plan.steps[id as usize];
        let h = step.http().expect("an HTTP step");
        let shared = Arc::clone(&self.shared);
        let mut url = std::mem::take(&mut self.scratch);
        url.clear();
        let vu = &mut self.vus[v as usize];
        vu.state.render(&h.url, &shared, &mut url);
        let parsed = split_url(&url, false);
        let (authority, path) = match parsed {
            Ok(x) => x,
            Err(kind) => {
                self.scratch = url;
                self.fail_step(v, id as usize, kind);
                return self.resume(v, now);
            }
        };
        let (authority, path) = (authority.to_owned(), path.to_owned());
        self.scratch = url;
        let addr = match self.resolve(&authority) {
            Some(a) => a,
            None => {
                self.fail_step(v, id as usize, "resolve_failed");
                return self.resume(v, now);
            }
        };
        let vu = &mut self.vus[v as usize];
        let q = &mut vu.queue;
        q.clear();
        q.extend_from_slice(h.method.as_bytes());
        q.push(b' ');
        q.extend_from_slice(path.as_bytes());
        q.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        q.extend_from_slice(authority.as_bytes());
        q.extend_from_slice(b"\r\n");
        for (name, value) in plan
            .file
            .options
            .headers
            .iter()
            .filter(|(n, _)| !h.headers.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)))
        {
            push_header(&mut vu.queue, name, value, &mut vu.state, &shared);
        }
        for (name, value) in &h.headers {
            push_header(&mut vu.queue, name, value, &mut vu.state, &shared);
        }
        if let Some(body) = &h.body {
            let mut b = std::mem::take(&mut self.scratch2);
            b.clear();
            vu.state.render(body, &shared, &mut b);
            vu.queue.extend_from_slice(b"Content-Length: ");
            vu.queue
                .extend_from_slice(itoa_buf(b.len() as u64, &mut [0; 20]));
            vu.queue.extend_from_slice(b"\r\n\r\n");
            vu.queue.extend_from_slice(&b);
            self.scratch2 = b;
        } else if matches!(h.method.as_str(), "POST" | "PUT" | "PATCH") {
            vu.queue.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        } else {
            vu.queue.extend_from_slice(b"\r\n");
        }
        vu.step = id;
        vu.collect = runtime::needs_response_bytes(h);
        vu.resp.clear();
        let reusable = vu.link == Link::Ready
            && vu.addr == addr
            && matches!(vu.proto, Proto::Http(_))
            && !vu.sending;
        if reusable {
            self.send_request(v, now)
        } else {
            let vu = &mut self.vus[v as usize];
            vu.addr = addr;
            vu.proto = Proto::Http(ResponseParser::new(Limits::default()));
            vu.wait = Wait::Connect;
            let timeout = h.timeout.map_or(self.timeout_ns, |t| t.as_nanos() as u64);
            self.set_timer(v, now + timeout);
            self.need_connection(v, now)
        }
    }

    /// Sends the queued request on the ready connection and waits for its response.
    fn send_request(&mut self, v: u32, now: u64) -> R {
        let timeout = self.plan.steps[self.vus[v as usize].step as usize]
            .http()
            .and_then(|h| h.timeout)
            .map_or(self.timeout_ns, |t| t.as_nanos() as u64);
        let vu = &mut self.vus[v as usize];
        vu.req_start = vu.intended.take().unwrap_or(now);
        vu.wait = Wait::Response;
        self.metrics.requests += 1;
        self.set_timer(v, now + timeout);
        self.flush(v)
    }

    fn on_http_data(&mut self, v: u32, now: u64) -> R {
        let mut data = std::mem::take(&mut self.rx);
        let mut at = 0;
        let result = loop {
            if at == data.len() {
                break Ok(());
            }
            let vu = &mut self.vus[v as usize];
            if vu.wait != Wait::Response {
                self.metrics.record_error(ErrorKind::UnexpectedData);
                self.metrics.closed_on_error += 1;
                break self.close(v);
            }
            let Proto::Http(parser) = &mut vu.proto else {
                break Ok(());
            };
            match parser.feed(&data[at..], false) {
                Ok(p) => {
                    if vu.collect && vu.resp.len() + p.consumed <= MAX_KEPT_RESPONSE {
                        vu.resp.extend_from_slice(&data[at..at + p.consumed]);
                    }
                    at += p.consumed;
                    if let Some(resp) = p.response {
                        self.on_response(v, resp.status, now)?;
                        if resp.close {
                            self.metrics.closed_by_peer += 1;
                            self.close(v)?;
                        }
                        self.resume(v, now)?;
                        if self.vus[v as usize].link != Link::Ready {
                            break Ok(());
                        }
                    }
                }
                Err(e) => {
                    let kind = response_error_kind(e.kind());
                    self.metrics.record_error(kind);
                    self.metrics.closed_on_error += 1;
                    let step = vu.step as usize;
                    self.fail_step(v, step, kind.as_str());
                    self.close(v)?;
                    break self.resume(v, now);
                }
            }
        };
        data.clear();
        self.rx = data;
        result
    }

    fn on_response(&mut self, v: u32, status: u16, now: u64) -> R {
        let plan = Arc::clone(&self.plan);
        let shared = Arc::clone(&self.shared);
        let vu = &mut self.vus[v as usize];
        let id = vu.step as usize;
        let h = plan.steps[id].http().expect("an HTTP step");
        let latency_ns = now.saturating_sub(vu.req_start);
        self.metrics.record_response(status, ns_to_us(latency_ns));
        let st = &mut self.flow.steps[id];
        st.count += 1;
        st.duration.saturating_record(ns_to_us(latency_ns));
        *st.statuses.entry(status).or_insert(0) += 1;
        if !h.is_expected(status) {
            st.failed += 1;
        }
        if h.checks.is_empty() && h.captures.is_empty() {
            return Ok(());
        }
        let latency = Duration::from_nanos(latency_ns);
        let mut scratch = std::mem::take(&mut self.scratch2);
        let resp = std::mem::take(&mut vu.resp);
        {
            let view = if vu.collect {
                runtime::parse_response(&resp, &mut scratch).ok()
            } else {
                None
            };
            let (headers, body): (&[(&str, &[u8])], &[u8]) = match &view {
                Some(v) => (&v.headers, v.body),
                None => (&[], &[]),
            };
            for (i, c) in h.checks.iter().enumerate() {
                let ok =
                    runtime::run_check(c, status, headers, body, latency, &mut vu.state, &shared);
                let cell = &mut self.flow.steps[id].checks[i];
                if ok {
                    cell.0 += 1;
                } else {
                    cell.1 += 1;
                }
            }
            for c in &h.captures {
                runtime::capture(c, headers, body, &mut vu.state, &shared);
            }
        }
        vu.resp = resp;
        self.scratch2 = scratch;
        Ok(())
    }

    /// A request or message step failed without a response: counts it, and its checks as
    /// failed.
    fn fail_step(&mut self, _v: u32, step: usize, kind: &'static str) {
        let st = &mut self.flow.steps[step];
        st.count += 1;
        st.error(kind);
        for c in st.checks.iter_mut() {
            c.1 += 1;
        }
    }

    // ----- WebSocket ---------------------------------------------------------------------

    fn ws_connect(&mut self, v: u32, id: u32, now: u64) -> R {
        let plan = Arc::clone(&self.plan);
        let shared = Arc::clone(&self.shared);
        let step = &plan.steps[id as usize];
        let StepKind::WsConnect { url, headers, .. } = &step.kind else {
            unreachable!()
        };
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        let vu = &mut self.vus[v as usize];
        vu.state.render(url, &shared, &mut text);
        let (authority, mut path) = match split_url(&text, true) {
            Ok((a, p)) => (a.to_owned(), p.to_owned()),
            Err(kind) => {
                self.scratch = text;
                self.fail_step(v, id as usize, kind);
                self.flow.ws.sessions_failed += 1;
                return self.end_iteration(v, now, false);
            }
        };
        self.scratch = text;
        if let Some(topics) = step.topics {
            let topic = format!("t{}", vu.index % u64::from(topics.max(1)));
            let at = path.find('?').unwrap_or(path.len());
            path.insert_str(at, &topic);
        }
        let Some(addr) = self.resolve(&authority) else {
            self.fail_step(v, id as usize, "resolve_failed");
            self.flow.ws.sessions_failed += 1;
            return self.end_iteration(v, now, false);
        };
        let vu = &mut self.vus[v as usize];
        let mut extra: Vec<(String, String)> = Vec::new();
        for (name, value) in plan
            .file
            .options
            .headers
            .iter()
            .filter(|(n, _)| !headers.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)))
            .chain(headers.iter())
        {
            extra.push((name.clone(), vu.state.render_string(value, &shared)));
        }
        let mut request = match UpgradeRequest::new(&path, &authority, &[], &extra) {
            Ok(r) => r,
            Err(_) => {
                self.fail_step(v, id as usize, "bad_request");
                return self.end_iteration(v, now, false);
            }
        };
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&vu.random().to_le_bytes());
        key[8..].copy_from_slice(&vu.random().to_le_bytes());
        vu.queue.clear();
        vu.queue.extend_from_slice(request.with_key(&key));
        vu.proto = Proto::Handshake(Box::new(HandshakeParser::new(&key)));
        vu.addr = addr;
        vu.step = id;
        vu.ws_step = id;
        vu.wait = Wait::Connect;
        vu.connect_started = now;
        // A new session: the old connection (if any) goes.
        let _ = self.close(v);
        self.set_timer(v, now + self.timeout_ns);
        self.need_connection(v, now)
    }

    /// Sends a ws_send / ws_subscribe body. False when there is no session.
    fn ws_send(&mut self, v: u32, id: u32, now: u64) -> Result<bool, EngineError> {
        let plan = Arc::clone(&self.plan);
        let shared = Arc::clone(&self.shared);
        let body = match &plan.steps[id as usize].kind {
            StepKind::WsSend { body, .. } | StepKind::WsSubscribe { body, .. } => body,
            _ => unreachable!(),
        };
        let vu = &mut self.vus[v as usize];
        if !vu.is_ws() {
            self.flow.steps[id as usize].error("ws_not_connected");
            return Ok(false);
        }
        let mut payload = std::mem::take(&mut self.scratch2);
        payload.clear();
        vu.state.render(body, &shared, &mut payload);
        let mask = vu.mask();
        ws::encode_text(&payload, mask, &mut vu.queue);
        vu.last_send = now;
        let st = &mut self.flow.steps[id as usize];
        st.count += 1;
        st.msgs_sent += 1;
        self.flow.ws.msgs_sent += 1;
        self.flow.ws.bytes_sent += payload.len() as u64;
        self.scratch2 = payload;
        self.flush(v)?;
        Ok(true)
    }

    fn on_ws_data(&mut self, v: u32, now: u64) -> R {
        let data = std::mem::take(&mut self.rx);
        let mut at = 0;
        let mut result = Ok(());
        while at < data.len() {
            let vu = &mut self.vus[v as usize];
            match &mut vu.proto {
                Proto::Handshake(parser) => match parser.feed(&data[at..], &[]) {
                    Ok((used, accepted)) => {
                        at += used;
                        if accepted.is_some() {
                            vu.proto = Proto::Ws(Box::new(FrameDecoder::new(self.ws_limits, true)));
                            if let Err(e) = self.on_handshake(v, now) {
                                result = Err(e);
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        let id = vu.step as usize;
                        self.flow.ws.sessions_failed += 1;
                        self.flow.ws.error(e.kind());
                        self.fail_step(v, id, e.kind());
                        result = self
                            .close(v)
                            .and_then(|()| self.end_iteration(v, now, false));
                        break;
                    }
                },
                Proto::Ws(dec) => {
                    let keep = if vu.keep_messages {
                        MAX_KEPT_MESSAGE
                    } else {
                        PREFIX_LEN
                    };
                    match dec.feed_chunks(&data[at..]) {
                        Ok((used, event)) => {
                            at += used;
                            match event {
                                Some(ChunkEvent::Data(chunk)) => {
                                    if chunk.first {
                                        vu.msg.clear();
                                        vu.msg_len = 0;
                                    }
                                    if vu.msg.len() < keep {
                                        chunk.unmask_into(&mut vu.msg);
                                        vu.msg.truncate(keep);
                                    }
                                    vu.msg_len += chunk.len() as u64;
                                    if chunk.last {
                                        let _ = chunk.opcode == Data::Text;
                                        if let Err(e) = self.on_message(v, now) {
                                            result = Err(e);
                                            break;
                                        }
                                    }
                                }
                                Some(ChunkEvent::Control(ev)) => {
                                    if let Err(e) = self.on_control(v, ev, now) {
                                        result = Err(e);
                                        break;
                                    }
                                }
                                None => {}
                            }
                        }
                        Err(e) => {
                            self.flow.ws.error(e.kind());
                            result = self.session_lost(v, now);
                            break;
                        }
                    }
                }
                _ => break,
            }
            if self.vus[v as usize].link != Link::Ready {
                break;
            }
        }
        let mut data = data;
        data.clear();
        self.rx = data;
        result
    }

    fn on_handshake(&mut self, v: u32, now: u64) -> R {
        let vu = &mut self.vus[v as usize];
        let took = ns_to_us(now.saturating_sub(vu.connect_started));
        let id = vu.ws_step as usize;
        let st = &mut self.flow.steps[id];
        st.count += 1;
        st.duration.saturating_record(took);
        let ws = &mut self.flow.ws;
        ws.sessions += 1;
        ws.handshake.saturating_record(took);
        if vu.dropped_at > 0 {
            ws.episodes.push((vu.dropped_at, now));
            ws.reconnects += 1;
            vu.dropped_at = 0;
        }
        vu.ws_open_at = now;
        self.resume(v, now)
    }

    fn on_control(&mut self, v: u32, ev: Event, now: u64) -> R {
        let vu = &mut self.vus[v as usize];
        match ev {
            Event::Ping(payload) => {
                let mask = vu.mask();
                let _ = ws::encode_pong(payload.as_slice(), mask, &mut vu.queue);
                self.flow.ws.pings_answered += 1;
                self.flush(v)
            }
            Event::Pong(payload) => {
                self.flow.ws.pongs_received += 1;
                if let Ok(b) = <[u8; 8]>::try_from(payload.as_slice()) {
                    let sent = u64::from_le_bytes(b);
                    if sent <= now {
                        self.flow
                            .ws
                            .ping_rtt
                            .saturating_record(ns_to_us(now - sent));
                    }
                }
                Ok(())
            }
            Event::Close { code, .. } => {
                *self
                    .flow
                    .ws
                    .close_codes
                    .entry(code.unwrap_or(1005))
                    .or_insert(0) += 1;
                if vu.wait == Wait::CloseAck {
                    self.account_session_end(v, now, true);
                    self.close(v)?;
                    return self.resume(v, now);
                }
                // Answer the close, then the session is over.
                let mask = vu.mask();
                let _ = ws::encode_close(code.filter(|c| *c != 1005), "", mask, &mut vu.queue);
                self.flush(v)?;
                self.flow.ws.error("closed_by_server");
                self.session_lost(v, now)
            }
            Event::Text { .. } | Event::Binary { .. } => Ok(()),
        }
    }

    fn on_message(&mut self, v: u32, now: u64) -> R {
        let plan = Arc::clone(&self.plan);
        let shared = Arc::clone(&self.shared);
        let vu = &mut self.vus[v as usize];
        let ws = &mut self.flow.ws;
        ws.msgs_received += 1;
        ws.bytes_received += vu.msg_len;
        self.flow.steps[vu.ws_step as usize].msgs_received += 1;
        match vu.wait {
            Wait::Builtin(b) => {
                let Some((kind, from, seq, intended)) = parse_prefix(&vu.msg) else {
                    return Ok(());
                };
                match b {
                    Builtin::Echo { .. } if kind == 0 && from == vu.number => {
                        if intended <= now {
                            let us = ns_to_us(now - intended);
                            ws.msg_latency.saturating_record(us);
                            // An echo is the answer to the message: count it like a response
                            // (no status) so progress and the time series show messages.
                            self.metrics.responses += 1;
                            self.metrics.interval_latency.saturating_record(us);
                        }
                        track_seq(&mut vu.seq_expected, seq, ws);
                    }
                    Builtin::Subscribe | Builtin::Publish { .. } if kind == 1 => {
                        if matches!(b, Builtin::Publish { .. }) {
                            return Ok(());
                        }
                        if intended <= now {
                            let us = ns_to_us(now - intended);
                            ws.msg_latency.saturating_record(us);
                            self.metrics.interval_latency.saturating_record(us);
                        }
                        ws.delivered(from, seq, now);
                        match vu.publishers.iter_mut().find(|(p, _)| *p == from) {
                            Some((_, next)) => track_seq(next, seq, ws),
                            // The first message seen from a publisher sets the baseline: a
                            // subscriber that joined late did not lose the earlier ones.
                            None => vu.publishers.push((from, seq + 1)),
                        }
                    }
                    _ => {}
                }
                Ok(())
            }
            Wait::Message => {
                let id = vu.step as usize;
                let StepKind::WsExpect {
                    contains, captures, ..
                } = &plan.steps[id].kind
                else {
                    return Ok(());
                };
                let mut scratch = std::mem::take(&mut self.scratch2);
                let msg = std::mem::take(&mut vu.msg);
                let matched = runtime::message_matches(
                    contains.as_ref(),
                    &msg,
                    &mut vu.state,
                    &shared,
                    &mut scratch,
                );
                if matched {
                    for c in captures {
                        runtime::capture(c, &[], &msg, &mut vu.state, &shared);
                    }
                }
                vu.msg = msg;
                self.scratch2 = scratch;
                if !matched {
                    return Ok(());
                }
                let from = if vu.last_send > 0 {
                    vu.last_send
                } else {
                    vu.expect_start
                };
                let us = ns_to_us(now.saturating_sub(from));
                let st = &mut self.flow.steps[id];
                st.count += 1;
                st.duration.saturating_record(us);
                self.flow.ws.msg_latency.saturating_record(us);
                self.resume(v, now)
            }
            _ => Ok(()),
        }
    }

    /// Records the end of a WebSocket session (if one is open).
    fn account_session_end(&mut self, v: u32, now: u64, _clean: bool) {
        let vu = &mut self.vus[v as usize];
        if vu.ws_open_at > 0 {
            self.flow
                .ws
                .session_duration
                .saturating_record(ns_to_us(now.saturating_sub(vu.ws_open_at)));
            vu.ws_open_at = 0;
            if let Wait::Builtin(Builtin::Echo { .. }) = vu.wait {
                self.flow.ws.unanswered += vu.seq_sent.saturating_sub(vu.seq_expected);
            }
        }
    }

    /// The server closed the session or it failed: end the iteration as failed (the ws://
    /// modes then reconnect after their backoff).
    fn session_lost(&mut self, v: u32, now: u64) -> R {
        self.account_session_end(v, now, false);
        let vu = &mut self.vus[v as usize];
        vu.dropped_at = now;
        self.close(v)?;
        let vu = &mut self.vus[v as usize];
        match vu.wait {
            Wait::Builtin(_) | Wait::Message | Wait::Listen | Wait::Handshake => {
                if vu.wait == Wait::Message {
                    let id = vu.step as usize;
                    self.flow.steps[id].error("ws_closed");
                }
                self.end_iteration(v, now, false)
            }
            _ => Ok(()),
        }
    }

    fn builtin_start(&mut self, v: u32, b: Builtin, now: u64) -> R {
        let vu = &mut self.vus[v as usize];
        if !vu.is_ws() {
            return self.end_iteration(v, now, false);
        }
        vu.wait = Wait::Builtin(b);
        vu.seq_sent = 0;
        vu.seq_expected = 0;
        vu.publishers.clear();
        match b {
            Builtin::Hold {
                ping_every: Some(every),
            } => {
                let first = now + (every.as_nanos() as f64 * vu.unit()) as u64;
                self.set_timer(v, first);
            }
            Builtin::Echo { rate, .. } | Builtin::Publish { rate, .. } => {
                // Spread the first send over one period so sessions opened together do not
                // send in lockstep.
                vu.next_send = now + (1e9 / rate * vu.unit()) as u64;
                let at = vu.next_send;
                self.set_timer(v, at);
            }
            _ => {}
        }
        Ok(())
    }

    fn builtin_tick(&mut self, v: u32, b: Builtin, now: u64) -> R {
        let vu = &mut self.vus[v as usize];
        if !vu.is_ws() {
            return Ok(());
        }
        match b {
            Builtin::Hold {
                ping_every: Some(every),
            } => {
                let mask = vu.mask();
                let _ = ws::encode_ping(&now.to_le_bytes(), mask, &mut vu.queue);
                self.flow.ws.pings_sent += 1;
                self.flush(v)?;
                self.set_timer(v, now + every.as_nanos() as u64);
            }
            Builtin::Echo { rate, payload } | Builtin::Publish { rate, payload } => {
                let kind = u8::from(matches!(b, Builtin::Publish { .. }));
                let period = 1e9 / rate;
                let mut body = std::mem::take(&mut self.scratch2);
                let mut n = 0;
                while vu.next_send <= now && n < CATCH_UP {
                    let intended = vu.next_send;
                    if now - intended > self.late_after_ns {
                        self.flow.ws.late += 1;
                    }
                    body.clear();
                    body.extend_from_slice(MAGIC);
                    body.extend_from_slice(&[kind, 0, 0, 0]);
                    body.extend_from_slice(&vu.number.to_le_bytes());
                    body.extend_from_slice(&vu.seq_sent.to_le_bytes());
                    body.extend_from_slice(&intended.to_le_bytes());
                    body.resize((payload as usize).max(PREFIX_LEN), 0);
                    let mask = vu.mask();
                    ws::encode_binary(&body, mask, &mut vu.queue);
                    vu.seq_sent += 1;
                    self.flow.ws.msgs_sent += 1;
                    self.flow.ws.bytes_sent += body.len() as u64;
                    if kind == 0 {
                        self.metrics.requests += 1;
                    }
                    vu.next_send = intended + period as u64;
                    n += 1;
                }
                self.scratch2 = body;
                let next = self.vus[v as usize].next_send;
                self.flush(v)?;
                self.set_timer(v, next.max(now + 1));
            }
            _ => {}
        }
        Ok(())
    }

    // ----- connections -------------------------------------------------------------------

    fn resolve(&mut self, authority: &str) -> Option<u32> {
        if let Some(&id) = self.addr_ids.get(authority) {
            return Some(id);
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.ends_with(']') && h.contains(':') || p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr: SocketAddr = with_port.to_socket_addrs().ok()?.next()?;
        let id = self.addrs.len() as u32;
        self.addrs.push(Box::new(SockAddr::from(addr)));
        self.addr_ids.insert(authority.to_owned(), id);
        Some(id)
    }

    /// The VU's queued bytes need its connection (to `vu.addr`): connect when the slot is
    /// free, else close the old connection first (the release connects).
    fn need_connection(&mut self, v: u32, now: u64) -> R {
        let vu = &self.vus[v as usize];
        match vu.link {
            Link::Free => {
                self.to_connect.push_back((v, vu.generation));
                let _ = now;
                Ok(())
            }
            Link::Ready | Link::Connecting => self.close(v),
            Link::Closing => Ok(()),
        }
    }

    fn connect_due(&mut self, now: u64) -> R {
        let mut n = 0;
        while n < CONNECTS_PER_LOOP {
            let Some((v, generation)) = self.to_connect.pop_front() else {
                break;
            };
            let vu = &self.vus[v as usize];
            if vu.generation != generation || vu.link != Link::Free || vu.wait != Wait::Connect {
                continue;
            }
            self.start_connect(v, now)?;
            n += 1;
        }
        Ok(())
    }

    fn start_connect(&mut self, v: u32, now: u64) -> R {
        let vu = &mut self.vus[v as usize];
        vu.generation = vu.generation.wrapping_add(1) & GENERATION_MASK;
        vu.link = Link::Connecting;
        vu.sending = false;
        vu.send_done = 0;
        vu.recv_armed = false;
        if !matches!(vu.proto, Proto::Handshake(_)) {
            vu.connect_started = now;
        }
        if let Proto::Http(p) = &mut vu.proto {
            p.reset();
        }
        let target = &self.addrs[vu.addr as usize];
        let domain = if target.is_ipv6() {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        let dest = types::DestinationSlot::try_from_slot_target(v).map_err(|_| {
            EngineError::Io(std::io::Error::other("direct descriptor slot out of range"))
        })?;
        let tok = |op| Token::new(v, vu.generation, op).encode();
        let chain = [
            opcode::Socket::new(domain, libc::SOCK_STREAM, libc::IPPROTO_TCP)
                .file_index(Some(dest))
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(tok(op::SOCKET)),
            opcode::Connect::new(types::Fixed(v), target.as_ptr().cast(), target.len())
                .build()
                .user_data(tok(op::CONNECT)),
        ];
        vu.ops += 2;
        // SAFETY: the address is boxed in `addrs`, which only grows and is kept (leaked if
        // needed) until every operation completed; see `shutdown`.
        unsafe { self.ring.push_chain(&chain) }.map_err(EngineError::Io)
    }

    /// Sends what is queued, unless a send is in flight (its completion sends the rest).
    fn flush(&mut self, v: u32) -> R {
        let vu = &mut self.vus[v as usize];
        if vu.sending || vu.link != Link::Ready || vu.queue.is_empty() {
            return Ok(());
        }
        std::mem::swap(&mut vu.send_buf, &mut vu.queue);
        vu.queue.clear();
        vu.send_done = 0;
        self.push_send(v)
    }

    fn push_send(&mut self, v: u32) -> R {
        let vu = &mut self.vus[v as usize];
        let rest = &vu.send_buf[vu.send_done as usize..];
        let entry = opcode::Send::new(types::Fixed(v), rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(Token::new(v, vu.generation, op::SEND).encode());
        vu.sending = true;
        vu.ops += 1;
        // SAFETY: `send_buf` is not touched while `sending` is set (new bytes go to `queue`),
        // and the VU (with its buffer) lives until every operation completed.
        unsafe { self.ring.push(&entry) }.map_err(EngineError::Io)
    }

    fn arm_recv(&mut self, v: u32) -> R {
        let vu = &mut self.vus[v as usize];
        let entry = opcode::RecvMulti::new(types::Fixed(v), BGID)
            .build()
            .user_data(Token::new(v, vu.generation, op::RECV).encode());
        vu.recv_armed = true;
        vu.ops += 1;
        // SAFETY: the receive writes only into the registered buffer ring, which outlives it.
        unsafe { self.ring.push(&entry) }.map_err(EngineError::Io)
    }

    /// Starts closing the VU's connection (cancel its receive or connect, close the slot).
    fn close(&mut self, v: u32) -> R {
        let vu = &mut self.vus[v as usize];
        let target_op = match vu.link {
            Link::Closing | Link::Free => return Ok(()),
            Link::Connecting => Some(op::CONNECT),
            Link::Ready => vu.recv_armed.then_some(op::RECV),
        };
        if vu.link == Link::Ready {
            self.open_now -= 1;
        }
        vu.link = Link::Closing;
        vu.queue.clear();
        let tok = |op| Token::new(v, vu.generation, op).encode();
        let close = opcode::Close::new(types::Fixed(v))
            .build()
            .user_data(tok(op::CLOSE));
        match target_op {
            Some(t) => {
                let chain = [
                    opcode::AsyncCancel::new(tok(t))
                        .build()
                        .flags(squeue::Flags::IO_HARDLINK)
                        .user_data(tok(op::CANCEL)),
                    close,
                ];
                vu.ops += 2;
                // SAFETY: neither entry points at memory.
                unsafe { self.ring.push_chain(&chain) }.map_err(EngineError::Io)
            }
            None => {
                vu.ops += 1;
                // SAFETY: the entry points at no memory.
                unsafe { self.ring.push(&close) }.map_err(EngineError::Io)
            }
        }
    }

    /// A closing slot whose operations all completed is free; a VU waiting for a connection
    /// gets it now.
    fn maybe_release(&mut self, v: u32, now: u64) -> R {
        let vu = &mut self.vus[v as usize];
        if vu.link != Link::Closing || vu.ops != 0 {
            return Ok(());
        }
        vu.link = Link::Free;
        vu.sending = false;
        if vu.wait == Wait::Connect {
            return self.need_connection(v, now);
        }
        Ok(())
    }

    fn handle_completions(&mut self, now: u64) -> R {
        let overflow = self.ring.reap(&mut self.cqes);
        self.metrics.cq_overflows = u64::from(overflow);
        for i in 0..self.cqes.len() {
            let (user_data, res, flags) = self.cqes[i];
            let tok = Token::decode(user_data);
            if tok.op == op::RECV {
                self.on_recv(tok, res, flags, now)?;
            } else {
                self.on_completion(tok, res, now)?;
            }
        }
        self.bufs.commit();
        Ok(())
    }

    fn on_recv(&mut self, tok: Token, res: i32, flags: u32, now: u64) -> R {
        let v = tok.slot;
        let finished = !cqueue::more(flags);
        let current = self.vus[v as usize].generation == tok.generation;
        let mut got = false;
        if let Some(bid) = cqueue::buffer_select(flags) {
            if res > 0 && current && self.vus[v as usize].link == Link::Ready {
                self.metrics.bytes_received += res as u64;
                self.rx.clear();
                self.rx.extend_from_slice(self.bufs.get(bid, res as usize));
                got = true;
            }
            self.bufs.recycle(bid);
        }
        let vu = &mut self.vus[v as usize];
        if finished {
            vu.ops -= 1;
            vu.recv_armed = false;
        }
        if !current {
            return self.maybe_release(v, now);
        }
        if got {
            match vu.proto {
                Proto::Http(_) => self.on_http_data(v, now)?,
                Proto::Handshake(_) | Proto::Ws(_) => self.on_ws_data(v, now)?,
                Proto::None => {}
            }
        }
        let vu = &mut self.vus[v as usize];
        if vu.link != Link::Ready {
            return self.maybe_release(v, now);
        }
        if res == 0 {
            self.metrics.closed_by_peer += 1;
            return self.peer_closed(v, now, None);
        }
        if res < 0 {
            let errno = -res;
            if errno == libc::ENOBUFS {
                self.metrics.recv_buffer_exhausted += 1;
                return self.arm_recv(v);
            }
            let kind = if errno == libc::ECONNRESET {
                ErrorKind::Reset
            } else {
                ErrorKind::RecvFailed
            };
            return self.peer_closed(v, now, Some(kind));
        }
        if finished {
            self.arm_recv(v)?;
        }
        Ok(())
    }

    /// The connection ended under the VU (EOF or error).
    fn peer_closed(&mut self, v: u32, now: u64, err: Option<ErrorKind>) -> R {
        let vu = &mut self.vus[v as usize];
        match (&vu.proto, vu.wait) {
            (Proto::Http(_), Wait::Response) => {
                let kind = err.unwrap_or(ErrorKind::ClosedMidResponse);
                self.metrics.record_error(kind);
                let step = vu.step as usize;
                self.fail_step(v, step, kind.as_str());
                self.close(v)?;
                self.resume(v, now)
            }
            (Proto::Ws(_), Wait::CloseAck) => {
                self.account_session_end(v, now, true);
                self.close(v)?;
                self.resume(v, now)
            }
            (Proto::Ws(_) | Proto::Handshake(_), _) => {
                if matches!(vu.proto, Proto::Handshake(_)) && vu.wait == Wait::Handshake {
                    let id = vu.step as usize;
                    self.flow.ws.sessions_failed += 1;
                    self.flow.ws.error("closed_during_handshake");
                    self.fail_step(v, id, "closed_during_handshake");
                    self.close(v)?;
                    return self.end_iteration(v, now, false);
                }
                let mid_frame = matches!(&vu.proto, Proto::Ws(dec) if dec.in_progress());
                self.flow.ws.error(match (err, mid_frame) {
                    (Some(_), _) => "reset",
                    (None, true) => "closed_mid_frame",
                    (None, false) => "eof",
                });
                self.session_lost(v, now)
            }
            _ => self.close(v),
        }
    }

    fn on_completion(&mut self, tok: Token, res: i32, now: u64) -> R {
        let v = tok.slot;
        let vu = &mut self.vus[v as usize];
        if vu.generation != tok.generation {
            return Ok(());
        }
        vu.ops -= 1;
        match tok.op {
            op::SOCKET => {
                if res < 0 && res != -libc::ECANCELED && vu.link == Link::Connecting {
                    return self.connect_failed(v, -res, now);
                }
                self.maybe_release(v, now)
            }
            op::CONNECT => {
                if vu.link != Link::Connecting {
                    return self.maybe_release(v, now);
                }
                if res < 0 {
                    return self.connect_failed(v, -res, now);
                }
                vu.link = Link::Ready;
                self.open_now += 1;
                self.metrics.conns_opened += 1;
                self.metrics
                    .connect_latency
                    .saturating_record(ns_to_us(now.saturating_sub(vu.connect_started)));
                self.arm_recv(v)?;
                let vu = &mut self.vus[v as usize];
                match (&vu.proto, vu.wait) {
                    (Proto::Http(_), Wait::Connect) => self.send_request(v, now),
                    (Proto::Handshake(_), Wait::Connect) => {
                        vu.wait = Wait::Handshake;
                        self.flush(v)
                    }
                    _ => self.flush(v),
                }
            }
            op::CANCEL | op::CLOSE => self.maybe_release(v, now),
            op::SEND => {
                vu.sending = false;
                if vu.link != Link::Ready {
                    return self.maybe_release(v, now);
                }
                if res < 0 {
                    let kind = if res == -libc::ECONNRESET || res == -libc::EPIPE {
                        ErrorKind::Reset
                    } else {
                        ErrorKind::SendFailed
                    };
                    return self.peer_closed(v, now, Some(kind));
                }
                self.metrics.bytes_sent += res as u64;
                vu.send_done += res as u32;
                if (vu.send_done as usize) < vu.send_buf.len() {
                    return self.push_send(v);
                }
                self.flush(v)
            }
            _ => unreachable!("unknown op {} in a completion token", tok.op),
        }
    }

    fn connect_failed(&mut self, v: u32, errno: i32, now: u64) -> R {
        self.metrics.conns_failed += 1;
        let kind = if errno == libc::ECONNREFUSED {
            ErrorKind::ConnectRefused
        } else {
            ErrorKind::ConnectFailed
        };
        self.metrics.record_error(kind);
        self.close(v)?;
        let vu = &mut self.vus[v as usize];
        let id = vu.step as usize;
        let is_ws = matches!(vu.proto, Proto::Handshake(_));
        vu.proto = Proto::None;
        self.fail_step(v, id, kind.as_str());
        if is_ws {
            self.flow.ws.sessions_failed += 1;
            self.flow.ws.error(kind.as_str());
            self.maybe_release(v, now)?;
            return self.end_iteration(v, now, false);
        }
        self.maybe_release(v, now)?;
        self.resume(v, now)
    }

    /// Closes every connection and waits (bounded) until the kernel finished every operation,
    /// so no buffer is freed while the kernel may still use it.
    fn shutdown(&mut self) {
        let now = self.clock.now_ns();
        for v in 0..self.vus.len() as u32 {
            let vu = &self.vus[v as usize];
            if vu.iterating || vu.link == Link::Ready {
                self.stop_vu(v, now);
            } else {
                self.account_session_end(v, now, false);
                if self.close(v).is_err() {
                    break;
                }
            }
        }
        let deadline = self.clock.now_ns() + 2_000_000_000 + 100_000 * self.vus.len() as u64;
        while self.vus.iter().any(|c| c.ops > 0) && self.clock.now_ns() < deadline {
            if self
                .ring
                .submit_and_wait(Some(Duration::from_millis(10)))
                .is_err()
            {
                break;
            }
            let now = self.clock.now_ns();
            if self.handle_completions(now).is_err() {
                break;
            }
        }
        let pending = self.vus.iter().filter(|c| c.ops > 0).count() as u64;
        if pending > 0 {
            // The kernel may still read send buffers or addresses: leak them.
            self.metrics.closing_at_exit = pending;
            std::mem::forget(std::mem::take(&mut self.vus));
            std::mem::forget(std::mem::take(&mut self.addrs));
        }
        self.ring.unregister_buf_ring(&self.bufs);
    }
}

/// Appends `name: value\r\n` with the value rendered; CR and LF in a rendered value are
/// dropped (they would end the header and let data inject others).
fn push_header(
    out: &mut Vec<u8>,
    name: &str,
    value: &crate::scenario::model::Template,
    state: &mut VuState,
    shared: &Shared,
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    let at = out.len();
    state.render(value, shared, out);
    if out[at..].iter().any(|&b| b == b'\r' || b == b'\n') {
        let clean: Vec<u8> = out[at..]
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        out.truncate(at);
        out.extend_from_slice(&clean);
    }
    out.extend_from_slice(b"\r\n");
}

/// Formats `n` in decimal into `buf`.
fn itoa_buf(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Splits `http://authority/path?q` (or `ws://` when `ws`) into authority and path.
pub(crate) fn split_url(url: &[u8], ws: bool) -> Result<(&str, &str), &'static str> {
    let url = std::str::from_utf8(url).map_err(|_| "bad_url")?;
    let (scheme, rest) = url.split_once("://").ok_or("bad_url")?;
    let ok = if ws {
        scheme.eq_ignore_ascii_case("ws")
    } else {
        scheme.eq_ignore_ascii_case("http")
    };
    if !ok {
        return Err(
            if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
                "tls_not_supported"
            } else {
                "bad_url"
            },
        );
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err("bad_url");
    }
    Ok((authority, if path.is_empty() { "/" } else { path }))
}

/// Reads the ws:// modes' 32-byte prefix: (kind, sender VU, sequence, intended send ns).
fn parse_prefix(msg: &[u8]) -> Option<(u8, u64, u64, u64)> {
    if msg.len() < PREFIX_LEN || &msg[..4] != MAGIC {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(msg[at..at + 8].try_into().expect("8 bytes"));
    Some((msg[4], word(8), word(16), word(24)))
}

/// Advances an expected sequence number with `seq`, counting gaps and repeats.
fn track_seq(expected: &mut u64, seq: u64, ws: &mut crate::metrics::flow::WsStats) {
    use std::cmp::Ordering as O;
    match seq.cmp(expected) {
        O::Equal => *expected += 1,
        O::Greater => {
            ws.lost += seq - *expected;
            *expected = seq + 1;
        }
        O::Less => ws.duplicates += 1,
    }
}

fn response_error_kind(kind: &str) -> ErrorKind {
    match kind {
        "headers_too_large" => ErrorKind::HeadersTooLarge,
        "invalid_chunk" => ErrorKind::InvalidChunk,
        "invalid_content_length" => ErrorKind::InvalidContentLength,
        "body_too_large" => ErrorKind::BodyTooLarge,
        "closed_mid_response" => ErrorKind::ClosedMidResponse,
        _ => ErrorKind::MalformedResponse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn itoa_formats_decimal() {
        assert_eq!(itoa_buf(0, &mut [0; 20]), b"0");
        assert_eq!(itoa_buf(1_048_576, &mut [0; 20]), b"1048576");
        assert_eq!(
            itoa_buf(u64::MAX, &mut [0; 20]),
            u64::MAX.to_string().as_bytes()
        );
    }
}
