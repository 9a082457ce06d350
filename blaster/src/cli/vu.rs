//! `blaster run FILE.toml` and `blaster run ws://…`: turn the CLI into a VU [`Plan`], run it
//! on the VU engine and report, with threshold results deciding the exit code.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::observe::Observers;
use super::{EXIT_INTERRUPTED, EXIT_OK, Mode, RunArgs, available_cpus, install_stop_signals};
use crate::config::{LoadModel, RequestSpec, RunConfig, StopCondition, Target};
use crate::engine::vu::plan::{
    Backoff, Builtin, FlowPlan, Op, Plan, ScenarioPlan, StepClass, StepInfo, literal,
};
use crate::engine::vu::watch::{Watcher, growth_per_hour};
use crate::engine::vu::{self, VuOptions, VuOutcome};
use crate::report::flow::{
    BreakpointReport, Gauge, ScenarioReport, SpikeReport, ThresholdResult, WatchReport, WsReport,
};
use crate::report::progress::{Mode as ProgressMode, Progress, scenario_stage};
use crate::scenario::model::{Executor, Options, ScenarioFile, Special, StepKind};

/// Exit code when a threshold failed (k6's, so CI pipelines keep working).
pub const EXIT_THRESHOLDS: i32 = 99;

/// Parses `--backoff`: `none`, `1s`, or `exp:100ms..5s`.
pub fn parse_backoff(s: &str) -> Result<Backoff, String> {
    use super::units::parse_duration;
    let bad = || {
        format!(
            "invalid backoff \"{s}\": expected none, a duration such as 1s, or exp:BASE..MAX such as exp:100ms..5s"
        )
    };
    if s == "none" {
        return Ok(Backoff::None);
    }
    if let Some(rest) = s.strip_prefix("exp:") {
        let (a, b) = rest.split_once("..").ok_or_else(bad)?;
        let base = parse_duration(a).map_err(|_| bad())?;
        let max = parse_duration(b).map_err(|_| bad())?;
        if base.is_zero() || max < base {
            return Err(bad());
        }
        return Ok(Backoff::Exponential { base, max });
    }
    parse_duration(s).map(Backoff::Fixed).map_err(|_| bad())
}

/// Quick-run flags that a scenario file (`ws == false`) or a ws:// run (`ws`) has no use
/// for: refused rather than silently ignored. Flags with a default are judged given when
/// they differ from it.
fn refuse_quick_run_flags(args: &RunArgs, ws: bool) -> Result<()> {
    let given = [
        ("-c", !ws && args.connections != super::DEFAULT_CONNECTIONS),
        ("-d", !ws && args.duration.is_some()),
        ("-n", !ws && args.requests.is_some()),
        ("--mode", !ws && args.mode != Mode::Request),
        ("--keepalive-every", !ws && args.keepalive_every.is_some()),
        ("--connect-rate", !ws && args.connect_rate.is_some()),
        ("--rate", args.rate.is_some()),
        ("-m", args.method != super::DEFAULT_METHOD),
        ("-H", !args.headers.is_empty()),
        ("--body", args.body.is_some()),
        ("--body-file", args.body_file.is_some()),
        ("--pipeline", args.pipeline != super::DEFAULT_PIPELINE),
    ];
    if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
        if ws {
            bail!(
                "{flag} does not apply to ws:// runs (they send WebSocket messages, not HTTP requests); drop it, or write the exchange as a scenario file (ws_connect, ws_send, headers on the handshake)"
            );
        }
        bail!(
            "{flag} does not apply to a scenario file: its scenarios set their own load (executor, vus, rate, duration, stages) and requests; drop it, or change the file (a ${{NAME}} in it takes -e NAME=VALUE)"
        );
    }
    Ok(())
}

/// `--churn` is implemented by the HTTP engine only; say so rather than ignore it.
fn refuse_http_only(args: &RunArgs) -> Result<()> {
    for (flag, given) in [("--churn", args.churn.is_some())] {
        if given {
            bail!(
                "{flag} applies to http:// URLs in this version, not to scenario files or ws:// runs; drop it, or use it with an http:// URL"
            );
        }
    }
    Ok(())
}

/// `blaster run FILE.toml`.
pub fn run_scenario(args: &RunArgs, path: &str, command_line: Vec<String>) -> Result<i32> {
    refuse_http_only(args)?;
    refuse_quick_run_flags(args, false)?;
    if args.targets.len() > 1 {
        bail!(
            "give one scenario file (got {} arguments)",
            args.targets.len()
        );
    }
    let vars = super::parse_vars(&args.vars)?;
    let file = crate::scenario::load(Path::new(path), &vars)?;
    let threads = args
        .threads
        .or(file.options.threads)
        .unwrap_or_else(available_cpus);
    let mut plan = Plan::compile(Arc::new(file)).map_err(anyhow::Error::msg)?;
    // --ws-max-frame / --ws-max-message: for the connect steps that set no limit themselves.
    for step in &mut plan.steps {
        if let StepKind::WsConnect {
            max_frame,
            max_message,
            ..
        } = &mut step.kind
        {
            *max_frame = max_frame.or(args.ws_max_frame);
            *max_message = max_message.or(args.ws_max_message);
        }
    }
    let watcher = match &plan.file.special {
        Some(Special::Soak(w)) => {
            let url = w
                .url
                .as_literal()
                .map_or_else(|| w.url.source_text(), str::to_owned);
            // Fail early on a URL that cannot be polled at all.
            crate::engine::vu::worker::split_url(url.as_bytes(), false).map_err(|kind| {
                anyhow::anyhow!("special.soak watch URL \"{url}\": {kind}; give an http:// URL")
            })?;
            Some((url.clone(), Watcher::start(url, w.json.clone(), w.interval)))
        }
        _ => None,
    };
    let probe_start = super::probe_start(args)?;
    let (outcome, verdict, observers) = execute(args, Arc::new(plan.clone()), threads)?;
    let kernel = probe_start.and_then(|(url, start)| {
        let m = &outcome.run.metrics;
        let latency = crate::report::summarize(&m.latency);
        super::kernel_report(&literal_ports(&plan), &latency, m.responses, url, &start)
    });
    let watched = watcher.map(|(url, w)| (url, w.finish()));
    let duration_s = outcome.run.duration.as_secs_f64();
    let m = &outcome.run.metrics;
    let mut gauges = BTreeMap::new();
    for (name, bytes) in [
        ("data_received", m.bytes_received),
        ("data_sent", m.bytes_sent),
    ] {
        let v = bytes as f64;
        gauges.insert(
            name.to_owned(),
            Gauge {
                last: v,
                min: v,
                max: v,
            },
        );
    }
    if let (Some(Special::Soak(w)), Some((_, seen))) = (&plan.file.special, &watched)
        && let Some(last) = seen.samples.last()
    {
        let values = seen.samples.iter().map(|s| s.1);
        gauges.insert(
            w.metric.clone(),
            Gauge {
                last: last.1,
                min: values.clone().fold(f64::INFINITY, f64::min),
                max: values.fold(f64::NEG_INFINITY, f64::max),
            },
        );
    }
    let mut scenario = ScenarioReport::build(
        path,
        &plan,
        &outcome.flow,
        duration_s,
        &gauges,
        verdict.aborted_by.clone(),
    );
    scenario.series = Some(outcome.series.clone());
    if let Some(bp) = &plan.breakpoint {
        scenario.breakpoint = Some(BreakpointReport {
            scenario: plan.scenarios[bp.scenario].name.clone(),
            last_passing_rate: verdict.last_passing_rate,
            broke_at_rate: verdict.broke_at_rate,
            broken_by: verdict.aborted_by.clone(),
        });
    }
    if let (Some(Special::Soak(w)), Some((url, seen))) = (&plan.file.special, watched) {
        let growth = growth_per_hour(&seen.samples);
        let rising = matches!((growth, w.max_growth_per_hour), (Some(g), Some(m)) if g > m);
        if let Some(max) = w.max_growth_per_hour {
            scenario.thresholds.push(ThresholdResult {
                metric: format!("{} growth per hour", w.metric),
                condition: format!("<={max}"),
                observed: growth,
                passed: growth.is_some_and(|g| g <= max),
                abort_on_fail: false,
            });
        }
        scenario.watch = Some(WatchReport {
            url,
            metric: w.metric.clone(),
            samples: seen.samples.iter().map(|&(t, v)| [t, v]).collect(),
            errors: seen.errors.len() as u64,
            first_errors: seen.errors.iter().take(5).cloned().collect(),
            growth_per_hour: growth,
            max_growth_per_hour: w.max_growth_per_hour,
            rising,
        });
    }
    if let Some(Special::Spike {
        scenario: name,
        recovery,
        tolerance,
    }) = &plan.file.special
        && let Some(sp) = plan.scenarios.iter().find(|s| &s.name == name)
    {
        let spike = spike_report(sp, *recovery, *tolerance, &outcome.run.timeseries);
        scenario.thresholds.push(ThresholdResult {
            metric: format!("spike recovery ({name})"),
            condition: format!(
                "p95 after {} <= {tolerance} x baseline",
                crate::scenario::format_duration(*recovery)
            ),
            observed: spike.recovered_p95_ms,
            passed: spike.recovered,
            abort_on_fail: false,
        });
        scenario.spike = Some(spike);
    }
    scenario.thresholds_passed = scenario.thresholds.iter().all(|t| t.passed);
    if verdict.aborted_by.is_some() {
        scenario.thresholds_passed = false;
    }
    let has_ws = plan.steps.iter().any(|s| s.class == StepClass::WsConnect);
    let ws = has_ws.then(|| WsReport::build("scenario", &outcome.flow, duration_s, 0));
    let targets = scenario_targets(&plan);
    let mut report = crate::report::Report::from_run(
        &report_config(args, &plan, threads, targets, command_line),
        &outcome.run,
    );
    report.model = "scenario".into();
    report.concurrency = outcome.flow.vus_max as usize;
    let passed = scenario.thresholds_passed;
    report.scenario = Some(scenario);
    report.ws = ws;
    report.kernel = kernel;
    super::write_outputs(&report, &args.outputs)?;
    if !args.quiet {
        print!("{}", crate::report::text::render(&report));
    }
    observers.linger(args.prometheus_linger);
    Ok(if outcome.run.interrupted {
        EXIT_INTERRUPTED
    } else if !passed {
        EXIT_THRESHOLDS
    } else {
        EXIT_OK
    })
}

/// `blaster run ws://HOST:PORT/PATH --mode hold|echo|pubsub`.
pub fn run_ws(args: &RunArgs, command_line: Vec<String>) -> Result<i32> {
    refuse_http_only(args)?;
    refuse_quick_run_flags(args, true)?;
    let url = &args.targets[0];
    if url.starts_with("wss://") {
        bail!(
            "unsupported scheme in \"{url}\": blaster speaks plain WebSocket (ws://) in this version; test a TLS endpoint through a local TLS terminator"
        );
    }
    if args.targets.len() > 1 {
        bail!("give one ws:// URL (got {})", args.targets.len());
    }
    if super::expand_port_range(url)?.len() > 1 {
        bail!(
            "a port range in the URL is for http:// runs; a ws:// run takes one URL with one port: \"{url}\""
        );
    }
    if args.requests.is_some() {
        bail!("WebSocket runs last a duration: give -d (e.g. -d 30s) instead of -n");
    }
    if args.payload < 32 && matches!(args.mode, Mode::Echo | Mode::Pubsub) {
        bail!(
            "invalid --payload {}: echo and pub/sub messages need at least 32 bytes (sender, sequence number and send time)",
            args.payload
        );
    }
    super::parse_target(&url.replacen("ws://", "http://", 1))
        .with_context(|| format!("invalid WebSocket URL \"{url}\""))?;
    let duration = args.duration.unwrap_or(Duration::from_secs(10));
    let c = args.connections as u64;
    let file = Arc::new(ScenarioFile {
        options: Options {
            timeout: args.timeout,
            ..Options::default()
        },
        variables: BTreeMap::new(),
        data: BTreeMap::new(),
        scenarios: Vec::new(),
        thresholds: Vec::new(),
        special: None,
    });
    let payload = args.payload as u32;
    let mut steps = Vec::new();
    let mut scenarios = Vec::new();
    let mut add = |name: &str, vus: u64, first_vu: u64, topics: Option<u32>, b: Builtin| {
        let id = steps.len() as u32;
        steps.push(StepInfo {
            name: url.clone(),
            class: StepClass::WsConnect,
            scenario: scenarios.len(),
            tags: vec![
                ("name".into(), url.clone()),
                ("scenario".into(), name.to_owned()),
            ],
            kind: StepKind::WsConnect {
                name: url.clone(),
                url: literal(url),
                headers: args
                    .headers
                    .iter()
                    .filter_map(|h| h.split_once(':'))
                    .map(|(k, v)| (k.trim().to_owned(), literal(v.trim())))
                    .collect(),
                max_frame: args.ws_max_frame,
                max_message: args.ws_max_message,
            },
            topics,
            protocols: args.subprotocols.clone(),
        });
        // Connection storms: VUs start at --connect-rate (split by the share of each role).
        let start_rate = args.connect_rate.map(|r| r * vus as f64 / c as f64);
        scenarios.push(ScenarioPlan {
            name: name.to_owned(),
            executor: Executor::ConstantVus { vus, duration },
            start: Duration::ZERO,
            graceful_stop: Duration::ZERO,
            flows: vec![FlowPlan {
                name: "default".into(),
                weight: 1.0,
                ops: vec![Op::WsConnect(id), Op::Builtin(b)],
            }],
            vu_start_rate: start_rate,
            backoff: args.backoff,
            first_vu,
        });
    };
    let mode = match args.mode {
        Mode::Request | Mode::Hold => {
            add(
                "hold",
                c,
                1,
                None,
                Builtin::Hold {
                    ping_every: args.keepalive_every,
                },
            );
            "hold"
        }
        Mode::Echo => {
            add(
                "echo",
                c,
                1,
                None,
                Builtin::Echo {
                    rate: args.message_rate,
                    payload,
                },
            );
            "echo"
        }
        Mode::Pubsub => {
            let publishers = args.publishers as u64;
            if publishers >= c {
                bail!(
                    "--publishers {publishers} leaves no subscriber among -c {c} connections: give -c larger than --publishers"
                );
            }
            let topics = Some(args.topics as u32);
            add("subscribers", c - publishers, 1, topics, Builtin::Subscribe);
            add(
                "publishers",
                publishers,
                1 + c - publishers,
                topics,
                Builtin::Publish {
                    rate: args.message_rate,
                    payload,
                },
            );
            "pubsub"
        }
    };
    let plan = Plan {
        scenarios,
        steps,
        file,
        timeout: args.timeout,
        live: false,
        breakpoint: None,
    };
    // One worker per CPU; a worker whose VUs need more direct descriptors than one ring's
    // table holds (RLIMIT_NOFILE) drives several rings itself.
    let threads = args
        .threads
        .unwrap_or_else(available_cpus)
        .min(args.connections);
    let target = super::parse_target(&url.replacen("ws://", "http://", 1))?;
    let probe_start = super::probe_start(args)?;
    let (outcome, _, observers) = execute(args, Arc::new(plan.clone()), threads)?;
    let duration_s = outcome.run.duration.as_secs_f64();
    let ws = WsReport::build(mode, &outcome.flow, duration_s, c);
    // The client latency beside the kernel's share (docs/PROBE.md): per message the server
    // read (echo: the round trip over the messages sent; pub/sub: the delivery latency over
    // the messages published), or per Upgrade request in hold mode (the handshake).
    let kernel = probe_start.and_then(|(probe, start)| {
        let (latency, count) = match args.mode {
            Mode::Echo | Mode::Pubsub => (&ws.msg_latency_us, ws.msgs_sent),
            Mode::Request | Mode::Hold => (&ws.handshake_us, ws.sessions),
        };
        super::kernel_report(&[target.addr.port()], latency, count, probe, &start)
    });
    let mut report = crate::report::Report::from_run(
        &report_config(
            args,
            &plan,
            threads,
            vec![Target {
                url: url.clone(),
                ..target
            }],
            command_line,
        ),
        &outcome.run,
    );
    report.model = "ws".into();
    report.ws = Some(ws);
    report.kernel = kernel;
    super::write_outputs(&report, &args.outputs)?;
    if !args.quiet {
        print!("{}", crate::report::text::render(&report));
    }
    observers.linger(args.prometheus_linger);
    Ok(if outcome.run.interrupted {
        EXIT_INTERRUPTED
    } else {
        EXIT_OK
    })
}

/// Latency before, at and after the peak of a ramping-VUs (or ramping-arrival-rate) spike,
/// from the time series.
fn spike_report(
    sp: &ScenarioPlan,
    recovery: Duration,
    tolerance: f64,
    series: &[crate::report::TimePoint],
) -> SpikeReport {
    let stages: &[crate::scenario::model::Stage] = match &sp.executor {
        Executor::RampingVus { stages, .. } | Executor::RampingArrivalRate { stages, .. } => stages,
        _ => &[],
    };
    let peak = stages.iter().map(|s| s.target).fold(0.0, f64::max);
    // The peak runs from the start of the stage that ramps to it to the end of the last
    // stage that stays at it.
    let (mut t, mut peak_start, mut peak_end) = (sp.start, None, sp.start);
    for s in stages {
        if s.target >= peak && peak > 0.0 {
            peak_start.get_or_insert(t);
            peak_end = t + s.duration;
        }
        t += s.duration;
    }
    let peak_start = peak_start.unwrap_or(sp.start);
    let avg_p95 = |from: Duration, to: Duration| {
        let (mut sum, mut n) = (0.0, 0u64);
        for p in series {
            let at = Duration::from_secs_f64(p.t_s.max(0.0));
            if at > from && at <= to && p.latency_us.count > 0 {
                sum += p.latency_us.p95 as f64 * p.latency_us.count as f64;
                n += p.latency_us.count;
            }
        }
        (n > 0).then(|| sum / n as f64 / 1000.0)
    };
    let first_stage_end = sp.start + stages.first().map_or(Duration::ZERO, |s| s.duration);
    let baseline = avg_p95(first_stage_end.min(peak_start), peak_start);
    let at_peak = avg_p95(peak_start, peak_end);
    let recovered_p95 = avg_p95(peak_end + recovery, Duration::MAX);
    SpikeReport {
        scenario: sp.name.clone(),
        baseline_p95_ms: baseline,
        spike_p95_ms: at_peak,
        recovered_p95_ms: recovered_p95,
        tolerance,
        recovered: matches!((baseline, recovered_p95), (Some(b), Some(r)) if r <= b * tolerance),
    }
}

/// Runs a plan with live progress (and the stage of a scenario file), the live monitor
/// (abort-on-fail, breakpoint search), `/metrics` and the interval log when asked for. The
/// returned observers serve `/metrics` until dropped: call [`Observers::linger`] after the
/// report is written.
fn execute(
    args: &RunArgs,
    plan: Arc<Plan>,
    threads: usize,
) -> Result<(VuOutcome, crate::engine::vu::monitor::Verdict, Observers)> {
    let sources = match &args.source {
        Some(list) => super::parse_sources(list)?,
        None => Vec::new(),
    };
    let mut monitor = crate::engine::vu::monitor::Monitor::new(&plan);
    let stop = install_stop_signals()?;
    let mut progress = Progress::new(ProgressMode::detect(args.quiet), Some(plan.load_duration()));
    if !plan.file.scenarios.is_empty() {
        let plan = Arc::clone(&plan);
        progress = progress.with_stage(Box::new(move |at| scenario_stage(&plan, at)));
    }
    let mut observers = Observers::start(args, progress, Arc::clone(&stop))?;
    observers.label_steps(&plan);
    let outcome = vu::run_observed(
        Arc::clone(&plan),
        VuOptions {
            threads,
            report_interval: args.interval,
            late_after: args.late_after,
            max_connecting: args.max_connecting.map(|n| n as usize),
            sources: &sources,
        },
        Arc::clone(&stop),
        |point| observers.observe(point),
        |elapsed, flow| monitor.on_interval(elapsed, flow),
    );
    observers.finish();
    let outcome = outcome?;
    monitor.finish(!outcome.run.interrupted && !outcome.aborted);
    Ok((outcome, monitor.verdict, observers))
}

/// The distinct HTTP and WebSocket targets a plan names literally (for the report).
fn scenario_targets(plan: &Plan) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for s in &plan.steps {
        let url = match &s.kind {
            StepKind::Http(h) => h.url.source_text(),
            StepKind::WsConnect { url, .. } => url.source_text(),
            _ => continue,
        };
        if !out.iter().any(|t| t.url == url) {
            out.push(Target {
                url,
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                host_header: String::new(),
                path: String::new(),
            });
        }
    }
    out
}

/// The ports of the HTTP and WebSocket URLs a plan names literally (a templated host or port
/// is only known at run time), first seen first: where `--probe` looks for the target.
fn literal_ports(plan: &Plan) -> Vec<u16> {
    let mut ports = Vec::new();
    for s in &plan.steps {
        let url = match &s.kind {
            StepKind::Http(h) => h.url.as_literal(),
            StepKind::WsConnect { url, .. } => url.as_literal(),
            _ => None,
        };
        let port = url
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.port_or_known_default());
        if let Some(p) = port
            && !ports.contains(&p)
        {
            ports.push(p);
        }
    }
    ports
}

/// A [`RunConfig`] describing a VU run, for the parts of the report every run has.
fn report_config(
    args: &RunArgs,
    plan: &Plan,
    threads: usize,
    targets: Vec<Target>,
    command_line: Vec<String>,
) -> RunConfig {
    RunConfig {
        targets,
        sources: Vec::new(),
        threads,
        connections: plan
            .scenarios
            .iter()
            .map(|s| s.executor.max_vus() as usize)
            .sum(),
        model: LoadModel::Closed,
        stop: StopCondition {
            duration: Some(plan.max_duration()),
            requests: None,
        },
        connect_rate: args.connect_rate,
        max_connecting: None,
        churn: None,
        pipeline: 1,
        timeout: plan.timeout,
        request: RequestSpec {
            method: "GET".into(),
            headers: Vec::new(),
            body: Vec::new(),
        },
        late_after: args.late_after,
        report_interval: args.interval,
        command_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_forms_parse_and_bad_ones_explain() {
        assert_eq!(parse_backoff("none"), Ok(Backoff::None));
        assert_eq!(
            parse_backoff("2s"),
            Ok(Backoff::Fixed(Duration::from_secs(2)))
        );
        assert_eq!(
            parse_backoff("exp:100ms..5s"),
            Ok(Backoff::Exponential {
                base: Duration::from_millis(100),
                max: Duration::from_secs(5)
            })
        );
        let e = parse_backoff("exp:5s..1s").unwrap_err();
        assert!(e.contains("exp:100ms..5s"), "{e}");
        assert!(parse_backoff("soon").is_err());
    }

    /// One time-series point at `t_s` whose p95 and p99 (ms) differ, so the test can tell
    /// which one the spike check reads.
    fn point(t_s: f64, p95_ms: u64, p99_ms: u64) -> crate::report::TimePoint {
        crate::report::TimePoint {
            t_s,
            duration_s: 1.0,
            requests: 10,
            responses: 10,
            rps: 10.0,
            errors: 0,
            errors_by_kind: BTreeMap::new(),
            bytes_sent: 0,
            bytes_received: 0,
            connections_opened: 0,
            open_connections: 0,
            late: 0,
            latency_us: crate::report::IntervalLatency {
                count: 10,
                p50: 1_000,
                p90: p95_ms * 900,
                p95: p95_ms * 1000,
                p99: p99_ms * 1000,
                max: p99_ms * 1000,
            },
        }
    }

    #[test]
    fn spike_recovery_compares_p95_as_the_seed_plan_states() {
        use crate::scenario::model::Stage;
        let s = |secs| Duration::from_secs(secs);
        let sp = ScenarioPlan {
            name: "spike".into(),
            executor: Executor::RampingVus {
                start_vus: 1,
                stages: vec![
                    Stage {
                        duration: s(1),
                        target: 1.0,
                    },
                    Stage {
                        duration: s(2),
                        target: 1.0,
                    },
                    Stage {
                        duration: s(1),
                        target: 10.0,
                    },
                    Stage {
                        duration: s(2),
                        target: 1.0,
                    },
                ],
            },
            start: Duration::ZERO,
            graceful_stop: Duration::ZERO,
            flows: Vec::new(),
            vu_start_rate: None,
            backoff: Backoff::None,
            first_vu: 1,
        };
        // Baseline p95 10 ms; at the peak 100 ms; afterwards p95 is back to 11 ms while the
        // p99 stays at 90 ms (a tail the p95 check ignores).
        let series = [
            point(2.0, 10, 12),
            point(3.5, 100, 150),
            point(5.0, 11, 90),
            point(6.0, 11, 90),
        ];
        let r = spike_report(&sp, Duration::from_millis(500), 1.2, &series);
        assert_eq!(r.baseline_p95_ms, Some(10.0));
        assert_eq!(r.spike_p95_ms, Some(100.0));
        assert_eq!(r.recovered_p95_ms, Some(11.0));
        assert!(r.recovered, "{r:?}");
        // A p95 that stays high fails it.
        let series = [point(2.0, 10, 12), point(3.5, 100, 150), point(5.0, 50, 90)];
        let r = spike_report(&sp, Duration::from_millis(500), 1.2, &series);
        assert_eq!(r.recovered_p95_ms, Some(50.0));
        assert!(!r.recovered, "{r:?}");
    }
}
