//! Per-interval snapshots: how workers report progress without sharing anything on the hot
//! path, and how the observer merges them into one time series.
//!
//! Once per interval a worker sends an [`IntervalSnapshot`] over a channel: its cumulative
//! [`Counters`] and the latency histogram of just that interval (the worker then adds it into
//! its run-long histogram, so the run's totals are exactly the sum of the intervals). The
//! observer ([`Aggregator`]) turns cumulative counters into per-interval deltas and, when every
//! worker has reported an interval, merges them into one [`IntervalPoint`].
//!
//! VU runs add, per interval, what each step (request name) did ([`StepInterval`]) and the
//! WebSocket counters ([`WsInterval`]). A worker computes them at the interval boundary as the
//! difference from what it shipped last ([`StepTracker`]), so the hot path records into its
//! run-long [`StepStats`] exactly as before and pays nothing for the series.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::flow::{StepStats, WsStats};
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

/// The samples of cumulative histogram `now` that `earlier` (an earlier state of it) lacks.
fn since(now: &Histogram<u64>, earlier: &Histogram<u64>) -> Histogram<u64> {
    if now.len() == earlier.len() {
        // Nothing new: skip copying and walking the counts.
        return new_histogram();
    }
    let mut h = now.clone();
    // `now` holds every sample of `earlier` (same bounds), so nothing can go negative.
    let _ = h.subtract(earlier);
    h
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
    /// VU runs: what each step (by step id) did during this interval; steps without samples
    /// are left out.
    pub steps: Vec<(u32, StepInterval)>,
    /// VU runs with WebSocket sessions: the interval's WebSocket counters.
    pub ws: Option<WsInterval>,
    /// This is the worker's last snapshot.
    pub last: bool,
}

/// One step's samples during one interval.
#[derive(Debug, Clone)]
pub struct StepInterval {
    pub count: u64,
    pub failed: u64,
    /// Failed samples by kind (non-zero only).
    pub errors: BTreeMap<&'static str, u64>,
    /// Request duration, handshake or message latency (as the step's `duration`), in µs.
    pub latency: Histogram<u64>,
}

impl StepInterval {
    pub fn add(&mut self, o: &StepInterval) {
        self.count += o.count;
        self.failed += o.failed;
        for (k, n) in &o.errors {
            *self.errors.entry(k).or_insert(0) += n;
        }
        self.latency.add(&o.latency).expect("same histogram bounds");
    }
}

/// WebSocket counters of one interval (open sessions: at its end).
#[derive(Debug, Clone)]
pub struct WsInterval {
    pub msgs_sent: u64,
    pub msgs_received: u64,
    pub lost: u64,
    pub handshakes_ok: u64,
    pub handshakes_failed: u64,
    pub reconnects: u64,
    pub open_sessions: u64,
    /// Message latency (echo round trip, delivery, ws_expect), in µs.
    pub msg_latency: Histogram<u64>,
}

impl WsInterval {
    pub fn add(&mut self, o: &WsInterval) {
        self.msgs_sent += o.msgs_sent;
        self.msgs_received += o.msgs_received;
        self.lost += o.lost;
        self.handshakes_ok += o.handshakes_ok;
        self.handshakes_failed += o.handshakes_failed;
        self.reconnects += o.reconnects;
        self.open_sessions += o.open_sessions;
        self.msg_latency
            .add(&o.msg_latency)
            .expect("same histogram bounds");
    }
}

/// A worker's record of the step and WebSocket totals it already shipped, to turn its
/// cumulative [`StepStats`] and [`WsStats`] into per-interval differences at each boundary.
///
/// The work happens once per interval and only for steps that took samples: a histogram copy
/// and subtraction (a few tens of µs each). Nothing is added to the recording path.
#[derive(Debug, Default)]
pub struct StepTracker {
    steps: Vec<StepStats>,
    ws: Option<WsStats>,
}

impl StepTracker {
    /// The steps' samples since the last call (steps without new samples left out).
    pub fn steps(&mut self, now: &[StepStats]) -> Vec<(u32, StepInterval)> {
        if self.steps.len() != now.len() {
            self.steps = now.iter().map(|s| StepStats::new(s.checks.len())).collect();
        }
        let mut out = Vec::new();
        for (id, (cur, prev)) in now.iter().zip(self.steps.iter_mut()).enumerate() {
            if cur.count == prev.count
                && cur.failed == prev.failed
                && cur.duration.len() == prev.duration.len()
            {
                continue;
            }
            let latency = since(&cur.duration, &prev.duration);
            let errors = cur
                .errors
                .iter()
                .map(|(k, n)| (*k, n - prev.errors.get(k).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect();
            out.push((
                id as u32,
                StepInterval {
                    count: cur.count - prev.count,
                    failed: cur.failed - prev.failed,
                    errors,
                    latency,
                },
            ));
            prev.count = cur.count;
            prev.failed = cur.failed;
            prev.errors.clone_from(&cur.errors);
            prev.duration
                .add(&out.last().expect("pushed").1.latency)
                .expect("same bounds");
        }
        out
    }

    /// The WebSocket counters since the last call; `None` while the run had no WebSocket
    /// activity.
    pub fn ws(&mut self, now: &WsStats) -> Option<WsInterval> {
        if self.ws.is_none() && now.sessions == 0 && now.sessions_failed == 0 && now.msgs_sent == 0
        {
            return None;
        }
        let prev = self.ws.get_or_insert_with(WsStats::default);
        let msg_latency = since(&now.msg_latency, &prev.msg_latency);
        let out = WsInterval {
            msgs_sent: now.msgs_sent - prev.msgs_sent,
            msgs_received: now.msgs_received - prev.msgs_received,
            lost: now.lost - prev.lost,
            handshakes_ok: now.sessions - prev.sessions,
            handshakes_failed: now.sessions_failed - prev.sessions_failed,
            reconnects: now.reconnects - prev.reconnects,
            open_sessions: now.sessions.saturating_sub(now.session_duration.len()),
            msg_latency,
        };
        prev.msgs_sent = now.msgs_sent;
        prev.msgs_received = now.msgs_received;
        prev.lost = now.lost;
        prev.sessions = now.sessions;
        prev.sessions_failed = now.sessions_failed;
        prev.reconnects = now.reconnects;
        prev.msg_latency
            .add(&out.msg_latency)
            .expect("same histogram bounds");
        Some(out)
    }
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
    /// VU runs: per step id, what the step did during the interval (steps with samples).
    pub steps: BTreeMap<u32, StepInterval>,
    /// VU runs with WebSocket sessions: the interval's WebSocket counters.
    pub ws: Option<WsInterval>,
}

impl IntervalPoint {
    /// An interval in which nothing happened (for tests and renderers' examples).
    pub fn empty(index: u64, start_ns: u64, end_ns: u64) -> IntervalPoint {
        IntervalPoint {
            index,
            start_ns,
            end_ns,
            counters: Counters::default(),
            open_connections: 0,
            latency: new_histogram(),
            steps: BTreeMap::new(),
            ws: None,
        }
    }
}

struct Partial {
    end_ns: u64,
    counters: Counters,
    open_connections: u64,
    latency: Histogram<u64>,
    steps: BTreeMap<u32, StepInterval>,
    ws: Option<WsInterval>,
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
            steps: BTreeMap::new(),
            ws: None,
        });
        partial.end_ns = partial.end_ns.max(snap.end_ns);
        partial.counters.add(&delta);
        partial.open_connections += snap.open_connections;
        // Same bounds everywhere, so adding cannot fail.
        partial
            .latency
            .add(&snap.latency)
            .expect("same histogram bounds");
        for (id, st) in snap.steps {
            match partial.steps.get_mut(&id) {
                Some(p) => p.add(&st),
                None => {
                    partial.steps.insert(id, st);
                }
            }
        }
        if let Some(ws) = snap.ws {
            match partial.ws.as_mut() {
                Some(p) => p.add(&ws),
                None => partial.ws = Some(ws),
            }
        }
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
                steps: partial.steps,
                ws: partial.ws,
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
            steps: Vec::new(),
            ws: None,
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
    fn step_intervals_are_differences_and_merge_across_workers() {
        let mut stats = vec![StepStats::new(0), StepStats::new(0)];
        let mut tracker = StepTracker::default();
        stats[0].count = 3;
        stats[0].duration.record(100).unwrap();
        stats[0].error("timeout");
        stats[0].count += 1;
        let first = tracker.steps(&stats);
        assert_eq!(first.len(), 1, "step 1 took no samples");
        assert_eq!((first[0].0, first[0].1.count, first[0].1.failed), (0, 4, 1));
        stats[0].count += 2;
        stats[0].duration.record(300).unwrap();
        stats[1].count = 5;
        let second = tracker.steps(&stats);
        assert_eq!(second.len(), 2);
        assert_eq!((second[0].1.count, second[0].1.failed), (2, 0));
        assert_eq!(second[0].1.latency.len(), 1);
        assert!(second[0].1.errors.is_empty());
        assert!(tracker.steps(&stats).is_empty(), "nothing new");

        let mut agg = Aggregator::new(2, 0, 1_000);
        let mut a = snap(0, 0, 1, &[], false);
        a.steps = second.clone();
        let mut b = snap(1, 0, 1, &[], false);
        b.steps = first;
        agg.push(a);
        let done = agg.push(b);
        assert_eq!(done[0].steps[&0].count, 6);
        assert_eq!(done[0].steps[&0].latency.len(), 2);
        assert_eq!(done[0].steps[&1].count, 5);
    }

    #[test]
    fn ws_intervals_count_what_happened_since_the_last_one() {
        let mut tracker = StepTracker::default();
        let mut ws = WsStats::default();
        assert!(tracker.ws(&ws).is_none(), "no WebSocket activity yet");
        ws.sessions = 3;
        ws.msgs_sent = 10;
        ws.msg_latency.record(50).unwrap();
        let a = tracker.ws(&ws).expect("activity");
        assert_eq!((a.handshakes_ok, a.msgs_sent, a.open_sessions), (3, 10, 3));
        ws.msgs_sent = 15;
        ws.session_duration.record(1).unwrap();
        let b = tracker.ws(&ws).expect("activity");
        assert_eq!((b.handshakes_ok, b.msgs_sent, b.open_sessions), (0, 5, 2));
        assert!(b.msg_latency.is_empty());
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
