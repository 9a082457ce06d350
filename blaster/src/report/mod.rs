//! The report: plain data describing a finished (or interrupted) run, and its renderers.
//!
//! [`Report`] is built once from the merged metrics ([`crate::metrics::RunMetrics`]); the
//! renderers only format it: [`text`] for the terminal summary, [`json`] for `--json`.
//! The JSON field names are a contract users' scripts rely on; the schema is documented in
//! docs/report-schema.md and checked by a test against `report-schema.json`.

pub mod json;
pub mod text;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything a run produced, as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Version of blaster that produced the report.
    pub blaster_version: String,
    /// Target URLs.
    pub targets: Vec<String>,
    /// "closed" or "open".
    pub model: String,
    pub threads: usize,
    /// Configured connections (concurrency).
    pub concurrency: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Wall time of the load phase, in seconds.
    pub duration_s: f64,
    /// Requests sent (each one ends as a response or an error, or is still in flight at the end).
    pub requests: u64,
    /// Complete responses received (any status).
    pub responses: u64,
    /// Responses per second over `duration_s`.
    pub rps: f64,
    /// Open model: the requested arrival rate (requests/s); `null` in the closed model.
    pub target_rate: Option<f64>,
    /// Open model: requests sent later than `late_after_us` after their intended time.
    pub late: u64,
    /// Open model: requests whose intended time passed but which never went out.
    pub dropped: u64,
    /// Open model: the lateness bound, in microseconds.
    pub late_after_us: u64,
    /// Requests still unanswered when the run ended (neither response nor error).
    pub in_flight_at_end: u64,
    /// Request latency (send, or intended send in the open model, to last byte of response).
    pub latency_us: LatencySummary,
    /// TCP connect latency.
    pub connect_latency_us: LatencySummary,
    /// Responses per status code ("200": n).
    pub status_codes: BTreeMap<String, u64>,
    pub errors: Errors,
    pub connections: Connections,
    pub bytes: Bytes,
    /// Client CPU time (user + system) over the run, in seconds.
    pub client_cpu_s: f64,
    pub client_cpu_user_s: f64,
    pub client_cpu_system_s: f64,
    /// True when the load generator itself limited the run; see `generator`.
    pub generator_bound: bool,
    pub generator: Generator,
    /// True when the run was stopped by Ctrl-C / SIGTERM before it finished.
    pub interrupted: bool,
    /// The request latency histogram (microseconds), HdrHistogram V2 + DEFLATE, base64:
    /// runs from several load nodes merge exactly.
    pub latency_histogram: String,
    /// The command line that produced the run.
    pub command_line: Vec<String>,
}

/// Percentiles and extremes of a latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
}

/// Errors: the total and one count per kind (kinds with a zero count are left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Errors {
    pub total: u64,
    #[serde(flatten)]
    pub by_kind: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Connections {
    /// Connections established (including reconnects).
    pub opened: u64,
    /// Connection attempts that failed.
    pub failed: u64,
    /// Connections the peer closed (EOF or `Connection: close`).
    pub closed_by_peer: u64,
    /// Connections blaster closed after an error (timeout, malformed response, ...).
    pub closed_on_error: u64,
    /// Reconnects after a close.
    pub reconnects: u64,
    /// Connections open when the run ended.
    pub open_at_end: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Bytes {
    pub sent: u64,
    pub received: u64,
}

/// How the generator itself fared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Generator {
    /// Client CPU time divided by (threads x wall time): 1.0 means every worker was busy.
    pub cpu_utilization: f64,
    /// How late the event loop woke up compared with when it meant to, p99 and max (µs).
    pub loop_lag_p99_us: u64,
    pub loop_lag_max_us: u64,
    /// Open model: sends that were late although a connection was free (the generator's fault,
    /// not the target's).
    pub late_by_generator: u64,
    /// Completion queue overflows seen by the rings.
    pub cq_overflows: u64,
    /// Receive buffer ring ran empty (ENOBUFS) and the receive was re-armed.
    pub recv_buffer_exhausted: u64,
    /// Why `generator_bound` is true (empty when it is false).
    pub reasons: Vec<String>,
}
