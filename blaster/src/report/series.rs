//! Per-name time series of scenario runs (`scenario.series` in the JSON report): for each
//! request name, per interval, its samples, failures by kind, rate and latency percentiles.
//!
//! The observer feeds every merged [`IntervalPoint`] to a [`SeriesBuilder`], which sums the
//! interval's steps by request name (the same `(name, kind)` key as the per-name table) and
//! keeps only the summary of each point, never its histogram.
//!
//! Memory is bounded: at most [`MAX_SERIES_NAMES`] names get a series (the first ones in file
//! order; `names_omitted` counts the rest), and the series together keep at most
//! [`MAX_SERIES_POINTS`] points. When a new interval would go beyond that, every series is
//! made twice as coarse (pairs of neighbouring points merged, and later points cover twice as
//! many intervals): counts stay exact, and the percentiles of a point that covers several
//! intervals are the largest of theirs (an upper bound). `intervals_per_point` says how
//! coarse it ended. No histogram is kept between intervals: the builder's memory is its
//! points.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::IntervalLatency;
use crate::engine::vu::plan::{Plan, StepClass};
use crate::metrics::interval::IntervalPoint;
use crate::metrics::new_histogram;

/// Most names that get a series.
pub const MAX_SERIES_NAMES: usize = 256;
/// Most points kept over all series (about 200 bytes each in memory).
pub const MAX_SERIES_POINTS: usize = 100_000;

/// `scenario.series` in the JSON report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesReport {
    /// The report interval, in seconds.
    pub interval_s: f64,
    /// Report intervals per point: 1 unless the series were made coarser to stay within the
    /// memory bound.
    pub intervals_per_point: u64,
    /// Names beyond the first [`MAX_SERIES_NAMES`] (they have no series).
    pub names_omitted: u64,
    /// One series per request name, in the order of `scenario.names`.
    pub names: Vec<NameSeries>,
}

/// One request name's series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameSeries {
    pub name: String,
    /// As in `scenario.names[].kind`.
    pub kind: String,
    pub scenario: String,
    /// The static tags every step of this name shares (`scenario`, `name`, `group`,
    /// `method`, file tags, …), for grouping series by tag.
    pub tags: BTreeMap<String, String>,
    /// One point per interval in which the name took samples (others are left out).
    pub points: Vec<NamePoint>,
}

/// One name during one interval (or `intervals_per_point` intervals).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamePoint {
    /// Start and end of the point, in seconds since the load started.
    pub start_s: f64,
    pub t_s: f64,
    /// Samples taken (requests, handshakes, messages) and how many failed.
    pub count: u64,
    pub failed: u64,
    /// Samples per second over the point.
    pub rate: f64,
    /// Failed samples by kind (non-zero kinds only).
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Latency (request duration, handshake, message latency) of the point's samples.
    pub latency_us: IntervalLatency,
}

/// One name's samples during the interval being added.
#[derive(Default)]
struct Touched<'a> {
    count: u64,
    failed: u64,
    errors: BTreeMap<&'static str, u64>,
    latency: Vec<&'a Histogram<u64>>,
}

/// Builds a [`SeriesReport`] from a run's interval points.
pub struct SeriesBuilder {
    /// Step id -> series index (`None`: a ws_close step or an omitted name).
    steps: Vec<Option<usize>>,
    series: Vec<NameSeries>,
    interval_ns: u64,
    stride: u64,
    names_omitted: u64,
    max_points: usize,
}

impl SeriesBuilder {
    pub fn new(plan: &Plan, interval_ns: u64) -> SeriesBuilder {
        Self::with_limits(plan, interval_ns, MAX_SERIES_NAMES, MAX_SERIES_POINTS)
    }

    pub fn with_limits(
        plan: &Plan,
        interval_ns: u64,
        max_names: usize,
        max_points: usize,
    ) -> SeriesBuilder {
        let mut series: Vec<NameSeries> = Vec::new();
        let mut omitted: Vec<(&str, &str)> = Vec::new();
        let mut steps = Vec::with_capacity(plan.steps.len());
        for info in &plan.steps {
            if info.class == StepClass::WsClose {
                steps.push(None);
                continue;
            }
            let kind = info.class.name();
            let tags: BTreeMap<String, String> = info.tags.iter().cloned().collect();
            match series
                .iter()
                .position(|s| s.name == info.name && s.kind == kind)
            {
                Some(i) => {
                    // Keep the tags all steps of the name share.
                    series[i].tags.retain(|k, v| tags.get(k) == Some(v));
                    steps.push(Some(i));
                }
                None if series.len() < max_names => {
                    series.push(NameSeries {
                        name: info.name.clone(),
                        kind: kind.to_owned(),
                        scenario: plan.scenarios[info.scenario].name.clone(),
                        tags,
                        points: Vec::new(),
                    });
                    steps.push(Some(series.len() - 1));
                }
                None => {
                    if !omitted.contains(&(info.name.as_str(), kind)) {
                        omitted.push((info.name.as_str(), kind));
                    }
                    steps.push(None);
                }
            }
        }
        SeriesBuilder {
            steps,
            series,
            interval_ns: interval_ns.max(1),
            stride: 1,
            names_omitted: omitted.len() as u64,
            max_points: max_points.max(1),
        }
    }

    /// Adds one merged interval.
    pub fn push(&mut self, p: &IntervalPoint) {
        let mut touched: BTreeMap<usize, Touched> = BTreeMap::new();
        let coarse = p.index / self.stride;
        for (&id, st) in &p.steps {
            let Some(Some(i)) = self.steps.get(id as usize).copied() else {
                continue;
            };
            let e = touched.entry(i).or_default();
            e.count += st.count;
            e.failed += st.failed;
            for (k, n) in &st.errors {
                *e.errors.entry(k).or_insert(0) += n;
            }
            e.latency.push(&st.latency);
        }
        let start_ns = coarse * self.stride * self.interval_ns;
        for (i, t) in touched {
            if t.count == 0 && t.failed == 0 {
                continue;
            }
            // One step: its histogram as is; several steps of one name: merged for this
            // interval only (nothing is kept between intervals).
            let latency = match t.latency.as_slice() {
                [one] => interval_latency(one),
                many => {
                    let mut h = new_histogram();
                    for x in many {
                        h.add(*x).expect("same histogram bounds");
                    }
                    interval_latency(&h)
                }
            };
            let s = &mut self.series[i];
            let point = match s.points.last_mut() {
                Some(last) if last_index(last, self.stride, self.interval_ns) == coarse => last,
                _ => {
                    s.points.push(NamePoint {
                        start_s: start_ns as f64 / 1e9,
                        t_s: 0.0,
                        count: 0,
                        failed: 0,
                        rate: 0.0,
                        errors_by_kind: BTreeMap::new(),
                        latency_us: IntervalLatency::default(),
                    });
                    s.points.last_mut().expect("pushed")
                }
            };
            point.t_s = p.end_ns as f64 / 1e9;
            point.count += t.count;
            point.failed += t.failed;
            for (k, n) in t.errors {
                *point.errors_by_kind.entry(k.to_owned()).or_insert(0) += n;
            }
            point.rate = per_s(point.count, point.t_s - point.start_s);
            point.latency_us = merge_upper(point.latency_us, latency);
        }
        while self.points() > self.max_points && self.series.iter().any(|s| s.points.len() > 1) {
            self.coarsen();
        }
    }

    fn points(&self) -> usize {
        self.series.iter().map(|s| s.points.len()).sum()
    }

    /// Halves the resolution: neighbouring points merged, later points twice as long.
    fn coarsen(&mut self) {
        let old = self.stride;
        self.stride *= 2;
        let width_s = (self.stride * self.interval_ns) as f64 / 1e9;
        for s in &mut self.series {
            let mut merged: Vec<NamePoint> = Vec::with_capacity(s.points.len() / 2 + 1);
            for mut p in s.points.drain(..) {
                let index = last_index(&p, old, self.interval_ns) / 2;
                let start_s = index as f64 * width_s;
                match merged.last_mut() {
                    Some(m) if (m.start_s - start_s).abs() < 1e-9 => {
                        m.t_s = m.t_s.max(p.t_s);
                        m.count += p.count;
                        m.failed += p.failed;
                        for (k, n) in p.errors_by_kind {
                            *m.errors_by_kind.entry(k).or_insert(0) += n;
                        }
                        m.latency_us = merge_upper(m.latency_us, p.latency_us);
                        m.rate = per_s(m.count, m.t_s - m.start_s);
                    }
                    _ => {
                        p.start_s = start_s;
                        p.rate = per_s(p.count, p.t_s - p.start_s);
                        merged.push(p);
                    }
                }
            }
            s.points = merged;
        }
    }

    pub fn finish(self) -> SeriesReport {
        SeriesReport {
            interval_s: self.interval_ns as f64 / 1e9,
            intervals_per_point: self.stride,
            names_omitted: self.names_omitted,
            names: self.series,
        }
    }
}

/// The coarse index of a point that starts at `start_s`.
fn last_index(p: &NamePoint, stride: u64, interval_ns: u64) -> u64 {
    ((p.start_s * 1e9) / (stride * interval_ns) as f64).round() as u64
}

fn per_s(n: u64, s: f64) -> f64 {
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

/// Two summaries as one: counts added, each percentile the larger (an upper bound).
fn merge_upper(a: IntervalLatency, b: IntervalLatency) -> IntervalLatency {
    IntervalLatency {
        count: a.count + b.count,
        p50: a.p50.max(b.p50),
        p90: a.p90.max(b.p90),
        p95: a.p95.max(b.p95),
        p99: a.p99.max(b.p99),
        max: a.max.max(b.max),
    }
}

fn interval_latency(h: &Histogram<u64>) -> IntervalLatency {
    if h.is_empty() {
        return IntervalLatency::default();
    }
    IntervalLatency {
        count: h.len(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p95: h.value_at_quantile(0.95),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::interval::StepInterval;
    use std::sync::Arc;

    fn plan() -> Plan {
        let file = crate::scenario::parse_str(
            r#"
[scenarios.s]
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.s.steps]]
request = "GET http://127.0.0.1:1/a"
name = "a"
[[scenarios.s.steps]]
request = "GET http://127.0.0.1:1/b"
name = "b"
[[scenarios.s.steps]]
request = "POST http://127.0.0.1:1/a"
name = "a"
"#,
            std::path::Path::new("t.toml"),
            &BTreeMap::new(),
            false,
        )
        .expect("valid scenario");
        Plan::compile(Arc::new(file)).expect("compiles")
    }

    fn point(index: u64, steps: &[(u32, u64, &[u64])]) -> IntervalPoint {
        let mut p = IntervalPoint::empty(index, index * 1_000, (index + 1) * 1_000);
        for &(id, failed, lat) in steps {
            let mut latency = new_histogram();
            for &l in lat {
                latency.record(l).unwrap();
            }
            let mut errors = BTreeMap::new();
            if failed > 0 {
                errors.insert("timeout", failed);
            }
            p.steps.insert(
                id,
                StepInterval {
                    count: lat.len() as u64 + failed,
                    failed,
                    errors,
                    latency,
                },
            );
        }
        p
    }

    #[test]
    fn steps_of_one_name_add_up_and_idle_intervals_are_left_out() {
        let plan = plan();
        let mut b = SeriesBuilder::new(&plan, 1_000);
        b.push(&point(0, &[(0, 0, &[10, 20]), (2, 1, &[30])]));
        b.push(&point(1, &[]));
        b.push(&point(2, &[(1, 0, &[5])]));
        let r = b.finish();
        assert_eq!(r.names.len(), 2);
        let a = &r.names[0];
        assert_eq!((a.name.as_str(), a.points.len()), ("a", 1));
        assert_eq!((a.points[0].count, a.points[0].failed), (4, 1));
        assert_eq!(a.points[0].errors_by_kind["timeout"], 1);
        assert_eq!(a.points[0].latency_us.count, 3);
        assert_eq!(a.points[0].latency_us.max, 30);
        // Steps 0 and 2 differ in method: the shared tags leave it out.
        assert!(!a.tags.contains_key("method"), "{:?}", a.tags);
        assert_eq!(a.tags.get("name").map(String::as_str), Some("a"));
        let b = &r.names[1];
        assert_eq!(b.points.len(), 1);
        assert!((b.points[0].start_s - 2e-6).abs() < 1e-12);
    }

    #[test]
    fn beyond_the_point_bound_series_get_coarser_and_counts_stay_exact() {
        let plan = plan();
        let mut b = SeriesBuilder::with_limits(&plan, 1_000, 256, 10);
        for i in 0..40 {
            b.push(&point(i, &[(0, 0, &[i + 1]), (1, 1, &[100])]));
        }
        let r = b.finish();
        let points: usize = r.names.iter().map(|n| n.points.len()).sum();
        assert!(points <= 10, "{points} points");
        assert!(r.intervals_per_point >= 4, "{}", r.intervals_per_point);
        let a = &r.names[0];
        assert_eq!(a.points.iter().map(|p| p.count).sum::<u64>(), 40);
        assert_eq!(a.points.iter().map(|p| p.latency_us.count).sum::<u64>(), 40);
        // The last point's max is the largest sample it covers.
        assert_eq!(a.points.last().unwrap().latency_us.max, 40);
        let b = &r.names[1];
        assert_eq!(b.points.iter().map(|p| p.failed).sum::<u64>(), 40);
        // Points are contiguous windows of intervals_per_point intervals.
        let width = r.intervals_per_point as f64 * 1e-6;
        for (k, p) in a.points.iter().enumerate() {
            assert!(
                (p.start_s - k as f64 * width).abs() < 1e-12,
                "{k}: {}",
                p.start_s
            );
        }
    }

    #[test]
    fn names_beyond_the_cap_are_counted() {
        let plan = plan();
        let r = SeriesBuilder::with_limits(&plan, 1_000, 1, 10).finish();
        assert_eq!((r.names.len(), r.names_omitted), (1, 1));
    }
}
