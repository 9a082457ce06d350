//! Scale: 50,000 connections held against `blaster serve`, every one counted open (more than
//! one ring's direct-descriptor table, more than one source address's comfortable port range).

use std::process::{Command, Stdio};
use std::time::Duration;

use blaster_tests::{ChildGuard, blaster_bin, free_port, run_json_output, u, wait_for_port};

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
            "-d",
            "5s",
        ],
        Duration::from_secs(120),
    );
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stderr());
    let r = run.report;
    assert_eq!(r["model"], "hold");
    assert_eq!(u(&r, &["connections", "opened"]), N, "{r:#}");
    assert_eq!(u(&r, &["connections", "failed"]), 0, "{r:#}");
    assert_eq!(u(&r, &["connections", "open_at_end"]), N, "{r:#}");
    assert_eq!(u(&r, &["memory", "peak_open_connections"]), N, "{r:#}");
    assert_eq!(u(&r, &["errors", "total"]), 0, "{r:#}");
    assert_eq!(u(&r, &["connect_latency_us", "count"]), N, "{r:#}");
    // More connections than one ring's table holds (RLIMIT_NOFILE, 20,000 here): several rings.
    assert!(u(&r, &["threads"]) >= 3, "{r:#}");
    // Keep-alives went out on held connections and were answered.
    assert!(u(&r, &["responses"]) >= N, "{r:#}");
    assert_eq!(
        u(&r, &["requests"]),
        u(&r, &["responses"]) + u(&r, &["in_flight_at_end"]),
        "{r:#}"
    );
}
