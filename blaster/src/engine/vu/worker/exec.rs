//! Executors: when VUs start and end iterations (constant and ramping VUs, per-VU and
//! shared iterations, constant and ramping arrival rates), graceful stop and cut-off.

use super::*;

impl VuWorker {
    pub(super) fn tick_executors(&mut self, now: u64) -> R {
        for ei in 0..self.execs.len() {
            let e = &self.execs[ei];
            if e.done || now < e.start_ns {
                continue;
            }
            if now >= e.hard_end_ns {
                self.end_exec(ei, now);
                continue;
            }
            if now < e.end_ns {
                self.start_iterations(ei, now)?;
            }
            let e = &self.execs[ei];
            let exhausted = match &e.kind {
                ExecKind::Vus { .. } => now >= e.end_ns,
                ExecKind::PerVu { iterations } => {
                    now >= e.end_ns
                        || e.vus
                            .iter()
                            .all(|&v| self.vus[v as usize].iterations_done >= *iterations)
                }
                ExecKind::Shared { left } => now >= e.end_ns || *left == 0,
                ExecKind::Arrival { arrivals, .. } => now >= e.end_ns || arrivals.peek().is_none(),
            };
            // A VU backing off after a failure still owes an iteration (a shared iteration
            // it took), unless the executor's time is up (then the backoff starts nothing).
            if exhausted
                && !e.vus.iter().any(|&v| {
                    let vu = &self.vus[v as usize];
                    vu.iterating || (vu.wait == Wait::Backoff && now < e.end_ns)
                })
            {
                self.end_exec(ei, now);
            }
        }
        Ok(())
    }

    /// The scenario is over: cut off running iterations and close its connections.
    pub(super) fn end_exec(&mut self, ei: usize, now: u64) {
        self.execs[ei].done = true;
        for k in 0..self.execs[ei].vus.len() {
            let v = self.execs[ei].vus[k];
            self.stop_vu(v, now);
        }
    }

    pub(super) fn stop_vu(&mut self, v: u32, now: u64) {
        let vu = &mut self.vus[v as usize];
        if vu.iterating {
            self.flow.scenarios[vu.scenario as usize].interrupted += 1;
            vu.iterating = false;
            self.active -= 1;
            self.execs[vu.scenario as usize].running -= 1;
        }
        if vu.wait == Wait::Response {
            // The request in flight ends with the run.
            self.metrics.in_flight_at_end += 1;
        }
        if vu.link == Link::Ready {
            self.metrics.open_at_end += 1;
        }
        self.account_session_end(v, now, false);
        let vu = &mut self.vus[v as usize];
        vu.wait = Wait::Off;
        vu.wake_gen = vu.wake_gen.wrapping_add(1);
        let _ = self.close(v);
    }

    pub(super) fn interrupt_all(&mut self, now: u64) {
        for ei in 0..self.execs.len() {
            if !self.execs[ei].done {
                self.end_exec(ei, now);
            }
        }
    }

    pub(super) fn start_iterations(&mut self, ei: usize, now: u64) -> R {
        if now < self.execs[ei].next_scan_ns
            && !matches!(self.execs[ei].kind, ExecKind::Arrival { .. })
        {
            return Ok(());
        }
        let start_ns = self.execs[ei].start_ns;
        let t = (now - start_ns) as f64 / 1e9;
        match &mut self.execs[ei].kind {
            ExecKind::Vus {
                start_vus,
                stages,
                count,
                start_rate,
            } => {
                let wanted = match stages {
                    Some(st) => vus_at(*start_vus, st, t),
                    None => *count,
                };
                let mut next_scan = if stages.is_some() {
                    now + RAMP_TICK_NS
                } else {
                    u64::MAX
                };
                let rate = *start_rate;
                let vus = self.execs[ei].vus.clone();
                for v in vus {
                    let vu = &self.vus[v as usize];
                    if vu.index >= wanted || vu.wait != Wait::Off {
                        continue;
                    }
                    if let Some(r) = rate {
                        let at = start_ns + (vu.index as f64 * 1e9 / r) as u64;
                        if at > now {
                            next_scan = next_scan.min(at);
                            continue;
                        }
                    }
                    self.begin_iteration(v, now, None)?;
                }
                self.execs[ei].next_scan_ns = next_scan;
            }
            ExecKind::PerVu { .. } | ExecKind::Shared { .. } => {
                let vus = self.execs[ei].vus.clone();
                for v in vus {
                    if self.vus[v as usize].wait == Wait::Off && self.wants_more(ei, v, now) {
                        self.take_shared(ei);
                        self.begin_iteration(v, now, None)?;
                    }
                }
                self.execs[ei].next_scan_ns = u64::MAX;
            }
            ExecKind::Arrival { .. } => {
                if self.execs[ei].next_scan_ns != u64::MAX {
                    // First turn: every VU joins the idle pool.
                    let vus = self.execs[ei].vus.clone();
                    for &v in vus.iter().rev() {
                        self.vus[v as usize].wait = Wait::Idle;
                    }
                    if let ExecKind::Arrival { idle, .. } = &mut self.execs[ei].kind {
                        idle.extend(vus.iter().rev());
                    }
                    self.execs[ei].next_scan_ns = u64::MAX;
                }
                let end_ns = self.execs[ei].end_ns;
                loop {
                    let ExecKind::Arrival { arrivals, idle } = &mut self.execs[ei].kind else {
                        unreachable!()
                    };
                    let Some(at) = arrivals.peek() else { break };
                    let intended = start_ns + (at * 1e9) as u64;
                    if intended > now || intended >= end_ns {
                        break;
                    }
                    arrivals.advance();
                    let stats = &mut self.flow.scenarios[ei];
                    match idle.pop() {
                        Some(v) => {
                            if now - intended > self.late_after_ns {
                                stats.late += 1;
                                self.metrics.late += 1;
                            }
                            self.begin_iteration(v, now, Some(intended))?;
                        }
                        None => {
                            stats.dropped += 1;
                            self.metrics.dropped += 1;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether VU `v` of executor `ei` should run another iteration.
    pub(super) fn wants_more(&self, ei: usize, v: u32, now: u64) -> bool {
        let e = &self.execs[ei];
        if now >= e.end_ns || e.done {
            return false;
        }
        let vu = &self.vus[v as usize];
        match &e.kind {
            ExecKind::Vus {
                start_vus,
                stages,
                count,
                ..
            } => {
                let wanted = match stages {
                    Some(st) => vus_at(*start_vus, st, (now - e.start_ns) as f64 / 1e9),
                    None => *count,
                };
                vu.index < wanted
            }
            ExecKind::PerVu { iterations } => vu.iterations_done < *iterations,
            ExecKind::Shared { left } => *left > 0,
            ExecKind::Arrival { .. } => false,
        }
    }

    pub(super) fn take_shared(&mut self, ei: usize) {
        if let ExecKind::Shared { left } = &mut self.execs[ei].kind {
            *left = left.saturating_sub(1);
        }
    }

    pub(super) fn begin_iteration(&mut self, v: u32, now: u64, intended: Option<u64>) -> R {
        let plan = Arc::clone(&self.plan);
        let vu = &mut self.vus[v as usize];
        let sp = &plan.scenarios[vu.scenario as usize];
        vu.state.begin_iteration(&self.shared);
        vu.flow = if sp.flows.len() == 1 {
            0
        } else {
            runtime::pick_weighted(&sp.weights(), vu.state.rng()) as u16
        };
        vu.pc = 0;
        vu.iterating = true;
        vu.iter_failed = false;
        // A VU stopped while it waited to retry starts its next request afresh.
        vu.retries = 0;
        vu.waited_retry_after = false;
        vu.retry_after_broken = false;
        vu.iter_start = intended.unwrap_or(now);
        vu.intended = intended;
        self.active += 1;
        self.flow.vus_max = self.flow.vus_max.max(self.active);
        let ei = vu.scenario as usize;
        self.execs[ei].running += 1;
        let stats = &mut self.flow.scenarios[ei];
        stats.vus_max = stats.vus_max.max(self.execs[ei].running);
        self.run_vu(v, now)
    }

    pub(super) fn end_iteration(&mut self, v: u32, now: u64, ok: bool) -> R {
        let vu = &mut self.vus[v as usize];
        if !vu.iterating {
            return Ok(());
        }
        vu.iterating = false;
        self.active -= 1;
        vu.iterations_done += 1;
        let ei = vu.scenario as usize;
        self.execs[ei].running -= 1;
        let stats = &mut self.flow.scenarios[ei];
        stats.iterations += 1;
        stats
            .duration
            .saturating_record(ns_to_us(now.saturating_sub(vu.iter_start)));
        vu.failures = if ok && !vu.iter_failed {
            0
        } else {
            vu.failures.saturating_add(1)
        };
        if matches!(self.execs[ei].kind, ExecKind::Arrival { .. }) {
            vu.wait = Wait::Idle;
            if let ExecKind::Arrival { idle, .. } = &mut self.execs[ei].kind {
                idle.push(v);
            }
            return Ok(());
        }
        vu.wait = Wait::Off;
        if !self.wants_more(ei, v, now) {
            return Ok(());
        }
        self.take_shared(ei);
        let failures = self.vus[v as usize].failures;
        if failures > 0 {
            let unit = self.vus[v as usize].unit();
            let delay = self.plan.scenarios[ei].backoff.delay(failures, unit);
            if !delay.is_zero() {
                self.vus[v as usize].wait = Wait::Backoff;
                self.set_timer(v, now + delay.as_nanos() as u64);
                return Ok(());
            }
        }
        // A fresh iteration right away would recurse; yield to the loop instead (the timer
        // pass only fires timers queued before it began, see `fire_timers`, so an iteration
        // that fails before any I/O cannot restart inside the same pass).
        self.vus[v as usize].wait = Wait::Backoff;
        self.set_timer(v, now);
        Ok(())
    }

    // ----- the program -------------------------------------------------------------------
}
