//! `blaster run FILE.toml` end to end against `blaster serve`: executors, per-name statistics,
//! checks, thresholds and their exit code, and a bad file.

use std::time::Duration;

use blaster_tests::{TempPath, assert_schema_valid, run_blaster, run_json_output, start_serve};
use serde_json::Value;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn write(src: &str) -> TempPath {
    let path = TempPath::new(".toml");
    std::fs::write(path.path(), src).expect("write scenario");
    path
}

const MIXED: &str = r#"
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

[scenarios.users]
executor = "constant-vus"
vus = 3
duration = "2s"
[[scenarios.users.steps]]
group = "checkout"
[[scenarios.users.steps.steps]]
request = "POST ${BASE}/"
body = '{"item": 1}'
name = "buy"
[[scenarios.users.steps]]
sleep = "100ms"

[thresholds]
"http_req_duration{name:home}" = ["p(95)<${P95:-2000}"]
http_req_failed = ["rate<0.01"]
checks = ["rate>0.99"]
"http_reqs{name:missing,status:404}" = ["count>100"]
"iterations{scenario:browse}" = ["count>=190"]
"#;

#[test]
fn a_scenario_runs_its_executors_and_passes_its_thresholds() {
    let (_serve, addr) = start_serve(1);
    let file = write(MIXED);
    let run = run_json_output(
        &[
            "run",
            file.path().to_str().unwrap(),
            "-e",
            &format!("BASE=http://{addr}"),
            "-t",
            "2",
        ],
        Duration::from_secs(60),
    );
    let r = &run.report;
    assert!(run.output.status.success(), "{:?}\n{r:#}", run.output);
    assert_schema_valid(r);
    assert_eq!(r["model"], "scenario");
    let sc = &r["scenario"];
    assert_eq!(sc["thresholds_passed"], true, "{sc:#}");
    let scenarios = sc["scenarios"].as_array().unwrap();
    // 100/s for 2 s: 200 iterations, none dropped on loopback.
    assert_eq!(u(&scenarios[0]["iterations"]), 200, "{sc:#}");
    assert_eq!(u(&scenarios[0]["dropped_iterations"]), 0);
    // constant-vus keeps exactly 3 VUs.
    assert_eq!(u(&scenarios[1]["vus_max"]), 3, "{sc:#}");
    let name = |n: &str| {
        sc["names"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap_or_else(|| panic!("no name {n}"))
            .clone()
    };
    assert_eq!(u(&name("home")["count"]), 200);
    assert_eq!(u(&name("missing")["status_codes"]["404"]), 200);
    assert_eq!(u(&name("missing")["failed"]), 0, "404 is expected there");
    let buy = name("buy");
    // 3 VUs, one request per ~100 ms, for 2 s.
    assert!((45..=63).contains(&u(&buy["count"])), "{buy:#}");
    assert_eq!(sc["checks"][0]["name"], "home is 200");
    assert_eq!(u(&sc["checks"][0]["passes"]), 200);
    // The run-wide request counts are the steps' sums.
    let steps: u64 = sc["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| u(&n["count"]))
        .sum();
    assert_eq!(u(&r["responses"]), steps);
}

#[test]
fn an_impossible_threshold_exits_99_and_says_which() {
    let (_serve, addr) = start_serve(1);
    let file = write(MIXED);
    let out = run_blaster(
        &[
            "run",
            file.path().to_str().unwrap(),
            "-e",
            &format!("BASE=http://{addr}"),
            "-e",
            "P95=0.001",
            "-t",
            "1",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(99), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("✗ threshold http_req_duration{name:home}  p(95)<0.001"),
        "{text}"
    );
    assert!(text.contains("✓ threshold http_req_failed"), "{text}");
}

#[test]
fn a_bad_file_exits_1_naming_the_line() {
    let file = write("[scenarios.s]\nexecutor = \"constant-vus\"\nvus = 1\nduraton = \"1s\"\n");
    let out = run_blaster(
        &["run", file.path().to_str().unwrap()],
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":4:"), "{err}");
    assert!(err.contains("duration"), "{err}");
}

/// Issue #5: a ramping arrival rate from 0 to 1000/s over 10 s delivers the expected count
/// (5000) within 2%.
#[test]
fn a_ramping_arrival_rate_delivers_the_area_under_its_curve() {
    let (_serve, addr) = start_serve(1);
    let file = write(&format!(
        r#"
[scenarios.ramp]
executor = "ramping-arrival-rate"
start_rate = 0
stages = [{{ duration = "10s", target = 1000 }}]
pre_allocated_vus = 50
max_vus = 200
[[scenarios.ramp.steps]]
request = "GET http://{addr}/"
"#
    ));
    let run = run_json_output(
        &["run", file.path().to_str().unwrap(), "-t", "2"],
        Duration::from_secs(60),
    );
    assert!(run.output.status.success(), "{:?}", run.output);
    let s = &run.report["scenario"]["scenarios"][0];
    let done = u(&s["iterations"]) + u(&s["dropped_iterations"]);
    assert!((4900..=5100).contains(&done), "{s:#}");
    assert!(u(&s["iterations"]) >= 4900, "{s:#}");
    // Rising rate: the second half of the time series carries about 3/4 of the requests.
    let series = run.report["timeseries"].as_array().unwrap();
    let total: u64 = series.iter().map(|p| u(&p["requests"])).sum();
    let late: u64 = series
        .iter()
        .filter(|p| p["t_s"].as_f64().unwrap() > 5.0)
        .map(|p| u(&p["requests"]))
        .sum();
    let share = late as f64 / total as f64;
    assert!((0.70..=0.80).contains(&share), "second-half share {share}");
}

/// `[special.breakpoint]`: the rate steps up until an abort-on-fail threshold fails on one
/// step's samples; the report names the last rate that held and the one that broke.
#[test]
fn a_breakpoint_search_reports_the_last_passing_rate() {
    let (_serve, addr) = start_serve(1);
    // The "limit" is a request rate of 250/s: steps of 100, 200, 300 ... per second.
    let file = write(&format!(
        r#"
[scenarios.load]
executor = "constant-arrival-rate"
rate = 1
duration = "1s"
pre_allocated_vus = 20
max_vus = 50
[[scenarios.load.steps]]
request = "GET http://{addr}/"
name = "probe"

[special.breakpoint]
scenario = "load"
start_rate = "100/s"
step_rate = "100/s"
step_duration = "1500ms"
max_rate = "600/s"

[thresholds]
http_reqs = {{ conditions = ["rate<250"], abort_on_fail = true, delay_abort_eval = "700ms" }}
"#
    ));
    let run = run_json_output(
        &[
            "run",
            file.path().to_str().unwrap(),
            "-t",
            "1",
            "--report-interval",
            "250ms",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.output.status.code(), Some(99), "{:?}", run.output);
    let sc = &run.report["scenario"];
    let bp = &sc["breakpoint"];
    assert_eq!(bp["last_passing_rate"].as_f64(), Some(200.0), "{bp:#}");
    assert_eq!(bp["broke_at_rate"].as_f64(), Some(300.0), "{bp:#}");
    assert!(
        bp["broken_by"]
            .as_str()
            .unwrap()
            .starts_with("http_reqs rate<250"),
        "{bp:#}"
    );
    assert_eq!(run.report["interrupted"], false);
    // Stopped early: well before the 6 steps' 9 s.
    assert!(run.report["duration_s"].as_f64().unwrap() < 6.0);
}

/// WebSocket steps: connect, send, expect the echo (with a capture), close; per-step counts
/// and message latency.
#[test]
fn websocket_steps_connect_send_expect_and_close() {
    let (_serve, addr) = start_serve(1);
    let file = write(&format!(
        r#"
[scenarios.chat]
executor = "per-vu-iterations"
vus = 4
iterations = 2
max_duration = "20s"
[[scenarios.chat.steps]]
ws_connect = "ws://{addr}/ws/echo"
name = "join"
[[scenarios.chat.steps]]
loop = 5
[[scenarios.chat.steps.steps]]
ws_send = '{{"type":"ping","vu":${{gen.vu}},"n":"${{gen.uuid}}"}}'
name = "say"
[[scenarios.chat.steps.steps]]
ws_expect = '"vu":${{gen.vu}}'
name = "echo"
timeout = "2s"
capture = {{ last = "json:$.n" }}
[[scenarios.chat.steps]]
ws_close = 1000

[thresholds]
"ws_msg_latency{{name:echo}}" = ["p(99)<1000"]
ws_session_failed = ["rate==0"]
"ws_msgs_sent{{name:say}}" = ["count==40"]
"#
    ));
    let run = run_json_output(
        &["run", file.path().to_str().unwrap(), "-t", "2"],
        Duration::from_secs(60),
    );
    let r = &run.report;
    assert!(run.output.status.success(), "{:?}\n{r:#}", run.output);
    assert_schema_valid(r);
    let sc = &r["scenario"];
    let name = |n: &str| {
        sc["names"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap_or_else(|| panic!("no name {n}"))
            .clone()
    };
    // 4 VUs x 2 iterations: 8 sessions, 40 messages each way.
    assert_eq!(u(&name("join")["count"]), 8, "{sc:#}");
    assert_eq!(u(&name("say")["msgs_sent"]), 40);
    assert_eq!(u(&name("echo")["count"]), 40, "{sc:#}");
    assert_eq!(u(&name("echo")["failed"]), 0);
    assert_eq!(u(&name("echo")["latency_us"]["count"]), 40);
    let ws = &r["ws"];
    assert_eq!(u(&ws["sessions"]), 8);
    assert_eq!(u(&ws["msgs_received"]), 40, "{ws:#}");
    assert_eq!(u(&ws["session_duration_us"]["count"]), 8, "{ws:#}");
    assert_eq!(u(&ws["close_codes"]["1000"]), 8, "{ws:#}");
    assert_eq!(sc["thresholds_passed"], true);
}
