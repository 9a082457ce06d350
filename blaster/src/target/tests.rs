//! Live tests of the target server over loopback with blocking std sockets (every read and
//! write has a timeout, every loop a bound).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, mpsc};
use std::time::{Duration, Instant};

use super::*;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Live tests share the process; the fd/thread leak test needs it to itself.
static LIVE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    LIVE.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    LIVE.write().unwrap_or_else(|e| e.into_inner())
}

fn config(threads: usize) -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        threads,
        max_connections_per_thread: 1024,
        ..ServeConfig::default()
    }
}

fn server(threads: usize) -> ServerHandle {
    spawn(config(threads)).expect("server starts")
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        let writer = stream.try_clone().expect("clone");
        Client {
            reader: BufReader::new(stream),
            writer,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write request");
    }

    fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.read_response(false)
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read line");
        assert!(n > 0, "connection closed mid-response");
        assert!(line.ends_with("\r\n"), "line without CRLF: {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    fn fields(&mut self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        for _ in 0..100 {
            let line = self.line();
            if line.is_empty() {
                return fields;
            }
            let (name, value) = line.split_once(':').expect("header field");
            fields.push((name.to_string(), value.trim().to_string()));
        }
        panic!("too many header fields");
    }

    /// Reads one response (`head`: it answers a HEAD request, so no body follows).
    fn read_response(&mut self, head: bool) -> Resp {
        let status_line = self.line();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let headers = self.fields();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
            trailers: Vec::new(),
        };
        if head || status == 204 || status == 304 {
            return resp;
        }
        if resp.header("transfer-encoding") == Some("chunked") {
            assert!(resp.header("content-length").is_none());
            for _ in 0..10_000_000 {
                let size_line = self.line();
                let size =
                    usize::from_str_radix(size_line.split(';').next().expect("size").trim(), 16)
                        .expect("hex size");
                if size == 0 {
                    resp.trailers = self.fields();
                    return resp;
                }
                assert!(size <= 4096, "chunk of {size} bytes");
                let start = resp.body.len();
                resp.body.resize(start + size, 0);
                self.reader
                    .read_exact(&mut resp.body[start..])
                    .expect("chunk data");
                let mut crlf = [0u8; 2];
                self.reader.read_exact(&mut crlf).expect("chunk end");
                assert_eq!(&crlf, b"\r\n");
            }
            panic!("endless chunked body");
        }
        let len: usize = resp
            .header("content-length")
            .expect("Content-Length")
            .parse()
            .expect("length");
        resp.body.resize(len, 0);
        self.reader.read_exact(&mut resp.body).expect("body");
        resp
    }

    /// True when the server closed the connection (EOF or reset) with nothing more to read.
    fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
            Err(e) => panic!("waiting for close: {e}"),
        }
    }
}

fn is_pattern(body: &[u8]) -> bool {
    body.iter().enumerate().all(|(i, &b)| b == PATTERN[i % 64])
}

#[test]
fn root_says_ok() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    let resp = c.get("/");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"ok");
    assert_eq!(resp.header("content-length"), Some("2"));
    assert_eq!(resp.header("server"), Some("blaster"));
    assert!(resp.header("date").is_none());
    assert_eq!(c.get("/?again=1").body, b"ok");
    let stats = server.stop().expect("clean stop");
    assert_eq!(
        (stats.accepted, stats.requests, stats.stuck_at_stop),
        (1, 2, 0)
    );
}

#[test]
fn status_routes() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    let resp = c.get("/status/503");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("content-length"), Some("0"));
    // 204 and 304 carry no body and no length: the next response must follow right away.
    for code in ["204", "304"] {
        c.send(format!("GET /status/{code} HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n").as_bytes());
        let resp = c.read_response(false);
        assert_eq!(resp.status.to_string(), code);
        assert!(resp.header("content-length").is_none());
        let next = c.read_response(false);
        assert_eq!((next.status, next.body.as_slice()), (200, &b"ok"[..]));
    }
    assert_eq!(c.get("/status/101").status, 400);
    assert_eq!(c.get("/status/abc").status, 400);
    assert_eq!(c.get("/nothing/here").status, 404);
    assert_eq!(c.get("/").status, 200, "errors keep the connection");
}

#[test]
fn bytes_have_exact_length() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    for n in [0usize, 1, 1000, 16 * 1024 + 1, 1_000_000] {
        let resp = c.get(&format!("/bytes/{n}"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-length"), Some(n.to_string().as_str()));
        assert_eq!(resp.body.len(), n);
        assert!(is_pattern(&resp.body));
    }
    assert_eq!(c.get("/").body, b"ok");
}

#[test]
fn chunked_with_trailer_decodes() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    let resp = c.get("/chunked/10000?trailer=1");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("trailer"), Some("X-Checksum"));
    assert_eq!(resp.body.len(), 10_000);
    assert!(is_pattern(&resp.body));
    let sum: u64 = resp.body.iter().map(|&b| u64::from(b)).sum();
    assert_eq!(
        resp.trailers,
        vec![("X-Checksum".to_string(), sum.to_string())]
    );
    let big = c.get("/chunked/1000000");
    assert_eq!(big.body.len(), 1_000_000);
    assert!(is_pattern(&big.body) && big.trailers.is_empty());
    assert_eq!(c.get("/").body, b"ok");
}

#[test]
fn delay_waits() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    let started = Instant::now();
    let resp = c.get("/delay/50");
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(c.get("/delay/0").body, b"ok");
}

#[test]
fn pipelined_answers_stay_in_order() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    let started = Instant::now();
    c.send(b"GET /delay/100 HTTP/1.1\r\n\r\nGET /status/503 HTTP/1.1\r\n\r\nGET /bytes/5 HTTP/1.1\r\n\r\n");
    let first = c.read_response(false);
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!((first.status, first.body.as_slice()), (200, &b"ok"[..]));
    assert_eq!(c.read_response(false).status, 503);
    let third = c.read_response(false);
    assert_eq!((third.status, third.body.len()), (200, 5));
    // A delay behind a large body, and small replies behind both.
    c.send(b"GET /bytes/300000 HTTP/1.1\r\n\r\nGET /delay/20 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nHEAD /chunked/9 HTTP/1.1\r\n\r\n");
    assert_eq!(c.read_response(false).body.len(), 300_000);
    assert_eq!(c.read_response(false).body, b"ok");
    assert_eq!(c.read_response(false).body, b"ok");
    let head = c.read_response(true);
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(c.get("/").body, b"ok");
}

#[test]
fn head_sends_no_body() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    c.send(b"HEAD /bytes/100 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    let head = c.read_response(true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("100"));
    let next = c.read_response(false);
    assert_eq!(next.body, b"ok", "HEAD must not send body bytes");
}

#[test]
fn connection_close_closes() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    c.send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /status/500 HTTP/1.1\r\n\r\n");
    let resp = c.read_response(false);
    assert_eq!(resp.body, b"ok");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(
        c.closed(),
        "requests after Connection: close are not answered"
    );
}

#[test]
fn http10_keep_alive_rules() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let resp = c.read_response(false);
    assert_eq!(resp.body, b"ok");
    assert!(c.closed());
    let mut k = Client::connect(server.addr());
    for _ in 0..3 {
        k.send(b"GET /chunked/10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let resp = k.read_response(false);
        assert_eq!(resp.header("connection"), Some("keep-alive"));
        assert_eq!(
            resp.header("content-length"),
            Some("10"),
            "no chunking for HTTP/1.0"
        );
    }
}

#[test]
fn bad_requests_are_answered_then_closed() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    c.send(b"NOT HTTP AT ALL\r\n\r\n");
    let resp = c.read_response(false);
    assert_eq!(resp.status, 400);
    assert!(String::from_utf8_lossy(&resp.body).starts_with("bad request"));
    assert!(c.closed());

    let mut big = Client::connect(server.addr());
    let mut head = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    head.resize(70 * 1024, b'a');
    big.send(&head);
    let resp = big.read_response(false);
    assert_eq!(resp.status, 431);
    big.send(b"\r\n\r\n");
    assert!(big.closed());

    let mut te = Client::connect(server.addr());
    te.send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    assert_eq!(te.read_response(false).status, 501);
    assert!(te.closed());

    let mut m = Client::connect(server.addr());
    m.send(b"DELETE / HTTP/1.1\r\n\r\n");
    let resp = m.read_response(false);
    assert_eq!(resp.status, 405);
    assert!(resp.header("allow").is_some());
    assert_eq!(m.get("/").status, 200);
}

#[test]
fn request_split_into_single_bytes() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    let request = b"GET /bytes/7 HTTP/1.1\r\nHost: split\r\nUser-Agent: one-byte-at-a-time\r\n\r\n";
    for &b in request.iter() {
        c.send(&[b]);
        std::thread::sleep(Duration::from_micros(300));
    }
    let resp = c.read_response(false);
    assert_eq!((resp.status, resp.body.len()), (200, 7));
}

#[test]
fn request_bodies_are_skipped() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    let mut wire = b"POST /status/201 HTTP/1.1\r\nContent-Length: 100000\r\n\r\n".to_vec();
    wire.extend(std::iter::repeat_n(b'G', 100_000)); // looks like a request start, but is body
    wire.extend_from_slice(
        b"PUT /bytes/3 HTTP/1.1\r\nContent-Length: 4\r\n\r\nbodyGET / HTTP/1.1\r\n\r\n",
    );
    c.send(&wire);
    assert_eq!(c.read_response(false).status, 201);
    assert_eq!(c.read_response(false).body.len(), 3);
    assert_eq!(c.read_response(false).body, b"ok");
}

#[test]
fn expect_continue_gets_an_interim_response() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    c.send(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.line(), "HTTP/1.1 100 Continue");
    assert_eq!(c.line(), "");
    c.send(b"hello");
    assert_eq!(c.read_response(false).body, b"ok");
    assert_eq!(c.get("/").body, b"ok");
}

#[test]
fn concurrent_connections_all_answered() {
    let _guard = shared();
    let server = server(2);
    let addr = server.addr();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                let mut clients: Vec<Client> = (0..25).map(|_| Client::connect(addr)).collect();
                for round in 0..50 {
                    for (i, c) in clients.iter_mut().enumerate() {
                        let path = if (round + i + t) % 2 == 0 {
                            "/".to_string()
                        } else {
                            format!("/bytes/{}", i * 10)
                        };
                        c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
                    }
                    for (i, c) in clients.iter_mut().enumerate() {
                        let resp = c.read_response(false);
                        assert_eq!(resp.status, 200);
                        if (round + i + t) % 2 == 0 {
                            assert_eq!(resp.body, b"ok");
                        } else {
                            assert_eq!(resp.body.len(), i * 10);
                        }
                    }
                }
                clients.len() * 50
            })
        })
        .collect();
    let answered: usize = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .sum();
    assert_eq!(answered, 200 * 50);
    let stats = server.stop().expect("clean stop");
    assert_eq!(stats.stuck_at_stop, 0);
    assert_eq!(stats.accepted, 200);
    assert_eq!(stats.requests, 200 * 50);
}

#[test]
fn pipelining_client_that_reads_late_gets_everything() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    let mut writer = c.writer.try_clone().expect("clone");
    const N: usize = 20_000;
    let sender = std::thread::spawn(move || {
        let batch: Vec<u8> = b"GET /bytes/100 HTTP/1.1\r\n\r\n".repeat(1000);
        for _ in 0..N / 1000 {
            writer.write_all(&batch).expect("pipeline");
        }
        writer
            .write_all(b"GET /status/202 HTTP/1.1\r\n\r\n")
            .expect("last");
    });
    // Let the server's output back up before reading anything.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..N {
        let resp = c.read_response(false);
        assert_eq!((resp.status, resp.body.len()), (200, 100), "response {i}");
    }
    assert_eq!(c.read_response(false).status, 202);
    sender.join().expect("sender");
    let stats = server.stop().expect("clean stop");
    assert!(
        stats.input_pauses >= 1,
        "the late reader should have paused parsing: {stats:?}"
    );
}

#[test]
fn full_descriptor_table_drops_then_recovers() {
    let _guard = shared();
    let server = spawn(ServeConfig {
        max_connections_per_thread: 4,
        ..config(1)
    })
    .expect("server");
    let addr = server.addr();
    let mut held: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    for c in &mut held {
        assert_eq!(c.get("/").status, 200);
    }
    // The fifth connection does not fit into the table: the kernel accepts and drops it.
    let mut fifth = Client::connect(addr);
    fifth
        .reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let _ = fifth.writer.write_all(b"GET / HTTP/1.1\r\n\r\n");
    let mut buf = [0u8; 64];
    match fifth.reader.read(&mut buf) {
        Ok(0) => {}
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::WouldBlock | ErrorKind::TimedOut
            ) => {}
        other => panic!("the fifth connection must not be served: {other:?}"),
    }
    // Closing one makes room; accepting resumes.
    drop(held.pop());
    let mut sixth = Client::connect(addr);
    assert_eq!(sixth.get("/").status, 200);
    for c in &mut held {
        assert_eq!(c.get("/").status, 200);
    }
    let stats = server.stop().expect("clean stop");
    assert!(stats.accept_errors >= 1, "{stats:?}");
    assert_eq!(stats.stuck_at_stop, 0);
}

#[test]
fn serve_blocks_until_stopped() {
    let _guard = shared();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        serve(&config(2), flag, move |addrs| {
            tx.send(addrs[0]).expect("send addr")
        })
    });
    let addr = rx.recv_timeout(IO_TIMEOUT).expect("ready");
    let mut c = Client::connect(addr);
    assert_eq!(c.get("/").body, b"ok");
    stop.store(true, Ordering::Relaxed);
    thread.join().expect("serve thread").expect("serve ok");
    assert!(c.closed(), "stopping closes open connections");
}

#[test]
fn configuration_errors_say_what_to_do() {
    let _guard = shared();
    let err = spawn(ServeConfig {
        threads: 0,
        ..config(1)
    })
    .err()
    .expect("no threads");
    assert!(err.to_string().contains("at least one thread"), "{err}");
    let err = spawn(ServeConfig {
        max_connections_per_thread: 0,
        ..config(1)
    })
    .err()
    .expect("no room");
    assert!(err.to_string().contains("at least one connection"), "{err}");
    let first = server(1);
    let err = spawn(ServeConfig {
        listen: first.addr(),
        ..config(2)
    })
    .err()
    .expect("port taken");
    let msg = err.to_string();
    assert!(
        msg.contains("already in use") && msg.contains("--listen"),
        "{msg}"
    );
    let limit = connection_limit(&ServeConfig {
        max_connections_per_thread: usize::MAX,
        ..config(1)
    })
    .expect("limit");
    assert!((16..usize::MAX).contains(&limit));
}

#[test]
fn stopping_with_busy_connections_is_clean() {
    let _guard = shared();
    let server = server(2);
    let addr = server.addr();
    let mut clients = Vec::new();
    for i in 0..40 {
        let mut c = Client::connect(addr);
        match i % 5 {
            // Idle.
            0 => {}
            // A delay timer pending.
            1 => c.send(b"GET /delay/60000 HTTP/1.1\r\n\r\n"),
            // A send blocked on a client that does not read.
            2 => c.send(b"GET /bytes/1073741824 HTTP/1.1\r\n\r\n"),
            // Output backed up, input paused.
            3 => c.send(&b"GET /bytes/1000 HTTP/1.1\r\n\r\n".repeat(3000)),
            // Lingering after Connection: close.
            _ => c.send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"),
        }
        clients.push(c);
    }
    std::thread::sleep(Duration::from_millis(200));
    let stats = server.stop().expect("clean stop");
    assert_eq!(stats.stuck_at_stop, 0, "{stats:?}");
    assert_eq!(stats.accepted, 40);
}

fn count_entries(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn dropping_the_handle_releases_threads_and_descriptors() {
    let _guard = exclusive();
    // Warm up once so lazily created process resources are not counted as a leak.
    drop(server(2));
    let fds_before = count_entries("/proc/self/fd");
    let threads_before = count_entries("/proc/self/task");
    for _ in 0..20 {
        let server = server(2);
        let mut c = Client::connect(server.addr());
        assert_eq!(c.get("/").body, b"ok");
        drop(server);
        assert!(c.closed(), "dropping the server closes its connections");
    }
    // Other modules' tests may run meanwhile: allow a little noise, far below 20 servers' worth.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let fds = count_entries("/proc/self/fd");
        let threads = count_entries("/proc/self/task");
        if fds <= fds_before + 4 && threads <= threads_before + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leak: fds {fds_before} -> {fds}, threads {threads_before} -> {threads}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn shutdown_of_the_client_write_side_still_gets_answers() {
    let _guard = shared();
    let server = server(1);
    let mut c = Client::connect(server.addr());
    c.send(b"GET /delay/30 HTTP/1.1\r\n\r\nGET /bytes/70000 HTTP/1.1\r\n\r\n");
    c.writer.shutdown(Shutdown::Write).expect("half close");
    assert_eq!(c.read_response(false).body, b"ok");
    assert_eq!(c.read_response(false).body.len(), 70_000);
    assert!(c.closed());
}

/// Serves for a while for manual benchmarks, e.g.
/// `BLASTER_SERVE_PORT=8080 BLASTER_SERVE_SECS=10 taskset -c 1 cargo test --release -p blaster
/// --lib target::tests::serve_for_benchmark -- --ignored --nocapture`
/// then `taskset -c 0 wrk -t1 -c100 -d5s http://127.0.0.1:8080/`.
#[test]
#[ignore = "manual benchmark server"]
fn serve_for_benchmark() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let port = env("BLASTER_SERVE_PORT", 8080) as u16;
    let secs = env("BLASTER_SERVE_SECS", 10);
    let threads = env("BLASTER_SERVE_THREADS", 1) as usize;
    let server = spawn(ServeConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        threads,
        max_connections_per_thread: ServeConfig::DEFAULT_MAX_CONNECTIONS_PER_THREAD,
        ..ServeConfig::default()
    })
    .expect("server");
    eprintln!("serving on {} for {secs} s", server.addr());
    let cpu = |who| {
        // SAFETY: getrusage writes into the zeroed struct we own.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `usage` outlives the call.
        unsafe { libc::getrusage(who, &mut usage) };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        (t(usage.ru_utime), t(usage.ru_stime))
    };
    let start = Instant::now();
    let (u0, s0) = cpu(libc::RUSAGE_SELF);
    std::thread::sleep(Duration::from_secs(secs));
    let (u1, s1) = cpu(libc::RUSAGE_SELF);
    let wall = start.elapsed().as_secs_f64();
    let stats = server.stop().expect("stop");
    eprintln!(
        "wall {wall:.2} s, cpu user {:.2} s + sys {:.2} s = {:.0}% of one CPU; {stats:?}",
        u1 - u0,
        s1 - s0,
        100.0 * (u1 - u0 + s1 - s0) / wall
    );
}

mod mock;
mod ws;
