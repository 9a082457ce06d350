//! The Grafana dashboard (`dashboards/blaster-grafana.json`) and the observability guide
//! (`docs/OBSERVABILITY.md`) against what `/metrics` really exports: every metric the
//! dashboard queries must appear in a scrape of a real run, and the guide must name every
//! metric family of that scrape. Renaming a metric in the exporter breaks this test until the
//! dashboard and the guide follow.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use blaster_tests::{ChildGuard, TempPath, blaster_bin, free_port, read_report, start_serve};
use serde_json::Value;

fn workspace_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join(rel)
}

fn read_text(rel: &str) -> String {
    let path = workspace_file(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path:?}: {e}"))
}

fn dashboard() -> Value {
    let text = read_text("dashboards/blaster-grafana.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("dashboard is not valid JSON: {e}"))
}

/// Every panel, including those nested in collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"]
        .as_array()
        .expect("`panels` is an array")
    {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// Every PromQL expression of the dashboard: panel targets and template-variable queries.
fn exprs(dashboard: &Value) -> Vec<String> {
    let mut out: Vec<String> = panels(dashboard)
        .iter()
        .filter_map(|p| p["targets"].as_array())
        .flatten()
        .filter_map(|t| t["expr"].as_str())
        .map(str::to_owned)
        .collect();
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("`templating.list` is an array")
    {
        if var["type"] == "query" {
            let q = &var["query"];
            let q = q["query"].as_str().or(q.as_str()).unwrap_or_default();
            out.push(q.to_owned());
        }
    }
    out
}

/// The `blaster_...` identifiers in `text` (`[a-z0-9_]` after the prefix, not preceded by an
/// identifier character).
fn blaster_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find("blaster_") {
        let start = from + pos;
        let mut end = start + "blaster_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if !preceded && end > start + "blaster_".len() {
            names.insert(text[start..end].to_owned());
        }
        from = end;
    }
    names
}

/// A histogram's series name without its `_bucket`/`_sum`/`_count` suffix.
fn strip_histogram_suffix(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

fn scrape_once(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: blaster\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    let body = text.split_once("\r\n\r\n")?.1;
    Some(body.to_owned())
}

/// The exposition text of a finished scenario run that had responses, errors and WebSocket
/// messages (so that every family, `blaster_errors_total{kind}` and the per-name and
/// WebSocket ones included, has samples), scraped while `--prometheus-linger`
/// keeps the endpoint up. One run serves every test of this file.
fn final_scrape() -> &'static str {
    static SCRAPE: OnceLock<String> = OnceLock::new();
    SCRAPE.get_or_init(run_and_scrape)
}

fn run_and_scrape() -> String {
    let (_serve, target) = start_serve(1);
    let mut last_failure = String::new();
    // The metrics port was free a moment ago; retry with another if someone took it.
    for _attempt in 0..3 {
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let json = TempPath::new(".json");
        // A scenario with HTTP steps (one timing out after 200 ms: timeout errors) and a
        // WebSocket echo, so that the run-wide, per-name and WebSocket families all have
        // samples.
        let file = TempPath::with(
            ".toml",
            format!(
                r#"
[scenarios.web]
executor = "constant-vus"
vus = 4
duration = "2s"
[[scenarios.web.steps]]
request = "GET http://{target}/"
name = "home"
[[scenarios.web.steps]]
group = "slow"
[[scenarios.web.steps.steps]]
request = "GET http://{target}/delay/1000"
name = "stuck"
timeout = "200ms"

[scenarios.chat]
executor = "constant-vus"
vus = 2
duration = "2s"
[[scenarios.chat.steps]]
ws_connect = "ws://{target}/ws/echo"
name = "chat"
[[scenarios.chat.steps]]
ws_send = "hello"
[[scenarios.chat.steps]]
ws_expect = "hello"
timeout = "1s"
[[scenarios.chat.steps]]
ws_close = true
"#
            ),
        );
        let mut cmd = Command::new(blaster_bin());
        cmd.args(["run", file.path().to_str().unwrap(), "-t", "1", "-q"])
            .arg("--prometheus-listen")
            .arg(metrics.to_string())
            .args(["--prometheus-linger", "20s", "--json"])
            .arg(json.path());
        let mut child = ChildGuard::capture(cmd);

        // The report is written before the linger starts: once it is there, the counters are
        // final.
        let deadline = Instant::now() + Duration::from_secs(30);
        let report = loop {
            if let Ok(r) = read_report(json.path()) {
                break Some(r);
            }
            if child.wait_timeout(Duration::ZERO).is_some() || Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let Some(report) = report else {
            child.kill();
            last_failure = format!(
                "blaster run wrote no report\nstdout:\n{}\nstderr:\n{}",
                child.stdout_text(),
                child.stderr_text()
            );
            continue;
        };
        assert!(
            report["responses"].as_u64().unwrap_or(0) > 0,
            "the run got no responses:\n{report:#}"
        );
        assert!(
            report["errors"]["timeout"].as_u64().unwrap_or(0) > 0,
            "the run had no timeout errors:\n{report:#}"
        );
        let mut text = None;
        for _ in 0..50 {
            text = scrape_once(metrics);
            if text.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.kill();
        return text
            .unwrap_or_else(|| panic!("/metrics at {metrics} did not answer while lingering"));
    }
    panic!("could not run blaster with --prometheus-listen: {last_failure}");
}

/// Names of the samples in an exposition text (`name{labels} value` / `name value`).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Metric family names of an exposition text (`# TYPE name type`).
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn dashboard_is_importable_json_with_a_query_in_every_panel() {
    let d = dashboard();
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["uid"].as_str().is_some_and(|t| !t.is_empty()));

    let inputs = d["__inputs"].as_array().expect("__inputs for import");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS datasource input: {inputs:?}"
    );
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no template variable `{name}`"))
    };
    assert_eq!(var("DS_PROMETHEUS")["type"], "datasource");
    assert_eq!(var("DS_PROMETHEUS")["query"], "prometheus");
    assert_eq!(var("job")["type"], "query");
    assert_eq!(var("instance")["type"], "query");

    let panels = panels(&d);
    assert!(panels.len() >= 10, "only {} panels", panels.len());
    let mut ids = BTreeSet::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "panel without a title: {p}");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate panel id in `{title}`"
        );
        for key in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][key].is_u64(), "`{title}`: gridPos.{key}");
        }
        assert_eq!(
            p["datasource"]["uid"], "${DS_PROMETHEUS}",
            "`{title}`: datasource"
        );
        let targets = p["targets"].as_array().expect("panel targets");
        assert!(!targets.is_empty(), "`{title}` has no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "`{title}` has an empty expr: {t}");
            assert!(
                !blaster_names(expr).is_empty(),
                "`{title}` queries no blaster metric: {expr}"
            );
            assert!(
                expr.contains(r#"job=~"$job""#) && expr.contains(r#"instance=~"$instance""#),
                "`{title}` ignores the job/instance variables: {expr}"
            );
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "`{title}`");
        }
    }
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let scrape = final_scrape();
    let exported: BTreeSet<String> = sample_names(scrape)
        .iter()
        .map(|n| strip_histogram_suffix(n).to_owned())
        .collect();
    let used: BTreeSet<String> = exprs(&dashboard())
        .iter()
        .flat_map(|e| blaster_names(e))
        .collect();
    assert!(used.len() >= 10, "the dashboard uses only {used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !exported.contains(strip_histogram_suffix(n)))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics that /metrics does not export: {missing:?}\nexported: {exported:?}\nscrape:\n{scrape}"
    );
    // And the other way round: every exported family has a panel.
    let unused: Vec<String> = families(scrape)
        .into_iter()
        .filter(|f| {
            !used
                .iter()
                .any(|u| strip_histogram_suffix(u) == f || u.strip_suffix("_total") == Some(f))
        })
        .collect();
    assert!(
        unused.is_empty(),
        "metric families with no panel on the dashboard: {unused:?}"
    );
}

#[test]
fn the_guide_names_every_exported_metric_family() {
    let scrape = final_scrape();
    let families = families(scrape);
    assert!(
        families.len() >= 11,
        "expected every family in the scrape (errors included): {families:?}\n{scrape}"
    );
    let doc_names = blaster_names(&read_text("docs/OBSERVABILITY.md"));
    let missing: Vec<&String> = families
        .iter()
        .filter(|f| {
            !doc_names.iter().any(|n| {
                n == *f
                    || n.strip_suffix("_total") == Some(f.as_str())
                    || strip_histogram_suffix(n) == f.as_str()
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/OBSERVABILITY.md does not mention {missing:?}"
    );
}

#[test]
fn the_guide_covers_the_flags_and_the_dashboard() {
    let doc = read_text("docs/OBSERVABILITY.md");
    for needle in [
        "--quiet",
        "--report-interval",
        "--hdr-log",
        "HistogramLogProcessor",
        "--prometheus-listen",
        "--prometheus-linger",
        "scrape_interval",
        "timeseries",
        "dashboards/blaster-grafana.json",
        "DS_PROMETHEUS",
    ] {
        assert!(
            doc.contains(needle),
            "docs/OBSERVABILITY.md does not mention `{needle}`"
        );
    }
}

#[test]
fn names_are_found_in_promql() {
    let names = blaster_names(
        r#"histogram_quantile(0.9, rate(blaster_request_duration_seconds_bucket{job="x"}[1m])) / xblaster_no + blaster_late_total"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "blaster_late_total",
            "blaster_request_duration_seconds_bucket"
        ]
    );
    assert_eq!(
        strip_histogram_suffix("blaster_request_duration_seconds_count"),
        "blaster_request_duration_seconds"
    );
    assert_eq!(
        strip_histogram_suffix("blaster_requests_total"),
        "blaster_requests_total"
    );
}
