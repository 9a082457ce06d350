//! Mock mode of the built-in target (`blaster serve --mock FILE.toml`): routes from a file,
//! each answering with a status, headers and a body template after a latency drawn from a
//! distribution, with per-key rate limits (429 + `Retry-After`), stock counters (409 when
//! sold out), and WebSocket echo and pub/sub routes. The format is in docs/mock.md.
//!
//! Boundary: this module decides what to answer; the worker (`super::worker`) does all I/O.
//! [`MockWorker::answer`] routes a parsed head (through [`super::http::parse_with`], so
//! framing and limits are the built-in routes') and returns a [`Reply`]: a rendered
//! [`MockReply`] whose delay the worker waits with an io_uring timeout, a [`MockUpgrade`], or
//! [`Reply::ReadBody`] when the route depends on the request body. State shared by the
//! server threads lives in [`MockServer`]: per-route counters and stocks are atomics, rate
//! limits a mutex per route ([`limit`]), pub/sub the server's [`Broker`]. The built-in routes never
//! come here, so their hot path is unchanged.

mod latency;
mod limit;
mod pattern;
pub mod spec;
mod template;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;

pub use spec::{MockError, MockSpec, load, parse_str};

use super::broker::Broker;
use super::http::{self, Head, Reply};
use crate::proto::ws::{self, Data, OpCode};
use limit::{KeySource, RateLimiter, Verdict};
use pattern::MAX_PARAMS;
use spec::{Fallback, RouteKind, Topic, WsMode};
use template::{Vars, query_value};

/// A mock route's rendered response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockReply {
    pub status: u16,
    /// Header lines (`Name: value\r\n` each), then the body from `body_at`.
    pub bytes: Vec<u8>,
    pub body_at: usize,
    /// How long the response waits before it is sent.
    pub delay: Duration,
}

/// A valid upgrade on a mock WebSocket route: what the connection becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockUpgrade {
    /// Index of the route (for its replies and JSON topic).
    pub route: u32,
    pub pubsub: bool,
    /// The topic, when it comes from the upgrade request.
    pub topic: Option<Box<str>>,
    /// The subprotocol to answer with.
    pub protocol: Option<Box<str>>,
    /// The welcome message's text.
    pub welcome: Option<Vec<u8>>,
    /// Misbehaviour knobs from the query string, as on the built-in WebSocket routes.
    pub close_after: Option<u64>,
    pub delay_ms: Option<u32>,
    pub drop_at_ms: Option<u32>,
}

/// What to do with one complete WebSocket message of a mock route.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WsAction {
    /// Subscribe the connection to this topic (its first message with the JSON field).
    pub subscribe: Option<Box<str>>,
    /// Send this text to the sender.
    pub reply: Option<Vec<u8>>,
    /// Echo or publish the message.
    pub forward: bool,
}

struct RouteState {
    counter: AtomicU64,
    limiter: Option<RateLimiter>,
}

/// The mock's state shared by every server thread.
pub struct MockServer {
    spec: Arc<MockSpec>,
    routes: Box<[RouteState]>,
    stocks: Box<[AtomicI64]>,
    /// The server's broker; the server creates one when [`MockSpec::uses_pubsub`].
    broker: Option<Arc<Broker>>,
}

impl MockServer {
    /// Sets up the shared state; `broker` carries pub/sub between the server threads.
    pub fn new(spec: Arc<MockSpec>, broker: Option<Arc<Broker>>) -> Arc<MockServer> {
        let routes = spec
            .routes
            .iter()
            .map(|r| RouteState {
                counter: AtomicU64::new(0),
                limiter: r.rate_limit.clone().map(RateLimiter::new),
            })
            .collect();
        let stocks = spec
            .stocks
            .iter()
            .map(|(_, n)| AtomicI64::new(*n))
            .collect();
        Arc::new(MockServer {
            spec,
            routes,
            stocks,
            broker,
        })
    }

    /// The state of server thread `index`.
    pub fn worker(self: &Arc<MockServer>, index: usize) -> MockWorker {
        // Latencies need variety, not secrecy: the clock and the thread index seed it.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        MockWorker {
            server: Arc::clone(self),
            rng: rand::SeedableRng::seed_from_u64(seed),
        }
    }
}

/// One server thread's side of the mock: the shared state and its own random generator.
pub struct MockWorker {
    server: Arc<MockServer>,
    rng: SmallRng,
}

impl MockWorker {
    /// A worker with a fixed seed (tests).
    #[cfg(test)]
    fn seeded(server: &Arc<MockServer>, seed: u64) -> MockWorker {
        MockWorker {
            server: Arc::clone(server),
            rng: rand::SeedableRng::seed_from_u64(seed),
        }
    }

    /// Whether connections must be accepted with their peer address (an `ip` rate limit).
    pub fn needs_peer(&self) -> bool {
        self.server.spec.needs_peer()
    }

    /// Sends encoded frames to every subscriber of `topic`, on every thread.
    pub fn publish(&self, topic: &str, frames: &[u8]) {
        if let Some(b) = &self.server.broker {
            b.publish(topic, frames);
        }
    }

    /// The answer to a complete request head; `body` is the request body once it was read
    /// (after this returned [`Reply::ReadBody`]), `peer` the client's address if known.
    pub fn answer(
        &mut self,
        head: &Head<'_, '_>,
        body: Option<&[u8]>,
        peer: Option<IpAddr>,
    ) -> Reply {
        let server = Arc::clone(&self.server);
        let spec = &*server.spec;
        let (path, query) = head.target.split_once('?').unwrap_or((head.target, ""));
        let mut params = [""; MAX_PARAMS];
        for (i, route) in spec.routes.iter().enumerate() {
            if !route.allows(head.method) || !route.pattern.matches(path, &mut params) {
                continue;
            }
            if body.is_none() && head.body_len > 0 && route.needs_body() {
                if head.body_len > spec.max_body {
                    return Reply::BodyTooLarge { max: spec.max_body };
                }
                return Reply::ReadBody;
            }
            if let Some(needle) = &route.body_contains
                && !contains(body.unwrap_or_default(), needle)
            {
                continue;
            }
            let n = route.pattern.names().len();
            let request = Request {
                head,
                path,
                query,
                params: &params[..n],
                body: body.unwrap_or_default(),
                peer,
            };
            return self.respond(&server, i, &request);
        }
        match spec.fallback {
            Fallback::Builtin => http::builtin_reply(head),
            Fallback::NotFound => {
                let body = format!(
                    "no route of the mock {} matches {} {path}\n",
                    spec.path, head.method
                );
                Reply::Mock(Box::new(text_reply(
                    404,
                    "text/plain",
                    body.into_bytes(),
                    Duration::ZERO,
                )))
            }
        }
    }

    fn respond(&mut self, server: &MockServer, index: usize, req: &Request<'_, '_, '_>) -> Reply {
        let route = &server.spec.routes[index];
        let state = &server.routes[index];
        // A request that cannot upgrade takes no stock and counts against no limit.
        let knobs = match &route.kind {
            RouteKind::WebSocket(_) => {
                let upgrade =
                    http::websocket_reply(req.head.raw, req.head.headers, req.head.body_len);
                if upgrade != Reply::WebSocket {
                    return upgrade;
                }
                match http::ws_knobs(req.query) {
                    Ok(knobs) => knobs,
                    Err(why) => return Reply::BadParam(why),
                }
            }
            RouteKind::Http(_) => http::WsTarget::default(),
        };
        let delay = route
            .latency
            .as_ref()
            .map_or(Duration::ZERO, |l| l.sample(&mut self.rng));
        let mut limit_headers = Vec::new();
        if let Some(limiter) = &state.limiter {
            let ip;
            let key: Option<&[u8]> = match &limiter.spec().key {
                KeySource::Header(name) => req.head.header(name),
                KeySource::Query(name) => query_value(req.query, name).map(str::as_bytes),
                KeySource::Param(i) => req.params.get(*i).map(|p| p.as_bytes()),
                KeySource::Ip => {
                    ip = req.peer.map(|ip| match ip {
                        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                        IpAddr::V6(v6) => v6.octets(),
                    });
                    ip.as_ref().map(|o| o.as_slice())
                }
            };
            match key.map(|k| limiter.check(k, Instant::now())) {
                None | Some(Verdict::Free) => {}
                Some(Verdict::Allowed { limit, remaining }) => {
                    header_num(&mut limit_headers, "X-RateLimit-Limit", limit);
                    header_num(&mut limit_headers, "X-RateLimit-Remaining", remaining);
                }
                Some(Verdict::Limited { limit, retry_after }) => {
                    let mut reply = text_reply(
                        429,
                        "application/json",
                        format!(
                            "{{\"error\": \"rate limit exceeded\", \"limit\": {limit}, \"retry_after\": {retry_after}}}"
                        )
                        .into_bytes(),
                        delay,
                    );
                    let mut extra = Vec::new();
                    header_num(&mut extra, "Retry-After", retry_after);
                    header_num(&mut extra, "X-RateLimit-Limit", limit);
                    header_num(&mut extra, "X-RateLimit-Remaining", 0);
                    reply.bytes.splice(0..0, extra.iter().copied());
                    reply.body_at += extra.len();
                    return Reply::Mock(Box::new(reply));
                }
            }
        }
        let stock = route.stock.map(|s| {
            let left = server.stocks[s].fetch_sub(1, Ordering::Relaxed) - 1;
            (s, left)
        });
        if let Some((s, left)) = stock
            && left < 0
        {
            let name = &server.spec.stocks[s].0;
            let body = format!("{{\"error\": \"sold out\", \"stock\": \"{name}\"}}");
            let mut reply = text_reply(409, "application/json", body.into_bytes(), delay);
            reply.bytes.splice(0..0, limit_headers.iter().copied());
            reply.body_at += limit_headers.len();
            return Reply::Mock(Box::new(reply));
        }
        let counter = state.counter.fetch_add(1, Ordering::Relaxed) + 1;
        let vars = Vars {
            method: req.head.method,
            path: req.path,
            params: req.params,
            query: req.query,
            headers: req.head.headers,
            body: req.body,
            body_len: req.head.body_len,
            counter,
            stock: stock.map(|(_, left)| left),
        };
        match &route.kind {
            RouteKind::Http(h) => {
                if let Some(topic) = &h.publish {
                    let mut name = Vec::new();
                    topic.render(&vars, &mut name);
                    let mut frame = Vec::with_capacity(req.body.len() + 10);
                    let opcode = if std::str::from_utf8(req.body).is_ok() {
                        Data::Text
                    } else {
                        Data::Binary
                    };
                    ws::encode_server_frame(OpCode::Data(opcode), req.body, true, &mut frame);
                    self.publish(&String::from_utf8_lossy(&name), &frame);
                }
                let mut bytes = limit_headers;
                for (name, value) in &h.headers {
                    bytes.extend_from_slice(name.as_bytes());
                    bytes.extend_from_slice(b": ");
                    value.render(&vars, &mut bytes);
                    bytes.extend_from_slice(b"\r\n");
                }
                let body_at = bytes.len();
                h.body.render(&vars, &mut bytes);
                Reply::Mock(Box::new(MockReply {
                    status: h.status,
                    bytes,
                    body_at,
                    delay,
                }))
            }
            RouteKind::WebSocket(w) => {
                let offered = req
                    .head
                    .header("sec-websocket-protocol")
                    .unwrap_or_default();
                let protocol = w.protocol.as_deref().filter(|p| {
                    offered
                        .split(|&b| b == b',')
                        .any(|o| o.trim_ascii() == p.as_bytes())
                });
                let topic = match &w.topic {
                    Some(Topic::Template(t)) => {
                        let mut name = Vec::new();
                        t.render(&vars, &mut name);
                        Some(String::from_utf8_lossy(&name).into())
                    }
                    _ => None,
                };
                let welcome = w.welcome.as_ref().map(|t| {
                    let mut text = Vec::new();
                    t.render(&vars, &mut text);
                    text
                });
                Reply::MockUpgrade(Box::new(MockUpgrade {
                    route: index as u32,
                    pubsub: w.mode == WsMode::Pubsub,
                    topic,
                    protocol: protocol.map(Into::into),
                    welcome,
                    close_after: knobs.close_after,
                    delay_ms: knobs.delay_ms,
                    drop_at_ms: knobs.drop_at_ms,
                }))
            }
        }
    }

    /// What to do with a complete message `msg` on a connection of WebSocket route `route`
    /// (`subscribed`: it already has a topic).
    pub fn ws_message(&mut self, route: u32, msg: &[u8], subscribed: bool) -> WsAction {
        let server = &*self.server;
        let mut action = WsAction {
            forward: true,
            ..WsAction::default()
        };
        let Some(RouteKind::WebSocket(w)) = server.spec.routes.get(route as usize).map(|r| &r.kind)
        else {
            return action;
        };
        if !subscribed
            && let Some(Topic::JsonField(field)) = &w.topic
            && let Some(topic) = json_field(msg, field)
        {
            action.subscribe = Some(topic);
            action.forward = false;
        }
        for (needle, reply) in &w.replies {
            if needle.is_empty() || contains(msg, needle) {
                let counter = server.routes[route as usize]
                    .counter
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                let mut text = Vec::new();
                reply.render(
                    &Vars {
                        counter,
                        ..Vars::default()
                    },
                    &mut text,
                );
                action.reply = Some(text);
                action.forward = false;
                break;
            }
        }
        action
    }
}

/// What a route's answer is computed from.
struct Request<'r, 'h, 'b> {
    head: &'r Head<'h, 'b>,
    path: &'r str,
    query: &'r str,
    params: &'r [&'r str],
    body: &'r [u8],
    peer: Option<IpAddr>,
}

/// A plain response with one `Content-Type`.
fn text_reply(status: u16, content_type: &str, body: Vec<u8>, delay: Duration) -> MockReply {
    let mut bytes = Vec::with_capacity(content_type.len() + 16 + body.len());
    bytes.extend_from_slice(b"Content-Type: ");
    bytes.extend_from_slice(content_type.as_bytes());
    bytes.extend_from_slice(b"\r\n");
    let body_at = bytes.len();
    bytes.extend_from_slice(&body);
    MockReply {
        status,
        bytes,
        body_at,
        delay,
    }
}

fn header_num(out: &mut Vec<u8>, name: &str, n: u64) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    super::respond::put_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Whether `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// The string (or number, as written) in top-level field `field` of a JSON object message.
fn json_field(msg: &[u8], field: &str) -> Option<Box<str>> {
    let value: serde_json::Value = serde_json::from_slice(msg).ok()?;
    match value.get(field)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.as_str().into()),
        serde_json::Value::Number(n) => Some(n.to_string().into()),
        _ => None,
    }
}
