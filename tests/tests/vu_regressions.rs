//! Regression tests of the VU engine (`blaster run FILE.toml`), each named after the bug it
//! pins; found by running the example scenarios against the example mock.

use std::time::{Duration, Instant};

use blaster_tests::{TempPath, run_json_output, start_serve, start_serve_with};
use serde_json::Value;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn write(src: &str) -> TempPath {
    let path = TempPath::new(".toml");
    std::fs::write(path.path(), src).expect("write scenario");
    path
}

/// Per request name: `(count, failed)`.
fn name_counts(report: &Value, name: &str) -> (u64, u64) {
    let n = report["scenario"]["names"]
        .as_array()
        .expect("names")
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no name {name} in {report:#}"));
    (u(&n["count"]), u(&n["failed"]))
}

fn run(file: &TempPath, timeout: Duration) -> blaster_tests::JsonRun {
    run_json_output(&["run", file.path().to_str().unwrap(), "-t", "1"], timeout)
}

/// Bug: when a VU's next request went to another host than its kept-alive connection, the
/// engine closed the old connection and with it dropped the request it had just queued; the
/// new connection opened, sent nothing, and the request timed out.
#[test]
fn a_request_to_another_host_after_a_kept_alive_one_is_sent() {
    let (_a, addr_a) = start_serve(1);
    let (_b, addr_b) = start_serve(1);
    let file = write(&format!(
        r#"
[scenarios.hop]
executor = "per-vu-iterations"
vus = 1
iterations = 2
[[scenarios.hop.steps]]
request = "GET http://{addr_a}/"
name = "first host"
timeout = "3s"
[[scenarios.hop.steps]]
request = "GET http://{addr_b}/"
name = "second host"
timeout = "3s"
"#
    ));
    let run = run(&file, Duration::from_secs(30));
    let r = &run.report;
    assert!(run.output.status.success(), "{:?}\n{r:#}", run.output);
    assert_eq!(name_counts(r, "first host"), (2, 0), "{r:#}");
    assert_eq!(name_counts(r, "second host"), (2, 0), "{r:#}");
}

/// Bug: `ws_connect` after an HTTP step on the same VU closed the kept-alive HTTP connection
/// after queueing the Upgrade, which dropped it: the WebSocket connection opened, the Upgrade
/// was never sent, and the VU waited until the scenario was cut off.
#[test]
fn ws_connect_after_an_http_request_sends_the_upgrade() {
    let (_serve, addr) = start_serve(1);
    let file = write(&format!(
        r#"
[scenarios.rtc]
executor = "per-vu-iterations"
vus = 2
iterations = 2
max_duration = "20s"
[[scenarios.rtc.steps]]
request = "POST http://{addr}/"
body = '{{"join": true}}'
name = "join"
[[scenarios.rtc.steps]]
ws_connect = "ws://{addr}/ws/echo"
name = "connect"
[[scenarios.rtc.steps]]
ws_send = "hello ${{gen.vu}}"
name = "say"
[[scenarios.rtc.steps]]
ws_expect = "hello"
name = "echo"
timeout = "3s"
[[scenarios.rtc.steps]]
ws_close = true
"#
    ));
    let run = run(&file, Duration::from_secs(40));
    let r = &run.report;
    assert!(run.output.status.success(), "{:?}\n{r:#}", run.output);
    assert_eq!(name_counts(r, "join"), (4, 0), "{r:#}");
    assert_eq!(name_counts(r, "connect"), (4, 0), "{r:#}");
    assert_eq!(name_counts(r, "echo"), (4, 0), "{r:#}");
    assert_eq!(
        u(&r["scenario"]["scenarios"][0]["interrupted_iterations"]),
        0
    );
    assert_eq!(u(&r["ws"]["sessions"]), 4, "{r:#}");
}

/// Bug: a `Sec-WebSocket-Protocol` header on `ws_connect` (how k6 scripts offer a
/// subprotocol) was refused when the Upgrade was built, so every session failed before it
/// started.
#[test]
fn a_subprotocol_offered_in_a_header_is_negotiated() {
    let mock = write(
        r#"
[[routes]]
path = "/graphql"
websocket = "echo"
protocol = "graphql-transport-ws"
replies = [{ contains = "connection_init", send = '{"type":"connection_ack"}' }]
"#,
    );
    let (_serve, addr) = start_serve_with(&["--mock", mock.path().to_str().unwrap(), "-t", "1"]);
    let file = write(&format!(
        r#"
[scenarios.gql]
executor = "per-vu-iterations"
vus = 2
iterations = 1
max_duration = "20s"
[[scenarios.gql.steps]]
ws_connect = "ws://{addr}/graphql"
name = "connect"
headers = {{ Sec-WebSocket-Protocol = "graphql-transport-ws" }}
[[scenarios.gql.steps]]
ws_send = '{{"type": "connection_init"}}'
[[scenarios.gql.steps]]
ws_expect = "connection_ack"
name = "ack"
timeout = "3s"
[[scenarios.gql.steps]]
ws_close = true

[thresholds]
ws_session_failed = ["rate==0"]
"#
    ));
    let run = run(&file, Duration::from_secs(40));
    let r = &run.report;
    assert!(run.output.status.success(), "{:?}\n{r:#}", run.output);
    assert_eq!(name_counts(r, "connect"), (2, 0), "{r:#}");
    assert_eq!(name_counts(r, "ack"), (2, 0), "{r:#}");
}

/// Bug: an iteration that failed before any I/O (first found with an Upgrade that could not be
/// built, a hand-set `Sec-WebSocket-Key`, which `blaster check` now refuses; here an address
/// that cannot be resolved, port 99999) restarted within the same pass over the timers, for
/// ever: the run never ended and ignored SIGTERM.
#[test]
fn an_iteration_that_fails_before_any_io_does_not_hang_the_run() {
    let (_serve, addr) = start_serve(1);
    let host = addr.ip();
    let file = write(&format!(
        r#"
[scenarios.bad]
executor = "constant-vus"
vus = 1
duration = "1s"
graceful_stop = "0s"
# Without the default backoff after a failed iteration: the restart path itself is tested.
error_backoff = "none"
[[scenarios.bad.steps]]
ws_connect = "ws://{host}:99999/ws/echo"
name = "connect"

[thresholds]
ws_session_failed = ["rate==0"]
"#
    ));
    let started = Instant::now();
    let run = run(&file, Duration::from_secs(30));
    let r = &run.report;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        run.output.status.code(),
        Some(99),
        "{:?}\n{r:#}",
        run.output
    );
    // Every attempt failed before a connection was opened.
    let (count, failed) = name_counts(r, "connect");
    assert!(failed > 0, "{r:#}");
    assert_eq!(count, failed, "{r:#}");
    assert_eq!(u(&r["connections"]["opened"]), 0, "{r:#}");
    assert_eq!(u(&r["ws"]["sessions_failed"]), failed, "{r:#}");
}

/// Bug: values rendered into a URL went into the request line as they were, so a CSV query
/// with a space (`judo seminar`) made a malformed request that the server refused with 400.
#[test]
fn a_space_in_a_rendered_url_is_percent_encoded() {
    let (_serve, addr) = start_serve(1);
    let dir = TempPath::new("-dir");
    std::fs::create_dir(dir.path()).expect("temp dir");
    std::fs::write(
        dir.path().join("queries.csv"),
        "q\njudo seminar\n\"black belt\"\n",
    )
    .expect("write data");
    let file = dir.path().join("search.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[data.queries]
file = "queries.csv"
[scenarios.search]
executor = "per-vu-iterations"
vus = 1
iterations = 4
[[scenarios.search.steps]]
request = "GET http://{addr}/?q=${{data.queries.q}}"
name = "search"
checks = [{{ name = "ok", status = [200] }}]
[[scenarios.search.steps]]
ws_connect = "ws://{addr}/ws/echo?q=${{data.queries.q}}"
name = "connect"
[[scenarios.search.steps]]
ws_close = true
"#
        ),
    )
    .expect("write scenario");
    let run = run_json_output(
        &["run", file.to_str().unwrap(), "-t", "1"],
        Duration::from_secs(30),
    );
    let r = &run.report;
    assert!(run.output.status.success(), "{:?}\n{r:#}", run.output);
    assert_eq!(name_counts(r, "search"), (4, 0), "{r:#}");
    assert_eq!(r["status_codes"]["200"], 4, "{r:#}");
    assert_eq!(name_counts(r, "connect"), (4, 0), "{r:#}");
}

/// Bug: the answer to a HEAD request was parsed as if a body of its `Content-Length` followed,
/// so every HEAD step waited for bytes that never come and ended as a timeout.
#[test]
fn a_head_request_does_not_wait_for_the_body_its_content_length_announces() {
    let mock = write(
        r#"
[[routes]]
method = "GET"
path = "/"
body = "<!doctype html><h1>Home</h1>"
"#,
    );
    let (_serve, addr) = start_serve_with(&["--mock", mock.path().to_str().unwrap(), "-t", "1"]);
    let file = write(&format!(
        r#"
[scenarios.probe]
executor = "per-vu-iterations"
vus = 1
iterations = 3
[[scenarios.probe.steps]]
request = "HEAD http://{addr}/"
name = "head"
timeout = "2s"
[[scenarios.probe.steps]]
request = "GET http://{addr}/"
name = "get"
checks = [{{ name = "body", body_contains = "Home" }}]
"#
    ));
    let run = run(&file, Duration::from_secs(30));
    let r = &run.report;
    assert!(run.output.status.success(), "{:?}\n{r:#}", run.output);
    assert_eq!(name_counts(r, "head"), (3, 0), "{r:#}");
    // The GET after each HEAD on the same connection reads its own answer, body and all.
    assert_eq!(name_counts(r, "get"), (3, 0), "{r:#}");
    assert_eq!(u(&r["scenario"]["checks"][0]["passes"]), 3, "{r:#}");
    assert_eq!(u(&r["connections"]["opened"]), 1, "{r:#}");
}
