//! `blaster check`: every example scenario validates through the binary; a bad file fails with
//! exit code 1 and a message naming the file, line and column; `-e` overrides variables.

use std::path::PathBuf;
use std::time::Duration;

use blaster_tests::{TempPath, run_blaster};

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/scenarios"
    ));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/scenarios exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        // The mock target's file (blaster serve --mock), not a scenario.
        .filter(|p| !p.ends_with("mock.toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_scenario_checks_ok() {
    let files = examples();
    assert!(files.len() >= 21, "one example per seed test: {files:?}");
    for f in files {
        let out = run_blaster(&["check", f.to_str().unwrap()], Duration::from_secs(30));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}:\n{}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(": OK:"),
            "{}",
            f.display()
        );
    }
}

#[test]
fn a_bad_file_names_line_column_and_a_suggestion() {
    let bad = TempPath::new(".toml");
    std::fs::write(bad.path(), "[scenarios.a]\nexecutor = \"constant-vu\"\n").unwrap();
    let out = run_blaster(
        &["check", bad.path().to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:2:", bad.path().display())),
        "{err}"
    );
    assert!(err.contains("did you mean \"constant-vus\""), "{err}");
}

#[test]
fn variables_from_the_command_line_override_defaults() {
    let f = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/scenarios/search-load.toml"
    ));
    let out = run_blaster(
        &[
            "check",
            f.to_str().unwrap(),
            "-e",
            "BASE_URL=http://127.0.0.1:9999",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("http://127.0.0.1:9999/api/search"));
    let out = run_blaster(
        &["check", f.to_str().unwrap(), "-e", "NOEQUALS"],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=VALUE"));
}

/// Mistakes that used to surface only when a run started are caught by `blaster check`, with
/// the line, the key and what to do.
#[test]
fn check_catches_ws_handshake_headers_and_too_few_unique_rows() {
    let dir = TempPath::new("-check");
    std::fs::create_dir(dir.path()).unwrap();
    let ws = dir.path().join("ws.toml");
    std::fs::write(
        &ws,
        "[scenarios.a]\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nws_connect = \"ws://127.0.0.1:1/ws\"\nheaders = { Sec-WebSocket-Key = \"abc\" }\n",
    )
    .unwrap();
    let out = run_blaster(&["check", ws.to_str().unwrap()], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:7:33: header \"Sec-WebSocket-Key\" is set by the WebSocket handshake itself; remove it",
            ws.display()
        )),
        "{err}"
    );

    std::fs::write(dir.path().join("users.csv"), "email\na@x\nb@x\n").unwrap();
    let unique = dir.path().join("unique.toml");
    std::fs::write(
        &unique,
        "[data.users]\nfile = \"users.csv\"\nmode = \"unique-per-vu\"\n[scenarios.a]\nexecutor = \"constant-vus\"\nvus = \"${VUS:-3}\"\nduration = \"1s\"\n[[scenarios.a.steps]]\nrequest = \"POST http://127.0.0.1:1/login\"\nbody = \"${data.users.email}\"\n",
    )
    .unwrap();
    let out = run_blaster(
        &["check", unique.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3:8: data source \"users\"", unique.display()))
            && err.contains(
                "has 2 row(s) and mode = \"unique-per-vu\", but scenario \"a\" can run 3 VU(s)"
            )
            && err.contains("let the scenario run at most 2 VU(s)"),
        "{err}"
    );
    // With -e VUS=2 the rows suffice.
    let out = run_blaster(
        &["check", unique.to_str().unwrap(), "-e", "VUS=2"],
        Duration::from_secs(30),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
