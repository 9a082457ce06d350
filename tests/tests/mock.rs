//! `blaster serve --mock FILE.toml` end to end with the real binary: statuses and templates,
//! a latency distribution's median, a rate limit's exact count and Retry-After, a stock that
//! runs out across threads, a bad file's exit code and message, the example mock answering
//! what the example scenarios expect, and a port range.
//!
//! Loads come from `blaster run` itself (its JSON report counts statuses exactly); single
//! requests are raw HTTP over std sockets with timeouts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use blaster_tests::{
    TempPath, f, run_blaster, run_json, serial, spawn_serve, start_serve_with, status_count, u,
};
use serde_json::Value;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn mock_file(src: &str) -> TempPath {
    let file = TempPath::new(".toml");
    std::fs::write(file.path(), src).expect("write the mock file");
    file
}

fn example_mock() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/scenarios/mock.toml"
    ))
}

/// A response: status, head text, body.
struct Resp {
    status: u16,
    head: String,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// One request on its own connection (`Connection: close`), read to the end.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> Resp {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8(raw).expect("utf8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    Resp {
        status: head[9..12].parse().expect("status"),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, "", "")
}

#[test]
fn status_headers_and_params_in_the_body() {
    let mock = mock_file(
        r#"
[[routes]]
method = "GET"
path = "/api/users/{id}/posts/{post}"
status = 203
headers = { Content-Type = "application/json", X-User = "{{param.id}}" }
body = '{"user": "{{param.id}}", "post": "{{param.post}}", "sort": "{{query.sort}}", "n": {{counter}}}'

[[routes]]
method = "POST"
path = "/upload"
status = 201
body = '{"received": {{body_len}}}'
"#,
    );
    let (_serve, addr) = start_serve_with(&["--mock", mock.path().to_str().unwrap(), "-t", "1"]);
    let r = get(addr, "/api/users/7/posts/abc?sort=new");
    assert_eq!(r.status, 203, "{}", r.head);
    assert_eq!(r.header("x-user"), Some("7"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.json();
    assert_eq!(
        (j["user"].as_str(), j["post"].as_str()),
        (Some("7"), Some("abc"))
    );
    assert_eq!(
        (j["sort"].as_str(), j["n"].as_u64()),
        (Some("new"), Some(1))
    );
    assert_eq!(get(addr, "/api/users/8/posts/x").json()["n"], 2);
    let r = request(addr, "POST", "/upload", "", "twelve bytes");
    assert_eq!((r.status, r.json()["received"].as_u64()), (201, Some(12)));
    let r = get(addr, "/nothing/here");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("GET /nothing/here"), "{}", r.body);
}

#[test]
fn latency_median_follows_the_distribution() {
    let _serial = serial();
    let mock = mock_file(
        r#"
[[routes]]
path = "/slow"
latency = "uniform(80ms, 120ms)"
body = "ok"
"#,
    );
    let (_serve, addr) = start_serve_with(&["--mock", mock.path().to_str().unwrap(), "-t", "1"]);
    // 40 requests on 4 connections: the median of uniform(80ms, 120ms) is 100ms; a loaded
    // 2-CPU machine can only add time, so the upper bound is generous.
    let r = run_json(&[
        "run",
        &format!("http://{addr}/slow"),
        "-c",
        "4",
        "-n",
        "40",
        "-t",
        "1",
    ]);
    assert_eq!(status_count(&r, "200"), 40, "{r:#}");
    let p50_ms = f(&r, &["latency_us", "p50"]) / 1e3;
    assert!(
        (90.0..250.0).contains(&p50_ms),
        "median {p50_ms} ms, expected about 100 ms"
    );
    let min_ms = f(&r, &["latency_us", "min"]) / 1e3;
    assert!(
        min_ms >= 79.0,
        "no answer before the distribution's minimum: {min_ms} ms"
    );
}

#[test]
fn rate_limit_allows_exactly_n_then_429_with_retry_after() {
    let mock = mock_file(
        r#"
[[routes]]
path = "/api/products"
body = "ok"
[routes.rate_limit]
key = "header:Authorization"
window = "1m"
limit = 100
"#,
    );
    let (_serve, addr) = start_serve_with(&["--mock", mock.path().to_str().unwrap(), "-t", "2"]);
    let url = format!("http://{addr}/api/products");
    let r = run_json(&[
        "run",
        &url,
        "-c",
        "4",
        "-n",
        "150",
        "-H",
        "Authorization: Bearer t1",
    ]);
    assert_eq!(status_count(&r, "200"), 100, "{r:#}");
    assert_eq!(status_count(&r, "429"), 50, "{r:#}");
    let r = request(
        addr,
        "GET",
        "/api/products",
        "Authorization: Bearer t1\r\n",
        "",
    );
    assert_eq!(r.status, 429);
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    // Another key has its own budget; no key at all is not limited.
    let r = request(
        addr,
        "GET",
        "/api/products",
        "Authorization: Bearer t2\r\n",
        "",
    );
    assert_eq!(
        (r.status, r.header("x-ratelimit-remaining")),
        (200, Some("99"))
    );
    assert_eq!(get(addr, "/api/products").status, 200);
}

#[test]
fn stock_answers_409_once_sold_out_across_threads() {
    let mock = mock_file(
        r#"
[stocks]
tickets = 50
[[routes]]
method = "POST"
path = "/buy"
stock = "tickets"
status = 201
body = '{"left": {{stock}}}'
"#,
    );
    let (_serve, addr) = start_serve_with(&["--mock", mock.path().to_str().unwrap(), "-t", "2"]);
    let url = format!("http://{addr}/buy");
    let r = run_json(&[
        "run", &url, "-m", "POST", "--body", "{}", "-c", "8", "-n", "200",
    ]);
    assert_eq!(status_count(&r, "201"), 50, "{r:#}");
    assert_eq!(status_count(&r, "409"), 150, "{r:#}");
    assert_eq!(u(&r, &["errors", "total"]), 0, "{r:#}");
    let r = request(addr, "POST", "/buy", "", "");
    assert_eq!(r.status, 409);
    assert!(
        r.body.contains("sold out") && r.body.contains("tickets"),
        "{}",
        r.body
    );
}

#[test]
fn a_bad_mock_file_exits_1_naming_the_line() {
    let mock = mock_file("[[routes]]\npath = \"/x\"\nstauts = 200\n");
    let out = run_blaster(
        &[
            "serve",
            "--mock",
            mock.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let at = format!("{}:3:1:", mock.path().display());
    assert!(stderr.contains(&at), "names the line: {stderr}");
    assert!(stderr.contains("did you mean \"status\""), "{stderr}");
    let out = run_blaster(
        &["serve", "--mock", "/nonexistent/mock.toml"],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/mock.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn the_example_mock_answers_what_the_examples_expect() {
    let _serial = serial();
    let mock = example_mock();
    let (_serve, addr) = start_serve_with(&["--mock", mock.to_str().unwrap(), "-t", "2"]);
    // Captures: tokens, cookies and ids.
    let r = request(addr, "POST", "/api/auth/login", "", r#"{"email": "a@b.c"}"#);
    assert_eq!(r.status, 200);
    assert!(
        r.json()["access_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("tok-"))
    );
    assert!(
        r.header("set-cookie")
            .is_some_and(|c| c.starts_with("session="))
    );
    let r = request(addr, "POST", "/api/login", "", "{}");
    assert_eq!(r.json()["auth"]["ok"], true);
    assert!(r.body.contains(r#""order":"o"#), "{}", r.body);
    let r = request(addr, "POST", "/api/sessions", "", "{}");
    assert_eq!(r.status, 201);
    let id = r.json()["data"]["id"]
        .as_str()
        .expect("session id")
        .to_owned();
    let path = format!("/api/sessions/{id}/join");
    assert_eq!(
        request(addr, "POST", &path, "", "{}").json()["session"],
        id.as_str()
    );
    let path = format!("/api/sessions/{id}");
    assert_eq!(request(addr, "DELETE", &path, "", "").status, 204);
    let r = request(addr, "POST", "/api/rtc/rooms/r1/join", "", "{}");
    assert!(r.json()["token"].as_str().is_some());
    // Checks: JSON values and body contents.
    let r = request(addr, "POST", "/api/search/semantic", "", "{}");
    assert_eq!(r.json()["total"], 20);
    assert!(get(addr, "/api/search?q=judo").body.contains("results"));
    let r = get(addr, "/api/metrics");
    assert!(
        f(&r.json(), &["process", "memory_usage_mb"]) > 0.0,
        "{}",
        r.body
    );
    assert!(
        u(&r.json(), &["process", "rss_bytes"]) > 100_000,
        "{}",
        r.body
    );
    let r = get(addr, "/metrics");
    assert!(
        r.json()["process"]["memory"][0]["mb"].as_f64().is_some(),
        "{}",
        r.body
    );
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/events"),
        ("GET", "/dashboard"),
        ("GET", "/api/me"),
        ("GET", "/api/events?page=2"),
        ("GET", "/api/subscriptions/9"),
        ("GET", "/api/products?limit=10"),
        ("GET", "/api/products/search?q=abc&category=3"),
        ("POST", "/api/orders"),
        ("POST", "/api/orders/abc-123"),
        ("POST", "/api/webhooks/stripe"),
        ("POST", "/api/v1/metrics/sessions"),
        ("GET", "/api/v1/dashboard/summary?tenant=t-1"),
        ("POST", "/api/channels/backlog/publish"),
        ("DELETE", "/api/cache"),
        ("GET", "/healthz"),
    ] {
        let status = request(addr, method, path, "", "{}").status;
        assert!((200..300).contains(&status), "{method} {path}: {status}");
    }
    // rate-limit.toml: exactly LIMIT=100 200s for the free tier's token, then 429.
    let url = format!("http://{addr}/api/products");
    let r = run_json(&[
        "run",
        &url,
        "-c",
        "1",
        "-n",
        "150",
        "-H",
        "Authorization: Bearer free-tier-token",
    ]);
    assert_eq!(
        (status_count(&r, "200"), status_count(&r, "429")),
        (100, 50),
        "{r:#}"
    );
    // A paying tier's token is not limited.
    let r = run_json(&[
        "run",
        &url,
        "-c",
        "2",
        "-n",
        "300",
        "-H",
        "Authorization: Bearer pro-token",
    ]);
    assert_eq!(status_count(&r, "200"), 300, "{r:#}");
    // flash-sale.toml: the product's 1000 units sell out, then 409; other orders still 201.
    let url = format!("http://{addr}/api/orders");
    let body = r#"{"items": [{"product_id": "flash-sale-product-001", "quantity": 1}]}"#;
    let r = run_json(&[
        "run", &url, "-m", "POST", "--body", body, "-c", "8", "-n", "1100",
    ]);
    assert_eq!(
        (status_count(&r, "201"), status_count(&r, "409")),
        (1000, 100),
        "{r:#}"
    );
    assert_eq!(
        request(addr, "POST", "/api/orders", "", r#"{"items": []}"#).status,
        201
    );
    // event-rsvp-flash-crowd.toml: 500 seats.
    let url = format!("http://{addr}/api/events/launch-day/rsvp");
    let r = run_json(&[
        "run", &url, "-m", "POST", "--body", "{}", "-c", "4", "-n", "520",
    ]);
    assert_eq!(
        (status_count(&r, "201"), status_count(&r, "409")),
        (500, 20),
        "{r:#}"
    );
}

/// A WebSocket client with read timeouts.
fn ws_connect(addr: SocketAddr, path: &str) -> tungstenite::WebSocket<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let url = format!("ws://{addr}{path}");
    let (ws, response) = tungstenite::client::client(url.as_str(), stream).expect("handshake");
    assert_eq!(response.status().as_u16(), 101);
    ws
}

fn ws_text(ws: &mut tungstenite::WebSocket<TcpStream>) -> String {
    for _ in 0..100 {
        if let tungstenite::Message::Text(t) = ws.read().expect("read a message") {
            return t.to_string();
        }
    }
    panic!("no text message");
}

#[test]
fn the_example_mock_speaks_the_examples_websocket_protocols() {
    use tungstenite::Message;
    let mock = example_mock();
    let (_serve, addr) = start_serve_with(&["--mock", mock.to_str().unwrap(), "-t", "2"]);
    // connection-storm.toml: Phoenix heartbeats get "status":"ok".
    let mut ws = ws_connect(addr, "/socket/websocket?vsn=2.0.0");
    ws.send(Message::text(r#"[null,"1","phoenix","heartbeat",{}]"#))
        .expect("send");
    assert!(ws_text(&mut ws).contains(r#""status":"ok""#));
    // rtc-load.toml: a welcome, then chat comes back through the room.
    let mut ws = ws_connect(addr, "/ws/rtc/load-test?token=rtc-1");
    assert!(ws_text(&mut ws).contains("welcome"));
    ws.send(Message::text(r#"{"type": "chat", "text": "hello"}"#))
        .expect("send");
    assert!(ws_text(&mut ws).contains(r#""type": "chat""#));
    // location-flood.toml: the sender sees its own broadcast.
    let mut ws = ws_connect(addr, "/ws/sessions/session-3");
    ws.send(Message::text(r#"{"type":"location","lat":1,"lon":2}"#))
        .expect("send");
    assert!(ws_text(&mut ws).contains(r#""type":"location""#));
    // subscriptions-50k.toml: graphql-ws init is acknowledged.
    let mut ws = ws_connect(addr, "/graphql");
    ws.send(Message::text(r#"{"type": "connection_init"}"#))
        .expect("send");
    assert!(ws_text(&mut ws).contains("connection_ack"));
    // backlog.toml: subscribers of a channel get what is POSTed to it. Subscribing has no
    // acknowledgement here, so publish until the first message arrives (bounded).
    let mut subscriber = ws_connect(addr, "/ws");
    subscriber
        .send(Message::text(
            r#"{"action": "subscribe", "channel": "backlog"}"#,
        ))
        .expect("send");
    subscriber
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut got = None;
    for i in 0..50 {
        let r = request(
            addr,
            "POST",
            "/api/channels/backlog/publish",
            "",
            &format!(r#"{{"seq": {i}}}"#),
        );
        assert_eq!(r.status, 202);
        if let Ok(Message::Text(t)) = subscriber.read() {
            got = Some(t.to_string());
            break;
        }
    }
    let got = got.expect("a published event reached the subscriber");
    assert!(got.starts_with(r#"{"seq": "#), "{got}");
    // reference.toml: positions get an ack with a sequence number.
    let mut ws = ws_connect(addr, "/ws?u=a@b.c");
    ws.send(Message::text(r#"{"lat": 1.5, "lon": 2.5, "type": "x"}"#))
        .expect("send");
    let ack: Value = serde_json::from_str(&ws_text(&mut ws)).expect("json ack");
    assert_eq!(ack["type"], "ack");
    assert!(ack["seq"].as_u64().is_some());
}

#[test]
fn serve_listens_on_a_port_range() {
    // Below the ephemeral range (32768-60999), where the other tests' client sockets take
    // ports and a run of 4 free ones is rare; each port is checked free before the attempt.
    let seed = std::process::id() as u16;
    for attempt in 0..50u16 {
        let first = 20_000 + (seed.wrapping_mul(97).wrapping_add(attempt * 211)) % 12_000;
        let free = (0..4).all(|i| std::net::TcpListener::bind(("127.0.0.1", first + i)).is_ok());
        if !free {
            continue;
        }
        let range = format!("127.0.0.1:{first}-{}", first + 3);
        let Ok((mut serve, addr)) = spawn_serve(&["--listen", &range, "-t", "2"]) else {
            continue; // a port of the run was taken meanwhile
        };
        assert_eq!(addr.port(), first);
        // The one line names the first address and the rest of the range.
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        while !serve.stdout_text().contains('\n') && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            serve
                .stdout_text()
                .contains(&format!("and 3 more ports up to {}", first + 3)),
            "{}",
            serve.stdout_text()
        );
        let urls: Vec<String> = (0..4)
            .map(|i| format!("http://127.0.0.1:{}/", first + i))
            .collect();
        let mut args: Vec<&str> = vec!["run"];
        args.extend(urls.iter().map(String::as_str));
        args.extend(["-c", "8", "-n", "400"]);
        let r = run_json(&args);
        assert_eq!(status_count(&r, "200"), 400, "{r:#}");
        // The same range written in one URL: one target per port, in order.
        let r = run_json(&[
            "run",
            &format!("http://127.0.0.1:{first}-{}/", first + 3),
            "-c",
            "8",
            "-n",
            "400",
        ]);
        assert_eq!(status_count(&r, "200"), 400, "{r:#}");
        let targets: Vec<&str> = r["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .map(|t| t.as_str().expect("a URL"))
            .collect();
        assert_eq!(targets, urls, "{r:#}");
        for i in 0..4 {
            assert_eq!(
                get(SocketAddr::from(([127, 0, 0, 1], first + i)), "/").status,
                200
            );
        }
        serve.kill();
        return;
    }
    panic!("found no run of 4 free ports");
}
