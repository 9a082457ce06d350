//! `blaster doctor`: the exit code follows the checks (2 when one is LIMIT, else 0), and a
//! target far beyond one port range is reported as limited.

use std::time::Duration;

use blaster_tests::run_blaster;
use serde_json::Value;

fn doctor_json(connections: &str) -> (i32, Value) {
    let out = run_blaster(
        &["doctor", "-c", connections, "--json"],
        Duration::from_secs(30),
    );
    let code = out.status.code().expect("exited");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (code, v)
}

#[test]
fn exit_code_follows_the_checks() {
    for target in ["1k", "100k", "10M"] {
        let (code, v) = doctor_json(target);
        let checks = v["checks"].as_array().expect("checks");
        assert!(checks.len() >= 10, "{v:#}");
        let limited = checks.iter().any(|c| c["status"] == "limit");
        assert_eq!(code, if limited { 2 } else { 0 }, "target {target}: {v:#}");
        assert_eq!(v["exit_code"], code, "{v:#}");
        for c in checks {
            assert!(!c["value"].as_str().unwrap_or("").is_empty(), "{c:#}");
            if c["status"] == "limit" {
                assert!(
                    c["advice"].is_string(),
                    "a LIMIT check says how to raise it: {c:#}"
                );
            }
        }
    }
}

#[test]
fn ten_million_connections_exceed_one_port_range() {
    // 28,232 ports at most per (source, target) pair with the widest default range: no Linux
    // host reaches 10M connections to one address without more sources.
    let (code, v) = doctor_json("10M");
    assert_eq!(code, 2, "{v:#}");
    let ports = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "net.ipv4.ip_local_port_range")
        .expect("port range check");
    assert_eq!(ports["status"], "limit", "{ports:#}");
}
