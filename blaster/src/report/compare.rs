//! `blaster compare BASELINE.json CURRENT.json`: compares two JSON reports metric by metric
//! and flags regressions beyond a bound (`--max-regression`, default 10%), for CI gates.
//!
//! Rules (see [`compare`]):
//! - Latencies (`p50` ... `max`, `mean`): higher is worse; a regression is a relative increase
//!   of more than the bound (`current > baseline x (1 + bound)`).
//! - `rps`: lower is worse; a regression is a relative drop of more than the bound
//!   (`current < baseline x (1 - bound)`). A zero baseline cannot regress.
//! - `error_rate` ([`error_rate`]): higher is worse, but relative change alone is meaningless
//!   near zero (0 -> 1 error in a million would be an infinite increase), so a regression must
//!   both exceed the bound relatively *and* rise by more than [`ERROR_RATE_EPSILON`] (0.1
//!   percentage points) absolutely. From a zero baseline, any error rate above 0.1% regresses.
//! - A change exactly at the bound passes. Improvements are never regressions.
//! - A metric without a value in either report (no responses, no histogram for p95) is "n/a"
//!   and not a regression, except when the current run got no responses at all while the
//!   baseline did: then every metric it cannot produce counts as regressed.
//!
//! Per request name (scenario reports): every name present in both reports (same `name` and
//! `kind`) is compared on the same metrics and rules, from `scenario.names[]` (`p95` from the
//! name's `latency_histogram`, `rps` is the name's `rate`, `error_rate` its failed share). A
//! name regressed beyond the bound fails the gate like a run-wide metric; names only in one
//! report are listed, never failing. `--names` restricts the per-name comparison.
//!
//! Differences that make the two runs not like-for-like (targets, model, rate, connections,
//! host, a generator-bound or interrupted run) are listed as notes, never as regressions.

use std::fmt::{self, Write as _};
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::flow::NameStats;
use super::junit::Verdict;
use super::{Report, decode_histogram};
use crate::cli::units::{format_duration_us, format_thousands};

/// Process exit code of `blaster compare` when a metric regressed beyond the bound (the code
/// k6 uses for failed thresholds).
pub const EXIT_REGRESSION: i32 = 99;

/// The default `--max-regression`: 10%.
pub const DEFAULT_MAX_REGRESSION: f64 = 0.10;

/// The smallest absolute rise of [`error_rate`] (a fraction: 0.001 = 0.1 percentage points)
/// that can count as a regression, whatever the relative change.
pub const ERROR_RATE_EPSILON: f64 = 0.001;

/// Slack for float rounding when a change is compared with the bound, so that a change of
/// exactly the bound (1000us -> 1100us at 10%) passes.
const TOLERANCE: f64 = 1e-9;

/// A metric `blaster compare` can compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    P50,
    P90,
    /// Not stored in the report's latency summary: computed from `latency_histogram`.
    P95,
    P99,
    P999,
    Max,
    Mean,
    /// Responses per second.
    Rps,
    /// See [`error_rate`].
    ErrorRate,
}

impl Metric {
    /// Every metric, in display order.
    pub const ALL: [Metric; 9] = [
        Metric::P50,
        Metric::P90,
        Metric::P95,
        Metric::P99,
        Metric::P999,
        Metric::Max,
        Metric::Mean,
        Metric::Rps,
        Metric::ErrorRate,
    ];

    /// The metrics compared when `--metrics` is not given.
    pub const DEFAULT: [Metric; 4] = [Metric::P95, Metric::P99, Metric::Rps, Metric::ErrorRate];

    /// The name used on the command line and in tables: `p50`, `p999`, `rps`, `error_rate`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::P50 => "p50",
            Metric::P90 => "p90",
            Metric::P95 => "p95",
            Metric::P99 => "p99",
            Metric::P999 => "p999",
            Metric::Max => "max",
            Metric::Mean => "mean",
            Metric::Rps => "rps",
            Metric::ErrorRate => "error_rate",
        }
    }

    /// True for the request latency metrics (values in microseconds).
    pub fn is_latency(self) -> bool {
        !matches!(self, Metric::Rps | Metric::ErrorRate)
    }

    /// True when a higher value is worse (latencies, error rate); false for `rps`.
    pub fn higher_is_worse(self) -> bool {
        self != Metric::Rps
    }

    /// The metric's value in `report`: microseconds for latencies, responses/s for `rps`, a
    /// fraction for `error_rate`. `None` when the report cannot tell: no responses (latencies),
    /// no decodable histogram (`p95`), nothing attempted (`error_rate`).
    pub fn value(self, report: &Report) -> Option<f64> {
        let l = &report.latency_us;
        if self.is_latency() && l.count == 0 {
            return None;
        }
        Some(match self {
            Metric::P50 => l.p50 as f64,
            Metric::P90 => l.p90 as f64,
            Metric::P95 => return p95_us(report).map(|v| v as f64),
            Metric::P99 => l.p99 as f64,
            Metric::P999 => l.p999 as f64,
            Metric::Max => l.max as f64,
            Metric::Mean => l.mean,
            Metric::Rps => report.rps,
            Metric::ErrorRate => return error_rate(report),
        })
    }
}

impl Metric {
    /// The metric's value for one request name (same units as [`Metric::value`]): `rps` is
    /// the name's samples per second, `error_rate` its failed share. `None` without samples
    /// or, for `p95`, without a decodable histogram.
    pub fn name_value(self, n: &NameStats) -> Option<f64> {
        let l = &n.latency_us;
        if self.is_latency() && l.count == 0 {
            return None;
        }
        Some(match self {
            Metric::P50 => l.p50 as f64,
            Metric::P90 => l.p90 as f64,
            Metric::P95 => {
                let h = decode_histogram(&n.latency_histogram).ok()?;
                if h.is_empty() {
                    return None;
                }
                h.value_at_quantile(0.95) as f64
            }
            Metric::P99 => l.p99 as f64,
            Metric::P999 => l.p999 as f64,
            Metric::Max => l.max as f64,
            Metric::Mean => l.mean,
            Metric::Rps => n.rate,
            Metric::ErrorRate if n.count == 0 => return None,
            Metric::ErrorRate => (n.failed as f64 / n.count as f64).min(1.0),
        })
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = String;

    /// One metric name, case-insensitive: the [`Metric::name`]s, plus `p99.9` for `p999` and
    /// `avg` for `mean`.
    fn from_str(s: &str) -> Result<Metric, String> {
        let t = s.trim().to_ascii_lowercase();
        let alias = match t.as_str() {
            "p99.9" => Some(Metric::P999),
            "avg" => Some(Metric::Mean),
            _ => None,
        };
        alias
            .or_else(|| Metric::ALL.into_iter().find(|m| m.name() == t))
            .ok_or_else(|| {
                let valid: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown metric {:?}; valid metrics: {}",
                    s.trim(),
                    valid.join(", ")
                )
            })
    }
}

/// Parses a comma-separated metric list (`p95,p99,rps,error_rate`); duplicates are dropped,
/// the order is kept. An empty list is an error.
pub fn parse_metrics(s: &str) -> Result<Vec<Metric>, String> {
    let mut metrics = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let m: Metric = part.parse()?;
        if !metrics.contains(&m) {
            metrics.push(m);
        }
    }
    if metrics.is_empty() {
        return Err(format!(
            "no metric given in {s:?}; expected a comma-separated list such as p95,p99,rps,error_rate"
        ));
    }
    Ok(metrics)
}

/// Parses a percentage as a fraction: `10%` -> 0.10, `0.1` -> 0.10, `2.5%` -> 0.025.
/// A bare number is a fraction, so bare numbers above 1 are refused as ambiguous (`10` is
/// more likely meant as 10% than as 1000%); write `150%` for more than 100%.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (number, percent) = match t.strip_suffix('%') {
        Some(n) => (n.trim_end(), true),
        None => (t, false),
    };
    let v: f64 = number
        .parse()
        .map_err(|_| format!("invalid percentage {s:?}: expected e.g. 10% or 0.1"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!(
            "invalid percentage {s:?}: must be a finite, non-negative number (e.g. 10% or 0.1)"
        ));
    }
    if percent {
        Ok(v / 100.0)
    } else if v > 1.0 {
        Err(format!(
            "ambiguous percentage {s:?}: a bare number is a fraction (0.1 = 10%); write {number}% for {number} percent"
        ))
    } else {
        Ok(v)
    }
}

/// The share of attempts that failed, as a fraction (k6's `http_req_failed` sense):
/// `(errors.total + responses with status >= 400) / (responses + errors.total)`.
/// Counting 4xx/5xx matters for comparisons: a target that starts answering 500 quickly must
/// not look like an improvement. `None` when nothing was attempted (no response, no error).
pub fn error_rate(report: &Report) -> Option<f64> {
    let attempts = report.responses.saturating_add(report.errors.total);
    if attempts == 0 {
        return None;
    }
    let failed = report
        .errors
        .total
        .saturating_add(http_error_responses(report));
    Some((failed as f64 / attempts as f64).min(1.0))
}

/// Responses with a status code of 400 or above (unparsable codes count too).
pub fn http_error_responses(report: &Report) -> u64 {
    report
        .status_codes
        .iter()
        .filter(|(code, _)| code.parse::<u16>().map_or(true, |c| c >= 400))
        .map(|(_, &n)| n)
        .sum()
}

/// The 95th latency percentile (µs), from the report's histogram; `None` when there were no
/// responses or the histogram is missing or cannot be decoded.
pub fn p95_us(report: &Report) -> Option<u64> {
    if report.latency_us.count == 0 || report.latency_histogram.trim().is_empty() {
        return None;
    }
    let h = decode_histogram(&report.latency_histogram).ok()?;
    (!h.is_empty()).then(|| h.value_at_quantile(0.95))
}

/// What to compare and how much worse is tolerated.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareOptions {
    /// The tolerated relative change in the bad direction, as a fraction (0.10 = 10%).
    pub max_regression: f64,
    /// The metrics to compare, in display order.
    pub metrics: Vec<Metric>,
    /// Request names compared one by one (scenario reports); `None`: every name in both.
    pub names: Option<Vec<String>>,
}

impl Default for CompareOptions {
    /// 10%, on p95, p99, rps and error_rate, every request name.
    fn default() -> CompareOptions {
        CompareOptions {
            max_regression: DEFAULT_MAX_REGRESSION,
            metrics: Metric::DEFAULT.to_vec(),
            names: None,
        }
    }
}

/// One request name of both reports, metric by metric.
#[derive(Debug, Clone, PartialEq)]
pub struct NameComparison {
    pub name: String,
    /// `http`, `ws_connect`, … (as `scenario.names[].kind`).
    pub kind: String,
    pub rows: Vec<MetricComparison>,
}

impl NameComparison {
    /// The name as shown: `checkout`, or `chat (ws_connect)` for WebSocket steps.
    pub fn label(&self) -> String {
        if self.kind == "http" {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, self.kind)
        }
    }
}

/// One metric of the two reports side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricComparison {
    pub metric: Metric,
    /// See [`Metric::value`] for units; `None` is "n/a".
    pub baseline: Option<f64>,
    pub current: Option<f64>,
    /// Relative change `(current - baseline) / baseline` (0.2 = +20%); `None` when either
    /// value is missing or the baseline is 0.
    pub change: Option<f64>,
    /// The change is in the bad direction and beyond the bound (see the module docs).
    pub regression: bool,
}

impl MetricComparison {
    /// True when the metric improved by more than `bound`.
    pub fn improved_beyond(&self, bound: f64) -> bool {
        match self.change {
            Some(c) if self.metric.higher_is_worse() => c < -bound - TOLERANCE,
            Some(c) => c > bound + TOLERANCE,
            None => false,
        }
    }
}

/// The result of [`compare`].
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The bound the rows were judged with (fraction).
    pub max_regression: f64,
    /// One row per requested metric, in the requested order.
    pub rows: Vec<MetricComparison>,
    /// Scenario reports: the request names in both reports, in the current report's order.
    pub names: Vec<NameComparison>,
    /// Request names in only one of the reports (listed, never a regression).
    pub only_in_baseline: Vec<String>,
    pub only_in_current: Vec<String>,
    /// Why the runs may not be like-for-like (different targets, model, host, a
    /// generator-bound or interrupted run, ...). Informational: never a regression.
    pub notes: Vec<String>,
}

impl Comparison {
    /// True when any metric regressed beyond the bound: `blaster compare` then exits with
    /// [`EXIT_REGRESSION`].
    pub fn regressed(&self) -> bool {
        self.rows.iter().any(|r| r.regression)
            || self
                .names
                .iter()
                .flat_map(|n| &n.rows)
                .any(|r| r.regression)
    }

    /// The run-wide rows that regressed.
    pub fn regressions(&self) -> impl Iterator<Item = &MetricComparison> {
        self.rows.iter().filter(|r| r.regression)
    }

    /// `name metric` of every per-name row that regressed.
    pub fn name_regressions(&self) -> Vec<String> {
        self.names
            .iter()
            .flat_map(|n| {
                n.rows
                    .iter()
                    .filter(|r| r.regression)
                    .map(move |r| format!("{} {}", n.label(), r.metric))
            })
            .collect()
    }

    /// One verdict per row (group "compare"), e.g. for a JUnit file of the comparison
    /// ([`super::junit::render_verdicts`]).
    pub fn verdicts(&self) -> Vec<Verdict> {
        let bound = format_bound(self.max_regression);
        let run = self.rows.iter().map(|row| (String::new(), row));
        let names = self.names.iter().flat_map(|n| {
            n.rows
                .iter()
                .map(move |row| (format!("{} ", n.label()), row))
        });
        run.chain(names)
            .map(|(prefix, row)| {
                let summary = format!(
                    "{prefix}{}: baseline {}, current {}, change {}",
                    row.metric,
                    format_value(row.metric, row.baseline),
                    format_value(row.metric, row.current),
                    format_change(row),
                );
                let name = format!("{prefix}{} within {bound} of baseline", row.metric);
                if row.regression {
                    Verdict::fail("compare", name, summary.clone(), summary)
                } else {
                    Verdict::pass("compare", name, summary)
                }
            })
            .collect()
    }
}

/// Compares `current` with `baseline` on `opts.metrics` (see the module docs for the rules).
pub fn compare(baseline: &Report, current: &Report, opts: &CompareOptions) -> Comparison {
    let bound = opts.max_regression;
    let current_empty = current.responses == 0 && baseline.responses > 0;
    let rows = opts
        .metrics
        .iter()
        .map(|&metric| {
            side_by_side(
                metric,
                metric.value(baseline),
                metric.value(current),
                current_empty,
                bound,
            )
        })
        .collect();
    let (names, only_in_baseline, only_in_current) = compare_names(baseline, current, opts);
    Comparison {
        max_regression: bound,
        rows,
        names,
        only_in_baseline,
        only_in_current,
        notes: notes(baseline, current, opts),
    }
}

fn side_by_side(
    metric: Metric,
    b: Option<f64>,
    c: Option<f64>,
    current_empty: bool,
    bound: f64,
) -> MetricComparison {
    let change = match (b, c) {
        (Some(b), Some(c)) if b != 0.0 => Some((c - b) / b),
        _ => None,
    };
    let regression = match (b, c) {
        (Some(b), Some(c)) => is_regression(metric, b, c, bound),
        (Some(_), None) => current_empty,
        _ => false,
    };
    MetricComparison {
        metric,
        baseline: b,
        current: c,
        change,
        regression,
    }
}

/// The request names of two scenario reports: compared (in both), only in the baseline, only
/// in the current report.
fn compare_names(
    baseline: &Report,
    current: &Report,
    opts: &CompareOptions,
) -> (Vec<NameComparison>, Vec<String>, Vec<String>) {
    let empty = Vec::new();
    let names = |r: &Report| -> Vec<NameStats> {
        let all = r.scenario.as_ref().map_or(&empty, |sc| &sc.names);
        all.iter()
            .filter(|n| {
                opts.names
                    .as_ref()
                    .is_none_or(|only| only.contains(&n.name))
            })
            .cloned()
            .collect()
    };
    let (b_names, c_names) = (names(baseline), names(current));
    let label = |n: &NameStats| {
        NameComparison {
            name: n.name.clone(),
            kind: n.kind.clone(),
            rows: Vec::new(),
        }
        .label()
    };
    let mut compared = Vec::new();
    let mut only_in_current = Vec::new();
    for c in &c_names {
        let Some(b) = b_names
            .iter()
            .find(|b| b.name == c.name && b.kind == c.kind)
        else {
            only_in_current.push(label(c));
            continue;
        };
        let current_empty = c.count == 0 && b.count > 0;
        compared.push(NameComparison {
            name: c.name.clone(),
            kind: c.kind.clone(),
            rows: opts
                .metrics
                .iter()
                .map(|&m| {
                    side_by_side(
                        m,
                        m.name_value(b),
                        m.name_value(c),
                        current_empty,
                        opts.max_regression,
                    )
                })
                .collect(),
        });
    }
    let only_in_baseline = b_names
        .iter()
        .filter(|b| !c_names.iter().any(|c| c.name == b.name && c.kind == b.kind))
        .map(label)
        .collect();
    (compared, only_in_baseline, only_in_current)
}

fn is_regression(metric: Metric, b: f64, c: f64, bound: f64) -> bool {
    match metric {
        Metric::Rps => b > 0.0 && (c - b) / b < -bound - TOLERANCE,
        Metric::ErrorRate => {
            c - b > ERROR_RATE_EPSILON + TOLERANCE && (b == 0.0 || (c - b) / b > bound + TOLERANCE)
        }
        _ if b == 0.0 => c > 0.0,
        _ => (c - b) / b > bound + TOLERANCE,
    }
}

/// Differences that make the two runs not like-for-like.
fn notes(baseline: &Report, current: &Report, opts: &CompareOptions) -> Vec<String> {
    let mut notes = Vec::new();
    let mut differs = |what: &str, b: String, c: String| {
        if b != c {
            notes.push(format!("{what} differ: baseline {b}, current {c}"));
        }
    };
    differs(
        "targets",
        baseline.targets.join(" "),
        current.targets.join(" "),
    );
    differs("models", baseline.model.clone(), current.model.clone());
    differs(
        "target rates",
        rate_or_none(baseline.target_rate),
        rate_or_none(current.target_rate),
    );
    differs(
        "connections",
        baseline.concurrency.to_string(),
        current.concurrency.to_string(),
    );
    differs(
        "pipeline depths",
        baseline.pipeline.to_string(),
        current.pipeline.to_string(),
    );
    differs(
        "threads",
        baseline.threads.to_string(),
        current.threads.to_string(),
    );
    differs(
        "hosts",
        baseline.environment.hostname.clone(),
        current.environment.hostname.clone(),
    );
    for (which, r) in [("baseline", baseline), ("current", current)] {
        if r.generator_bound {
            notes.push(format!(
                "the {which} run was generator-bound ({}): its numbers understate the target",
                r.generator.reasons.join("; ")
            ));
        }
        if r.interrupted {
            notes.push(format!(
                "the {which} run was interrupted: its results are partial"
            ));
        }
        if r.responses == 0 {
            notes.push(format!("the {which} run got no responses"));
        }
        if opts.metrics.contains(&Metric::P95) && r.latency_us.count > 0 && p95_us(r).is_none() {
            notes.push(format!(
                "the {which} report has no readable latency_histogram: p95 is n/a"
            ));
        }
    }
    notes
}

fn rate_or_none(rate: Option<f64>) -> String {
    rate.map_or_else(|| "none".to_owned(), |r| format!("{}/s", format_rate(r)))
}

/// Renders the comparison as a side-by-side text table, regressions marked `REGRESSION`,
/// then the notes and a one-line result. Ends with a newline.
pub fn render_table(c: &Comparison) -> String {
    let bound = format_bound(c.max_regression);
    let mut out = format!("blaster compare: current vs baseline (max regression {bound})\n");
    let header = ["metric", "baseline", "current", "change", "verdict"];
    let run = c.rows.iter().map(|row| (String::new(), row));
    let names = c.names.iter().flat_map(|n| {
        n.rows
            .iter()
            .map(move |row| (format!("{} ", n.label()), row))
    });
    let rows: Vec<[String; 5]> = run
        .chain(names)
        .map(|(prefix, row)| {
            let verdict = if row.regression {
                "REGRESSION"
            } else if row.baseline.is_none() || row.current.is_none() {
                "n/a"
            } else if row.improved_beyond(c.max_regression) {
                "better"
            } else {
                "ok"
            };
            [
                format!("{prefix}{}", row.metric),
                format_value(row.metric, row.baseline),
                format_value(row.metric, row.current),
                format_change(row),
                verdict.to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: [&str; 5]| {
        // Name left-aligned, numbers right-aligned, verdict left-aligned (and unpadded).
        let [w0, w1, w2, w3, _] = widths;
        let text = format!(
            "  {:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {}",
            cells[0], cells[1], cells[2], cells[3], cells[4]
        );
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    for note in &c.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    for (which, names) in [
        ("baseline", &c.only_in_baseline),
        ("current run", &c.only_in_current),
    ] {
        if !names.is_empty() {
            let _ = writeln!(
                out,
                "  note: request names only in the {which} (not compared): {}",
                names.join(", ")
            );
        }
    }
    let mut regressed: Vec<String> = c
        .regressions()
        .map(|r| r.metric.name().to_owned())
        .collect();
    regressed.extend(c.name_regressions());
    let total = c.rows.len() + c.names.iter().map(|n| n.rows.len()).sum::<usize>();
    if regressed.is_empty() {
        let _ = writeln!(
            out,
            "no regression beyond {bound} ({total} metric{} compared)",
            if total == 1 { "" } else { "s" }
        );
    } else {
        let _ = writeln!(
            out,
            "REGRESSION: {} of {total} metric{} beyond {bound}: {}",
            regressed.len(),
            if total == 1 { "" } else { "s" },
            regressed.join(", ")
        );
    }
    out
}

/// A metric's value for display: `1.25ms`, `12,345.6/s`, `0.50%`, or `n/a`.
pub fn format_value(metric: Metric, value: Option<f64>) -> String {
    let Some(v) = value else {
        return "n/a".to_owned();
    };
    match metric {
        Metric::Rps => format!("{}/s", format_rate(v)),
        Metric::ErrorRate => format_percent(v),
        _ => format_duration_us(v.max(0.0).round() as u64),
    }
}

/// The change column: relative (`+20.8%`), but in percentage points for `error_rate`
/// (`+0.50pp`), where relative changes near zero mislead.
fn format_change(row: &MetricComparison) -> String {
    match (row.metric, row.baseline, row.current) {
        (Metric::ErrorRate, Some(b), Some(c)) => format!("{:+.2}pp", (c - b) * 100.0),
        _ => match row.change {
            Some(ch) => format!("{:+.1}%", ch * 100.0),
            None => "n/a".to_owned(),
        },
    }
}

/// The bound as a percentage: `10%`, `2.5%`.
fn format_bound(bound: f64) -> String {
    let pct = bound * 100.0;
    let rounded = (pct * 100.0).round() / 100.0;
    format!("{rounded}%")
}

/// A rate: thousands-separated with one decimal (`12,345.6`); whole numbers without it.
pub(crate) fn format_rate(rate: f64) -> String {
    if !(0.0..1e15).contains(&rate) {
        return format!("{rate}");
    }
    let tenths = (rate * 10.0).round() as u64;
    if tenths.is_multiple_of(10) {
        format_thousands(tenths / 10)
    } else {
        format!("{}.{}", format_thousands(tenths / 10), tenths % 10)
    }
}

/// A fraction as a percentage: `0%`, `0.0042%`, `0.50%`, `12.5%`.
pub(crate) fn format_percent(fraction: f64) -> String {
    let pct = fraction * 100.0;
    if pct == 0.0 {
        "0%".to_owned()
    } else if pct < 0.01 {
        format!("{pct:.4}%")
    } else if pct < 10.0 {
        format!("{pct:.2}%")
    } else {
        format!("{pct:.1}%")
    }
}

/// A JSON report could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadReportError {
    #[error("cannot read the report {}: {error}", path.display())]
    Read {
        path: PathBuf,
        /// Already part of the message, so not a `source()`.
        error: io::Error,
    },
    #[error("{} is not a blaster JSON report (--json output): {error}", path.display())]
    Parse {
        path: PathBuf,
        /// Already part of the message, so not a `source()`.
        error: serde_json::Error,
    },
}

/// Reads a `--json` report from `path`.
pub fn load_report(path: &Path) -> Result<Report, LoadReportError> {
    let text = std::fs::read_to_string(path).map_err(|error| LoadReportError::Read {
        path: path.to_owned(),
        error,
    })?;
    serde_json::from_str(&text).map_err(|error| LoadReportError::Parse {
        path: path.to_owned(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use hdrhistogram::Histogram;

    use super::*;
    use crate::config::LoadModel;
    use crate::report::tests::{config, outcome};
    use crate::report::{encode_histogram, summarize};

    /// A report whose latencies are 1000..2000us scaled by `scale`, with `rps` and
    /// `errors` transport errors.
    fn report(scale: f64, rps: f64, errors: u64) -> Report {
        let mut r = Report::from_run(&config(LoadModel::Closed), &outcome());
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for us in 1_000..2_000u64 {
            h.record((us as f64 * scale).round() as u64).unwrap();
        }
        r.latency_us = summarize(&h);
        r.latency_histogram = encode_histogram(&h).unwrap();
        r.responses = 1_000_000;
        r.requests = 1_000_000 + errors;
        r.status_codes = [("200".to_owned(), 1_000_000)].into();
        r.errors.total = errors;
        r.errors.by_kind = if errors > 0 {
            [("timeout".to_owned(), errors)].into()
        } else {
            Default::default()
        };
        r.rps = rps;
        r
    }

    fn opts(metrics: &str) -> CompareOptions {
        CompareOptions {
            max_regression: 0.10,
            metrics: parse_metrics(metrics).unwrap(),
            names: None,
        }
    }

    fn row(c: &Comparison, m: Metric) -> &MetricComparison {
        c.rows.iter().find(|r| r.metric == m).unwrap()
    }

    /// A scenario report with request names "home" (latencies 1000..2000us scaled by
    /// `home_scale`), "buy" (unchanged) and `extra`.
    fn scenario_report(home_scale: f64, extra: &str) -> Report {
        let mut r = report(1.0, 1_000.0, 0);
        let mut sc = crate::report::flow::tests::scenario_sample();
        sc.names.clear();
        for (name, scale) in [("home", home_scale), ("buy", 1.0), (extra, 1.0)] {
            let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
            for us in 1_000..2_000u64 {
                h.record((us as f64 * scale).round() as u64).unwrap();
            }
            sc.names.push(NameStats {
                name: name.to_owned(),
                kind: "http".to_owned(),
                scenario: "s".to_owned(),
                count: 1_000,
                failed: 0,
                error_rate: 0.0,
                rate: 100.0,
                latency_us: summarize(&h),
                latency_histogram: encode_histogram(&h).unwrap(),
                status_codes: Default::default(),
                errors: Default::default(),
                msgs_sent: 0,
                msgs_received: 0,
                retries: 0,
                retry_wait_ms: 0.0,
            });
        }
        r.scenario = Some(sc);
        r
    }

    #[test]
    fn a_name_regressed_20_percent_fails_and_5_percent_passes() {
        let base = scenario_report(1.0, "old");
        let c = compare(&base, &scenario_report(1.2, "new"), &opts("p95"));
        // The run-wide numbers are unchanged: only the name fails the gate.
        assert!(!row(&c, Metric::P95).regression);
        assert!(c.regressed());
        assert_eq!(c.name_regressions(), vec!["home p95".to_owned()]);
        assert_eq!(c.names.len(), 2, "home and buy are in both");
        assert_eq!(c.only_in_baseline, vec!["old".to_owned()]);
        assert_eq!(c.only_in_current, vec!["new".to_owned()]);
        let table = render_table(&c);
        assert!(table.contains("home p95"), "{table}");
        assert!(
            table.contains("REGRESSION: 1 of 3 metrics beyond 10%: home p95"),
            "{table}"
        );
        assert!(
            table.contains("only in the baseline (not compared): old"),
            "{table}"
        );

        let c = compare(
            &base,
            &scenario_report(1.05, "old"),
            &opts("p95,p99,rps,error_rate"),
        );
        assert!(!c.regressed(), "{}", render_table(&c));
        assert!(c.only_in_baseline.is_empty() && c.only_in_current.is_empty());

        // --names restricts the per-name gate.
        let mut only_buy = opts("p95");
        only_buy.names = Some(vec!["buy".to_owned()]);
        let c = compare(&base, &scenario_report(1.2, "old"), &only_buy);
        assert!(!c.regressed());
        assert_eq!(c.names.len(), 1);
    }

    #[test]
    fn p95_regression_of_20_percent_is_detected_at_10_percent() {
        let base = report(1.0, 1_000.0, 0);
        let c = compare(&base, &report(1.2, 1_000.0, 0), &opts("p95"));
        let r = row(&c, Metric::P95);
        let (b, cur) = (r.baseline.unwrap(), r.current.unwrap());
        assert!((1_900.0..=1_960.0).contains(&b), "{b}");
        assert!((r.change.unwrap() - 0.2).abs() < 0.01, "{r:?}");
        assert!(r.regression);
        assert!(c.regressed());
        assert!(cur > b);
        let table = render_table(&c);
        assert!(table.contains("REGRESSION"), "{table}");
        assert!(table.contains("p95"), "{table}");
    }

    #[test]
    fn p95_change_of_5_percent_passes() {
        let base = report(1.0, 1_000.0, 0);
        let c = compare(&base, &report(1.05, 1_000.0, 0), &opts("p95,p99,max,mean"));
        assert!(!c.regressed(), "{c:?}");
        assert!(!render_table(&c).contains("REGRESSION"));
    }

    #[test]
    fn exactly_at_the_bound_passes() {
        let base = report(1.0, 1_000.0, 0);
        let c = compare(&base, &report(1.0, 900.0, 0), &opts("rps"));
        assert!(!c.regressed(), "{c:?}");
        let c = compare(&base, &report(1.0, 899.0, 0), &opts("rps"));
        assert!(c.regressed(), "{c:?}");
    }

    #[test]
    fn rps_drop_is_detected() {
        let base = report(1.0, 10_000.0, 0);
        let c = compare(&base, &report(1.0, 8_500.0, 0), &CompareOptions::default());
        let r = row(&c, Metric::Rps);
        assert!(r.regression, "{r:?}");
        assert!((r.change.unwrap() + 0.15).abs() < 1e-9);
        assert_eq!(c.regressions().count(), 1);
        let table = render_table(&c);
        assert!(table.contains("10,000/s"), "{table}");
        assert!(table.contains("8,500/s"), "{table}");
        assert!(table.contains("-15.0%"), "{table}");
        assert!(
            table.contains("REGRESSION: 1 of 4 metrics beyond 10%: rps"),
            "{table}"
        );
    }

    #[test]
    fn improvements_are_never_flagged() {
        let base = report(1.0, 1_000.0, 5_000);
        let all: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        let o = opts(&all.join(","));
        let c = compare(&base, &report(0.5, 3_000.0, 0), &o);
        assert!(!c.regressed(), "{c:?}");
        assert!(c.rows.iter().all(|r| r.improved_beyond(0.10)), "{c:?}");
        let table = render_table(&c);
        assert!(table.contains("better"), "{table}");
        assert!(
            table.contains("no regression beyond 10% (9 metrics compared)"),
            "{table}"
        );
        // The reverse direction regresses on every metric.
        let c = compare(&report(0.5, 3_000.0, 0), &base, &o);
        assert_eq!(c.regressions().count(), 9, "{c:?}");
    }

    #[test]
    fn error_rate_from_zero_needs_more_than_the_epsilon() {
        let base = report(1.0, 1_000.0, 0);
        let o = opts("error_rate");
        // 0 -> 0.05%: noise, not a regression.
        let c = compare(&base, &report(1.0, 1_000.0, 500), &o);
        assert!(!c.regressed(), "{c:?}");
        // 0 -> 0.5%: a regression.
        let c = compare(&base, &report(1.0, 1_000.0, 5_000), &o);
        assert!(c.regressed(), "{c:?}");
        let r = row(&c, Metric::ErrorRate);
        assert_eq!(r.baseline, Some(0.0));
        assert_eq!(r.change, None);
        assert!(render_table(&c).contains("+0.50pp"), "{}", render_table(&c));
        // 1% -> 1.05%: within 10% relatively (and under the epsilon).
        let c = compare(
            &report(1.0, 1_000.0, 10_100),
            &report(1.0, 1_000.0, 10_600),
            &o,
        );
        assert!(!c.regressed(), "{c:?}");
        // 5% -> 6%: beyond both.
        let c = compare(
            &report(1.0, 1_000.0, 52_632),
            &report(1.0, 1_000.0, 63_830),
            &o,
        );
        assert!(c.regressed(), "{c:?}");
    }

    #[test]
    fn http_error_statuses_count_in_the_error_rate() {
        let base = report(1.0, 1_000.0, 0);
        let mut cur = base.clone();
        cur.status_codes = [("200".to_owned(), 900_000), ("503".to_owned(), 100_000)].into();
        assert_eq!(error_rate(&cur), Some(0.1));
        assert_eq!(http_error_responses(&cur), 100_000);
        let c = compare(&base, &cur, &opts("error_rate"));
        assert!(c.regressed(), "{c:?}");
    }

    #[test]
    fn missing_values_are_na_unless_the_current_run_got_nothing() {
        let base = report(1.0, 1_000.0, 0);
        let mut no_hist = report(1.2, 1_000.0, 0);
        no_hist.latency_histogram.clear();
        let c = compare(&base, &no_hist, &opts("p95"));
        let r = row(&c, Metric::P95);
        assert_eq!(r.current, None);
        assert!(!r.regression);
        assert!(render_table(&c).contains("n/a"));
        assert!(
            c.notes.iter().any(|n| n.contains("p95 is n/a")),
            "{:?}",
            c.notes
        );

        let mut empty = Report::from_run(&config(LoadModel::Closed), &outcome());
        empty.responses = 0;
        empty.rps = 0.0;
        empty.errors = Default::default();
        empty.status_codes.clear();
        empty.latency_us = Default::default();
        let c = compare(&base, &empty, &opts("p99,error_rate,rps"));
        assert!(c.rows.iter().all(|r| r.regression), "{c:?}");
        // An empty baseline can't be regressed from.
        let c = compare(&empty, &base, &opts("p99,error_rate,rps"));
        assert!(!c.regressed(), "{c:?}");
    }

    #[test]
    fn notes_say_when_runs_are_not_like_for_like() {
        let base = report(1.0, 1_000.0, 0);
        let mut cur = base.clone();
        cur.concurrency = 200;
        cur.generator_bound = true;
        cur.generator.reasons = vec!["client CPU 97%".to_owned()];
        cur.interrupted = true;
        let c = compare(&base, &cur, &CompareOptions::default());
        assert!(!c.regressed());
        let text = render_table(&c);
        assert!(
            text.contains("note: connections differ: baseline 100, current 200"),
            "{text}"
        );
        assert!(
            text.contains("current run was generator-bound (client CPU 97%)"),
            "{text}"
        );
        assert!(text.contains("current run was interrupted"), "{text}");
        assert!(
            compare(&base, &base, &CompareOptions::default())
                .notes
                .is_empty()
        );
    }

    #[test]
    fn metric_names_parse() {
        assert_eq!(
            parse_metrics("p95, P99,rps,error_rate,p95").unwrap(),
            vec![Metric::P95, Metric::P99, Metric::Rps, Metric::ErrorRate]
        );
        assert_eq!("p99.9".parse::<Metric>(), Ok(Metric::P999));
        assert_eq!("avg".parse::<Metric>(), Ok(Metric::Mean));
        for m in Metric::ALL {
            assert_eq!(m.name().parse::<Metric>(), Ok(m));
            assert_eq!(m.to_string(), m.name());
        }
        let e = parse_metrics("p95,p96").unwrap_err();
        assert!(e.contains("\"p96\""), "{e}");
        assert!(
            e.contains("p50, p90, p95, p99, p999, max, mean, rps, error_rate"),
            "{e}"
        );
        assert!(parse_metrics(" , ").is_err());
    }

    #[test]
    fn percentages_parse() {
        assert_eq!(parse_percent("10%"), Ok(0.10));
        assert_eq!(parse_percent(" 2.5 % "), Ok(0.025));
        assert_eq!(parse_percent("0.1"), Ok(0.1));
        assert_eq!(parse_percent("1"), Ok(1.0));
        assert_eq!(parse_percent("150%"), Ok(1.5));
        assert_eq!(parse_percent("0%"), Ok(0.0));
        let e = parse_percent("10").unwrap_err();
        assert!(e.contains("10%"), "{e}");
        for bad in ["", "%", "ten", "-5%", "NaN", "inf%"] {
            assert!(parse_percent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn verdicts_mirror_the_rows() {
        let base = report(1.0, 1_000.0, 0);
        let c = compare(&base, &report(1.2, 1_000.0, 0), &opts("p95,rps"));
        let v = c.verdicts();
        assert_eq!(v.len(), 2);
        assert!(!v[0].passed() && v[1].passed(), "{v:?}");
        assert_eq!(v[0].name, "p95 within 10% of baseline");
    }

    #[test]
    fn reports_load_from_json_files() {
        let dir = std::env::temp_dir().join(format!("blaster-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.json");
        let r = report(1.0, 1_000.0, 0);
        std::fs::write(&path, crate::report::json::to_json(&r)).unwrap();
        assert_eq!(load_report(&path).unwrap(), r);
        std::fs::write(&path, "{}").unwrap();
        let e = load_report(&path).unwrap_err().to_string();
        assert!(e.contains("is not a blaster JSON report"), "{e}");
        let e = load_report(&dir.join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
