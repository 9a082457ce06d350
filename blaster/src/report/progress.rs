//! Live progress on stderr while a run goes on.
//!
//! Fed by the engine's observer with one merged interval at a time (workers never touch it):
//! on a terminal an `indicatif` bar with the latest interval's numbers; otherwise (CI logs,
//! pipes) one plain line per interval; nothing with `--quiet`. No colour is used, so `NO_COLOR`
//! is honoured trivially.
//!
//! A run with stages (scenario files) adds a stage label to each line, from a [`StageFn`]
//! given with [`Progress::with_stage`]; [`scenario_stage`] is the one for scenario plans.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::units::{format_count, format_duration_us, format_thousands};
use crate::engine::vu::plan::Plan;
use crate::metrics::interval::IntervalPoint;
use crate::scenario::model::Executor;

/// What the run is doing at a time since its start ("browse 12.0s/60s, stage 2/3 ->200/s"),
/// `None` when there is nothing to say.
pub type StageFn = Box<dyn Fn(Duration) -> Option<String>>;

/// Most scenarios named in one stage label; the rest are counted.
const MAX_STAGES_SHOWN: usize = 3;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    /// One line per interval (stderr is not a terminal).
    Lines,
    /// A redrawn bar (stderr is a terminal).
    Bar,
}

impl Mode {
    /// `Off` when quiet, `Bar` on a terminal, `Lines` otherwise.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// Intervals shorter than this are not printed (their counts still go into the totals).
const MIN_PRINTED_NS: u64 = 50_000_000;

pub struct Progress {
    mode: Mode,
    bar: Option<ProgressBar>,
    total: Option<Duration>,
    responses: u64,
    errors: u64,
    stage: Option<StageFn>,
}

impl Progress {
    /// `total` is the planned duration when there is one.
    pub fn new(mode: Mode, total: Option<Duration>) -> Progress {
        let bar = (mode == Mode::Bar).then(|| {
            let bar = match total {
                Some(t) => ProgressBar::with_draw_target(
                    Some(t.as_millis() as u64),
                    ProgressDrawTarget::stderr(),
                ),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let template = if total.is_some() {
                "{bar:20} {msg}"
            } else {
                "{spinner} {msg}"
            };
            bar.set_style(
                ProgressStyle::with_template(template).expect("static template is valid"),
            );
            bar
        });
        Progress {
            mode,
            bar,
            total,
            responses: 0,
            errors: 0,
            stage: None,
        }
    }

    /// Adds a stage label to every line.
    pub fn with_stage(mut self, stage: StageFn) -> Progress {
        self.stage = Some(stage);
        self
    }

    /// Shows one finished interval.
    pub fn interval(&mut self, p: &IntervalPoint) {
        self.responses += p.counters.responses;
        self.errors += p.counters.total_errors();
        // A sliver of an interval (the drain after the last full one) would show a rate
        // computed over a few milliseconds: count it, do not print it.
        if self.mode == Mode::Off || p.end_ns.saturating_sub(p.start_ns) < MIN_PRINTED_NS {
            return;
        }
        let line = self.line(p);
        match &self.bar {
            Some(bar) => {
                bar.set_position(p.end_ns / 1_000_000);
                bar.set_message(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// Removes the bar before the summary is printed.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn line(&self, p: &IntervalPoint) -> String {
        let elapsed = p.end_ns as f64 / 1e9;
        let span = p.end_ns.saturating_sub(p.start_ns) as f64 / 1e9;
        let rps = if span > 0.0 {
            p.counters.responses as f64 / span
        } else {
            0.0
        };
        let when = match self.total {
            Some(t) => format!("{elapsed:>6.1}s/{:.0}s", t.as_secs_f64()),
            None => format!("{elapsed:>6.1}s"),
        };
        let h = &p.latency;
        let (p50, p99) = if h.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format_duration_us(h.value_at_quantile(0.5)),
                format_duration_us(h.value_at_quantile(0.99)),
            )
        };
        let mut line = format!(
            "[{when}] {:>8} req/s  p50 {p50:>7}  p99 {p99:>7}  conns {}  errors {} ({} total)  responses {}",
            format_count(rps),
            p.open_connections,
            p.counters.total_errors(),
            self.errors,
            format_thousands(self.responses),
        );
        if p.counters.late > 0 {
            line.push_str(&format!("  late {}", p.counters.late));
        }
        if let Some(label) = self
            .stage
            .as_ref()
            .and_then(|f| f(Duration::from_nanos(p.end_ns)))
        {
            line.push_str("  stage: ");
            line.push_str(&label);
        }
        line
    }
}

/// The stage label of a scenario plan at `at` since the start: each running scenario with its
/// elapsed and planned time, the stage of a ramping executor and its target, `stopping` during
/// a graceful stop; `waiting` with the next start when nothing runs yet.
pub fn scenario_stage(plan: &Plan, at: Duration) -> Option<String> {
    let mut parts = Vec::new();
    for s in &plan.scenarios {
        if at < s.start || at >= s.hard_end() {
            continue;
        }
        if at > s.end() {
            parts.push(format!("{} stopping", s.name));
            continue;
        }
        let into = at - s.start;
        let mut part = format!(
            "{} {}/{}",
            s.name,
            seconds(into),
            seconds(s.executor.duration())
        );
        let (stages, unit) = match &s.executor {
            Executor::RampingVus { stages, .. } => (stages.as_slice(), " VUs"),
            Executor::RampingArrivalRate { stages, .. } => (stages.as_slice(), "/s"),
            _ => (&[][..], ""),
        };
        let mut stage_end = Duration::ZERO;
        for (i, stage) in stages.iter().enumerate() {
            stage_end += stage.duration;
            if into < stage_end {
                part.push_str(&format!(
                    " stage {}/{} ->{}{unit}",
                    i + 1,
                    stages.len(),
                    format_count(stage.target)
                ));
                break;
            }
        }
        parts.push(part);
    }
    if parts.is_empty() {
        let next = plan
            .scenarios
            .iter()
            .filter(|s| s.start > at)
            .min_by_key(|s| s.start)?;
        return Some(format!(
            "waiting: {} starts at {}",
            next.name,
            seconds(next.start)
        ));
    }
    let more = parts.len().saturating_sub(MAX_STAGES_SHOWN);
    parts.truncate(MAX_STAGES_SHOWN);
    let mut label = parts.join(", ");
    if more > 0 {
        label.push_str(&format!(" (+{more} more)"));
    }
    Some(label)
}

/// `12s`, `1.5s`: whole seconds without decimals.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if (s - s.round()).abs() < 0.05 {
        format!("{:.0}s", s.round())
    } else {
        format!("{s:.1}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::interval::Counters;
    use crate::metrics::new_histogram;

    #[test]
    fn a_line_shows_rate_percentiles_and_running_totals() {
        let mut latency = new_histogram();
        for v in [100, 200, 300, 40_000] {
            latency.record(v).unwrap();
        }
        let point = IntervalPoint {
            index: 1,
            start_ns: 1_000_000_000,
            end_ns: 2_000_000_000,
            counters: Counters {
                responses: 1500,
                late: 3,
                ..Counters::default()
            },
            open_connections: 10,
            latency,
            ..IntervalPoint::empty(0, 0, 0)
        };
        let mut p = Progress::new(Mode::Off, Some(Duration::from_secs(10)));
        p.interval(&point);
        let line = p.line(&point);
        assert!(line.contains("2.0s/10s"), "{line}");
        assert!(
            line.contains("1.50k req/s") || line.contains("1.5k req/s"),
            "{line}"
        );
        assert!(line.contains("conns 10"), "{line}");
        assert!(line.contains("late 3"), "{line}");
        assert!(line.contains("responses 1,500"), "{line}");
    }

    fn plan(toml: &str) -> Plan {
        let file = crate::scenario::parse_str(
            toml,
            std::path::Path::new("t.toml"),
            &Default::default(),
            false,
        )
        .expect("valid scenario");
        Plan::compile(std::sync::Arc::new(file)).expect("compiles")
    }

    const TWO: &str = r#"
[scenarios.browse]
executor = "constant-vus"
vus = 2
duration = "10s"
graceful_stop = "5s"
[[scenarios.browse.steps]]
request = "GET http://127.0.0.1:1/"

[scenarios.ramp]
executor = "ramping-arrival-rate"
start_time = "20s"
start_rate = 10
pre_allocated_vus = 5
stages = [{ duration = "10s", target = 100 }, { duration = "20s", target = 200 }]
[[scenarios.ramp.steps]]
request = "GET http://127.0.0.1:1/"
"#;

    #[test]
    fn the_stage_names_running_scenarios_their_time_and_ramp_stage() {
        let p = plan(TWO);
        let at = |s: f64| scenario_stage(&p, Duration::from_secs_f64(s));
        assert_eq!(at(2.0).as_deref(), Some("browse 2s/10s"));
        assert_eq!(at(10.0).as_deref(), Some("browse 10s/10s"));
        assert_eq!(at(12.5).as_deref(), Some("browse stopping"));
        assert_eq!(at(16.0).as_deref(), Some("waiting: ramp starts at 20s"));
        assert_eq!(at(25.5).as_deref(), Some("ramp 5.5s/30s stage 1/2 ->100/s"));
        assert_eq!(at(35.0).as_deref(), Some("ramp 15s/30s stage 2/2 ->200/s"));
        assert_eq!(at(60.0).as_deref(), Some("ramp stopping"));
        assert_eq!(at(90.0), None);
    }

    #[test]
    fn the_stage_is_on_the_line() {
        let p = std::sync::Arc::new(plan(TWO));
        let progress = Progress::new(Mode::Off, Some(Duration::from_secs(50)))
            .with_stage(Box::new(move |at| scenario_stage(&p, at)));
        let point = IntervalPoint {
            index: 2,
            start_ns: 2_000_000_000,
            end_ns: 3_000_000_000,
            counters: Counters::default(),
            open_connections: 2,
            latency: new_histogram(),
            ..IntervalPoint::empty(0, 0, 0)
        };
        let line = progress.line(&point);
        assert!(line.ends_with("  stage: browse 3s/10s"), "{line}");
    }

    #[test]
    fn quiet_is_off() {
        assert_eq!(Mode::detect(true), Mode::Off);
    }
}
