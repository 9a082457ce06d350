//! `blaster merge`: two load "nodes" run at the same time; their merged report adds the counts
//! and keeps the latency histogram exact.

use std::process::{Command, Stdio};
use std::time::Duration;

use blaster_tests::{ChildGuard, TempPath, blaster_bin, read_report, run_blaster, start_serve, u};

#[test]
fn two_concurrent_nodes_merge_into_one_report() {
    let (_serve, addr) = start_serve(1);
    let (a, b, merged) = (
        TempPath::new(".json"),
        TempPath::new(".json"),
        TempPath::new(".json"),
    );
    let node = |json: &TempPath, n: &str| {
        let mut cmd = Command::new(blaster_bin());
        cmd.args([
            "run",
            &format!("http://{addr}/delay/1"),
            "-c",
            "4",
            "-t",
            "1",
            "-n",
            n,
            "-q",
            "--json",
        ])
        .arg(json.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        ChildGuard::new(cmd.spawn().expect("blaster starts"))
    };
    let mut first = node(&a, "300");
    let mut second = node(&b, "500");
    for child in [&mut first, &mut second] {
        let status = child
            .wait_timeout(Duration::from_secs(30))
            .expect("node finishes");
        assert!(status.success());
    }
    let out = run_blaster(
        &[
            "merge",
            a.path().to_str().unwrap(),
            b.path().to_str().unwrap(),
            "--json",
            merged.path().to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("800 responses"));
    let (ra, rb, m) = (
        read_report(a.path()).unwrap(),
        read_report(b.path()).unwrap(),
        read_report(merged.path()).unwrap(),
    );
    assert_eq!(u(&m, &["requests"]), 800);
    assert_eq!(u(&m, &["status_codes", "200"]), 800);
    assert_eq!(u(&m, &["latency_us", "count"]), 800);
    assert_eq!(u(&m, &["threads"]), 2);
    assert_eq!(
        u(&m, &["connections", "opened"]),
        u(&ra, &["connections", "opened"]) + u(&rb, &["connections", "opened"])
    );
    // Merged percentiles lie between the nodes' own.
    let p50 = |r: &serde_json::Value| u(r, &["latency_us", "p50"]);
    assert!(
        p50(&m) >= p50(&ra).min(p50(&rb)) && p50(&m) <= p50(&ra).max(p50(&rb)),
        "{m:#}"
    );
    assert!(
        u(&m, &["latency_us", "max"])
            == u(&ra, &["latency_us", "max"]).max(u(&rb, &["latency_us", "max"]))
    );
}

#[test]
fn a_missing_file_is_named() {
    let out = run_blaster(&["merge", "/nonexistent/run.json"], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/run.json"));
}
