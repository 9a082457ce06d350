//! The per-interval time series, live progress lines and the HdrHistogram interval log.

use std::time::Duration;

use blaster_tests::{
    TempPath, assert_schema_valid, read_report, run_blaster, run_json, run_json_output,
    start_serve, u,
};
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

/// Two names in one scenario (one of them in two steps, one failing half the time): each
/// name's series sums to its totals in `scenario.names`, and the run-wide series still sums
/// to the run's totals.
#[test]
fn per_name_series_sum_to_each_name_s_totals() {
    let (_serve, addr) = start_serve(1);
    let file = TempPath::with(
        ".toml",
        format!(
            r#"
[scenarios.s]
executor = "constant-vus"
vus = 4
duration = "2200ms"
[[scenarios.s.steps]]
request = "GET http://{addr}/"
name = "home"
[[scenarios.s.steps]]
request = "GET http://{addr}/delay/1"
name = "slow"
[[scenarios.s.steps]]
request = "GET http://{addr}/status/503"
name = "home"
"#
        ),
    );
    let run = run_json_output(
        &[
            "run",
            file.path().to_str().unwrap(),
            "-t",
            "2",
            "--report-interval",
            "500ms",
        ],
        Duration::from_secs(60),
    );
    let r = &run.report;
    assert_schema_valid(r);
    let points = r["timeseries"].as_array().expect("timeseries");
    assert_eq!(sum(points, &["requests"]), u(r, &["requests"]));
    assert_eq!(sum(points, &["responses"]), u(r, &["responses"]));
    assert_eq!(
        sum(points, &["latency_us", "count"]),
        u(r, &["latency_us", "count"])
    );

    let series = &r["scenario"]["series"];
    assert_eq!(u(series, &["intervals_per_point"]), 1, "{series:#}");
    let names = r["scenario"]["names"].as_array().unwrap();
    let per_name = series["names"].as_array().unwrap();
    assert_eq!(per_name.len(), 2, "{series:#}");
    for n in names {
        let s = per_name
            .iter()
            .find(|s| s["name"] == n["name"] && s["kind"] == n["kind"])
            .unwrap_or_else(|| panic!("no series for {n:#}"));
        let pts = s["points"].as_array().unwrap();
        // 2.2 s in 500 ms intervals, with samples in every full one.
        assert!((4..=6).contains(&pts.len()), "{s:#}");
        assert!(u(n, &["count"]) > 0, "{n:#}");
        for (field, total) in [
            (&["count"][..], u(n, &["count"])),
            (&["failed"], u(n, &["failed"])),
            (&["latency_us", "count"], u(n, &["latency_us", "count"])),
        ] {
            assert_eq!(sum(pts, field), total, "{field:?} of {}", n["name"]);
        }
        let errors: u64 = pts
            .iter()
            .flat_map(|p| p["errors_by_kind"].as_object().unwrap().values())
            .map(|v| v.as_u64().unwrap())
            .sum();
        let total: u64 = n["errors"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(errors, total, "errors of {}", n["name"]);
        assert_eq!(s["tags"]["name"], n["name"], "{s:#}");
    }
    // Every name's p50 of /delay/1 is at least the delay; "home" fails half its requests.
    let slow = per_name.iter().find(|s| s["name"] == "slow").unwrap();
    assert!(
        u(&slow["points"][1], &["latency_us", "p50"]) >= 1000,
        "{slow:#}"
    );
    let home = per_name.iter().find(|s| s["name"] == "home").unwrap();
    let (count, failed) = (
        sum(home["points"].as_array().unwrap(), &["count"]),
        sum(home["points"].as_array().unwrap(), &["failed"]),
    );
    assert!(
        failed * 2 >= count - 8 && failed * 2 <= count + 8,
        "{home:#}"
    );
}
