//! Open-model pacing: when each request is meant to go out.
//!
//! The total rate `R` is split over `T` workers; worker `i` sends request `k` at
//! `start + (i + k*T) / R`, so the workers' streams interleave into one even stream. The
//! schedule is pure arithmetic (no queue): a worker only remembers how many it has sent.

/// One worker's share of an open-model schedule.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Intended time of request 0, in clock nanoseconds.
    first_ns: u64,
    /// Nanoseconds between two requests of this worker.
    interval_ns: f64,
    /// Requests this worker may send in all (`u64::MAX` for unbounded).
    limit: u64,
    /// No request is intended at or after this time.
    end_ns: u64,
}

impl Schedule {
    /// Worker `index` of `workers`, total `rate` per second, starting at `start_ns`.
    pub fn new(
        rate: f64,
        workers: usize,
        index: usize,
        start_ns: u64,
        end_ns: u64,
        limit: u64,
    ) -> Schedule {
        let total_interval = 1e9 / rate;
        Schedule {
            first_ns: start_ns + (total_interval * index as f64) as u64,
            interval_ns: total_interval * workers as f64,
            limit,
            end_ns,
        }
    }

    /// Intended send time of request `k`.
    #[inline]
    pub fn intended(&self, k: u64) -> u64 {
        self.first_ns + (self.interval_ns * k as f64) as u64
    }

    /// How many requests are due by `now_ns` (their intended time has come).
    #[inline]
    pub fn due(&self, now_ns: u64) -> u64 {
        let horizon = now_ns.min(self.end_ns.saturating_sub(1));
        if horizon < self.first_ns {
            return 0;
        }
        let due = ((horizon - self.first_ns) as f64 / self.interval_ns) as u64 + 1;
        due.min(self.limit)
    }

    /// Requests intended over the whole schedule (bounded by the limit and the end time).
    pub fn total(&self) -> u64 {
        self.due(u64::MAX - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_interleave_into_an_even_stream() {
        // 1000/s over 2 workers: worker 0 at 0, 2, 4 ms ..., worker 1 at 1, 3, 5 ms ...
        let a = Schedule::new(1000.0, 2, 0, 0, u64::MAX, u64::MAX);
        let b = Schedule::new(1000.0, 2, 1, 0, u64::MAX, u64::MAX);
        let mut times: Vec<u64> = (0..5)
            .flat_map(|k| [a.intended(k), b.intended(k)])
            .collect();
        times.sort_unstable();
        let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g == 1_000_000), "{gaps:?}");
    }

    #[test]
    fn due_counts_requests_whose_time_has_come() {
        let s = Schedule::new(1000.0, 1, 0, 5_000_000, u64::MAX, u64::MAX);
        assert_eq!(s.due(0), 0);
        assert_eq!(s.due(5_000_000), 1);
        assert_eq!(s.due(5_999_999), 1);
        assert_eq!(s.due(6_000_000), 2);
    }

    #[test]
    fn total_honours_duration_and_limit() {
        // 2000/s for one second, one worker: 2000 requests.
        let s = Schedule::new(2000.0, 1, 0, 0, 1_000_000_000, u64::MAX);
        assert_eq!(s.total(), 2000);
        let limited = Schedule::new(2000.0, 1, 0, 0, 1_000_000_000, 150);
        assert_eq!(limited.total(), 150);
        // Two workers share the same second: 1000 each.
        let w1 = Schedule::new(2000.0, 2, 1, 0, 1_000_000_000, u64::MAX);
        assert_eq!(w1.total(), 1000);
    }
}
