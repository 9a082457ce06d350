//! `blaster run ws://…` end to end against `blaster serve` and a third-party WebSocket server
//! (Python `websockets`): echo counts and latencies, pub/sub delivery to every subscriber,
//! pings, close codes, a mass drop and its reconnect herd, and a 10,000-connection storm.

use std::time::Duration;

use blaster_tests::{
    ChildGuard, assert_schema_valid, free_port, run_json, run_json_output, start_serve,
    wait_for_port,
};
use serde_json::Value;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

#[test]
fn echo_answers_every_message_and_times_it() {
    let (_serve, addr) = start_serve(1);
    let r = run_json(&[
        "run",
        &format!("ws://{addr}/ws/echo"),
        "--mode",
        "echo",
        "-c",
        "20",
        "--message-rate",
        "50",
        "--payload",
        "256",
        "-d",
        "2s",
        "-t",
        "1",
    ]);
    assert_schema_valid(&r);
    let ws = &r["ws"];
    assert_eq!(r["model"], "ws");
    assert_eq!(ws["mode"], "echo");
    assert_eq!(u(&ws["sessions"]), 20, "{ws:#}");
    let sent = u(&ws["msgs_sent"]);
    let received = u(&ws["msgs_received"]);
    // 20 connections x 50/s x 2 s.
    assert!((1800..=2100).contains(&sent), "sent {sent}");
    assert_eq!(u(&ws["lost"]), 0, "{ws:#}");
    assert_eq!(u(&ws["duplicates"]), 0);
    // Every message is answered but those in flight when the run ended.
    assert_eq!(received + u(&ws["unanswered"]), sent, "{ws:#}");
    assert_eq!(u(&ws["msg_latency_us"]["count"]), received);
    assert_eq!(u(&ws["bytes_received"]), received * 256);
    // Echoes count as the run's responses, so progress and the time series show them.
    assert_eq!(u(&r["responses"]), received);
}

#[test]
fn pubsub_delivers_every_message_to_every_subscriber() {
    // Several server threads: a topic's clients land on different threads (issue #4).
    let (_serve, addr) = start_serve(2);
    let r = run_json(&[
        "run",
        &format!("ws://{addr}/ws/pubsub/"),
        "--mode",
        "pubsub",
        "-c",
        "12",
        "--publishers",
        "2",
        "--topics",
        "2",
        "--message-rate",
        "20",
        "-d",
        "2s",
        "-t",
        "2",
        "--backoff",
        "none",
    ]);
    assert_schema_valid(&r);
    let ws = &r["ws"];
    assert_eq!(u(&ws["sessions"]), 12, "{ws:#}");
    assert_eq!(u(&ws["lost"]), 0, "{ws:#}");
    assert_eq!(u(&ws["duplicates"]), 0, "{ws:#}");
    let fanout = u(&ws["fanout_us"]["count"]);
    let latency = u(&ws["msg_latency_us"]["count"]);
    // Each topic has one publisher and 5 subscribers: every message delivered several times.
    assert!(fanout > 0, "{ws:#}");
    assert!(
        latency >= fanout * 5 - 10,
        "latency samples {latency}, messages {fanout}"
    );
    assert!(
        latency <= fanout * 5 + 10,
        "a subscriber got a message twice or from another topic: {latency} deliveries for {fanout} messages"
    );
}

#[test]
fn hold_pings_and_times_the_pongs() {
    let (_serve, addr) = start_serve(1);
    let r = run_json(&[
        "run",
        &format!("ws://{addr}/ws/echo"),
        "--mode",
        "hold",
        "-c",
        "50",
        "--keepalive-every",
        "200ms",
        "-d",
        "1500ms",
        "-t",
        "1",
    ]);
    let ws = &r["ws"];
    assert_eq!(u(&ws["sessions"]), 50);
    let pings = u(&ws["pings_sent"]);
    assert!(pings >= 250, "{ws:#}");
    // Pongs of pings sent in the last moment may still be on their way.
    assert!(u(&ws["pongs_received"]) + 50 >= pings, "{ws:#}");
    assert_eq!(u(&ws["ping_rtt_us"]["count"]), u(&ws["pongs_received"]));
    assert_eq!(u(&r["connections"]["open_at_end"]), 50);
}

#[test]
fn server_close_codes_are_counted_and_sessions_reconnect() {
    let (_serve, addr) = start_serve(1);
    let r = run_json(&[
        "run",
        &format!("ws://{addr}/ws/echo?close_after=3"),
        "--mode",
        "echo",
        "-c",
        "5",
        "--message-rate",
        "100",
        "-d",
        "1s",
        "-t",
        "1",
        "--backoff",
        "10ms",
    ]);
    let ws = &r["ws"];
    let closes = u(&ws["close_codes"]["1000"]);
    assert!(closes >= 5, "{ws:#}");
    assert!(u(&ws["reconnects"]) >= 5, "{ws:#}");
    assert_eq!(u(&ws["errors"]["closed_by_server"]), closes);
}

#[test]
fn a_mass_drop_reconnects_every_session_and_reports_the_herd() {
    let (_serve, addr) = start_serve(1);
    let r = run_json(&[
        "run",
        &format!("ws://{addr}/ws/echo?drop_at_ms=700"),
        "--mode",
        "hold",
        "-c",
        "200",
        "-d",
        "2s",
        "-t",
        "1",
        "--backoff",
        "exp:50ms..400ms",
    ]);
    assert_schema_valid(&r);
    let ws = &r["ws"];
    assert!(u(&ws["reconnects"]) >= 200, "{ws:#}");
    let herd = &ws["herd"];
    assert!(u(&herd["dropped"]) >= 100, "{ws:#}");
    let b50 = herd["back_50_s"].as_f64().expect("half came back");
    let b100 = herd["back_100_s"].as_f64().expect("all came back");
    // Backoff 25..50 ms for the first retry: most are back within a fraction of a second.
    assert!(b50 > 0.0 && b50 <= b100 && b100 < 1.0, "{herd:#}");
}

/// Issue #8: 10,000 WebSocket connections opened at full speed in under 30 s.
#[test]
fn ten_thousand_websocket_connections_open_in_under_thirty_seconds() {
    let (_serve, addr) = start_serve(2);
    let run = run_json_output(
        &[
            "run",
            &format!("ws://{addr}/ws/echo"),
            "--mode",
            "hold",
            "-c",
            "10000",
            "-d",
            "12s",
            "-t",
            "2",
            "--timeout",
            "20s",
        ],
        Duration::from_secs(90),
    );
    assert!(run.output.status.success(), "{:?}", run.output);
    let ws = &run.report["ws"];
    assert_eq!(u(&ws["sessions"]), 10_000, "{ws:#}");
    assert_eq!(u(&ws["sessions_failed"]), 0, "{ws:#}");
    assert_eq!(u(&run.report["connections"]["open_at_end"]), 10_000);
    let slowest_ms = u(&ws["handshake_us"]["max"]) / 1000;
    assert!(slowest_ms < 30_000, "slowest handshake {slowest_ms} ms");
    // When did the last session open? The time series counts opened connections.
    let mut opened = 0;
    let mut all_open_at = None;
    for p in run.report["timeseries"].as_array().unwrap() {
        opened += u(&p["connections_opened"]);
        if opened >= 10_000 && all_open_at.is_none() {
            all_open_at = p["t_s"].as_f64();
        }
    }
    let t = all_open_at.expect("all 10,000 opened during the run");
    assert!(t <= 30.0, "all open after {t} s");
}

/// A third-party server (Python `websockets`, installed by CI) that speaks the `chat`
/// subprotocol: the handshake offers and checks it, echo with zero loss.
#[test]
fn echo_against_python_websockets() {
    // The distribution's interpreter first: apt installs python3-websockets for it, and a
    // python3 earlier on PATH (pyenv, a venv) may lack the module.
    let candidates = [
        Some(std::path::PathBuf::from("/usr/bin/python3")),
        blaster_tests::find_program("python3"),
    ];
    let Some(python) = candidates.into_iter().flatten().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import websockets"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }) else {
        blaster_tests::skip!(
            "no python3 with the websockets module (apt install python3-websockets)"
        );
    };
    let port = free_port();
    let script = format!(
        r#"
import asyncio, websockets
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", {port}, ping_interval=None, max_size=None, subprotocols=["chat"]):
        await asyncio.sleep(60)
asyncio.run(main())
"#
    );
    let mut cmd = std::process::Command::new(python);
    cmd.args(["-c", &script]);
    let _server = ChildGuard::capture(cmd);
    assert!(
        wait_for_port(
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(10)
        ),
        "the Python websockets server did not start"
    );
    let r = run_json(&[
        "run",
        &format!("ws://127.0.0.1:{port}/"),
        "--mode",
        "echo",
        "--subprotocol",
        "chat",
        "-c",
        "10",
        "--message-rate",
        "20",
        "-d",
        "1500ms",
        "-t",
        "1",
    ]);
    let ws = &r["ws"];
    assert_eq!(u(&ws["sessions"]), 10, "{ws:#}");
    let sent = u(&ws["msgs_sent"]);
    assert!(sent >= 250, "{ws:#}");
    assert_eq!(u(&ws["lost"]), 0);
    assert_eq!(
        u(&ws["msgs_received"]) + u(&ws["unanswered"]),
        sent,
        "{ws:#}"
    );
}

/// Issue #4: the built-in `/ws/pubsub/{topic}` kept topics per server thread, so a
/// subscriber served by another thread than the publisher missed every message. With 4
/// server threads and 13 clients of a topic spread over them by SO_REUSEPORT, every client
/// gets every message of its topic exactly once, in order, and nothing of the other topic.
#[test]
fn pubsub_reaches_subscribers_on_every_server_thread() {
    use std::net::TcpStream;
    use tungstenite::Message;
    type Ws = tungstenite::WebSocket<TcpStream>;
    const PUBLISHERS: usize = 3;
    const SUBSCRIBERS: usize = 10;
    const MESSAGES: usize = 200;
    let (_serve, addr) = start_serve(4);
    let connect = |path: &str| -> Ws {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let url = format!("ws://{addr}{path}");
        let (ws, response) = tungstenite::client::client(url.as_str(), stream).expect("handshake");
        assert_eq!(response.status().as_u16(), 101);
        ws
    };
    // The 101 answer leaves after the server listed the connection under its topic.
    let mut subscribers: Vec<Ws> = (0..SUBSCRIBERS)
        .map(|_| connect("/ws/pubsub/news"))
        .collect();
    let mut other = connect("/ws/pubsub/sport");
    let mut publishers: Vec<Ws> = (0..PUBLISHERS)
        .map(|_| connect("/ws/pubsub/news"))
        .collect();
    for seq in 0..MESSAGES {
        for (p, publisher) in publishers.iter_mut().enumerate() {
            publisher
                .send(Message::text(format!("{p}:{seq}")))
                .expect("publish");
        }
    }
    other.send(Message::text("sport only")).expect("publish");
    // Every client of the topic, publishers included (the sender gets its own messages).
    for (i, ws) in subscribers
        .iter_mut()
        .chain(publishers.iter_mut())
        .enumerate()
    {
        let mut next = [0usize; PUBLISHERS];
        for _ in 0..PUBLISHERS * MESSAGES {
            let msg = match ws.read() {
                Ok(Message::Text(t)) => t.to_string(),
                Ok(other) => panic!("client {i}: unexpected {other:?}"),
                Err(e) => panic!("client {i} got {next:?} of {MESSAGES} per publisher: {e}"),
            };
            let (p, seq) = msg.split_once(':').expect("p:seq");
            let (p, seq): (usize, usize) = (p.parse().expect("p"), seq.parse().expect("seq"));
            assert_eq!(
                seq, next[p],
                "client {i}: publisher {p} out of order or lost"
            );
            next[p] += 1;
        }
    }
    // Nothing more (no duplicate) reaches a client of the topic...
    for ws in subscribers.iter_mut().chain(publishers.iter_mut()) {
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        match ws.read() {
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            got => panic!("a client got more than every message once: {got:?}"),
        }
    }
    // ...and the other topic's client got only its own message.
    match other.read() {
        Ok(Message::Text(t)) => assert_eq!(t.as_str(), "sport only"),
        got => panic!("the sport client got {got:?}"),
    }
}
