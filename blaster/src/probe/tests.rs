//! Probe tests against loopback connections. They need the probe to load (root or
//! CAP_BPF+CAP_PERFMON, tracefs): without that they print why and pass, unless
//! `BLASTER_PROBE_REQUIRE` is set (as `cargo xtask test --require` does), then they fail.

use std::{
    io::ErrorKind,
    net::{TcpListener, TcpStream},
};

use super::{Probe, ProbeOptions};

/// Starts the probe on `port`, or `None` (printed) when BPF cannot load here.
fn start_or_skip(port: u16) -> Option<Probe> {
    start_with_or_skip(port, &ProbeOptions::default())
}

/// [`start_or_skip`] with `opts`.
fn start_with_or_skip(port: u16, opts: &ProbeOptions) -> Option<Probe> {
    match Probe::start_with(&[port], opts) {
        Ok(p) => {
            if !p.skipped.is_empty() {
                eprintln!("probe: optional programs skipped: {:?}", p.skipped);
            }
            Some(p)
        }
        Err(e) if std::env::var_os("BLASTER_PROBE_REQUIRE").is_some() => {
            panic!("the probe must load (BLASTER_PROBE_REQUIRE is set) but: {e:#}")
        }
        Err(e) => {
            eprintln!("SKIPPED: the eBPF probe cannot load here: {e:#}");
            None
        }
    }
}

/// Whether the probe's sock_ops program is attached; when it is not, prints why and
/// returns false, or panics when the probe is required (`BLASTER_PROBE_REQUIRE`).
fn sock_ops_or_skip(probe: &Probe) -> bool {
    if probe.sock_ops_cgroup.is_some() {
        return true;
    }
    let why = probe
        .skipped
        .iter()
        .find(|(what, _)| what.starts_with("sock_ops"))
        .map_or("not attached", |(_, why)| why.as_str());
    require_or_skip(&format!("the sock_ops program is not attached: {why}"));
    false
}

/// A missing prerequisite: fails the test when the probe is required
/// (`BLASTER_PROBE_REQUIRE`, as `cargo xtask test --require` sets it) or under `CI=true`,
/// else prints why the test does nothing.
fn require_or_skip(why: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    if ci || std::env::var_os("BLASTER_PROBE_REQUIRE").is_some() {
        panic!("prerequisite missing (BLASTER_PROBE_REQUIRE or CI=true is set): {why}");
    }
    eprintln!("SKIPPED: {why}");
}

#[test]
fn probe_counts_loopback_handshakes_and_accepts() {
    const N: u64 = 25;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let Some(probe) = start_or_skip(port) else {
        return;
    };

    let clients: Vec<TcpStream> = (0..N)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    let accepted: Vec<TcpStream> = (0..N)
        .map(|_| listener.accept().expect("accept").0)
        .collect();

    let snap = probe.snapshot().expect("snapshot");
    eprintln!("{}", serde_json::to_string(&snap).expect("json"));
    let p = snap
        .port(port)
        .expect("the watched port is in the snapshot");
    assert_eq!(p.handshake.count, N, "handshakes counted");
    assert_eq!(p.accept_wait.count, N, "accepts matched to their handshake");
    assert!(
        p.handshake.p50_ns > 0 && p.handshake.max_ns < 1_000_000_000,
        "{:?}",
        p.handshake
    );
    assert_eq!(p.handshake.buckets.iter().map(|b| b.count).sum::<u64>(), N);
    assert_eq!(p.hist_missing, 0);
    assert_eq!(p.handshake_unmatched, 0);
    if sock_ops_or_skip(&probe) {
        // The server side of the same handshakes, through the sock_ops program.
        assert_eq!(p.server_handshake.count, N, "{:?}", p.server_handshake);
        assert_eq!(p.syns_received, N);
        assert_eq!(p.server_handshake_unmatched, 0);
        assert!(
            p.server_handshake.max_ns < 1_000_000_000,
            "{:?}",
            p.server_handshake
        );
    }
    drop((clients, accepted));
}

#[test]
fn probe_counts_refused_connects_and_resets() {
    // A port nobody listens on: bind one, note it, close it.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("local addr").port()
    };
    let Some(probe) = start_or_skip(port) else {
        return;
    };

    let err = TcpStream::connect(("127.0.0.1", port)).expect_err("nothing listens there");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);

    let snap = probe.snapshot().expect("snapshot");
    eprintln!("{}", serde_json::to_string(&snap).expect("json"));
    let p = snap
        .port(port)
        .expect("the watched port is in the snapshot");
    assert_eq!(p.connect_failed, 1, "the refused connect");
    assert_eq!(p.handshake.count, 0);
    assert!(
        p.resets_sent >= 1,
        "the kernel answered the SYN with a reset: {p:?}"
    );
    assert!(
        p.resets_received >= 1,
        "the client received that reset: {p:?}"
    );
}

#[test]
fn probe_check_lists_every_capability() {
    let results = super::check();
    for (what, res) in &results {
        eprintln!(
            "{:<70} {}",
            what,
            match res {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("MISSING: {e}"),
            }
        );
    }
    assert!(results.len() >= 6);
    if super::check::tracefs_dir().is_ok() {
        for (what, res) in &results {
            if what.starts_with("tracepoint ") {
                assert!(res.is_ok(), "{what}: {res:?}");
            }
        }
    }
}

/// The accept-queue test: a server that waits 20 ms after each connection is
/// established before it accepts it; the probe's accept-queue wait p50 must be within 10% of
/// that (its buckets are log-linear, at most 12.5% wide, and it reports a bucket's upper
/// bound, so the check allows the delay plus 10% plus one bucket of slack above, and no less
/// than the delay below).
#[test]
fn accept_queue_wait_matches_an_injected_delay() {
    use std::time::{Duration, Instant};
    const N: usize = 8;
    const DELAY: Duration = Duration::from_millis(20);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let Some(probe) = start_or_skip(port) else {
        return;
    };
    let mut accepted = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..N {
        // connect() returns once the handshake is done: the connection waits in the accept
        // queue from now on.
        clients.push(TcpStream::connect(("127.0.0.1", port)).expect("connect"));
        let established = Instant::now();
        std::thread::sleep(DELAY.saturating_sub(established.elapsed()));
        accepted.push(listener.accept().expect("accept").0);
    }
    let snap = probe.snapshot().expect("snapshot");
    let p = snap.port(port).expect("watched port");
    assert_eq!(p.accept_wait.count, N as u64, "{:?}", p.accept_wait);
    let p50_ms = p.accept_wait.p50_ns as f64 / 1e6;
    let want = DELAY.as_secs_f64() * 1e3;
    assert!(
        p50_ms >= want * 0.95 && p50_ms <= want * 1.10 * 1.125,
        "accept wait p50 {p50_ms:.2} ms for an injected {want} ms: {:?}",
        p.accept_wait
    );
    drop((clients, accepted));
}

/// The receive-queue test: the server reads each request 10 ms after it arrived;
/// the probe's receive-queue wait p50 must be within 10% of that (same bucket slack as
/// above). Also: the probe's connection count equals the connections the client made.
#[test]
fn recv_queue_wait_matches_an_injected_delay() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    const N: usize = 8;
    const DELAY: Duration = Duration::from_millis(10);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let Some(probe) = start_or_skip(port) else {
        return;
    };
    let mut pairs = Vec::new();
    let mut buf = [0u8; 64];
    for i in 0..N {
        let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        // Two requests per connection: the wait restarts after each read.
        for _ in 0..2 {
            // On loopback the bytes are in the server's receive queue when write returns.
            client.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
            let arrived = Instant::now();
            std::thread::sleep(DELAY.saturating_sub(arrived.elapsed()));
            let n = server.read(&mut buf).expect("read");
            assert!(n > 0, "request {i} read");
        }
        pairs.push((client, server));
    }
    let snap = probe.snapshot().expect("snapshot");
    let p = snap.port(port).expect("watched port");
    eprintln!("{:?}", p.recv_queue_wait);
    assert_eq!(
        p.connections, N as u64,
        "probe connections vs client connects"
    );
    assert_eq!(p.accept_wait.count, N as u64, "{:?}", p.accept_wait);
    assert_eq!(
        p.recv_queue_wait.count,
        2 * N as u64,
        "{:?}",
        p.recv_queue_wait
    );
    let p50_ms = p.recv_queue_wait.p50_ns as f64 / 1e6;
    let want = DELAY.as_secs_f64() * 1e3;
    assert!(
        p50_ms >= want * 0.95 && p50_ms <= want * 1.10 * 1.125,
        "receive-queue wait p50 {p50_ms:.2} ms for an injected {want} ms: {:?}",
        p.recv_queue_wait
    );
    // The smoothed RTT of loopback connections: sampled, and well under a millisecond.
    assert!(p.srtt.count > 0, "{:?}", p.srtt);
    assert!(p.srtt.p50_ns < 1_000_000, "{:?}", p.srtt);
    drop(pairs);
}

/// A server that aborts a connection (SO_LINGER 0, then close) sends a RST: the probe
/// counts it as sent on the watched port, and the client side's receipt of it.
#[test]
fn probe_counts_a_reset_sent_by_the_server() {
    use std::io::Read;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let Some(probe) = start_or_skip(port) else {
        return;
    };
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    socket2::SockRef::from(&server)
        .set_linger(Some(std::time::Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(server);
    let mut buf = [0u8; 8];
    let err = client
        .read(&mut buf)
        .expect_err("the server reset the connection");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    let snap = probe.snapshot().expect("snapshot");
    let p = snap.port(port).expect("watched port");
    eprintln!("{p:?}");
    assert_eq!(p.resets_sent, 1, "the server's RST: {p:?}");
    assert_eq!(p.resets_received, 1, "the client's receipt: {p:?}");
    assert_eq!(p.connections, 1);
}

/// A SYN to a port nobody listens on is dropped with reason NO_SOCKET: counted, named.
#[test]
fn probe_counts_dropped_packets_by_reason() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("local addr").port()
    };
    let Some(probe) = start_or_skip(port) else {
        return;
    };
    for _ in 0..3 {
        TcpStream::connect(("127.0.0.1", port)).expect_err("nothing listens there");
    }
    let snap = probe.snapshot().expect("snapshot");
    let p = snap.port(port).expect("watched port");
    eprintln!("{:?}", p.drops_by_reason);
    let no_socket = p
        .drops_by_reason
        .iter()
        .find(|d| d.name == "NO_SOCKET")
        .unwrap_or_else(|| panic!("no NO_SOCKET drop: {p:?}"));
    assert_eq!(no_socket.count, 3, "{p:?}");
}

/// blaster's own target (one thread) on an ephemeral loopback port.
fn io_uring_target() -> crate::target::ServerHandle {
    crate::target::spawn(crate::config::ServeConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        threads: 1,
        ..crate::config::ServeConfig::default()
    })
    .expect("start the built-in target")
}

/// `n` keep-alive connections to `port`, each after one answered `GET /`.
fn one_request_each(port: u16, n: u64) -> Vec<TcpStream> {
    use std::io::{Read, Write};
    (0..n)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("write");
            let mut buf = [0u8; 512];
            let n = c.read(&mut buf).expect("response");
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
            c
        })
        .collect()
}

/// blaster's own target accepts with io_uring (multishot accept into direct
/// descriptors), which makes no accept syscall: the probe still measures the accept-queue
/// wait of every connection, and the receive-queue wait of every request.
#[test]
fn accept_and_recv_waits_of_an_io_uring_server() {
    const N: u64 = 6;
    let server = io_uring_target();
    let port = server.addr().port();
    let Some(probe) = start_or_skip(port) else {
        return;
    };
    let clients = one_request_each(port, N);
    let snap = probe.snapshot().expect("snapshot");
    let p = snap.port(port).expect("watched port");
    eprintln!("{}", serde_json::to_string(p).expect("json"));
    assert_eq!(p.connections, N);
    assert_eq!(
        p.accept_wait.count, N,
        "io_uring accepts measured ({:?})",
        snap.unavailable
    );
    assert_eq!(p.uring_accepts, N);
    assert_eq!(p.recv_queue_wait.count, N, "{:?}", p.recv_queue_wait);
    assert!(p.accept_wait.max_ns < 1_000_000_000);
    drop(clients);
    server.stop().expect("server stopped cleanly");
}

/// `--no-io-uring`: the io_uring program is left out (listed as such), so the accepts of
/// an io_uring server are not seen, while its receive-queue waits still are.
#[test]
fn no_io_uring_leaves_the_completion_program_out() {
    const N: u64 = 3;
    let server = io_uring_target();
    let port = server.addr().port();
    let opts = ProbeOptions {
        io_uring: false,
        accept_syscalls: false,
        ..ProbeOptions::default()
    };
    let Some(probe) = start_with_or_skip(port, &opts) else {
        return;
    };
    assert!(
        probe
            .skipped
            .iter()
            .any(|(what, why)| what.starts_with("io_uring:") && why.contains("--no-io-uring")),
        "{:?}",
        probe.skipped
    );
    let clients = one_request_each(port, N);
    let snap = probe.snapshot().expect("snapshot");
    let p = snap.port(port).expect("watched port");
    assert_eq!(p.connections, N);
    assert_eq!(p.uring_accepts, 0);
    assert_eq!(p.accept_wait.count, 0, "{:?}", p.accept_wait);
    assert_eq!(p.recv_queue_wait.count, N, "{:?}", p.recv_queue_wait);
    drop(clients);
    server.stop().expect("server stopped cleanly");
}

/// A listener whose accept queue is full drops the next SYN: the host's ListenOverflows
/// and ListenDrops grow while the probe runs (they count every port, so at least ours).
#[test]
fn probe_sees_listen_overflows() {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    listener
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    // Backlog 0: the queue holds one established connection.
    listener.listen(0).expect("listen");
    let port = listener
        .local_addr()
        .expect("local addr")
        .as_socket()
        .expect("inet")
        .port();
    let Some(probe) = start_or_skip(port) else {
        return;
    };
    let target: socket2::SockAddr = std::net::SocketAddr::from(([127, 0, 0, 1], port)).into();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let c = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        c.set_nonblocking(true).expect("nonblocking");
        // EINPROGRESS for the ones whose SYN the full queue dropped.
        let _ = c.connect(&target);
        clients.push(c);
    }
    let snap = probe.snapshot().expect("snapshot");
    eprintln!(
        "listen overflows {} drops {}",
        snap.listen_overflows, snap.listen_drops
    );
    assert!(snap.listen_overflows >= 1, "{snap:?}");
    assert!(snap.listen_drops >= snap.listen_overflows, "{snap:?}");
    assert_eq!(snap.port(port).expect("watched").connections, 1);
}

/// Sets TCP_DEFER_ACCEPT (seconds) on a listening socket.
fn defer_accept(listener: &TcpListener, secs: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and a pointer to an int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "TCP_DEFER_ACCEPT: {}",
        std::io::Error::last_os_error()
    );
}

/// TCP_DEFER_ACCEPT makes the server ignore a final ACK without data and send the SYN-ACK
/// again after the first timeout (1 s): a SYN-ACK retransmit on the watched port.
#[test]
fn probe_counts_synack_retransmits() {
    use std::time::{Duration, Instant};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    // 1 s: the kernel resends the SYN-ACK at the first request timeout (longer values wait
    // for later ones).
    defer_accept(&listener, 1);
    let Some(probe) = start_or_skip(port) else {
        return;
    };
    let _client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // The first SYN-ACK retransmit comes about 1 s after the SYN; allow a busy machine 5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    let p = loop {
        let snap = probe.snapshot().expect("snapshot");
        let p = snap.port(port).expect("watched").clone();
        if p.synack_retransmits > 0 || Instant::now() >= deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(p.synack_retransmits >= 1, "{p:?}");
}

/// End to end on this host: the probe serves fresh snapshots over HTTP as `blaster probe
/// --listen` does, and `blaster run --probe` against the built-in (io_uring) target gets a
/// `kernel` section whose counts match what the client did.
#[test]
fn probe_feeds_the_kernel_section_of_a_run() {
    use std::sync::{Arc, Mutex};

    use crate::cli::{Cli, Command};
    use crate::report::endpoint::{Endpoint, Render};
    use clap::Parser as _;

    const CONNECTIONS: u64 = 4;
    let server = io_uring_target();
    let port = server.addr().port();
    let Some(probe) = start_or_skip(port) else {
        return;
    };
    let probe = Arc::new(Mutex::new(probe));
    let render: Render = {
        let probe = Arc::clone(&probe);
        Arc::new(move || {
            let snap = probe.lock().expect("probe").snapshot().expect("snapshot");
            serde_json::to_string(&snap).expect("json")
        })
    };
    let endpoint = Endpoint::start(
        "127.0.0.1:0".parse().expect("addr"),
        "/snapshot",
        "application/json",
        "--listen",
        render,
    )
    .expect("endpoint");
    let json = std::env::temp_dir().join(format!("blaster-probe-run-{}.json", std::process::id()));
    let cli = Cli::try_parse_from([
        "blaster".to_string(),
        "run".into(),
        format!("http://127.0.0.1:{port}/"),
        "-c".into(),
        CONNECTIONS.to_string(),
        "-t".into(),
        "1".into(),
        "-n".into(),
        "400".into(),
        "-q".into(),
        "--probe".into(),
        format!("http://{}", endpoint.addr()),
        "--json".into(),
        json.display().to_string(),
    ])
    .expect("run arguments parse");
    let Command::Run(args) = cli.command else {
        panic!("not a run");
    };
    let code = crate::cli::run_command(&args, Vec::new()).expect("the run");
    assert_eq!(code, 0);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("JSON");
    let _ = std::fs::remove_file(&json);
    let k = &report["kernel"];
    eprintln!("{k:#}");
    let responses = report["responses"].as_u64().expect("responses");
    assert_eq!(responses, 400);
    assert_eq!(k["connections"], CONNECTIONS, "{k:#}");
    assert_eq!(k["connections"], report["connections"]["opened"]);
    assert_eq!(k["accept_queue_us"]["count"], CONNECTIONS, "{k:#}");
    if probe.lock().expect("probe").sock_ops_cgroup.is_some() {
        assert_eq!(k["server_handshake_us"]["count"], CONNECTIONS, "{k:#}");
    }
    let recv = k["recv_queue_us"]["count"].as_u64().expect("count");
    assert!(
        recv * 10 >= responses * 9 && recv <= responses,
        "one receive-queue sample per request: {recv} for {responses}"
    );
    let split = &k["latency_split_us"];
    assert!(split["client"].as_f64().expect("client") > 0.0, "{split}");
    drop(endpoint);
    server.stop().expect("server stopped cleanly");
}

/// A dual-stack listener: IPv6 connections and IPv4 ones (IPv4-mapped on the listener's
/// side) both have their server-side handshake matched, SYN to established.
#[test]
fn probe_server_handshake_of_ipv6_and_mapped_ipv4() {
    const N: u64 = 3;
    let listener = match TcpListener::bind("[::]:0") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("SKIPPED: no IPv6 on this host ({e})");
            return;
        }
    };
    let port = listener.local_addr().expect("local addr").port();
    let Some(probe) = start_or_skip(port) else {
        return;
    };
    if !sock_ops_or_skip(&probe) {
        return;
    }
    let mut conns = Vec::new();
    for host in ["::1", "127.0.0.1"] {
        for _ in 0..N {
            let c = TcpStream::connect((host, port)).expect("connect");
            conns.push((c, listener.accept().expect("accept").0));
        }
    }
    let snap = probe.snapshot().expect("snapshot");
    let p = snap.port(port).expect("watched port");
    eprintln!("{:?}", p.server_handshake);
    assert_eq!(p.server_handshake.count, 2 * N, "{p:?}");
    assert_eq!(p.server_handshake_unmatched, 0, "{p:?}");
    assert_eq!(p.syns_received, 2 * N);
    drop(conns);
}

/// A network namespace made for one test (`ip netns add`), deleted when dropped, whatever
/// the test's outcome.
struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add NAME` and `lo` up in it; `Err` says what failed.
    fn create() -> Result<Netns, String> {
        let name = format!(
            "blaster-probe-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Moves the calling thread into the namespace (sockets it makes afterwards, and threads
    /// it spawns, live there).
    fn enter(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(format!("/run/netns/{}", self.name))?;
        // SAFETY: a valid namespace descriptor; setns changes only this thread's namespace.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// Runs `program args`; `Err` with its stderr when it fails or cannot start.
fn run_tool(program: &str, args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `{program}` ({e}): install iproute2"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run_tool("ip", args)
}

/// How the test delays the handshake inside the namespace.
#[derive(Clone, Copy, Debug)]
enum HandshakeDelay {
    /// `tc qdisc add dev lo root netem delay D`: every packet on `lo` waits D. The server
    /// sees the SYN after its wait; then the SYN-ACK and the final ACK each wait once
    /// before the server's connection is established: 2 x D.
    Netem(std::time::Duration),
    /// Kernels without netem (CONFIG_NET_SCH_NETEM off, as on the development machine):
    /// TCP_DEFER_ACCEPT on the listener makes the server ignore the bare final ACK and
    /// establish the connection when the first data arrives; the client sends it D after
    /// its connect() began: D.
    DeferAccept(std::time::Duration),
}

impl HandshakeDelay {
    /// The SYN-to-established time the server should see.
    fn expected(self) -> std::time::Duration {
        match self {
            HandshakeDelay::Netem(d) => 2 * d,
            HandshakeDelay::DeferAccept(d) => d,
        }
    }
}

/// A fresh network namespace, or `None` (printed, or a failure when the probe is required)
/// without root or the right to make one.
fn netns_or_skip() -> Option<Netns> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        require_or_skip("a network namespace needs root");
        return None;
    }
    Netns::create()
        .map_err(|e| require_or_skip(&format!("cannot make a network namespace: {e}")))
        .ok()
}

/// The handshake test: in a fresh network namespace (the probe's sock_ops program
/// sits on the root cgroup, which holds sockets of every namespace), a server and a client
/// on the namespace's loopback, with each packet delayed 10 ms by netem (or, without netem,
/// the connection established 20 ms after the SYN through TCP_DEFER_ACCEPT). The probe's
/// server-side handshake p50 must be within 10% of the expected time (the true median lies
/// in p50's bucket, `bucket_lower..=p50`, which must meet `expected +- 10%`), and its count
/// must equal the client's connections.
#[test]
fn probe_server_handshake_in_a_netns_matches_the_delay() {
    use std::io::Write;
    use std::time::{Duration, Instant};

    const N: u64 = 8;
    const NETEM: Duration = Duration::from_millis(10);
    let Some(ns) = netns_or_skip() else {
        return;
    };
    let delay_ms = NETEM.as_millis().to_string();
    let delay = match run_tool(
        "tc",
        &[
            "-n",
            &ns.name,
            "qdisc",
            "add",
            "dev",
            "lo",
            "root",
            "netem",
            "delay",
            &format!("{delay_ms}ms"),
        ],
    ) {
        Ok(()) => HandshakeDelay::Netem(NETEM),
        Err(e) => {
            eprintln!("no netem here ({e}): delaying the establishment with TCP_DEFER_ACCEPT");
            HandshakeDelay::DeferAccept(2 * NETEM)
        }
    };
    let expected = delay.expected();
    eprintln!("{delay:?}: expecting a server-side handshake of {expected:?}");

    // One thread in the namespace does everything: server, client, probe.
    let (snap, sock_ops, port) = std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter().expect("setns into the test namespace");
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind in the namespace");
            let port = listener.local_addr().expect("local addr").port();
            if let HandshakeDelay::DeferAccept(_) = delay {
                defer_accept(&listener, 5);
            }
            let probe = start_or_skip(port)?;
            let sock_ops = sock_ops_or_skip(&probe);
            let mut conns = Vec::new();
            for _ in 0..N {
                let began = Instant::now();
                let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                if let HandshakeDelay::DeferAccept(d) = delay {
                    std::thread::sleep(d.saturating_sub(began.elapsed()));
                    c.write_all(b"x").expect("first data");
                }
                // accept returns once the server's side is established.
                let server = listener.accept().expect("accept").0;
                conns.push((c, server));
            }
            let snap = probe.snapshot().expect("snapshot");
            drop(conns);
            Some((snap, sock_ops, port))
        })
        .join()
        .expect("the namespace thread")
    })
    .map_or((None, false, 0), |(a, b, c)| (Some(a), b, c));
    drop(ns);
    let (Some(snap), true) = (snap, sock_ops) else {
        return;
    };
    let p = snap.port(port).expect("watched port");
    let h = &p.server_handshake;
    eprintln!("server handshake: {h:?}");
    assert_eq!(h.count, N, "one handshake per client connection: {p:?}");
    assert_eq!(p.syns_received, N, "{p:?}");
    assert_eq!(p.server_handshake_unmatched, 0, "{p:?}");
    let want = expected.as_nanos() as f64;
    let lower = blaster_common::bucket_lower(blaster_common::bucket_index(h.p50_ns)) as f64;
    assert!(
        h.p50_ns as f64 >= want * 0.90 && lower <= want * 1.10,
        "server handshake p50 {:.2} ms (bucket from {:.2} ms) for an expected {:.2} ms ({delay:?})",
        h.p50_ns as f64 / 1e6,
        lower / 1e6,
        want / 1e6
    );
}

/// `TcpExt` counter `name` of the calling thread's network namespace.
fn tcp_ext(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?.split_whitespace();
    let values = lines.next()?.split_whitespace();
    names.zip(values).find(|(n, _)| *n == name)?.1.parse().ok()
}

/// SYN cookies, the documented limit: with `tcp_syncookies` 2 in a fresh namespace every
/// SYN is answered with a cookie. The kernel makes the cookie's request socket without a
/// listener, so the cgroup program does not run at the SYN: no handshake time, and each
/// connection counts as `server_handshake_unmatched` (not lost silently).
#[test]
fn probe_server_handshake_with_syn_cookies() {
    const N: u64 = 4;
    let Some(ns) = netns_or_skip() else {
        return;
    };
    let got = std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter().expect("setns into the test namespace");
            // /proc/sys/net is the opening thread's namespace: only the test's changes.
            std::fs::write("/proc/sys/net/ipv4/tcp_syncookies", "2")
                .expect("tcp_syncookies 2 in the test namespace");
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind in the namespace");
            let port = listener.local_addr().expect("local addr").port();
            let probe = start_or_skip(port)?;
            if !sock_ops_or_skip(&probe) {
                return None;
            }
            let cookies_before = tcp_ext("SyncookiesSent").expect("SyncookiesSent");
            let conns: Vec<_> = (0..N)
                .map(|_| {
                    let c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                    (c, listener.accept().expect("accept").0)
                })
                .collect();
            let cookies = tcp_ext("SyncookiesSent").expect("SyncookiesSent") - cookies_before;
            let snap = probe.snapshot().expect("snapshot");
            drop(conns);
            Some((snap, port, cookies))
        })
        .join()
        .expect("the namespace thread")
    });
    drop(ns);
    let Some((snap, port, cookies)) = got else {
        return;
    };
    let p = snap.port(port).expect("watched port");
    eprintln!("{cookies} SYN cookies sent; {:?}", p.server_handshake);
    assert_eq!(cookies, N, "every SYN got a cookie");
    assert_eq!(p.connections, N, "{p:?}");
    assert_eq!(p.server_handshake.count, 0, "{p:?}");
    assert_eq!(p.syns_received, 0, "{p:?}");
    assert_eq!(p.server_handshake_unmatched, N, "{p:?}");
}

/// The sock_ops program is detached and unloaded when the probe goes away (its cgroup link
/// is the probe's only hold on it): nothing stays attached to the root cgroup.
#[test]
fn probe_sock_ops_is_detached_on_drop() {
    use std::time::{Duration, Instant};
    let Some(probe) = start_or_skip(9) else {
        return;
    };
    if !sock_ops_or_skip(&probe) {
        return;
    }
    let id = probe.sock_ops_program_id().expect("the program's id");
    let loaded = |id: u32| {
        aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .any(|p| p.id() == id)
    };
    assert!(loaded(id), "program {id} is loaded while the probe runs");
    drop(probe);
    // The kernel releases a link's program from a work queue: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while loaded(id) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !loaded(id),
        "program {id} still loaded after the probe was dropped"
    );
}

/// `--recv-sample`: while the per-read programs are detached nothing is recorded; a data
/// stamp left from before a detach is not taken for the next window's wait (its read went
/// unseen), and the snapshot says how long they were attached.
#[test]
fn sampled_receive_programs_record_only_while_attached() {
    use std::io::{Read, Write};
    use std::time::Duration;
    const GAP: Duration = Duration::from_millis(300);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let Some(mut probe) = start_or_skip(port) else {
        return;
    };
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    let exchange = |client: &mut TcpStream, server: &mut TcpStream| {
        client.write_all(b"ping").expect("write");
        assert_eq!(server.read(&mut [0u8; 64]).expect("read"), 4);
    };
    let waits = |probe: &Probe| {
        let snap = probe.snapshot().expect("snapshot");
        let p = snap.port(port).expect("watched port");
        (p.recv_queue_wait.count, p.recv_queue_wait.max_ns, snap)
    };

    exchange(&mut client, &mut server);
    assert_eq!(waits(&probe).0, 1, "attached from the start");
    // Data stamped while attached, then the programs go: its read is unseen.
    client.write_all(b"ping").expect("write");
    std::thread::sleep(Duration::from_millis(20));
    probe.set_recv_attached(false).expect("detach");
    assert_eq!(server.read(&mut [0u8; 64]).expect("read"), 4);
    for _ in 0..5 {
        exchange(&mut client, &mut server);
    }
    assert_eq!(waits(&probe).0, 1, "nothing recorded while detached");
    std::thread::sleep(GAP);
    probe.set_recv_attached(true).expect("attach");
    exchange(&mut client, &mut server);
    let (count, max_ns, snap) = waits(&probe);
    assert_eq!(count, 2, "recorded again once attached");
    // The stale stamp would have made this wait span the detached gap.
    assert!(
        max_ns < GAP.as_nanos() as u64 / 2,
        "a wait of {max_ns} ns: the stamp from before the detach was used"
    );
    assert!(
        snap.recv_attached_ms + GAP.as_millis() as u64 <= snap.elapsed_ms + 5,
        "attached {} ms of {} ms",
        snap.recv_attached_ms,
        snap.elapsed_ms
    );
}
