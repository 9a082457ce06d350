//! Engine tests against a minimal keep-alive server made of std threads (no dependence on the
//! built-in target), all on loopback and bounded in time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::run;
use crate::config::{LoadModel, RequestSpec, RunConfig, StopCondition, Target};
use crate::metrics::ErrorKind;

/// Answers every request head with a fixed response; counts requests seen.
struct TinyServer {
    addr: SocketAddr,
    seen: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl TinyServer {
    fn start(response: &'static [u8]) -> TinyServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let (seen, stop) = (Arc::clone(&seen2), Arc::clone(&stop2));
                        std::thread::spawn(move || {
                            s.set_nonblocking(false).unwrap();
                            s.set_read_timeout(Some(Duration::from_millis(100)))
                                .unwrap();
                            let mut buf = [0u8; 8192];
                            let mut pending = Vec::new();
                            while !stop.load(Ordering::Relaxed) {
                                match s.read(&mut buf) {
                                    Ok(0) => return,
                                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                                    Err(_) => continue,
                                }
                                while let Some(end) =
                                    pending.windows(4).position(|w| w == b"\r\n\r\n")
                                {
                                    pending.drain(..end + 4);
                                    seen.fetch_add(1, Ordering::Relaxed);
                                    if s.write_all(response).is_err() {
                                        return;
                                    }
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        TinyServer { addr, seen, stop }
    }
}

impl Drop for TinyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn config(addr: SocketAddr, connections: usize, stop: StopCondition) -> RunConfig {
    RunConfig {
        targets: vec![Target {
            url: format!("http://{addr}/"),
            addr,
            host_header: addr.to_string(),
            path: "/".into(),
        }],
        sources: Vec::new(),
        threads: 1,
        connections,
        model: LoadModel::Closed,
        stop,
        connect_rate: None,
        max_connecting: None,
        churn: None,
        pipeline: 1,
        timeout: Duration::from_secs(5),
        request: RequestSpec {
            method: "GET".into(),
            headers: Vec::new(),
            body: Vec::new(),
        },
        late_after: Duration::from_millis(1),
        report_interval: Duration::from_secs(1),
        command_line: Vec::new(),
    }
}

#[test]
fn closed_model_request_budget_is_exact() {
    let server = TinyServer::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let cfg = config(
        server.addr,
        8,
        StopCondition {
            duration: Some(Duration::from_secs(20)),
            requests: Some(500),
        },
    );
    let out = run(&cfg, Arc::new(AtomicBool::new(false))).unwrap();
    let m = &out.metrics;
    assert_eq!(m.requests, 500);
    assert_eq!(m.responses, 500);
    assert_eq!(m.status[200], 500);
    assert_eq!(m.total_errors(), 0);
    assert_eq!(m.conns_opened, 8);
    assert_eq!(server.seen.load(Ordering::Relaxed), 500);
    assert_eq!(m.latency.len(), 500);
}

#[test]
fn open_model_sends_at_the_rate() {
    let server = TinyServer::start(b"HTTP/1.1 204 No Content\r\n\r\n");
    let mut cfg = config(
        server.addr,
        4,
        StopCondition {
            duration: Some(Duration::from_secs(1)),
            requests: None,
        },
    );
    cfg.model = LoadModel::Open { rate: 400.0 };
    let out = run(&cfg, Arc::new(AtomicBool::new(false))).unwrap();
    let m = &out.metrics;
    // 400/s for one second: 400 intended; all sent or counted as dropped.
    assert_eq!(
        m.requests + m.dropped,
        400,
        "sent {} dropped {}",
        m.requests,
        m.dropped
    );
    assert!(m.responses >= 390, "{}", m.responses);
    assert_eq!(m.status[204], m.responses);
}

#[test]
fn pipelined_and_multithreaded_counts_match() {
    let server = TinyServer::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let mut cfg = config(
        server.addr,
        6,
        StopCondition {
            duration: None,
            requests: Some(999),
        },
    );
    cfg.pipeline = 4;
    cfg.threads = 2;
    let out = run(&cfg, Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!(out.metrics.requests, 999);
    assert_eq!(out.metrics.responses, 999);
    assert_eq!(server.seen.load(Ordering::Relaxed), 999);
}

#[test]
fn refused_connections_fail_the_run_with_advice() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg = config(
        addr,
        2,
        StopCondition {
            duration: Some(Duration::from_secs(5)),
            requests: None,
        },
    );
    let err = run(&cfg, Arc::new(AtomicBool::new(false)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refused") && err.contains("is the target running"),
        "{err}"
    );
}

#[test]
fn timeouts_end_requests_and_reconnect() {
    // A server that reads but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < until {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let mut cfg = config(
        addr,
        2,
        StopCondition {
            duration: Some(Duration::from_millis(700)),
            requests: None,
        },
    );
    cfg.timeout = Duration::from_millis(200);
    let out = run(&cfg, Arc::new(AtomicBool::new(false))).unwrap();
    let m = &out.metrics;
    assert!(
        m.error_count(ErrorKind::Timeout) >= 4,
        "timeouts {}",
        m.error_count(ErrorKind::Timeout)
    );
    assert!(m.reconnects >= 2, "reconnects {}", m.reconnects);
    assert_eq!(
        m.requests,
        m.responses + m.request_errors() + m.in_flight_at_end
    );
    holder.join().unwrap();
}

#[test]
fn connects_that_hang_end_as_connect_failures_after_the_timeout() {
    // A listener with a backlog of 0 that never accepts: once its accept queue is full the
    // kernel drops further SYNs, so those connects hang until blaster's deadline ends them.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut cfg = config(
        addr,
        8,
        StopCondition {
            duration: Some(Duration::from_millis(900)),
            requests: None,
        },
    );
    cfg.timeout = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let out = run(&cfg, Arc::new(AtomicBool::new(false))).unwrap();
    let m = &out.metrics;
    assert!(
        m.error_count(ErrorKind::ConnectFailed) >= 4,
        "connect failures {}",
        m.error_count(ErrorKind::ConnectFailed)
    );
    assert_eq!(
        m.conns_failed,
        m.error_count(ErrorKind::ConnectFailed) + m.error_count(ErrorKind::ConnectRefused)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the run ended on time"
    );
    drop(socket);
}

#[test]
fn churn_reopens_connections_without_errors() {
    let server = TinyServer::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let mut cfg = config(
        server.addr,
        10,
        StopCondition {
            duration: Some(Duration::from_millis(1500)),
            requests: None,
        },
    );
    // The open model keeps this test light (other tests measure timing meanwhile); churn
    // acts the same in every model: a connection with a request in flight closes after its
    // response.
    cfg.model = LoadModel::Open { rate: 1000.0 };
    cfg.churn = Some(400.0);
    let out = run(&cfg, Arc::new(AtomicBool::new(false))).unwrap();
    let m = &out.metrics;
    let expected = 400.0 * out.duration.as_secs_f64();
    assert!(
        (m.churned as f64 - expected).abs() <= expected * 0.15,
        "churned {} in {:?}, expected about {expected:.0}",
        m.churned,
        out.duration
    );
    // Churn waits for the response in flight, so it causes no error.
    assert_eq!(m.total_errors(), 0);
    assert_eq!(m.reconnects, m.churned);
    assert_eq!(m.conns_opened, 10 + m.churned);
    assert_eq!(m.open_at_end, 10);
    assert!(m.responses > m.churned, "requests went on between closes");
    assert_eq!(
        m.requests,
        m.responses + m.request_errors() + m.in_flight_at_end
    );
}

#[test]
fn ring_slots_default_to_the_open_files_limit_and_env_lowers_them() {
    use super::ring_slots;
    assert_eq!(ring_slots(20_000, None).unwrap(), 20_000);
    assert_eq!(ring_slots(20_000, Some("1000")).unwrap(), 1000);
    // Never above what one ring can register.
    assert_eq!(ring_slots(20_000, Some("50000")).unwrap(), 20_000);
    assert_eq!(ring_slots(u64::MAX, None).unwrap(), 1 << 20);
    for bad in ["0", "-1", "many", ""] {
        let err = ring_slots(20_000, Some(bad)).unwrap_err().to_string();
        assert!(
            err.contains(&format!("BLASTER_RING_SLOTS=\"{bad}\"")) && err.contains("e.g."),
            "{err}"
        );
    }
}

/// One worker driving three rings (three slots each, the last one two): every request is
/// answered, on connections spread over every ring.
#[test]
fn one_worker_drives_several_rings_and_the_counts_add_up() {
    use super::WorkerPlan;
    use super::clock::Clock;
    use super::worker::Worker;
    let server = TinyServer::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let cfg = Arc::new(config(
        server.addr,
        8,
        StopCondition {
            duration: Some(Duration::from_secs(20)),
            requests: Some(600),
        },
    ));
    let clock = Clock::new();
    let start_ns = clock.now_ns();
    let plan = WorkerPlan {
        connections: 8,
        first_connection: 0,
        start_ns,
        end_ns: start_ns + 20_000_000_000,
        request_limit: 600,
        interval_ns: 1_000_000_000,
        ring_slots: 3,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let worker = Worker::new(0, cfg, clock, stop, plan, None).unwrap();
    assert_eq!(worker.ring_count(), 3);
    let m = worker.run().unwrap();
    assert_eq!(m.requests, 600);
    assert_eq!(m.responses, 600);
    assert_eq!(m.total_errors(), 0);
    assert_eq!(m.conns_opened, 8);
    assert_eq!(m.open_at_end, 8);
    assert_eq!(server.seen.load(Ordering::Relaxed), 600);
}
