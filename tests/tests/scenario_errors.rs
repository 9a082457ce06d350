//! Scenario runs that meet failure: a flow that fails at once backs off instead of spinning
//! (`error_backoff`), retries that honour `Retry-After`, and the check that a server honours
//! its own `Retry-After` (against the example mock and a mock that lies about it).

use std::time::Duration;

use blaster_tests::{TempPath, free_port, run_json_output};
use serde_json::Value;

fn write(src: &str) -> TempPath {
    let path = TempPath::new(".toml");
    std::fs::write(path.path(), src).expect("write scenario");
    path
}

/// Iterations of scenario `name` in a report.
fn iterations(report: &Value, name: &str) -> u64 {
    report["scenario"]["scenarios"]
        .as_array()
        .expect("scenario.scenarios")
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["iterations"].as_u64())
        .unwrap_or_else(|| panic!("no iterations for {name} in:\n{report:#}"))
}

/// The most iterations one VU can start within `window` when every iteration fails at once
/// and the VU waits at least `base * 2^(k-1)` (capped at `max`), halved by the jitter, after
/// its k-th failure in a row: the first starts at 0, the (n+1)-th after n waits.
fn most_iterations(base: Duration, max: Duration, window: Duration) -> u64 {
    let (mut n, mut waited) = (1u64, Duration::ZERO);
    loop {
        let full = base.saturating_mul(1 << (n - 1).min(30)).min(max);
        waited += full / 2;
        if waited >= window {
            return n;
        }
        n += 1;
    }
}

const CLOSED_PORT: &str = r#"
[scenarios.refused]
executor = "constant-vus"
vus = 2
duration = "1s"
graceful_stop = "1s"
ERROR_BACKOFF
[[scenarios.refused.steps]]
request = "GET http://127.0.0.1:${PORT}/"
name = "refused"
"#;

fn run_refused(backoff_line: &str) -> Value {
    let port = free_port();
    let file = write(&CLOSED_PORT.replace("ERROR_BACKOFF", backoff_line));
    let run = run_json_output(
        &[
            "run",
            file.path().to_str().unwrap(),
            "-e",
            &format!("PORT={port}"),
            "-t",
            "1",
        ],
        Duration::from_secs(30),
    );
    // The run completes and writes its report (requests failed, so the exit code says so
    // only through thresholds; there are none here).
    assert_eq!(
        run.output.status.code(),
        Some(0),
        "{:?}\n{}",
        run.output,
        run.stderr()
    );
    run.report
}

/// Regression: a flow that fails before any answer (connection refused) with no think time
/// restarted at once, spinning the worker thread for the whole run.
#[test]
fn a_flow_that_fails_at_once_backs_off_instead_of_spinning() {
    let report = run_refused("");
    let refused = report["errors"]["connect_refused"].as_u64().unwrap_or(0);
    assert!(refused > 0, "the port was closed: {report:#}");
    let done = iterations(&report, "refused");
    eprintln!("default backoff: {done} iterations, {refused} refused connects");
    // The default error_backoff is exp:10ms..1s: two VUs for 1 s.
    let bound = 2 * most_iterations(
        Duration::from_millis(10),
        Duration::from_secs(1),
        Duration::from_secs(1),
    );
    assert!(
        (2..=bound).contains(&done),
        "2 VUs with the default backoff for 1 s did {done} iterations (at most {bound} fit)"
    );

    // A fixed backoff bounds it the same way: 1 s / 100 ms per VU, plus the first.
    let report = run_refused(r#"error_backoff = "100ms""#);
    let done = iterations(&report, "refused");
    assert!(
        (2..=2 * 11).contains(&done),
        "{done} iterations with a 100ms backoff"
    );

    // Without a backoff it spins: far more than the bound (each attempt is a refused
    // loopback connect, tens of microseconds even on a busy machine).
    let report = run_refused(r#"error_backoff = "none""#);
    let spun = iterations(&report, "refused");
    eprintln!("no backoff: {spun} iterations");
    assert!(
        spun > 10 * bound,
        "with error_backoff = \"none\" the VUs did only {spun} iterations (bound with backoff {bound})"
    );
}

const MOCK: &str = r#"
[[routes]]
method = "GET"
path = "/honest"
[routes.rate_limit]
key = "header:Authorization"
window = "2s"
limit = 1

# Says "come back in 1 s" while its window lasts 30 s.
[[routes]]
method = "GET"
path = "/liar"
[routes.rate_limit]
key = "header:Authorization"
window = "30s"
limit = 1
retry_after = 1
"#;

const RETRY: &str = r#"
[scenarios.limited]
executor = "per-vu-iterations"
vus = 1
iterations = 1
max_duration = "20s"
[[scenarios.limited.steps]]
request = "GET ${BASE}/${ROUTE}"
name = "first"
headers = { Authorization = "t" }
[[scenarios.limited.steps]]
request = "GET ${BASE}/${ROUTE}"
name = "limited"
headers = { Authorization = "t" }
expect = [200, 429]
retry = { on = [429], max = 1, max_wait = "5s" }
checks = [{ name = "retry_after_honoured", retry_after_honoured = true }]
[[scenarios.limited.steps]]
# Refused again (the retry took the new window's one request): wait its Retry-After by hand.
request = "GET ${BASE}/${ROUTE}"
name = "refused"
headers = { Authorization = "t" }
expect = [429]
capture = { wait = "header:Retry-After" }
[[scenarios.limited.steps]]
sleep = "${vars.wait}s"
[[scenarios.limited.steps]]
request = "GET ${BASE}/${ROUTE}"
name = "after sleep"
headers = { Authorization = "t" }
expect = [200, 429]
checks = [{ name = "after the slept Retry-After", status = [200] }]

[thresholds]
"checks{check:retry_after_honoured}" = ["rate==1"]
"#;

fn name<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["scenario"]["names"]
        .as_array()
        .expect("scenario.names")
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no name {name} in:\n{report:#}"))
}

fn check(report: &Value, check: &str) -> (u64, u64) {
    let c = report["scenario"]["checks"]
        .as_array()
        .expect("scenario.checks")
        .iter()
        .find(|c| c["name"] == check)
        .unwrap_or_else(|| panic!("no check {check} in:\n{report:#}"));
    (c["passes"].as_u64().unwrap(), c["fails"].as_u64().unwrap())
}

fn run_retry(route: &str) -> (Option<i32>, Value) {
    let mock = write(MOCK);
    let (_mock, addr) = blaster_tests::start_mock(mock.path());
    let file = write(RETRY);
    let run = run_json_output(
        &[
            "run",
            file.path().to_str().unwrap(),
            "-e",
            &format!("BASE=http://{addr}"),
            "-e",
            &format!("ROUTE={route}"),
            "-t",
            "1",
        ],
        Duration::from_secs(60),
    );
    (run.output.status.code(), run.report)
}

#[test]
fn a_retry_waits_the_servers_retry_after_and_the_check_passes_when_it_is_honoured() {
    let (code, r) = run_retry("honest");
    let limited = name(&r, "limited");
    assert_eq!(limited["retries"], 1, "{limited:#}");
    assert_eq!(limited["status_codes"]["429"], 1, "{limited:#}");
    assert_eq!(limited["status_codes"]["200"], 1, "{limited:#}");
    // The mock's Retry-After is the window's rest rounded up to whole seconds: 2 s here.
    let waited = limited["retry_wait_ms"].as_f64().expect("retry_wait_ms");
    assert!((1_000.0..=2_000.0).contains(&waited), "waited {waited} ms");
    assert_eq!(check(&r, "retry_after_honoured"), (1, 0));
    // The sleep took its duration from the captured Retry-After, and then the request passed.
    assert_eq!(name(&r, "refused")["status_codes"]["429"], 1);
    assert_eq!(check(&r, "after the slept Retry-After"), (1, 0), "{r:#}");
    assert_eq!(code, Some(0), "{r:#}");
    assert_eq!(r["scenario"]["thresholds"][0]["passed"], true);
}

#[test]
fn the_retry_after_check_fails_against_a_server_that_lies_about_it() {
    let (code, r) = run_retry("liar");
    let limited = name(&r, "limited");
    assert_eq!(limited["retries"], 1, "{limited:#}");
    // Waited the advertised second, and was refused again.
    assert_eq!(limited["status_codes"]["429"], 2, "{limited:#}");
    assert_eq!(check(&r, "retry_after_honoured"), (0, 1));
    assert_eq!(code, Some(99), "a failed threshold exits 99: {r:#}");
}
