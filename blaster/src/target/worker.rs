//! One server thread: its own ring, listening socket, provided-buffer ring and connection slab,
//! driven by completions until the stop flag is set.
//!
//! Boundary: this file owns every io_uring operation of the server and every buffer the kernel
//! reads or writes; what to answer comes from [`super::http`] and how it looks on the wire from
//! [`super::respond`].
//!
//! Per thread: a multishot accept into direct descriptors; per connection, a multishot receive
//! into the buffer ring and at most one send in flight. The slab is indexed by the direct
//! descriptor the accept returned; a [`Token`] in every operation carries slot, generation and
//! operation.
//!
//! Connection life: `Open` (serving) -> optionally `Linger` (after a `Connection: close`
//! answer: `shutdown(SHUT_WR)`, discard input until the peer's FIN or a timeout) -> `Draining`
//! (each operation of the slot in flight is cancelled by its user data, then its completion
//! awaited) -> `Closing` (the `Close` of the descriptor is submitted only once nothing else of
//! the slot is in flight) -> `Free`. Because the descriptor stays in the table until that
//! `Close`, the kernel cannot hand its index to a new connection while an old operation could
//! still touch the slot's buffers; a `Close` linked behind the cancel would free the index
//! before the cancelled operations' completions arrive. Cancels go by user data because a
//! cancel by descriptor scans every armed operation of the ring (quadratic when thousands of
//! connections close at once).
//!
//! Output: responses are appended to `wbuf` while `flight` (the previous batch) is being sent;
//! when the send completes the two swap, so a buffer the kernel is reading is never written or
//! reallocated. Large bodies are sent straight from static memory. Responses leave in request
//! order: a delayed one (a `Timeout` operation) holds back those behind it.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::mem;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types};

use super::ServeStats;
use super::broker::{Broker, Interest, Mail};
use super::http::{self, Parsed, Reply, Request};
use super::mock::{MockUpgrade, MockWorker};
use super::respond::{self, Meta, Piece, Stream};
use crate::engine::ring::{BufRing, GENERATION_MASK, Ring, RingConfig, Token};
use crate::proto::ws::{
    self, ChunkEvent, Control, Data, DataChunk, Event, FrameDecoder, OpCode, WsLimits,
};

/// How long one wait for completions lasts before the stop flag is checked again.
const WAIT: Duration = Duration::from_millis(50);
/// How long a connection we closed waits for the peer's FIN before it is closed anyway.
const LINGER: Duration = Duration::from_secs(1);
/// How long accepting pauses after a resource error when no connection has closed since.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// How long stopping waits for outstanding operations before giving up on them.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Provided-buffer group of the receive buffers.
const BGID: u16 = 0;
/// Size of one receive buffer.
const BUF_SIZE: u32 = 4096;

/// Output waiting behind the send in flight above which parsing pauses...
const OUT_HIGH: usize = 256 * 1024;
/// ...and below which it resumes.
const OUT_LOW: usize = 64 * 1024;
/// Replies waiting behind a delay or a streamed body above which parsing pauses...
const BACKLOG_HIGH: usize = 256;
/// ...and below which it resumes.
const BACKLOG_LOW: usize = 64;
/// Unparsed input kept while paused above which the receive is cancelled (TCP then pushes back).
const PAUSED_INPUT_MAX: usize = 64 * 1024;
/// Unparsed input kept while paused above which the connection is closed: the receive could
/// not be stopped and the client keeps sending without reading.
const PAUSED_INPUT_LIMIT: usize = 8 * 1024 * 1024;
/// Output waiting for a pubsub subscriber above which it is dropped (it does not read).
const WS_SUBSCRIBER_LIMIT: usize = 64 << 20;
/// Emptied buffers keep at most this much capacity.
const KEEP_CAPACITY: usize = 64 * 1024;

// Operation codes in tokens.
const OP_ACCEPT: u8 = 1;
const OP_RECV: u8 = 2;
const OP_SEND: u8 = 3;
const OP_TIMER: u8 = 4;
const OP_SHUTDOWN: u8 = 5;
const OP_CLOSE: u8 = 6;
// Cancels by user data (a hash lookup; a cancel by descriptor would scan every armed
// operation of the ring). They post a completion only when they missed: the target had just
// completed, or was momentarily between two runs; then they are retried while the target is
// still in flight.
const OP_CANCEL_ACCEPT: u8 = 7;
const OP_CANCEL_RECV: u8 = 8;
const OP_CANCEL_SEND: u8 = 9;
const OP_CANCEL_TIMER: u8 = 10;
/// The pub/sub wake-up eventfd of mock mode became readable.
const OP_WAKE: u8 = 11;

// Operations of a connection in flight (`Conn::ops`).
const IN_RECV: u8 = 1;
const IN_SEND: u8 = 2;
const IN_TIMER: u8 = 4;
/// Shutdown is never cancelled: it completes on its own, quickly.
const IN_SHUTDOWN: u8 = 8;

// Connection flags (`Conn::flags`).
/// The peer sent FIN: no more input.
const PEER_CLOSED: u8 = 1;
/// A response announced `Connection: close`: ignore further requests, close once flushed.
const CLOSE_AFTER: u8 = 2;
/// Too much output is waiting: input is kept unparsed until it drains.
const PAUSED: u8 = 4;
/// A cancel of the receive (for backpressure) is in flight.
const RECV_CANCELLING: u8 = 8;
/// Mock mode: the body of the current request is being kept (in `Cx::collects`).
const COLLECTING: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Open,
    Linger,
    Draining,
    Closing,
}

/// A reply waiting for the ones before it.
#[derive(Debug)]
struct Pending {
    reply: Reply,
    meta: Meta,
    /// For a delayed reply: when it is due (cleared when its timer fired).
    deadline: Option<Instant>,
}

/// One connection slot.
struct Conn {
    generation: u32,
    state: State,
    /// `IN_*` bits: operations in flight.
    ops: u8,
    /// `PEER_CLOSED`, `CLOSE_AFTER`, ... bits.
    flags: u8,
    /// Bytes of the current request's body still to skip.
    body_left: u64,
    /// Bytes of the send in flight already sent.
    flight_off: usize,
    /// The send in flight comes from static memory (a body piece) instead of `flight`.
    flight_static: Option<&'static [u8]>,
    /// The rest of a large body being sent.
    stream: Option<Stream>,
    /// Encoded output waiting for the send in flight.
    wbuf: Vec<u8>,
    /// Output of the send in flight; untouched until its completion.
    flight: Vec<u8>,
    /// Unparsed input (a partial head, or input held back while paused).
    inbuf: Vec<u8>,
    /// Replies held back by a delayed reply or a streamed body.
    backlog: VecDeque<Pending>,
    /// The timeout's timespec; the kernel reads it until the timeout completes.
    timer: types::Timespec,
    /// WebSocket state once the connection upgraded (boxed: plain HTTP connections pay 8
    /// bytes for it).
    ws: Option<Box<Ws>>,
}

/// Mock mode: a request head kept while its body is read.
struct Collect {
    head: Vec<u8>,
    body: Vec<u8>,
}

/// What the connections of one worker share: its counters and, in mock mode, the mock.
pub(super) struct Cx {
    pub(super) stats: ServeStats,
    pub(super) mock: Option<MockWorker>,
    /// Mock mode with an `ip` rate limit: each slot's peer address.
    peers: Vec<Option<IpAddr>>,
    /// Mock mode: requests whose body is being read (slot -> head and body so far; the
    /// connection has `COLLECTING` set). Kept here rather than in `Conn`, which stays small
    /// for the connections that never need it.
    collects: HashMap<u32, Collect>,
    /// Largest WebSocket frame and message a client may send.
    ws_limits: WsLimits,
}

/// An upgraded connection (`/ws/echo` or `/ws/pubsub/{topic}`).
///
/// Echo streams: every payload piece the decoder reports ([`DataChunk`]) is sent back at once
/// as its own frame (the first with the message's opcode, the rest continuations, the last
/// final), so a message of any size is forwarded without being kept, only refragmented.
/// Pubsub keeps each message whole until it is complete (`msg`), because frames of different
/// publishers must not interleave at a subscriber; then it is queued once (`publish`) and the
/// worker copies it to every subscriber's output.
struct Ws {
    decoder: FrameDecoder,
    /// `/ws/pubsub/{topic}`: the topic; empty for echo.
    topic: Box<str>,
    pubsub: bool,
    /// Listed in the worker's topic table.
    subscribed: bool,
    /// Pubsub: the message being received.
    msg: Vec<u8>,
    /// Pubsub: complete messages, encoded, waiting for the worker's fan-out.
    publish: Vec<u8>,
    /// Messages received.
    messages: u64,
    close_after: Option<u64>,
    delay: Option<Duration>,
    drop_at: Option<Instant>,
    /// Echo with a delay: encoded frames not yet due...
    delayed: Vec<u8>,
    /// ...their due times and lengths (a complete message, or a close, each)...
    due: VecDeque<(Instant, usize)>,
    /// ...and the bytes of `delayed` that `due` covers.
    covered: usize,
    /// When the timer in flight (if any) fires.
    timer_at: Option<Instant>,
    /// A cancel of that timer was sent.
    timer_cancelling: bool,
    /// Mock mode: the index of the connection's WebSocket route.
    mock: Option<u32>,
}

impl Ws {
    /// `limits`: the largest frame and message accepted (`blaster serve --ws-max-frame`,
    /// `--ws-max-message`); a larger one is answered with close 1009.
    fn new(
        topic: Box<str>,
        pubsub: bool,
        mock: Option<u32>,
        knobs: http::WsTarget<'_>,
        limits: WsLimits,
    ) -> Ws {
        let ms = |ms: u32| Duration::from_millis(u64::from(ms));
        Ws {
            decoder: FrameDecoder::server(limits, true),
            topic,
            pubsub,
            subscribed: false,
            msg: Vec::new(),
            publish: Vec::new(),
            messages: 0,
            close_after: knobs.close_after,
            delay: knobs.delay_ms.filter(|&d| d > 0).map(ms),
            drop_at: knobs.drop_at_ms.map(|d| Instant::now() + ms(d)),
            delayed: Vec::new(),
            due: VecDeque::new(),
            covered: 0,
            timer_at: None,
            timer_cancelling: false,
            mock,
        }
    }

    /// Output for the peer, behind whatever is delayed.
    fn out<'a>(&'a mut self, wbuf: &'a mut Vec<u8>) -> &'a mut Vec<u8> {
        if self.delay.is_some() {
            &mut self.delayed
        } else {
            wbuf
        }
    }

    /// Marks everything in `delayed` so far as due after the delay.
    fn seal_delayed(&mut self) {
        if let Some(delay) = self.delay {
            let len = self.delayed.len() - self.covered;
            let due = self
                .due
                .back()
                .map_or(Instant::now() + delay, |&(last, _)| {
                    last.max(Instant::now() + delay)
                });
            self.due.push_back((due, len));
            self.covered += len;
        }
    }
}

impl Conn {
    fn new() -> Conn {
        Conn {
            generation: 0,
            state: State::Free,
            ops: 0,
            flags: 0,
            body_left: 0,
            flight_off: 0,
            flight_static: None,
            stream: None,
            wbuf: Vec::new(),
            flight: Vec::new(),
            inbuf: Vec::new(),
            backlog: VecDeque::new(),
            timer: types::Timespec::new(),
            ws: None,
        }
    }

    #[inline]
    fn token(&self, slot: u32, op: u8) -> u64 {
        Token::new(slot, self.generation, op).encode()
    }

    /// Starts a new connection on this slot (which is `Free`, or `Closing` with its `Close`
    /// already done since the kernel handed the index out again).
    fn open(&mut self, ring: &mut Ring, slot: u32) -> io::Result<()> {
        debug_assert_eq!(self.ops, 0);
        self.generation = (self.generation + 1) & GENERATION_MASK;
        self.state = State::Open;
        self.flags = 0;
        self.body_left = 0;
        self.ws = None;
        self.arm_recv(ring, slot)
    }

    fn arm_recv(&mut self, ring: &mut Ring, slot: u32) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(types::Fixed(slot), BGID)
            .build()
            .user_data(self.token(slot, OP_RECV));
        // SAFETY: a multishot receive writes only into the registered buffer ring, which stays
        // registered and mapped until every operation of the worker has completed (or is
        // leaked with it, see `Worker::finish`).
        unsafe { ring.push(&entry) }?;
        self.ops |= IN_RECV;
        Ok(())
    }

    /// Handles received bytes (the buffer is recycled by the caller afterwards).
    fn on_data(&mut self, data: &[u8], slot: u32, cx: &mut Cx) {
        if self.state != State::Open || self.flags & CLOSE_AFTER != 0 {
            return; // lingering or closing: input is discarded
        }
        if self.inbuf.is_empty() && self.flags & PAUSED == 0 {
            // The common case: parse straight from the provided buffer, keep only a tail.
            let used = self.feed(data, slot, cx);
            if used < data.len() {
                self.inbuf.extend_from_slice(&data[used..]);
            }
        } else {
            self.inbuf.extend_from_slice(data);
            if self.flags & PAUSED == 0 {
                self.feed_inbuf(slot, cx);
            }
        }
    }

    fn feed_inbuf(&mut self, slot: u32, cx: &mut Cx) {
        let mut input = mem::take(&mut self.inbuf);
        let used = self.feed(&input, slot, cx);
        input.drain(..used);
        if input.is_empty() && input.capacity() > KEEP_CAPACITY {
            input = Vec::new();
        }
        self.inbuf = input;
    }

    /// Parses and queues the requests at the start of `buf`; returns how many bytes were
    /// consumed (the rest is a partial head, or input held back while paused).
    fn feed(&mut self, buf: &[u8], slot: u32, cx: &mut Cx) -> usize {
        let mut pos = 0;
        loop {
            if self.ws.is_some() {
                return pos + self.ws_feed(&buf[pos..], cx);
            }
            if self.body_left > 0 {
                let skip = ((buf.len() - pos) as u64).min(self.body_left);
                if self.flags & COLLECTING != 0
                    && let Some(collect) = cx.collects.get_mut(&slot)
                {
                    collect
                        .body
                        .extend_from_slice(&buf[pos..pos + skip as usize]);
                }
                pos += skip as usize;
                self.body_left -= skip;
                if self.body_left > 0 {
                    return pos;
                }
                if self.flags & COLLECTING != 0 {
                    self.flags &= !COLLECTING;
                    if let Some(collect) = cx.collects.remove(&slot) {
                        self.answer_collected(collect, slot, cx);
                    }
                }
            }
            if self.flags & CLOSE_AFTER != 0 {
                return buf.len();
            }
            if pos == buf.len() {
                return pos;
            }
            if self.output_high() {
                self.flags |= PAUSED;
                cx.stats.input_pauses += 1;
                return pos;
            }
            let parsed = match cx.mock.as_mut() {
                None => http::parse(&buf[pos..]),
                Some(mock) => {
                    let peer = cx.peers.get(slot as usize).copied().flatten();
                    http::parse_with(&buf[pos..], |head| mock.answer(head, None, peer))
                }
            };
            match parsed {
                Parsed::Partial => return pos,
                Parsed::Complete { request, len } => {
                    pos += len;
                    self.body_left = request.body_len;
                    cx.stats.requests += 1;
                    let head = &buf[pos - len..pos];
                    match request.reply {
                        Reply::WebSocket => self.upgrade(head, cx.ws_limits),
                        Reply::MockUpgrade(plan) => self.upgrade_mock(head, *plan, cx.ws_limits),
                        Reply::ReadBody => self.start_collect(head, &request, slot, cx),
                        reply => self.enqueue(Request { reply, ..request }),
                    }
                }
                Parsed::Reject(reply) => {
                    cx.stats.requests += 1;
                    self.enqueue(Request::reject(reply));
                    return buf.len();
                }
            }
        }
    }

    /// Mock mode: the route depends on the body, so keep the head and read the body (the
    /// request is answered when its last byte arrived, by [`Conn::answer_collected`]).
    fn start_collect(&mut self, head: &[u8], request: &Request, slot: u32, cx: &mut Cx) {
        if request.expect_continue && self.stream.is_none() && self.backlog.is_empty() {
            // The client waits for this before it sends the body we wait for.
            self.wbuf.extend_from_slice(respond::CONTINUE);
        }
        let collect = Collect {
            head: head.to_vec(),
            body: Vec::with_capacity(request.body_len.min(1 << 20) as usize),
        };
        cx.collects.insert(slot, collect);
        self.flags |= COLLECTING;
    }

    /// Mock mode: routes a request again now that its body is complete.
    fn answer_collected(&mut self, collect: Collect, slot: u32, cx: &mut Cx) {
        let Some(mock) = cx.mock.as_mut() else {
            return;
        };
        let peer = cx.peers.get(slot as usize).copied().flatten();
        let parsed = http::parse_with(&collect.head, |head| {
            mock.answer(head, Some(&collect.body), peer)
        });
        if let Parsed::Complete { request, .. } = parsed {
            let reply = match request.reply {
                Reply::ReadBody | Reply::MockUpgrade(_) | Reply::WebSocket => {
                    Reply::Malformed("a request body cannot be routed here")
                }
                reply => reply,
            };
            self.enqueue(Request {
                reply,
                expect_continue: false,
                ..request
            });
        }
    }

    /// Encodes the reply to `request` now, or queues it behind a delayed or streamed one.
    fn enqueue(&mut self, request: Request) {
        let close = !request.keep_alive || request.reply.closes();
        if close {
            self.flags |= CLOSE_AFTER;
        }
        let meta = Meta {
            head: request.head,
            close,
            http10: request.http10,
            expect_continue: request.expect_continue && request.body_len > 0,
        };
        let deadline = request.reply.delay().map(|delay| Instant::now() + delay);
        if deadline.is_none() && self.stream.is_none() && self.backlog.is_empty() {
            self.stream = respond::encode(&mut self.wbuf, &request.reply, meta);
        } else {
            self.backlog.push_back(Pending {
                reply: request.reply,
                meta,
                deadline,
            });
        }
    }

    /// Answers a valid WebSocket upgrade (checked by [`http::parse`]) with 101 and switches
    /// the connection to WebSocket.
    fn upgrade(&mut self, head: &[u8], limits: WsLimits) {
        let checked = ws::check_upgrade_request(head);
        let Ok(Some((_, upgrade))) = checked else {
            return self.enqueue(Request::reject(Reply::Malformed("bad upgrade request")));
        };
        let Some(Ok(target)) = http::ws_target(upgrade.target) else {
            return self.enqueue(Request::reject(Reply::Malformed("bad upgrade request")));
        };
        if self.stream.is_some() || !self.backlog.is_empty() {
            let why = "a WebSocket upgrade must not be pipelined behind unanswered requests";
            return self.enqueue(Request::reject(Reply::Malformed(why)));
        }
        upgrade.encode_accept(None, &mut self.wbuf);
        self.ws = Some(Box::new(Ws::new(
            target.topic.unwrap_or_default().into(),
            target.topic.is_some(),
            None,
            target,
            limits,
        )));
    }

    /// Mock mode: answers a valid upgrade on a mock WebSocket route with 101 (and its
    /// welcome message) and switches the connection to WebSocket.
    fn upgrade_mock(&mut self, head: &[u8], plan: MockUpgrade, limits: WsLimits) {
        let checked = ws::check_upgrade_request(head);
        let Ok(Some((_, upgrade))) = checked else {
            return self.enqueue(Request::reject(Reply::Malformed("bad upgrade request")));
        };
        if self.stream.is_some() || !self.backlog.is_empty() {
            let why = "a WebSocket upgrade must not be pipelined behind unanswered requests";
            return self.enqueue(Request::reject(Reply::Malformed(why)));
        }
        upgrade.encode_accept(plan.protocol.as_deref(), &mut self.wbuf);
        if let Some(text) = &plan.welcome {
            ws::encode_server_frame(OpCode::Data(Data::Text), text, true, &mut self.wbuf);
        }
        let knobs = http::WsTarget {
            topic: None,
            close_after: plan.close_after,
            delay_ms: plan.delay_ms,
            drop_at_ms: plan.drop_at_ms,
        };
        self.ws = Some(Box::new(Ws::new(
            plan.topic.unwrap_or_default(),
            plan.pubsub,
            Some(plan.route),
            knobs,
            limits,
        )));
    }

    /// Decodes WebSocket frames at the start of `buf` and queues what they call for; returns
    /// how many bytes were used (the rest is held back while paused).
    fn ws_feed(&mut self, buf: &[u8], cx: &mut Cx) -> usize {
        let mut pos = 0;
        while pos < buf.len() {
            if self.flags & CLOSE_AFTER != 0 {
                return buf.len(); // our close is queued: the rest is ignored
            }
            if self.output_high() {
                self.flags |= PAUSED;
                cx.stats.input_pauses += 1;
                return pos;
            }
            let Some(ws) = self.ws.as_mut() else {
                return buf.len();
            };
            let (used, event) = match ws.decoder.feed_chunks(&buf[pos..]) {
                Ok(decoded) => decoded,
                Err(e) => {
                    self.ws_close(Some(e.close_code().unwrap_or(1002)));
                    return buf.len();
                }
            };
            pos += used;
            match event {
                None | Some(ChunkEvent::Control(Event::Pong(_))) => {}
                Some(ChunkEvent::Data(chunk)) => self.ws_data(chunk, cx),
                Some(ChunkEvent::Control(Event::Ping(payload))) => {
                    // Straight to the output, even ahead of delayed echoes: a control frame
                    // may go between any two frames.
                    let pong = payload.as_slice();
                    let _ = ws::encode_server_control(Control::Pong, pong, &mut self.wbuf);
                }
                Some(ChunkEvent::Control(Event::Close { code, .. })) => {
                    self.ws_close(code);
                    return buf.len();
                }
                Some(ChunkEvent::Control(_)) => {}
            }
        }
        pos
    }

    /// A piece of a message: echoed at once (or behind the delay), or collected for pubsub
    /// (and for every mock route, whose messages are looked at whole).
    fn ws_data(&mut self, chunk: DataChunk<'_>, cx: &mut Cx) {
        let Some(ws) = self.ws.as_mut() else {
            return;
        };
        if let (Some(route), Some(mock)) = (ws.mock, cx.mock.as_mut()) {
            if chunk.first {
                ws.msg.clear();
            }
            chunk.unmask_into(&mut ws.msg);
            if chunk.last {
                let action = mock.ws_message(route, &ws.msg, !ws.topic.is_empty());
                if let Some(topic) = action.subscribe
                    && ws.topic.is_empty()
                {
                    ws.topic = topic;
                }
                let kind = OpCode::Data(chunk.opcode);
                if let Some(reply) = &action.reply {
                    let out = ws.out(&mut self.wbuf);
                    ws::encode_server_frame(OpCode::Data(Data::Text), reply, true, out);
                }
                if action.forward && !ws.pubsub {
                    let msg = mem::take(&mut ws.msg);
                    ws::encode_server_frame(kind, &msg, true, ws.out(&mut self.wbuf));
                    ws.msg = msg;
                } else if action.forward && !ws.topic.is_empty() {
                    ws::encode_server_frame(kind, &ws.msg, true, &mut ws.publish);
                }
                if action.reply.is_some() || (action.forward && !ws.pubsub) {
                    ws.seal_delayed();
                }
                ws.msg.clear();
                if ws.msg.capacity() > KEEP_CAPACITY {
                    ws.msg = Vec::new();
                }
            }
        } else if ws.pubsub {
            if chunk.first {
                ws.msg.clear();
            }
            chunk.unmask_into(&mut ws.msg);
            if chunk.last {
                let len = ws.msg.len() as u64;
                ws::encode_server_header(OpCode::Data(chunk.opcode), len, true, &mut ws.publish);
                ws.publish.extend_from_slice(&ws.msg);
                ws.msg.clear();
                if ws.msg.capacity() > KEEP_CAPACITY {
                    ws.msg = Vec::new();
                }
            }
        } else {
            let opcode = if chunk.first {
                chunk.opcode
            } else {
                Data::Continue
            };
            let out = ws.out(&mut self.wbuf);
            ws::encode_server_header(OpCode::Data(opcode), chunk.len() as u64, chunk.last, out);
            chunk.unmask_into(out);
            if chunk.last {
                ws.seal_delayed();
            }
        }
        if chunk.last {
            ws.messages += 1;
            if ws.close_after.is_some_and(|n| ws.messages >= n) {
                self.ws_close(Some(1000));
            }
        }
    }

    /// Queues our close frame (with `code`, or empty) behind everything queued, then stops
    /// reading; the connection lingers and closes once it is sent.
    fn ws_close(&mut self, code: Option<u16>) {
        if let Some(ws) = self.ws.as_mut() {
            let code = code.filter(|&c| ws::CloseCode::from(c).is_allowed());
            let out = ws.out(&mut self.wbuf);
            let _ = ws::encode_server_close(code, "", out);
            ws.seal_delayed();
        }
        self.flags |= CLOSE_AFTER;
    }

    /// WebSocket timers: drops the connection at `drop_at`, moves due delayed frames to the
    /// output, and keeps one timer armed for the next of those moments. Returns whether the
    /// connection started closing.
    fn ws_timers(&mut self, ring: &mut Ring, slot: u32) -> io::Result<bool> {
        let Some(ws) = self.ws.as_mut() else {
            return Ok(false);
        };
        let now = Instant::now();
        let closing = self.flags & CLOSE_AFTER != 0;
        let drop_at = ws.drop_at.filter(|_| !closing);
        if drop_at.is_some_and(|at| at <= now) {
            self.begin_close(ring, slot)?;
            return Ok(true);
        }
        while let Some(&(due, len)) = ws.due.front() {
            if due > now {
                break;
            }
            self.wbuf.extend_from_slice(&ws.delayed[..len]);
            ws.delayed.drain(..len);
            ws.covered -= len;
            ws.due.pop_front();
        }
        let next = match (ws.due.front().map(|&(due, _)| due), drop_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.ops & IN_TIMER == 0 {
            if let Some(next) = next {
                ws.timer_at = Some(next);
                self.arm_timer(ring, slot, next.saturating_duration_since(now))?;
            }
        } else if !ws.timer_cancelling
            && next.is_none_or(|next| ws.timer_at.is_some_and(|at| next < at))
        {
            // The timer in flight is no longer needed, or too late: cancel it; its completion
            // re-arms for the right moment.
            ws.timer_cancelling = true;
            self.cancel(ring, slot, IN_TIMER)?;
        }
        Ok(false)
    }

    fn output_high(&self) -> bool {
        self.wbuf.len() >= OUT_HIGH || self.backlog.len() >= BACKLOG_HIGH
    }

    fn output_low(&self) -> bool {
        self.wbuf.len() <= OUT_LOW && self.backlog.len() <= BACKLOG_LOW
    }

    /// Nothing left to send and nothing pending.
    fn idle(&self) -> bool {
        self.ops & (IN_SEND | IN_TIMER) == 0
            && self.wbuf.is_empty()
            && self.stream.is_none()
            && self.backlog.is_empty()
            && self.ws.as_ref().is_none_or(|ws| ws.due.is_empty())
    }

    /// Moves an open connection forward after any event: sends, resumes paused input,
    /// re-arms the receive, or starts closing when everything is answered.
    fn drive(&mut self, ring: &mut Ring, slot: u32, cx: &mut Cx) -> io::Result<()> {
        if self.state != State::Open {
            return Ok(());
        }
        self.pump(ring, slot)?;
        while self.flags & PAUSED != 0 && self.output_low() {
            self.flags &= !PAUSED;
            self.feed_inbuf(slot, cx);
            self.pump(ring, slot)?;
        }
        if self.ws.is_some() {
            if self.ws_timers(ring, slot)? {
                return Ok(());
            }
            self.pump(ring, slot)?;
        }
        let reading_done = self.flags & CLOSE_AFTER != 0
            || (self.flags & PEER_CLOSED != 0 && self.flags & PAUSED == 0);
        if reading_done {
            if !self.idle() {
                return Ok(());
            }
            if self.flags & PEER_CLOSED != 0 {
                return self.begin_close(ring, slot);
            }
            return self.start_linger(ring, slot);
        }
        if self.flags & PAUSED != 0 {
            if self.inbuf.len() > PAUSED_INPUT_LIMIT {
                return self.begin_close(ring, slot);
            }
            let flooding = self.inbuf.len() >= PAUSED_INPUT_MAX;
            if flooding && self.ops & IN_RECV != 0 && self.flags & RECV_CANCELLING == 0 {
                // Stop receiving until the output drains, so the peer feels TCP backpressure.
                // A cancel can miss a receive the kernel is running right now; its failure
                // completion clears RECV_CANCELLING and the next input tries again.
                self.cancel(ring, slot, IN_RECV)?;
                self.flags |= RECV_CANCELLING;
            }
            return Ok(());
        }
        if self.ops & IN_RECV == 0 && self.flags & PEER_CLOSED == 0 {
            self.arm_recv(ring, slot)?;
        }
        Ok(())
    }

    /// Starts the next send (or delay timer) if none is in flight.
    fn pump(&mut self, ring: &mut Ring, slot: u32) -> io::Result<()> {
        loop {
            if self.ops & IN_SEND != 0 {
                return Ok(());
            }
            if !self.wbuf.is_empty() {
                debug_assert!(self.flight.is_empty());
                mem::swap(&mut self.wbuf, &mut self.flight);
                self.flight_static = None;
                self.flight_off = 0;
                return self.send_flight(ring, slot);
            }
            if let Some(stream) = &mut self.stream {
                let piece = stream.next_piece(&mut self.wbuf);
                if stream.finished() {
                    self.stream = None;
                }
                match piece {
                    Piece::Send(data) => {
                        self.flight_static = Some(data);
                        self.flight_off = 0;
                        return self.send_flight(ring, slot);
                    }
                    Piece::Appended => continue,
                }
            }
            if self.ops & IN_TIMER != 0 {
                return Ok(()); // a delayed reply holds back the ones behind it
            }
            let Some(front) = self.backlog.front() else {
                return Ok(());
            };
            if let Some(deadline) = front.deadline {
                let now = Instant::now();
                if deadline > now {
                    return self.arm_timer(ring, slot, deadline - now);
                }
            }
            if let Some(pending) = self.backlog.pop_front() {
                self.stream = respond::encode(&mut self.wbuf, &pending.reply, pending.meta);
            }
        }
    }

    /// Sends the rest of the output in flight (from `flight_off`).
    fn send_flight(&mut self, ring: &mut Ring, slot: u32) -> io::Result<()> {
        let rest: &[u8] = match self.flight_static {
            Some(data) => &data[self.flight_off..],
            None => &self.flight[self.flight_off..],
        };
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        let entry = opcode::Send::new(types::Fixed(slot), rest.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(self.token(slot, OP_SEND));
        // SAFETY: `rest` points either into static memory or into `self.flight`'s heap buffer.
        // `flight` is not written, cleared or reallocated while IN_SEND is set (new output goes
        // to `wbuf`), and the slot (with its buffers) is neither reused nor dropped before this
        // send's completion: a slot is reused only after every operation completed, and a
        // worker that cannot drain leaks the slab (`Worker::finish`).
        unsafe { ring.push(&entry) }?;
        self.ops |= IN_SEND;
        Ok(())
    }

    fn on_send(&mut self, res: i32, ring: &mut Ring, slot: u32, cx: &mut Cx) -> io::Result<()> {
        self.ops &= !IN_SEND;
        match self.state {
            State::Open => {}
            State::Draining => return self.maybe_finish_close(ring, slot),
            _ => return Ok(()),
        }
        if res <= 0 {
            return self.begin_close(ring, slot); // peer gone (EPIPE, ECONNRESET, ...)
        }
        self.flight_off += res as usize;
        let len = match self.flight_static {
            Some(data) => data.len(),
            None => self.flight.len(),
        };
        if self.flight_off < len {
            return self.send_flight(ring, slot); // partial send: continue from the offset
        }
        self.flight_static = None;
        self.flight_off = 0;
        self.flight.clear();
        if self.flight.capacity() > KEEP_CAPACITY {
            self.flight.shrink_to(KEEP_CAPACITY);
        }
        self.drive(ring, slot, cx)
    }

    fn arm_timer(&mut self, ring: &mut Ring, slot: u32, after: Duration) -> io::Result<()> {
        debug_assert_eq!(self.ops & IN_TIMER, 0);
        self.timer = types::Timespec::from(after);
        let entry = opcode::Timeout::new(&self.timer)
            .build()
            .user_data(self.token(slot, OP_TIMER));
        // SAFETY: `self.timer` lives in the worker's slab, a boxed slice that is never resized
        // or moved and outlives every operation (or is leaked, see `Worker::finish`); it is
        // not written again until this timeout's completion clears IN_TIMER.
        unsafe { ring.push(&entry) }?;
        self.ops |= IN_TIMER;
        Ok(())
    }

    fn on_timer(&mut self, ring: &mut Ring, slot: u32, cx: &mut Cx) -> io::Result<()> {
        self.ops &= !IN_TIMER;
        match self.state {
            State::Open => {
                if let Some(front) = self.backlog.front_mut() {
                    front.deadline = None; // due now
                }
                if let Some(ws) = self.ws.as_mut() {
                    ws.timer_at = None;
                    ws.timer_cancelling = false;
                }
                self.drive(ring, slot, cx)
            }
            State::Linger => self.begin_close(ring, slot), // the peer never closed
            State::Draining => self.maybe_finish_close(ring, slot),
            _ => Ok(()),
        }
    }

    fn on_recv_done(
        &mut self,
        res: i32,
        more: bool,
        ring: &mut Ring,
        slot: u32,
        cx: &mut Cx,
    ) -> io::Result<()> {
        if !more {
            self.ops &= !IN_RECV;
            self.flags &= !RECV_CANCELLING;
        }
        match self.state {
            State::Open | State::Linger => {}
            State::Draining => return self.maybe_finish_close(ring, slot),
            _ => return Ok(()),
        }
        if res == 0 {
            self.flags |= PEER_CLOSED;
        } else if res == -libc::ENOBUFS {
            cx.stats.recv_no_buffers += 1; // re-armed below, after this batch's buffers are recycled
        } else if res < 0 && res != -libc::ECANCELED {
            return self.begin_close(ring, slot);
        }
        if self.state == State::Linger {
            if self.flags & PEER_CLOSED != 0 {
                return self.begin_close(ring, slot);
            }
            if self.ops & IN_RECV == 0 {
                return self.arm_recv(ring, slot);
            }
            return Ok(());
        }
        self.drive(ring, slot, cx)
    }

    /// Everything is answered after a `Connection: close`: send FIN, then wait (bounded) for
    /// the peer's FIN so unread input does not turn our close into a reset that could destroy
    /// the response before the peer read it.
    fn start_linger(&mut self, ring: &mut Ring, slot: u32) -> io::Result<()> {
        self.state = State::Linger;
        let entry = opcode::Shutdown::new(types::Fixed(slot), libc::SHUT_WR)
            .build()
            .user_data(self.token(slot, OP_SHUTDOWN));
        // SAFETY: shutdown points at no memory.
        unsafe { ring.push(&entry) }?;
        self.ops |= IN_SHUTDOWN;
        self.arm_timer(ring, slot, LINGER)?;
        if self.ops & IN_RECV == 0 {
            self.arm_recv(ring, slot)?;
        }
        Ok(())
    }

    fn on_shutdown(&mut self, res: i32, ring: &mut Ring, slot: u32) -> io::Result<()> {
        self.ops &= !IN_SHUTDOWN;
        match self.state {
            State::Draining => self.maybe_finish_close(ring, slot),
            State::Linger if res < 0 => self.begin_close(ring, slot),
            _ => Ok(()),
        }
    }

    /// Cancels everything of this connection; the descriptor is closed once all of it completed.
    fn begin_close(&mut self, ring: &mut Ring, slot: u32) -> io::Result<()> {
        if !matches!(self.state, State::Open | State::Linger) {
            return Ok(());
        }
        self.state = State::Draining;
        for op in [IN_RECV, IN_SEND, IN_TIMER] {
            if self.ops & op != 0 {
                self.cancel(ring, slot, op)?;
            }
        }
        self.maybe_finish_close(ring, slot)
    }

    /// Cancels this connection's operation `op` (an `IN_*` bit) by its user data.
    fn cancel(&self, ring: &mut Ring, slot: u32, op: u8) -> io::Result<()> {
        let (target, cancel_op) = match op {
            IN_RECV => (OP_RECV, OP_CANCEL_RECV),
            IN_SEND => (OP_SEND, OP_CANCEL_SEND),
            _ => (OP_TIMER, OP_CANCEL_TIMER),
        };
        let entry =
            opcode::AsyncCancel2::new(types::CancelBuilder::user_data(self.token(slot, target)))
                .build()
                .flags(squeue::Flags::SKIP_SUCCESS)
                .user_data(self.token(slot, cancel_op));
        // SAFETY: a cancel points at no memory.
        unsafe { ring.push(&entry) }
    }

    /// A cancel missed its target: retry while the connection is closing and the target is
    /// still in flight (its completion may also be on its way, then the retry misses too).
    fn on_cancel_missed(&mut self, ring: &mut Ring, slot: u32, op: u8) -> io::Result<()> {
        if op == IN_RECV {
            self.flags &= !RECV_CANCELLING; // backpressure: the next input retries
        }
        if self.state == State::Draining && self.ops & op != 0 {
            return self.cancel(ring, slot, op);
        }
        Ok(())
    }

    /// Submits the `Close` once no operation of the slot is in flight.
    fn maybe_finish_close(&mut self, ring: &mut Ring, slot: u32) -> io::Result<()> {
        if self.state != State::Draining || self.ops != 0 {
            return Ok(());
        }
        let entry = opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data(self.token(slot, OP_CLOSE));
        // SAFETY: close points at no memory.
        unsafe { ring.push(&entry) }?;
        self.state = State::Closing;
        self.reset_buffers();
        Ok(())
    }

    /// Empties the buffers (keeping moderate capacity for the slot's next connection).
    fn reset_buffers(&mut self) {
        self.stream = None;
        self.flight_static = None;
        self.flight_off = 0;
        for buf in [&mut self.wbuf, &mut self.flight, &mut self.inbuf] {
            buf.clear();
            if buf.capacity() > KEEP_CAPACITY {
                *buf = Vec::new();
            }
        }
        self.backlog.clear();
        if self.backlog.capacity() > BACKLOG_HIGH {
            self.backlog = VecDeque::new();
        }
    }
}

/// One listening socket of a worker and its accept.
struct Listener {
    fd: OwnedFd,
    /// An accept is in flight.
    armed: bool,
    /// Mock mode with an `ip` rate limit: the peer address buffer of a single-shot accept
    /// (boxed: the kernel writes it until the accept completes, so it must not move).
    peer: Option<Box<PeerAddr>>,
}

/// Where a single-shot accept writes the peer's address.
struct PeerAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

/// One server thread's state.
pub(super) struct Worker {
    ring: Ring,
    bufs: BufRing,
    /// Connection slots, indexed by direct descriptor; never resized (buffers the kernel
    /// reads, like timespecs, live inside).
    conns: Box<[Conn]>,
    /// One listening socket per port of the server, each with its own accept.
    listeners: Vec<Listener>,
    /// Accepting paused after a resource error (ENFILE: the descriptor table is full).
    accept_paused: Option<Instant>,
    /// A slot was freed since accepting paused.
    freed: bool,
    /// Slots not `Free`.
    live: usize,
    stopping: bool,
    cx: Cx,
    cqes: Vec<(u64, i32, u32)>,
    /// Pubsub topics of this thread, and the broker to the other threads.
    topics: PubSub,
    /// The multishot poll on the pub/sub wake-up eventfd is armed.
    wake_armed: bool,
    /// Pub/sub mail taken from the inbox (kept for its capacity).
    mail: Vec<Mail>,
}

impl Worker {
    /// Sets up the ring (a table of `capacity` direct descriptors) and the receive buffers;
    /// must run on the thread that will call [`Worker::run`] (the ring is single-issuer).
    /// `broker` (with this thread's index) carries pub/sub messages between server threads.
    pub(super) fn new(
        listeners: Vec<OwnedFd>,
        capacity: usize,
        mock: Option<MockWorker>,
        broker: Option<(Arc<Broker>, usize)>,
        ws_limits: WsLimits,
    ) -> anyhow::Result<Worker> {
        let ring = Ring::new(RingConfig::for_connections(capacity))?;
        let entries = (capacity / 4).clamp(256, 4096).next_power_of_two() as u16;
        let bufs = ring.register_buf_ring(BGID, entries, BUF_SIZE)?;
        let conns: Box<[Conn]> = (0..capacity).map(|_| Conn::new()).collect();
        let needs_peer = mock.as_ref().is_some_and(MockWorker::needs_peer);
        let listeners = listeners
            .into_iter()
            .map(|fd| Listener {
                fd,
                armed: false,
                peer: needs_peer.then(|| {
                    Box::new(PeerAddr {
                        // SAFETY: sockaddr_storage is plain old data; all-zero bytes are valid.
                        storage: unsafe { mem::zeroed() },
                        len: 0,
                    })
                }),
            })
            .collect();
        Ok(Worker {
            ring,
            bufs,
            conns,
            listeners,
            accept_paused: None,
            freed: false,
            live: 0,
            stopping: false,
            cx: Cx {
                stats: ServeStats::default(),
                mock,
                peers: if needs_peer {
                    vec![None; capacity]
                } else {
                    Vec::new()
                },
                collects: HashMap::new(),
                ws_limits,
            },
            cqes: Vec::with_capacity(1024),
            topics: PubSub {
                table: HashMap::new(),
                broker,
            },
            wake_armed: false,
            mail: Vec::new(),
        })
    }

    /// Serves until `stop` is set, then closes every connection and returns the counters.
    pub(super) fn run(mut self, stop: &AtomicBool) -> anyhow::Result<ServeStats> {
        let served = self.serve_until(stop);
        let clean = self.drain();
        let mut stats = self.cx.stats;
        if !clean {
            stats.stuck_at_stop = self.live as u64 + self.accepts_armed() as u64;
        }
        self.finish(clean);
        served?;
        Ok(stats)
    }

    fn accepts_armed(&self) -> usize {
        self.listeners.iter().filter(|l| l.armed).count()
    }

    fn serve_until(&mut self, stop: &AtomicBool) -> io::Result<()> {
        self.rearm_accept()?;
        self.arm_wake()?;
        while !stop.load(Ordering::Relaxed) {
            self.ring.submit_and_wait(Some(WAIT))?;
            self.complete_batch()?;
            if let Some((broker, index)) = &self.topics.broker
                && broker.has_mail(*index)
            {
                self.deliver_mail()?;
            }
            self.rearm_accept()?;
            self.arm_wake()?;
        }
        Ok(())
    }

    /// Handles every ready completion, then publishes the recycled receive buffers.
    fn complete_batch(&mut self) -> io::Result<()> {
        let mut cqes = mem::take(&mut self.cqes);
        self.ring.reap(&mut cqes);
        let mut result = Ok(());
        for &(user_data, res, flags) in &cqes {
            // Keep the bookkeeping of every completion even after an error.
            let handled = self.dispatch(user_data, res, flags);
            if result.is_ok() {
                result = handled;
            }
        }
        self.bufs.commit();
        self.cqes = cqes;
        result
    }

    fn dispatch(&mut self, user_data: u64, res: i32, flags: u32) -> io::Result<()> {
        let token = Token::decode(user_data);
        match token.op {
            OP_ACCEPT => return self.on_accept(token.slot as usize, res, flags),
            OP_RECV => return self.on_recv(token, res, flags),
            OP_CANCEL_ACCEPT => return self.on_accept_cancel_missed(token.slot as usize),
            OP_WAKE => return self.on_wake(flags),
            _ => {}
        }
        let Worker {
            ring,
            conns,
            cx,
            live,
            freed,
            topics,
            ..
        } = self;
        let slot = token.slot;
        let Some(conn) = conns.get_mut(slot as usize) else {
            return Ok(());
        };
        if conn.generation != token.generation {
            return Ok(()); // a completion of the slot's earlier life
        }
        match token.op {
            OP_SEND => {
                conn.on_send(res, ring, slot, cx)?;
                self.ws_fan_out(slot)
            }
            OP_TIMER => {
                conn.on_timer(ring, slot, cx)?;
                self.ws_fan_out(slot)
            }
            OP_SHUTDOWN => conn.on_shutdown(res, ring, slot),
            OP_CANCEL_RECV => conn.on_cancel_missed(ring, slot, IN_RECV),
            OP_CANCEL_SEND => conn.on_cancel_missed(ring, slot, IN_SEND),
            OP_CANCEL_TIMER => conn.on_cancel_missed(ring, slot, IN_TIMER),
            OP_CLOSE => {
                if conn.state == State::Closing {
                    topics.unsubscribe(slot, conn);
                    if conn.flags & COLLECTING != 0 {
                        cx.collects.remove(&slot);
                    }
                    conn.state = State::Free;
                    *live -= 1;
                    *freed = true;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_recv(&mut self, token: Token, res: i32, flags: u32) -> io::Result<()> {
        let Worker {
            ring,
            bufs,
            conns,
            cx,
            ..
        } = self;
        let bid = cqueue::buffer_select(flags);
        let conn = conns
            .get_mut(token.slot as usize)
            .filter(|c| c.generation == token.generation);
        let Some(conn) = conn else {
            if let Some(bid) = bid {
                bufs.recycle(bid);
            }
            return Ok(());
        };
        if let Some(bid) = bid {
            if res > 0 {
                conn.on_data(bufs.get(bid, res as usize), token.slot, cx);
            }
            bufs.recycle(bid);
        }
        conn.on_recv_done(res, cqueue::more(flags), ring, token.slot, cx)?;
        self.ws_fan_out(token.slot)
    }

    /// After an event of a pubsub connection: lists it under its topic once, and copies the
    /// messages it published to every subscriber of the topic on this thread (itself
    /// included), or, on a mock route, hands them to the broker for every thread.
    fn ws_fan_out(&mut self, slot: u32) -> io::Result<()> {
        let Worker {
            ring,
            conns,
            cx,
            topics,
            ..
        } = self;
        let Some(conn) = conns.get_mut(slot as usize) else {
            return Ok(());
        };
        let generation = conn.generation;
        let open = conn.state == State::Open;
        let Some(ws) = conn.ws.as_mut().filter(|ws| ws.pubsub) else {
            return Ok(());
        };
        if !ws.subscribed && open && !ws.topic.is_empty() {
            ws.subscribed = true;
            topics.subscribe(&ws.topic, slot, generation);
        }
        if ws.publish.is_empty() {
            return Ok(());
        }
        let publish = mem::take(&mut ws.publish);
        let topic = mem::take(&mut ws.topic);
        let mut result = Ok(());
        match (&cx.mock, ws.mock) {
            (Some(mock), Some(_)) => mock.publish(&topic, &publish),
            _ => {
                let PubSub { table, broker } = topics;
                if let Some(t) = table.get_mut(&topic) {
                    result = fan_out(ring, conns, cx, &t.subscribers, &publish);
                    if let Some((broker, index)) = broker {
                        let others = broker.others(*index, &topic, &mut t.interest);
                        broker.send_to(others, &topic, &publish);
                    }
                }
            }
        }
        if let Some(ws) = conns.get_mut(slot as usize).and_then(|c| c.ws.as_mut()) {
            ws.topic = topic;
            ws.publish = publish;
            ws.publish.clear();
            if ws.publish.capacity() > KEEP_CAPACITY {
                ws.publish = Vec::new();
            }
        }
        result
    }

    /// Delivers the pub/sub mail of this thread's inbox to its subscribers.
    fn deliver_mail(&mut self) -> io::Result<()> {
        let Worker {
            ring,
            conns,
            cx,
            topics,
            mail,
            ..
        } = self;
        if let Some((broker, index)) = &topics.broker {
            broker.take(*index, mail);
        }
        let mut result = Ok(());
        for m in mail.drain(..) {
            if let Some(t) = topics.table.get(&*m.topic) {
                let step = fan_out(ring, conns, cx, &t.subscribers, &m.frames);
                if result.is_ok() {
                    result = step;
                }
            }
        }
        result
    }

    /// Arms the multishot poll on the pub/sub wake-up eventfd (if there is a broker).
    fn arm_wake(&mut self) -> io::Result<()> {
        if self.wake_armed || self.stopping {
            return Ok(());
        }
        let Some(fd) = self.topics.broker.as_ref().map(|(b, i)| b.wake_fd(*i)) else {
            return Ok(());
        };
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(Token::new(0, 0, OP_WAKE).encode());
        // SAFETY: a poll points at no memory, and the kernel holds its own reference to the
        // eventfd's file while the poll is armed.
        unsafe { self.ring.push(&entry) }?;
        self.wake_armed = true;
        Ok(())
    }

    fn on_wake(&mut self, flags: u32) -> io::Result<()> {
        if !cqueue::more(flags) {
            self.wake_armed = false;
        }
        if let Some((broker, index)) = &self.topics.broker {
            broker.clear_wake(*index);
        }
        Ok(())
    }

    fn on_accept(&mut self, index: usize, res: i32, flags: u32) -> io::Result<()> {
        let Some(listener) = self.listeners.get_mut(index) else {
            return Ok(());
        };
        if !cqueue::more(flags) {
            listener.armed = false;
        }
        if res < 0 {
            if res != -libc::ECANCELED {
                self.cx.stats.accept_errors += 1;
            }
            if matches!(
                -res,
                libc::ENFILE | libc::EMFILE | libc::ENOMEM | libc::ENOBUFS
            ) {
                // The descriptor table (or memory) is exhausted: wait for a close.
                self.accept_paused = Some(Instant::now());
                self.freed = false;
            }
            return Ok(());
        }
        let slot = res as u32;
        let peer = listener.peer.as_deref().and_then(peer_ip);
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return Err(io::Error::other(format!(
                "accept returned direct descriptor {slot} outside the table"
            )));
        };
        self.topics.unsubscribe(slot, conn);
        match conn.state {
            State::Free => self.live += 1,
            State::Closing => {} // its Close already ran, or the kernel could not reuse the index
            state => {
                return Err(io::Error::other(format!(
                    "accept returned direct descriptor {slot}, whose connection is still {state:?}"
                )));
            }
        }
        if let Some(entry) = self.cx.peers.get_mut(slot as usize) {
            *entry = peer;
        }
        self.cx.stats.accepted += 1;
        conn.open(&mut self.ring, slot)?;
        if self.stopping {
            conn.begin_close(&mut self.ring, slot)?;
        }
        if self.listeners[index].peer.is_some() {
            // A single-shot accept: take the next connection at once.
            self.rearm_accept()?;
        }
        Ok(())
    }

    /// Arms each listener's accept unless it is armed, stopping, or paused for lack of room.
    /// Multishot into direct descriptors; single-shot (with the peer address) when a mock
    /// rate limit is keyed by client IP.
    fn rearm_accept(&mut self) -> io::Result<()> {
        if self.stopping {
            return Ok(());
        }
        if let Some(since) = self.accept_paused {
            let table_full = self.live >= self.conns.len();
            if !self.freed && (table_full || since.elapsed() < ACCEPT_RETRY) {
                return Ok(());
            }
            self.accept_paused = None;
        }
        for (index, listener) in self.listeners.iter_mut().enumerate() {
            if listener.armed {
                continue;
            }
            let token = Token::new(index as u32, 0, OP_ACCEPT).encode();
            let entry = match listener.peer.as_deref_mut() {
                None => opcode::AcceptMulti::new(types::Fd(listener.fd.as_raw_fd()))
                    .allocate_file_index(true)
                    .build(),
                Some(peer) => {
                    peer.len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                    opcode::Accept::new(
                        types::Fd(listener.fd.as_raw_fd()),
                        (&mut peer.storage as *mut libc::sockaddr_storage).cast(),
                        &mut peer.len,
                    )
                    .file_index(Some(types::DestinationSlot::auto_target()))
                    .build()
                }
            };
            // SAFETY: a multishot accept into direct descriptors is given no address buffer,
            // so it points at no memory. A single-shot accept writes the peer address into
            // `peer`, a box owned by the listener that is neither moved nor dropped before the
            // accept completed (`drain` waits for every accept before `finish` drops the
            // listeners, and a worker that cannot drain leaks them). The listening socket
            // stays open until its accept completed, for the same reason.
            unsafe { self.ring.push(&entry.user_data(token)) }?;
            listener.armed = true;
        }
        Ok(())
    }

    /// Stops accepting, closes every connection and waits (bounded) until nothing is in
    /// flight. Returns whether everything completed.
    fn drain(&mut self) -> bool {
        self.stopping = true;
        let mut ok = self.begin_drain().is_ok();
        let deadline = Instant::now() + DRAIN_LIMIT;
        while ok && (self.live > 0 || self.accepts_armed() > 0) && Instant::now() < deadline {
            ok = self.ring.submit_and_wait(Some(WAIT)).is_ok();
            ok &= self.complete_batch().is_ok();
        }
        ok && self.live == 0 && self.accepts_armed() == 0
    }

    fn begin_drain(&mut self) -> io::Result<()> {
        for index in 0..self.listeners.len() {
            if self.listeners[index].armed {
                self.cancel_accept(index)?;
            }
        }
        for (slot, conn) in self.conns.iter_mut().enumerate() {
            conn.begin_close(&mut self.ring, slot as u32)?;
        }
        Ok(())
    }

    fn cancel_accept(&mut self, index: usize) -> io::Result<()> {
        let cancel =
            types::CancelBuilder::user_data(Token::new(index as u32, 0, OP_ACCEPT).encode());
        let entry = opcode::AsyncCancel2::new(cancel)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Token::new(index as u32, 0, OP_CANCEL_ACCEPT).encode());
        // SAFETY: a cancel points at no memory.
        unsafe { self.ring.push(&entry) }
    }

    fn on_accept_cancel_missed(&mut self, index: usize) -> io::Result<()> {
        if self.stopping && self.listeners.get(index).is_some_and(|l| l.armed) {
            return self.cancel_accept(index);
        }
        Ok(())
    }

    /// Releases the worker's resources. When some operation never completed, the kernel may
    /// still read a send buffer or write a receive buffer (or a peer address), so that
    /// memory is leaked rather than freed under it; dropping the ring makes the kernel cancel
    /// whatever is left.
    fn finish(self, clean: bool) {
        let Worker {
            ring,
            bufs,
            conns,
            listeners,
            ..
        } = self;
        if clean {
            ring.unregister_buf_ring(&bufs);
            drop(bufs);
            drop(conns);
            drop(ring);
            drop(listeners);
        } else {
            mem::forget(bufs);
            mem::forget(conns);
            drop(ring);
            // The sockets close; their address buffers stay allocated.
            for listener in listeners {
                drop(listener.fd);
                mem::forget(listener.peer);
            }
        }
    }
}

/// Appends `frames` to the output of every live subscriber in `subscribers` (dropping one
/// that does not read) and sends it.
fn fan_out(
    ring: &mut Ring,
    conns: &mut [Conn],
    cx: &mut Cx,
    subscribers: &[(u32, u32)],
    frames: &[u8],
) -> io::Result<()> {
    let mut result = Ok(());
    for &(sub, sub_generation) in subscribers {
        let Some(conn) = conns.get_mut(sub as usize) else {
            continue;
        };
        let live = conn.generation == sub_generation && conn.state == State::Open;
        if !live || conn.flags & CLOSE_AFTER != 0 {
            continue;
        }
        let step = if conn.wbuf.len() > WS_SUBSCRIBER_LIMIT {
            conn.begin_close(ring, sub) // it does not read: drop it
        } else {
            conn.wbuf.extend_from_slice(frames);
            conn.drive(ring, sub, cx)
        };
        if result.is_ok() {
            result = step;
        }
    }
    result
}

/// The IP address a single-shot accept wrote.
fn peer_ip(peer: &PeerAddr) -> Option<IpAddr> {
    match i32::from(peer.storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the kernel wrote a sockaddr_in, and sockaddr_storage is
            // large enough and aligned for it.
            let sin = unsafe {
                &*(&peer.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            Some(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 = unsafe {
                &*(&peer.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(IpAddr::from(sin6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}

/// One topic's subscribers on this thread.
struct Topic {
    /// (slot, generation) of each subscribed connection.
    subscribers: Vec<(u32, u32)>,
    /// The other threads with subscribers, as last read from the broker.
    interest: Interest,
}

/// This thread's pub/sub topics; with several server threads, the broker (and this thread's
/// index in it), told when a topic gets its first or loses its last subscriber here.
struct PubSub {
    table: HashMap<Box<str>, Topic>,
    broker: Option<(Arc<Broker>, usize)>,
}

impl PubSub {
    fn subscribe(&mut self, topic: &str, slot: u32, generation: u32) {
        if let Some(t) = self.table.get_mut(topic) {
            t.subscribers.push((slot, generation));
            return;
        }
        if let Some((broker, index)) = &self.broker {
            broker.join(*index, topic);
        }
        self.table.insert(
            topic.into(),
            Topic {
                subscribers: vec![(slot, generation)],
                interest: Interest::default(),
            },
        );
    }

    /// Removes a closed connection from its topic (dropping the topic once empty).
    fn unsubscribe(&mut self, slot: u32, conn: &mut Conn) {
        let Some(ws) = conn.ws.take() else {
            return;
        };
        if !ws.subscribed {
            return;
        }
        if let Some(t) = self.table.get_mut(&ws.topic) {
            t.subscribers
                .retain(|&(s, g)| (s, g) != (slot, conn.generation));
            if t.subscribers.is_empty() {
                self.table.remove(&ws.topic);
                if let Some((broker, index)) = &self.broker {
                    broker.leave(*index, &ws.topic);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slot_is_compact() {
        let size = mem::size_of::<Conn>();
        eprintln!("Conn is {size} bytes");
        assert!(size <= 192, "Conn grew to {size} bytes");
    }
}
