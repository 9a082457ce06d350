//! Declarative scenario files (`blaster check FILE.toml`, `blaster run FILE.toml`).
//!
//! A scenario file is TOML, read with serde into raw structs that reject unknown keys, then
//! validated into the plain [`model`] types. Every error names the file, line and column and,
//! where it can, suggests the key, executor, metric or name that was probably meant:
//!
//! ```text
//! plan.toml:12:12: unknown executor "ramping-arival-rate"; did you mean "ramping-arrival-rate"?
//! ```
//!
//! # Variables
//!
//! Strings may use load-time variables, substituted once while loading:
//!
//! - `${NAME}`: the value of `NAME`; undefined is an error that names it.
//! - `${NAME:-default}`: `default` when `NAME` is undefined.
//!
//! `NAME` is looked up in `-e NAME=VALUE` (the `vars` given to [`load`]), then the process
//! environment, then the file's `[variables]` table. Numbers may be given as strings to use
//! variables: `vus = "${VUS:-10}"`, `duration = "${DURATION:-30s}"`. So one file serves a
//! smoke run (`-e VUS=1 -e DURATION=10s`), staging and the full run.
//!
//! Run-time references are kept in the [`model::Template`] segments, resolved per request by
//! the engine: `${data.SOURCE.FIELD}` (a data source row), `${vars.NAME}` (set by a capture),
//! `${gen.uuid}`, `${gen.counter}`, `${gen.vu}`, `${gen.iteration}`, `${gen.int(1,100)}`,
//! `${gen.float(0,1)}`, `${gen.string(16)}` / `${gen.string(1MiB)}`, `${gen.first_name}`,
//! `${gen.last_name}`, `${gen.name}`, `${gen.email}`, `${gen.timestamp}`,
//! `${gen.timestamp_ms}`, `${gen.iso8601}`. `$${` is a literal `${`.
//!
//! # Format
//!
//! See `examples/scenarios/README.md` and the files beside it. In short:
//!
//! ```toml
//! [options]                 # timeout, headers, tags, threads
//! [variables]               # file defaults for ${NAME}
//! [data.NAME]               # kind = csv | json | geo-walk, file, mode = sequential | random | unique-per-vu
//! [scenarios.NAME]          # executor + its keys, start_time, graceful_stop, error_backoff, tags
//! [[scenarios.NAME.flows]]  # name, weight, steps (or [[scenarios.NAME.steps]] for one flow)
//! [thresholds]              # "metric{tag:value}" = ["p(95)<500"] or { conditions, abort_on_fail }
//! [special.soak]            # or special.breakpoint, special.spike
//! ```

pub mod model;
pub mod parse;
pub mod runtime;
mod template;
mod threshold;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::Path;
use std::time::Duration;

use crate::cli::units::format_count;
use model::{Executor, ScenarioFile, Special, Stage, Step, StepKind, ThinkTime};
pub use parse::{ScenarioError, load, parse_str};

/// What `blaster check` prints: the validated file and a human description of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The file as the user named it.
    pub path: String,
    pub file: ScenarioFile,
}

/// Loads and validates a scenario file (see [`load`] for `vars`) and returns its summary.
pub fn check(path: &Path, vars: &BTreeMap<String, String>) -> Result<Summary, ScenarioError> {
    Ok(Summary {
        path: path.display().to_string(),
        file: load(path, vars)?,
    })
}

/// A short human duration: `500ms`, `10s`, `1m30s`, `4h`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d.subsec_nanos() != 0 && d < Duration::from_secs(60) {
        let ms = d.as_secs_f64() * 1e3;
        return if d < Duration::from_secs(1) {
            format!("{}ms", format_count(ms))
        } else {
            format!("{}s", format_count(d.as_secs_f64()))
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if s > 0 {
        let _ = write!(out, "{s}s");
    }
    out
}

/// A number as written: whole numbers in full, fractions with up to three decimals.
fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn rate(r: f64) -> String {
    format!("{}/s", num(r))
}

/// Describes ramping stages from `start`: `0->1000/s over 10s, then 1000/s for 1m`.
fn describe_stages(start: f64, stages: &[Stage], unit: impl Fn(f64) -> String) -> String {
    let mut parts = Vec::new();
    let mut from = start;
    for st in stages {
        let d = format_duration(st.duration);
        if st.target == from {
            parts.push(format!("{} for {d}", unit(st.target)));
        } else {
            parts.push(format!(
                "{}->{} over {d}",
                unit(from).trim_end_matches(" VUs").trim_end_matches("/s"),
                unit(st.target)
            ));
        }
        from = st.target;
    }
    parts.join(", then ")
}

/// One line describing an executor's shape, like
/// `ramping-arrival-rate 0->1000/s over 10s, then 1000/s for 1m (100-200 VUs)`.
pub fn describe_executor(e: &Executor) -> String {
    let vus = |n: f64| format!("{} VUs", num(n));
    let shape = match e {
        Executor::ConstantVus { vus: n, duration } => {
            format!("{} VUs for {}", n, format_duration(*duration))
        }
        Executor::RampingVus { start_vus, stages } => {
            describe_stages(*start_vus as f64, stages, vus)
        }
        Executor::ConstantArrivalRate {
            rate: r,
            duration,
            pre_allocated_vus,
            max_vus,
        } => format!(
            "{} for {} ({pre_allocated_vus}-{max_vus} VUs)",
            rate(*r),
            format_duration(*duration)
        ),
        Executor::RampingArrivalRate {
            start_rate,
            stages,
            pre_allocated_vus,
            max_vus,
        } => format!(
            "{} ({pre_allocated_vus}-{max_vus} VUs)",
            describe_stages(*start_rate, stages, rate)
        ),
        Executor::PerVuIterations {
            vus: n,
            iterations,
            max_duration,
        } => format!(
            "{n} VUs x {iterations} iterations each (at most {})",
            format_duration(*max_duration)
        ),
        Executor::SharedIterations {
            vus: n,
            iterations,
            max_duration,
        } => format!(
            "{iterations} iterations shared by {n} VUs (at most {})",
            format_duration(*max_duration)
        ),
    };
    format!("{} {shape}", e.name())
}

fn describe_think(t: &ThinkTime) -> String {
    match t {
        ThinkTime::Constant(d) => format_duration(*d),
        ThinkTime::Uniform { min, max } => format!(
            "uniform({}, {})",
            format_duration(*min),
            format_duration(*max)
        ),
        ThinkTime::Normal { mean, stddev } => format!(
            "normal({}, {})",
            format_duration(*mean),
            format_duration(*stddev)
        ),
        ThinkTime::Exponential { mean } => format!("exponential({})", format_duration(*mean)),
    }
}

fn describe_steps(out: &mut String, steps: &[Step], indent: usize) -> fmt::Result {
    for s in steps {
        let pad = " ".repeat(indent);
        let prob = if s.probability < 1.0 {
            format!(" (p={})", s.probability)
        } else {
            String::new()
        };
        match &s.kind {
            StepKind::Http(h) => {
                write!(out, "{pad}{} {}", h.method, h.url.source_text())?;
                if h.name != format!("{} {}", h.method, h.url.source_text()) {
                    write!(out, " [{}]", h.name)?;
                }
                if !h.checks.is_empty() {
                    let names: Vec<&str> = h.checks.iter().map(|c| c.name.as_str()).collect();
                    write!(out, " checks: {}", names.join(", "))?;
                }
                if !h.captures.is_empty() {
                    let names: Vec<&str> = h.captures.iter().map(|c| c.var.as_str()).collect();
                    write!(out, " captures: {}", names.join(", "))?;
                }
                if !h.expect.is_empty() {
                    write!(out, " expect: {:?}", h.expect)?;
                }
                if let Some(r) = &h.retry {
                    write!(
                        out,
                        " retry on {:?} up to {}x (Retry-After up to {}, else backoff {})",
                        r.on,
                        r.max,
                        format_duration(r.max_wait),
                        format_duration(r.backoff)
                    )?;
                }
            }
            StepKind::WsConnect { url, .. } => {
                write!(out, "{pad}ws connect {}", url.source_text())?
            }
            StepKind::WsSend { body, .. } => {
                write!(out, "{pad}ws send {}", short(&body.source_text()))?
            }
            StepKind::WsExpect {
                contains, timeout, ..
            } => write!(
                out,
                "{pad}ws expect {} within {}",
                contains.as_ref().map_or("any message".into(), |c| format!(
                    "{:?}",
                    short(&c.source_text())
                )),
                format_duration(*timeout)
            )?,
            StepKind::WsSubscribe { body, duration, .. } => write!(
                out,
                "{pad}ws subscribe {}{}",
                short(&body.source_text()),
                duration.map_or(String::new(), |d| format!(" for {}", format_duration(d)))
            )?,
            StepKind::WsClose { code } => write!(out, "{pad}ws close {code}")?,
            StepKind::Sleep(t) => write!(out, "{pad}sleep {}", describe_think(t))?,
            StepKind::SleepFor(t) => write!(out, "{pad}sleep \"{}\" (per VU)", t.source_text())?,
            StepKind::Group { name, steps } => {
                writeln!(out, "{pad}group \"{name}\"{prob}:")?;
                describe_steps(out, steps, indent + 2)?;
                continue;
            }
            StepKind::Loop { repeat, steps } => {
                match repeat {
                    model::Repeat::Count(n) => writeln!(out, "{pad}loop {n} times{prob}:")?,
                    model::Repeat::For(d) => {
                        writeln!(out, "{pad}loop for {}{prob}:", format_duration(*d))?
                    }
                }
                describe_steps(out, steps, indent + 2)?;
                continue;
            }
        }
        writeln!(out, "{prob}")?;
    }
    Ok(())
}

fn short(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_owned()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = &self.file;
        writeln!(
            f,
            "{}: OK: {} scenario(s), {} threshold(s), {} data source(s)",
            self.path,
            file.scenarios.len(),
            file.thresholds.len(),
            file.data.len()
        )?;
        for (name, value) in &file.variables {
            writeln!(f, "  variable {name} = {value:?}")?;
        }
        for ds in file.data.values() {
            let what = match &ds.kind {
                model::DataKind::Table { path, rows, .. } => {
                    format!("{} ({} rows)", path.display(), rows.len())
                }
                model::DataKind::GeoWalk(g) => format!(
                    "geo-walk around {},{} within {}m, {}m steps",
                    g.lat, g.lon, g.radius_m, g.step_m
                ),
            };
            writeln!(
                f,
                "  data {}: {what}, {}, fields {}",
                ds.name,
                ds.mode.name(),
                ds.fields().join(", ")
            )?;
        }
        for sc in &file.scenarios {
            write!(
                f,
                "  scenario \"{}\": {}",
                sc.name,
                describe_executor(&sc.executor)
            )?;
            if !sc.start_time.is_zero() {
                write!(f, ", starts at {}", format_duration(sc.start_time))?;
            }
            write!(f, ", graceful stop {}", format_duration(sc.graceful_stop))?;
            if sc.error_backoff != model::Backoff::None {
                write!(
                    f,
                    ", after a failed iteration waits {}",
                    sc.error_backoff.source_text()
                )?;
            }
            writeln!(f)?;
            let total = sc.total_weight();
            for flow in &sc.flows {
                writeln!(
                    f,
                    "    flow \"{}\" {}% ({} step(s)):",
                    flow.name,
                    num(flow.weight / total * 100.0),
                    flow.steps.len()
                )?;
                let mut steps = String::new();
                describe_steps(&mut steps, &flow.steps, 6)?;
                f.write_str(&steps)?;
            }
        }
        for t in &file.thresholds {
            let conds: Vec<String> = t.conditions.iter().map(ToString::to_string).collect();
            write!(f, "  threshold {}: {}", t.selector(), conds.join(", "))?;
            if t.abort_on_fail {
                write!(f, " (abort on fail)")?;
            }
            writeln!(f)?;
        }
        match &file.special {
            None => {}
            Some(Special::Breakpoint {
                scenario,
                start_rate,
                step_rate,
                step_duration,
                max_rate,
            }) => writeln!(
                f,
                "  breakpoint search on \"{scenario}\": from {} up by {} every {} to at most {}",
                rate(*start_rate),
                rate(*step_rate),
                format_duration(*step_duration),
                rate(*max_rate)
            )?,
            Some(Special::Spike {
                scenario,
                recovery,
                tolerance,
            }) => writeln!(
                f,
                "  spike on \"{scenario}\": p95 must be back within {tolerance}x baseline {} after the spike",
                format_duration(*recovery)
            )?,
            Some(Special::Soak(w)) => writeln!(
                f,
                "  soak watch: {} every {} -> {} = {}{}",
                w.url.source_text(),
                format_duration(w.interval),
                w.metric,
                w.json.text,
                w.max_growth_per_hour
                    .map_or(String::new(), |g| format!(", growth at most {g}/h"))
            )?,
        }
        Ok(())
    }
}
