//! `blaster demo`, the README's first command: it needs no setup, runs a short load against the
//! built-in target and prints (and writes) a complete report.

use std::time::Duration;

use blaster_tests::{TempPath, assert_invariant, read_report, run_blaster, u};

#[test]
fn demo_runs_against_its_own_target_and_reports() {
    let json = TempPath::new(".json");
    let path = json.path().to_str().expect("utf-8 temp path").to_string();
    let out = run_blaster(
        &["demo", "-d", "1s", "-c", "8", "--json", &path],
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("blaster demo: built-in target on http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("latency") && stdout.contains("status        200:"),
        "{stdout}"
    );
    let report = read_report(json.path()).expect("demo writes its JSON report");
    assert!(u(&report, &["responses"]) > 100, "{report}");
    assert_eq!(u(&report, &["errors", "total"]), 0, "{report}");
    assert_eq!(u(&report, &["connections", "opened"]), 8, "{report}");
    assert_invariant(&report);
    // The in-process target's CPU is not the client's: one worker thread can use at most
    // about one CPU-second per second.
    let cpu = report["client_cpu_s"].as_f64().unwrap();
    let duration = report["duration_s"].as_f64().unwrap();
    assert!(
        cpu <= duration * 1.05 + 0.05,
        "client CPU {cpu}s over {duration}s on one thread"
    );
}
