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
