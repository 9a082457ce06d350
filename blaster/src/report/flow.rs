//! The report of virtual-user runs: per-scenario iterations, per-name statistics, checks,
//! threshold results (scenario files) and the WebSocket object (any run with WebSocket
//! sessions). Plain data built from [`FlowMetrics`]; renderers format it.
//!
//! Threshold evaluation lives here too: a threshold selects the step series whose static tags
//! match its filter (plus the dynamic `status` tag of HTTP counts), merges them and applies
//! its aggregation, the way k6 defines its metrics.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::{LatencySummary, summarize};
use crate::engine::vu::plan::{Plan, StepClass, StepInfo};
use crate::metrics::flow::FlowMetrics;
use crate::metrics::new_histogram;
use crate::scenario::model::{Aggregation, METRICS, MetricKind, Threshold};

/// Scenario-file results (`scenario` in the JSON report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// The scenario file as given.
    pub file: String,
    pub scenarios: Vec<ScenarioSummary>,
    /// Per request name (the `name` tag), in first-seen order.
    pub names: Vec<NameStats>,
    pub checks: Vec<CheckResult>,
    pub thresholds: Vec<ThresholdResult>,
    /// Every threshold passed (true when there are none).
    pub thresholds_passed: bool,
    /// The threshold whose failure stopped the run early (abort_on_fail), if any.
    pub aborted_by: Option<String>,
    /// Most VUs running at once.
    pub vus_max: u64,
    /// The breakpoint search's result (`[special.breakpoint]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakpoint: Option<BreakpointReport>,
    /// The soak watcher's samples and trend (`[special.soak]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchReport>,
    /// Latency before, during and after the spike (`[special.spike]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spike: Option<SpikeReport>,
}

/// The soak watcher's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchReport {
    pub url: String,
    /// The gauge the value feeds (usable in thresholds).
    pub metric: String,
    /// (seconds since the start, value) per successful poll.
    pub samples: Vec<[f64; 2]>,
    /// Polls that failed, with the first few reasons.
    pub errors: u64,
    pub first_errors: Vec<String>,
    /// Least-squares growth of the value per hour (`null` with fewer than two samples).
    pub growth_per_hour: Option<f64>,
    pub max_growth_per_hour: Option<f64>,
    /// The growth exceeded `max_growth_per_hour` (a leak is suspected).
    pub rising: bool,
}

/// Latency around a spike, from the time series (per-interval p99, averaged by count).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpikeReport {
    pub scenario: String,
    /// Before the ramp to the peak.
    pub baseline_p99_ms: Option<f64>,
    /// While at the peak.
    pub spike_p99_ms: Option<f64>,
    /// From `recovery` after the spike ended to the end of the run.
    pub recovered_p99_ms: Option<f64>,
    /// The allowed factor over the baseline.
    pub tolerance: f64,
    /// recovered <= tolerance * baseline.
    pub recovered: bool,
}

/// Where the load broke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakpointReport {
    /// The scenario whose arrival rate was stepped.
    pub scenario: String,
    /// The highest rate (iterations/s) whose whole step kept every abort-on-fail threshold.
    pub last_passing_rate: Option<f64>,
    /// The rate of the step during which a threshold failed (`null`: none failed).
    pub broke_at_rate: Option<f64>,
    /// The threshold that failed, with its measured value.
    pub broken_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSummary {
    pub name: String,
    pub executor: String,
    pub iterations: u64,
    pub interrupted_iterations: u64,
    pub dropped_iterations: u64,
    pub late_iterations: u64,
    pub iteration_duration_us: LatencySummary,
    pub vus_max: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameStats {
    pub name: String,
    /// `http`, `ws_connect`, `ws_send`, `ws_expect`, `ws_subscribe` or `ws_close`.
    pub kind: String,
    pub scenario: String,
    /// Samples: requests, handshakes, messages.
    pub count: u64,
    pub failed: u64,
    pub error_rate: f64,
    /// Samples per second over the run.
    pub rate: f64,
    /// Request duration (http), handshake (ws_connect) or message latency (ws_expect).
    pub latency_us: LatencySummary,
    pub status_codes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub msgs_sent: u64,
    pub msgs_received: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    /// The request name the check belongs to.
    pub request: String,
    pub passes: u64,
    pub fails: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// `metric{tag:value}` as written.
    pub metric: String,
    /// `p(95)<1200` as written.
    pub condition: String,
    /// The measured value (ms for time metrics), `null` when the metric had no samples.
    pub observed: Option<f64>,
    pub passed: bool,
    pub abort_on_fail: bool,
}

/// WebSocket results (`ws` in the JSON report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WsReport {
    /// `hold`, `echo` or `pubsub` for `blaster run ws://…`; `scenario` for scenario files.
    pub mode: String,
    pub sessions: u64,
    pub sessions_failed: u64,
    pub handshake_us: LatencySummary,
    pub session_duration_us: LatencySummary,
    pub msg_latency_us: LatencySummary,
    pub ping_rtt_us: LatencySummary,
    /// Pub/sub: per message delivered to several subscribers, last minus first delivery.
    pub fanout_us: LatencySummary,
    pub msgs_sent: u64,
    pub msgs_received: u64,
    pub msgs_received_per_s: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub pings_sent: u64,
    pub pongs_received: u64,
    pub pings_answered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub unanswered: u64,
    pub late: u64,
    pub reconnects: u64,
    pub close_codes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Recovery after the largest mass drop, if there was one.
    pub herd: Option<HerdReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HerdReport {
    pub dropped: u64,
    pub back_50_s: Option<f64>,
    pub back_99_s: Option<f64>,
    pub back_100_s: Option<f64>,
}

impl WsReport {
    pub fn build(
        mode: &str,
        flow: &FlowMetrics,
        duration_s: f64,
        sessions_wanted: u64,
    ) -> WsReport {
        let ws = &flow.ws;
        WsReport {
            mode: mode.to_owned(),
            sessions: ws.sessions,
            sessions_failed: ws.sessions_failed,
            handshake_us: summarize(&ws.handshake),
            session_duration_us: summarize(&ws.session_duration),
            msg_latency_us: summarize(&ws.msg_latency),
            ping_rtt_us: summarize(&ws.ping_rtt),
            fanout_us: summarize(&ws.fanout()),
            msgs_sent: ws.msgs_sent,
            msgs_received: ws.msgs_received,
            msgs_received_per_s: per_s(ws.msgs_received, duration_s),
            bytes_sent: ws.bytes_sent,
            bytes_received: ws.bytes_received,
            pings_sent: ws.pings_sent,
            pongs_received: ws.pongs_received,
            pings_answered: ws.pings_answered,
            lost: ws.lost,
            duplicates: ws.duplicates,
            unanswered: ws.unanswered,
            late: ws.late,
            reconnects: ws.reconnects,
            close_codes: ws
                .close_codes
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            errors: ws
                .errors
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            herd: ws.herd(sessions_wanted).map(|h| HerdReport {
                dropped: h.dropped,
                back_50_s: h.back_50_s,
                back_99_s: h.back_99_s,
                back_100_s: h.back_100_s,
            }),
        }
    }
}

fn per_s(n: u64, s: f64) -> f64 {
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

impl ScenarioReport {
    pub fn build(
        file: &str,
        plan: &Plan,
        flow: &FlowMetrics,
        duration_s: f64,
        extra: &BTreeMap<String, Gauge>,
        aborted_by: Option<String>,
    ) -> ScenarioReport {
        let scenarios = plan
            .scenarios
            .iter()
            .zip(&flow.scenarios)
            .map(|(p, s)| ScenarioSummary {
                name: p.name.clone(),
                executor: p.executor.name().to_owned(),
                iterations: s.iterations,
                interrupted_iterations: s.interrupted,
                dropped_iterations: s.dropped,
                late_iterations: s.late,
                iteration_duration_us: summarize(&s.duration),
                vus_max: s.vus_max,
            })
            .collect();
        let mut names: Vec<NameStats> = Vec::new();
        let mut hists: Vec<Histogram<u64>> = Vec::new();
        for (info, st) in plan.steps.iter().zip(&flow.steps) {
            if info.class == StepClass::WsClose {
                continue;
            }
            let scenario = &plan.scenarios[info.scenario].name;
            let i = match names
                .iter()
                .position(|n| n.name == info.name && n.kind == info.class.name())
            {
                Some(i) => i,
                None => {
                    names.push(NameStats {
                        name: info.name.clone(),
                        kind: info.class.name().to_owned(),
                        scenario: scenario.clone(),
                        count: 0,
                        failed: 0,
                        error_rate: 0.0,
                        rate: 0.0,
                        latency_us: LatencySummary::default(),
                        status_codes: BTreeMap::new(),
                        errors: BTreeMap::new(),
                        msgs_sent: 0,
                        msgs_received: 0,
                    });
                    hists.push(new_histogram());
                    names.len() - 1
                }
            };
            let n = &mut names[i];
            n.count += st.count;
            n.failed += st.failed;
            n.msgs_sent += st.msgs_sent;
            n.msgs_received += st.msgs_received;
            for (s, c) in &st.statuses {
                *n.status_codes.entry(s.to_string()).or_insert(0) += c;
            }
            for (k, c) in &st.errors {
                *n.errors.entry((*k).to_owned()).or_insert(0) += c;
            }
            hists[i].add(&st.duration).expect("same bounds");
        }
        for (n, h) in names.iter_mut().zip(&hists) {
            n.latency_us = summarize(h);
            n.error_rate = if n.count > 0 {
                n.failed as f64 / n.count as f64
            } else {
                0.0
            };
            n.rate = per_s(n.count, duration_s);
        }
        let mut checks = Vec::new();
        for (info, st) in plan.steps.iter().zip(&flow.steps) {
            if let Some(h) = info.http() {
                for (c, (p, f)) in h.checks.iter().zip(&st.checks) {
                    checks.push(CheckResult {
                        name: c.name.clone(),
                        request: info.name.clone(),
                        passes: *p,
                        fails: *f,
                    });
                }
            }
        }
        let thresholds: Vec<ThresholdResult> = plan
            .file
            .thresholds
            .iter()
            .flat_map(|t| evaluate(t, plan, flow, duration_s, extra))
            .collect();
        ScenarioReport {
            file: file.to_owned(),
            scenarios,
            names,
            checks,
            thresholds_passed: thresholds.iter().all(|t| t.passed),
            thresholds,
            aborted_by,
            vus_max: flow.vus_max,
            breakpoint: None,
            watch: None,
            spike: None,
        }
    }
}

/// A gauge's samples (the soak watcher's polled value): last, smallest and largest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gauge {
    pub last: f64,
    pub min: f64,
    pub max: f64,
}

/// Whether a step's static tags satisfy a filter (the `status` key is handled by callers).
fn matches(info: &StepInfo, tags: &[(String, String)]) -> bool {
    tags.iter()
        .filter(|(k, _)| k != "status" && k != "check")
        .all(|(k, v)| info.tag(k) == Some(v.as_str()))
}

/// Evaluates every condition of a threshold.
pub fn evaluate(
    t: &Threshold,
    plan: &Plan,
    flow: &FlowMetrics,
    duration_s: f64,
    extra: &BTreeMap<String, Gauge>,
) -> Vec<ThresholdResult> {
    let selector = t.selector();
    t.conditions
        .iter()
        .map(|c| {
            let observed = observe(t, c.aggregation, plan, flow, duration_s, extra);
            ThresholdResult {
                metric: selector.clone(),
                condition: c.to_string(),
                observed,
                passed: observed.is_some_and(|o| c.holds(o)),
                abort_on_fail: t.abort_on_fail,
            }
        })
        .collect()
}

/// The value of `aggregation` over the samples a threshold selects; `None` with no samples.
pub fn observe(
    t: &Threshold,
    aggregation: Aggregation,
    plan: &Plan,
    flow: &FlowMetrics,
    duration_s: f64,
    extra: &BTreeMap<String, Gauge>,
) -> Option<f64> {
    let kind = METRICS
        .iter()
        .find(|(n, _)| *n == t.metric)
        .map_or(MetricKind::Gauge, |(_, k)| *k);
    let status: Option<u16> = t
        .tags
        .iter()
        .find(|(k, _)| k == "status")
        .and_then(|(_, v)| v.parse().ok());
    let check_name = t
        .tags
        .iter()
        .find(|(k, _)| k == "check")
        .map(|(_, v)| v.as_str());
    let steps = || {
        plan.steps
            .iter()
            .zip(&flow.steps)
            .filter(|(info, _)| matches(info, &t.tags))
    };
    let of_class = |class: StepClass| {
        let mut h = new_histogram();
        for (_, st) in steps().filter(|(i, _)| i.class == class) {
            h.add(&st.duration).expect("same bounds");
        }
        h
    };
    let scenario_ok = |name: &str| t.tags.iter().all(|(k, v)| k != "scenario" || v == name);
    let trend = |h: &Histogram<u64>| trend_value(h, aggregation);
    let counter = |n: u64| match aggregation {
        Aggregation::Rate => Some(per_s(n, duration_s)),
        _ => Some(n as f64),
    };
    let rate = |good: u64, total: u64| (total > 0).then(|| good as f64 / total as f64);
    let untagged = t.tags.is_empty();
    match t.metric.as_str() {
        "http_req_duration" => trend(&of_class(StepClass::Http)),
        "http_req_failed" => {
            let (mut failed, mut total) = (0, 0);
            for (info, st) in steps().filter(|(i, _)| i.class == StepClass::Http) {
                match status {
                    Some(s) => {
                        let n = st.statuses.get(&s).copied().unwrap_or(0);
                        total += n;
                        if !info.http().is_some_and(|h| h.is_expected(s)) {
                            failed += n;
                        }
                    }
                    None => {
                        failed += st.failed;
                        total += st.count;
                    }
                }
            }
            rate(failed, total)
        }
        "http_reqs" => {
            let n = steps()
                .filter(|(i, _)| i.class == StepClass::Http)
                .map(|(_, st)| match status {
                    Some(s) => st.statuses.get(&s).copied().unwrap_or(0),
                    None => st.count,
                })
                .sum();
            counter(n)
        }
        "checks" => {
            let (mut pass, mut total) = (0, 0);
            for (info, st) in steps() {
                if let Some(h) = info.http() {
                    for (c, (p, f)) in h.checks.iter().zip(&st.checks) {
                        if check_name.is_none_or(|n| n == c.name) {
                            pass += p;
                            total += p + f;
                        }
                    }
                }
            }
            rate(pass, total)
        }
        "iterations" | "dropped_iterations" | "iteration_duration" => {
            let mut h = new_histogram();
            let mut n = 0;
            for (p, s) in plan.scenarios.iter().zip(&flow.scenarios) {
                if scenario_ok(&p.name) {
                    h.add(&s.duration).expect("same bounds");
                    n += if t.metric == "dropped_iterations" {
                        s.dropped
                    } else {
                        s.iterations
                    };
                }
            }
            if t.metric == "iteration_duration" {
                trend(&h)
            } else {
                counter(n)
            }
        }
        "ws_msg_latency" => {
            if untagged {
                trend(&flow.ws.msg_latency)
            } else {
                trend(&of_class(StepClass::WsExpect))
            }
        }
        "ws_connect_duration" => {
            if untagged {
                trend(&flow.ws.handshake)
            } else {
                trend(&of_class(StepClass::WsConnect))
            }
        }
        "ws_session_duration" => trend(&flow.ws.session_duration),
        "ws_session_failed" => rate(
            flow.ws.sessions_failed,
            flow.ws.sessions + flow.ws.sessions_failed,
        ),
        "ws_msgs_received" => counter(if untagged {
            flow.ws.msgs_received
        } else {
            steps().map(|(_, st)| st.msgs_received).sum()
        }),
        "ws_msgs_sent" => counter(if untagged {
            flow.ws.msgs_sent
        } else {
            steps().map(|(_, st)| st.msgs_sent).sum()
        }),
        "ws_sessions" => counter(flow.ws.sessions),
        // The run's socket bytes, when the caller knows them; else WebSocket payload bytes.
        "data_received" => counter(
            extra
                .get("data_received")
                .map_or(flow.ws.bytes_received, |g| g.last as u64),
        ),
        "data_sent" => counter(
            extra
                .get("data_sent")
                .map_or(flow.ws.bytes_sent, |g| g.last as u64),
        ),
        "vus" | "vus_max" => Some(flow.vus_max as f64),
        other => {
            extra
                .get(other)
                .filter(|_| kind == MetricKind::Gauge)
                .map(|g| match aggregation {
                    Aggregation::Min => g.min,
                    Aggregation::Max => g.max,
                    _ => g.last,
                })
        }
    }
}

/// A time aggregation of a histogram in µs, in milliseconds; `None` when empty.
fn trend_value(h: &Histogram<u64>, aggregation: Aggregation) -> Option<f64> {
    if h.is_empty() {
        return None;
    }
    let us = match aggregation {
        Aggregation::Avg => h.mean(),
        Aggregation::Min => h.min() as f64,
        Aggregation::Max => h.max() as f64,
        Aggregation::Med => h.value_at_quantile(0.5) as f64,
        Aggregation::P(p) => h.value_at_quantile(p / 100.0) as f64,
        Aggregation::Count => return Some(h.len() as f64),
        Aggregation::Rate | Aggregation::Value => return None,
    };
    Some(us / 1000.0)
}
