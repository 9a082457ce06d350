//! Live tests of the WebSocket routes with tungstenite's blocking client (read timeouts on
//! every stream, every loop bounded).

use std::net::TcpStream;

use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use super::*;

type Ws = WebSocket<TcpStream>;

fn connect(addr: SocketAddr, path: &str) -> Ws {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    let url = format!("ws://{addr}{path}");
    let (ws, response) = tungstenite::client::client(url.as_str(), stream).expect("handshake");
    assert_eq!(response.status().as_u16(), 101);
    ws
}

/// The next data message, skipping nothing else.
fn next(ws: &mut Ws) -> Message {
    ws.read().expect("read a message")
}

#[test]
fn echo_text_and_binary() {
    let _guard = shared();
    let server = server(2);
    let mut ws = connect(server.addr(), "/ws/echo");
    ws.send(Message::text("hello")).expect("send");
    assert_eq!(next(&mut ws), Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .expect("send");
    assert_eq!(next(&mut ws), Message::binary(vec![0u8, 1, 2, 255]));
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).expect("send");
    assert_eq!(next(&mut ws), Message::binary(big));
    let text = "é".repeat(60_000);
    ws.send(Message::text(text.clone())).expect("send");
    assert_eq!(next(&mut ws), Message::text(text));
    ws.send(Message::text("")).expect("send");
    assert_eq!(next(&mut ws), Message::text(""));
}

#[test]
fn ping_is_answered_with_pong() {
    let _guard = shared();
    let server = server(1);
    let mut ws = connect(server.addr(), "/ws/echo");
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .expect("send");
    assert_eq!(
        next(&mut ws),
        Message::Pong(b"are you there".to_vec().into())
    );
}

#[test]
fn close_handshake_returns_the_clients_code() {
    let _guard = shared();
    let server = server(1);
    let mut ws = connect(server.addr(), "/ws/echo");
    ws.close(Some(CloseFrame {
        code: CloseCode::from(4321),
        reason: "bye".into(),
    }))
    .expect("close");
    let mut got = None;
    for _ in 0..10 {
        match ws.read() {
            Ok(Message::Close(frame)) => got = frame.map(|f| u16::from(f.code)),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("close: {e}"),
        }
    }
    assert_eq!(got, Some(4321));
}

#[test]
fn pubsub_reaches_every_client_of_the_topic_only() {
    let _guard = shared();
    let server = server(1); // one worker: every client shares its topic table
    let mut a = connect(server.addr(), "/ws/pubsub/t1");
    let mut b = connect(server.addr(), "/ws/pubsub/t1");
    let mut c = connect(server.addr(), "/ws/pubsub/t2");
    a.send(Message::text("from a")).expect("send");
    assert_eq!(next(&mut a), Message::text("from a"));
    assert_eq!(next(&mut b), Message::text("from a"));
    let big = vec![7u8; 50_000];
    b.send(Message::binary(big.clone())).expect("send");
    assert_eq!(next(&mut a), Message::binary(big.clone()));
    assert_eq!(next(&mut b), Message::binary(big));
    c.get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    match c.read() {
        Err(tungstenite::Error::Io(e))
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("t2 got {other:?}"),
    }
    // A client that left is no longer served; the others still are.
    drop(b);
    c.get_mut()
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("timeout");
    c.send(Message::text("t2 only")).expect("send");
    assert_eq!(next(&mut c), Message::text("t2 only"));
    a.send(Message::text("again")).expect("send");
    assert_eq!(next(&mut a), Message::text("again"));
}

#[test]
fn close_after_three_messages() {
    let _guard = shared();
    let server = server(1);
    let mut ws = connect(server.addr(), "/ws/echo?close_after=3");
    for i in 0..3 {
        ws.send(Message::text(format!("m{i}"))).expect("send");
    }
    for i in 0..3 {
        assert_eq!(next(&mut ws), Message::text(format!("m{i}")));
    }
    match next(&mut ws) {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a close, got {other:?}"),
    }
}

#[test]
fn delay_holds_each_echo() {
    let _guard = shared();
    let server = server(1);
    let mut ws = connect(server.addr(), "/ws/echo?delay_ms=150");
    let start = Instant::now();
    ws.send(Message::text("slow")).expect("send");
    ws.send(Message::Ping(b"p".to_vec().into())).expect("send");
    // The pong is not delayed; the echo is.
    assert_eq!(next(&mut ws), Message::Pong(b"p".to_vec().into()));
    assert_eq!(next(&mut ws), Message::text("slow"));
    assert!(
        start.elapsed() >= Duration::from_millis(140),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn drop_at_drops_the_connection_without_close() {
    let _guard = shared();
    let server = server(1);
    let start = Instant::now();
    let mut ws = connect(server.addr(), "/ws/echo?drop_at_ms=200");
    ws.send(Message::text("before")).expect("send");
    assert_eq!(next(&mut ws), Message::text("before"));
    match ws.read() {
        Ok(message) => panic!("expected the connection dropped, got {message:?}"),
        Err(tungstenite::Error::Protocol(_) | tungstenite::Error::Io(_)) => {}
        Err(e) => panic!("unexpected error {e}"),
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn plain_get_is_426_and_bad_key_is_400() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    let resp = c.get("/ws/echo");
    assert_eq!(resp.status, 426);
    assert_eq!(resp.header("upgrade"), Some("websocket"));
    c.send(
        b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: too-short\r\n\r\n",
    );
    let resp = c.read_response(false);
    assert_eq!(resp.status, 400);
    assert!(String::from_utf8_lossy(&resp.body).contains("Sec-WebSocket-Key"));
    // The connection is still HTTP.
    assert_eq!(c.get("/").status, 200);
}

#[test]
fn oversized_message_is_closed_with_1009() {
    let _guard = shared();
    let server = server(1);
    let mut ws = connect(server.addr(), "/ws/echo");
    // A masked binary frame header announcing 17 MiB, then a mask key; no payload needed.
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(17u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    ws.get_mut().write_all(&frame).expect("write");
    match next(&mut ws) {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected a close, got {other:?}"),
    }
}
