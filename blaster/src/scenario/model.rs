//! The validated scenario model: plain values, no spans, no unparsed strings.
//!
//! Everything here has been checked by [`super::parse`]: durations are [`Duration`]s, rates
//! are requests (iterations) per second as `f64`, templates are pre-split into
//! [`Segment`]s, every `${data.…}` names a declared data source and field, every
//! `${vars.…}` names a capture, every flow weight is positive.

use std::collections::BTreeMap;
use std::time::Duration;

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioFile {
    /// Defaults applied to every request.
    pub options: Options,
    /// The load-time variables as resolved (file `[variables]`, overridden by `-e` and the
    /// environment), for the report.
    pub variables: BTreeMap<String, String>,
    /// Data sources by name (`${data.NAME.FIELD}`).
    pub data: BTreeMap<String, DataSource>,
    /// Scenarios; all of them run in parallel, each from its own `start_time`.
    pub scenarios: Vec<ScenarioSpec>,
    pub thresholds: Vec<Threshold>,
    pub special: Option<Special>,
}

/// File-wide defaults (`[options]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Request timeout (default 30s).
    pub timeout: Duration,
    /// Headers added to every HTTP request and WebSocket handshake (a step's own headers of
    /// the same name win).
    pub headers: Vec<(String, Template)>,
    /// Tags added to every sample.
    pub tags: BTreeMap<String, String>,
    /// Worker threads (`None`: one per CPU).
    pub threads: Option<usize>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: Duration::from_secs(30),
            headers: Vec::new(),
            tags: BTreeMap::new(),
            threads: None,
        }
    }
}

/// A data source.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSource {
    pub name: String,
    pub kind: DataKind,
    /// How a VU picks the next row.
    pub mode: PickMode,
}

impl DataSource {
    /// The fields a template may name (`${data.NAME.FIELD}`).
    pub fn fields(&self) -> Vec<&str> {
        match &self.kind {
            DataKind::Table { columns, .. } => columns.iter().map(String::as_str).collect(),
            DataKind::GeoWalk(_) => vec!["lat", "lon"],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum DataKind {
    /// Rows from a CSV file (first line: header) or a JSON file (array of objects; nested
    /// values are kept as JSON text). Loaded at parse time.
    Table {
        /// The file as resolved (relative paths are relative to the scenario file).
        path: std::path::PathBuf,
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A per-VU random walk on the globe (location updates): fields `lat` and `lon`.
    GeoWalk(GeoWalk),
}

/// A geographic random walk: each VU starts at a random point within `radius_m` of the
/// centre and moves up to `step_m` metres per read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoWalk {
    pub lat: f64,
    pub lon: f64,
    pub radius_m: f64,
    pub step_m: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickMode {
    /// Each VU walks the rows in order from a shared cursor, wrapping around.
    Sequential,
    /// A uniformly random row on every read.
    Random,
    /// Each VU gets its own row, never shared; a VU beyond the row count is an error at run
    /// time.
    UniquePerVu,
}

impl PickMode {
    pub fn name(self) -> &'static str {
        match self {
            PickMode::Sequential => "sequential",
            PickMode::Random => "random",
            PickMode::UniquePerVu => "unique-per-vu",
        }
    }
}

/// One scenario: an executor driving VUs through weighted flows.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioSpec {
    pub name: String,
    pub executor: Executor,
    /// Delay from the start of the run.
    pub start_time: Duration,
    /// How long running iterations may finish after the executor stops (default 30s).
    pub graceful_stop: Duration,
    /// Tags added to every sample of this scenario (`scenario` is always added).
    pub tags: BTreeMap<String, String>,
    /// How long a VU waits after a failed iteration (one whose request or session failed
    /// without an answer: refused, reset, timed out) before its next one, so a flow that fails
    /// at once does not spin (`error_backoff`, default [`Backoff::DEFAULT_ERROR`]). Only for
    /// VU-based executors: arrival-rate executors are paced by their arrivals.
    pub error_backoff: Backoff,
    /// At least one flow; each iteration picks one by weight.
    pub flows: Vec<Flow>,
}

impl ScenarioSpec {
    /// The sum of the flow weights.
    pub fn total_weight(&self) -> f64 {
        self.flows.iter().map(|f| f.weight).sum()
    }
}

/// How long a VU waits before its next iteration after a failed one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    /// No wait.
    None,
    Fixed(Duration),
    /// `base * 2^(failures-1)`, capped at `max`, times a random factor in [0.5, 1) (jitter).
    Exponential {
        base: Duration,
        max: Duration,
    },
}

impl Backoff {
    /// A scenario's `error_backoff` when the file has none: `exp:10ms..1s`.
    pub const DEFAULT_ERROR: Backoff = Backoff::Exponential {
        base: Duration::from_millis(10),
        max: Duration::from_secs(1),
    };

    /// The wait after `failures` consecutive failures (>= 1); `unit` is a uniform [0, 1) draw.
    pub fn delay(self, failures: u32, unit: f64) -> Duration {
        match self {
            Backoff::None => Duration::ZERO,
            Backoff::Fixed(d) => d,
            Backoff::Exponential { base, max } => {
                let exp = failures.saturating_sub(1).min(30);
                let full = base.saturating_mul(1u32 << exp).min(max);
                full.mul_f64(0.5 + unit.clamp(0.0, 1.0) * 0.5)
            }
        }
    }

    /// The shortest wait after `failures` consecutive failures (the jitter at its least).
    pub fn min_delay(self, failures: u32) -> Duration {
        self.delay(failures, 0.0)
    }

    /// Written as in files and `--backoff`: `none`, `1s`, `exp:10ms..1s`.
    pub fn source_text(self) -> String {
        use crate::scenario::format_duration as d;
        match self {
            Backoff::None => "none".into(),
            Backoff::Fixed(t) => d(t),
            Backoff::Exponential { base, max } => format!("exp:{}..{}", d(base), d(max)),
        }
    }
}

/// A stage of a ramping executor: move linearly to `target` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    /// VUs (ramping-vus) or iterations per second (ramping-arrival-rate).
    pub target: f64,
}

/// The six k6 executors.
#[derive(Debug, Clone, PartialEq)]
pub enum Executor {
    ConstantVus {
        vus: u64,
        duration: Duration,
    },
    RampingVus {
        start_vus: u64,
        stages: Vec<Stage>,
    },
    ConstantArrivalRate {
        /// Iterations per second.
        rate: f64,
        duration: Duration,
        pre_allocated_vus: u64,
        max_vus: u64,
    },
    RampingArrivalRate {
        /// Iterations per second at the start.
        start_rate: f64,
        stages: Vec<Stage>,
        pre_allocated_vus: u64,
        max_vus: u64,
    },
    PerVuIterations {
        vus: u64,
        iterations: u64,
        max_duration: Duration,
    },
    SharedIterations {
        vus: u64,
        iterations: u64,
        max_duration: Duration,
    },
}

impl Executor {
    /// Executor names as written in files.
    pub const NAMES: [&'static str; 6] = [
        "constant-vus",
        "ramping-vus",
        "constant-arrival-rate",
        "ramping-arrival-rate",
        "per-vu-iterations",
        "shared-iterations",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Executor::ConstantVus { .. } => "constant-vus",
            Executor::RampingVus { .. } => "ramping-vus",
            Executor::ConstantArrivalRate { .. } => "constant-arrival-rate",
            Executor::RampingArrivalRate { .. } => "ramping-arrival-rate",
            Executor::PerVuIterations { .. } => "per-vu-iterations",
            Executor::SharedIterations { .. } => "shared-iterations",
        }
    }

    /// How long the executor runs at most (without graceful stop).
    pub fn duration(&self) -> Duration {
        match self {
            Executor::ConstantVus { duration, .. }
            | Executor::ConstantArrivalRate { duration, .. } => *duration,
            Executor::RampingVus { stages, .. } | Executor::RampingArrivalRate { stages, .. } => {
                stages.iter().map(|s| s.duration).sum()
            }
            Executor::PerVuIterations { max_duration, .. }
            | Executor::SharedIterations { max_duration, .. } => *max_duration,
        }
    }

    /// The most VUs the executor may use.
    pub fn max_vus(&self) -> u64 {
        match self {
            Executor::ConstantVus { vus, .. }
            | Executor::PerVuIterations { vus, .. }
            | Executor::SharedIterations { vus, .. } => *vus,
            Executor::RampingVus { start_vus, stages } => stages
                .iter()
                .map(|s| s.target.ceil() as u64)
                .fold(*start_vus, u64::max),
            Executor::ConstantArrivalRate { max_vus, .. }
            | Executor::RampingArrivalRate { max_vus, .. } => *max_vus,
        }
    }
}

/// A weighted sequence of steps; one iteration of a VU runs one flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub name: String,
    /// Relative weight (> 0); the chance is `weight / total`.
    pub weight: f64,
    pub steps: Vec<Step>,
}

/// One step of a flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Chance in (0, 1] that the step runs at all (default 1).
    pub probability: f64,
    pub kind: StepKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    Http(HttpStep),
    WsConnect {
        /// Name for grouping (`name` tag); defaults to the URL template's text.
        name: String,
        url: Template,
        headers: Vec<(String, Template)>,
        /// Largest frame payload / message accepted from the server (`max_frame`,
        /// `max_message`); `None`: `--ws-max-frame` / `--ws-max-message`, else the decoder's
        /// default (16 MiB / 64 MiB).
        max_frame: Option<u64>,
        max_message: Option<u64>,
    },
    WsSend {
        name: String,
        body: Template,
    },
    /// Wait for a message containing `contains` (any message when `None`); its latency
    /// from the last send is `ws_msg_latency`.
    WsExpect {
        name: String,
        contains: Option<Template>,
        timeout: Duration,
        captures: Vec<Capture>,
    },
    /// Send `body`, then keep receiving (counted in `ws_msgs_received`) for `duration`, or
    /// until the close step when `None`.
    WsSubscribe {
        name: String,
        body: Template,
        duration: Option<Duration>,
    },
    WsClose {
        code: u16,
    },
    Sleep(ThinkTime),
    /// A sleep whose duration is rendered per VU (`sleep = "${vars.retry_after}s"`): a bare
    /// number is seconds; a value that is not a duration does not sleep.
    SleepFor(Template),
    Group {
        name: String,
        steps: Vec<Step>,
    },
    Loop {
        repeat: Repeat,
        steps: Vec<Step>,
    },
}

impl StepKind {
    /// The key that introduces the step in a file.
    pub fn keyword(&self) -> &'static str {
        match self {
            StepKind::Http(_) => "request",
            StepKind::WsConnect { .. } => "ws_connect",
            StepKind::WsSend { .. } => "ws_send",
            StepKind::WsExpect { .. } => "ws_expect",
            StepKind::WsSubscribe { .. } => "ws_subscribe",
            StepKind::WsClose { .. } => "ws_close",
            StepKind::Sleep(_) | StepKind::SleepFor(_) => "sleep",
            StepKind::Group { .. } => "group",
            StepKind::Loop { .. } => "loop",
        }
    }
}

/// An HTTP request step.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpStep {
    /// Name for grouping (`name` tag); defaults to `METHOD url-template-text`.
    pub name: String,
    pub method: String,
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Template>,
    /// Per-request timeout (default: `options.timeout`).
    pub timeout: Option<Duration>,
    pub checks: Vec<Check>,
    pub captures: Vec<Capture>,
    /// Statuses that are expected outcomes, not failures (`http_req_failed`). Empty: 200-399.
    pub expect: Vec<u16>,
    /// Send the request again when the answer has one of these statuses (`retry`).
    pub retry: Option<Retry>,
}

/// `retry = { on = [429, 503], max = 3, max_wait = "30s", backoff = "1s" }`: an answer with
/// a status in `on` is sent again, at most `max` times, after the answer's `Retry-After`
/// (seconds or an HTTP date) capped at `max_wait`, or without one after `backoff` doubled per
/// retry (also capped). Every attempt is a sample; checks and captures see the last answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub on: Vec<u16>,
    pub max: u32,
    pub max_wait: Duration,
    pub backoff: Duration,
}

impl Retry {
    /// The wait before retry number `retry` (1-based) and whether it came from Retry-After.
    /// `retry_after` is the answer's header value; `now` the wall clock (for HTTP dates).
    pub fn wait(
        &self,
        retry: u32,
        retry_after: Option<&[u8]>,
        now: std::time::SystemTime,
    ) -> (Duration, bool) {
        if let Some(d) = retry_after.and_then(|v| parse_retry_after(v, now)) {
            return (d.min(self.max_wait), true);
        }
        let doubled = self
            .backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        (doubled.min(self.max_wait), false)
    }
}

/// A `Retry-After` value: delta-seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00
/// GMT`, the time to wait until; a date in the past is no wait). `None` when it is neither.
pub fn parse_retry_after(value: &[u8], now: std::time::SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(text.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

impl HttpStep {
    /// Whether `status` counts as a success for `http_req_failed`.
    pub fn is_expected(&self, status: u16) -> bool {
        if self.expect.is_empty() {
            (200..400).contains(&status)
        } else {
            self.expect.contains(&status)
        }
    }
}

/// How often a loop body runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Repeat {
    Count(u64),
    For(Duration),
}

/// A pause between steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThinkTime {
    Constant(Duration),
    Uniform {
        min: Duration,
        max: Duration,
    },
    /// Normal distribution, clamped at zero.
    Normal {
        mean: Duration,
        stddev: Duration,
    },
    Exponential {
        mean: Duration,
    },
}

/// A named check: all its conditions must hold. Counted per name in `checks`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub conditions: Vec<CheckCondition>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckCondition {
    StatusIn(Vec<u16>),
    BodyContains(Template),
    JsonEquals {
        path: JsonPath,
        value: Template,
    },
    HeaderEquals {
        name: String,
        value: Template,
    },
    LatencyBelow(Duration),
    /// The request has a `retry`: every retry made after waiting the server's `Retry-After`
    /// got an answer outside `retry.on`. A request that never waited a Retry-After does not
    /// count for a check made only of this condition.
    RetryAfterHonoured,
}

/// A value taken from a response into a per-VU variable (`${vars.NAME}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    pub var: String,
    pub source: CaptureSource,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CaptureSource {
    Json(JsonPath),
    Header(String),
    /// A regular expression (not compiled here); the first capture group, or the whole
    /// match when it has none.
    Regex(String),
}

/// A JSON path `$.a.b[0].c`, pre-split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    pub text: String,
    pub segments: Vec<PathSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

/// A template split once at load time; load-time variables are already substituted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    pub segments: Vec<Segment>,
}

impl Template {
    /// The literal text, when the template has no run-time parts.
    pub fn as_literal(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [] => Some(""),
            [Segment::Literal(s)] => Some(s),
            _ => None,
        }
    }

    /// The template written back in file syntax (for names and summaries).
    pub fn source_text(&self) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(s) => out.push_str(&s.replace("${", "$${")),
                Segment::Data { source, field } => {
                    out.push_str(&format!("${{data.{source}.{field}}}"));
                }
                Segment::Var(v) => out.push_str(&format!("${{vars.{v}}}")),
                Segment::Gen(g) => out.push_str(&format!("${{gen.{}}}", g.source_text())),
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Literal(String),
    /// `${data.SOURCE.FIELD}`: the VU's current row of a data source.
    Data {
        source: String,
        field: String,
    },
    /// `${vars.NAME}`: a per-VU variable set by a capture.
    Var(String),
    /// `${gen.…}`: a generated value.
    Gen(Generator),
}

/// Value generators (`${gen.NAME}` or `${gen.NAME(args)}`).
#[derive(Debug, Clone, PartialEq)]
pub enum Generator {
    /// A run-wide counter from 1.
    Counter,
    /// The VU number (from 1).
    Vu,
    /// The VU's iteration number (from 0).
    Iteration,
    Uuid,
    /// Integer in `[min, max]`.
    Int {
        min: i64,
        max: i64,
    },
    /// Float in `[min, max)`.
    Float {
        min: f64,
        max: f64,
    },
    /// Random alphanumeric string of `len` bytes (`gen.string(1MiB)` for big payloads).
    String {
        len: u64,
    },
    FirstName,
    LastName,
    /// `first last`.
    Name,
    Email,
    /// Unix seconds.
    Timestamp,
    /// Unix milliseconds.
    TimestampMs,
    /// RFC 3339 UTC time.
    Iso8601,
}

impl Generator {
    /// Generator names as written in files.
    pub const NAMES: [&'static str; 14] = [
        "counter",
        "vu",
        "iteration",
        "uuid",
        "int",
        "float",
        "string",
        "first_name",
        "last_name",
        "name",
        "email",
        "timestamp",
        "timestamp_ms",
        "iso8601",
    ];

    pub fn source_text(&self) -> String {
        match self {
            Generator::Counter => "counter".into(),
            Generator::Vu => "vu".into(),
            Generator::Iteration => "iteration".into(),
            Generator::Uuid => "uuid".into(),
            Generator::Int { min, max } => format!("int({min},{max})"),
            Generator::Float { min, max } => format!("float({min},{max})"),
            Generator::String { len } => format!("string({len})"),
            Generator::FirstName => "first_name".into(),
            Generator::LastName => "last_name".into(),
            Generator::Name => "name".into(),
            Generator::Email => "email".into(),
            Generator::Timestamp => "timestamp".into(),
            Generator::TimestampMs => "timestamp_ms".into(),
            Generator::Iso8601 => "iso8601".into(),
        }
    }
}

/// A threshold: all conditions on one metric (with an optional tag filter).
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub metric: String,
    /// Tag filter: only samples with all these tags count.
    pub tags: Vec<(String, String)>,
    pub conditions: Vec<Condition>,
    /// Stop the run as soon as the threshold fails.
    pub abort_on_fail: bool,
    /// Do not evaluate for abort before this much of the run has passed.
    pub delay_abort_eval: Duration,
}

impl Threshold {
    /// `metric{k:v,…}` as written.
    pub fn selector(&self) -> String {
        if self.tags.is_empty() {
            return self.metric.clone();
        }
        let tags: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        format!("{}{{{}}}", self.metric, tags.join(","))
    }
}

/// One `aggregation op value` condition, like `p(95)<1200`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    pub aggregation: Aggregation,
    pub op: CompareOp,
    /// Milliseconds for time metrics, a fraction for rates, a number for counts.
    pub value: f64,
}

impl Condition {
    /// Whether `observed` satisfies the condition.
    pub fn holds(&self, observed: f64) -> bool {
        self.op.apply(observed, self.value)
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.aggregation, self.op.symbol(), self.value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregation {
    Avg,
    Min,
    Max,
    Med,
    /// Percentile in (0, 100].
    P(f64),
    Rate,
    Count,
    /// The last value of a gauge.
    Value,
}

impl std::fmt::Display for Aggregation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Aggregation::Avg => f.write_str("avg"),
            Aggregation::Min => f.write_str("min"),
            Aggregation::Max => f.write_str("max"),
            Aggregation::Med => f.write_str("med"),
            Aggregation::P(p) => write!(f, "p({p})"),
            Aggregation::Rate => f.write_str("rate"),
            Aggregation::Count => f.write_str("count"),
            Aggregation::Value => f.write_str("value"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CompareOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
        }
    }

    pub fn apply(self, a: f64, b: f64) -> bool {
        match self {
            CompareOp::Lt => a < b,
            CompareOp::Le => a <= b,
            CompareOp::Gt => a > b,
            CompareOp::Ge => a >= b,
            CompareOp::Eq => a == b,
            CompareOp::Ne => a != b,
        }
    }
}

/// The kind of a metric, which decides the aggregations a threshold may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Time samples in milliseconds: avg, min, max, med, p(N).
    Trend,
    /// Fraction of true samples: rate.
    Rate,
    /// A running total: count, rate (per second).
    Counter,
    /// A current value: value, min, max.
    Gauge,
}

/// Built-in metrics and their kinds.
pub const METRICS: &[(&str, MetricKind)] = &[
    ("http_req_duration", MetricKind::Trend),
    ("http_req_failed", MetricKind::Rate),
    ("http_reqs", MetricKind::Counter),
    ("http_req_retries", MetricKind::Counter),
    ("checks", MetricKind::Rate),
    ("iterations", MetricKind::Counter),
    ("iteration_duration", MetricKind::Trend),
    ("dropped_iterations", MetricKind::Counter),
    ("ws_msg_latency", MetricKind::Trend),
    ("ws_connect_duration", MetricKind::Trend),
    ("ws_session_duration", MetricKind::Trend),
    ("ws_session_failed", MetricKind::Rate),
    ("ws_msgs_received", MetricKind::Counter),
    ("ws_msgs_sent", MetricKind::Counter),
    ("ws_sessions", MetricKind::Counter),
    ("data_received", MetricKind::Counter),
    ("data_sent", MetricKind::Counter),
    ("vus", MetricKind::Gauge),
    ("vus_max", MetricKind::Gauge),
];

/// A special run mode (`[special.*]`, at most one).
#[derive(Debug, Clone, PartialEq)]
pub enum Special {
    /// Raise the arrival rate step by step until a threshold with `abort_on_fail` fails;
    /// report the last rate that passed.
    Breakpoint {
        /// The scenario whose flows are driven (its executor is replaced by the search).
        scenario: String,
        start_rate: f64,
        step_rate: f64,
        step_duration: Duration,
        max_rate: f64,
    },
    /// A spike: the named scenario's stages contain it; the report compares latency before
    /// the spike with latency `recovery` after it ends.
    Spike {
        scenario: String,
        /// How long after the spike the p95 (per-interval, from the time series) must be back
        /// within `tolerance` times baseline.
        recovery: Duration,
        tolerance: f64,
    },
    /// A long run with a watcher polling an endpoint (memory-leak detection).
    Soak(Watch),
}

/// An endpoint polled during the run; the number at `json` becomes the gauge `metric`
/// (usable in thresholds), and its trend (growth per hour) is reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub url: Template,
    pub interval: Duration,
    pub json: JsonPath,
    pub metric: String,
    /// Fail when the fitted growth per hour exceeds this.
    pub max_growth_per_hour: Option<f64>,
}
