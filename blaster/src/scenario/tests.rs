//! Scenario format tests: every example file parses, every construct, every error message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::model::*;
use super::{ScenarioError, Summary, parse_str};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scenarios")
}

/// The `-e NAME=VALUE` pairs of a file's `# smoke:` lines (the smoke run against the mock,
/// see examples/scenarios/README.md; the end-to-end test `examples` runs them); `None`
/// without such a line.
fn smoke_vars(src: &str) -> Option<BTreeMap<String, String>> {
    let lines: Vec<&str> = src
        .lines()
        .filter_map(|l| l.strip_prefix("# smoke:"))
        .collect();
    if lines.is_empty() {
        return None;
    }
    let mut vars = BTreeMap::new();
    let words: Vec<&str> = lines
        .iter()
        .filter(|l| !l.trim_start().starts_with('('))
        .flat_map(|l| l.split_whitespace())
        .collect();
    for pair in words.chunks(2) {
        let [flag, kv] = pair else {
            panic!("smoke line ends with {pair:?}")
        };
        assert_eq!(
            *flag, "-e",
            "smoke lines hold -e NAME=VALUE pairs, not {flag:?}"
        );
        let (k, v) = kv.split_once('=').expect("-e NAME=VALUE");
        vars.insert(k.to_owned(), v.to_owned());
    }
    Some(vars)
}

/// Every example parses as it is (full size) and with its smoke values.
#[test]
fn every_example_parses() {
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(examples_dir())
        .expect("examples/scenarios exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        // The mock target's file (blaster serve --mock), not a scenario.
        .filter(|p| !p.ends_with("mock.toml"))
        .collect();
    entries.sort();
    for path in entries {
        let src = std::fs::read_to_string(&path).unwrap();
        let file =
            parse_str(&src, &path, &BTreeMap::new(), false).unwrap_or_else(|e| panic!("{e}"));
        let smoke =
            smoke_vars(&src).unwrap_or_else(|| panic!("{}: no \"# smoke:\" line", path.display()));
        parse_str(&src, &path, &smoke, false)
            .unwrap_or_else(|e| panic!("with the smoke values {smoke:?}: {e}"));
        let summary = Summary {
            path: path.display().to_string(),
            file,
        };
        println!("{summary}");
        n += 1;
    }
    assert!(n >= 21, "only {n} example files");
}

/// Every TOML example in docs/k6-migration.md is a whole file that loads (data files resolve
/// against examples/scenarios, which has a `data/users.csv`).
#[test]
fn k6_migration_examples_parse() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/k6-migration.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/k6-migration.md exists");
    let mut n = 0;
    for (i, block) in doc.split("```toml\n").skip(1).enumerate() {
        let (src, _) = block.split_once("```").expect("a closed code block");
        let path = examples_dir().join(format!("k6-migration-example-{}.toml", i + 1));
        parse_str(src, &path, &BTreeMap::new(), false)
            .unwrap_or_else(|e| panic!("example {} of docs/k6-migration.md: {e}\n{src}", i + 1));
        n += 1;
    }
    assert!(n >= 10, "only {n} examples in docs/k6-migration.md");
}

/// Parses `src` as `plan.toml` (base dir: examples/scenarios, no process environment).
fn parse_with(src: &str, vars: &[(&str, &str)]) -> Result<ScenarioFile, ScenarioError> {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse_str(src, &examples_dir().join("plan.toml"), &vars, false).map_err(|mut e| {
        e.path = "plan.toml".into();
        e
    })
}

fn parse(src: &str) -> ScenarioFile {
    parse_with(src, &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn err(src: &str) -> String {
    match parse_with(src, &[]) {
        Ok(_) => panic!("parsed, expected an error:\n{src}"),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = "[scenarios.a]\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\n";

/// A one-scenario file with `step` (TOML lines) as its only step; the step starts on line 6.
fn with_step(step: &str) -> String {
    format!("{HEAD}[[scenarios.a.steps]]\n{step}\n")
}

fn http_url() -> String {
    with_step("request = \"GET http://h/\"")
}

#[test]
fn unknown_key_with_did_you_mean() {
    assert_eq!(
        err("[scenarios.a]\nexecutor = \"constant-vus\"\nvus = 1\nduraton = \"1s\"\n"),
        "plan.toml:4:1: unknown key \"duraton\"; did you mean \"duration\"?"
    );
    assert_eq!(
        err(&with_step("requst = \"GET http://h/\"")),
        "plan.toml:6:1: unknown key \"requst\"; did you mean \"request\"?"
    );
    assert_eq!(
        err("[optons]\ntimeout = \"1s\"\n"),
        "plan.toml:1:2: unknown key \"optons\"; did you mean \"options\"?"
    );
    // Far from every key: the list of keys instead.
    let e = err("[scenarios.a]\nexecutor = \"constant-vus\"\nzzzzzzzz = 1\n");
    assert!(
        e.starts_with(
            "plan.toml:3:1: unknown key \"zzzzzzzz\"; expected one of: executor, start_time"
        ),
        "{e}"
    );
}

#[test]
fn bad_duration_points_at_the_value() {
    assert_eq!(
        err("[scenarios.a]\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"10x\"\n"),
        "plan.toml:4:12: invalid duration \"10x\": unknown unit \"x\"; expected a number with a unit, like 250us, 10ms, 30s, 2m, 1h30m"
    );
    assert_eq!(
        err(&with_step("sleep = \"uniform(1s, 5q)\"")),
        "plan.toml:6:9: invalid duration \"5q\": unknown unit \"q\"; expected a number with a unit, like 250us, 10ms, 30s, 2m, 1h30m; sleep: expected a duration (\"1s\"), uniform(1s, 5s), normal(MEAN, STDDEV) or exponential(MEAN)"
    );
}

#[test]
fn unknown_executor_with_did_you_mean() {
    assert_eq!(
        err("[scenarios.a]\nexecutor = \"ramping-arival-rate\"\n"),
        "plan.toml:2:12: unknown executor \"ramping-arival-rate\"; did you mean \"ramping-arrival-rate\"?"
    );
    assert_eq!(
        err("[scenarios.a]\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\nrate = 5\n"),
        "plan.toml:5:8: key \"rate\" does not apply to executor constant-vus; it takes vus, duration"
    );
    assert_eq!(
        err("[scenarios.a]\nexecutor = \"constant-arrival-rate\"\nrate = 5\nduration = \"1s\"\n"),
        "plan.toml:2:12: executor constant-arrival-rate in scenario \"a\" needs \"pre_allocated_vus\""
    );
    assert_eq!(
        err("[scenarios.a]\nvus = 1\n"),
        "plan.toml:1:1: missing key \"executor\""
    );
}

#[test]
fn threshold_syntax_errors() {
    let t = |line: &str| err(&format!("{}[thresholds]\n{line}\n", http_url()));
    assert_eq!(
        t("http_req_duration = [\"p(95)<abc\"]"),
        "plan.toml:8:29: threshold \"p(95)<abc\": \"abc\" is not a number (times are in milliseconds); expected AGGREGATION OP NUMBER, like p(95)<1200, avg<200, rate<0.01, count>100"
    );
    assert_eq!(
        t("http_req_duraton = [\"p(95)<1\"]"),
        "plan.toml:8:1: unknown metric \"http_req_duraton\"; did you mean \"http_req_duration\"?"
    );
    assert_eq!(
        t("\"http_req_duraton{name:x}\" = [\"p(95)<1\"]"),
        "plan.toml:8:2: unknown metric \"http_req_duraton\"; did you mean \"http_req_duration\"?"
    );
    assert_eq!(
        t("\"http_req_duration{name}\" = [\"p(95)<1\"]"),
        "plan.toml:8:20: tag filter \"name\" must be KEY:VALUE, like name:search"
    );
    assert_eq!(
        t("http_req_duration = [\"p(95)<1\", \"avgg<1\"]"),
        "plan.toml:8:34: unknown aggregation \"avgg\" (expected AGGREGATION OP NUMBER, like p(95)<1200, avg<200, rate<0.01, count>100); did you mean \"avg\"?"
    );
    assert_eq!(
        t("http_req_duration = [\"rate<1\"]"),
        "plan.toml:8:23: aggregation \"rate\" does not apply to http_req_duration (a trend metric); use avg, min, max, med, p(N) or count"
    );
    assert_eq!(
        t("http_req_duration = [\"p(101)<1\"]"),
        "plan.toml:8:23: percentile \"p(101)\" must be a number in (0, 100], like p(95) or p(99.9)"
    );
    assert_eq!(
        t("http_req_failed = [\"rate 0.1\"]"),
        "plan.toml:8:21: threshold \"rate 0.1\" has no comparison; expected AGGREGATION OP NUMBER, like p(95)<1200, avg<200, rate<0.01, count>100"
    );
    assert_eq!(
        t("http_req_duration = { conditions = [\"p(95)<1\"], abort_on_fial = true }"),
        "plan.toml:8:49: unknown key \"abort_on_fial\"; did you mean \"abort_on_fail\"?"
    );
}

#[test]
fn undefined_variable_is_named() {
    assert_eq!(
        err(&with_step("request = \"GET ${BASE}/x\"")),
        "plan.toml:6:16: undefined variable \"BASE\"; set it with -e BASE=VALUE or in the environment, or give a default: ${BASE:-VALUE}"
    );
    assert_eq!(
        err("[scenarios.a]\nexecutor = \"constant-vus\"\nvus = \"${VUS}\"\nduration = \"1s\"\n"),
        "plan.toml:3:8: undefined variable \"VUS\"; set it with -e VUS=VALUE or in the environment, or give a default: ${VUS:-VALUE}"
    );
    // Defined by -e: fine.
    let f = parse_with(
        &with_step("request = \"GET ${BASE}/x\""),
        &[("BASE", "http://h")],
    )
    .unwrap();
    let StepKind::Http(h) = &f.scenarios[0].flows[0].steps[0].kind else {
        panic!()
    };
    assert_eq!(h.url.as_literal(), Some("http://h/x"));
}

#[test]
fn reference_errors_suggest() {
    let data = "[data.users]\nfile = \"data/users.csv\"\n";
    assert_eq!(
        err(&format!(
            "{data}{}",
            with_step("request = \"GET http://h/${data.users.emial}\"")
        )),
        "plan.toml:8:27: data source \"users\" has no field \"emial\" (fields: email, password, tier); did you mean \"email\"?"
    );
    assert_eq!(
        err(&format!(
            "{data}{}",
            with_step("request = \"GET http://h/${data.user.email}\"")
        )),
        "plan.toml:8:27: unknown data source \"user\"; did you mean \"users\"?"
    );
    assert_eq!(
        err(&with_step(
            "request = \"GET http://h/${vars.tokn}\"\ncapture = { token = \"json:$.token\" }"
        )),
        "plan.toml:6:27: no capture sets \"vars.tokn\"; did you mean \"token\"?"
    );
    assert_eq!(
        err(&with_step("request = \"GET http://h/${gen.uuidd}\"")),
        "plan.toml:6:27: unknown generator \"gen.uuidd\" (known: counter, vu, iteration, uuid, int, float, string, first_name, last_name, name, email, timestamp, timestamp_ms, iso8601); did you mean \"uuid\"?"
    );
    assert_eq!(
        err(&with_step("request = \"GET http://h/${dta.x.y}\"")),
        "plan.toml:6:27: unknown reference \"${dta.x.y}\" (expected ${NAME}, ${NAME:-default}, ${data.SOURCE.FIELD}, ${vars.NAME} or ${gen.NAME}); did you mean \"data\"?"
    );
    assert_eq!(
        err(&with_step("request = \"GET http://h/${gen.int(5,1)}\"")),
        "plan.toml:6:27: \"gen.int(5,1)\": MIN is greater than MAX"
    );
}

#[test]
fn step_errors() {
    assert_eq!(
        err(&with_step("request = \"GET http://h/\"\nsleep = \"1s\"")),
        "plan.toml:7:9: a step has one kind; this one has both request and sleep"
    );
    assert_eq!(
        err(&with_step("sleep = \"1s\"\nbody = \"x\"")),
        "plan.toml:7:8: key \"body\" does not apply to a sleep step; it takes probability"
    );
    assert_eq!(
        err(&with_step("request = \"GIT http://h/\"")),
        "plan.toml:6:11: request must be \"METHOD URL\" with METHOD one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, like \"GET ${BASE_URL}/api/search\"; did you mean \"GET\"?"
    );
    assert_eq!(
        err(&with_step("request = \"GET /relative\"")),
        "plan.toml:6:11: the URL \"/relative\" must start with http:// or https://, like \"GET ${BASE_URL:-http://127.0.0.1:8080}/path\""
    );
    assert_eq!(
        err(&with_step("sleep = \"gaussian(1s, 2s)\"")),
        "plan.toml:6:9: unknown distribution \"gaussian\" (expected a duration (\"1s\"), uniform(1s, 5s), normal(MEAN, STDDEV) or exponential(MEAN))"
    );
    assert_eq!(
        err(&with_step("request = \"GET http://h/\"\nprobability = 1.5")),
        "plan.toml:7:15: probability must be in (0, 1]"
    );
    assert_eq!(
        err(&with_step(
            "request = \"GET http://h/\"\ncapture = { id = \"jsn:$.id\" }"
        )),
        "plan.toml:7:18: capture \"id\" must be \"json:PATH\", \"header:NAME\" or \"regex:PATTERN\"; did you mean \"json\"?"
    );
    assert_eq!(
        err(&with_step(
            "request = \"GET http://h/\"\ncapture = { id = 'regex:id=(\\d+' }"
        )),
        "plan.toml:7:18: capture \"id\": invalid regex \"id=(\\\\d+\": unclosed group (regex crate syntax, no look-around)"
    );
    assert_eq!(
        err(&with_step("loop = \"forever\"")),
        "plan.toml:6:8: loop must be a count (like 10) or a duration (like \"30s\"), not \"forever\""
    );
    assert_eq!(
        err(&with_step("group = \"g\"")),
        "plan.toml:6:9: a group needs steps: [[...steps.steps]]"
    );
    assert_eq!(
        err(&with_step("ws_connect = \"http://h/\"")),
        "plan.toml:6:14: ws_connect URL must start with ws:// or wss://"
    );
    assert_eq!(
        err(&with_step(
            "request = \"GET http://h/\"\nchecks = [{ name = \"x\" }]"
        )),
        "plan.toml:7:11: a check needs status, body_contains, json + equals, header + equals, latency_below or retry_after_honoured"
    );
}

#[test]
fn scenario_level_errors() {
    assert_eq!(
        err("[options]\ntimeout = \"1s\"\n"),
        "plan.toml:3:1: no scenarios; add one, like [scenarios.main] with executor = \"constant-vus\""
    );
    assert_eq!(
        err(&format!(
            "{HEAD}[[scenarios.a.flows]]\nweight = 0\n[[scenarios.a.flows.steps]]\nsleep = \"1s\"\n"
        )),
        "plan.toml:6:10: weight must be a number greater than zero"
    );
    assert_eq!(
        err(&format!(
            "{}[special.spike]\nscenario = \"b\"\nrecovery = \"1m\"\n",
            http_url()
        )),
        "plan.toml:8:12: unknown scenario \"b\"; did you mean \"a\"?"
    );
    assert_eq!(
        err(
            "[scenarios.a]\nexecutor = \"constant-arrival-rate\"\nrate = 5\nduration = \"1s\"\npre_allocated_vus = 10\nmax_vus = 5\n"
        ),
        "plan.toml:6:11: max_vus (5) is less than pre_allocated_vus (10)"
    );
    assert_eq!(
        err(&format!(
            "[data.q]\nfile = \"data/queries.csv\"\nmode = \"randm\"\n{}",
            http_url()
        )),
        "plan.toml:3:8: unknown mode \"randm\" (expected sequential, random or unique-per-vu); did you mean \"random\"?"
    );
    let e = err(&format!(
        "[data.q]\nfile = \"data/missing.csv\"\n{}",
        http_url()
    ));
    assert!(
        e.starts_with("plan.toml:2:8: cannot read data file "),
        "{e}"
    );
    assert_eq!(
        err("[scenarios.a\n"),
        "plan.toml:1:13: unclosed table, expected `]`"
    );
}

#[test]
fn unreadable_file_has_no_position() {
    let e = super::load(Path::new("/nonexistent/plan.toml"), &BTreeMap::new()).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/plan.toml: cannot read: "),
        "{e}"
    );
}

/// The complete example of the format, every construct once.
const FULL: &str = include_str!("../../../examples/scenarios/reference.toml");

#[test]
fn full_file_every_construct() {
    let f = parse_with(FULL, &[("MAX_VUS", "80")]).unwrap_or_else(|e| panic!("{e}"));
    // Options and variables.
    assert_eq!(f.options.timeout, Duration::from_secs(5));
    assert_eq!(f.options.threads, Some(2));
    assert_eq!(f.options.headers[0].1.as_literal(), Some("blaster/dev"));
    assert_eq!(f.options.tags["env"], "local");
    assert_eq!(f.variables["BASE_URL"], "http://127.0.0.1:8080");
    // Data.
    assert_eq!(f.data["users"].mode, PickMode::UniquePerVu);
    assert_eq!(f.data["users"].fields(), ["email", "password", "tier"]);
    assert_eq!(f.data["events"].fields(), ["amount", "type"]);
    let DataKind::Table { rows, .. } = &f.data["events"].kind else {
        panic!()
    };
    assert_eq!(rows[0], ["4900", "checkout.session.completed"]);
    assert_eq!(
        f.data["pos"].kind,
        DataKind::GeoWalk(GeoWalk {
            lat: 52.52,
            lon: 13.405,
            radius_m: 1000.0,
            step_m: 10.0
        })
    );
    // Scenarios in file order, each executor.
    let names: Vec<&str> = f.scenarios.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["shop", "live", "once", "each", "steady", "ramp"]);
    let shop = &f.scenarios[0];
    assert_eq!(
        shop.executor,
        Executor::RampingArrivalRate {
            start_rate: 0.0,
            stages: vec![
                Stage {
                    duration: Duration::from_secs(10),
                    target: 1000.0
                },
                Stage {
                    duration: Duration::from_secs(60),
                    target: 1000.0
                },
            ],
            pre_allocated_vus: 10,
            max_vus: 80,
        }
    );
    assert_eq!(
        super::describe_executor(&shop.executor),
        "ramping-arrival-rate 0->1000/s over 10s, then 1000/s for 1m (10-80 VUs)"
    );
    assert_eq!(shop.graceful_stop, Duration::from_secs(5));
    assert_eq!(shop.tags["tier"], "pro");
    assert_eq!(shop.flows.len(), 2);
    assert_eq!((shop.flows[0].weight, shop.flows[1].weight), (60.0, 40.0));
    assert_eq!(shop.total_weight(), 100.0);
    // The login request: name, headers, body, captures, checks.
    let StepKind::Http(login) = &shop.flows[0].steps[0].kind else {
        panic!()
    };
    assert_eq!(login.name, "login");
    assert_eq!(login.method, "POST");
    assert_eq!(
        login.url.as_literal(),
        Some("http://127.0.0.1:8080/api/login")
    );
    let body = login.body.as_ref().unwrap();
    assert!(body.segments.contains(&Segment::Data {
        source: "users".into(),
        field: "email".into()
    }));
    assert_eq!(login.captures.len(), 3);
    assert_eq!(
        login.captures[2],
        Capture {
            var: "token".into(),
            source: CaptureSource::Json(JsonPath {
                text: "$.auth.token".into(),
                segments: vec![
                    PathSegment::Key("auth".into()),
                    PathSegment::Key("token".into())
                ],
            })
        }
    );
    assert_eq!(
        login.captures[0].source,
        CaptureSource::Regex(r#""order":"(\w+)""#.into())
    );
    assert_eq!(
        login.captures[1].source,
        CaptureSource::Header("Set-Cookie".into())
    );
    assert_eq!(login.checks.len(), 3);
    assert_eq!(
        login.checks[0].conditions[0],
        CheckCondition::StatusIn(vec![200])
    );
    let CheckCondition::JsonEquals { value, .. } = &login.checks[0].conditions[1] else {
        panic!()
    };
    assert_eq!(value.as_literal(), Some("true"));
    assert_eq!(
        login.checks[1].conditions,
        [CheckCondition::LatencyBelow(Duration::from_millis(200))]
    );
    assert!(
        matches!(&login.checks[2].conditions[1], CheckCondition::HeaderEquals { name, .. } if name == "Content-Type")
    );
    assert!(login.is_expected(200) && login.is_expected(302) && !login.is_expected(409));
    // Group with expected statuses, generators, per-step probability.
    let StepKind::Group { name, steps } = &shop.flows[0].steps[1].kind else {
        panic!()
    };
    assert_eq!(name, "checkout");
    let StepKind::Http(order) = &steps[0].kind else {
        panic!()
    };
    assert_eq!(order.expect, [201, 409]);
    assert!(order.is_expected(409) && !order.is_expected(200));
    assert_eq!(order.timeout, Some(Duration::from_secs(2)));
    assert_eq!(
        order.name,
        "POST http://127.0.0.1:8080/api/orders/${gen.uuid}"
    );
    let gens: Vec<&Generator> = order
        .body
        .as_ref()
        .unwrap()
        .segments
        .iter()
        .filter_map(|s| match s {
            Segment::Gen(g) => Some(g),
            _ => None,
        })
        .collect();
    assert_eq!(
        gens,
        [
            &Generator::Int { min: 1, max: 5 },
            &Generator::TimestampMs,
            &Generator::Name,
            &Generator::Email,
            &Generator::Float { min: 0.0, max: 1.0 },
            &Generator::String { len: 1024 },
        ]
    );
    assert_eq!(steps[1].probability, 0.5);
    assert_eq!(
        steps[1].kind,
        StepKind::Sleep(ThinkTime::Normal {
            mean: Duration::from_secs(1),
            stddev: Duration::from_millis(200)
        })
    );
    // Loops by count and by duration.
    let browser = &shop.flows[1];
    let StepKind::Loop { repeat, steps } = &browser.steps[0].kind else {
        panic!()
    };
    assert_eq!(*repeat, Repeat::Count(3));
    assert_eq!(
        steps[1].kind,
        StepKind::Sleep(ThinkTime::Exponential {
            mean: Duration::from_millis(500)
        })
    );
    let StepKind::Loop { repeat, steps } = &browser.steps[1].kind else {
        panic!()
    };
    assert_eq!(*repeat, Repeat::For(Duration::from_secs(30)));
    assert_eq!(
        steps[0].kind,
        StepKind::Sleep(ThinkTime::Uniform {
            min: Duration::from_secs(1),
            max: Duration::from_secs(2)
        })
    );
    // WebSocket steps.
    let live = &f.scenarios[1];
    assert_eq!(live.start_time, Duration::from_secs(10));
    assert_eq!(live.flows[0].name, "default");
    let kinds: Vec<&str> = live.flows[0]
        .steps
        .iter()
        .map(|s| s.kind.keyword())
        .collect();
    assert_eq!(
        kinds,
        [
            "ws_connect",
            "ws_send",
            "ws_expect",
            "ws_subscribe",
            "ws_close"
        ]
    );
    let StepKind::WsExpect {
        contains,
        timeout,
        captures,
        ..
    } = &live.flows[0].steps[2].kind
    else {
        panic!()
    };
    assert_eq!(contains.as_ref().unwrap().as_literal(), Some("ack"));
    assert_eq!(*timeout, Duration::from_secs(2));
    assert_eq!(captures[0].var, "seq");
    let StepKind::WsSubscribe { duration, .. } = &live.flows[0].steps[3].kind else {
        panic!()
    };
    assert_eq!(*duration, Some(Duration::from_secs(30)));
    assert_eq!(
        live.flows[0].steps[4].kind,
        StepKind::WsClose { code: 1000 }
    );
    // The other executors.
    assert_eq!(
        f.scenarios[2].executor,
        Executor::SharedIterations {
            vus: 2,
            iterations: 1000,
            max_duration: Duration::from_secs(600)
        }
    );
    assert_eq!(
        f.scenarios[3].executor,
        Executor::PerVuIterations {
            vus: 3,
            iterations: 4,
            max_duration: Duration::from_secs(60)
        }
    );
    assert_eq!(
        f.scenarios[4].executor,
        Executor::ConstantArrivalRate {
            rate: 100.0,
            duration: Duration::from_secs(60),
            pre_allocated_vus: 5,
            max_vus: 5
        }
    );
    assert_eq!(f.scenarios[5].executor.max_vus(), 20);
    assert_eq!(f.scenarios[5].executor.duration(), Duration::from_secs(60));
    assert_eq!(
        super::describe_executor(&f.scenarios[5].executor),
        "ramping-vus 1->20 VUs over 30s, then 20->0 VUs over 30s"
    );
    // Thresholds, in file order.
    let t = &f.thresholds;
    assert_eq!(t.len(), 7);
    assert_eq!(t[0].metric, "http_req_duration");
    assert_eq!(
        t[0].tags,
        [
            ("name".into(), "login".into()),
            ("status".into(), "200".into())
        ]
    );
    assert_eq!(t[0].selector(), "http_req_duration{name:login,status:200}");
    assert_eq!(
        t[0].conditions[..2],
        [
            Condition {
                aggregation: Aggregation::P(95.0),
                op: CompareOp::Lt,
                value: 1200.0
            },
            Condition {
                aggregation: Aggregation::P(99.9),
                op: CompareOp::Le,
                value: 3000.0
            },
        ]
    );
    let aggs: Vec<String> = t[0].conditions.iter().map(ToString::to_string).collect();
    assert_eq!(
        aggs,
        [
            "p(95)<1200",
            "p(99.9)<=3000",
            "avg<200",
            "med<100",
            "min>=0",
            "max<5000"
        ]
    );
    assert!(t[1].abort_on_fail && t[1].delay_abort_eval == Duration::from_secs(10));
    assert_eq!(t[1].conditions[0].aggregation, Aggregation::Rate);
    assert!(t[1].conditions[0].holds(0.005) && !t[1].conditions[0].holds(0.01));
    assert_eq!(t[2].conditions[0].to_string(), "p(99)<100");
    assert_eq!(t[4].conditions[1].aggregation, Aggregation::Rate);
    assert_eq!(t[5].conditions[0].aggregation, Aggregation::Value);
    assert_eq!(t[6].metric, "memory_mb");
    // The soak watcher.
    let Some(Special::Soak(w)) = &f.special else {
        panic!()
    };
    assert_eq!(w.url.as_literal(), Some("http://127.0.0.1:8080/metrics"));
    assert_eq!(w.interval, Duration::from_secs(15));
    assert_eq!(
        w.json.segments,
        [
            PathSegment::Key("process".into()),
            PathSegment::Key("memory".into()),
            PathSegment::Index(0),
            PathSegment::Key("mb".into())
        ]
    );
    assert_eq!(w.max_growth_per_hour, Some(20.0));
    // And the summary renders it all.
    let text = Summary {
        path: "plan.toml".into(),
        file: f,
    }
    .to_string();
    assert!(
        text.starts_with("plan.toml: OK: 6 scenario(s), 7 threshold(s), 3 data source(s)"),
        "{text}"
    );
    assert!(text.contains("flow \"buyer\" 60% (2 step(s))"), "{text}");
    assert!(
        text.contains("threshold http_req_failed: rate<0.01 (abort on fail)"),
        "{text}"
    );
    assert!(
        text.contains("soak watch: http://127.0.0.1:8080/metrics every 15s -> memory_mb"),
        "{text}"
    );
}

#[test]
fn variables_precedence_and_defaults() {
    let src = "[variables]\nVUS = \"3\"\n[scenarios.a]\nexecutor = \"constant-vus\"\nvus = \"${VUS}\"\nduration = \"${D:-2s}\"\n[[scenarios.a.steps]]\nrequest = \"GET ${URL:-http://${HOST:-h}:${PORT:-80}}/\"\n";
    let f = parse(src);
    assert_eq!(
        f.scenarios[0].executor,
        Executor::ConstantVus {
            vus: 3,
            duration: Duration::from_secs(2)
        }
    );
    let StepKind::Http(h) = &f.scenarios[0].flows[0].steps[0].kind else {
        panic!()
    };
    assert_eq!(h.url.as_literal(), Some("http://h:80/"));
    // -e overrides [variables] and defaults.
    let f = parse_with(src, &[("VUS", "7"), ("D", "1m"), ("HOST", "x")]).unwrap();
    assert_eq!(
        f.scenarios[0].executor,
        Executor::ConstantVus {
            vus: 7,
            duration: Duration::from_secs(60)
        }
    );
    assert_eq!(f.variables["VUS"], "7");
    let StepKind::Http(h) = &f.scenarios[0].flows[0].steps[0].kind else {
        panic!()
    };
    assert_eq!(h.url.as_literal(), Some("http://x:80/"));
    // A variable holding a bad value is reported at the value that uses it.
    assert_eq!(
        parse_with(src, &[("D", "soon")]).unwrap_err().to_string(),
        "plan.toml:6:12: invalid duration \"soon\": expected a number with a unit, like 250us, 10ms, 30s, 2m, 1h30m"
    );
    // Escapes and run-time references inside load-time values.
    let f = parse(&with_step(
        "request = \"GET http://h/$${literal}/${gen.string(${N:-8})}\"",
    ));
    let StepKind::Http(h) = &f.scenarios[0].flows[0].steps[0].kind else {
        panic!()
    };
    assert_eq!(
        h.url.segments,
        [
            Segment::Literal("http://h/${literal}/".into()),
            Segment::Gen(Generator::String { len: 8 })
        ]
    );
    assert_eq!(h.url.source_text(), "http://h/$${literal}/${gen.string(8)}");
    // A run-time value where only load-time values make sense.
    assert_eq!(
        err(
            "[scenarios.a]\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"${gen.int(1,2)}\"\n"
        ),
        "plan.toml:4:13: \"${gen.int(1,2)}\" is a run-time value and cannot be used here; only load-time variables like ${NAME} or ${NAME:-default}"
    );
}

#[test]
fn breakpoint_and_spike() {
    let f = parse(&format!(
        "{}[special.breakpoint]\nscenario = \"a\"\nstart_rate = 100\nstep_rate = \"100/s\"\nstep_duration = \"1m\"\nmax_rate = \"5k\"\n",
        http_url()
    ));
    assert_eq!(
        f.special,
        Some(Special::Breakpoint {
            scenario: "a".into(),
            start_rate: 100.0,
            step_rate: 100.0,
            step_duration: Duration::from_secs(60),
            max_rate: 5000.0,
        })
    );
    let f = parse(&format!(
        "{}[special.spike]\nscenario = \"a\"\nrecovery = \"2m\"\n",
        http_url()
    ));
    assert_eq!(
        f.special,
        Some(Special::Spike {
            scenario: "a".into(),
            recovery: Duration::from_secs(120),
            tolerance: 1.5
        })
    );
    assert_eq!(
        err(&format!(
            "{}[special.spike]\nscenario = \"a\"\nrecovery = \"2m\"\n[special.soak]\nwatch = \"http://h/\"\ninterval = \"1s\"\njson = \"$.m\"\nmetric = \"m\"\n",
            http_url()
        )),
        "plan.toml:10:1: only one of [special.breakpoint], [special.spike], [special.soak] per file"
    );
}

/// The spike tolerance and the soak growth limit are numbers or strings with variables (a
/// smoke run of a few seconds needs looser ones than the full run).
#[test]
fn spike_tolerance_and_soak_growth_take_variables() {
    let spike = format!(
        "{}[special.spike]\nscenario = \"a\"\nrecovery = \"2m\"\ntolerance = \"${{TOLERANCE:-1.2}}\"\n",
        http_url()
    );
    let tolerance = |vars: &[(&str, &str)]| match parse_with(&spike, vars).unwrap().special {
        Some(Special::Spike { tolerance, .. }) => tolerance,
        other => panic!("{other:?}"),
    };
    assert_eq!(tolerance(&[]), 1.2);
    assert_eq!(tolerance(&[("TOLERANCE", "4")]), 4.0);
    assert_eq!(
        parse_with(&spike, &[("TOLERANCE", "0.5")])
            .unwrap_err()
            .to_string(),
        "plan.toml:10:13: tolerance is a factor of the baseline p99 and must be at least 1.0"
    );
    assert_eq!(
        parse_with(&spike, &[("TOLERANCE", "lots")])
            .unwrap_err()
            .to_string(),
        "plan.toml:10:13: expected a number like 1.5, not \"lots\""
    );
    let soak = format!(
        "{}[special.soak]\nwatch = \"http://h/\"\ninterval = \"1s\"\njson = \"$.m\"\nmetric = \"m\"\nmax_growth_per_hour = \"${{MAX_GROWTH:-50}}\"\n",
        http_url()
    );
    let growth = |vars: &[(&str, &str)]| match parse_with(&soak, vars).unwrap().special {
        Some(Special::Soak(w)) => w.max_growth_per_hour,
        other => panic!("{other:?}"),
    };
    assert_eq!(growth(&[]), Some(50.0));
    assert_eq!(growth(&[("MAX_GROWTH", "1e6")]), Some(1e6));
}

#[test]
fn did_you_mean_only_when_close() {
    use super::parse::did_you_mean;
    assert_eq!(
        did_you_mean("duraton", &["duration", "vus"]),
        "; did you mean \"duration\"?"
    );
    assert_eq!(did_you_mean("xyz", &["duration", "vus"]), "");
    assert_eq!(did_you_mean("vus", &["vus"]), "");
}

#[test]
fn type_errors_are_plain() {
    assert_eq!(
        err("[scenarios.a]\nexecutor = \"constant-vus\"\nvus = true\nduration = \"1s\"\n"),
        "plan.toml:3:7: expected a number, or a string like \"10k\" or \"${VUS:-10}\""
    );
    assert_eq!(
        err(&format!("{HEAD}[[scenarios.a.flows]]\nweight = \"60\"\n")),
        "plan.toml:6:10: invalid type: string \"60\", expected a number"
    );
    assert_eq!(
        err(&with_step(
            "request = \"GET http://h/\"\nexpect = [201, \"409\"]"
        )),
        "plan.toml:7:16: invalid type: string \"409\", expected a whole number like 200"
    );
    assert_eq!(
        err(&with_step(
            "request = \"GET http://h/\"\nchecks = { name = \"x\" }"
        )),
        "plan.toml:7:10: invalid type: map, expected an array"
    );
}

#[test]
fn threshold_tag_filters_must_match_something() {
    let file = |key: &str| {
        format!(
            "{HEAD}tags = {{ tier = \"free\" }}\n[[scenarios.a.steps]]\nrequest = \"GET http://h/\"\nname = \"search\"\nchecks = [{{ name = \"ok\", status = [200] }}]\n[thresholds]\n\"{key}\" = [\"p(95)<1\"]\n"
        )
    };
    for ok in [
        "http_req_duration{name:search}",
        "http_req_duration{status:200,method:GET}",
        "http_req_duration{scenario:a,flow:default}",
        "http_req_duration{tier:free}",
    ] {
        parse(&file(ok));
    }
    assert_eq!(
        err(&file("http_req_duration{name:serach}")),
        "plan.toml:11:25: no name is \"serach\", so http_req_duration{name:serach} would match nothing; did you mean \"search\"?"
    );
    assert_eq!(
        err(&file("http_req_duration{nmae:search}")),
        "plan.toml:11:20: unknown tag \"nmae\" (built in: name, check, scenario, flow, group, status, method, url, error; others come from tags = {…} in [options] or a scenario); did you mean \"name\"?"
    );
    assert_eq!(
        err(&file("http_req_duration{tier:fre}")),
        "plan.toml:11:25: no tier is \"fre\", so http_req_duration{tier:fre} would match nothing; did you mean \"free\"?"
    );
    assert_eq!(
        err(&file("http_req_duration{status:20}")),
        "plan.toml:11:27: status \"20\" is not an HTTP status code"
    );
    assert_eq!(
        err(&file("checks{check:okay}").replace("p(95)<1", "rate>0.9"))
            .split(';')
            .next()
            .unwrap(),
        "plan.toml:11:15: no check is \"okay\", so checks{check:okay} would match nothing"
    );
}

#[test]
fn check_loads_a_file_and_summarises() {
    let vars: BTreeMap<String, String> =
        [("BASE_URL".to_string(), "http://10.0.0.1:9000".to_string())].into();
    let summary = super::check(&examples_dir().join("search-load.toml"), &vars).unwrap();
    let text = summary.to_string();
    assert!(
        text.contains("search-load.toml: OK: 1 scenario(s), 3 threshold(s), 1 data source(s)"),
        "{text}"
    );
    assert!(
        text.contains("scenario \"search\": constant-arrival-rate 16.667/s for 10m (100-200 VUs)"),
        "{text}"
    );
    assert!(text.contains("flow \"simple\" 40% (1 step(s)):"), "{text}");
    assert!(
        text.contains("GET http://10.0.0.1:9000/api/search?q=${data.queries.q} [search]"),
        "{text}"
    );
    assert!(
        text.contains("threshold http_req_duration{name:search}: p(95)<1200"),
        "{text}"
    );
}

#[test]
fn error_backoff_defaults_parses_and_explains() {
    // VU-based executors back off after a failed iteration by default.
    let f = parse(&http_url());
    assert_eq!(f.scenarios[0].error_backoff, Backoff::DEFAULT_ERROR);
    assert_eq!(Backoff::DEFAULT_ERROR.source_text(), "exp:10ms..1s");
    let head = "[scenarios.a]\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\n";
    let with = |b: &str| {
        format!("{head}error_backoff = {b}\n[[scenarios.a.steps]]\nrequest = \"GET http://h/\"\n")
    };
    for (text, want) in [
        ("\"none\"", Backoff::None),
        ("\"100ms\"", Backoff::Fixed(Duration::from_millis(100))),
        (
            "\"exp:10ms..2s\"",
            Backoff::Exponential {
                base: Duration::from_millis(10),
                max: Duration::from_secs(2),
            },
        ),
        (
            "\"${BACKOFF:-250ms}\"",
            Backoff::Fixed(Duration::from_millis(250)),
        ),
    ] {
        assert_eq!(
            parse(&with(text)).scenarios[0].error_backoff,
            want,
            "{text}"
        );
    }
    assert_eq!(
        err(&with("\"soon\"")),
        "plan.toml:5:17: error_backoff: invalid backoff \"soon\": expected none, a duration such as 1s, or exp:BASE..MAX such as exp:100ms..5s"
    );
    assert_eq!(
        err(&with("\"exp:1s..10ms\"")),
        "plan.toml:5:17: error_backoff: invalid backoff \"exp:1s..10ms\": expected none, a duration such as 1s, or exp:BASE..MAX such as exp:100ms..5s"
    );
    // Arrival-rate executors are paced by their arrivals: no backoff, and none may be set.
    let arrival = "[scenarios.a]\nexecutor = \"constant-arrival-rate\"\nrate = 5\nduration = \"1s\"\npre_allocated_vus = 1\n";
    let f = parse(&format!(
        "{arrival}[[scenarios.a.steps]]\nrequest = \"GET http://h/\"\n"
    ));
    assert_eq!(f.scenarios[0].error_backoff, Backoff::None);
    assert_eq!(
        err(&format!(
            "{arrival}error_backoff = \"1s\"\n[[scenarios.a.steps]]\nrequest = \"GET http://h/\"\n"
        )),
        "plan.toml:6:17: error_backoff does not apply to executor constant-arrival-rate: its arrivals already pace the iterations; remove it (it is for VU-based executors)"
    );
}

#[test]
fn ws_connect_may_not_set_handshake_headers() {
    for name in crate::proto::ws::RESERVED_HEADERS {
        let e = err(&with_step(&format!(
            "ws_connect = \"ws://h/ws\"\nheaders = {{ \"{name}\" = \"x\" }}"
        )));
        assert_eq!(
            e,
            format!(
                "plan.toml:7:{}: header \"{name}\" is set by the WebSocket handshake itself; remove it from the ws_connect step's headers (offer subprotocols with Sec-WebSocket-Protocol; extensions are not supported)",
                18 + name.len()
            )
        );
    }
    // Case does not matter; subprotocols and other headers are fine.
    assert!(
        err(&with_step(
            "ws_connect = \"ws://h/ws\"\nheaders = { \"sec-websocket-key\" = \"x\" }"
        ))
        .contains("header \"sec-websocket-key\" is set by the WebSocket handshake itself")
    );
    parse(&with_step(
        "ws_connect = \"ws://h/ws\"\nheaders = { Sec-WebSocket-Protocol = \"chat\", Authorization = \"Bearer t\" }",
    ));
    // An HTTP request may send Connection.
    parse(&with_step(
        "request = \"GET http://h/\"\nheaders = { Connection = \"close\" }",
    ));
    // [options] headers go on handshakes too, but only matter when there is a ws_connect.
    let opts = "[options]\nheaders = { Connection = \"close\" }\n";
    parse(&format!("{opts}{}", http_url()));
    assert_eq!(
        err(&format!(
            "{opts}{}",
            with_step("ws_connect = \"ws://h/ws\"")
        )),
        "plan.toml:2:26: header \"Connection\" in [options] headers would go on every WebSocket handshake, and the handshake sets it itself; move it to the request steps that need it"
    );
}

/// What `blaster check` refuses, the handshake encoder refuses at run time too.
#[test]
fn the_reserved_ws_headers_are_the_ones_the_handshake_refuses() {
    use crate::proto::ws::{UpgradeRequest, UpgradeRequestError};
    for name in crate::proto::ws::RESERVED_HEADERS {
        let refused = UpgradeRequest::new("/", "h", &[], &[(name.to_owned(), "x".to_owned())]);
        assert_eq!(
            refused.unwrap_err(),
            UpgradeRequestError::HandshakeHeader(name.to_owned())
        );
    }
    // The encoder also refuses the subprotocol header, which the parser allows.
    assert!(
        UpgradeRequest::new(
            "/",
            "h",
            &[],
            &[("Sec-WebSocket-Protocol".into(), "chat".into())]
        )
        .is_err(),
        "the worker turns Sec-WebSocket-Protocol into offered subprotocols before encoding"
    );
}

#[test]
fn unique_per_vu_rows_must_cover_the_vus_at_check_time() {
    // data/queries.csv has 6 rows.
    let data = "[data.q]\nfile = \"data/queries.csv\"\nmode = \"unique-per-vu\"\n";
    let scenario = |name: &str, vus: &str| {
        format!(
            "[scenarios.{name}]\nexecutor = \"constant-vus\"\nvus = \"{vus}\"\nduration = \"1s\"\n[[scenarios.{name}.steps]]\nrequest = \"GET http://h/?q=${{data.q.q}}\"\n"
        )
    };
    parse(&format!("{data}{}", scenario("a", "6")));
    assert_eq!(
        err(&format!("{data}{}", scenario("a", "${VUS:-7}"))),
        "plan.toml:3:8: data source \"q\" (".to_owned()
            + &examples_dir()
                .join("data/queries.csv")
                .display()
                .to_string()
            + ") has 6 row(s) and mode = \"unique-per-vu\", but scenario \"a\" can run 7 VU(s), each needing a row of its own; add rows to the file, let the scenario run at most 6 VU(s), or use mode = \"sequential\""
    );
    // VU numbers count on across scenarios: 4 + 3 VUs, the second scenario reads VU 5..7.
    let e = err(&format!(
        "{data}{}{}",
        "[scenarios.first]\nexecutor = \"constant-vus\"\nvus = 4\nduration = \"1s\"\n[[scenarios.first.steps]]\nrequest = \"GET http://h/\"\n",
        scenario("b", "3")
    ));
    assert!(
        e.contains("scenario \"b\" can run 3 VU(s) (VU numbers 5 to 7: they count on across the scenarios before it)")
            && e.contains("let the scenario run at most 2 VU(s)"),
        "{e}"
    );
    // Arrival-rate executors count their max_vus; other modes are not limited.
    let arrival = "[scenarios.a]\nexecutor = \"constant-arrival-rate\"\nrate = 5\nduration = \"1s\"\npre_allocated_vus = 2\nmax_vus = 10\n[[scenarios.a.steps]]\nrequest = \"GET http://h/?q=${data.q.q}\"\n";
    assert!(err(&format!("{data}{arrival}")).contains("can run 10 VU(s)"));
    parse(&format!(
        "[data.q]\nfile = \"data/queries.csv\"\nmode = \"sequential\"\n{}",
        scenario("a", "50")
    ));
    // A scenario that does not read the source is not limited by it.
    parse(&format!(
        "{data}[scenarios.a]\nexecutor = \"constant-vus\"\nvus = 50\nduration = \"1s\"\n[[scenarios.a.steps]]\nrequest = \"GET http://h/\"\n"
    ));
}

#[test]
fn retry_parses_with_defaults_and_explains_errors() {
    let f = parse(&with_step(
        "request = \"GET http://h/\"\nretry = { on = [429, 503], max = \"${MAX:-2}\", max_wait = \"30s\", backoff = \"250ms\" }\nchecks = [{ name = \"retry_after_honoured\", retry_after_honoured = true }]",
    ));
    let StepKind::Http(h) = &f.scenarios[0].flows[0].steps[0].kind else {
        panic!("an HTTP step")
    };
    assert_eq!(
        h.retry,
        Some(Retry {
            on: vec![429, 503],
            max: 2,
            max_wait: Duration::from_secs(30),
            backoff: Duration::from_millis(250),
        })
    );
    assert_eq!(
        h.checks[0].conditions,
        vec![CheckCondition::RetryAfterHonoured]
    );
    let f = parse(&with_step(
        "request = \"GET http://h/\"\nretry = { on = [429] }",
    ));
    let StepKind::Http(h) = &f.scenarios[0].flows[0].steps[0].kind else {
        panic!("an HTTP step")
    };
    assert_eq!(
        h.retry,
        Some(Retry {
            on: vec![429],
            max: 3,
            max_wait: Duration::from_secs(60),
            backoff: Duration::from_secs(1),
        })
    );
    for (step, want) in [
        (
            "request = \"GET http://h/\"\nretry = { on = [] }",
            "plan.toml:7:16: retry.on needs at least one status, like on = [429, 503]",
        ),
        (
            "request = \"GET http://h/\"\nretry = { on = [42] }",
            "plan.toml:7:16: retry.on: 42 is not an HTTP status (100 to 599)",
        ),
        (
            "request = \"GET http://h/\"\nretry = { on = [429], max = 0 }",
            "plan.toml:7:29: retry.max must be 1 to 100 retries, not 0",
        ),
        (
            "request = \"GET http://h/\"\nretry = { on = [429], max_wait = \"0s\" }",
            "plan.toml:7:34: retry.max_wait must be longer than 0, like \"30s\"",
        ),
        (
            "request = \"GET http://h/\"\nretry = { on = [429], max_wiat = \"1s\" }",
            "plan.toml:7:23: unknown key \"max_wiat\"; did you mean \"max_wait\"?",
        ),
        (
            "request = \"GET http://h/\"\nchecks = [{ name = \"h\", retry_after_honoured = true }]",
            "plan.toml:7:11: retry_after_honoured needs the step to retry: add retry = { on = [429], max = 1, max_wait = \"2m\" } (a max_wait above the server's window)",
        ),
        (
            "request = \"GET http://h/\"\nretry = { on = [429] }\nchecks = [{ retry_after_honoured = false }]",
            "plan.toml:8:36: retry_after_honoured can only be true (leave it out for no such condition)",
        ),
        (
            "sleep = \"1s\"\nretry = { on = [429] }",
            "plan.toml:7:9: key \"retry\" does not apply to a sleep step; it takes probability",
        ),
    ] {
        assert_eq!(err(&with_step(step)), want, "{step}");
    }
}

#[test]
fn sleep_takes_a_captured_variable() {
    let f = parse(&with_step(
        "request = \"GET http://h/\"\ncapture = { wait = \"header:Retry-After\" }\n[[scenarios.a.steps]]\nsleep = \"${vars.wait}s\"",
    ));
    let StepKind::SleepFor(t) = &f.scenarios[0].flows[0].steps[1].kind else {
        panic!("a per-VU sleep: {:?}", f.scenarios[0].flows[0].steps[1])
    };
    assert_eq!(t.source_text(), "${vars.wait}s");
    // A literal sleep stays a think time; an unknown variable is named.
    let f = parse(&with_step("sleep = \"${T:-2s}\""));
    assert_eq!(
        f.scenarios[0].flows[0].steps[0].kind,
        StepKind::Sleep(ThinkTime::Constant(Duration::from_secs(2)))
    );
    assert!(err(&with_step("sleep = \"${vars.wiat}s\"")).starts_with("plan.toml:6:"));
    use super::runtime::rendered_sleep;
    assert_eq!(rendered_sleep("2"), Some(Duration::from_secs(2)));
    assert_eq!(rendered_sleep(" 1.5 "), Some(Duration::from_millis(1500)));
    assert_eq!(rendered_sleep("2s"), Some(Duration::from_secs(2)));
    assert_eq!(rendered_sleep("250ms"), Some(Duration::from_millis(250)));
    // Nothing captured: "s" is no duration, so no sleep.
    assert_eq!(rendered_sleep("s"), None);
    assert_eq!(rendered_sleep("-1"), None);
}

#[test]
fn retry_after_delta_seconds_and_http_dates() {
    use std::time::{SystemTime, UNIX_EPOCH};
    // Wed, 21 Oct 2015 07:28:00 GMT
    let date = UNIX_EPOCH + Duration::from_secs(1_445_412_480);
    let now = date - Duration::from_secs(90);
    assert_eq!(
        parse_retry_after(b"120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(parse_retry_after(b" 0 ", now), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT", now),
        Some(Duration::from_secs(90))
    );
    // A date in the past: no wait.
    assert_eq!(
        parse_retry_after(
            b"Wed, 21 Oct 2015 07:28:00 GMT",
            date + Duration::from_secs(5)
        ),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after(b"soon", now), None);
    assert_eq!(parse_retry_after(b"-5", now), None);
    let r = Retry {
        on: vec![429],
        max: 3,
        max_wait: Duration::from_secs(30),
        backoff: Duration::from_secs(1),
    };
    let now = SystemTime::now();
    // Retry-After wins, capped by max_wait.
    assert_eq!(r.wait(1, Some(b"7"), now), (Duration::from_secs(7), true));
    assert_eq!(
        r.wait(1, Some(b"3600"), now),
        (Duration::from_secs(30), true)
    );
    // Without it (or unreadable): the backoff, doubling per retry, capped.
    assert_eq!(r.wait(1, None, now), (Duration::from_secs(1), false));
    assert_eq!(
        r.wait(3, Some(b"later"), now),
        (Duration::from_secs(4), false)
    );
    assert_eq!(r.wait(9, None, now), (Duration::from_secs(30), false));
}

#[test]
fn ws_connect_takes_size_limits() {
    let f = parse(&with_step(
        "ws_connect = \"ws://h/\"\nmax_frame = \"1KiB\"\nmax_message = 1000000",
    ));
    let StepKind::WsConnect {
        max_frame,
        max_message,
        ..
    } = &f.scenarios[0].flows[0].steps[0].kind
    else {
        panic!("not a ws_connect step")
    };
    assert_eq!((*max_frame, *max_message), (Some(1024), Some(1_000_000)));
    let f = parse(&with_step("ws_connect = \"ws://h/\""));
    let StepKind::WsConnect {
        max_frame,
        max_message,
        ..
    } = &f.scenarios[0].flows[0].steps[0].kind
    else {
        panic!("not a ws_connect step")
    };
    assert_eq!((*max_frame, *max_message), (None, None));
}

#[test]
fn ws_connect_size_limit_errors_point_at_the_value() {
    let e = err(&with_step(
        "ws_connect = \"ws://h/\"\nmax_frame = \"16 lots\"",
    ));
    assert!(e.starts_with("plan.toml:7:13: "), "{e}");
    assert!(e.contains("16 lots") && e.contains("MiB"), "{e}");
    assert_eq!(
        err(&with_step("ws_connect = \"ws://h/\"\nmax_message = 0")),
        "plan.toml:7:15: size limit \"0\" must be at least 1 byte, e.g. 1MiB"
    );
    let e = err(&with_step(
        "request = \"GET http://h/\"\nmax_frame = \"1MiB\"",
    ));
    assert!(
        e.starts_with("plan.toml:7:13: key \"max_frame\" does not apply to a request step"),
        "{e}"
    );
}
