//! Live tests of mock mode and port ranges over loopback: what needs the worker (bodies read
//! in pieces, latency timers, peer addresses, pub/sub across threads, WebSocket replies).
//! Every read has a timeout and every loop a bound.

use std::net::{Ipv4Addr, TcpStream};

use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use super::*;
use crate::target::mock;

type Ws = WebSocket<TcpStream>;

fn mock_server(threads: usize, src: &str) -> ServerHandle {
    let spec = mock::parse_str(src, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    spawn(ServeConfig {
        mock: Some(Arc::new(spec)),
        ..config(threads)
    })
    .expect("server starts")
}

fn connect_ws(addr: SocketAddr, path: &str, protocol: Option<&str>) -> (Ws, Option<String>) {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    if let Some(p) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().expect("header"));
    }
    let (ws, response) = tungstenite::client::client(request, stream).expect("handshake");
    assert_eq!(response.status().as_u16(), 101);
    let chosen = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().expect("ascii").to_owned());
    (ws, chosen)
}

fn text(ws: &mut Ws) -> String {
    for _ in 0..100 {
        match ws.read().expect("read a message") {
            Message::Text(t) => return t.to_string(),
            Message::Binary(b) => return String::from_utf8(b.to_vec()).expect("utf8"),
            _ => {}
        }
    }
    panic!("no data message");
}

fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Resp {
    let mut c = Client::connect(addr);
    c.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(body);
    c.read_response(false)
}

#[test]
fn body_arriving_in_pieces_is_routed_by_its_content() {
    let _guard = shared();
    let server = mock_server(
        1,
        r#"
[[routes]]
method = "POST"
path = "/orders"
body_contains = "vip"
status = 202
body = "vip {{body_len}}"
[[routes]]
method = "POST"
path = "/orders"
status = 201
body = "got {{body}}"
"#,
    );
    let mut c = Client::connect(server.addr());
    // Expect: 100-continue: the mock must ask for the body it waits for.
    c.send(
        b"POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(c.line(), "HTTP/1.1 100 Continue");
    assert_eq!(c.line(), "");
    for piece in [&b"I am"[..], b" v", b"ip"] {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = c.read_response(false);
    assert_eq!((r.status, r.body.as_slice()), (202, &b"vip 8"[..]));
    // Pipelined: a plain body, then a GET behind it, answered in order on one connection.
    c.send(b"POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /none HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response(false);
    assert_eq!((r.status, r.body.as_slice()), (201, &b"got hello"[..]));
    assert_eq!(c.read_response(false).status, 404);
}

#[test]
fn latency_waits_on_a_timer_without_blocking_the_thread() {
    let _guard = shared();
    let server = mock_server(
        1,
        r#"
[[routes]]
path = "/slow"
latency = "400ms"
body = "slow"
[[routes]]
path = "/fast"
body = "fast"
"#,
    );
    let mut slow = Client::connect(server.addr());
    let start = Instant::now();
    slow.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    // The one server thread answers another connection while the slow answer waits.
    let mut fast = Client::connect(server.addr());
    assert_eq!(fast.get("/fast").body, b"fast");
    let fast_done = start.elapsed();
    assert_eq!(slow.read_response(false).body, b"slow");
    let slow_done = start.elapsed();
    assert!(
        fast_done < Duration::from_millis(350),
        "fast answer took {fast_done:?}"
    );
    assert!(
        slow_done >= Duration::from_millis(400),
        "slow answer after {slow_done:?}"
    );
}

#[test]
fn ip_rate_limit_tells_clients_apart() {
    let _guard = shared();
    let server = mock_server(
        2,
        r#"
[[routes]]
path = "/api"
body = "ok"
[routes.rate_limit]
key = "ip"
window = "1m"
limit = 2
"#,
    );
    let from = |ip: Ipv4Addr| {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket
            .bind(&SocketAddr::from((ip, 0)).into())
            .expect("bind a loopback source");
        socket
            .connect_timeout(&server.addr().into(), IO_TIMEOUT)
            .expect("connect");
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let writer = stream.try_clone().expect("clone");
        Client {
            reader: std::io::BufReader::new(stream),
            writer,
        }
    };
    let mut statuses = Vec::new();
    for _ in 0..3 {
        // A new connection each time: the limit is per address, not per connection.
        statuses.push(from(Ipv4Addr::new(127, 0, 0, 1)).get("/api").status);
    }
    assert_eq!(statuses, [200, 200, 429]);
    let r = from(Ipv4Addr::new(127, 0, 0, 2)).get("/api");
    assert_eq!(r.status, 200, "another source address has its own budget");
    assert_eq!(r.header("x-ratelimit-remaining"), Some("1"));
}

#[test]
fn http_publish_reaches_json_topic_subscribers_on_every_thread() {
    let _guard = shared();
    let server = mock_server(
        2,
        r#"
[[routes]]
path = "/ws"
websocket = "pubsub"
topic = "json:channel"
replies = [{ contains = "subscribe", send = "subscribed" }]
[[routes]]
method = "POST"
path = "/publish/{channel}"
publish = "{{param.channel}}"
status = 202
body = "{{body_len}}"
"#,
    );
    // Enough clients that both threads get some (SO_REUSEPORT spreads them by hash).
    let mut news: Vec<Ws> = Vec::new();
    for _ in 0..8 {
        let (mut ws, _) = connect_ws(server.addr(), "/ws", None);
        ws.send(Message::text(
            r#"{"action": "subscribe", "channel": "news"}"#,
        ))
        .expect("send");
        assert_eq!(text(&mut ws), "subscribed");
        news.push(ws);
    }
    let (mut sports, _) = connect_ws(server.addr(), "/ws", None);
    sports
        .send(Message::text(
            r#"{"action": "subscribe", "channel": "sports"}"#,
        ))
        .expect("send");
    assert_eq!(text(&mut sports), "subscribed");
    let big = "x".repeat(1 << 20);
    for body in ["first", big.as_str()] {
        let r = post(server.addr(), "/publish/news", body.as_bytes());
        assert_eq!(r.status, 202);
        assert_eq!(r.body, body.len().to_string().as_bytes());
    }
    assert_eq!(post(server.addr(), "/publish/sports", b"goal").status, 202);
    for ws in &mut news {
        assert_eq!(text(ws), "first");
        assert_eq!(text(ws).len(), big.len());
    }
    assert_eq!(
        text(&mut sports),
        "goal",
        "only the topic's subscribers get its messages"
    );
}

#[test]
fn path_topics_welcome_and_broadcast_to_the_sender_too() {
    let _guard = shared();
    let server = mock_server(
        2,
        r#"
[[routes]]
path = "/rooms/{room}"
websocket = "pubsub"
topic = "{{param.room}}"
welcome = '{"type": "welcome", "room": "{{param.room}}"}'
"#,
    );
    let mut a: Vec<Ws> = (0..6)
        .map(|_| connect_ws(server.addr(), "/rooms/a", None).0)
        .collect();
    let (mut b, _) = connect_ws(server.addr(), "/rooms/b", None);
    for ws in a.iter_mut() {
        assert_eq!(text(ws), r#"{"type": "welcome", "room": "a"}"#);
    }
    assert_eq!(text(&mut b), r#"{"type": "welcome", "room": "b"}"#);
    a[0].send(Message::text("hi room a")).expect("send");
    for ws in a.iter_mut() {
        assert_eq!(text(ws), "hi room a");
    }
    b.send(Message::text("hi room b")).expect("send");
    assert_eq!(text(&mut b), "hi room b", "room b saw only its own message");
}

#[test]
fn echo_with_replies_and_a_subprotocol() {
    let _guard = shared();
    let server = mock_server(
        1,
        r#"
[[routes]]
path = "/graphql"
websocket = "echo"
protocol = "graphql-transport-ws"
replies = [{ contains = "connection_init", send = '{"type":"connection_ack"}' }]
"#,
    );
    let (mut ws, chosen) = connect_ws(server.addr(), "/graphql", Some("graphql-transport-ws"));
    assert_eq!(chosen.as_deref(), Some("graphql-transport-ws"));
    ws.send(Message::text(r#"{"type": "connection_init"}"#))
        .expect("send");
    assert_eq!(text(&mut ws), r#"{"type":"connection_ack"}"#);
    ws.send(Message::binary(vec![1u8, 2, 3])).expect("send");
    assert_eq!(
        ws.read().expect("read"),
        Message::binary(vec![1u8, 2, 3]),
        "other messages are echoed with their opcode"
    );
    // A client that offers no subprotocol gets none.
    let (_, chosen) = connect_ws(server.addr(), "/graphql", None);
    assert_eq!(chosen, None);
}

#[test]
fn a_port_range_serves_on_every_port() {
    let _guard = shared();
    for _ in 0..20 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let first = probe.local_addr().expect("addr");
        drop(probe);
        if first.port() > 65000 {
            continue;
        }
        let Ok(server) = spawn(ServeConfig {
            listen: first,
            ports: 3,
            ..config(2)
        }) else {
            continue; // a port of the run was taken meanwhile: try another
        };
        assert_eq!(server.addrs().len(), 3);
        for (i, addr) in server.addrs().iter().enumerate() {
            assert_eq!(addr.port(), first.port() + i as u16);
            for _ in 0..4 {
                assert_eq!(Client::connect(*addr).get("/").body, b"ok");
            }
        }
        let stats = server.stop().expect("clean stop");
        assert_eq!(stats.accepted, 12);
        assert_eq!(stats.stuck_at_stop, 0);
        return;
    }
    panic!("found no run of 3 free ports");
}
