//! Live evaluation during a scenario run: thresholds with `abort_on_fail` stop the run as
//! soon as they fail, and the breakpoint search steps its arrival rate until one does.
//!
//! The run's cumulative scenario metrics arrive once per interval ([`super::run_observed`]'s
//! `on_flow`). Plain thresholds are evaluated on everything so far; during a breakpoint
//! search on the current step's samples only (the difference from the step's first
//! snapshot), so the good early steps do not hide a broken one.

use std::collections::BTreeMap;
use std::time::Duration;

use super::plan::Plan;
use crate::metrics::flow::FlowMetrics;
use crate::report::flow::{Gauge, observe};

/// What the monitor decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// `metric{tags} condition (measured value)` of the threshold that stopped the run.
    pub aborted_by: Option<String>,
    /// Breakpoint search: the last rate whose step passed, and the rate that broke.
    pub last_passing_rate: Option<f64>,
    pub broke_at_rate: Option<f64>,
}

pub struct Monitor<'a> {
    plan: &'a Plan,
    step: usize,
    step_base: Option<FlowMetrics>,
    step_started: Duration,
    pub verdict: Verdict,
}

impl<'a> Monitor<'a> {
    pub fn new(plan: &'a Plan) -> Monitor<'a> {
        Monitor {
            plan,
            step: 0,
            step_base: None,
            step_started: Duration::ZERO,
            verdict: Verdict::default(),
        }
    }

    /// Sees the run's metrics at `elapsed`; returns true to stop the run.
    pub fn on_interval(&mut self, elapsed: Duration, m: &FlowMetrics) -> bool {
        let plan = self.plan;
        let (window, since) = match &plan.breakpoint {
            Some(bp) => {
                let start = plan.scenarios[bp.scenario].start;
                let k =
                    (elapsed.saturating_sub(start).as_secs_f64() / bp.step.as_secs_f64()) as usize;
                let k = k.min(bp.rates.len() - 1);
                if k != self.step || self.step_base.is_none() {
                    if self.step_base.is_some() {
                        // The step that just ended held.
                        self.verdict.last_passing_rate = Some(bp.rates[self.step]);
                    }
                    self.step = k;
                    self.step_base = Some(m.clone());
                    self.step_started = elapsed;
                    return false;
                }
                let base = self.step_base.as_ref().expect("set above");
                (m.since(base), elapsed - self.step_started)
            }
            None => (m.clone(), elapsed),
        };
        let gauges = BTreeMap::<String, Gauge>::new();
        for t in plan.file.thresholds.iter().filter(|t| t.abort_on_fail) {
            if since < t.delay_abort_eval {
                continue;
            }
            for c in &t.conditions {
                let observed = observe(
                    t,
                    c.aggregation,
                    plan,
                    &window,
                    since.as_secs_f64(),
                    &gauges,
                );
                if let Some(v) = observed
                    && !c.holds(v)
                {
                    self.verdict.aborted_by = Some(format!(
                        "{} {} (measured {})",
                        t.selector(),
                        c,
                        (v * 1000.0).round() / 1000.0
                    ));
                    if let Some(bp) = &plan.breakpoint {
                        self.verdict.broke_at_rate = Some(bp.rates[self.step]);
                    }
                    return true;
                }
            }
        }
        false
    }

    /// The run ended: a breakpoint search that never broke passed its last step too.
    pub fn finish(&mut self, completed: bool) {
        if let Some(bp) = &self.plan.breakpoint
            && completed
            && self.verdict.aborted_by.is_none()
            && self.step + 1 == bp.rates.len()
        {
            self.verdict.last_passing_rate = Some(bp.rates[self.step]);
        }
    }
}
