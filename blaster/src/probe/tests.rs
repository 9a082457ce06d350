//! Probe tests against loopback connections. They need the probe to load (root or
//! CAP_BPF+CAP_PERFMON, tracefs): without that they print why and pass, unless
//! `BLASTER_PROBE_REQUIRE` is set (as `cargo xtask test --require` does), then they fail.

use std::{
    io::ErrorKind,
    net::{TcpListener, TcpStream},
};

use super::Probe;

/// Starts the probe on `port`, or `None` (printed) when BPF cannot load here.
fn start_or_skip(port: u16) -> Option<Probe> {
    match Probe::start(&[port]) {
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
