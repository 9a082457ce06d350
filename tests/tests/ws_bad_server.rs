//! A WebSocket server that misbehaves after a valid handshake: a masked server frame, a bad
//! opcode, a frame over the 16 MiB limit, a close in the middle of a frame. Each session
//! fails with its error kind counted, nothing panics, the report is complete.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use blaster::proto::ws::check_upgrade_request;
use blaster_tests::run_json;
use serde_json::Value;

/// Serves until dropped; every connection gets a valid 101 and then `bad` bytes.
struct BadServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for BadServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

fn bad_server(bad: &'static [u8], close_after: bool) -> BadServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if flag.load(Ordering::Relaxed) {
                break;
            }
            let Ok(mut s) = conn else { continue };
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                let head = loop {
                    let Ok(n) = s.read(&mut chunk) else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    match check_upgrade_request(&buf) {
                        Ok(Some((_, head))) => {
                            let mut out = Vec::new();
                            head.encode_accept(None, &mut out);
                            break out;
                        }
                        Ok(None) => continue,
                        Err(_) => return,
                    }
                };
                let _ = s.write_all(&head);
                let _ = s.write_all(bad);
                if close_after {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                } else {
                    // Hold the connection; the client must close it.
                    let _ = s.read(&mut chunk);
                }
            });
        }
    });
    BadServer { addr, stop }
}

fn run_against(server: &BadServer) -> Value {
    run_json(&[
        "run",
        &format!("ws://{}/", server.addr),
        "--mode",
        "hold",
        "-c",
        "4",
        "-d",
        "1s",
        "-t",
        "1",
        "--backoff",
        "200ms",
    ])
}

fn error_count(r: &Value, kind: &str) -> u64 {
    r["ws"]["errors"][kind].as_u64().unwrap_or(0)
}

#[test]
fn a_masked_server_frame_fails_the_session() {
    // FIN text, masked, 1 byte.
    let s = bad_server(&[0x81, 0x81, 1, 2, 3, 4, b'x' ^ 1], false);
    let r = run_against(&s);
    assert!(error_count(&r, "masked_server_frame") >= 4, "{:#}", r["ws"]);
    assert!(r["ws"]["sessions"].as_u64().unwrap() >= 4);
}

#[test]
fn a_bad_opcode_fails_the_session() {
    let s = bad_server(&[0x83, 0x00], false);
    let r = run_against(&s);
    assert!(error_count(&r, "bad_opcode") >= 4, "{:#}", r["ws"]);
}

#[test]
fn a_frame_over_the_limit_fails_the_session() {
    // Binary frame announcing 17 MiB (limit: 16 MiB).
    let len: u64 = 17 << 20;
    let mut header = vec![0x82, 0x7F];
    header.extend_from_slice(&len.to_be_bytes());
    let s = bad_server(Box::leak(header.into_boxed_slice()), false);
    let r = run_against(&s);
    assert!(error_count(&r, "frame_too_large") >= 4, "{:#}", r["ws"]);
}

#[test]
fn a_close_mid_frame_is_counted() {
    // A 100-byte text frame cut after 3 bytes, then the server closes.
    let s = bad_server(&[0x81, 100, b'a', b'b', b'c'], true);
    let r = run_against(&s);
    let ws = &r["ws"];
    assert!(error_count(&r, "closed_mid_frame") >= 4, "{ws:#}");
    assert!(ws["reconnects"].as_u64().unwrap() >= 1, "{ws:#}");
}
