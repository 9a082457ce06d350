//! The report: plain data describing a finished (or interrupted) run, and its renderers.
//!
//! [`Report`] is built once, by [`Report::from_run`], from the merged metrics of a run
//! ([`crate::engine::RunOutcome`]); the renderers only format it: [`text`] for the terminal
//! summary, [`json`] for `--json`.
//! The JSON field names are a contract users' scripts rely on; the schema is documented in
//! docs/report-schema.md and checked by a test against `report-schema.json`.

pub mod compare;
pub mod endpoint;
pub mod flow;
pub mod hdrlog;
pub mod html;
pub mod json;
pub mod junit;
pub mod kernel;
pub mod markdown;
pub mod merge;
pub mod progress;
pub mod prometheus;
pub mod series;
pub mod text;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{
    DeserializeError, Deserializer, Serializer as _, V2DeflateSerializeError, V2DeflateSerializer,
};
use serde::{Deserialize, Serialize};

use crate::cli::units::format_duration_us;
use crate::config::{LoadModel, RunConfig};
use crate::engine::RunOutcome;
use crate::metrics::ErrorKind;

/// Client CPU utilization (CPU time / (threads x wall time)) at or above which the run is
/// generator-bound: the workers were (nearly) always busy, so the target could have gone faster
/// than the numbers show.
pub const CPU_SATURATED_UTILIZATION: f64 = 0.90;

/// Open model: when more than this fraction of requests were sent late because the generator
/// was busy (`generator.late_by_generator / requests`), the run is generator-bound: the
/// intended arrival schedule was not kept.
pub const LATE_BY_GENERATOR_MAX_FRACTION: f64 = 0.01;

/// Event-loop lag p99 (µs) above which the run is generator-bound: workers woke this much
/// later than their timers asked for, so pacing and timeouts were off by as much.
pub const LOOP_LAG_P99_MAX_US: u64 = 10_000;

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
    /// io_uring instances the workers drove: one per thread, more when a thread's connections
    /// need more direct descriptors than one ring's table (RLIMIT_NOFILE) holds.
    #[serde(default)]
    pub rings: usize,
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
    /// CPU time of the worker threads (user + system) over the load phase, in seconds.
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
    /// The client's resident memory and what it comes to per connection.
    #[serde(default)]
    pub memory: Memory,
    /// Where the load came from (absent from reports of older versions).
    #[serde(default)]
    pub environment: Environment,
    /// Length of one time-series interval, in seconds.
    #[serde(default)]
    pub report_interval_s: f64,
    /// One point per interval, in order. Their `requests`, `responses`, `errors` and latency
    /// counts add up to the run's totals.
    #[serde(default)]
    pub timeseries: Vec<TimePoint>,
    /// Scenario-file runs: scenarios, per-name statistics, checks and thresholds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<flow::ScenarioReport>,
    /// Runs with WebSocket sessions: sessions, messages, latencies, reconnects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<flow::WsReport>,
    /// What the eBPF probe on the target host saw during the run (`--probe`); absent
    /// without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<kernel::KernelReport>,
}

/// The client's resident memory (RSS), sampled once per interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// RSS before the workers set up their rings and connection slabs.
    pub rss_start_bytes: u64,
    /// Largest RSS sampled.
    pub rss_peak_bytes: u64,
    /// Most connections open at the end of an interval.
    pub peak_open_connections: u64,
    /// (RSS at the peak of open connections - RSS at start) / those connections: an upper
    /// bound of blaster's memory per connection, since it includes the per-run fixed costs
    /// (rings, receive buffers). 0 without connections.
    pub bytes_per_connection: u64,
}

impl Memory {
    pub fn from_use(m: &crate::engine::MemoryUse) -> Memory {
        let grown = m
            .rss_at_peak_connections_bytes
            .saturating_sub(m.rss_start_bytes);
        Memory {
            rss_start_bytes: m.rss_start_bytes,
            rss_peak_bytes: m.rss_peak_bytes,
            peak_open_connections: m.peak_open_connections,
            bytes_per_connection: grown.checked_div(m.peak_open_connections).unwrap_or(0),
        }
    }
}

/// The load node: enough to tell two runs' machines apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub blaster_version: String,
    /// `uname` release, e.g. "6.18.44".
    pub kernel: String,
    pub hostname: String,
    /// CPU model name from /proc/cpuinfo ("" when unknown).
    pub cpu_model: String,
    /// CPUs online, and CPUs this process may run on.
    pub cpus_online: usize,
    pub cpus_allowed: usize,
    /// Total memory in bytes (0 when unknown).
    pub memory_bytes: u64,
}

impl Environment {
    /// Reads this host's facts (uname, /proc); never fails, unknowns stay empty.
    pub fn detect() -> Environment {
        // SAFETY: a zeroed utsname is a valid value for uname to overwrite.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: uname writes only into the struct we own.
        let ok = unsafe { libc::uname(&mut uts) } == 0;
        let field = |f: &[libc::c_char]| {
            let bytes: Vec<u8> = f
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let (kernel, hostname) = if ok {
            (field(&uts.release), field(&uts.nodename))
        } else {
            Default::default()
        };
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        Environment {
            blaster_version: env!("CARGO_PKG_VERSION").to_owned(),
            kernel,
            hostname,
            cpu_model,
            cpus_online: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpus_allowed: crate::cli::available_cpus(),
            memory_bytes,
        }
    }
}

/// What happened during one interval of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimePoint {
    /// End of the interval, in seconds since the load started.
    pub t_s: f64,
    /// Length of the interval in seconds (the last one may be shorter).
    pub duration_s: f64,
    pub requests: u64,
    pub responses: u64,
    /// Responses per second over the interval.
    pub rps: f64,
    /// Errors of every kind during the interval, and by kind (non-zero kinds only).
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Connections opened during the interval and open at its end.
    pub connections_opened: u64,
    pub open_connections: u64,
    /// Open model: sends during the interval that went out late.
    pub late: u64,
    /// Latency of the responses that completed during the interval.
    pub latency_us: IntervalLatency,
}

/// Latency percentiles of one interval, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalLatency {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    /// The spike check's percentile (`scenario.spike`); absent in reports written before it
    /// was added.
    #[serde(default)]
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl TimePoint {
    /// Summarizes one merged interval.
    pub fn from_interval(p: &crate::metrics::interval::IntervalPoint) -> TimePoint {
        let duration_s = p.end_ns.saturating_sub(p.start_ns) as f64 / 1e9;
        let c = &p.counters;
        let errors_by_kind = crate::metrics::ErrorKind::ALL
            .iter()
            .filter(|&&k| c.errors[k as usize] > 0)
            .map(|&k| (k.as_str().to_owned(), c.errors[k as usize]))
            .collect();
        let h = &p.latency;
        let q = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        TimePoint {
            t_s: p.end_ns as f64 / 1e9,
            duration_s,
            requests: c.requests,
            responses: c.responses,
            rps: if duration_s > 0.0 {
                c.responses as f64 / duration_s
            } else {
                0.0
            },
            errors: c.total_errors(),
            errors_by_kind,
            bytes_sent: c.bytes_sent,
            bytes_received: c.bytes_received,
            connections_opened: c.conns_opened,
            open_connections: p.open_connections,
            late: c.late,
            latency_us: IntervalLatency {
                count: h.len(),
                p50: q(0.50),
                p90: q(0.90),
                p95: q(0.95),
                p99: q(0.99),
                max: if h.is_empty() { 0 } else { h.max() },
            },
        }
    }
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
    /// Connections closed by `--churn` to be reopened (their reconnects are in `reconnects`,
    /// their connects in `connect_latency_us`).
    #[serde(default)]
    pub churned: u64,
    /// Seconds from the start of the load until every connection was open at once (the end
    /// of the initial connection storm or ramp); `None` if that never happened.
    #[serde(default)]
    pub all_open_s: Option<f64>,
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

impl Report {
    /// Builds the report of a finished (or interrupted) run from its configuration and what
    /// the engine measured.
    pub fn from_run(config: &RunConfig, outcome: &RunOutcome) -> Report {
        let m = &outcome.metrics;
        let duration_s = outcome.duration.as_secs_f64();
        let rps = if duration_s > 0.0 {
            m.responses as f64 / duration_s
        } else {
            0.0
        };
        let target_rate = match config.model {
            LoadModel::Open { rate } => Some(rate),
            LoadModel::Closed | LoadModel::Hold { .. } => None,
        };

        let status_codes = m
            .status
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(code, &n)| (code.to_string(), n))
            .collect();
        let by_kind: BTreeMap<String, u64> = ErrorKind::ALL
            .iter()
            .map(|&k| (k.as_str().to_owned(), m.error_count(k)))
            .filter(|&(_, n)| n > 0)
            .collect();
        let errors = Errors {
            total: m.total_errors(),
            by_kind,
        };

        let cpu = outcome.cpu_user + outcome.cpu_system;
        let mut generator = Generator {
            cpu_utilization: cpu_utilization(cpu, outcome.threads, outcome.duration),
            loop_lag_p99_us: quantile_or_zero(&m.loop_lag, 0.99),
            loop_lag_max_us: if m.loop_lag.is_empty() {
                0
            } else {
                m.loop_lag.max()
            },
            late_by_generator: m.late_by_generator,
            cq_overflows: m.cq_overflows,
            recv_buffer_exhausted: m.recv_buffer_exhausted,
            reasons: Vec::new(),
        };
        generator.reasons = generator_reasons(
            &generator,
            outcome.threads,
            &config.model,
            m.requests,
            config.late_after,
        );

        Report {
            blaster_version: env!("CARGO_PKG_VERSION").to_owned(),
            targets: config.targets.iter().map(|t| t.url.clone()).collect(),
            model: config.model.name().to_owned(),
            threads: outcome.threads,
            rings: outcome.threads + m.extra_rings as usize,
            concurrency: config.connections,
            pipeline: config.pipeline,
            duration_s,
            requests: m.requests,
            responses: m.responses,
            rps,
            target_rate,
            late: m.late,
            dropped: m.dropped,
            late_after_us: duration_us(config.late_after),
            in_flight_at_end: m.in_flight_at_end,
            latency_us: summarize(&m.latency),
            connect_latency_us: summarize(&m.connect_latency),
            status_codes,
            errors,
            connections: Connections {
                opened: m.conns_opened,
                failed: m.conns_failed,
                closed_by_peer: m.closed_by_peer,
                closed_on_error: m.closed_on_error,
                reconnects: m.reconnects,
                churned: m.churned,
                all_open_s: (m.workers_all_open == outcome.threads as u64)
                    .then(|| m.all_open_after_ns as f64 / 1e9),
                open_at_end: m.open_at_end,
            },
            bytes: Bytes {
                sent: m.bytes_sent,
                received: m.bytes_received,
            },
            client_cpu_s: cpu.as_secs_f64(),
            client_cpu_user_s: outcome.cpu_user.as_secs_f64(),
            client_cpu_system_s: outcome.cpu_system.as_secs_f64(),
            generator_bound: !generator.reasons.is_empty(),
            generator,
            interrupted: outcome.interrupted,
            // Encoding into memory only fails for counts above i64::MAX; an empty string then
            // says "no histogram" rather than losing the whole report.
            latency_histogram: encode_histogram(&m.latency).unwrap_or_default(),
            command_line: config.command_line.clone(),
            environment: Environment::detect(),
            memory: Memory::from_use(&outcome.memory),
            report_interval_s: config.report_interval.as_secs_f64(),
            timeseries: outcome.timeseries.clone(),
            scenario: None,
            ws: None,
            kernel: None,
        }
    }
}

/// Percentiles and extremes of `h`; all zeros when it is empty.
pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        count: h.len(),
        min: h.min(),
        mean: h.mean(),
        stdev: h.stdev(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        p9999: h.value_at_quantile(0.9999),
        max: h.max(),
    }
}

fn quantile_or_zero(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// CPU time over (threads x wall time); 0 when either is zero.
fn cpu_utilization(cpu: Duration, threads: usize, wall: Duration) -> f64 {
    let capacity = threads as f64 * wall.as_secs_f64();
    if capacity > 0.0 {
        cpu.as_secs_f64() / capacity
    } else {
        0.0
    }
}

/// Why the generator limited the run (see the `*_MAX*` / `*_SATURATED*` consts); empty when it
/// did not.
fn generator_reasons(
    g: &Generator,
    threads: usize,
    model: &LoadModel,
    requests: u64,
    late_after: Duration,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if g.cpu_utilization >= CPU_SATURATED_UTILIZATION {
        reasons.push(format!(
            "client CPU {:.0}% of {threads} thread{}: the generator was saturated; results understate the target",
            g.cpu_utilization * 100.0,
            if threads == 1 { "" } else { "s" },
        ));
    }
    if matches!(model, LoadModel::Open { .. }) && requests > 0 {
        let fraction = g.late_by_generator as f64 / requests as f64;
        if fraction > LATE_BY_GENERATOR_MAX_FRACTION {
            reasons.push(format!(
                "{:.1}% of sends were late because the generator was busy (>{} after the intended time)",
                fraction * 100.0,
                format_duration_us(duration_us(late_after)),
            ));
        }
    }
    if g.loop_lag_p99_us > LOOP_LAG_P99_MAX_US {
        reasons.push(format!(
            "event-loop lag p99 {} (limit {}): workers woke late for their timers, so pacing and latencies include client delay",
            format_duration_us(g.loop_lag_p99_us),
            format_duration_us(LOOP_LAG_P99_MAX_US),
        ));
    }
    reasons
}

/// A histogram could not be encoded for the report.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the latency histogram (HdrHistogram V2 + DEFLATE): {0}")]
pub struct HistogramEncodeError(pub V2DeflateSerializeError);

/// `latency_histogram` of a report could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum HistogramDecodeError {
    #[error(
        "invalid latency histogram {start:?}: not base64 ({error}); expected standard-alphabet base64 of an HdrHistogram V2 + DEFLATE blob"
    )]
    Base64 {
        /// The first characters of the input.
        start: String,
        /// Why (already part of the message, so not a `source()`).
        error: base64::DecodeError,
    },
    #[error(
        "invalid latency histogram {start:?}: not an HdrHistogram ({error}); expected standard-alphabet base64 of an HdrHistogram V2 + DEFLATE blob"
    )]
    Histogram {
        /// The first characters of the input.
        start: String,
        /// Why (already part of the message, so not a `source()`).
        error: DeserializeError,
    },
}

/// Most characters of a bad histogram string that an error message echoes.
const ECHO_CHARS: usize = 24;

fn echo_start(s: &str) -> String {
    match s.char_indices().nth(ECHO_CHARS) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// Encodes a histogram as the report carries it: HdrHistogram V2 + DEFLATE, base64 (standard
/// alphabet, padded). Readable by [`decode_histogram`] and by HdrHistogram libraries in other
/// languages.
pub fn encode_histogram(h: &Histogram<u64>) -> Result<String, HistogramEncodeError> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(HistogramEncodeError)?;
    Ok(BASE64.encode(bytes))
}

/// Decodes a report's `latency_histogram` (see [`encode_histogram`]), e.g. to merge the
/// reports of several load nodes exactly.
pub fn decode_histogram(s: &str) -> Result<Histogram<u64>, HistogramDecodeError> {
    let bytes = BASE64
        .decode(s.trim())
        .map_err(|error| HistogramDecodeError::Base64 {
            start: echo_start(s),
            error,
        })?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|error| HistogramDecodeError::Histogram {
            start: echo_start(s),
            error,
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::config::{RequestSpec, StopCondition, Target};
    use crate::metrics::WorkerMetrics;

    /// A hand-built configuration for report tests.
    pub(crate) fn config(model: LoadModel) -> RunConfig {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        RunConfig {
            targets: vec![Target {
                url: "http://127.0.0.1:8080/".to_owned(),
                addr,
                host_header: "127.0.0.1:8080".to_owned(),
                path: "/".to_owned(),
            }],
            sources: Vec::new(),
            threads: 2,
            connections: 100,
            model,
            stop: StopCondition {
                duration: Some(Duration::from_secs(10)),
                requests: None,
            },
            connect_rate: None,
            max_connecting: None,
            churn: None,
            pipeline: 1,
            timeout: Duration::from_secs(5),
            request: RequestSpec {
                method: "GET".to_owned(),
                headers: Vec::new(),
                body: Vec::new(),
            },
            late_after: Duration::from_millis(10),
            report_interval: Duration::from_secs(1),
            command_line: vec!["blaster".to_owned(), "http://127.0.0.1:8080/".to_owned()],
        }
    }

    /// A hand-built outcome: 1000 responses (990 x 200, 10 x 503) over 10 s on 2 threads with
    /// 4 s of CPU, a few errors, healthy loop lag.
    pub(crate) fn outcome() -> RunOutcome {
        let mut m = WorkerMetrics::new();
        for i in 0..1000u64 {
            m.record_response(if i < 990 { 200 } else { 503 }, 100 + i);
        }
        m.take_interval();
        m.requests = 1_005;
        for _ in 0..3 {
            m.record_error(ErrorKind::Timeout);
        }
        m.record_error(ErrorKind::Reset);
        m.record_error(ErrorKind::ConnectRefused);
        for us in [50, 60, 70, 80] {
            m.connect_latency.record(us).unwrap();
        }
        for us in 0..100 {
            m.loop_lag.record(us * 10).unwrap();
        }
        m.in_flight_at_end = 1;
        m.bytes_sent = 100_000;
        m.bytes_received = 250_000;
        m.conns_opened = 101;
        m.conns_failed = 1;
        m.closed_by_peer = 2;
        m.closed_on_error = 4;
        m.reconnects = 5;
        m.open_at_end = 99;
        RunOutcome {
            metrics: m,
            duration: Duration::from_secs(10),
            cpu_user: Duration::from_secs(3),
            cpu_system: Duration::from_secs(1),
            threads: 2,
            interrupted: false,
            timeseries: Vec::new(),
            memory: Default::default(),
        }
    }

    #[test]
    fn environment_is_read_from_this_host() {
        let e = Environment::detect();
        assert!(!e.kernel.is_empty() && e.cpus_online >= 1 && e.cpus_allowed >= 1);
        assert!(e.memory_bytes > 1 << 20, "{e:?}");
        assert_eq!(e.blaster_version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn counts_rates_and_maps() {
        let r = Report::from_run(&config(LoadModel::Closed), &outcome());
        assert_eq!(r.model, "closed");
        assert_eq!(r.threads, 2);
        assert_eq!(r.concurrency, 100);
        assert_eq!(r.duration_s, 10.0);
        assert_eq!(r.requests, 1_005);
        assert_eq!(r.responses, 1_000);
        assert_eq!(r.rps, 100.0);
        assert_eq!(r.target_rate, None);
        assert_eq!(r.late_after_us, 10_000);
        assert_eq!(r.in_flight_at_end, 1);
        let codes: Vec<(&str, u64)> = r
            .status_codes
            .iter()
            .map(|(k, &v)| (k.as_str(), v))
            .collect();
        assert_eq!(codes, vec![("200", 990), ("503", 10)]);
        assert_eq!(r.errors.total, 5);
        let kinds: Vec<(&str, u64)> = r
            .errors
            .by_kind
            .iter()
            .map(|(k, &v)| (k.as_str(), v))
            .collect();
        assert_eq!(
            kinds,
            vec![("connect_refused", 1), ("reset", 1), ("timeout", 3)]
        );
        assert_eq!(r.connections.opened, 101);
        assert_eq!(r.connections.closed_on_error, 4);
        assert_eq!(r.connections.open_at_end, 99);
        assert_eq!(
            r.bytes,
            Bytes {
                sent: 100_000,
                received: 250_000
            }
        );
        assert_eq!(r.client_cpu_s, 4.0);
        assert_eq!(r.client_cpu_user_s, 3.0);
        assert_eq!(r.client_cpu_system_s, 1.0);
        assert_eq!(r.command_line, vec!["blaster", "http://127.0.0.1:8080/"]);
        assert_eq!(r.targets, vec!["http://127.0.0.1:8080/"]);
        assert!(!r.interrupted);
    }

    #[test]
    fn latency_summaries() {
        let r = Report::from_run(&config(LoadModel::Closed), &outcome());
        let l = r.latency_us;
        assert_eq!(l.count, 1_000);
        assert_eq!(l.min, 100);
        assert!((l.mean - 599.5).abs() < 1.0, "{}", l.mean);
        assert!(l.stdev > 250.0 && l.stdev < 330.0, "{}", l.stdev);
        assert!((598..=600).contains(&l.p50), "{}", l.p50);
        assert!((998..=1_000).contains(&l.p90), "{}", l.p90);
        assert!((1_088..=1_090).contains(&l.p99), "{}", l.p99);
        assert!(l.p999 >= l.p99 && l.p9999 >= l.p999 && l.max >= l.p9999);
        assert!((1_099..=1_100).contains(&l.max), "{}", l.max);
        let c = r.connect_latency_us;
        assert_eq!((c.count, c.min, c.p50, c.max), (4, 50, 60, 80));
    }

    #[test]
    fn empty_histograms_summarize_to_zeros() {
        let mut o = outcome();
        o.metrics = WorkerMetrics::new();
        o.duration = Duration::ZERO;
        o.threads = 0;
        let r = Report::from_run(&config(LoadModel::Closed), &o);
        assert_eq!(r.latency_us, LatencySummary::default());
        assert_eq!(r.connect_latency_us, LatencySummary::default());
        assert_eq!(r.rps, 0.0);
        assert_eq!(r.generator.cpu_utilization, 0.0);
        assert_eq!(r.generator.loop_lag_p99_us, 0);
        assert_eq!(r.generator.loop_lag_max_us, 0);
        assert!(r.status_codes.is_empty());
        assert_eq!(r.errors, Errors::default());
        assert!(!r.generator_bound);
        assert!(decode_histogram(&r.latency_histogram).unwrap().is_empty());
    }

    #[test]
    fn open_model_carries_its_rate() {
        let mut o = outcome();
        o.metrics.late = 7;
        o.metrics.dropped = 2;
        let r = Report::from_run(&config(LoadModel::Open { rate: 2_000.0 }), &o);
        assert_eq!(r.model, "open");
        assert_eq!(r.target_rate, Some(2_000.0));
        assert_eq!((r.late, r.dropped), (7, 2));
    }

    #[test]
    fn healthy_run_is_not_generator_bound() {
        let r = Report::from_run(&config(LoadModel::Closed), &outcome());
        assert!((r.generator.cpu_utilization - 0.2).abs() < 1e-9);
        assert!(!r.generator_bound);
        assert!(r.generator.reasons.is_empty());
        assert!(r.generator.loop_lag_p99_us <= LOOP_LAG_P99_MAX_US);
        assert!((980..=1_000).contains(&r.generator.loop_lag_max_us));
    }

    #[test]
    fn saturated_cpu_makes_it_generator_bound() {
        let mut o = outcome();
        o.cpu_user = Duration::from_millis(17_400);
        o.cpu_system = Duration::from_secs(2);
        let r = Report::from_run(&config(LoadModel::Closed), &o);
        assert!(r.generator_bound);
        assert_eq!(
            r.generator.reasons,
            vec![
                "client CPU 97% of 2 threads: the generator was saturated; results understate the target"
            ]
        );
        // Just under the threshold: not bound.
        o.cpu_user = Duration::from_millis(15_900);
        assert!(!Report::from_run(&config(LoadModel::Closed), &o).generator_bound);
    }

    #[test]
    fn late_sends_by_the_generator_only_count_in_the_open_model() {
        let mut o = outcome();
        o.metrics.late_by_generator = 20; // 2% of 1005 requests
        let r = Report::from_run(&config(LoadModel::Open { rate: 100.0 }), &o);
        assert!(r.generator_bound);
        assert_eq!(r.generator.late_by_generator, 20);
        assert_eq!(
            r.generator.reasons,
            vec![
                "2.0% of sends were late because the generator was busy (>10.0ms after the intended time)"
            ]
        );
        assert!(!Report::from_run(&config(LoadModel::Closed), &o).generator_bound);
        o.metrics.late_by_generator = 10; // under 1%
        assert!(!Report::from_run(&config(LoadModel::Open { rate: 100.0 }), &o).generator_bound);
    }

    #[test]
    fn loop_lag_makes_it_generator_bound() {
        let mut o = outcome();
        o.metrics.loop_lag.reset();
        for _ in 0..100 {
            o.metrics.loop_lag.record(25_000).unwrap();
        }
        let r = Report::from_run(&config(LoadModel::Closed), &o);
        assert!(r.generator_bound);
        assert_eq!(r.generator.reasons.len(), 1);
        assert!(r.generator.reasons[0].starts_with("event-loop lag p99 25.0ms (limit 10.0ms)"));
    }

    #[test]
    fn all_reasons_accumulate() {
        let mut o = outcome();
        o.cpu_user = Duration::from_secs(20);
        o.metrics.late_by_generator = 500;
        o.metrics.loop_lag.record(1_000_000).unwrap();
        o.metrics.loop_lag.record(1_000_000).unwrap();
        let r = Report::from_run(&config(LoadModel::Open { rate: 100.0 }), &o);
        assert_eq!(r.generator.reasons.len(), 3, "{:?}", r.generator.reasons);
        assert!(r.generator_bound);
    }

    #[test]
    fn histogram_round_trips_through_the_report() {
        let o = outcome();
        let r = Report::from_run(&config(LoadModel::Closed), &o);
        assert!(!r.latency_histogram.is_empty());
        let h = decode_histogram(&r.latency_histogram).unwrap();
        assert_eq!(h, o.metrics.latency);
        assert_eq!(summarize(&h), r.latency_us);
    }

    #[test]
    fn bad_histogram_strings_are_reported() {
        let e = decode_histogram("not base64!").unwrap_err();
        assert!(matches!(e, HistogramDecodeError::Base64 { .. }));
        assert!(e.to_string().contains("\"not base64!\""), "{e}");
        let e = decode_histogram(&BASE64.encode(b"hello histogram")).unwrap_err();
        assert!(matches!(e, HistogramDecodeError::Histogram { .. }), "{e}");
        let long = "A".repeat(100);
        let msg = decode_histogram(&long).unwrap_err().to_string();
        assert!(
            msg.contains(&format!("{}...", "A".repeat(ECHO_CHARS))),
            "{msg}"
        );
    }
}
