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
    /// Per-name time series (absent from merged reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<super::series::SeriesReport>,
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

/// Latency around a spike, from the time series (per-interval p95, averaged by count: the
/// seed plan states its latency targets as p95).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpikeReport {
    pub scenario: String,
    /// Before the ramp to the peak.
    pub baseline_p95_ms: Option<f64>,
    /// While at the peak.
    pub spike_p95_ms: Option<f64>,
    /// From `recovery` after the spike ended to the end of the run.
    pub recovered_p95_ms: Option<f64>,
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
    /// `latency_us`'s histogram, encoded like the run's `latency_histogram` (for p95 in
    /// `blaster compare`); empty in merged reports and in reports of older versions.
    #[serde(default)]
    pub latency_histogram: String,
    pub status_codes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub msgs_sent: u64,
    pub msgs_received: u64,
    /// HTTP requests sent again after a retry status (`retry = { on = [...] }`), and the
    /// total time waited before them (Retry-After or the backoff), in milliseconds.
    #[serde(default)]
    pub retries: u64,
    #[serde(default)]
    pub retry_wait_ms: f64,
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

impl ThresholdResult {
    /// The metric name without its tag filter: `http_req_duration` of
    /// `http_req_duration{name:home}`.
    pub fn base_metric(&self) -> &str {
        self.metric
            .split_once('{')
            .map_or(self.metric.as_str(), |(m, _)| m)
            .trim()
    }

    /// The aggregation of the condition as written: `p(95)` of `p(95)<1200`.
    pub fn aggregation(&self) -> &str {
        let end = self
            .condition
            .find(['<', '>', '=', '!'])
            .unwrap_or(self.condition.len());
        self.condition[..end].trim()
    }

    /// The comparison of the condition: `<`, `<=`, `>`, `>=`, `==` or `!=` (empty when the
    /// condition has none).
    pub fn operator(&self) -> &str {
        let rest = &self.condition[self.aggregation().len()..];
        let end = rest
            .find(|c: char| !matches!(c, '<' | '>' | '=' | '!'))
            .unwrap_or(rest.len());
        &rest[..end]
    }

    /// `observed` for people, in the unit of the condition: `812.4 ms` for time metrics,
    /// `0.0123 (1.23%)` for rates, `1,234` for counts, `12.3/s` for per-second counter rates,
    /// `no samples` when there is no value.
    pub fn observed_text(&self) -> String {
        let Some(v) = self.observed else {
            return "no samples".to_owned();
        };
        if !v.is_finite() {
            return v.to_string();
        }
        let kind = METRICS
            .iter()
            .find(|(n, _)| *n == self.base_metric())
            .map_or(MetricKind::Gauge, |(_, k)| *k);
        let aggregation = self.aggregation();
        match (kind, aggregation) {
            (MetricKind::Trend, "count") | (MetricKind::Counter, "count") => count_text(v),
            (MetricKind::Trend, _) => format!("{} ms", trim_decimals(v, 3)),
            (MetricKind::Rate, _) => {
                format!("{} ({})", trim_decimals(v, 4), percent_text(v))
            }
            (MetricKind::Counter, "rate") => format!("{}/s", trim_decimals(v, 2)),
            _ => trim_decimals(v, 3),
        }
    }
}

/// `v` rounded to at most `decimals` decimals, without trailing zeros: `2.361`, `300`.
fn trim_decimals(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A whole count with thousands separators; fractional values keep two decimals.
fn count_text(v: f64) -> String {
    if v >= 0.0 && v.fract() == 0.0 && v < 1e18 {
        crate::cli::units::format_thousands(v as u64)
    } else {
        trim_decimals(v, 2)
    }
}

/// A fraction as a percentage: `50%`, `1.23%`, `0.0042%`.
fn percent_text(fraction: f64) -> String {
    let pct = fraction * 100.0;
    if pct == 0.0 || pct >= 10.0 {
        format!("{}%", trim_decimals(pct, 1))
    } else if pct < 0.01 {
        format!("{}%", trim_decimals(pct, 4))
    } else {
        format!("{}%", trim_decimals(pct, 2))
    }
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
                        latency_histogram: String::new(),
                        status_codes: BTreeMap::new(),
                        errors: BTreeMap::new(),
                        msgs_sent: 0,
                        msgs_received: 0,
                        retries: 0,
                        retry_wait_ms: 0.0,
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
            n.retries += st.retries;
            n.retry_wait_ms += st.retry_wait_us as f64 / 1000.0;
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
            // Encoding into memory only fails for absurd counts: then no histogram.
            n.latency_histogram = super::encode_histogram(h).unwrap_or_default();
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
            series: None,
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
        // Retries sent by steps with `retry` (a `status` tag does not apply: a retry is
        // counted by the step, not by the answer that caused it).
        "http_req_retries" => counter(
            steps()
                .filter(|(i, _)| i.class == StepClass::Http)
                .map(|(_, st)| st.retries)
                .sum(),
        ),
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn summary(count: u64, p50: u64, p99: u64, max: u64) -> LatencySummary {
        LatencySummary {
            count,
            min: p50 / 2,
            mean: p50 as f64 * 1.2,
            stdev: 10.0,
            p50,
            p90: (p50 + p99) / 2,
            p99,
            p999: max,
            p9999: max,
            max,
        }
    }

    fn threshold(
        metric: &str,
        condition: &str,
        observed: Option<f64>,
        passed: bool,
    ) -> ThresholdResult {
        ThresholdResult {
            metric: metric.to_owned(),
            condition: condition.to_owned(),
            observed,
            passed,
            abort_on_fail: false,
        }
    }

    /// Per-name series for renderer tests: "home" and "search" over 10 s, "buy" (tagged
    /// `group = ::checkout`) over the last 5.
    pub(crate) fn series_sample() -> crate::report::series::SeriesReport {
        use crate::report::IntervalLatency;
        use crate::report::series::{NamePoint, NameSeries, SeriesReport};
        let series = |name: &str, scenario: &str, from: u64, base: u64| NameSeries {
            name: name.to_owned(),
            kind: "http".to_owned(),
            scenario: scenario.to_owned(),
            tags: [
                ("name", name),
                ("scenario", scenario),
                ("group", "::checkout"),
            ]
            .into_iter()
            .filter(|(k, _)| *k != "group" || name == "buy")
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            points: (from..10)
                .map(|i| NamePoint {
                    start_s: i as f64,
                    t_s: (i + 1) as f64,
                    count: 100,
                    failed: 0,
                    rate: 100.0,
                    errors_by_kind: BTreeMap::new(),
                    latency_us: IntervalLatency {
                        count: 100,
                        p50: base,
                        p90: base * 2,
                        p95: base * 5 / 2,
                        p99: base * 3 + i * 10,
                        max: base * 4,
                    },
                })
                .collect(),
        };
        SeriesReport {
            interval_s: 1.0,
            intervals_per_point: 1,
            names_omitted: 0,
            names: vec![
                series("home", "browse", 0, 1_000),
                series("search", "browse", 0, 3_000),
                series("buy", "users", 5, 20_000),
            ],
        }
    }

    /// [`scenario_sample`] with the `search` name retried 12 times after 2.5 s of waits.
    pub(crate) fn retried_sample() -> ScenarioReport {
        let mut sc = scenario_sample();
        let search = sc
            .names
            .iter_mut()
            .find(|n| n.name == "search")
            .expect("the sample has a search name");
        search.retries = 12;
        search.retry_wait_ms = 2_500.0;
        sc
    }

    /// A scenario object for renderer tests: two scenarios, three names (one with failures),
    /// two checks (one failing) and five thresholds, two of them failed (one without
    /// samples).
    pub(crate) fn scenario_sample() -> ScenarioReport {
        let name = |name: &str, kind: &str, scenario: &str, count: u64, failed: u64| NameStats {
            name: name.to_owned(),
            kind: kind.to_owned(),
            scenario: scenario.to_owned(),
            count,
            failed,
            error_rate: failed as f64 / count as f64,
            rate: count as f64 / 10.0,
            latency_us: summary(count, 1_200, 8_400, 12_000),
            latency_histogram: String::new(),
            status_codes: BTreeMap::from([("200".to_owned(), count - failed)]),
            errors: if failed > 0 {
                BTreeMap::from([("timeout".to_owned(), failed)])
            } else {
                BTreeMap::new()
            },
            msgs_sent: 0,
            msgs_received: 0,
            retries: 0,
            retry_wait_ms: 0.0,
        };
        ScenarioReport {
            file: "shop.toml".to_owned(),
            scenarios: vec![
                ScenarioSummary {
                    name: "browse".to_owned(),
                    executor: "constant-arrival-rate".to_owned(),
                    iterations: 1_000,
                    interrupted_iterations: 2,
                    dropped_iterations: 3,
                    late_iterations: 4,
                    iteration_duration_us: summary(1_000, 2_000, 9_000, 15_000),
                    vus_max: 17,
                },
                ScenarioSummary {
                    name: "users".to_owned(),
                    executor: "ramping-vus".to_owned(),
                    iterations: 250,
                    interrupted_iterations: 0,
                    dropped_iterations: 0,
                    late_iterations: 0,
                    iteration_duration_us: summary(250, 100_000, 104_000, 105_000),
                    vus_max: 5,
                },
            ],
            names: vec![
                name("home", "http", "browse", 1_000, 0),
                name("search", "http", "browse", 1_000, 37),
                name("buy", "http", "users", 250, 0),
            ],
            checks: vec![
                CheckResult {
                    name: "home is 200".to_owned(),
                    request: "home".to_owned(),
                    passes: 1_000,
                    fails: 0,
                },
                CheckResult {
                    name: "search has results".to_owned(),
                    request: "search".to_owned(),
                    passes: 963,
                    fails: 37,
                },
            ],
            thresholds: vec![
                threshold(
                    "http_req_duration{name:home}",
                    "p(95)<1200",
                    Some(8.4),
                    true,
                ),
                threshold(
                    "http_req_duration{name:search}",
                    "p(99)<5",
                    Some(8.4),
                    false,
                ),
                threshold("http_req_failed", "rate<0.01", Some(0.0148), false),
                threshold("http_reqs{name:buy}", "count>100", Some(250.0), true),
                threshold("ws_msg_latency", "p(95)<100", None, false),
            ],
            thresholds_passed: false,
            aborted_by: None,
            vus_max: 22,
            series: Some(series_sample()),
            breakpoint: None,
            watch: None,
            spike: None,
        }
    }

    /// [`scenario_sample`] with the results of all three special modes: a breakpoint at
    /// 300/s, a spike that did not recover, a rising soak gauge with a failed poll.
    pub(crate) fn special_sample() -> ScenarioReport {
        ScenarioReport {
            series: None,
            breakpoint: Some(BreakpointReport {
                scenario: "browse".to_owned(),
                last_passing_rate: Some(250.0),
                broke_at_rate: Some(300.0),
                broken_by: Some("http_req_failed rate<0.01 (measured 0.031)".to_owned()),
            }),
            spike: Some(SpikeReport {
                scenario: "users".to_owned(),
                baseline_p95_ms: Some(4.0),
                spike_p95_ms: Some(80.5),
                recovered_p95_ms: Some(9.25),
                tolerance: 1.5,
                recovered: false,
            }),
            watch: Some(WatchReport {
                url: "http://127.0.0.1:9/stats".to_owned(),
                metric: "memory_usage_mb".to_owned(),
                samples: vec![[10.0, 100.0], [20.0, 110.0], [30.0, 121.0]],
                errors: 1,
                first_errors: vec!["connection refused".to_owned()],
                growth_per_hour: Some(3_780.0),
                max_growth_per_hour: Some(50.0),
                rising: true,
            }),
            ..scenario_sample()
        }
    }

    /// A WebSocket object for renderer tests: echo with losses, pings and a herd recovery.
    pub(crate) fn ws_sample() -> WsReport {
        WsReport {
            mode: "echo".to_owned(),
            sessions: 120,
            sessions_failed: 3,
            handshake_us: summary(123, 2_500, 7_600, 8_000),
            session_duration_us: summary(120, 2_900_000, 3_000_000, 3_000_000),
            msg_latency_us: summary(29_930, 140, 4_700, 7_800),
            ping_rtt_us: summary(278, 90, 400, 600),
            fanout_us: LatencySummary::default(),
            msgs_sent: 30_000,
            msgs_received: 29_930,
            msgs_received_per_s: 9_976.7,
            bytes_sent: 1_920_000,
            bytes_received: 1_915_520,
            pings_sent: 280,
            pongs_received: 278,
            pings_answered: 0,
            lost: 41,
            duplicates: 2,
            unanswered: 29,
            late: 212,
            reconnects: 40,
            close_codes: BTreeMap::from([("1001".to_owned(), 5)]),
            errors: BTreeMap::from([("eof".to_owned(), 40)]),
            herd: Some(HerdReport {
                dropped: 20,
                back_50_s: Some(0.0755),
                back_99_s: Some(0.0969),
                back_100_s: None,
            }),
        }
    }

    #[test]
    fn threshold_parts_and_observed_values_read_in_their_units() {
        let t = threshold(
            "http_req_duration{name:home}",
            "p(95)<1200",
            Some(2.3614),
            true,
        );
        assert_eq!(t.base_metric(), "http_req_duration");
        assert_eq!(t.aggregation(), "p(95)");
        assert_eq!(t.operator(), "<");
        assert_eq!(t.observed_text(), "2.361 ms");
        let t = threshold("http_req_failed", "rate<=0.01", Some(0.0123), false);
        assert_eq!((t.aggregation(), t.operator()), ("rate", "<="));
        assert_eq!(t.observed_text(), "0.0123 (1.23%)");
        let t = threshold("checks", "rate>0.99", Some(0.5), false);
        assert_eq!(t.observed_text(), "0.5 (50%)");
        let t = threshold("http_reqs{status:404}", "count>100", Some(12_345.0), true);
        assert_eq!(t.observed_text(), "12,345");
        let t = threshold("http_reqs", "rate>10", Some(97.5211), true);
        assert_eq!(t.observed_text(), "97.52/s");
        let t = threshold("iteration_duration", "count>=10", Some(300.0), true);
        assert_eq!(t.observed_text(), "300");
        let t = threshold("vus", "value<=50", Some(20.0), true);
        assert_eq!(t.observed_text(), "20");
        let t = threshold("ws_msg_latency", "p(95)<100", None, false);
        assert_eq!(t.observed_text(), "no samples");
    }
}
