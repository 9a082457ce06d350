//! `blaster merge`: one report from the reports of several load nodes that ran the same test
//! at the same time.
//!
//! Counts add up. Request latency is exact: every report embeds its full HdrHistogram
//! (`latency_histogram`), and the merged percentiles come from the sum of those histograms.
//! Connect latency and the per-interval latency of the time series carry only percentiles, so
//! their merged values are conservative (the worst node's), as documented in
//! docs/report-schema.md.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

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
        scenario: None,
        ws: None,
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
