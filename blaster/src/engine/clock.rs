//! The run's monotonic clock: nanoseconds since one shared start instant.
//!
//! Every worker holds a copy of the same [`Clock`], so intended send times computed by one
//! worker's pacing and timestamps taken by another agree. Workers read it once per batch of
//! completions, not once per request.

use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            base: Instant::now(),
        }
    }

    /// Nanoseconds since the clock was created.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Nanoseconds to whole microseconds, at least 1 (histograms start at 1 µs).
#[inline]
pub fn ns_to_us(ns: u64) -> u64 {
    (ns / 1_000).max(1)
}
