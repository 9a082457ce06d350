//! Bad input and unreachable targets: a clear message and exit code 1, never a hang; and
//! per-request timeouts counted as such.

use std::time::Duration;

use blaster_tests::{
    assert_invariant, error_count, free_port, run_blaster, run_json, start_serve, u,
};

const LIMIT: Duration = Duration::from_secs(30);

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "blaster panicked:\n{stderr}");
}

#[test]
fn connection_refused_exits_1_and_asks_if_target_runs() {
    // A port that was free a moment ago; nobody listens there.
    let url = format!("http://127.0.0.1:{}/", free_port());
    let out = run_blaster(
        &["run", &url, "-n", "10", "-c", "2", "-t", "1", "-q"],
        LIMIT,
    );
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("refused"), "stderr:\n{stderr}");
    assert!(
        stderr.contains("is the target running"),
        "stderr:\n{stderr}"
    );
    assert_no_panic(&stderr);
}

#[test]
fn unparsable_url_exits_1_and_echoes_it() {
    for bad in ["http://127.0.0.1:99999/", "http://[::1/x", "not a url"] {
        let out = run_blaster(&["run", bad, "-n", "1", "-q"], LIMIT);
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{bad}: stderr:\n{stderr}");
        assert!(
            stderr.contains(bad),
            "{bad}: message should echo the URL:\n{stderr}"
        );
        assert_no_panic(&stderr);
    }
}

#[test]
fn https_is_an_unsupported_scheme() {
    let url = format!("https://127.0.0.1:{}/", free_port());
    let out = run_blaster(&["run", &url, "-n", "1", "-q"], LIMIT);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("unsupported scheme"), "stderr:\n{stderr}");
    assert_no_panic(&stderr);
}

#[test]
fn bad_duration_is_rejected_and_echoed() {
    let url = format!("http://127.0.0.1:{}/", free_port());
    let out = run_blaster(&["run", &url, "-d", "3x", "-q"], LIMIT);
    let stderr = stderr_of(&out);
    assert_ne!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        out.status.code().is_some(),
        "killed by a signal? {:?}",
        out.status
    );
    assert!(stderr.contains("3x"), "message should echo `3x`:\n{stderr}");
    assert_no_panic(&stderr);
}

#[test]
fn slow_responses_end_as_timeouts() {
    let (_serve, addr) = start_serve(1);
    let url = format!("http://{addr}/delay/1000");
    let r = run_json(&[
        "run",
        &url,
        "-n",
        "5",
        "-c",
        "5",
        "-t",
        "1",
        "--timeout",
        "200ms",
    ]);
    assert_eq!(u(&r, &["requests"]), 5, "{r:#}");
    assert_eq!(error_count(&r, "timeout"), 5, "{r:#}");
    assert_eq!(u(&r, &["errors", "total"]), 5, "{r:#}");
    assert_eq!(u(&r, &["responses"]), 0, "{r:#}");
    assert_invariant(&r);
    // The run ended at the timeouts, not after the server's 1 s delay.
    assert!(
        r["duration_s"].as_f64().unwrap() < 0.9,
        "run should end right after the 200 ms timeouts:\n{r:#}"
    );
}

/// Quick-run flags that a scenario file or a ws:// run has no use for are refused with the
/// flag's name, not silently ignored.
#[test]
fn quick_run_flags_are_refused_for_scenario_files_and_ws_runs() {
    let plan = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/scenarios/api-mix.toml"
    );
    let url = format!("ws://127.0.0.1:{}/ws/echo", free_port());
    for (args, flag, what) in [
        (
            vec!["run", plan, "--pipeline", "4"],
            "--pipeline",
            "a scenario file",
        ),
        (vec!["run", plan, "-d", "1s"], "-d", "a scenario file"),
        (vec!["run", plan, "-H", "X: 1"], "-H", "a scenario file"),
        (
            vec!["run", &url, "-m", "POST", "-d", "1s"],
            "-m",
            "ws:// runs",
        ),
        (
            vec!["run", &url, "--rate", "10", "-d", "1s"],
            "--rate",
            "ws:// runs",
        ),
    ] {
        let out = run_blaster(&args, LIMIT);
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?} stderr:\n{stderr}");
        assert!(
            stderr.contains(&format!("{flag} does not apply to {what}")),
            "{args:?} stderr:\n{stderr}"
        );
        assert_no_panic(&stderr);
    }
}

/// `--churn`, which the virtual-user engine does not implement, is refused, not silently
/// ignored (`--max-connecting` works there: tests/tests/scale.rs).
#[test]
fn churn_is_refused_for_ws_runs() {
    let url = format!("ws://127.0.0.1:{}/ws/echo", free_port());
    let out = run_blaster(
        &["run", &url, "-c", "1", "-d", "1s", "-q", "--churn", "10"],
        LIMIT,
    );
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("--churn applies to http:// URLs"),
        "stderr:\n{stderr}"
    );
    assert_no_panic(&stderr);
}
