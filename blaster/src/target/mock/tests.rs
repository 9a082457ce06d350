//! Mock files: parsing and its error messages, and what routes answer (no sockets: heads
//! are parsed from bytes and answers rendered with the server's own encoder).

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::target::http::Parsed;
use crate::target::respond::{self, Meta};

const EXAMPLE: &str = include_str!("../../../../examples/scenarios/mock.toml");

fn spec(src: &str) -> MockSpec {
    parse_str(src, "mock.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn error(src: &str) -> MockError {
    parse_str(src, "mock.toml").expect_err("the file is invalid")
}

fn worker(src: &str, threads: usize) -> (Arc<MockServer>, MockWorker) {
    let spec = spec(src);
    let broker = spec
        .uses_pubsub()
        .then(|| Arc::new(crate::target::broker::Broker::new(threads).expect("eventfds")));
    let server = MockServer::new(Arc::new(spec), broker);
    let worker = MockWorker::seeded(&server, 1);
    (server, worker)
}

/// Routes `head` (a complete request head) through `worker`.
fn ask(worker: &mut MockWorker, head: &str, body: Option<&[u8]>) -> Reply {
    match http::parse_with(head.as_bytes(), |h| worker.answer(h, body, None)) {
        Parsed::Complete { request, .. } => request.reply,
        other => panic!("{head:?} did not parse: {other:?}"),
    }
}

fn get(worker: &mut MockWorker, target: &str, headers: &str) -> Reply {
    ask(
        worker,
        &format!("GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n"),
        None,
    )
}

fn post(worker: &mut MockWorker, target: &str, body: &str) -> Reply {
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    match ask(worker, &head, None) {
        Reply::ReadBody => ask(worker, &head, Some(body.as_bytes())),
        reply => reply,
    }
}

/// The response on the wire.
fn wire(reply: &Reply) -> String {
    let mut out = Vec::new();
    assert!(respond::encode(&mut out, reply, Meta::default()).is_none());
    String::from_utf8(out).expect("utf8")
}

fn status(reply: &Reply) -> u16 {
    wire(reply)[9..12].parse().expect("status")
}

fn body(reply: &Reply) -> String {
    let text = wire(reply);
    text[text.find("\r\n\r\n").expect("head end") + 4..].to_owned()
}

#[test]
fn the_example_mock_parses() {
    let spec = spec(EXAMPLE);
    assert!(spec.routes.len() >= 30, "{} routes", spec.routes.len());
    assert!(spec.uses_pubsub());
    assert!(!spec.needs_peer());
}

#[test]
fn status_headers_and_body_with_params_and_query() {
    let (_, mut w) = worker(
        r#"
[[routes]]
method = "GET"
path = "/api/items/{id}"
status = 203
headers = { X-Item = "{{param.id}}" }
body = '{"id": "{{param.id}}", "page": "{{query.page}}", "n": {{counter}}, "m": "{{method}}"}'
"#,
        1,
    );
    let r = get(&mut w, "/api/items/42?page=7", "");
    let text = wire(&r);
    assert!(
        text.starts_with("HTTP/1.1 203 Non-Authoritative Information\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nX-Item: 42\r\n"), "{text}");
    assert_eq!(body(&r), r#"{"id": "42", "page": "7", "n": 1, "m": "GET"}"#);
    let r = get(&mut w, "/api/items/43", "");
    assert_eq!(body(&r), r#"{"id": "43", "page": "", "n": 2, "m": "GET"}"#);
    // HEAD is answered by a GET route, without the body.
    let r = ask(
        &mut w,
        "HEAD /api/items/1 HTTP/1.1\r\nHost: x\r\n\r\n",
        None,
    );
    assert_eq!(status(&r), 203);
    // Another method or path: 404 naming both.
    let r = post(&mut w, "/api/items/1", "");
    assert_eq!(status(&r), 404);
    assert!(body(&r).contains("POST /api/items/1"), "{}", body(&r));
    assert_eq!(status(&get(&mut w, "/api/items", "")), 404);
}

#[test]
fn routes_are_tried_in_order_and_body_contains_reads_the_body() {
    let (_, mut w) = worker(
        r#"
[[routes]]
method = "POST"
path = "/orders"
body_contains = "special"
status = 202
body = "special {{body_len}}"

[[routes]]
method = ["POST", "PUT"]
path = "/orders"
status = 201
body = "plain: {{body}}"
"#,
        1,
    );
    let head = "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n\r\n";
    assert_eq!(ask(&mut w, head, None), Reply::ReadBody);
    let r = post(&mut w, "/orders", "a special one");
    assert_eq!((status(&r), body(&r)), (202, "special 13".to_owned()));
    let r = post(&mut w, "/orders", "ordinary");
    assert_eq!((status(&r), body(&r)), (201, "plain: ordinary".to_owned()));
    // No body at all: body_contains cannot match.
    let r = post(&mut w, "/orders", "");
    assert_eq!(status(&r), 201);
}

#[test]
fn bodies_over_max_body_get_413() {
    let (_, mut w) = worker(
        r#"
[mock]
max_body = "1KiB"
[[routes]]
path = "/echo"
body = "{{body}}"
"#,
        1,
    );
    let head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n";
    let r = ask(&mut w, head, None);
    assert_eq!(r, Reply::BodyTooLarge { max: 1024 });
    assert_eq!(status(&r), 413);
    assert!(body(&r).contains("max_body"), "{}", body(&r));
}

#[test]
fn rate_limit_answers_429_with_retry_after_after_n() {
    let (_, mut w) = worker(
        r#"
[[routes]]
path = "/api/products"
body = "ok"
[routes.rate_limit]
key = "header:Authorization"
window = "1m"
limit = 3
limits = { "Bearer vip" = 5 }
"#,
        1,
    );
    let auth = "Authorization: Bearer free\r\n";
    for i in 0..3 {
        let r = get(&mut w, "/api/products", auth);
        let text = wire(&r);
        assert_eq!(status(&r), 200, "request {i}: {text}");
        assert!(
            text.contains(&format!("X-RateLimit-Remaining: {}\r\n", 2 - i)),
            "{text}"
        );
    }
    let r = get(&mut w, "/api/products", auth);
    let text = wire(&r);
    assert_eq!(status(&r), 429, "{text}");
    assert!(text.contains("\r\nRetry-After: 60\r\n"), "{text}");
    assert!(body(&r).contains("rate limit exceeded"), "{text}");
    // Another key has its own budget; a listed key its own limit; no key: not limited.
    assert_eq!(
        status(&get(&mut w, "/api/products", "Authorization: other\r\n")),
        200
    );
    let vip = "Authorization: Bearer vip\r\n";
    let codes: Vec<u16> = (0..6)
        .map(|_| status(&get(&mut w, "/api/products", vip)))
        .collect();
    assert_eq!(codes, [200, 200, 200, 200, 200, 429]);
    for _ in 0..10 {
        assert_eq!(status(&get(&mut w, "/api/products", "")), 200);
    }
}

#[test]
fn rate_limit_by_path_and_query_parameter() {
    let (_, mut w) = worker(
        r#"
[[routes]]
path = "/u/{user}"
[routes.rate_limit]
key = "param:user"
window = "10s"
limit = 1

[[routes]]
path = "/q"
[routes.rate_limit]
key = "query:k"
window = "10s"
limit = 1
"#,
        1,
    );
    assert_eq!(status(&get(&mut w, "/u/a", "")), 200);
    assert_eq!(status(&get(&mut w, "/u/a", "")), 429);
    assert_eq!(status(&get(&mut w, "/u/b", "")), 200);
    assert_eq!(status(&get(&mut w, "/q?k=1", "")), 200);
    assert_eq!(status(&get(&mut w, "/q?k=1", "")), 429);
    assert_eq!(status(&get(&mut w, "/q?k=2", "")), 200);
    assert_eq!(status(&get(&mut w, "/q", "")), 200);
    assert_eq!(status(&get(&mut w, "/q", "")), 200);
}

#[test]
fn stock_runs_out_with_409_across_workers() {
    let (server, mut w0) = worker(
        r#"
[stocks]
widget = 5
[[routes]]
method = "POST"
path = "/buy"
stock = "widget"
status = 201
body = "left {{stock}}"
"#,
        2,
    );
    let mut w1 = MockWorker::seeded(&server, 2);
    let mut outcomes = Vec::new();
    for i in 0..8 {
        let w = if i % 2 == 0 { &mut w0 } else { &mut w1 };
        let r = post(w, "/buy", "");
        outcomes.push((status(&r), body(&r)));
    }
    let created = outcomes.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 5, "{outcomes:?}");
    assert_eq!(outcomes[4], (201, "left 0".to_owned()));
    assert_eq!(outcomes[5].0, 409);
    assert!(outcomes[5].1.contains("sold out") && outcomes[5].1.contains("widget"));
}

#[test]
fn latency_is_sampled_per_request() {
    let (_, mut w) = worker(
        r#"
[mock]
latency = "uniform(10ms, 20ms)"
[[routes]]
path = "/slow"
[[routes]]
path = "/fixed"
latency = "5ms"
"#,
        1,
    );
    let mut delays = Vec::new();
    for _ in 0..50 {
        let Reply::Mock(m) = get(&mut w, "/slow", "") else {
            panic!("a mock reply")
        };
        assert!((Duration::from_millis(10)..=Duration::from_millis(20)).contains(&m.delay));
        delays.push(m.delay);
    }
    delays.dedup();
    assert!(delays.len() > 10, "samples vary: {delays:?}");
    let r = get(&mut w, "/fixed", "");
    assert_eq!(r.delay(), Some(Duration::from_millis(5)));
}

#[test]
fn fallback_builtin_serves_the_builtin_routes() {
    let (_, mut w) = worker(
        r#"
[mock]
fallback = "builtin"
[[routes]]
path = "/mine"
body = "mine"
"#,
        1,
    );
    assert_eq!(body(&get(&mut w, "/mine", "")), "mine");
    assert_eq!(get(&mut w, "/delay/5", ""), Reply::Delay { ms: 5 });
    assert_eq!(get(&mut w, "/", ""), Reply::Ok);
}

#[test]
fn websocket_routes_upgrade_with_topic_protocol_and_welcome() {
    let (_, mut w) = worker(
        r#"
[[routes]]
path = "/rooms/{room}"
websocket = "pubsub"
topic = "room-{{param.room}}"
welcome = '{"hello": "{{param.room}}"}'
protocol = "chat.v1"
"#,
        1,
    );
    let upgrade = "GET /rooms/7?delay_ms=5 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: other, chat.v1\r\n\r\n";
    let Reply::MockUpgrade(plan) = ask(&mut w, upgrade, None) else {
        panic!("an upgrade")
    };
    assert_eq!(plan.topic.as_deref(), Some("room-7"));
    assert_eq!(plan.protocol.as_deref(), Some("chat.v1"));
    assert_eq!(plan.welcome.as_deref(), Some(&b"{\"hello\": \"7\"}"[..]));
    assert!(plan.pubsub);
    assert_eq!(plan.delay_ms, Some(5));
    // Without Upgrade: 426, as on the built-in routes.
    assert_eq!(get(&mut w, "/rooms/7", ""), Reply::UpgradeRequired);
}

#[test]
fn a_request_that_cannot_upgrade_takes_no_stock() {
    let (_, mut w) = worker(
        r#"
[stocks]
seats = 1
[[routes]]
path = "/live"
websocket = "echo"
stock = "seats"
"#,
        1,
    );
    let upgrade = "GET /live HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(get(&mut w, "/live", ""), Reply::UpgradeRequired);
    assert!(matches!(ask(&mut w, upgrade, None), Reply::MockUpgrade(_)));
    assert_eq!(status(&ask(&mut w, upgrade, None)), 409);
}

#[test]
fn websocket_messages_subscribe_reply_or_forward() {
    let (_, mut w) = worker(
        r#"
[[routes]]
path = "/ws"
websocket = "pubsub"
topic = "json:channel"
replies = [{ contains = "ping", send = '{"pong": {{counter}}}' }]
"#,
        1,
    );
    let a = w.ws_message(0, br#"{"action": "subscribe", "channel": "news"}"#, false);
    assert_eq!(a.subscribe.as_deref(), Some("news"));
    assert!(!a.forward && a.reply.is_none());
    let a = w.ws_message(0, br#"{"channel": 5}"#, false);
    assert_eq!(a.subscribe.as_deref(), Some("5"));
    let a = w.ws_message(0, b"ping", true);
    assert_eq!(a.reply.as_deref(), Some(&b"{\"pong\": 1}"[..]));
    assert!(!a.forward);
    let a = w.ws_message(0, br#"{"channel": "other"}"#, true);
    assert!(a.forward && a.subscribe.is_none(), "subscribed once: {a:?}");
    let a = w.ws_message(0, b"not json", false);
    assert_eq!(
        a,
        WsAction {
            forward: true,
            ..WsAction::default()
        }
    );
}

#[test]
fn errors_name_the_line_and_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[routes]]\npath = \"/x\"\nstauts = 200\n",
            "mock.toml:3:1:",
            "unknown key \"stauts\"; did you mean \"status\"?",
        ),
        (
            "[mock]\nfalback = \"404\"\n[[routes]]\npath = \"/\"\n",
            "mock.toml:2:1:",
            "did you mean \"fallback\"?",
        ),
        (
            "[[routes]]\npath = \"/x\"\nstatus = 99\n",
            "mock.toml:3:10:",
            "status code from 200 to 599",
        ),
        (
            "[[routes]]\npath = \"/x\"\nbody = \"n={{countr}}\"\n",
            "mock.toml:3:11:",
            "did you mean \"counter\"?",
        ),
        (
            "[[routes]]\npath = \"/x/{id}\"\nbody = \"{{param.ib}}\"\n",
            "mock.toml:3:9:",
            "no parameter \"ib\"",
        ),
        (
            "[stocks]\nwidget = 3\n[[routes]]\npath = \"/x\"\nstock = \"widgit\"\n",
            "mock.toml:5:9:",
            "unknown stock \"widgit\"",
        ),
        (
            "[[routes]]\npath = \"/x\"\nlatency = \"normel(1ms, 2ms)\"\n",
            "mock.toml:3:11:",
            "did you mean \"normal\"?",
        ),
        (
            "[[routes]]\npath = \"/x\"\nlatency = { p50 = \"5ms\", p90 = \"1ms\" }\n",
            "mock.toml:3:11:",
            "must not decrease",
        ),
        (
            "[[routes]]\npath = \"/x\"\nmethod = \"GTE\"\n",
            "mock.toml:3:10:",
            "unknown method \"GTE\"; did you mean \"GET\"?",
        ),
        (
            "[[routes]]\npath = \"x\"\n",
            "mock.toml:2:9:",
            "starts with \"/\"",
        ),
        (
            "[[routes]]\npath = \"/a/b-{id}\"\n",
            "mock.toml:2:12:",
            "whole segment",
        ),
        (
            "[[routes]]\npath = \"/x\"\n[routes.rate_limit]\nkey = \"cookie\"\nwindow = \"1m\"\nlimit = 1\n",
            "mock.toml:4:7:",
            "unknown rate limit key \"cookie\"",
        ),
        (
            "[[routes]]\npath = \"/x\"\n[routes.rate_limit]\nkey = \"ip\"\nwindow = \"1m\"\n",
            "mock.toml:3:1:",
            "needs `limit`",
        ),
        (
            "[[routes]]\npath = \"/x\"\n[routes.rate_limit]\nkey = \"ip\"\nwindow = \"1m\"\nlimit = 1\nretry_after = -1\n",
            "mock.toml:7:15:",
            "retry_after is the seconds to advertise in Retry-After: 0 or more",
        ),
        (
            "[[routes]]\npath = \"/ws\"\nwebsocket = \"pubsub\"\n",
            "mock.toml:3:13:",
            "needs a topic",
        ),
        (
            "[[routes]]\npath = \"/ws\"\nwebsocket = \"echo\"\nbody = \"x\"\n",
            "mock.toml:4:8:",
            "does not apply to a WebSocket route",
        ),
        (
            "[[routes]]\npath = \"/ws\"\nwebsocket = \"echo\"\nreplies = [{ send = \"{{path}}\" }]\n",
            "mock.toml:4:22:",
            "no request context",
        ),
        (
            "[[routes]]\npath = \"/x\"\nheaders = { Content-Length = \"5\" }\n",
            "mock.toml:3:30:",
            "written by the server",
        ),
        (
            "[mock]\nfallback = \"404\"\n",
            "mock.toml:3:1:",
            "no routes",
        ),
    ];
    for (src, at, what) in cases {
        let e = error(src).to_string();
        assert!(
            e.starts_with(at) && e.contains(what),
            "{src:?}\n  gave: {e}\n  want: {at} ... {what}"
        );
    }
}
