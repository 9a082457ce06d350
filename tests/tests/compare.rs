//! `blaster compare`, the CI gate: a real report against copies of itself with a worse p99.
//! 20% worse fails with exit code 99 at the default 10% bound; 5% worse passes. The same per
//! request name of a scenario run.

use std::time::Duration;

use blaster::report::{decode_histogram, encode_histogram};
use blaster_tests::{TempPath, run_blaster, run_json, run_json_output, start_serve};
use serde_json::Value;

fn with_p99_scaled(report: &Value, factor: f64) -> Value {
    let mut r = report.clone();
    let p99 = r["latency_us"]["p99"].as_u64().unwrap() as f64;
    r["latency_us"]["p99"] = Value::from((p99 * factor).round() as u64);
    r
}

/// A copy of `report` in which request name `name`'s latencies are `factor` times larger.
fn with_name_scaled(report: &Value, name: &str, factor: f64) -> Value {
    let mut r = report.clone();
    let n = r["scenario"]["names"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no name {name} in {report:#}"));
    let h = decode_histogram(n["latency_histogram"].as_str().unwrap()).unwrap();
    let mut scaled = blaster::metrics::new_histogram();
    for v in h.iter_recorded() {
        let value = (v.value_iterated_to() as f64 * factor).round() as u64;
        scaled.record_n(value, v.count_at_value()).unwrap();
    }
    n["latency_histogram"] = Value::from(encode_histogram(&scaled).unwrap());
    r
}

fn compare(baseline: &Value, current: &Value, extra: &[&str]) -> (i32, String) {
    let (a, b) = (TempPath::new(".json"), TempPath::new(".json"));
    std::fs::write(a.path(), baseline.to_string()).unwrap();
    std::fs::write(b.path(), current.to_string()).unwrap();
    let mut args = vec![
        "compare",
        a.path().to_str().unwrap(),
        b.path().to_str().unwrap(),
        "--metrics",
        "p99,rps",
    ];
    args.extend_from_slice(extra);
    let out = run_blaster(&args, Duration::from_secs(30));
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn twenty_percent_worse_p99_fails_five_percent_passes() {
    let (_serve, addr) = start_serve(1);
    let base = run_json(&[
        "run",
        &format!("http://{addr}/delay/2"),
        "-c",
        "4",
        "-t",
        "1",
        "-n",
        "400",
    ]);
    assert!(base["latency_us"]["p99"].as_u64().unwrap() >= 2000);

    let (code, out) = compare(&base, &with_p99_scaled(&base, 1.20), &[]);
    assert_eq!(code, 99, "{out}");
    assert!(out.contains("REGRESSION"), "{out}");

    let (code, out) = compare(&base, &with_p99_scaled(&base, 1.05), &[]);
    assert_eq!(code, 0, "{out}");

    // A looser bound lets the 20% through.
    let (code, out) = compare(
        &base,
        &with_p99_scaled(&base, 1.20),
        &["--max-regression", "25%"],
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_name_twenty_percent_worse_fails_five_percent_passes() {
    let (_serve, addr) = start_serve(1);
    let file = TempPath::with(
        ".toml",
        format!(
            r#"
[scenarios.s]
executor = "shared-iterations"
vus = 4
iterations = 200
[[scenarios.s.steps]]
request = "GET http://{addr}/delay/2"
name = "slow"
[[scenarios.s.steps]]
request = "GET http://{addr}/"
name = "home"
"#
        ),
    );
    let run = run_json_output(
        &["run", file.path().to_str().unwrap(), "-t", "1"],
        Duration::from_secs(60),
    );
    assert!(run.output.status.success(), "{}", run.stderr());
    let base = &run.report;
    fn p95<'a>(args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["--metrics", "p95"];
        all.extend_from_slice(args);
        all
    }

    let (code, out) = compare_with(base, &with_name_scaled(base, "slow", 1.20), &p95(&[]));
    assert_eq!(code, 99, "{out}");
    assert!(
        out.contains("slow p95") && out.contains("REGRESSION"),
        "{out}"
    );
    let home = out
        .lines()
        .find(|l| l.trim_start().starts_with("home p95"))
        .unwrap_or_else(|| panic!("no row for home: {out}"));
    assert!(home.ends_with(" ok"), "home is unchanged: {out}");

    let (code, out) = compare_with(base, &with_name_scaled(base, "slow", 1.05), &p95(&[]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("slow p95"), "per-name rows are shown: {out}");

    // --names leaves the regressed name out of the gate.
    let (code, out) = compare_with(
        base,
        &with_name_scaled(base, "slow", 1.20),
        &p95(&["--names", "home"]),
    );
    assert_eq!(code, 0, "{out}");
}

/// `blaster compare` with exactly `args` after the two paths.
fn compare_with(baseline: &Value, current: &Value, args: &[&str]) -> (i32, String) {
    let (a, b) = (TempPath::new(".json"), TempPath::new(".json"));
    std::fs::write(a.path(), baseline.to_string()).unwrap();
    std::fs::write(b.path(), current.to_string()).unwrap();
    let mut all = vec![
        "compare",
        a.path().to_str().unwrap(),
        b.path().to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = run_blaster(&all, Duration::from_secs(30));
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn report_re_renders_a_saved_run() {
    let (_serve, addr) = start_serve(1);
    let json = TempPath::new(".json");
    let run = run_blaster(
        &[
            "run",
            &format!("http://{addr}/"),
            "-c",
            "2",
            "-t",
            "1",
            "-n",
            "200",
            "-q",
            "--json",
            json.path().to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(run.status.code(), Some(0));
    let (html, md, xml) = (
        TempPath::new(".html"),
        TempPath::new(".md"),
        TempPath::new(".xml"),
    );
    let out = run_blaster(
        &[
            "report",
            json.path().to_str().unwrap(),
            "--html",
            html.path().to_str().unwrap(),
            "--summary-md",
            md.path().to_str().unwrap(),
            "--junit",
            xml.path().to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(html.path()).unwrap();
    assert!(html.contains("<svg") && html.contains("</html>"));
    let md = std::fs::read_to_string(md.path()).unwrap();
    assert!(md.contains("200"), "{md}");
    let xml = std::fs::read_to_string(xml.path()).unwrap();
    // The run had no errors and was not interrupted; whether the tiny run saturated the
    // client's CPU depends on the machine, so that verdict is not asserted.
    assert!(
        xml.contains("<testsuite") && xml.contains("</testsuites>"),
        "{xml}"
    );
    for passing in ["no errors", "not interrupted"] {
        let case = xml
            .split("<testcase")
            .find(|c| c.contains(passing))
            .unwrap_or_else(|| panic!("{passing}: {xml}"));
        assert!(!case.contains("<failure"), "{passing} failed: {xml}");
    }
}
