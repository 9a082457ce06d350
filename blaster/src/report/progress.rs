//! Live progress on stderr while a run goes on.
//!
//! Fed by the engine's observer with one merged interval at a time (workers never touch it):
//! on a terminal an `indicatif` bar with the latest interval's numbers; otherwise (CI logs,
//! pipes) one plain line per interval; nothing with `--quiet`. No colour is used, so `NO_COLOR`
//! is honoured trivially.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::units::{format_count, format_duration_us, format_thousands};
use crate::metrics::interval::IntervalPoint;

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
        }
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
        line
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

    #[test]
    fn quiet_is_off() {
        assert_eq!(Mode::detect(true), Mode::Off);
    }
}
