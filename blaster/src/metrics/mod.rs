//! Per-worker metrics: histograms and counters owned by one worker thread, with no atomics or
//! locks on the hot path, merged with [`WorkerMetrics::merge`] after the run.
//!
//! [`interval`] carries the per-interval snapshots workers publish for live progress and the
//! time series.

pub mod flow;
pub mod interval;

use hdrhistogram::Histogram;

/// Highest trackable latency: one hour in microseconds (the issue asks for at least 60 s).
pub const MAX_TRACKABLE_US: u64 = 3_600_000_000;
/// Significant digits kept by every histogram.
pub const SIGFIG: u8 = 3;

/// A latency histogram in microseconds, 1 µs to one hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_US, SIGFIG)
        .expect("static histogram bounds are valid")
}

/// Every kind of error a request or connection can end with. The names are part of the JSON
/// report (`errors.<kind>`), so they never change once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The target refused the connection (nothing listening).
    ConnectRefused,
    /// Connect failed for another reason (unreachable, no ports left, ...).
    ConnectFailed,
    /// No response within `--timeout`.
    Timeout,
    /// The peer reset the connection.
    Reset,
    /// The peer closed the connection while requests were outstanding.
    ClosedMidResponse,
    /// The status line or a header could not be parsed.
    MalformedResponse,
    /// The response head was larger than the limit.
    HeadersTooLarge,
    /// A chunked body had a bad chunk size or framing.
    InvalidChunk,
    /// Content-Length missing its number, duplicated with different values, or not a number.
    InvalidContentLength,
    /// The body was larger than the limit.
    BodyTooLarge,
    /// A send failed (other than a reset).
    SendFailed,
    /// A receive failed (other than a reset).
    RecvFailed,
    /// The server sent bytes while no request was outstanding.
    UnexpectedData,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::ConnectRefused,
        ErrorKind::ConnectFailed,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::ClosedMidResponse,
        ErrorKind::MalformedResponse,
        ErrorKind::HeadersTooLarge,
        ErrorKind::InvalidChunk,
        ErrorKind::InvalidContentLength,
        ErrorKind::BodyTooLarge,
        ErrorKind::SendFailed,
        ErrorKind::RecvFailed,
        ErrorKind::UnexpectedData,
    ];

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectFailed => "connect_failed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::ClosedMidResponse => "closed_mid_response",
            ErrorKind::MalformedResponse => "malformed_response",
            ErrorKind::HeadersTooLarge => "headers_too_large",
            ErrorKind::InvalidChunk => "invalid_chunk",
            ErrorKind::InvalidContentLength => "invalid_content_length",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::SendFailed => "send_failed",
            ErrorKind::RecvFailed => "recv_failed",
            ErrorKind::UnexpectedData => "unexpected_data",
        }
    }

    /// Whether an error of this kind ends a request. Connect errors and unsolicited data are
    /// about a connection, not a request: `requests = responses + errors that end a request +
    /// in_flight_at_end`.
    pub fn ends_request(self) -> bool {
        !matches!(
            self,
            ErrorKind::ConnectRefused | ErrorKind::ConnectFailed | ErrorKind::UnexpectedData
        )
    }
}

/// Counters and histograms of one worker.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    /// Request latency in µs (from intended send time in the open model), over the whole run
    /// up to the last [`WorkerMetrics::take_interval`].
    pub latency: Histogram<u64>,
    /// Request latency of the current interval; folded into `latency` by `take_interval`.
    pub interval_latency: Histogram<u64>,
    /// TCP connect latency in µs.
    pub connect_latency: Histogram<u64>,
    /// How late the event loop woke compared with its deadline, in µs.
    pub loop_lag: Histogram<u64>,
    pub requests: u64,
    pub responses: u64,
    /// Responses by status code, indexed by code (0..=999).
    pub status: Box<[u64; 1000]>,
    pub errors: [u64; ErrorKind::ALL.len()],
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub conns_opened: u64,
    pub conns_failed: u64,
    pub closed_by_peer: u64,
    pub closed_on_error: u64,
    pub reconnects: u64,
    /// Connections closed by --churn (each one is reopened).
    pub churned: u64,
    /// Time from the start of the load until the worker first had all its connections open
    /// at once, in ns (the latest worker's after a merge), and how many workers got there: a
    /// connection storm's length is known when all of them did.
    pub all_open_after_ns: u64,
    pub workers_all_open: u64,
    pub open_at_end: u64,
    pub in_flight_at_end: u64,
    pub late: u64,
    pub late_by_generator: u64,
    pub dropped: u64,
    pub cq_overflows: u64,
    pub recv_buffer_exhausted: u64,
    /// Clock time (ns) the worker's load phase, drain included, ended; the latest one wins in
    /// a merge. Shutdown (closing connections) comes after and is not part of the run's time.
    pub ended_ns: u64,
    /// CPU time of the worker thread itself (RUSAGE_THREAD), user and system, in ns: the
    /// client's own cost even when a target runs in the same process (the demo).
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    /// Connections still closing when shutdown stopped waiting (left to the kernel).
    pub closing_at_exit: u64,
    /// Rings the worker drove beyond its first (a worker whose connections need more than one
    /// registered file table drives several); summed in a merge.
    pub extra_rings: u64,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerMetrics {
    pub fn new() -> Self {
        WorkerMetrics {
            latency: new_histogram(),
            interval_latency: new_histogram(),
            connect_latency: new_histogram(),
            loop_lag: new_histogram(),
            requests: 0,
            responses: 0,
            status: Box::new([0; 1000]),
            errors: [0; ErrorKind::ALL.len()],
            bytes_sent: 0,
            bytes_received: 0,
            conns_opened: 0,
            conns_failed: 0,
            closed_by_peer: 0,
            closed_on_error: 0,
            reconnects: 0,
            churned: 0,
            all_open_after_ns: 0,
            workers_all_open: 0,
            open_at_end: 0,
            in_flight_at_end: 0,
            late: 0,
            late_by_generator: 0,
            dropped: 0,
            cq_overflows: 0,
            recv_buffer_exhausted: 0,
            ended_ns: 0,
            cpu_user_ns: 0,
            cpu_system_ns: 0,
            closing_at_exit: 0,
            extra_rings: 0,
        }
    }

    /// Records one complete response.
    #[inline]
    pub fn record_response(&mut self, status: u16, latency_us: u64) {
        self.responses += 1;
        self.status[usize::from(status).min(999)] += 1;
        self.interval_latency.saturating_record(latency_us.max(1));
    }

    /// Ends the current interval: its latencies join the run-long histogram and are returned.
    /// The run's histogram is therefore exactly the sum of its intervals.
    pub fn take_interval(&mut self) -> Histogram<u64> {
        // Same bounds, so adding cannot fail.
        self.latency
            .add(&self.interval_latency)
            .expect("same histogram bounds");
        let interval = self.interval_latency.clone();
        self.interval_latency.reset();
        interval
    }

    #[inline]
    pub fn record_error(&mut self, kind: ErrorKind) {
        self.errors[kind as usize] += 1;
    }

    #[inline]
    pub fn error_count(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize]
    }

    /// Errors that ended a request (see [`ErrorKind::ends_request`]).
    pub fn request_errors(&self) -> u64 {
        ErrorKind::ALL
            .iter()
            .filter(|k| k.ends_request())
            .map(|&k| self.error_count(k))
            .sum()
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Adds another worker's metrics into this one.
    pub fn merge(&mut self, other: &WorkerMetrics) {
        // The histograms share bounds, so `add` cannot fail.
        self.latency
            .add(&other.latency)
            .expect("same histogram bounds");
        self.connect_latency
            .add(&other.connect_latency)
            .expect("same histogram bounds");
        self.loop_lag
            .add(&other.loop_lag)
            .expect("same histogram bounds");
        self.requests += other.requests;
        self.responses += other.responses;
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
        self.closed_by_peer += other.closed_by_peer;
        self.closed_on_error += other.closed_on_error;
        self.reconnects += other.reconnects;
        self.churned += other.churned;
        self.all_open_after_ns = self.all_open_after_ns.max(other.all_open_after_ns);
        self.workers_all_open += other.workers_all_open;
        self.open_at_end += other.open_at_end;
        self.in_flight_at_end += other.in_flight_at_end;
        self.late += other.late;
        self.late_by_generator += other.late_by_generator;
        self.dropped += other.dropped;
        self.cq_overflows += other.cq_overflows;
        self.extra_rings += other.extra_rings;
        self.recv_buffer_exhausted += other.recv_buffer_exhausted;
        self.ended_ns = self.ended_ns.max(other.ended_ns);
        self.cpu_user_ns += other.cpu_user_ns;
        self.cpu_system_ns += other.cpu_system_ns;
        self.closing_at_exit += other.closing_at_exit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut a = WorkerMetrics::new();
        let mut b = WorkerMetrics::new();
        a.record_response(200, 100);
        b.record_response(200, 300);
        b.record_response(503, 5_000);
        b.record_error(ErrorKind::Timeout);
        a.take_interval();
        b.take_interval();
        a.merge(&b);
        assert_eq!(a.responses, 3);
        assert_eq!(a.status[200], 2);
        assert_eq!(a.status[503], 1);
        assert_eq!(a.latency.len(), 3);
        assert_eq!(a.latency.max(), a.latency.highest_equivalent(5_000));
        assert_eq!(a.error_count(ErrorKind::Timeout), 1);
        assert_eq!(a.total_errors(), 1);
    }

    #[test]
    fn intervals_sum_to_the_run() {
        let mut m = WorkerMetrics::new();
        m.record_response(200, 10);
        let first = m.take_interval();
        m.record_response(200, 20);
        m.record_response(200, 30);
        let second = m.take_interval();
        assert_eq!((first.len(), second.len()), (1, 2));
        assert_eq!(m.latency.len(), 3);
        assert!(m.interval_latency.is_empty());
    }

    #[test]
    fn histogram_tracks_one_microsecond_to_an_hour() {
        let mut h = new_histogram();
        h.record(1).unwrap();
        h.record(3_600_000_000).unwrap();
        assert_eq!(h.min(), 1);
        assert!(h.max() >= 3_600_000_000);
    }

    #[test]
    fn error_kind_names_are_unique_and_indexed_in_order() {
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }
}
