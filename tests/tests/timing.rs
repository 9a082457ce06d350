//! Latency that means something: a known server delay is measured as such, and a server
//! stall shows in the open model's tail (timed from intended send) while the closed model
//! hides it (coordinated omission) and only loses throughput.
//!
//! These tests run one at a time ([`serial`]): two load tests sharing 2 CPUs would measure
//! each other.

use std::process::Command;
use std::time::Duration;

use blaster_tests::{
    ChildGuard, Stall, TempPath, assert_invariant, blaster_bin, f, read_report, run_json, serial,
    start_serve, u,
};
use serde_json::Value;

/// How long the server is stopped (SIGSTOP ... SIGCONT) in both stall tests.
const STALL_FOR: Duration = Duration::from_millis(500);

/// Runs `blaster ARGS --json -q` against `serve` and SIGSTOPs the server `stall_at` after the
/// run starts, for [`STALL_FOR`].
fn run_with_stall(serve: &ChildGuard, args: &[&str], stall_at: Duration) -> Value {
    let json = TempPath::new(".json");
    let mut cmd = Command::new(blaster_bin());
    cmd.args(args).arg("--json").arg(json.path()).arg("-q");
    let run = ChildGuard::capture(cmd);
    let stall = Stall::start(serve, stall_at, STALL_FOR);
    let out = run.into_output(Duration::from_secs(30));
    stall.join();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\nstderr:\n{stderr}", out.status);
    read_report(json.path()).unwrap_or_else(|e| panic!("{e}\nstderr:\n{stderr}"))
}

#[test]
fn fixed_server_delay_is_measured_as_latency() {
    let _serial = serial();
    let (_serve, addr) = start_serve(1);
    let r = run_json(&[
        "run",
        &format!("http://{addr}/delay/50"),
        "-c",
        "10",
        "-d",
        "3s",
        "-t",
        "1",
    ]);
    assert_eq!(u(&r, &["errors", "total"]), 0, "{r:#}");
    assert_invariant(&r);
    let p50 = u(&r, &["latency_us", "p50"]);
    let min = u(&r, &["latency_us", "min"]);
    eprintln!(
        "/delay/50: p50 {p50} us, min {min} us, p99 {} us, {} responses",
        u(&r, &["latency_us", "p99"]),
        u(&r, &["responses"])
    );
    assert!(
        (50_000..=52_000).contains(&p50),
        "p50 {p50} us for a 50 ms server delay:\n{r:#}"
    );
    assert!(
        min >= 50_000,
        "a response came before the 50 ms delay: min {min} us"
    );
    // 10 connections, ~50 ms each, for 3 s: about 600 responses.
    let responses = u(&r, &["responses"]);
    assert!(
        (450..=620).contains(&responses),
        "{responses} responses:\n{r:#}"
    );
}

#[test]
fn open_model_shows_server_stall_in_tail_latency() {
    let _serial = serial();
    let (serve, addr) = start_serve(1);
    let url = format!("http://{addr}/");
    let args = [
        "run", &url, "--rate", "2000", "-d", "4s", "-c", "100", "-t", "1",
    ];
    let r = run_with_stall(&serve, &args, Duration::from_millis(1500));
    assert_eq!(r["model"], "open", "{r:#}");
    assert_eq!(f(&r, &["target_rate"]), 2000.0, "{r:#}");
    assert_invariant(&r);
    // ~1000 of ~8000 intended requests fell into the 500 ms stall and waited up to 500 ms
    // from their intended send time, so the top 1 % is above ~450 ms.
    let p99 = u(&r, &["latency_us", "p99"]);
    eprintln!(
        "open model: p99 {p99} us, late {}, dropped {}, responses {}",
        u(&r, &["late"]),
        u(&r, &["dropped"]),
        u(&r, &["responses"])
    );
    assert!(
        p99 >= 400_000,
        "open-model p99 {p99} us hides the 500 ms stall:\n{r:#}"
    );
    assert!(
        u(&r, &["late"]) > 0,
        "sends during the stall were late:\n{r:#}"
    );
    // The run still delivered about the requested rate overall.
    let responses = u(&r, &["responses"]);
    assert!(
        (7000..=8100).contains(&responses),
        "{responses} responses at 2000/s for 4 s:\n{r:#}"
    );
}

#[test]
fn closed_model_loses_throughput_but_hides_stall_in_tail() {
    let _serial = serial();
    let (serve, addr) = start_serve(1);
    // A 5 ms service time keeps the closed model's throughput set by latency (10 connections /
    // ~5 ms) rather than by how much CPU the debug builds get on a shared 2-CPU machine.
    // The run is 2 s so the 500 ms stall costs ~1/4 of it: with 3 s the expected ratio (0.83)
    // sat within run-to-run noise (measured 0.82..0.85) of the 0.85 bound.
    let url = format!("http://{addr}/delay/5");
    let args = ["run", &url, "-c", "10", "-d", "2s", "-t", "1"];

    let baseline = |r: &Value| {
        assert_eq!(r["model"], "closed", "{r:#}");
        assert_eq!(u(r, &["errors", "total"]), 0, "{r:#}");
        f(r, &["rps"])
    };
    // Baselines before and after: other load on the machine can only lower throughput, so the
    // higher of the two is the better estimate of the undisturbed rate.
    let before = baseline(&run_json(&args));
    let stalled = run_with_stall(&serve, &args, Duration::from_millis(750));
    let after = baseline(&run_json(&args));
    let base_rps = before.max(after);
    assert_eq!(u(&stalled, &["errors", "total"]), 0, "{stalled:#}");
    assert_invariant(&stalled);

    let stalled_rps = f(&stalled, &["rps"]);
    let p99 = u(&stalled, &["latency_us", "p99"]);
    let max = u(&stalled, &["latency_us", "max"]);
    eprintln!(
        "closed model: baseline {before:.0}/{after:.0} rps, with stall {stalled_rps:.0} rps \
         ({:.3}x), stalled p99 {p99} us, max {max} us",
        stalled_rps / base_rps,
    );
    // The stall took 0.5 s of the 2 s: ~1/4 of the responses are missing.
    assert!(
        stalled_rps < 0.85 * base_rps,
        "a 500 ms stall in a 2 s closed run should cost ~1/4 of the throughput: \
         baseline {before:.0}/{after:.0} rps, stalled {stalled_rps:.0} rps\n{stalled:#}"
    );
    // Only the 10 requests in flight during the stall saw it: the closed model's tail stays
    // low (coordinated omission; the open-model test above shows the same stall). Those 10 are
    // under 1% of the responses only when the machine is fast enough; on a loaded machine (a
    // debug build beside other builds: ~1,700 responses) they are, so fall back to p90.
    let responses = u(&stalled, &["responses"]);
    let (label, tail) = if responses >= 2_000 {
        ("p99", p99)
    } else {
        ("p90", u(&stalled, &["latency_us", "p90"]))
    };
    assert!(
        tail < 100_000,
        "closed-model {label} {tail} us with {responses} responses (expected the stall to be hidden):\n{stalled:#}"
    );
    assert!(
        max >= 400_000,
        "the stalled requests themselves took ~500 ms:\n{stalled:#}"
    );
}
