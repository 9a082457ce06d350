//! Checks that the JSON report, `report-schema.json` and docs/report-schema.md agree: reports
//! built from synthetic runs validate, broken ones do not, and every field is in the schema and
//! the docs.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use blaster::config::{LoadModel, RequestSpec, RunConfig, StopCondition, Target};
use blaster::engine::RunOutcome;
use blaster::metrics::interval::{Counters, IntervalPoint};
use blaster::metrics::{ErrorKind, WorkerMetrics};
use blaster::report::{self, Report, TimePoint};
use serde_json::Value;

fn manifest_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn schema() -> Value {
    let text = std::fs::read_to_string(manifest_path("report-schema.json"))
        .expect("blaster/report-schema.json is readable");
    serde_json::from_str(&text).expect("report-schema.json is JSON")
}

fn docs() -> String {
    std::fs::read_to_string(manifest_path("../docs/report-schema.md"))
        .expect("docs/report-schema.md is readable")
}

fn validator() -> jsonschema::Validator {
    jsonschema::draft202012::new(&schema()).expect("report-schema.json compiles")
}

fn config(model: LoadModel) -> RunConfig {
    RunConfig {
        targets: vec![Target {
            url: "http://127.0.0.1:8080/".to_owned(),
            addr: "127.0.0.1:8080".parse().unwrap(),
            host_header: "127.0.0.1:8080".to_owned(),
            path: "/".to_owned(),
        }],
        sources: Vec::new(),
        threads: 2,
        connections: 64,
        model,
        stop: StopCondition {
            duration: Some(Duration::from_secs(5)),
            requests: None,
        },
        connect_rate: None,
        max_connecting: None,
        churn: None,
        pipeline: 1,
        timeout: Duration::from_secs(2),
        request: RequestSpec {
            method: "GET".to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        },
        late_after: Duration::from_millis(5),
        report_interval: Duration::from_secs(1),
        command_line: vec!["blaster".to_owned(), "http://127.0.0.1:8080/".to_owned()],
    }
}

fn outcome() -> RunOutcome {
    let mut m = WorkerMetrics::new();
    for i in 0..5_000u64 {
        m.record_response(if i % 100 == 0 { 500 } else { 200 }, 50 + i % 2_000);
    }
    m.requests = 5_010;
    m.record_error(ErrorKind::Timeout);
    m.record_error(ErrorKind::ConnectRefused);
    m.connect_latency.record(120).unwrap();
    m.loop_lag.record(30).unwrap();
    m.conns_opened = 64;
    m.open_at_end = 64;
    m.bytes_sent = 400_000;
    m.bytes_received = 1_200_000;
    m.in_flight_at_end = 8;
    // One interval holding everything, with an error kind, so the time-point schema is checked.
    let mut counters = Counters::of(&m);
    counters.late = 2;
    let point = IntervalPoint {
        index: 0,
        start_ns: 0,
        end_ns: 1_000_000_000,
        counters,
        open_connections: 64,
        latency: m.take_interval(),
        ..IntervalPoint::empty(0, 0, 0)
    };
    RunOutcome {
        metrics: m,
        duration: Duration::from_secs(5),
        cpu_user: Duration::from_millis(1_500),
        cpu_system: Duration::from_millis(700),
        threads: 2,
        interrupted: false,
        timeseries: vec![TimePoint::from_interval(&point)],
        memory: Default::default(),
    }
}

fn to_value(r: &Report) -> Value {
    serde_json::from_str(&report::json::to_json(r)).unwrap()
}

fn assert_valid(v: &Value) {
    let errors: Vec<String> = validator().iter_errors(v).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "report does not match the schema: {errors:#?}"
    );
}

fn closed_report() -> Value {
    to_value(&Report::from_run(&config(LoadModel::Closed), &outcome()))
}

#[test]
fn schema_is_valid_draft_2020_12() {
    let schema = schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    jsonschema::meta::validate(&schema).expect("schema is valid against its meta-schema");
}

#[test]
fn closed_model_report_validates() {
    assert_valid(&closed_report());
}

#[test]
fn open_model_generator_bound_interrupted_report_validates() {
    let mut o = outcome();
    o.cpu_user = Duration::from_secs(10);
    o.metrics.late = 40;
    o.metrics.late_by_generator = 200;
    o.metrics.dropped = 3;
    o.interrupted = true;
    let r = Report::from_run(&config(LoadModel::Open { rate: 1_000.0 }), &o);
    assert!(r.generator_bound && r.interrupted);
    assert_valid(&to_value(&r));
}

#[test]
fn empty_run_report_validates() {
    let o = RunOutcome {
        metrics: WorkerMetrics::new(),
        duration: Duration::ZERO,
        cpu_user: Duration::ZERO,
        cpu_system: Duration::ZERO,
        threads: 1,
        interrupted: true,
        timeseries: Vec::new(),
        memory: Default::default(),
    };
    assert_valid(&to_value(&Report::from_run(&config(LoadModel::Closed), &o)));
}

/// A named way to break a valid report.
type Mutation = (&'static str, fn(&mut Value));

fn remove(v: &mut Value, key: &str) {
    v.as_object_mut().unwrap().remove(key);
}

#[test]
fn broken_reports_fail_validation() {
    let v = validator();
    let mutations: Vec<Mutation> = vec![
        ("missing rps", |r| remove(r, "rps")),
        ("rps as a string", |r| r["rps"] = "fast".into()),
        ("missing latency_us.p999", |r| {
            remove(&mut r["latency_us"], "p999")
        }),
        ("negative requests", |r| r["requests"] = (-1).into()),
        ("unknown model", |r| r["model"] = "burst".into()),
        ("closed model with a target rate", |r| {
            r["target_rate"] = 100.0.into()
        }),
        ("generator-bound without a reason", |r| {
            r["generator_bound"] = true.into()
        }),
        ("reasons but not generator-bound", |r| {
            r["generator"]["reasons"] = vec!["x"].into()
        }),
        ("status code key not a number", |r| {
            r["status_codes"]["ok"] = 1.into()
        }),
        ("error count zero", |r| r["errors"]["reset"] = 0.into()),
        ("missing errors.total", |r| {
            remove(&mut r["errors"], "total")
        }),
        ("unknown top-level field", |r| r["surprise"] = 1.into()),
        ("histogram not base64", |r| {
            r["latency_histogram"] = "not base64!".into()
        }),
    ];
    for (name, mutate) in mutations {
        let mut r = closed_report();
        assert!(v.is_valid(&r), "unmutated report must be valid");
        mutate(&mut r);
        assert!(!v.is_valid(&r), "{name}: should fail validation");
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The schema lists exactly the fields the report has, all required, at every fixed level.
#[test]
fn schema_fields_match_the_report() {
    let schema = schema();
    let report = closed_report();
    let props = &schema["properties"];
    // Objects present only in scenario and WebSocket runs (tests/tests/scenario_run.rs and
    // ws.rs validate those runs against the schema), and with --probe (report::kernel's
    // tests and tests/tests/probe_run.rs).
    let optional: BTreeSet<String> = ["scenario", "ws", "kernel"].map(String::from).into();
    assert_eq!(
        keys(props)
            .difference(&optional)
            .cloned()
            .collect::<BTreeSet<_>>(),
        keys(&report)
    );
    assert_eq!(strings(&schema["required"]), keys(&report));
    let summary = &schema["$defs"]["latency_summary"];
    assert_eq!(keys(&summary["properties"]), keys(&report["latency_us"]));
    assert_eq!(strings(&summary["required"]), keys(&report["latency_us"]));
    for field in ["connections", "bytes", "generator"] {
        assert_eq!(
            keys(&props[field]["properties"]),
            keys(&report[field]),
            "{field}"
        );
        assert_eq!(
            strings(&props[field]["required"]),
            keys(&report[field]),
            "{field}"
        );
    }
}

#[test]
fn every_error_kind_is_in_the_schema_and_the_docs() {
    let schema = schema();
    let docs = docs();
    let error_props = &schema["properties"]["errors"]["properties"];
    for kind in ErrorKind::ALL {
        let name = kind.as_str();
        assert!(
            error_props.get(name).is_some(),
            "errors.{name} missing from the schema"
        );
        assert!(
            docs.contains(&format!("`{name}`")),
            "errors.{name} missing from the docs"
        );
    }
}

#[test]
fn every_field_is_documented() {
    let docs = docs();
    let report = closed_report();
    for (field, value) in report.as_object().unwrap() {
        assert!(
            docs.contains(&format!("`{field}`")),
            "`{field}` missing from docs/report-schema.md"
        );
        // Maps with open keys, and a summary documented once under `latency_us`.
        if ["status_codes", "errors", "connect_latency_us"].contains(&field.as_str()) {
            continue;
        }
        if let Some(inner) = value.as_object() {
            for sub in inner.keys() {
                assert!(
                    docs.contains(&format!("`{field}.{sub}`")),
                    "`{field}.{sub}` missing from docs/report-schema.md"
                );
            }
        }
    }
}

#[test]
fn generator_thresholds_are_documented() {
    let docs = docs();
    let cpu = format!("{:.0}%", report::CPU_SATURATED_UTILIZATION * 100.0);
    let late = format!("{:.0}%", report::LATE_BY_GENERATOR_MAX_FRACTION * 100.0);
    let lag = format!("{} ms", report::LOOP_LAG_P99_MAX_US / 1_000);
    for needle in [cpu, late, lag] {
        assert!(
            docs.contains(&needle),
            "threshold {needle} missing from docs/report-schema.md"
        );
    }
}
