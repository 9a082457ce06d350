//! The HTML report of real runs: the JSON report of a short run against `blaster serve` is
//! read back into a `Report`, rendered with `blaster::report::html::render`, checked for its
//! structure and then opened in headless Chromium by scripts/check-html-report.sh (screenshot
//! not blank, no console messages, charts in the DOM). A scenario-file run and a `ws://` echo
//! run write their page with `--html` and must show their tables (thresholds, per name,
//! checks, scenarios; the WebSocket section) in the browser's DOM too.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use blaster::cli::units::{format_count, format_duration_us, format_thousands};
use blaster::report::Report;
use blaster::report::html::render;
use blaster_tests::{ChildGuard, TempPath, find_program, run_blaster, skip, start_serve};

/// The charts the page draws when the run has intervals and errors-free traffic:
/// latency over time, distribution, throughput, open connections (errors is a note).
const CHARTS_WITHOUT_ERRORS: usize = 4;

fn read_report(path: &Path) -> Report {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path:?} as a Report: {e}"))
}

#[test]
fn real_run_renders_a_self_contained_page_that_a_browser_shows() {
    let (_serve, addr) = start_serve(1);
    let dir = TempPath::new("-html");
    std::fs::create_dir_all(dir.path()).unwrap();
    let json = dir.path().join("r.json");
    let out = run_blaster(
        &[
            "run",
            &format!("http://{addr}/delay/1"),
            "-c",
            "16",
            "-t",
            "1",
            "-d",
            "3s",
            "--report-interval",
            "250ms",
            "-q",
            "--json",
            json.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read_report(&json);
    assert!(report.responses > 1000, "{report:#?}");
    assert!(report.timeseries.len() >= 10, "{report:#?}");

    let html = render(&report);
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();

    // Structure: one document, inline CSS, the charts with their lines, the key numbers.
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<html").count(), 1);
    assert!(html.contains("<style>"));
    assert!(!html.contains("<script"), "the page needs no script");
    let charts = html.matches("<svg class=\"chart\"").count();
    let expected = CHARTS_WITHOUT_ERRORS + usize::from(report.errors.total > 0);
    assert_eq!(charts, expected, "charts in the page");
    assert!(html.matches("<path class=\"series\"").count() >= charts);
    for chart in [
        "latency-over-time",
        "latency-distribution",
        "throughput",
        "connections",
    ] {
        assert!(
            html.contains(&format!("data-chart=\"{chart}\"")),
            "chart {chart} missing"
        );
    }
    assert!(!html.contains("no intervals"));
    assert!(!html.contains("NaN"));
    for number in [
        format_thousands(report.requests),
        format_thousands(report.responses),
        format!("{}/s", format_count(report.rps)),
        format_duration_us(report.latency_us.p50),
        format_duration_us(report.latency_us.p99),
        format_duration_us(report.latency_us.max),
        format_thousands(report.status_codes["200"]),
    ] {
        assert!(html.contains(&number), "{number} missing from the page");
    }
    assert!(html.contains(&format!("http://{addr}/delay/1")));
    // No external resource of any kind: the only URL is the target's.
    let own = html.replace(&format!("http://{addr}/delay/1"), "");
    assert!(!own.contains("http://") && !own.contains("https://"));
    for attr in ["src=", "href=", "url(", "@import", "<link"] {
        assert!(!own.contains(attr), "page has {attr}");
    }

    // The browser.
    let browser_out = dir.path().join("browser");
    if check_in_browser(&page, &browser_out, expected).is_none() {
        return;
    }
    // Keep the page and screenshot for a look when asked to.
    if let Some(keep) = std::env::var_os("BLASTER_HTML_KEEP") {
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep).unwrap();
        for (from, to) in [
            (page.clone(), "report.html"),
            (json.clone(), "r.json"),
            (browser_out.join("screenshot.png"), "screenshot.png"),
        ] {
            std::fs::copy(&from, keep.join(to)).unwrap();
        }
        eprintln!("kept the page and screenshot in {keep:?}");
    }
}

/// Opens `page` in headless Chromium with scripts/check-html-report.sh (no console messages,
/// a screenshot that is not blank, at least `min_charts` charts) and returns the DOM the browser
/// built; `None` when the test is skipped (no Chromium outside CI).
fn check_in_browser(page: &Path, browser_out: &Path, min_charts: usize) -> Option<String> {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(find_program);
    if chromium.is_none() {
        skip_browser(
            "chromium is not installed (apt-get install chromium); the browser check needs it",
        );
        return None;
    }
    if find_program("python3").is_none() {
        skip_browser("`python3` is not installed (apt-get install python3)");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("scripts/check-html-report.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg("--check")
        .arg(page)
        .arg("--out")
        .arg(browser_out)
        .arg("--min-charts")
        .arg(min_charts.to_string());
    if let Some(chromium) = chromium {
        cmd.env("CHROMIUM", chromium);
    }
    let started = Instant::now();
    let output = ChildGuard::capture(cmd).into_output(Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser check of {page:?} failed ({:?}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(stdout.contains("check-html-report: OK"), "{stdout}");
    eprintln!(
        "browser check took {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        stdout.trim()
    );
    Some(std::fs::read_to_string(browser_out.join("dom.html")).expect("the DOM the browser built"))
}

/// Prints why the browser check is skipped; under `CI=true` fails the test instead.
fn skip_browser(reason: &str) {
    skip!("{reason}");
}

/// Used by scripts/check-html-report.sh while `blaster report --html` is not wired: renders
/// the JSON report named by `BLASTER_HTML_JSON` into `BLASTER_HTML_OUT`. Does nothing
/// otherwise.
#[test]
fn render_json_from_env() {
    let (Some(json), Some(out)) = (
        std::env::var_os("BLASTER_HTML_JSON"),
        std::env::var_os("BLASTER_HTML_OUT"),
    ) else {
        return;
    };
    let report = read_report(Path::new(&json));
    std::fs::write(&out, render(&report)).unwrap_or_else(|e| panic!("write {out:?}: {e}"));
    eprintln!("wrote {out:?}");
}

/// A scenario file with passing and failing thresholds and checks.
const SCENARIO: &str = r#"
[scenarios.browse]
executor = "constant-arrival-rate"
rate = 100
duration = "2s"
pre_allocated_vus = 10
max_vus = 20
[[scenarios.browse.steps]]
request = "GET ${BASE}/"
name = "home"
checks = [{ name = "home is 200", status = [200] }]
[[scenarios.browse.steps]]
request = "GET ${BASE}/status/404"
name = "missing"
expect = [404]
checks = [{ name = "missing is 200", status = [200] }]

[scenarios.users]
executor = "ramping-vus"
start_vus = 1
stages = [{ duration = "1s", target = 3 }, { duration = "1s", target = 3 }]
[[scenarios.users.steps]]
group = "checkout"
[[scenarios.users.steps.steps]]
request = "POST ${BASE}/"
body = '{"item": 1}'
name = "buy"
[[scenarios.users.steps]]
sleep = "100ms"

[thresholds]
"http_req_duration{name:home}" = ["p(95)<2000", "p(99)<0.001"]
http_req_failed = ["rate<0.01"]
"http_reqs{name:missing,status:404}" = ["count>100"]
"#;

/// The `<tr …>…</tr>` of `html` that holds `needle`.
fn row<'a>(html: &'a str, needle: &str) -> &'a str {
    let at = html
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} missing from the page"));
    let start = html[..at].rfind("<tr").expect("inside a table row");
    let end = at + html[at..].find("</tr>").expect("the row ends");
    &html[start..end]
}

#[test]
fn a_scenario_run_shows_its_thresholds_names_checks_and_scenarios() {
    let (_serve, addr) = start_serve(1);
    let dir = TempPath::new("-html-scenario");
    std::fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join("shop.toml");
    std::fs::write(&file, SCENARIO).unwrap();
    let [json, page, md, xml] =
        ["r.json", "report.html", "summary.md", "junit.xml"].map(|name| dir.path().join(name));
    let out = run_blaster(
        &[
            "run",
            file.to_str().unwrap(),
            "-e",
            &format!("BASE=http://{addr}"),
            "-t",
            "1",
            "-q",
            "--json",
            json.to_str().unwrap(),
            "--html",
            page.to_str().unwrap(),
            "--summary-md",
            md.to_str().unwrap(),
            "--junit",
            xml.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    // p(99) < 1 µs cannot hold: thresholds failed.
    assert_eq!(out.status.code(), Some(99), "{out:?}");
    let report = read_report(&json);
    let sc = report.scenario.as_ref().expect("a scenario object");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html, render(&report), "--html is the renderer's page");

    // Thresholds: the impossible one failed, with its measured value, in red.
    let failed = sc
        .thresholds
        .iter()
        .find(|t| t.condition == "p(99)<0.001")
        .unwrap();
    assert!(!failed.passed);
    let table = &html[html.find("id=\"thresholds\"").expect("a threshold table")..];
    let failed_row = row(table, "p(99)&lt;0.001");
    assert!(failed_row.starts_with("<tr class=\"fail\""), "{failed_row}");
    assert!(
        failed_row.contains(&format!(">{}<", failed.observed_text())),
        "{failed_row}"
    );
    assert!(failed_row.contains(">FAIL<"), "{failed_row}");
    let passed_row = row(table, "count&gt;100");
    assert!(passed_row.starts_with("<tr class=\"pass\""), "{passed_row}");
    assert!(
        html.contains("1 of 4 thresholds failed (exit code 99)"),
        "verdict banner"
    );

    // Per name, checks, scenarios: the numbers of the JSON report.
    for n in &sc.names {
        let r = row(
            &html,
            &format!("<code>{}</code></td><td>{}</td>", n.name, n.kind),
        );
        assert!(
            r.contains(&format!(">{}<", format_thousands(n.count))),
            "{}: {r}",
            n.name
        );
        assert!(r.contains(&format_duration_us(n.latency_us.p99)), "{r}");
    }
    assert_eq!(sc.names.len(), 3, "{sc:#?}");
    let check = row(&html, "missing is 200");
    assert!(check.starts_with("<tr class=\"fail\"") && check.contains(">FAIL<"));
    assert!(row(&html, "home is 200").contains(">pass<"));
    for s in &sc.scenarios {
        let r = row(
            &html,
            &format!("<code>{}</code></td><td>{}</td>", s.name, s.executor),
        );
        assert!(
            r.contains(&format!(">{}<", format_thousands(s.iterations))),
            "{r}"
        );
    }

    // The markdown summary and the JUnit report say the same.
    let md = std::fs::read_to_string(&md).unwrap();
    let line = format!(
        "| `http_req_duration{{name:home}}` | `p(99)<0.001` | {} | **FAIL** |",
        failed.observed_text()
    );
    assert!(md.contains(&line), "{line} not in\n{md}");
    let xml = std::fs::read_to_string(&xml).unwrap();
    let case = format!(
        "<testcase name=\"http_req_duration{{name:home}}: p(99)&lt;0.001\" classname=\"thresholds\">\n      <failure message=\"measured {}, wanted p(99)&lt;0.001\"",
        failed.observed_text()
    );
    assert!(xml.contains(&case), "{case} not in\n{xml}");
    assert!(
        xml.contains("<testcase name=\"missing is 200 (missing)\" classname=\"checks\">"),
        "{xml}"
    );

    // Per name over time: latency and throughput per name, and throughput per group tag.
    let series = sc.series.as_ref().expect("per-name series");
    assert_eq!(series.names.len(), sc.names.len());
    for chart in ["name-latency", "name-throughput", "group-throughput"] {
        assert!(html.contains(&format!("data-chart=\"{chart}\"")), "{chart}");
    }

    let expected = CHARTS_WITHOUT_ERRORS + usize::from(report.errors.total > 0) + 3;
    let Some(dom) = check_in_browser(&page, &dir.path().join("browser"), expected) else {
        return;
    };
    let latency = &dom[dom
        .find("data-chart=\"name-latency\"")
        .expect("per-name chart in the DOM")..];
    let latency = &latency[..latency.find("</svg>").unwrap()];
    assert_eq!(
        latency.matches("<path class=\"series\"").count(),
        sc.names.len(),
        "one line per name: {latency}"
    );
    for id in [
        "threshold-verdict",
        "thresholds",
        "per-name",
        "per-name-charts",
        "checks",
        "scenarios",
    ] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "{id} missing from the DOM"
        );
    }
    assert!(
        dom.contains("<tr class=\"fail\">"),
        "no failed row in the DOM"
    );
}

#[test]
fn a_websocket_run_shows_its_sessions_messages_and_latency() {
    let (_serve, addr) = start_serve(1);
    let dir = TempPath::new("-html-ws");
    std::fs::create_dir_all(dir.path()).unwrap();
    let [json, page] = ["r.json", "report.html"].map(|name| dir.path().join(name));
    let out = run_blaster(
        &[
            "run",
            &format!("ws://{addr}/ws/echo"),
            "--mode",
            "echo",
            "-c",
            "20",
            "--message-rate",
            "50",
            "-d",
            "3s",
            "-t",
            "1",
            "-q",
            "--json",
            json.to_str().unwrap(),
            "--html",
            page.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = read_report(&json);
    let ws = report.ws.as_ref().expect("a ws object");
    assert_eq!(ws.sessions, 20, "{ws:#?}");
    assert!(ws.msgs_received > 1_000, "{ws:#?}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html, render(&report), "--html is the renderer's page");

    let headline = &html[html.find("id=\"headline\"").unwrap()..];
    let headline = &headline[..headline.find("</section>").unwrap()];
    assert!(
        headline.contains(">Sessions<") && headline.contains(">20<"),
        "{headline}"
    );
    assert!(
        headline.contains(&format_duration_us(ws.msg_latency_us.p99)),
        "{headline}"
    );
    assert!(html.contains("WebSocket (echo)"));
    let received = row(&html, ">received<");
    assert!(
        received.contains(&format_thousands(ws.msgs_received)),
        "{received}"
    );
    assert!(row(&html, ">lost<").contains(&format!(">{}<", format_thousands(ws.lost))));
    let p99 = row(&html, "<td>p99</td>");
    assert!(
        p99.contains(&format_duration_us(ws.handshake_us.p99)),
        "{p99}"
    );
    assert!(
        p99.contains(&format_duration_us(ws.msg_latency_us.p99)),
        "{p99}"
    );
    assert!(!html.contains("id=\"thresholds\""));

    let expected = CHARTS_WITHOUT_ERRORS + usize::from(report.errors.total > 0);
    let Some(dom) = check_in_browser(&page, &dir.path().join("browser"), expected) else {
        return;
    };
    for id in ["websocket", "ws-sessions", "ws-messages", "ws-latency"] {
        assert!(
            dom.contains(&format!("id=\"{id}\"")),
            "{id} missing from the DOM"
        );
    }
}
