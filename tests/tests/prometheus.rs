//! `--prometheus-listen`: /metrics is scraped during a run, and after it (with
//! `--prometheus-linger`) its counters agree with the final JSON report; for a URL run and for
//! a scenario-file run (the VU engine), including the per-name series labelled by tags, and
//! for a WebSocket run (the `blaster_ws_*` families).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blaster_tests::{ChildGuard, TempPath, blaster_bin, free_port, read_report, start_serve, u};

fn scrape(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: blaster\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then_some(text)
}

/// The value of one sample line `name value`, or 0 when absent.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0, |v| {
            v.trim().parse::<f64>().expect("numeric sample") as u64
        })
}

#[test]
fn metrics_during_the_run_and_final_values_match_the_report() {
    let (_serve, target) = start_serve(1);
    metrics_agree_with_the_report(&[
        "run",
        &format!("http://{target}/status/201"),
        "-c",
        "4",
        "-t",
        "1",
        "-d",
        "2s",
        "-q",
    ]);
}

#[test]
fn a_scenario_run_serves_the_same_metrics() {
    let (_serve, target) = start_serve(1);
    let file = TempPath::with(
        ".toml",
        format!(
            r#"
[scenarios.api]
executor = "constant-vus"
vus = 4
duration = "2s"
[[scenarios.api.steps]]
request = "GET http://{target}/status/201"
name = "created"
expect = [201]
"#
        ),
    );
    metrics_agree_with_the_report(&["run", file.path().to_str().unwrap(), "-t", "1", "-q"]);
}

/// The sample of `family` whose labels include every `name="value"` pair of `labels`.
fn labelled(text: &str, family: &str, labels: &[(&str, &str)]) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(family)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        let pairs: Vec<&str> = set.split(',').collect();
        labels
            .iter()
            .all(|(k, v)| pairs.contains(&format!("{k}=\"{v}\"").as_str()))
            .then(|| value.trim().parse::<f64>().expect("numeric sample") as u64)
    })
}

#[test]
fn per_name_series_are_labelled_by_tags_and_match_the_report() {
    let (_serve, target) = start_serve(1);
    let file = TempPath::with(
        ".toml",
        format!(
            r#"
[scenarios.api]
executor = "constant-vus"
vus = 4
duration = "2500ms"
[[scenarios.api.steps]]
request = "GET http://{target}/"
name = "home"
[[scenarios.api.steps]]
group = "slow"
[[scenarios.api.steps.steps]]
request = "GET http://{target}/delay/1000"
name = "stuck"
timeout = "100ms"
"#
        ),
    );
    let (during, after, report) =
        scraped_run(&["run", file.path().to_str().unwrap(), "-t", "1", "-q"]);
    let home = [("name", "home"), ("scenario", "api"), ("kind", "http")];
    assert!(
        labelled(&during, "blaster_name_requests_total", &home).is_some_and(|n| n > 0),
        "{during}"
    );
    let names = report["scenario"]["names"].as_array().unwrap();
    for n in names {
        let name = n["name"].as_str().unwrap();
        let l = [("name", name)];
        assert_eq!(
            labelled(&after, "blaster_name_requests_total", &l),
            Some(u(n, &["count"])),
            "{name}: {after}"
        );
        assert_eq!(
            labelled(&after, "blaster_name_failures_total", &l),
            Some(u(n, &["failed"])),
            "{name}: {after}"
        );
        assert_eq!(
            labelled(&after, "blaster_name_duration_seconds_count", &l),
            Some(u(n, &["latency_us", "count"])),
            "{name}: {after}"
        );
    }
    // The timed-out step: its group tag and its errors by kind.
    let stuck = names.iter().find(|n| n["name"] == "stuck").unwrap();
    let timeouts = u(stuck, &["errors", "timeout"]);
    assert!(timeouts > 0, "{stuck:#}");
    assert_eq!(
        labelled(
            &after,
            "blaster_name_errors_total",
            &[("name", "stuck"), ("group", "::slow"), ("error", "timeout")]
        ),
        Some(timeouts),
        "{after}"
    );
}

#[test]
fn a_websocket_run_serves_websocket_counters() {
    let (_serve, target) = start_serve(1);
    let (during, after, report) = scraped_run(&[
        "run",
        &format!("ws://{target}/ws/echo"),
        "--mode",
        "echo",
        "-c",
        "4",
        "-t",
        "1",
        "-d",
        "2s",
        "-q",
    ]);
    assert!(
        sample(&during, "blaster_ws_messages_sent_total") > 0,
        "{during}"
    );
    let ws = &report["ws"];
    for (metric, field) in [
        ("blaster_ws_messages_sent_total", "msgs_sent"),
        ("blaster_ws_messages_received_total", "msgs_received"),
        ("blaster_ws_messages_lost_total", "lost"),
        ("blaster_ws_reconnects_total", "reconnects"),
    ] {
        assert_eq!(
            sample(&after, metric),
            u(ws, &[field]),
            "{metric}: {after}\n{ws:#}"
        );
    }
    assert_eq!(
        sample(&after, "blaster_ws_handshakes_total{result=\"ok\"}"),
        u(ws, &["sessions"]),
        "{after}"
    );
    assert_eq!(
        sample(&after, "blaster_ws_handshakes_total{result=\"failed\"}"),
        u(ws, &["sessions_failed"]),
        "{after}"
    );
    assert_eq!(
        sample(&after, "blaster_ws_message_latency_seconds_count"),
        u(ws, &["msg_latency_us", "count"]),
        "{after}"
    );
}

/// Runs blaster with `args` plus the exporter and a JSON report: /metrics counts requests
/// during the run, and once the report is written its counters equal the report's totals (the
/// run must answer 201).
fn metrics_agree_with_the_report(args: &[&str]) {
    let (during, after, report) = scraped_run(args);
    let during_requests = sample(&during, "blaster_requests_total");
    assert!(during_requests < u(&report, &["requests"]));
    assert_eq!(
        sample(&after, "blaster_requests_total"),
        u(&report, &["requests"]),
        "{after}"
    );
    assert_eq!(
        sample(&after, "blaster_responses_total{status=\"201\"}"),
        u(&report, &["status_codes", "201"]),
        "{after}"
    );
    assert_eq!(
        sample(&after, "blaster_request_duration_seconds_count"),
        u(&report, &["responses"]),
        "{after}"
    );
    assert_eq!(
        sample(&after, "blaster_bytes_received_total"),
        u(&report, &["bytes", "received"]),
        "{after}"
    );
    assert_eq!(
        sample(&after, "blaster_connections_opened_total"),
        u(&report, &["connections", "opened"]),
        "{after}"
    );
}

/// Runs blaster with `args` plus the exporter and a JSON report; returns a scrape during the
/// run (which counted some requests already), one after the report was written, and the
/// report.
fn scraped_run(args: &[&str]) -> (String, String, serde_json::Value) {
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let json = TempPath::new(".json");
    let mut cmd = Command::new(blaster_bin());
    cmd.args(args)
        .arg("--prometheus-listen")
        .arg(metrics.to_string())
        .args(["--prometheus-linger", "5s", "--json"])
        .arg(json.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = ChildGuard::new(cmd.spawn().expect("blaster starts"));

    // During the run: some requests counted already, fewer than at the end.
    std::thread::sleep(Duration::from_millis(1500));
    let during = scrape(metrics).expect("/metrics answers during the run");
    let during_requests = sample(&during, "blaster_requests_total");
    assert!(during_requests > 0, "{during}");

    // After the run (the report is written before the linger starts).
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        if let Ok(r) = read_report(json.path()) {
            break r;
        }
        assert!(Instant::now() < deadline, "no report");
        std::thread::sleep(Duration::from_millis(50));
    };
    let after = scrape(metrics).expect("/metrics answers while lingering");
    child.kill();
    (during, after, report)
}
