//! `blaster merge`: one report from the reports of several load nodes that ran the same test
//! at the same time.
//!
//! Counts add up. Request latency is exact: every report embeds its full HdrHistogram
//! (`latency_histogram`), and the merged percentiles come from the sum of those histograms.
//! Connect latency and the per-interval latency of the time series carry only percentiles, so
//! their merged values are conservative (the worst node's), as documented in
//! docs/report-schema.md.
//!
//! The `scenario` and `ws` objects merge the same way: counts add up exactly (iterations,
//! per-name counts and failures, status codes, checks, sessions, messages, losses,
//! reconnects), their latency summaries are the worst node's. Thresholds cannot be evaluated
//! again from summaries, so each keeps the nodes' verdicts: it passes only if it passed on
//! every node, and its `observed` is the worst node's value (the largest for `<` conditions,
//! the smallest for `>`). The results of a special mode (`breakpoint`, `watch`, `spike`) are
//! the first node's.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::flow::{
    CheckResult, HerdReport, NameStats, ScenarioReport, ScenarioSummary, ThresholdResult, WsReport,
};
use super::{
    Bytes, Connections, Errors, Generator, LatencySummary, Report, TimePoint, decode_histogram,
    encode_histogram, summarize,
};
use crate::metrics::new_histogram;

#[derive(Debug, Error)]
pub enum MergeError {
    #[error("nothing to merge: give at least one report")]
    Empty,
    #[error(
        "report {index} has no latency histogram (latency_histogram is empty), so its latencies cannot be merged exactly; re-run it with this version of blaster"
    )]
    NoHistogram { index: usize },
    #[error("report {index} has an unreadable latency histogram: {reason}")]
    BadHistogram { index: usize, reason: String },
    #[error(
        "reports use different load models ({first} and {other}): merge runs of the same test only"
    )]
    MixedModels { first: String, other: String },
    #[error(
        "reports use different WebSocket modes ({first} and {other}): merge runs of the same test only"
    )]
    MixedWsModes { first: String, other: String },
}

/// Merges the reports of nodes that ran concurrently.
pub fn merge(reports: &[Report]) -> Result<Report, MergeError> {
    let first = reports.first().ok_or(MergeError::Empty)?;
    if let Some(other) = reports.iter().find(|r| r.model != first.model) {
        return Err(MergeError::MixedModels {
            first: first.model.clone(),
            other: other.model.clone(),
        });
    }
    let ws_reports: Vec<&WsReport> = reports.iter().filter_map(|r| r.ws.as_ref()).collect();
    if let (Some(a), Some(b)) = (
        ws_reports.first(),
        ws_reports.iter().find(|w| w.mode != ws_reports[0].mode),
    ) {
        return Err(MergeError::MixedWsModes {
            first: a.mode.clone(),
            other: b.mode.clone(),
        });
    }
    let mut latency = new_histogram();
    for (index, r) in reports.iter().enumerate() {
        if r.latency_histogram.is_empty() {
            if r.responses == 0 {
                continue;
            }
            return Err(MergeError::NoHistogram { index });
        }
        let h = decode_histogram(&r.latency_histogram).map_err(|e| MergeError::BadHistogram {
            index,
            reason: e.to_string(),
        })?;
        latency.add(&h).map_err(|e| MergeError::BadHistogram {
            index,
            reason: format!("{e:?}"),
        })?;
    }

    let sum = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
    let duration_s = reports.iter().map(|r| r.duration_s).fold(0.0, f64::max);
    let responses = sum(|r| r.responses);
    let threads: usize = reports.iter().map(|r| r.threads).sum();
    let cpu = |f: fn(&Report) -> f64| reports.iter().map(f).sum::<f64>();

    let mut targets: Vec<String> = Vec::new();
    for t in reports.iter().flat_map(|r| r.targets.iter()) {
        if !targets.contains(t) {
            targets.push(t.clone());
        }
    }
    let mut status_codes = BTreeMap::new();
    let mut by_kind = BTreeMap::new();
    for r in reports {
        for (code, n) in &r.status_codes {
            *status_codes.entry(code.clone()).or_insert(0) += n;
        }
        for (kind, n) in &r.errors.by_kind {
            *by_kind.entry(kind.clone()).or_insert(0) += n;
        }
    }
    let target_rate = reports
        .iter()
        .filter_map(|r| r.target_rate)
        .reduce(|a, b| a + b);
    let client_cpu_s = cpu(|r| r.client_cpu_s);
    let mut reasons = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        reasons.extend(
            r.generator
                .reasons
                .iter()
                .map(|why| format!("node {i}: {why}")),
        );
    }
    let generator = Generator {
        cpu_utilization: if threads > 0 && duration_s > 0.0 {
            client_cpu_s / (threads as f64 * duration_s)
        } else {
            0.0
        },
        loop_lag_p99_us: reports
            .iter()
            .map(|r| r.generator.loop_lag_p99_us)
            .max()
            .unwrap_or(0),
        loop_lag_max_us: reports
            .iter()
            .map(|r| r.generator.loop_lag_max_us)
            .max()
            .unwrap_or(0),
        late_by_generator: sum(|r| r.generator.late_by_generator),
        cq_overflows: sum(|r| r.generator.cq_overflows),
        recv_buffer_exhausted: sum(|r| r.generator.recv_buffer_exhausted),
        reasons,
    };
    let mut environment = first.environment.clone();
    let hosts: BTreeSet<&str> = reports
        .iter()
        .map(|r| r.environment.hostname.as_str())
        .collect();
    environment.hostname = hosts.into_iter().collect::<Vec<_>>().join(",");
    environment.cpus_online = reports.iter().map(|r| r.environment.cpus_online).sum();
    environment.cpus_allowed = reports.iter().map(|r| r.environment.cpus_allowed).sum();
    environment.memory_bytes = reports.iter().map(|r| r.environment.memory_bytes).sum();

    Ok(Report {
        blaster_version: env!("CARGO_PKG_VERSION").to_owned(),
        targets,
        model: first.model.clone(),
        threads,
        rings: reports.iter().map(|r| r.rings).sum(),
        concurrency: reports.iter().map(|r| r.concurrency).sum(),
        pipeline: first.pipeline,
        duration_s,
        requests: sum(|r| r.requests),
        responses,
        rps: if duration_s > 0.0 {
            responses as f64 / duration_s
        } else {
            0.0
        },
        target_rate,
        late: sum(|r| r.late),
        dropped: sum(|r| r.dropped),
        late_after_us: first.late_after_us,
        in_flight_at_end: sum(|r| r.in_flight_at_end),
        latency_us: summarize(&latency),
        connect_latency_us: worst_of(reports.iter().map(|r| &r.connect_latency_us)),
        status_codes,
        errors: Errors {
            total: sum(|r| r.errors.total),
            by_kind,
        },
        connections: Connections {
            opened: sum(|r| r.connections.opened),
            failed: sum(|r| r.connections.failed),
            closed_by_peer: sum(|r| r.connections.closed_by_peer),
            closed_on_error: sum(|r| r.connections.closed_on_error),
            reconnects: sum(|r| r.connections.reconnects),
            churned: sum(|r| r.connections.churned),
            // The nodes started together; every node must have had all its connections open.
            all_open_s: reports
                .iter()
                .map(|r| r.connections.all_open_s)
                .try_fold(0.0f64, |max, s| s.map(|s| max.max(s))),
            open_at_end: sum(|r| r.connections.open_at_end),
        },
        bytes: Bytes {
            sent: sum(|r| r.bytes.sent),
            received: sum(|r| r.bytes.received),
        },
        client_cpu_s,
        client_cpu_user_s: cpu(|r| r.client_cpu_user_s),
        client_cpu_system_s: cpu(|r| r.client_cpu_system_s),
        generator_bound: !generator.reasons.is_empty(),
        generator,
        interrupted: reports.iter().any(|r| r.interrupted),
        latency_histogram: encode_histogram(&latency).unwrap_or_default(),
        command_line: vec!["blaster".into(), "merge".into()],
        memory: merge_memory(reports),
        environment,
        report_interval_s: first.report_interval_s,
        timeseries: merge_timeseries(reports),
        scenario: merge_scenario(
            &reports
                .iter()
                .filter_map(|r| r.scenario.as_ref())
                .collect::<Vec<_>>(),
            duration_s,
        ),
        ws: merge_ws(&ws_reports, duration_s),
        // Each node read the probe over its own window; those overlap and do not add up.
        kernel: None,
    })
}

/// Memory adds up over the nodes; bytes per connection is weighted by each node's connections.
fn merge_memory(reports: &[Report]) -> super::Memory {
    let conns: u64 = reports.iter().map(|r| r.memory.peak_open_connections).sum();
    let weighted: u64 = reports
        .iter()
        .map(|r| r.memory.bytes_per_connection * r.memory.peak_open_connections)
        .sum();
    super::Memory {
        rss_start_bytes: reports.iter().map(|r| r.memory.rss_start_bytes).sum(),
        rss_peak_bytes: reports.iter().map(|r| r.memory.rss_peak_bytes).sum(),
        peak_open_connections: conns,
        bytes_per_connection: weighted.checked_div(conns).unwrap_or(0),
    }
}

/// Connect latency has no embedded histogram: counts and the mean combine exactly, the
/// percentiles and extremes take the worst node's value.
fn worst_of<'a>(summaries: impl Iterator<Item = &'a LatencySummary>) -> LatencySummary {
    let all: Vec<&LatencySummary> = summaries.collect();
    let count: u64 = all.iter().map(|s| s.count).sum();
    let mean = if count > 0 {
        all.iter().map(|s| s.mean * s.count as f64).sum::<f64>() / count as f64
    } else {
        0.0
    };
    let max_of = |f: fn(&LatencySummary) -> u64| all.iter().map(|s| f(s)).max().unwrap_or(0);
    LatencySummary {
        count,
        min: all
            .iter()
            .filter(|s| s.count > 0)
            .map(|s| s.min)
            .min()
            .unwrap_or(0),
        mean,
        stdev: all.iter().map(|s| s.stdev).fold(0.0, f64::max),
        p50: max_of(|s| s.p50),
        p90: max_of(|s| s.p90),
        p99: max_of(|s| s.p99),
        p999: max_of(|s| s.p999),
        p9999: max_of(|s| s.p9999),
        max: max_of(|s| s.max),
    }
}

/// Adds `from` into `into`, key by key.
fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, n) in from {
        *into.entry(k.clone()).or_insert(0) += n;
    }
}

fn per_s(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// The index of the first entry of `items` that `matches`, pushing `new()` when none does.
/// The index of the item `matches` finds, or of `new()` pushed at the end; and whether it is
/// new (then it already holds the node's values, which must not be added a second time).
fn slot<T>(
    items: &mut Vec<T>,
    matches: impl Fn(&T) -> bool,
    new: impl FnOnce() -> T,
) -> (usize, bool) {
    match items.iter().position(matches) {
        Some(i) => (i, false),
        None => {
            items.push(new());
            (items.len() - 1, true)
        }
    }
}

/// The nodes' `scenario` objects as one (see the module doc); `None` when no node has one.
fn merge_scenario(nodes: &[&ScenarioReport], duration_s: f64) -> Option<ScenarioReport> {
    let first = nodes.first()?;
    let mut scenarios: Vec<(ScenarioSummary, Vec<LatencySummary>)> = Vec::new();
    let mut names: Vec<(NameStats, Vec<LatencySummary>)> = Vec::new();
    // Per name, the sum of the nodes' histograms while every node has one.
    let mut name_hists: Vec<Option<hdrhistogram::Histogram<u64>>> = Vec::new();
    let mut checks: Vec<CheckResult> = Vec::new();
    let mut thresholds: Vec<(ThresholdResult, Vec<Option<f64>>)> = Vec::new();
    for sc in nodes {
        for s in &sc.scenarios {
            let (i, fresh) = slot(
                &mut scenarios,
                |(m, _)| m.name == s.name,
                || (s.clone(), Vec::new()),
            );
            let (m, lat) = &mut scenarios[i];
            if !fresh {
                m.iterations += s.iterations;
                m.interrupted_iterations += s.interrupted_iterations;
                m.dropped_iterations += s.dropped_iterations;
                m.late_iterations += s.late_iterations;
                m.vus_max += s.vus_max;
            }
            lat.push(s.iteration_duration_us);
        }
        for n in &sc.names {
            let (i, fresh) = slot(
                &mut names,
                |(m, _)| m.name == n.name && m.kind == n.kind && m.scenario == n.scenario,
                || (n.clone(), Vec::new()),
            );
            if name_hists.len() < names.len() {
                name_hists.push(Some(new_histogram()));
            }
            let decoded = decode_histogram(&n.latency_histogram).ok();
            name_hists[i] = match (name_hists[i].take(), decoded) {
                (Some(mut sum), Some(h)) => sum.add(&h).is_ok().then_some(sum),
                _ => None,
            };
            let (m, lat) = &mut names[i];
            if !fresh {
                m.count += n.count;
                m.failed += n.failed;
                m.msgs_sent += n.msgs_sent;
                m.msgs_received += n.msgs_received;
                m.retries += n.retries;
                m.retry_wait_ms += n.retry_wait_ms;
                add_counts(&mut m.status_codes, &n.status_codes);
                add_counts(&mut m.errors, &n.errors);
            }
            lat.push(n.latency_us);
        }
        for c in &sc.checks {
            let (i, fresh) = slot(
                &mut checks,
                |m| m.name == c.name && m.request == c.request,
                || c.clone(),
            );
            if !fresh {
                checks[i].passes += c.passes;
                checks[i].fails += c.fails;
            }
        }
        for t in &sc.thresholds {
            let (i, _) = slot(
                &mut thresholds,
                |(m, _)| m.metric == t.metric && m.condition == t.condition,
                || (t.clone(), Vec::new()),
            );
            let (m, observed) = &mut thresholds[i];
            m.passed &= t.passed;
            m.abort_on_fail |= t.abort_on_fail;
            observed.push(t.observed);
        }
    }
    let thresholds: Vec<ThresholdResult> = thresholds
        .into_iter()
        .map(|(mut t, observed)| {
            t.observed = worst_observed(t.operator(), &observed);
            t
        })
        .collect();
    Some(ScenarioReport {
        file: first.file.clone(),
        scenarios: scenarios
            .into_iter()
            .map(|(mut s, lat)| {
                s.iteration_duration_us = worst_of(lat.iter());
                s
            })
            .collect(),
        names: names
            .into_iter()
            .zip(name_hists)
            .map(|((mut n, lat), hist)| {
                // Exact from the summed histograms when every node had one; otherwise the
                // worst of the nodes' percentiles.
                match hist.filter(|h| h.len() == lat.iter().map(|l| l.count).sum::<u64>()) {
                    Some(h) => {
                        n.latency_us = summarize(&h);
                        n.latency_histogram = encode_histogram(&h).unwrap_or_default();
                    }
                    None => {
                        n.latency_us = worst_of(lat.iter());
                        // One node's histogram would pass for the merged one.
                        n.latency_histogram.clear();
                    }
                }
                n.error_rate = if n.count > 0 {
                    n.failed as f64 / n.count as f64
                } else {
                    0.0
                };
                n.rate = per_s(n.count, duration_s);
                n
            })
            .collect(),
        checks,
        thresholds_passed: nodes.iter().all(|sc| sc.thresholds_passed)
            && thresholds.iter().all(|t| t.passed),
        thresholds,
        aborted_by: nodes.iter().find_map(|sc| sc.aborted_by.clone()),
        vus_max: nodes.iter().map(|sc| sc.vus_max).sum(),
        // Each node's series has its own clock: only a single report keeps its own.
        series: if nodes.len() == 1 {
            first.series.clone()
        } else {
            None
        },
        // Results of a special mode describe one node's run: the first node's are kept.
        breakpoint: first.breakpoint.clone(),
        watch: first.watch.clone(),
        spike: first.spike.clone(),
    })
}

/// The value of the node nearest to failing a condition with `operator`: the largest for
/// `<`/`<=`, the smallest for `>`/`>=`, the first node's otherwise. `None` (no samples, which
/// fails) when any node had none.
fn worst_observed(operator: &str, observed: &[Option<f64>]) -> Option<f64> {
    let values: Option<Vec<f64>> = observed.iter().copied().collect();
    let values = values?;
    match operator {
        "<" | "<=" => values.into_iter().reduce(f64::max),
        ">" | ">=" => values.into_iter().reduce(f64::min),
        _ => values.first().copied(),
    }
}

/// The nodes' `ws` objects as one (see the module doc); `None` when no node has one.
fn merge_ws(nodes: &[&WsReport], duration_s: f64) -> Option<WsReport> {
    let first = nodes.first()?;
    let sum = |f: fn(&WsReport) -> u64| nodes.iter().map(|w| f(w)).sum::<u64>();
    let worst = |f: fn(&WsReport) -> &LatencySummary| worst_of(nodes.iter().map(|w| f(w)));
    let mut close_codes = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for w in nodes {
        add_counts(&mut close_codes, &w.close_codes);
        add_counts(&mut errors, &w.errors);
    }
    let herds: Vec<&HerdReport> = nodes.iter().filter_map(|w| w.herd.as_ref()).collect();
    // A node that never got its sessions back keeps the merge from getting them all back.
    let slowest = |f: fn(&HerdReport) -> Option<f64>| -> Option<f64> {
        herds
            .iter()
            .map(|h| f(h))
            .collect::<Option<Vec<f64>>>()?
            .into_iter()
            .reduce(f64::max)
    };
    let herd = (!herds.is_empty()).then(|| HerdReport {
        dropped: herds.iter().map(|h| h.dropped).sum(),
        back_50_s: slowest(|h| h.back_50_s),
        back_99_s: slowest(|h| h.back_99_s),
        back_100_s: slowest(|h| h.back_100_s),
    });
    let msgs_received = sum(|w| w.msgs_received);
    Some(WsReport {
        mode: first.mode.clone(),
        sessions: sum(|w| w.sessions),
        sessions_failed: sum(|w| w.sessions_failed),
        handshake_us: worst(|w| &w.handshake_us),
        session_duration_us: worst(|w| &w.session_duration_us),
        msg_latency_us: worst(|w| &w.msg_latency_us),
        ping_rtt_us: worst(|w| &w.ping_rtt_us),
        fanout_us: worst(|w| &w.fanout_us),
        msgs_sent: sum(|w| w.msgs_sent),
        msgs_received,
        msgs_received_per_s: per_s(msgs_received, duration_s),
        bytes_sent: sum(|w| w.bytes_sent),
        bytes_received: sum(|w| w.bytes_received),
        pings_sent: sum(|w| w.pings_sent),
        pongs_received: sum(|w| w.pongs_received),
        pings_answered: sum(|w| w.pings_answered),
        lost: sum(|w| w.lost),
        duplicates: sum(|w| w.duplicates),
        unanswered: sum(|w| w.unanswered),
        late: sum(|w| w.late),
        reconnects: sum(|w| w.reconnects),
        close_codes,
        errors,
        herd,
    })
}

/// Interval `i` of every node becomes interval `i` of the merge (the nodes started together):
/// counts add, latency percentiles take the worst node's.
fn merge_timeseries(reports: &[Report]) -> Vec<TimePoint> {
    let len = reports
        .iter()
        .map(|r| r.timeseries.len())
        .max()
        .unwrap_or(0);
    (0..len)
        .map(|i| {
            let points: Vec<&TimePoint> =
                reports.iter().filter_map(|r| r.timeseries.get(i)).collect();
            let sum = |f: fn(&TimePoint) -> u64| points.iter().map(|p| f(p)).sum::<u64>();
            let max = |f: fn(&TimePoint) -> u64| points.iter().map(|p| f(p)).max().unwrap_or(0);
            let duration_s = points.iter().map(|p| p.duration_s).fold(0.0, f64::max);
            let responses = sum(|p| p.responses);
            let mut errors_by_kind = BTreeMap::new();
            for p in &points {
                for (k, n) in &p.errors_by_kind {
                    *errors_by_kind.entry(k.clone()).or_insert(0) += n;
                }
            }
            TimePoint {
                t_s: points.iter().map(|p| p.t_s).fold(0.0, f64::max),
                duration_s,
                requests: sum(|p| p.requests),
                responses,
                rps: if duration_s > 0.0 {
                    responses as f64 / duration_s
                } else {
                    0.0
                },
                errors: sum(|p| p.errors),
                errors_by_kind,
                bytes_sent: sum(|p| p.bytes_sent),
                bytes_received: sum(|p| p.bytes_received),
                connections_opened: sum(|p| p.connections_opened),
                open_connections: sum(|p| p.open_connections),
                late: sum(|p| p.late),
                latency_us: super::IntervalLatency {
                    count: sum(|p| p.latency_us.count),
                    p50: max(|p| p.latency_us.p50),
                    p90: max(|p| p.latency_us.p90),
                    p95: max(|p| p.latency_us.p95),
                    p99: max(|p| p.latency_us.p99),
                    max: max(|p| p.latency_us.max),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LoadModel;
    use crate::metrics::WorkerMetrics;
    use crate::report::tests::{config, outcome};

    /// A report whose latencies are exactly `values` (µs).
    fn report_with(values: &[u64], requests: u64) -> Report {
        let mut o = outcome();
        let mut m = WorkerMetrics::new();
        for &v in values {
            m.record_response(200, v);
        }
        m.take_interval();
        m.requests = requests;
        o.metrics = m;
        Report::from_run(&config(LoadModel::Closed), &o)
    }

    #[test]
    fn latencies_merge_exactly_and_counts_add() {
        let a = report_with(&(1..=900).collect::<Vec<_>>(), 900);
        let b = report_with(&(10_000..10_100).collect::<Vec<_>>(), 100);
        let m = merge(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(m.requests, 1000);
        assert_eq!(m.responses, 1000);
        assert_eq!(m.latency_us.count, 1000);
        // 90% of samples are at most 900 µs; the top 10% are the second node's.
        let mut all = new_histogram();
        for v in (1..=900).chain(10_000..10_100) {
            all.record(v).unwrap();
        }
        assert_eq!(m.latency_us, summarize(&all));
        assert!(m.latency_us.p99 >= 10_000, "{:?}", m.latency_us);
        assert_eq!(m.status_codes["200"], 1000);
        assert_eq!(m.threads, a.threads + b.threads);
        assert_eq!(decode_histogram(&m.latency_histogram).unwrap().len(), 1000);
    }

    #[test]
    fn merging_one_report_keeps_its_latency() {
        let a = report_with(&[100, 200, 300], 3);
        let m = merge(std::slice::from_ref(&a)).unwrap();
        assert_eq!(m.latency_us, a.latency_us);
        assert_eq!(m.requests, a.requests);
    }

    fn scenario_node(duration_s: f64) -> Report {
        let mut r = report_with(&[100, 200], 2);
        r.model = "scenario".into();
        r.duration_s = duration_s;
        r.scenario = Some(crate::report::flow::tests::scenario_sample());
        let mut ws = crate::report::flow::tests::ws_sample();
        ws.msgs_received_per_s = ws.msgs_received as f64 / duration_s;
        r.ws = Some(ws);
        r
    }

    #[test]
    fn merging_one_scenario_report_keeps_its_objects() {
        let a = scenario_node(10.0);
        let m = merge(std::slice::from_ref(&a)).unwrap();
        assert_eq!(m.scenario, a.scenario);
        assert_eq!(m.ws, a.ws);
    }

    #[test]
    fn per_name_histograms_merge_exactly_and_series_are_dropped() {
        let node = |values: std::ops::Range<u64>| {
            let mut r = scenario_node(10.0);
            let mut h = new_histogram();
            for v in values {
                h.record(v).unwrap();
            }
            let sc = r.scenario.as_mut().unwrap();
            sc.names[0].count = h.len();
            sc.names[0].latency_us = summarize(&h);
            sc.names[0].latency_histogram = encode_histogram(&h).unwrap();
            r
        };
        let m = merge(&[node(1..1001), node(1001..2001)]).unwrap();
        let sc = m.scenario.as_ref().unwrap();
        let home = &sc.names[0];
        let h = decode_histogram(&home.latency_histogram).unwrap();
        assert_eq!(h.len(), 2000);
        // Exact: the median of 1..=2000, not the worse node's 1500.
        assert_eq!(home.latency_us.p50, h.value_at_quantile(0.5));
        assert!(
            (995..=1005).contains(&home.latency_us.p50),
            "{:?}",
            home.latency_us
        );
        // A name without histograms keeps the worst node's percentiles.
        assert!(sc.names[1].latency_histogram.is_empty());
        assert!(sc.series.is_none(), "each node's series has its own clock");
    }

    #[test]
    fn scenario_counts_add_and_thresholds_keep_the_worst_node() {
        let a = scenario_node(10.0);
        let mut b = scenario_node(10.0);
        {
            let sc = b.scenario.as_mut().unwrap();
            sc.scenarios[0].iterations = 500;
            sc.names[1].count = 500;
            sc.names[1].failed = 3;
            sc.names[1].latency_us.p99 = 20_000;
            sc.names[1].status_codes.insert("503".into(), 3);
            sc.names.push(NameStats {
                name: "only-on-b".into(),
                ..sc.names[0].clone()
            });
            sc.checks[1].passes = 500;
            sc.checks[1].fails = 0;
            // home p(95)<1200: passed on both, b is worse.
            sc.thresholds[0].observed = Some(30.0);
            // search p(99)<5: b passes, a failed: the merge fails with a's value.
            sc.thresholds[1].observed = Some(4.0);
            sc.thresholds[1].passed = true;
            // count>100: the smallest count is the worst.
            sc.thresholds[3].observed = Some(120.0);
            sc.thresholds[4].observed = Some(50.0);
            sc.aborted_by = Some("http_req_failed".into());
        }
        let m = merge(&[a.clone(), b]).unwrap();
        let sc = m.scenario.as_ref().unwrap();
        assert_eq!(sc.scenarios[0].iterations, 1_500);
        assert_eq!(sc.scenarios[0].vus_max, 34);
        assert_eq!(sc.scenarios[1].iterations, 500);
        let search = sc.names.iter().find(|n| n.name == "search").unwrap();
        assert_eq!((search.count, search.failed), (1_500, 40));
        assert!((search.error_rate - 40.0 / 1_500.0).abs() < 1e-12);
        assert_eq!(search.rate, 150.0);
        assert_eq!(search.status_codes["200"], 963 + 963);
        assert_eq!(search.status_codes["503"], 3);
        assert_eq!(search.errors["timeout"], 37 + 37);
        assert_eq!(search.latency_us.p99, 20_000, "worst node's percentile");
        assert_eq!(search.latency_us.count, 2_000);
        assert_eq!(sc.names.len(), 4);
        assert_eq!(sc.names[3].name, "only-on-b");
        assert_eq!((sc.checks[1].passes, sc.checks[1].fails), (1_463, 37));
        let t = &sc.thresholds;
        assert_eq!((t[0].observed, t[0].passed), (Some(30.0), true));
        assert_eq!((t[1].observed, t[1].passed), (Some(8.4), false));
        assert_eq!((t[3].observed, t[3].passed), (Some(120.0), true));
        // No samples on one node: no samples in the merge.
        assert_eq!((t[4].observed, t[4].passed), (None, false));
        assert!(!sc.thresholds_passed);
        assert_eq!(sc.aborted_by.as_deref(), Some("http_req_failed"));
        assert_eq!(sc.vus_max, 44);
    }

    #[test]
    fn ws_counts_add_and_herd_recovery_is_the_slowest_node() {
        let a = scenario_node(10.0);
        let mut b = scenario_node(10.0);
        {
            let ws = b.ws.as_mut().unwrap();
            ws.msg_latency_us.p99 = 9_999;
            ws.herd = Some(HerdReport {
                dropped: 7,
                back_50_s: Some(1.5),
                back_99_s: Some(2.0),
                back_100_s: Some(3.0),
            });
            ws.close_codes.insert("1006".into(), 2);
        }
        let m = merge(&[a, b]).unwrap();
        let ws = m.ws.unwrap();
        assert_eq!(ws.sessions, 240);
        assert_eq!(ws.msgs_received, 59_860);
        assert_eq!(ws.msgs_received_per_s, 5_986.0);
        assert_eq!((ws.lost, ws.reconnects), (82, 80));
        assert_eq!(ws.msg_latency_us.p99, 9_999);
        assert_eq!(ws.close_codes["1001"], 10);
        assert_eq!(ws.close_codes["1006"], 2);
        assert_eq!(ws.errors["eof"], 80);
        let herd = ws.herd.unwrap();
        assert_eq!(herd.dropped, 27);
        assert_eq!((herd.back_50_s, herd.back_99_s), (Some(1.5), Some(2.0)));
        assert_eq!(herd.back_100_s, None, "one node never got all back");
    }

    #[test]
    fn different_ws_modes_do_not_merge() {
        let a = scenario_node(10.0);
        let mut b = scenario_node(10.0);
        b.ws.as_mut().unwrap().mode = "pubsub".into();
        let err = merge(&[a, b]).unwrap_err().to_string();
        assert!(
            err.contains("different WebSocket modes (echo and pubsub)"),
            "{err}"
        );
    }

    #[test]
    fn bad_inputs_are_explained() {
        assert!(matches!(merge(&[]), Err(MergeError::Empty)));
        let mut a = report_with(&[100], 1);
        a.latency_histogram.clear();
        let err = merge(&[a]).unwrap_err().to_string();
        assert!(err.contains("no latency histogram"), "{err}");
        let b = report_with(&[100], 1);
        let mut c = report_with(&[100], 1);
        c.model = "open".into();
        assert!(
            merge(&[b, c])
                .unwrap_err()
                .to_string()
                .contains("different load models")
        );
    }
}
