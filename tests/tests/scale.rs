//! Scale: 50,000 connections held against `blaster serve`, every one counted open (more than
//! one ring's direct-descriptor table, more than one source address's comfortable port range);
//! one thread driving many rings (`BLASTER_RING_SLOTS` makes the tables small); churn
//! (connections closed and reopened at a rate) on top of held connections.

use std::process::{Command, Stdio};
use std::time::Duration;

use blaster_tests::{
    ChildGuard, blaster_bin, f, free_port, run_json_command, run_json_output, serial, start_serve,
    u, wait_for_port,
};

#[test]
fn fifty_thousand_held_connections_are_all_open() {
    const N: u64 = 50_000;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut serve = Command::new(blaster_bin());
    // 4 threads x 16,384 connections each (the default per-thread table).
    serve
        .args(["serve", "--listen", &listen, "-t", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _serve = ChildGuard::new(serve.spawn().expect("serve starts"));
    assert!(
        wait_for_port(listen.parse().unwrap(), Duration::from_secs(10)),
        "serve did not listen"
    );

    let _serial = serial();
    let run = run_json_output(
        &[
            "run",
            &format!("http://{listen}/"),
            "--mode",
            "hold",
            "-c",
            &N.to_string(),
            // 4 sources: 12,500 connections each, under the ~14,000 per (source, target)
            // where the kernel's port search slows down.
            "--source",
            "127.0.0.2-127.0.0.5",
            "--keepalive-every",
            "1s",
            // Room for a SYN the target's accept queue dropped during the storm on a busy
            // machine (retransmitted after 1 s, then 3 s): every connection must be open.
            "-d",
            "10s",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stderr());
    let r = run.report;
    assert_eq!(r["model"], "hold");
    assert_every_connection_held(&r, N);
    // The storm's length: the seeds ask for 10,000 connections in under 30 s; here 50,000.
    let all_open = f(&r, &["connections", "all_open_s"]);
    assert!(
        all_open > 0.0 && all_open < 30.0,
        "all open after {all_open} s"
    );
    // More connections than one ring's table holds (RLIMIT_NOFILE, 20,000 here): several
    // rings, on no more threads than CPUs.
    let threads = u(&r, &["threads"]);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    assert!(threads <= cpus, "{threads} threads on {cpus} CPUs:\n{r:#}");
    assert!(u(&r, &["rings"]) >= 3.max(threads), "{r:#}");
    // Keep-alives went out on held connections and were answered.
    assert_keepalives_answered(&r, N);
}

/// Every one of `n` connections opened (none failed) and was still open at the end and at
/// the peak, each connect timed, no error.
fn assert_every_connection_held(r: &serde_json::Value, n: u64) {
    assert_eq!(u(r, &["connections", "opened"]), n, "{r:#}");
    assert_eq!(u(r, &["connections", "failed"]), 0, "{r:#}");
    assert_eq!(u(r, &["connections", "open_at_end"]), n, "{r:#}");
    assert_eq!(u(r, &["memory", "peak_open_connections"]), n, "{r:#}");
    assert_eq!(u(r, &["errors", "total"]), 0, "{r:#}");
    assert_eq!(u(r, &["connect_latency_us", "count"]), n, "{r:#}");
}

/// At least one keep-alive per held connection, every one answered or still in flight.
fn assert_keepalives_answered(r: &serde_json::Value, n: u64) {
    assert!(u(r, &["responses"]) >= n, "{r:#}");
    assert_eq!(
        u(r, &["requests"]),
        u(r, &["responses"]) + u(r, &["in_flight_at_end"]),
        "{r:#}"
    );
}

#[test]
fn churn_closes_and_reopens_at_the_rate_while_every_connection_stays_held() {
    const N: u64 = 1_000;
    const RATE: f64 = 2_000.0;
    let (_serve, addr) = start_serve(1);
    let _serial = serial();
    let run = run_json_output(
        &[
            "run",
            &format!("http://{addr}/"),
            "--mode",
            "hold",
            "-c",
            &N.to_string(),
            "-t",
            "2",
            "--churn",
            "2k",
            "-d",
            "4s",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stderr());
    let r = run.report;
    let churned = u(&r, &["connections", "churned"]);
    let expected = RATE * f(&r, &["duration_s"]);
    assert!(
        (churned as f64 - expected).abs() <= expected * 0.1,
        "churned {churned}, expected {expected:.0} +-10%:\n{r:#}"
    );
    // Every churned connection was reopened, and every connect (first or again) was timed.
    assert_eq!(u(&r, &["connections", "reconnects"]), churned, "{r:#}");
    assert_eq!(u(&r, &["connections", "opened"]), N + churned, "{r:#}");
    assert_eq!(
        u(&r, &["connect_latency_us", "count"]),
        N + churned,
        "{r:#}"
    );
    assert_eq!(u(&r, &["connections", "failed"]), 0, "{r:#}");
    assert_eq!(u(&r, &["errors", "total"]), 0, "{r:#}");
    assert_eq!(u(&r, &["connections", "open_at_end"]), N, "{r:#}");
    assert!(f(&r, &["connections", "all_open_s"]) < 2.0, "{r:#}");
    // Churn is a steady load, not a burst: every whole second after the first opened about
    // RATE connections, and the open count stayed at N (less the few being reopened).
    let points = r["timeseries"].as_array().expect("timeseries");
    let whole: Vec<_> = points
        .iter()
        .filter(|p| {
            let t = p["t_s"].as_f64().unwrap();
            t >= 1.5 && (t - t.round()).abs() < 1e-6
        })
        .collect();
    assert!(whole.len() >= 2, "{r:#}");
    for p in whole {
        let opened = u(p, &["connections_opened"]) as f64;
        assert!(
            (opened - RATE).abs() <= RATE * 0.25,
            "interval ending at {} s opened {opened} connections, expected {RATE} +-25%:\n{r:#}",
            p["t_s"]
        );
        assert!(
            u(p, &["open_connections"]) >= N * 95 / 100,
            "interval ending at {} s had {} open:\n{r:#}",
            p["t_s"],
            p["open_connections"]
        );
    }
}

#[test]
fn connect_rate_ramps_the_held_connections_up_linearly() {
    const N: u64 = 3_000;
    const RATE: f64 = 1_500.0;
    let (_serve, addr) = start_serve(1);
    let _serial = serial();
    let run = run_json_output(
        &[
            "run",
            &format!("http://{addr}/"),
            "--mode",
            "hold",
            "-c",
            &N.to_string(),
            "--connect-rate",
            "1500",
            "-d",
            "3s",
            "--report-interval",
            "500ms",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stderr());
    let r = run.report;
    assert_eq!(u(&r, &["connections", "opened"]), N, "{r:#}");
    assert_eq!(u(&r, &["connections", "open_at_end"]), N, "{r:#}");
    // Every connect of the ramp is in the connect latency histogram.
    assert_eq!(u(&r, &["connect_latency_us", "count"]), N, "{r:#}");
    let ramp = N as f64 / RATE;
    let all_open = f(&r, &["connections", "all_open_s"]);
    assert!(
        (all_open - ramp).abs() <= ramp * 0.15,
        "all open after {all_open} s, expected {ramp} s +-15%:\n{r:#}"
    );
    // Linear: halfway through the ramp about half are open.
    let half = r["timeseries"]
        .as_array()
        .expect("timeseries")
        .iter()
        .find(|p| (p["t_s"].as_f64().unwrap() - ramp / 2.0).abs() < 1e-6)
        .unwrap_or_else(|| panic!("no interval ends at {} s:\n{r:#}", ramp / 2.0));
    let open = u(half, &["open_connections"]) as f64;
    assert!(
        (open - N as f64 / 2.0).abs() <= N as f64 * 0.1,
        "{open} open halfway through the ramp, expected {} +-{}:\n{r:#}",
        N / 2,
        N / 10
    );
}

/// `blaster run ARGS` with `BLASTER_RING_SLOTS=slots`, parsed.
fn run_with_ring_slots(slots: usize, args: &[&str]) -> blaster_tests::JsonRun {
    let mut cmd = Command::new(blaster_bin());
    cmd.args(args).env("BLASTER_RING_SLOTS", slots.to_string());
    run_json_command(cmd, Duration::from_secs(60))
}

/// Regression (threads beyond the CPUs): one thread holds 5,000 connections in five rings of
/// 1,000 direct descriptors, every one counted open, keep-alives answered on all rings.
#[test]
fn one_thread_drives_five_rings_and_holds_every_connection() {
    const N: u64 = 5_000;
    let (_serve, addr) = start_serve(1);
    let _serial = serial();
    let url = format!("http://{addr}/");
    let run = run_with_ring_slots(
        1000,
        &[
            "run",
            &url,
            "--mode",
            "hold",
            "-c",
            &N.to_string(),
            "-t",
            "1",
            "--keepalive-every",
            "1s",
            "-d",
            "3s",
        ],
    );
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stderr());
    let r = run.report;
    assert_eq!(u(&r, &["threads"]), 1, "{r:#}");
    assert_eq!(u(&r, &["rings"]), 5, "{r:#}");
    assert_every_connection_held(&r, N);
    // Every connection sent at least one keep-alive (the first ones are spread over the first
    // second) and all were answered: receives work on every ring.
    assert_keepalives_answered(&r, N);
}

/// Requests across four rings of one thread: every request is accounted for (answered, or an
/// error, or in flight at the end) and nothing went wrong.
#[test]
fn requests_across_four_rings_add_up() {
    let (_serve, addr) = start_serve(1);
    let _serial = serial();
    let url = format!("http://{addr}/");
    let run = run_with_ring_slots(100, &["run", &url, "-c", "350", "-t", "1", "-d", "2s"]);
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stderr());
    let r = run.report;
    assert_eq!(u(&r, &["rings"]), 4, "{r:#}");
    assert_eq!(u(&r, &["connections", "opened"]), 350, "{r:#}");
    let requests = u(&r, &["requests"]);
    assert!(requests > 350, "{r:#}");
    assert_eq!(
        requests,
        u(&r, &["responses"]) + u(&r, &["errors", "total"]) + u(&r, &["in_flight_at_end"]),
        "{r:#}"
    );
    assert_eq!(u(&r, &["errors", "total"]), 0, "{r:#}");
    assert_eq!(
        u(&r, &["status_codes", "200"]),
        u(&r, &["responses"]),
        "{r:#}"
    );
}

#[test]
fn an_invalid_ring_slots_value_is_refused_with_the_value() {
    let (_serve, addr) = start_serve(1);
    let url = format!("http://{addr}/");
    let mut cmd = Command::new(blaster_bin());
    cmd.args(["run", &url, "-c", "2", "-d", "1s", "-q"])
        .env("BLASTER_RING_SLOTS", "zero");
    let out = ChildGuard::capture(cmd).into_output(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("BLASTER_RING_SLOTS=\"zero\""), "{stderr}");
}

/// `--max-connecting` bounds the connects in flight: against a listener whose accept queue
/// is full (never accepted, backlog 0), SYNs are dropped and connects hang until the connect
/// timeout. With a bound of 4, at most 4 connects can be pending at any time, so in 1.6 s
/// with a 1 s timeout at most 8 attempts end (4 time out at ~1 s, their replacements cannot
/// time out before ~2 s) plus what the queue took; unbounded, all 60 would time out at ~1 s.
#[test]
fn max_connecting_bounds_the_connects_in_flight() {
    use std::os::fd::AsRawFd;
    const BOUND: u64 = 4;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: a valid listening socket; listen() again only changes its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().expect("addr");
    let run = run_json_output(
        &[
            "run",
            &format!("http://{addr}/"),
            "--mode",
            "hold",
            "-c",
            "60",
            "-t",
            "1",
            "--max-connecting",
            &BOUND.to_string(),
            "--timeout",
            "1s",
            "-d",
            "1600ms",
        ],
        Duration::from_secs(60),
    );
    let r = &run.report;
    let opened = u(r, &["connections", "opened"]);
    let failed = u(r, &["connections", "failed"]);
    assert!(
        failed >= 1,
        "connects beyond the full queue time out: {r:#}\n{}",
        run.stderr()
    );
    assert!(
        opened + failed <= 2 * BOUND + 2,
        "at most {BOUND} connects in flight: opened {opened}, failed {failed}\n{r:#}"
    );
    drop(listener);
}

/// Local IPv4 addresses of the sockets in TCP state `state` (hex, as `/proc/net/tcp` writes
/// it: 01 established, 02 SYN_SENT) whose remote port is `port`.
fn sockets_to(port: u16, state: &str) -> Vec<std::net::Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (local, _) = cols.get(1)?.split_once(':')?;
            let (_, rem_port) = cols.get(2)?.rsplit_once(':')?;
            if *cols.get(3)? != state || u16::from_str_radix(rem_port, 16).ok()? != port {
                return None;
            }
            // The address in the kernel's byte order, printed as a native u32.
            let raw = u32::from_str_radix(local, 16).ok()?;
            Some(std::net::Ipv4Addr::from(raw.to_le_bytes()))
        })
        .collect()
}

fn syn_sent_to(port: u16) -> usize {
    sockets_to(port, "02").len()
}

/// `--source` spreads a WebSocket run's connections over the given addresses (the VU
/// engine binds them before connecting, like the HTTP engine).
#[test]
fn websocket_connections_come_from_the_source_addresses() {
    let (_serve, addr) = start_serve(1);
    let mut cmd = Command::new(blaster_bin());
    cmd.args(["run", &format!("ws://{addr}/ws/echo"), "--mode", "hold"])
        .args(["-c", "20", "-t", "1", "--source", "127.0.0.2-127.0.0.3"])
        .args(["-d", "4s", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _run = ChildGuard::new(cmd.spawn().expect("blaster run starts"));
    let mut from = Vec::new();
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        from = sockets_to(addr.port(), "01");
        if from.len() >= 20 {
            break;
        }
    }
    from.sort();
    let count = |ip: [u8; 4]| from.iter().filter(|a| a.octets() == ip).count();
    assert_eq!(from.len(), 20, "established: {from:?}");
    assert_eq!(count([127, 0, 0, 2]), 10, "{from:?}");
    assert_eq!(count([127, 0, 0, 3]), 10, "{from:?}");
}

/// The WebSocket (virtual-user) engine bounds its connects in flight with `--max-connecting`
/// too: against a listener whose accept queue is full, SYNs are dropped and connects hang
/// in SYN_SENT; with a bound of 4 there are never more than 4 of them (unbounded, all but
/// the one the queue took would be).
#[test]
fn max_connecting_bounds_websocket_connects_in_flight() {
    use std::os::fd::AsRawFd;
    const BOUND: usize = 4;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: a valid listening socket; listen() again only changes its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().expect("addr");
    let mut cmd = Command::new(blaster_bin());
    cmd.args([
        "run",
        &format!("ws://{addr}/ws/echo"),
        "-c",
        "60",
        "-t",
        "1",
    ])
    .args(["--max-connecting", &BOUND.to_string(), "-d", "4s", "-q"])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let _run = ChildGuard::new(cmd.spawn().expect("blaster run starts"));
    let mut most = 0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        most = most.max(syn_sent_to(addr.port()));
    }
    assert!(most >= 1, "connects beyond the full queue hang in SYN_SENT");
    assert!(
        most <= BOUND,
        "{most} connects in flight at once, more than --max-connecting {BOUND}"
    );
    drop(listener);
}

/// The WebSocket (virtual-user) engine drives several rings per thread too: 350 echo
/// sessions on one thread in four rings of 100 direct descriptors, every session open,
/// messages echoed on every ring, none lost.
#[test]
fn one_websocket_thread_drives_four_rings() {
    let (_serve, addr) = start_serve(1);
    let _serial = serial();
    let url = format!("ws://{addr}/ws/echo");
    let run = run_with_ring_slots(
        100,
        &[
            "run", &url, "--mode", "echo", "-c", "350", "-t", "1", "-d", "2s",
        ],
    );
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stderr());
    let r = run.report;
    assert_eq!(u(&r, &["threads"]), 1, "{r:#}");
    assert_eq!(u(&r, &["rings"]), 4, "{r:#}");
    assert_eq!(u(&r, &["ws", "sessions"]), 350, "{r:#}");
    assert_eq!(u(&r, &["ws", "sessions_failed"]), 0, "{r:#}");
    assert_eq!(u(&r, &["connections", "open_at_end"]), 350, "{r:#}");
    let (sent, received) = (u(&r, &["ws", "msgs_sent"]), u(&r, &["ws", "msgs_received"]));
    assert!(sent >= 350, "every session sends: {r:#}");
    assert_eq!(u(&r, &["ws", "lost"]), 0, "{r:#}");
    assert!(
        received + 350 >= sent,
        "echoes come back on every ring: {r:#}"
    );
}
