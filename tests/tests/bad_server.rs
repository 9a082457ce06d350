//! Misbehaving servers: each broken response ends as an error of the right kind, the run
//! still finishes normally with a complete report, and nothing panics.

use std::time::Duration;

use blaster_tests::{Fixture, Mode, assert_invariant, error_count, run_json_output, u};
use serde_json::Value;

/// `blaster run -n 20 -c 2 --timeout 2s` against a fixture; asserts the run itself went fine.
fn run_against(mode: Mode) -> Value {
    let fx = Fixture::start(mode);
    let run = run_json_output(
        &[
            "run",
            &fx.url("/"),
            "-n",
            "20",
            "-c",
            "2",
            "-t",
            "1",
            "--timeout",
            "2s",
        ],
        Duration::from_secs(60),
    );
    let stderr = run.stderr();
    assert_eq!(
        run.output.status.code(),
        Some(0),
        "{mode:?}: exit code\nstderr:\n{stderr}\n{:#}",
        run.report
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{mode:?}: blaster panicked:\n{stderr}"
    );
    let r = run.report;
    assert_eq!(u(&r, &["requests"]), 20, "{mode:?}:\n{r:#}");
    assert_eq!(
        u(&r, &["responses"]),
        0,
        "{mode:?}: no response is valid\n{r:#}"
    );
    assert_eq!(u(&r, &["in_flight_at_end"]), 0, "{mode:?}:\n{r:#}");
    assert_invariant(&r);
    // Every request ended as an error; the report has every section.
    assert_eq!(u(&r, &["errors", "total"]), 20, "{mode:?}:\n{r:#}");
    for section in ["latency_us", "connect_latency_us", "connections", "bytes"] {
        assert!(r[section].is_object(), "{mode:?}: missing {section}\n{r:#}");
    }
    assert!(fx.connections() >= 1);
    r
}

#[test]
fn garbage_response_is_malformed_response() {
    let r = run_against(Mode::Garbage);
    assert_eq!(error_count(&r, "malformed_response"), 20, "{r:#}");
    assert!(u(&r, &["connections", "closed_on_error"]) > 0, "{r:#}");
}

#[test]
fn huge_response_head_is_headers_too_large() {
    let r = run_against(Mode::HugeHeaders);
    assert_eq!(error_count(&r, "headers_too_large"), 20, "{r:#}");
    assert!(u(&r, &["connections", "closed_on_error"]) > 0, "{r:#}");
}

#[test]
fn reset_mid_body_is_reset_or_closed_mid_response() {
    let r = run_against(Mode::ResetMidBody);
    let reset = error_count(&r, "reset");
    let closed = error_count(&r, "closed_mid_response");
    assert_eq!(reset + closed, 20, "{r:#}");
    let c = &r["connections"];
    assert!(
        u(c, &["closed_by_peer"]) + u(c, &["closed_on_error"]) > 0,
        "connection closes not counted:\n{r:#}"
    );
}

#[test]
fn bad_chunk_size_is_invalid_chunk() {
    let r = run_against(Mode::BadChunk);
    assert_eq!(error_count(&r, "invalid_chunk"), 20, "{r:#}");
    assert!(u(&r, &["connections", "closed_on_error"]) > 0, "{r:#}");
}

#[test]
fn close_mid_head_is_closed_mid_response() {
    let r = run_against(Mode::CloseMidHead);
    assert_eq!(error_count(&r, "closed_mid_response"), 20, "{r:#}");
    let c = &r["connections"];
    assert!(
        u(c, &["closed_by_peer"]) + u(c, &["closed_on_error"]) > 0,
        "connection closes not counted:\n{r:#}"
    );
}
