//! A WebSocket server that misbehaves after a valid handshake: a masked server frame, a bad
//! opcode, a frame over the 16 MiB limit or over a limit set with `--ws-max-frame` /
//! `--ws-max-message`, a close in the middle of a frame. Each session fails with its error
//! kind counted, nothing panics, the report is complete.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blaster::proto::ws::check_upgrade_request;
use blaster_tests::run_json;
use serde_json::Value;

/// Serves until dropped; every connection gets a valid 101 and then `bad` bytes.
struct BadServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// What each held connection sent after the bad bytes, until it closed.
    after: Arc<Mutex<Vec<Vec<u8>>>>,
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
    let after = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&after);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if flag.load(Ordering::Relaxed) {
                break;
            }
            let Ok(mut s) = conn else { continue };
            let record = Arc::clone(&record);
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
                    // Hold the connection (bounded by the read timeout); the client must
                    // close it.
                    let mut got = Vec::new();
                    while let Ok(n @ 1..) = s.read(&mut chunk) {
                        got.extend_from_slice(&chunk[..n]);
                    }
                    record.lock().unwrap().push(got);
                }
            });
        }
    });
    BadServer { addr, stop, after }
}

fn run_against(server: &BadServer) -> Value {
    run_with(server, &[])
}

fn run_with(server: &BadServer, extra: &[&str]) -> Value {
    let url = format!("ws://{}/", server.addr);
    let mut args = vec![
        "run",
        &url,
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
    ];
    args.extend_from_slice(extra);
    run_json(&args)
}

/// The close code of the masked client close frame (code, no reason) `bytes` start with.
fn client_close_code(bytes: &[u8]) -> Option<u16> {
    match *bytes {
        [0x88, 0x82, m0, m1, _, _, c0, c1, ..] => Some(u16::from_be_bytes([c0 ^ m0, c1 ^ m1])),
        _ => None,
    }
}

/// At least `at_least` connections were closed by the client with a close frame of `code`,
/// and none sent anything else (a connection the run's end closed sends nothing).
fn assert_closed_with(server: &BadServer, code: u16, at_least: usize) {
    let waited = std::time::Instant::now();
    loop {
        let after = server.after.lock().unwrap();
        let closed = after
            .iter()
            .filter(|b| client_close_code(b) == Some(code))
            .count();
        if closed >= at_least || waited.elapsed() > Duration::from_secs(5) {
            assert!(
                closed >= at_least,
                "{closed} closes with {code}: {after:02x?}"
            );
            for bytes in after.iter().filter(|b| !b.is_empty()) {
                assert_eq!(
                    client_close_code(bytes),
                    Some(code),
                    "the client sent {bytes:02x?} after the oversized data"
                );
            }
            return;
        }
        drop(after);
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// A frame of 2000 bytes against `--ws-max-frame 1KiB`: counted as `frame_too_large`, the
/// session closed with 1009, the report complete.
#[test]
fn a_frame_over_a_configured_limit_is_counted_and_closed_with_1009() {
    let mut frame = vec![0x82, 0x7E];
    frame.extend_from_slice(&2000u16.to_be_bytes());
    frame.extend_from_slice(&[b'x'; 2000]);
    let s = bad_server(Box::leak(frame.into_boxed_slice()), false);
    let r = run_with(&s, &["--ws-max-frame", "1KiB"]);
    let ws = &r["ws"];
    let sessions = ws["sessions"].as_u64().unwrap();
    let too_large = error_count(&r, "frame_too_large");
    assert!((4..=sessions).contains(&too_large), "{ws:#}");
    assert_eq!(error_count(&r, "message_too_large"), 0, "{ws:#}");
    assert!(r["duration_s"].as_f64().is_some() && ws["handshake_us"]["count"].as_u64().is_some());
    assert_closed_with(&s, 1009, 4);
}

/// Three 600-byte fragments against `--ws-max-message 1KiB` (frames fit): counted as
/// `message_too_large` and closed with 1009. The default limits accept the same bytes.
#[test]
fn a_message_over_a_configured_limit_is_counted_and_closed_with_1009() {
    let mut frames = Vec::new();
    for (i, opcode) in [0x02u8, 0x00, 0x80].into_iter().enumerate() {
        frames.extend_from_slice(&[opcode, 0x7E]);
        frames.extend_from_slice(&600u16.to_be_bytes());
        frames.extend_from_slice(&[b'a' + i as u8; 600]);
    }
    let frames: &'static [u8] = Box::leak(frames.into_boxed_slice());
    let s = bad_server(frames, false);
    let r = run_with(&s, &["--ws-max-message", "1KiB"]);
    let ws = &r["ws"];
    let sessions = ws["sessions"].as_u64().unwrap();
    let too_large = error_count(&r, "message_too_large");
    assert!((4..=sessions).contains(&too_large), "{ws:#}");
    assert_closed_with(&s, 1009, 4);
    let s = bad_server(frames, false);
    let r = run_against(&s);
    let ws = &r["ws"];
    assert_eq!(ws["errors"], serde_json::json!({}), "{ws:#}");
    assert_eq!(ws["msgs_received"].as_u64(), Some(4), "{ws:#}");
}

/// The same limit as a key of a scenario file's ws_connect step.
#[test]
fn a_scenario_connect_step_takes_its_own_frame_limit() {
    let mut frame = vec![0x82, 0x7E];
    frame.extend_from_slice(&2000u16.to_be_bytes());
    frame.extend_from_slice(&[b'x'; 2000]);
    let s = bad_server(Box::leak(frame.into_boxed_slice()), false);
    let file = blaster_tests::TempPath::new(".toml");
    std::fs::write(
        file.path(),
        format!(
            "[scenarios.a]\nexecutor = \"shared-iterations\"\nvus = 1\niterations = 2\n\
             [[scenarios.a.steps]]\nws_connect = \"ws://{}/\"\nmax_frame = \"1KiB\"\n\
             [[scenarios.a.steps]]\nws_expect = \"x\"\ntimeout = \"2s\"\n",
            s.addr
        ),
    )
    .expect("write scenario");
    let r = run_json(&["run", file.path().to_str().unwrap(), "-t", "1"]);
    let ws = &r["ws"];
    assert_eq!(error_count(&r, "frame_too_large"), 2, "{ws:#}");
    assert_closed_with(&s, 1009, 2);
}
