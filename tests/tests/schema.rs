//! Real runs' JSON reports validate against the checked-in schema (blaster/report-schema.json):
//! closed, open and hold models, with errors, and an interrupted run.

use blaster_tests::{assert_schema_valid, free_port, run_json, run_json_output, start_serve};

#[test]
fn real_reports_match_the_schema() {
    let (_serve, addr) = start_serve(1);
    let base = format!("http://{addr}");
    let closed = run_json(&[
        "run",
        &format!("{base}/"),
        "-c",
        "4",
        "-t",
        "1",
        "-d",
        "1500ms",
        "--report-interval",
        "500ms",
    ]);
    assert_eq!(closed["model"], "closed");
    assert!(!closed["timeseries"].as_array().unwrap().is_empty());
    assert_schema_valid(&closed);

    let open = run_json(&[
        "run",
        &format!("{base}/status/503"),
        "--rate",
        "500",
        "-c",
        "4",
        "-t",
        "1",
        "-d",
        "1s",
    ]);
    assert_eq!(open["model"], "open");
    assert!(open["target_rate"].is_number());
    assert_schema_valid(&open);

    let hold = run_json(&[
        "run",
        &format!("{base}/"),
        "--mode",
        "hold",
        "--keepalive-every",
        "200ms",
        "-c",
        "8",
        "-t",
        "1",
        "-d",
        "1s",
    ]);
    assert_eq!(hold["model"], "hold");
    assert_schema_valid(&hold);

    // Timeouts and a second target that refuses: errors of two kinds in the report.
    let refused = format!("http://127.0.0.1:{}/", free_port());
    let errors = run_json_output(
        &[
            "run",
            &format!("{base}/delay/500"),
            &refused,
            "--timeout",
            "100ms",
            "-c",
            "4",
            "-t",
            "1",
            "-d",
            "1s",
        ],
        std::time::Duration::from_secs(30),
    )
    .report;
    assert!(
        errors["errors"]["total"].as_u64().unwrap() > 0,
        "{errors:#}"
    );
    assert_schema_valid(&errors);
}
