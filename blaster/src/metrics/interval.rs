//! Per-interval snapshots: how workers report progress without sharing anything on the hot
//! path, and how the observer merges them into one time series.
//!
//! Once per interval a worker sends an [`IntervalSnapshot`] over a channel: its cumulative
//! [`Counters`] and the latency histogram of just that interval (the worker then adds it into
//! its run-long histogram, so the run's totals are exactly the sum of the intervals). The
//! observer ([`Aggregator`]) turns cumulative counters into per-interval deltas and, when every
//! worker has reported an interval, merges them into one [`IntervalPoint`].

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::{ErrorKind, WorkerMetrics, new_histogram};

/// Cumulative counters of one worker (or, after [`Counters::delta`], of one interval).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub responses: u64,
    /// Responses by status code, indexed by code (empty or 1000 long).
    pub status: Vec<u64>,
    pub errors: [u64; ErrorKind::ALL.len()],
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub conns_opened: u64,
    pub conns_failed: u64,
    pub late: u64,
}

impl Counters {
    pub fn of(m: &WorkerMetrics) -> Counters {
        Counters {
            requests: m.requests,
            responses: m.responses,
            status: m.status.to_vec(),
            errors: m.errors,
            bytes_sent: m.bytes_sent,
            bytes_received: m.bytes_received,
            conns_opened: m.conns_opened,
            conns_failed: m.conns_failed,
            late: m.late,
        }
    }

    /// What happened between `earlier` and `self`.
    pub fn delta(&self, earlier: &Counters) -> Counters {
        let mut errors = [0; ErrorKind::ALL.len()];
        for (i, e) in errors.iter_mut().enumerate() {
            *e = self.errors[i].saturating_sub(earlier.errors[i]);
        }
        let status = (0..self.status.len())
            .map(|i| self.status[i].saturating_sub(earlier.status.get(i).copied().unwrap_or(0)))
            .collect();
        Counters {
            requests: self.requests.saturating_sub(earlier.requests),
            responses: self.responses.saturating_sub(earlier.responses),
            status,
            errors,
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
            bytes_received: self.bytes_received.saturating_sub(earlier.bytes_received),
            conns_opened: self.conns_opened.saturating_sub(earlier.conns_opened),
            conns_failed: self.conns_failed.saturating_sub(earlier.conns_failed),
            late: self.late.saturating_sub(earlier.late),
        }
    }

    pub fn add(&mut self, other: &Counters) {
        self.requests += other.requests;
        self.responses += other.responses;
        if self.status.len() < other.status.len() {
            self.status.resize(other.status.len(), 0);
        }
        for (a, b) in self.status.iter_mut().zip(other.status.iter()) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors.iter()) {
            *a += b;
        }
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.conns_opened += other.conns_opened;
        self.conns_failed += other.conns_failed;
        self.late += other.late;
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// One worker's report for one interval.
#[derive(Debug, Clone)]
pub struct IntervalSnapshot {
    pub worker: usize,
    /// Interval number since the start of the run (0-based).
    pub index: u64,
    /// Clock time (ns) the interval ended (the last one ends early, when the run does).
    pub end_ns: u64,
    /// The worker's counters so far.
    pub counters: Counters,
    /// Connections the worker had open at the end of the interval.
    pub open_connections: u64,
    /// Latencies recorded during this interval only.
    pub latency: Histogram<u64>,
    /// This is the worker's last snapshot.
    pub last: bool,
}

/// All workers merged for one interval.
#[derive(Debug, Clone)]
pub struct IntervalPoint {
    pub index: u64,
    /// When the interval started and ended, in ns since the load started.
    pub start_ns: u64,
    pub end_ns: u64,
    /// What happened during the interval.
    pub counters: Counters,
    pub open_connections: u64,
    pub latency: Histogram<u64>,
}

struct Partial {
    end_ns: u64,
    counters: Counters,
    open_connections: u64,
    latency: Histogram<u64>,
}

/// Merges workers' snapshots into completed intervals, in order.
pub struct Aggregator {
    workers: usize,
    start_ns: u64,
    interval_ns: u64,
    last: Vec<Counters>,
    /// The last interval each worker reported (workers report every interval, in order).
    reported: Vec<Option<u64>>,
    /// Workers that sent their last snapshot (they report no later interval).
    finished: Vec<bool>,
    pending: BTreeMap<u64, Partial>,
}

impl Aggregator {
    pub fn new(workers: usize, start_ns: u64, interval_ns: u64) -> Aggregator {
        Aggregator {
            workers,
            start_ns,
            interval_ns,
            last: vec![Counters::default(); workers],
            reported: vec![None; workers],
            finished: vec![false; workers],
            pending: BTreeMap::new(),
        }
    }

    /// Takes one snapshot; returns the intervals it completed, oldest first.
    pub fn push(&mut self, snap: IntervalSnapshot) -> Vec<IntervalPoint> {
        let delta = snap.counters.delta(&self.last[snap.worker]);
        self.last[snap.worker] = snap.counters;
        self.reported[snap.worker] = Some(snap.index);
        if snap.last {
            self.finished[snap.worker] = true;
        }
        let partial = self.pending.entry(snap.index).or_insert_with(|| Partial {
            end_ns: 0,
            counters: Counters::default(),
            open_connections: 0,
            latency: new_histogram(),
        });
        partial.end_ns = partial.end_ns.max(snap.end_ns);
        partial.counters.add(&delta);
        partial.open_connections += snap.open_connections;
        // Same bounds everywhere, so adding cannot fail.
        partial
            .latency
            .add(&snap.latency)
            .expect("same histogram bounds");
        self.drain_complete(false)
    }

    /// The run ended: hands out every interval still pending.
    pub fn finish(&mut self) -> Vec<IntervalPoint> {
        self.drain_complete(true)
    }

    fn drain_complete(&mut self, all: bool) -> Vec<IntervalPoint> {
        let mut out = Vec::new();
        while let Some((&index, _)) = self.pending.iter().next() {
            // Complete when every worker reported it, or finished before reaching it.
            let complete = all
                || (0..self.workers)
                    .all(|w| self.reported[w].is_some_and(|r| r >= index) || self.finished[w]);
            if !complete {
                break;
            }
            let partial = self.pending.remove(&index).expect("present");
            let start_ns = index * self.interval_ns;
            out.push(IntervalPoint {
                index,
                start_ns,
                end_ns: partial.end_ns.saturating_sub(self.start_ns).max(start_ns),
                counters: partial.counters,
                open_connections: partial.open_connections,
                latency: partial.latency,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(
        worker: usize,
        index: u64,
        requests: u64,
        latencies: &[u64],
        last: bool,
    ) -> IntervalSnapshot {
        let mut latency = new_histogram();
        for &l in latencies {
            latency.record(l).unwrap();
        }
        IntervalSnapshot {
            worker,
            index,
            end_ns: (index + 1) * 1_000,
            counters: Counters {
                requests,
                responses: requests,
                ..Counters::default()
            },
            open_connections: 2,
            latency,
            last,
        }
    }

    #[test]
    fn an_interval_completes_when_every_worker_reported_it() {
        let mut agg = Aggregator::new(2, 0, 1_000);
        assert!(agg.push(snap(0, 0, 10, &[100], false)).is_empty());
        let done = agg.push(snap(1, 0, 5, &[200, 300], false));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].counters.requests, 15);
        assert_eq!(done[0].latency.len(), 3);
        assert_eq!(done[0].open_connections, 4);
    }

    #[test]
    fn cumulative_counters_become_deltas() {
        let mut agg = Aggregator::new(1, 0, 1_000);
        let a = agg.push(snap(0, 0, 10, &[], false));
        let b = agg.push(snap(0, 1, 25, &[], false));
        assert_eq!(a[0].counters.requests, 10);
        assert_eq!(b[0].counters.requests, 15);
    }

    #[test]
    fn finished_workers_are_not_waited_for() {
        let mut agg = Aggregator::new(2, 0, 1_000);
        assert!(agg.push(snap(0, 0, 3, &[], true)).is_empty());
        let done = agg.push(snap(1, 0, 4, &[], false));
        assert_eq!(done.len(), 1);
        // Worker 0 finished: interval 1 needs only worker 1.
        let done = agg.push(snap(1, 1, 9, &[], false));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].counters.requests, 5);
    }

    #[test]
    fn finish_flushes_partial_intervals() {
        let mut agg = Aggregator::new(2, 0, 1_000);
        agg.push(snap(0, 0, 3, &[], false));
        let rest = agg.finish();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].counters.requests, 3);
    }
}
