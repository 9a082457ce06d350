//! The per-interval time series, live progress lines and the HdrHistogram interval log.

use std::time::Duration;

use blaster_tests::{TempPath, read_report, run_blaster, run_json, start_serve, u};
use serde_json::Value;

fn sum(points: &[Value], path: &[&str]) -> u64 {
    points.iter().map(|p| u(p, path)).sum()
}

#[test]
fn time_series_sums_to_the_totals() {
    let (_serve, addr) = start_serve(1);
    let json = TempPath::new(".json");
    let out = run_blaster(
        &[
            "run",
            &format!("http://{addr}/delay/2"),
            "-c",
            "20",
            "-t",
            "2",
            "-d",
            "2500ms",
            "--report-interval",
            "500ms",
            "--json",
            json.path().to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = read_report(json.path()).unwrap();
    let points = r["timeseries"].as_array().expect("timeseries array");
    // 2.5 s in 500 ms intervals: five full ones, maybe a short last one for the drain.
    assert!(
        (5..=6).contains(&points.len()),
        "{} points: {r:#}",
        points.len()
    );
    assert_eq!(sum(points, &["responses"]), u(&r, &["responses"]));
    assert_eq!(sum(points, &["requests"]), u(&r, &["requests"]));
    assert_eq!(sum(points, &["errors"]), u(&r, &["errors", "total"]));
    assert_eq!(
        sum(points, &["latency_us", "count"]),
        u(&r, &["latency_us", "count"])
    );
    assert_eq!(
        sum(points, &["connections_opened"]),
        u(&r, &["connections", "opened"])
    );
    // Time moves forward and a full interval of /delay/2 on 20 connections holds thousands.
    let ts: Vec<f64> = points.iter().map(|p| p["t_s"].as_f64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[1] > w[0]), "{ts:?}");
    assert!(u(&points[1], &["responses"]) > 1000, "{:#}", points[1]);
    assert!(
        u(&points[1], &["latency_us", "p50"]) >= 2000,
        "{:#}",
        points[1]
    );
    assert_eq!(u(&points[1], &["open_connections"]), 20, "{:#}", points[1]);
    // Not a terminal here, so progress comes as one plain line per interval on stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines = stderr
        .lines()
        .filter(|l| l.contains("req/s") && l.contains("p99"))
        .count();
    // Slivers under 50 ms (the drain) are counted but not printed.
    let printed = points
        .iter()
        .filter(|p| p["duration_s"].as_f64().unwrap() >= 0.05)
        .count();
    assert_eq!(lines, printed, "stderr:\n{stderr}");
}

#[test]
fn quiet_prints_no_progress() {
    let (_serve, addr) = start_serve(1);
    let out = run_blaster(
        &[
            "run",
            &format!("http://{addr}/"),
            "-c",
            "2",
            "-t",
            "1",
            "-d",
            "1200ms",
            "-q",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn hdr_log_holds_one_histogram_per_interval() {
    let (_serve, addr) = start_serve(1);
    let log = TempPath::new(".hlog");
    let r = run_json(&[
        "run",
        &format!("http://{addr}/"),
        "-c",
        "4",
        "-t",
        "1",
        "-d",
        "2s",
        "--hdr-log",
        log.path().to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.contains("#[StartTime: "), "{text}");
    // Interval lines: start,duration,max,histogram (no tag).
    let intervals: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('"'))
        .collect();
    assert_eq!(
        intervals.len(),
        r["timeseries"].as_array().unwrap().len(),
        "{text}"
    );
    for line in &intervals {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 4, "{line}");
        assert!(
            fields[0].parse::<f64>().is_ok() && fields[1].parse::<f64>().unwrap() > 0.0,
            "{line}"
        );
        assert!(fields[3].len() > 20, "{line}");
    }
}
