//! Every example scenario (`examples/scenarios/*.toml`) as a smoke run against a fresh example
//! mock (`blaster serve --mock examples/scenarios/mock.toml`): it must exit 0 and meet every
//! threshold, each one measured. The smoke values come from the file's own `# smoke:` lines,
//! which examples/scenarios/README.md shows (a test here keeps its table in step). Also: a
//! copy of an example with an impossible threshold exits 99; a bad copy exits 1 naming the
//! line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use blaster_tests::{
    JsonRun, TempPath, blaster_bin, examples_dir, run_blaster, run_json_command, smoke_args,
    start_mock,
};
use serde_json::Value;

/// Longest a smoke run may take (each should take a few seconds; this is the hang guard).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Longest a smoke run's measured duration may be: the `# smoke:` values must make it short.
const SMOKE_MAX_S: f64 = 10.0;

fn example(file: &str) -> PathBuf {
    examples_dir().join(file)
}

fn mock_file() -> PathBuf {
    example("mock.toml")
}

/// The scenario files (everything but the mock), sorted.
fn example_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(examples_dir())
        .expect("examples/scenarios")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".toml") && n != "mock.toml")
        .collect();
    files.sort();
    files
}

/// The `${NAME…}` variables a file uses: kept out of the run's environment, so only the file's
/// defaults and the `-e` values decide the run.
fn variables(src: &str) -> BTreeSet<String> {
    src.split("${")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| name.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
        .collect()
}

/// `blaster run PATH ARGS -e BASE_URL=… -e WS_URL=… -t 1` against `addr`, with the file's
/// variables removed from the environment.
fn run_against(path: &Path, args: &[String], addr: std::net::SocketAddr) -> JsonRun {
    let src = std::fs::read_to_string(path).expect("read the example");
    let mut cmd = Command::new(blaster_bin());
    cmd.arg("run")
        .arg(path)
        .args(args)
        .args(["-e", &format!("BASE_URL=http://{addr}")])
        .args(["-e", &format!("WS_URL=ws://{addr}")])
        .args(["-t", "1"]);
    for name in variables(&src) {
        cmd.env_remove(name);
    }
    run_json_command(cmd, RUN_LIMIT)
}

/// One line per threshold: metric, condition, measured value, verdict.
fn thresholds(report: &Value) -> String {
    report["scenario"]["thresholds"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    format!(
                        "  {} {}  measured {}  {}",
                        t["metric"].as_str().unwrap_or("?"),
                        t["condition"].as_str().unwrap_or("?"),
                        t["observed"],
                        if t["passed"] == true { "ok" } else { "FAILED" }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The smoke run of one example against a fresh mock.
fn smoke_run(file: &str) {
    let path = example(file);
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let args = smoke_args(&src).unwrap_or_else(|e| panic!("{file}: {e}"));
    let (_mock, addr) = start_mock(&mock_file());
    let started = Instant::now();
    let run = run_against(&path, &args, addr);
    let wall = started.elapsed();
    eprintln!(
        "{file}: smoke run in {wall:.2?}: blaster run examples/scenarios/{file} {}",
        args.join(" ")
    );
    let r = &run.report;
    let sc = &r["scenario"];
    assert_eq!(
        run.output.status.code(),
        Some(0),
        "{file} (smoke values {args:?}) did not pass against the mock:\n{}\nstderr:\n{}\nnames:\n{:#}",
        thresholds(r),
        run.stderr(),
        sc["names"]
    );
    assert_eq!(sc["thresholds_passed"], true, "{file}:\n{}", thresholds(r));
    let ts = sc["thresholds"].as_array().expect("scenario.thresholds");
    assert!(!ts.is_empty(), "{file} has no thresholds");
    for t in ts {
        assert!(
            !t["observed"].is_null(),
            "{file}: threshold {} {} was not measured in the smoke run (nothing fed it):\n{}",
            t["metric"],
            t["condition"],
            thresholds(r)
        );
    }
    let duration = r["duration_s"].as_f64().expect("duration_s");
    assert!(
        duration <= SMOKE_MAX_S,
        "{file}: the smoke run took {duration:.1} s; its `# smoke:` values should keep it to a few seconds"
    );
}

macro_rules! smoke_tests {
    ($($test:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                smoke_run($file);
            }
        )*
        /// The files the tests above run.
        const TESTED: &[&str] = &[$($file),*];
    };
}

smoke_tests! {
    api_mix => "api-mix.toml",
    backlog => "backlog.toml",
    breaking_point => "breaking-point.toml",
    connection_storm => "connection-storm.toml",
    event_rsvp_flash_crowd => "event-rsvp-flash-crowd.toml",
    flash_sale => "flash-sale.toml",
    large_payloads => "large-payloads.toml",
    location_flood => "location-flood.toml",
    metrics_ingestion => "metrics-ingestion.toml",
    page_load => "page-load.toml",
    ramp_sustain => "ramp-sustain.toml",
    rate_limit => "rate-limit.toml",
    reference => "reference.toml",
    rtc_load => "rtc-load.toml",
    search_load => "search-load.toml",
    session_lifecycle => "session-lifecycle.toml",
    soak_memory_leak => "soak-memory-leak.toml",
    spike => "spike.toml",
    subscription_tiers => "subscription-tiers.toml",
    subscriptions_50k => "subscriptions-50k.toml",
    thundering_herd => "thundering-herd.toml",
    webhooks_burst => "webhooks-burst.toml",
}

#[test]
fn every_example_has_a_smoke_test() {
    let tested: Vec<String> = TESTED.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        example_files(),
        tested,
        "add the new example to smoke_tests! (and give it a `# smoke:` line)"
    );
}

/// A copy of an example in a temp dir, with `from` replaced by `to` (exactly once).
fn altered_copy(file: &str, from: &str, to: &str) -> (TempPath, String) {
    let src = std::fs::read_to_string(example(file)).expect("read the example");
    assert_eq!(src.matches(from).count(), 1, "{file} has {from:?} once");
    let dir = TempPath::new("-example");
    std::fs::create_dir(dir.path()).expect("temp dir");
    (dir, src.replacen(from, to, 1))
}

#[test]
fn a_copy_with_an_impossible_threshold_exits_99() {
    let (dir, src) = altered_copy(
        "rate-limit.toml",
        r#""http_reqs{name:burst,status:429}" = ["count>0"]"#,
        r#""http_reqs{name:burst,status:429}" = ["count>1000000"]"#,
    );
    let path = dir.path().join("rate-limit.toml");
    // The smoke values: the full run waits out a one-minute window.
    let args = smoke_args(&src).expect("smoke lines");
    let value = |name: &str| -> f64 {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("rate-limit.toml's smoke line sets {name}"))
            .parse()
            .expect("a number")
    };
    let refused = value("BURST") - value("LIMIT");
    std::fs::write(&path, src).expect("write the copy");
    let (_mock, addr) = start_mock(&mock_file());
    let run = run_against(&path, &args, addr);
    let r = &run.report;
    assert_eq!(
        run.output.status.code(),
        Some(99),
        "{:?}\n{}",
        run.output,
        thresholds(r)
    );
    let sc = &r["scenario"];
    assert_eq!(sc["thresholds_passed"], false);
    let failed: Vec<&Value> = sc["thresholds"]
        .as_array()
        .expect("thresholds")
        .iter()
        .filter(|t| t["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{}", thresholds(r));
    assert_eq!(failed[0]["condition"], "count>1000000");
    // The burst past the limit still got its refusals.
    assert_eq!(
        failed[0]["observed"].as_f64(),
        Some(refused),
        "{}",
        thresholds(r)
    );
}

#[test]
fn a_bad_copy_exits_1_naming_the_line() {
    let (dir, src) = altered_copy(
        "rate-limit.toml",
        "max_duration = \"3m\"",
        "max_duraton = \"3m\"",
    );
    let line = 1 + src
        .lines()
        .position(|l| l.starts_with("max_duraton"))
        .expect("the typo");
    let path = dir.path().join("rate-limit.toml");
    std::fs::write(&path, src).expect("write the copy");
    for command in ["run", "check"] {
        let out = run_blaster(&[command, path.to_str().unwrap()], Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(1), "blaster {command}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "rate-limit.toml:{line}:1: unknown key \"max_duraton\""
            )),
            "blaster {command} names line {line}:\n{err}"
        );
        assert!(
            err.contains("did you mean \"max_duration\"?"),
            "blaster {command}:\n{err}"
        );
    }
}

const TABLE_BEGIN: &str = "<!-- smoke table: generated by tests/tests/examples.rs -->\n";
const TABLE_END: &str = "<!-- end of smoke table -->\n";

/// The README's table of how to run each example, from the files' `# smoke:` lines.
fn smoke_table() -> String {
    let mut out = String::from(
        "| File | Full size, against your service | Smoke run, against the mock |\n| --- | --- | --- |\n",
    );
    for file in example_files() {
        let src = std::fs::read_to_string(example(&file)).expect("read the example");
        let args = smoke_args(&src).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut target = Vec::new();
        if src.contains("${BASE_URL") {
            target.push("-e BASE_URL=http://HOST:PORT");
        }
        if src.contains("${WS_URL") {
            target.push("-e WS_URL=ws://HOST:PORT");
        }
        let run = format!("blaster run examples/scenarios/{file}");
        let smoke = if args.is_empty() {
            run.clone()
        } else {
            format!("{run} {}", args.join(" "))
        };
        out.push_str(&format!(
            "| [{file}]({file}) | `{run} {}` | `{smoke}` |\n",
            target.join(" ")
        ));
    }
    out
}

/// The README's table is generated from the `# smoke:` lines; `BLASTER_BLESS=1` rewrites it.
#[test]
fn the_readme_table_shows_each_smoke_run() {
    let readme_path = examples_dir().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("examples/scenarios/README.md");
    let (before, rest) = readme
        .split_once(TABLE_BEGIN)
        .expect("README.md has the smoke table's begin marker");
    let (current, after) = rest
        .split_once(TABLE_END)
        .expect("README.md has the smoke table's end marker");
    let wanted = smoke_table();
    if current == wanted {
        return;
    }
    if std::env::var_os("BLASTER_BLESS").is_some() {
        std::fs::write(
            &readme_path,
            format!("{before}{TABLE_BEGIN}{wanted}{TABLE_END}{after}"),
        )
        .expect("write README.md");
        return;
    }
    panic!(
        "examples/scenarios/README.md's smoke table is out of date; regenerate it with\n  \
         BLASTER_BLESS=1 cargo test -p blaster-tests --test examples the_readme_table\n\
         wanted:\n{wanted}"
    );
}
