//! Executor timing: when arrival-rate iterations are meant to start, and how many VUs a
//! ramping-VUs executor wants at a moment.
//!
//! A rate that moves linearly within each stage has a cumulative count that is quadratic in
//! time, so iteration `k`'s intended start is the root of that quadratic: pure arithmetic, no
//! queue, the same for every worker. Iterations are dealt round-robin: worker `w` of `T`
//! starts global iterations `w, w+T, w+2T, …`, so the workers' streams interleave into one.

use std::time::Duration;

use crate::scenario::model::Stage;

/// A piecewise-linear rate (per second) over time, from 0 to the sum of the stage durations.
#[derive(Debug, Clone, PartialEq)]
pub struct RateCurve {
    /// (start time s, duration s, rate at start, rate at end, count before the segment).
    segments: Vec<(f64, f64, f64, f64, f64)>,
    total: f64,
    end_s: f64,
}

impl RateCurve {
    /// A constant rate for `duration`.
    pub fn constant(rate: f64, duration: Duration) -> RateCurve {
        RateCurve::ramping(
            rate,
            &[Stage {
                duration,
                target: rate,
            }],
        )
    }

    /// From `start_rate`, moving linearly to each stage's target over its duration.
    pub fn ramping(start_rate: f64, stages: &[Stage]) -> RateCurve {
        let mut segments = Vec::with_capacity(stages.len());
        let (mut t, mut count, mut rate) = (0.0, 0.0, start_rate);
        for stage in stages {
            let d = stage.duration.as_secs_f64();
            segments.push((t, d, rate, stage.target, count));
            count += d * (rate + stage.target) / 2.0;
            t += d;
            rate = stage.target;
        }
        RateCurve {
            segments,
            total: count,
            end_s: t,
        }
    }

    /// Iterations the curve starts in all: those whose intended time falls before the end.
    pub fn total(&self) -> u64 {
        // Iteration k starts where the cumulative count reaches k, so k < total.
        let whole = self.total.ceil() as u64;
        if whole > 0 && self.time_of(whole - 1).is_none() {
            whole - 1
        } else {
            whole
        }
    }

    /// The cumulative count at `t` seconds.
    pub fn count_at(&self, t: f64) -> f64 {
        for &(start, d, a, b, before) in &self.segments {
            if t < start + d {
                let tau = (t - start).max(0.0);
                return before + a * tau + (b - a) * tau * tau / (2.0 * d);
            }
        }
        self.total
    }

    /// Seconds from the start at which iteration `k` (0-based) is intended, or `None` when
    /// the curve ends before it.
    pub fn time_of(&self, k: u64) -> Option<f64> {
        let c = k as f64;
        if c >= self.total {
            return None;
        }
        for &(start, d, a, b, before) in &self.segments {
            let in_seg = d * (a + b) / 2.0;
            if c < before + in_seg || (in_seg == 0.0 && c == before && a > 0.0) {
                let need = c - before;
                let slope = (b - a) / d;
                let tau = if slope.abs() < 1e-12 {
                    if a <= 0.0 { continue } else { need / a }
                } else {
                    // slope/2 τ² + a τ - need = 0, the root in [0, d].
                    let disc = (a * a + 2.0 * slope * need).max(0.0);
                    (-a + disc.sqrt()) / slope
                };
                return Some(start + tau.clamp(0.0, d));
            }
        }
        let _ = self.end_s;
        None
    }
}

/// One worker's share of an arrival-rate executor.
#[derive(Debug, Clone)]
pub struct Arrivals {
    curve: RateCurve,
    worker: u64,
    workers: u64,
    /// The worker's next iteration (its j-th is global `worker + j * workers`).
    next: u64,
}

impl Arrivals {
    pub fn new(curve: RateCurve, worker: usize, workers: usize) -> Arrivals {
        Arrivals {
            curve,
            worker: worker as u64,
            workers: workers as u64,
            next: 0,
        }
    }

    /// The intended time (seconds from the scenario's start) of this worker's next
    /// iteration, if any.
    pub fn peek(&self) -> Option<f64> {
        self.curve.time_of(self.worker + self.next * self.workers)
    }

    pub fn advance(&mut self) {
        self.next += 1;
    }
}

/// The VU count a ramping-VUs executor wants `t` seconds after its start.
pub fn vus_at(start_vus: u64, stages: &[Stage], t: f64) -> u64 {
    let (mut at, mut from) = (0.0, start_vus as f64);
    for stage in stages {
        let d = stage.duration.as_secs_f64();
        if t < at + d {
            let f = ((t - at) / d).clamp(0.0, 1.0);
            return (from + (stage.target - from) * f).round() as u64;
        }
        at += d;
        from = stage.target;
    }
    from.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(secs: u64, target: f64) -> Stage {
        Stage {
            duration: Duration::from_secs(secs),
            target,
        }
    }

    #[test]
    fn constant_rate_spaces_iterations_evenly() {
        let c = RateCurve::constant(100.0, Duration::from_secs(2));
        assert_eq!(c.total(), 200);
        assert_eq!(c.time_of(0), Some(0.0));
        assert!((c.time_of(50).unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(c.time_of(200), None);
    }

    #[test]
    fn ramp_from_zero_delivers_the_area_under_the_curve() {
        // 0 -> 1000/s over 10 s: 5000 iterations, the k-th at sqrt(2k/100) s.
        let c = RateCurve::ramping(0.0, &[stage(10, 1000.0)]);
        assert_eq!(c.total(), 5000);
        let t = c.time_of(1250).unwrap();
        assert!((t - 5.0).abs() < 1e-6, "{t}");
        // Times increase and stay within the curve.
        let mut last = -1.0;
        for k in (0..5000).step_by(7) {
            let t = c.time_of(k).unwrap();
            assert!(t >= last && t <= 10.0);
            last = t;
        }
    }

    #[test]
    fn stages_with_a_flat_zero_part_skip_it() {
        let c = RateCurve::ramping(
            10.0,
            &[stage(1, 10.0), stage(2, 0.0), stage(1, 0.0), stage(1, 10.0)],
        );
        // 10 + 10 (down ramp) + 0 + 5 (up ramp).
        assert_eq!(c.total(), 25);
        let t = c.time_of(21).unwrap();
        assert!(t > 4.0 && t < 5.0, "{t}");
    }

    #[test]
    fn workers_split_the_iterations_between_them() {
        let c = RateCurve::ramping(0.0, &[stage(10, 1000.0)]);
        let count = |w| {
            let mut a = Arrivals::new(c.clone(), w, 2);
            let mut n = 0;
            while a.peek().is_some() {
                a.advance();
                n += 1;
            }
            n
        };
        assert_eq!(count(0) + count(1), 5000);
    }

    #[test]
    fn ramping_vus_interpolate_between_targets() {
        let stages = [stage(10, 100.0), stage(10, 100.0), stage(5, 0.0)];
        assert_eq!(vus_at(0, &stages, 0.0), 0);
        assert_eq!(vus_at(0, &stages, 5.0), 50);
        assert_eq!(vus_at(0, &stages, 15.0), 100);
        assert_eq!(vus_at(0, &stages, 22.5), 50);
        assert_eq!(vus_at(0, &stages, 30.0), 0);
    }
}
