//! `blaster run --probe URL`: the run reads the probe's snapshot when the load starts and
//! when it ends, and the report's `kernel` object holds the difference. The probe here is a
//! stand-in endpoint serving two prepared snapshots (the real probe needs root and the eBPF
//! build; `cargo xtask test` covers it), so the client side is tested on every machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use blaster::probe::{DropCount, LatencyHist, PortProbe, ProbeSnapshot};
use blaster::report::endpoint::{Endpoint, Render};
use blaster_tests::{free_port, run_blaster, run_json, start_serve, u};

/// A histogram summary of `count` samples of `each_ns`, as the probe would serve it.
fn hist(count: u64, each_ns: u64) -> LatencyHist {
    let h: LatencyHist = serde_json::from_value(serde_json::json!({
        "count": count, "sum_ns": count * each_ns, "mean_ns": each_ns, "max_ns": each_ns,
        "p50_ns": each_ns, "p90_ns": each_ns, "p99_ns": each_ns,
        "buckets": [{"lower_ns": each_ns, "upper_ns": each_ns, "count": count}]
    }))
    .expect("a LatencyHist");
    h
}

/// Serves `first` to the first request and `later` to every one after it.
fn fake_probe(first: ProbeSnapshot, later: ProbeSnapshot) -> Endpoint {
    let calls = Arc::new(AtomicUsize::new(0));
    let render: Render = Arc::new(move || {
        let snap = if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            &first
        } else {
            &later
        };
        serde_json::to_string(snap).expect("snapshot JSON")
    });
    Endpoint::start(
        "127.0.0.1:0".parse().expect("addr"),
        "/snapshot",
        "application/json",
        "--listen",
        render,
    )
    .expect("fake probe endpoint")
}

#[test]
fn run_with_probe_reports_the_kernel_share() {
    let (_serve, addr) = start_serve(1);
    let port = addr.port();
    let start = ProbeSnapshot {
        elapsed_ms: 1_000,
        listen_drops: 1,
        ports: vec![PortProbe {
            port,
            connections: 2,
            recv_queue_wait: hist(10, 50_000),
            ..Default::default()
        }],
        ..Default::default()
    };
    let end = ProbeSnapshot {
        elapsed_ms: 3_500,
        listen_drops: 1,
        ports: vec![PortProbe {
            port,
            connections: 6,
            accept_wait: hist(4, 80_000),
            // The server side of the 4 handshakes: 20 ms each.
            server_handshake: hist(4, 20_000_000),
            // 30 more samples of 50 µs during the run.
            recv_queue_wait: hist(40, 50_000),
            drops: 1,
            drops_by_reason: vec![DropCount {
                reason: 3,
                name: "NO_SOCKET".into(),
                count: 1,
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let probe = fake_probe(start, end);
    let report = run_json(&[
        "run",
        &format!("http://{addr}/"),
        "-c",
        "4",
        "-t",
        "1",
        "-n",
        "200",
        "--probe",
        &format!("http://{}", probe.addr()),
    ]);
    let k = &report["kernel"];
    assert_eq!(
        k["probe_url"],
        format!("http://{}/snapshot", probe.addr()),
        "{k:#}"
    );
    assert_eq!(u(k, &["port"]), u64::from(port));
    assert_eq!(u(k, &["connections"]), 4);
    assert_eq!(k["window_s"], 2.5);
    assert_eq!(u(k, &["recv_queue_us", "count"]), 30);
    assert_eq!(k["recv_queue_us"]["p50"], 50.0);
    assert_eq!(u(k, &["accept_queue_us", "count"]), 4);
    assert_eq!(u(k, &["server_handshake_us", "count"]), 4);
    assert_eq!(k["server_handshake_us"]["p50"], 20_000.0);
    assert_eq!(u(k, &["handshake_us", "count"]), 0, "no local connects");
    assert_eq!(u(k, &["drops_by_reason", "NO_SOCKET"]), 1);
    assert_eq!(u(k, &["listen_drops"]), 0);
    // 30 x 50 µs of receive-queue wait over 200 responses: 7.5 µs per request.
    let responses = u(&report, &["responses"]);
    assert_eq!(responses, 200);
    let split = &k["latency_split_us"];
    assert_eq!(split["recv_queue"], 7.5);
    assert_eq!(split["client"], report["latency_us"]["mean"]);
    let app = split["application"].as_f64().expect("number");
    let client = split["client"].as_f64().expect("number");
    assert!((app - (client - 7.5).max(0.0)).abs() < 1e-9, "{split}");

    // The report with its kernel object matches the schema.
    blaster_tests::assert_schema_valid(&report);
}

#[test]
fn run_with_probe_prints_the_kernel_lines() {
    let (_serve, addr) = start_serve(1);
    let snap = ProbeSnapshot {
        ports: vec![PortProbe {
            port: addr.port(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let probe = fake_probe(snap.clone(), snap);
    let out = run_blaster(
        &[
            "run",
            &format!("http://{addr}/"),
            "-c",
            "2",
            "-t",
            "1",
            "-n",
            "50",
            "--probe",
            &format!("http://{}", probe.addr()),
        ],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for needle in ["kernel", "per request", "recv queue", "accept queue"] {
        assert!(stdout.contains(needle), "`{needle}` missing:\n{stdout}");
    }
}

/// A probe that cannot be reached stops the run before any load, saying what to check.
#[test]
fn run_with_an_unreachable_probe_fails_before_the_load() {
    let (_serve, addr) = start_serve(1);
    let out = run_blaster(
        &[
            "run",
            &format!("http://{addr}/"),
            "-n",
            "10",
            "--probe",
            &format!("http://127.0.0.1:{}", free_port()),
        ],
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach the probe"), "{stderr}");
    assert!(stderr.contains("blaster probe --port"), "{stderr}");
}

/// Snapshots of `port` whose receive-queue wait grows by `samples` x 40 µs during the run.
fn probe_for(port: u16, samples: u64) -> Endpoint {
    let snap = |recv: u64, ms: u64| ProbeSnapshot {
        elapsed_ms: ms,
        ports: vec![PortProbe {
            port,
            connections: 1,
            recv_queue_wait: hist(recv, 40_000),
            ..Default::default()
        }],
        ..Default::default()
    };
    fake_probe(snap(5, 1_000), snap(5 + samples, 2_000))
}

/// Issue #7: `--probe` on a scenario file: the kernel object for the port its steps name,
/// split against the scenario's request latency.
#[test]
fn scenario_run_with_probe_reports_the_kernel_share() {
    let (_serve, addr) = start_serve(1);
    let probe = probe_for(addr.port(), 20);
    let file = blaster_tests::TempPath::new(".toml");
    std::fs::write(
        file.path(),
        format!(
            "[scenarios.a]\nexecutor = \"shared-iterations\"\nvus = 2\niterations = 40\n\
             [[scenarios.a.steps]]\nrequest = \"GET http://{addr}/\"\n"
        ),
    )
    .expect("write scenario");
    let report = run_json(&[
        "run",
        file.path().to_str().unwrap(),
        "-t",
        "1",
        "--probe",
        &format!("http://{}", probe.addr()),
    ]);
    let k = &report["kernel"];
    assert_eq!(u(k, &["port"]), u64::from(addr.port()), "{k:#}");
    assert_eq!(u(k, &["recv_queue_us", "count"]), 20, "{k:#}");
    assert_eq!(u(&report, &["responses"]), 40);
    // 20 x 40 µs over 40 responses.
    assert_eq!(k["latency_split_us"]["recv_queue"], 20.0, "{k:#}");
    assert_eq!(
        k["latency_split_us"]["client"],
        report["latency_us"]["mean"]
    );
}

/// Issue #7: `--probe` on a ws:// run: the kernel object, with the split of the message
/// latency against the receive-queue wait per message sent, and the text says "per message".
#[test]
fn ws_run_with_probe_reports_the_kernel_share_per_message() {
    let (_serve, addr) = start_serve(1);
    let probe = probe_for(addr.port(), 30);
    let json = blaster_tests::TempPath::new(".json");
    let out = run_blaster(
        &[
            "run",
            &format!("ws://{addr}/ws/echo"),
            "--mode",
            "echo",
            "-c",
            "2",
            "--message-rate",
            "20",
            "-d",
            "1s",
            "-t",
            "1",
            "--probe",
            &format!("http://{}", probe.addr()),
            "--json",
            json.path().to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for needle in ["kernel", "per message", "recv queue"] {
        assert!(stdout.contains(needle), "`{needle}` missing:\n{stdout}");
    }
    let report = blaster_tests::read_report(json.path()).expect("report");
    let k = &report["kernel"];
    assert_eq!(u(k, &["port"]), u64::from(addr.port()), "{k:#}");
    assert_eq!(u(k, &["recv_queue_us", "count"]), 30, "{k:#}");
    let sent = u(&report, &["ws", "msgs_sent"]);
    assert!(sent > 0, "{:#}", report["ws"]);
    let split = &k["latency_split_us"];
    let expected = 30.0 * 40.0 / sent as f64;
    let got = split["recv_queue"].as_f64().expect("number");
    assert!((got - expected).abs() < 1e-9, "{split}");
    assert_eq!(split["client"], report["ws"]["msg_latency_us"]["mean"]);
}
