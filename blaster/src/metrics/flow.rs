//! Metrics of virtual-user runs (scenario files and the `ws://` quick modes), beside the
//! run-wide [`super::WorkerMetrics`] that every run has.
//!
//! Samples are kept per step (one series per step of a flow, which carries the step's static
//! tags: scenario, name, group, method, flow), so a threshold's tag filter or a per-name table
//! merges the series it selects. The only dynamic tag is the HTTP `status`, kept as counts
//! per step. Per worker, no sharing; merged after the run like every other metric.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;

use super::new_histogram;

/// One step's samples.
#[derive(Debug, Clone)]
pub struct StepStats {
    /// Time samples in µs: request duration (HTTP), message latency (ws_expect), handshake
    /// duration (ws_connect).
    pub duration: Histogram<u64>,
    /// Samples taken: requests sent and ended (HTTP), messages (ws), sessions (ws_connect).
    pub count: u64,
    /// Samples that failed: unexpected status or transport error (HTTP), expect timeout,
    /// failed handshake.
    pub failed: u64,
    /// Completed HTTP responses by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Per check of the step (in file order): passes and failures.
    pub checks: Vec<(u64, u64)>,
    /// Failed samples by error kind (`timeout`, `reset`, `ws_expect_timeout`, …).
    pub errors: BTreeMap<&'static str, u64>,
    /// Messages received on sessions this ws_connect step opened (ws_msgs_received).
    pub msgs_received: u64,
    /// Messages sent by this step (ws_send / ws_subscribe).
    pub msgs_sent: u64,
    /// HTTP requests sent again after a retry status (`retry`), and the time waited before
    /// them (µs).
    pub retries: u64,
    pub retry_wait_us: u64,
}

impl StepStats {
    pub fn new(checks: usize) -> StepStats {
        StepStats {
            duration: new_histogram(),
            count: 0,
            failed: 0,
            statuses: BTreeMap::new(),
            checks: vec![(0, 0); checks],
            errors: BTreeMap::new(),
            msgs_received: 0,
            msgs_sent: 0,
            retries: 0,
            retry_wait_us: 0,
        }
    }

    pub fn error(&mut self, kind: &'static str) {
        self.failed += 1;
        *self.errors.entry(kind).or_insert(0) += 1;
    }

    pub fn merge(&mut self, o: &StepStats) {
        self.duration
            .add(&o.duration)
            .expect("same histogram bounds");
        self.retries += o.retries;
        self.retry_wait_us += o.retry_wait_us;
        self.count += o.count;
        self.failed += o.failed;
        for (s, n) in &o.statuses {
            *self.statuses.entry(*s).or_insert(0) += n;
        }
        for (a, b) in self.checks.iter_mut().zip(&o.checks) {
            a.0 += b.0;
            a.1 += b.1;
        }
        for (k, n) in &o.errors {
            *self.errors.entry(k).or_insert(0) += n;
        }
        self.msgs_received += o.msgs_received;
        self.msgs_sent += o.msgs_sent;
    }
}

/// One scenario's iterations.
#[derive(Debug, Clone)]
pub struct ScenarioStats {
    pub iterations: u64,
    /// Iterations cut off by the end of the scenario (graceful stop) or of the run.
    pub interrupted: u64,
    /// Arrival-rate iterations that found no free VU.
    pub dropped: u64,
    /// Arrival-rate iterations started more than `late_after` after their intended time.
    pub late: u64,
    /// Iteration duration in µs (from the intended start for arrival-rate executors).
    pub duration: Histogram<u64>,
    /// Most VUs running an iteration at once (this worker; summed over workers on merge).
    pub vus_max: u64,
}

impl Default for ScenarioStats {
    fn default() -> Self {
        ScenarioStats {
            iterations: 0,
            interrupted: 0,
            dropped: 0,
            late: 0,
            duration: new_histogram(),
            vus_max: 0,
        }
    }
}

impl ScenarioStats {
    pub fn merge(&mut self, o: &ScenarioStats) {
        self.iterations += o.iterations;
        self.interrupted += o.interrupted;
        self.dropped += o.dropped;
        self.late += o.late;
        self.duration
            .add(&o.duration)
            .expect("same histogram bounds");
        self.vus_max += o.vus_max;
    }
}

/// First and last delivery of one published message, and how many subscribers got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub first_ns: u64,
    pub last_ns: u64,
    pub count: u32,
}

/// Most messages whose fan-out is tracked (per worker); later ones are not tracked.
pub const MAX_TRACKED_MESSAGES: usize = 1 << 20;

/// WebSocket session and message metrics (all WebSocket steps and modes).
#[derive(Debug, Clone)]
pub struct WsStats {
    pub sessions: u64,
    pub sessions_failed: u64,
    /// Handshake time in µs: TCP connect plus the Upgrade exchange.
    pub handshake: Histogram<u64>,
    /// Session duration in µs (from the 101 to the close).
    pub session_duration: Histogram<u64>,
    /// Message latency in µs: round trip (echo), delivery (pub/sub, from the publisher's
    /// intended send time), or from the last send (ws_expect).
    pub msg_latency: Histogram<u64>,
    /// Ping to pong in µs.
    pub ping_rtt: Histogram<u64>,
    pub msgs_sent: u64,
    pub msgs_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub pings_sent: u64,
    pub pongs_received: u64,
    /// Server pings answered.
    pub pings_answered: u64,
    /// Sequence gaps (echo, pub/sub): messages that never arrived while later ones did.
    pub lost: u64,
    pub duplicates: u64,
    /// Echo messages sent and not answered when their session ended or the run did.
    pub unanswered: u64,
    /// Sessions that ended by the server or an error and were opened again.
    pub reconnects: u64,
    /// Close codes the server sent.
    pub close_codes: BTreeMap<u16, u64>,
    /// Sessions ended by an error, by kind (`bad_handshake`, `masked_frame`, …).
    pub errors: BTreeMap<&'static str, u64>,
    /// Sends started more than `late_after` after their intended time (echo, publish).
    pub late: u64,
    /// Pub/sub: per published message (publisher VU, sequence), its deliveries.
    pub deliveries: HashMap<(u64, u64), Delivery>,
    /// Disconnect episodes: (dropped at, back at or 0 if never) in clock ns.
    pub episodes: Vec<(u64, u64)>,
}

impl Default for WsStats {
    fn default() -> Self {
        WsStats {
            sessions: 0,
            sessions_failed: 0,
            handshake: new_histogram(),
            session_duration: new_histogram(),
            msg_latency: new_histogram(),
            ping_rtt: new_histogram(),
            msgs_sent: 0,
            msgs_received: 0,
            bytes_sent: 0,
            bytes_received: 0,
            pings_sent: 0,
            pongs_received: 0,
            pings_answered: 0,
            lost: 0,
            duplicates: 0,
            unanswered: 0,
            reconnects: 0,
            close_codes: BTreeMap::new(),
            errors: BTreeMap::new(),
            late: 0,
            deliveries: HashMap::new(),
            episodes: Vec::new(),
        }
    }
}

impl WsStats {
    /// Counters and histograms only (no delivery map, episodes or maps).
    fn clone_counters(&self) -> WsStats {
        WsStats {
            handshake: self.handshake.clone(),
            session_duration: self.session_duration.clone(),
            msg_latency: self.msg_latency.clone(),
            ping_rtt: self.ping_rtt.clone(),
            close_codes: BTreeMap::new(),
            errors: BTreeMap::new(),
            deliveries: HashMap::new(),
            episodes: Vec::new(),
            ..*self
        }
    }

    pub fn error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_insert(0) += 1;
    }

    /// Records that a subscriber got message `(publisher, seq)` at `now`.
    pub fn delivered(&mut self, publisher: u64, seq: u64, now: u64) {
        let full = self.deliveries.len() >= MAX_TRACKED_MESSAGES;
        match self.deliveries.get_mut(&(publisher, seq)) {
            Some(d) => {
                d.first_ns = d.first_ns.min(now);
                d.last_ns = d.last_ns.max(now);
                d.count += 1;
            }
            None if !full => {
                self.deliveries.insert(
                    (publisher, seq),
                    Delivery {
                        first_ns: now,
                        last_ns: now,
                        count: 1,
                    },
                );
            }
            None => {}
        }
    }

    pub fn merge(&mut self, o: &WsStats) {
        self.sessions += o.sessions;
        self.sessions_failed += o.sessions_failed;
        for (a, b) in [
            (&mut self.handshake, &o.handshake),
            (&mut self.session_duration, &o.session_duration),
            (&mut self.msg_latency, &o.msg_latency),
            (&mut self.ping_rtt, &o.ping_rtt),
        ] {
            a.add(b).expect("same histogram bounds");
        }
        self.msgs_sent += o.msgs_sent;
        self.msgs_received += o.msgs_received;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.pings_sent += o.pings_sent;
        self.pongs_received += o.pongs_received;
        self.pings_answered += o.pings_answered;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.unanswered += o.unanswered;
        self.reconnects += o.reconnects;
        self.late += o.late;
        for (k, n) in &o.close_codes {
            *self.close_codes.entry(*k).or_insert(0) += n;
        }
        for (k, n) in &o.errors {
            *self.errors.entry(k).or_insert(0) += n;
        }
        for (key, d) in &o.deliveries {
            match self.deliveries.get_mut(key) {
                Some(x) => {
                    x.first_ns = x.first_ns.min(d.first_ns);
                    x.last_ns = x.last_ns.max(d.last_ns);
                    x.count += d.count;
                }
                None => {
                    self.deliveries.insert(*key, *d);
                }
            }
        }
        self.episodes.extend_from_slice(&o.episodes);
    }

    /// Fan-out delay in µs: for each message delivered at least twice, last minus first
    /// delivery.
    pub fn fanout(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for d in self.deliveries.values().filter(|d| d.count > 1) {
            h.saturating_record((d.last_ns - d.first_ns) / 1000);
        }
        h
    }

    /// The largest mass drop: at least half of `sessions_at_drop` disconnected within one
    /// second. Returns (sessions dropped, seconds until 50%, 99% and 100% were back; `None`
    /// for a share never reached).
    pub fn herd(&self, sessions_at_drop: u64) -> Option<Herd> {
        let mut eps: Vec<(u64, u64)> = self.episodes.clone();
        eps.sort_unstable();
        let window = 1_000_000_000;
        let mut best: Option<(usize, usize)> = None;
        let mut j = 0;
        for i in 0..eps.len() {
            while eps[j].0 + window < eps[i].0 {
                j += 1;
            }
            if best.is_none_or(|(a, b)| i + 1 - j > b - a) {
                best = Some((j, i + 1));
            }
        }
        let (a, b) = best?;
        let dropped = (b - a) as u64;
        if dropped * 2 < sessions_at_drop.max(2) {
            return None;
        }
        let start = eps[a].0;
        let mut back: Vec<u64> = eps[a..b]
            .iter()
            .map(|&(_, at)| if at == 0 { u64::MAX } else { at - start })
            .collect();
        back.sort_unstable();
        let at = |share: f64| {
            let idx = ((share * back.len() as f64).ceil() as usize).clamp(1, back.len()) - 1;
            (back[idx] != u64::MAX).then(|| back[idx] as f64 / 1e9)
        };
        Some(Herd {
            dropped,
            back_50_s: at(0.5),
            back_99_s: at(0.99),
            back_100_s: at(1.0),
        })
    }
}

/// Recovery after a mass drop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Herd {
    pub dropped: u64,
    pub back_50_s: Option<f64>,
    pub back_99_s: Option<f64>,
    pub back_100_s: Option<f64>,
}

/// Everything a VU worker measures beyond [`super::WorkerMetrics`].
#[derive(Debug, Clone, Default)]
pub struct FlowMetrics {
    /// Indexed by step id.
    pub steps: Vec<StepStats>,
    /// Indexed by scenario.
    pub scenarios: Vec<ScenarioStats>,
    pub ws: WsStats,
    /// Most VUs active at once (this worker).
    pub vus_max: u64,
}

impl FlowMetrics {
    /// What happened since `earlier` (a snapshot of the same run): counters and histograms
    /// of the samples taken in between. Pub/sub deliveries and drop episodes are not kept.
    pub fn since(&self, earlier: &FlowMetrics) -> FlowMetrics {
        fn hist(a: &Histogram<u64>, b: &Histogram<u64>) -> Histogram<u64> {
            let mut h = a.clone();
            // A later snapshot holds every sample of the earlier one.
            let _ = h.subtract(b);
            h
        }
        let steps = self
            .steps
            .iter()
            .zip(&earlier.steps)
            .map(|(a, b)| StepStats {
                duration: hist(&a.duration, &b.duration),
                count: a.count - b.count,
                failed: a.failed - b.failed,
                retries: a.retries - b.retries,
                retry_wait_us: a.retry_wait_us - b.retry_wait_us,
                statuses: a
                    .statuses
                    .iter()
                    .map(|(s, n)| (*s, n - b.statuses.get(s).copied().unwrap_or(0)))
                    .collect(),
                checks: a
                    .checks
                    .iter()
                    .zip(&b.checks)
                    .map(|(x, y)| (x.0 - y.0, x.1 - y.1))
                    .collect(),
                errors: a
                    .errors
                    .iter()
                    .map(|(k, n)| (*k, n - b.errors.get(k).copied().unwrap_or(0)))
                    .collect(),
                msgs_received: a.msgs_received - b.msgs_received,
                msgs_sent: a.msgs_sent - b.msgs_sent,
            })
            .collect();
        let scenarios = self
            .scenarios
            .iter()
            .zip(&earlier.scenarios)
            .map(|(a, b)| ScenarioStats {
                iterations: a.iterations - b.iterations,
                interrupted: a.interrupted - b.interrupted,
                dropped: a.dropped - b.dropped,
                late: a.late - b.late,
                duration: hist(&a.duration, &b.duration),
                vus_max: a.vus_max,
            })
            .collect();
        let (a, b) = (&self.ws, &earlier.ws);
        let ws = WsStats {
            sessions: a.sessions - b.sessions,
            sessions_failed: a.sessions_failed - b.sessions_failed,
            handshake: hist(&a.handshake, &b.handshake),
            session_duration: hist(&a.session_duration, &b.session_duration),
            msg_latency: hist(&a.msg_latency, &b.msg_latency),
            ping_rtt: hist(&a.ping_rtt, &b.ping_rtt),
            msgs_sent: a.msgs_sent - b.msgs_sent,
            msgs_received: a.msgs_received - b.msgs_received,
            bytes_sent: a.bytes_sent - b.bytes_sent,
            bytes_received: a.bytes_received - b.bytes_received,
            ..WsStats::default()
        };
        FlowMetrics {
            steps,
            scenarios,
            ws,
            vus_max: self.vus_max,
        }
    }

    /// A copy without the pub/sub delivery map and drop episodes (the parts that grow with
    /// the run), for live snapshots.
    pub fn snapshot(&self) -> FlowMetrics {
        FlowMetrics {
            steps: self.steps.clone(),
            scenarios: self.scenarios.clone(),
            ws: WsStats {
                deliveries: HashMap::new(),
                episodes: Vec::new(),
                close_codes: self.ws.close_codes.clone(),
                errors: self.ws.errors.clone(),
                ..self.ws.clone_counters()
            },
            vus_max: self.vus_max,
        }
    }

    pub fn merge(&mut self, o: &FlowMetrics) {
        if self.steps.is_empty() {
            self.steps = o.steps.clone();
            self.scenarios = o.scenarios.clone();
        } else {
            for (a, b) in self.steps.iter_mut().zip(&o.steps) {
                a.merge(b);
            }
            for (a, b) in self.scenarios.iter_mut().zip(&o.scenarios) {
                a.merge(b);
            }
        }
        self.ws.merge(&o.ws);
        self.vus_max += o.vus_max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herd_finds_the_mass_drop_and_its_recovery() {
        let mut ws = WsStats::default();
        // 100 sessions drop within 10 ms at t=5s and come back over 0.1..=10 s.
        for i in 0..100u64 {
            let drop = 5_000_000_000 + i * 100_000;
            ws.episodes
                .push((drop, 5_000_000_000 + (i + 1) * 100_000_000));
        }
        // A lone drop earlier.
        ws.episodes.push((1_000_000_000, 1_500_000_000));
        let h = ws.herd(100).expect("a herd");
        assert_eq!(h.dropped, 100);
        assert!((h.back_50_s.unwrap() - 5.0).abs() < 1e-9);
        assert!((h.back_99_s.unwrap() - 9.9).abs() < 1e-9);
        assert!((h.back_100_s.unwrap() - 10.0).abs() < 1e-9);
        // A few drops out of many are no herd.
        assert!(ws.herd(10_000).is_none());
    }

    #[test]
    fn fanout_is_last_minus_first_delivery() {
        let mut ws = WsStats::default();
        ws.delivered(1, 0, 1_000_000);
        ws.delivered(1, 0, 4_000_000);
        ws.delivered(1, 1, 2_000_000);
        let mut other = WsStats::default();
        other.delivered(1, 0, 9_000_000);
        ws.merge(&other);
        let f = ws.fanout();
        assert_eq!(f.len(), 1);
        assert!(f.equivalent(f.max(), 8000), "{}", f.max());
    }
}
