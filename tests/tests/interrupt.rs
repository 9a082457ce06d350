//! Ctrl-C / SIGTERM: the run stops promptly with exit code 130 and still writes its report,
//! marked `"interrupted": true`.

use std::process::Command;
use std::time::{Duration, Instant};

use blaster_tests::{
    ChildGuard, TempPath, assert_invariant, blaster_bin, read_report, start_serve, u,
};

/// Starts a 30 s run against `blaster serve`, sends `signals` (the first after 1 s, the rest
/// `gap` apart), and returns (exit code, seconds from the first signal to exit, report or why
/// there is none).
fn interrupted_run(
    signals: &[i32],
    gap: Duration,
) -> (Option<i32>, f64, Result<serde_json::Value, String>) {
    let (_serve, addr) = start_serve(1);
    let json = TempPath::new(".json");
    let mut cmd = Command::new(blaster_bin());
    cmd.args(["run", &format!("http://{addr}/"), "-d", "30s", "-c", "10"])
        .args(["-t", "1", "-q", "--json"])
        .arg(json.path());
    let mut run = ChildGuard::capture(cmd);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        run.wait_timeout(Duration::ZERO).is_none(),
        "run ended before it was interrupted:\n{}",
        run.stderr_text()
    );
    let first = Instant::now();
    for (i, &sig) in signals.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(gap);
        }
        run.signal(sig);
    }
    let status = run.wait_timeout(Duration::from_secs(5));
    let took = first.elapsed().as_secs_f64();
    let stderr = run.stderr_text();
    let Some(status) = status else {
        panic!("run still going 5 s after the signal (killed by the guard).\nstderr:\n{stderr}");
    };
    assert!(!stderr.contains("panicked"), "blaster panicked:\n{stderr}");
    let report = read_report(json.path()).map_err(|e| format!("{e}\nstderr:\n{stderr}"));
    (status.code(), took, report)
}

fn assert_interrupted_report(r: Result<serde_json::Value, String>) {
    let r = &r.unwrap_or_else(|e| panic!("no report after the interrupt: {e}"));
    assert_eq!(r["interrupted"], true, "{r:#}");
    assert!(u(r, &["requests"]) > 0, "{r:#}");
    assert!(u(r, &["responses"]) > 0, "{r:#}");
    assert!(
        r["duration_s"].as_f64().unwrap() < 10.0,
        "duration_s should be the time actually run:\n{r:#}"
    );
    assert_invariant(r);
}

#[test]
fn sigint_exits_130_and_writes_interrupted_report() {
    let (code, took, r) = interrupted_run(&[libc::SIGINT], Duration::ZERO);
    assert_eq!(code, Some(130), "{r:#?}");
    assert!(took < 5.0, "took {took:.2}s");
    assert_interrupted_report(r);
}

#[test]
fn sigterm_exits_130_and_writes_interrupted_report() {
    let (code, took, r) = interrupted_run(&[libc::SIGTERM], Duration::ZERO);
    assert_eq!(code, Some(130), "{r:#?}");
    assert!(took < 5.0, "took {took:.2}s");
    assert_interrupted_report(r);
}

#[test]
fn second_sigint_still_exits_130() {
    // The second Ctrl-C arrives while the first one's shutdown may still be under way; either
    // way the process must end with 130, not die of the signal. (The report may be cut short
    // by the immediate exit, so it is not checked here.)
    let (code, took, r) = interrupted_run(&[libc::SIGINT, libc::SIGINT], Duration::from_millis(5));
    assert_eq!(code, Some(130), "{r:#?}");
    assert!(took < 5.0, "took {took:.2}s");
}
