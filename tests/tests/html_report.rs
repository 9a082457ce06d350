//! The HTML report of a real run: the JSON report of a short run against `blaster serve` is
//! read back into a `Report`, rendered with `blaster::report::html::render`, checked for its
//! structure and then opened in headless Chromium by scripts/check-html-report.sh (screenshot
//! not blank, no console messages, charts in the DOM).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use blaster::cli::units::{format_count, format_duration_us, format_thousands};
use blaster::report::Report;
use blaster::report::html::render;
use blaster_tests::{ChildGuard, TempPath, find_program, require, run_blaster, start_serve};

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
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(find_program);
    require!(
        chromium.is_some(),
        "chromium is not installed (apt-get install chromium); the browser check needs it"
    );
    let _python = require!(tool "python3");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("scripts/check-html-report.sh");
    let browser_out = dir.path().join("browser");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg("--check")
        .arg(&page)
        .arg("--out")
        .arg(&browser_out)
        .arg("--min-charts")
        .arg(expected.to_string());
    if let Some(chromium) = chromium {
        cmd.env("CHROMIUM", chromium);
    }
    let started = Instant::now();
    let output = ChildGuard::capture(cmd).into_output(Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser check failed ({:?}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(stdout.contains("check-html-report: OK"), "{stdout}");
    eprintln!(
        "browser check took {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        stdout.trim()
    );
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
