//! Command line: clap flags turned into validated [`crate::config`] values.
//!
//! Two stages, as in ripgrep: clap parses raw flags into [`Cli`]; [`RunArgs::to_config`] and
//! [`ServeArgs::to_config`] check them and produce plain config that the rest of blaster
//! receives. [`main`] dispatches, installs the signal handlers and maps results to exit codes.

mod observe;
pub mod probe;
pub mod units;
pub mod vu;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};

use crate::config::{LoadModel, RequestSpec, RunConfig, ServeConfig, StopCondition, Target};
use crate::report::progress::{Mode as ProgressMode, Progress};

/// Exit code: the run finished (or `serve` was stopped).
pub const EXIT_OK: i32 = 0;
/// Exit code: bad input or a fatal error.
pub const EXIT_ERROR: i32 = 1;
/// Exit code: interrupted by Ctrl-C or SIGTERM (the partial report was still written).
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Debug, Parser)]
#[command(name = "blaster", version, about = "Thread-per-core io_uring load generator for HTTP/1.1", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a load test against one or more URLs.
    Run(Box<RunArgs>),
    /// Serve the built-in HTTP/1.1 target (routes: /, /delay/{ms}, /status/{code}, /bytes/{n},
    /// /chunked/{n}, /ws/echo, /ws/pubsub/{topic}), or with --mock the routes of a mock file.
    Serve(ServeArgs),
    /// Start the built-in target on a loopback port, run a short load against it, print the report.
    Demo(DemoArgs),
    /// Check this host's limits (open files, ports, memory, backlogs, io_uring) for a run of
    /// N connections; exit code 2 when something limits it.
    Doctor(DoctorArgs),
    /// Watch listening ports with the eBPF probe (on the target host): handshake time,
    /// accept-queue wait, retransmits, resets. Needs a build with the probe (`cargo xtask build`).
    Probe(probe::ProbeArgs),
    /// Re-render a saved JSON report (from --json) as HTML, markdown or JUnit, or as text.
    Report(ReportArgs),
    /// Compare a run with a baseline run (both --json reports); exit code 99 on a regression
    /// beyond --max-regression.
    Compare(CompareArgs),
    /// Merge the JSON reports of several load nodes that ran the same test at the same time
    /// (latency percentiles stay exact: each report embeds its histogram).
    Merge(MergeArgs),
    /// Validate a scenario file (TOML) and describe what it would run.
    Check(CheckArgs),
}

#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// The scenario file.
    #[arg(value_name = "FILE.toml")]
    pub file: PathBuf,
    /// Set a variable used as ${NAME} in the file (repeatable), like k6's -e.
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

/// Parses `-e NAME=VALUE` pairs.
pub fn parse_vars(raw: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
    raw.iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').with_context(|| {
                format!("invalid -e \"{kv}\": expected NAME=VALUE, for example -e BASE_URL=http://127.0.0.1:8080")
            })?;
            if k.is_empty() {
                bail!("invalid -e \"{kv}\": the variable name is empty");
            }
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

#[derive(Debug, Args, Clone)]
pub struct MergeArgs {
    /// JSON reports written by `blaster run --json`, one per load node.
    #[arg(required = true, value_name = "RUN.json")]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub outputs: Outputs,
    /// Print no text summary.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Where to write the report in each format (all optional); flattened into every command
/// that produces a report.
#[derive(Debug, Args, Clone, Default)]
pub struct Outputs {
    /// Write the report as JSON to this file (also on Ctrl-C, marked interrupted).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report (charts inline, no network needed to view it).
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
    /// Write a markdown summary.
    #[arg(long, value_name = "PATH")]
    pub summary_md: Option<PathBuf>,
    /// Write JUnit XML (one test case per verdict) for CI systems.
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    /// A JSON report written by `blaster run --json`.
    #[arg(value_name = "RUN.json")]
    pub input: PathBuf,
    #[command(flatten)]
    pub outputs: Outputs,
}

#[derive(Debug, Args, Clone)]
pub struct CompareArgs {
    /// The baseline run's JSON report.
    #[arg(value_name = "BASELINE.json")]
    pub baseline: PathBuf,
    /// The run to check, as a JSON report.
    #[arg(value_name = "CURRENT.json")]
    pub current: PathBuf,
    /// Largest allowed worsening of each metric, e.g. 10% or 0.1.
    #[arg(long, default_value = "10%", value_parser = crate::report::compare::parse_percent)]
    pub max_regression: f64,
    /// Metrics to compare: p50,p90,p95,p99,p999,max,mean,rps,error_rate.
    #[arg(long, value_delimiter = ',', default_value = "p95,p99,rps,error_rate")]
    pub metrics: Vec<crate::report::compare::Metric>,
    /// Scenario reports: compare only these request names one by one (comma-separated;
    /// default: every name in both reports). The run-wide metrics are compared regardless.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub names: Option<Vec<String>>,
    /// Also write the comparison as JUnit XML (one test case per metric).
    #[arg(long, value_name = "PATH")]
    pub junit: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct DoctorArgs {
    /// Connections the run should reach, e.g. 100k or 1M (default 100k).
    #[arg(short = 'c', long, value_parser = units::parse_count)]
    pub connections: Option<u64>,
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Defaults of `blaster run` flags that other code tells from given values (a scenario file
/// or ws:// run refuses the quick-run flags it has no use for).
pub const DEFAULT_CONNECTIONS: usize = 50;
pub const DEFAULT_METHOD: &str = "GET";
pub const DEFAULT_PIPELINE: usize = 1;

/// What the connections of a run do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Request,
    Hold,
    /// WebSocket (ws://): every connection sends --message-rate messages/s and times the echo.
    Echo,
    /// WebSocket (ws://): --publishers connections publish to --topics topics, the rest
    /// subscribe; delivery latency, loss and fan-out are measured.
    Pubsub,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Target URL(s), e.g. http://127.0.0.1:8080/ (connections are spread over them). A port
    /// range, http://127.0.0.1:9000-9015/, stands for one URL per port: past the ephemeral
    /// ports one (source, destination) pair allows, without binding source addresses.
    #[arg(required = true, value_name = "URL")]
    pub targets: Vec<String>,
    /// Connections in total (closed model: one request in flight each, times --pipeline).
    #[arg(short = 'c', long, default_value_t = DEFAULT_CONNECTIONS, value_parser = parse_count_usize)]
    pub connections: usize,
    /// How long to run, e.g. 30s, 2m, 1h30m (default 10s unless -n is given).
    #[arg(short = 'd', long, value_parser = units::parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many requests, e.g. 10000 or 1M.
    #[arg(short = 'n', long = "requests", value_parser = units::parse_count)]
    pub requests: Option<u64>,
    /// Worker threads, each pinned to a CPU (default: every CPU this process may use).
    #[arg(short = 't', long, value_parser = parse_count_usize)]
    pub threads: Option<usize>,
    /// What the connections do: `request` sends requests (the closed model, or the open model
    /// with --rate); `hold` opens them (at --connect-rate) and holds them until the end.
    #[arg(long, value_enum, default_value_t = Mode::Request)]
    pub mode: Mode,
    /// Hold mode: each connection sends one request this often (a keep-alive check, timed).
    #[arg(long, value_name = "DUR", value_parser = units::parse_duration)]
    pub keepalive_every: Option<Duration>,
    /// Open model: requests per second in total, e.g. 2000 or 2k; latency is timed from each
    /// request's intended send time.
    #[arg(long, value_parser = units::parse_rate)]
    pub rate: Option<f64>,
    /// New connections per second in total (default: as fast as possible). In hold mode the
    /// open connections ramp up linearly at this rate until -c is reached.
    #[arg(long, value_parser = units::parse_rate)]
    pub connect_rate: Option<f64>,
    /// Connects in flight at once, in total (default: 256 per worker; http://, ws:// and
    /// scenario runs alike). New
    /// connections wait while this many are connecting, so a storm runs as fast as the target
    /// accepts: beyond its accept queue, dropped SYNs return only after the kernel's 1 s / 3 s
    /// retransmits and would time out. Raise it for a remote target with a long round trip
    /// (connects/s per worker ≈ N / handshake time).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connecting: Option<u64>,
    /// Close and reopen this many connections per second in total, across the run (hold or
    /// request mode): a load of connection setup and teardown on top of the model. A
    /// connection with a request in flight closes after its response. Reconnects are timed in
    /// the connect latency.
    #[arg(long, value_name = "RATE", value_parser = units::parse_rate)]
    pub churn: Option<f64>,
    /// HTTP method.
    #[arg(short = 'm', long, default_value = DEFAULT_METHOD)]
    pub method: String,
    /// Extra header 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "'K: V'")]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Request body read from a file.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Requests in flight per connection (HTTP pipelining).
    #[arg(long, default_value_t = DEFAULT_PIPELINE, value_parser = parse_count_usize)]
    pub pipeline: usize,
    /// A request not answered within this time ends as a `timeout` error.
    #[arg(long, default_value = "10s", value_parser = units::parse_duration)]
    pub timeout: Duration,
    /// Open model: a send later than this after its intended time counts as `late`.
    #[arg(long, default_value = "1ms", value_parser = units::parse_duration)]
    pub late_after: Duration,
    /// Length of one interval of the live progress and of the report's time series.
    #[arg(long = "report-interval", default_value = "1s", value_parser = units::parse_duration)]
    pub interval: Duration,
    /// Write per-interval latency histograms to this file in HdrHistogram's interval log
    /// format (readable by HdrHistogram's tools).
    #[arg(long, value_name = "PATH")]
    pub hdr_log: Option<PathBuf>,
    /// Serve live metrics at http://ADDR/metrics for Prometheus during the run (loopback by
    /// default: give the flag alone for 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = crate::report::prometheus::DEFAULT_LISTEN)]
    pub prometheus_listen: Option<SocketAddr>,
    /// Keep /metrics up this long after the run, so a scraper collects the final values.
    #[arg(long, value_name = "DUR", default_value = "0s", value_parser = units::parse_duration)]
    pub prometheus_linger: Duration,
    /// Source addresses to connect from: a list (127.0.0.2,127.0.0.3) or a range
    /// (127.0.0.2-127.0.0.200), spread over the connections (http://, ws:// and scenario runs).
    #[arg(long, value_name = "ADDRS")]
    pub source: Option<String>,
    /// Scenario files: set a variable used as ${NAME} in the file (repeatable), like k6's -e.
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// WebSocket echo and pub/sub: messages per second each sending connection sends.
    #[arg(long, default_value = "1", value_parser = units::parse_rate)]
    pub message_rate: f64,
    /// WebSocket echo and pub/sub: message size in bytes (at least 32: the first 32 carry the
    /// sender, sequence number and send time), e.g. 512 or 1KiB.
    #[arg(long, default_value = "64", value_parser = units::parse_bytes)]
    pub payload: u64,
    /// WebSocket pub/sub: connections that publish (the others subscribe).
    #[arg(long, default_value = "1", value_parser = parse_count_usize)]
    pub publishers: usize,
    /// WebSocket pub/sub: topics; connection i uses topic i mod N (path URL + "t<topic>").
    #[arg(long, default_value = "1", value_parser = parse_count_usize)]
    pub topics: usize,
    /// WebSocket: offer this subprotocol in the Upgrade request (repeatable, in order of
    /// preference); the server's choice is checked against them.
    #[arg(long = "subprotocol", value_name = "NAME")]
    pub subprotocols: Vec<String>,
    /// WebSocket: wait before reconnecting a dropped session: `none`, a fixed duration
    /// (`1s`) or exponential with jitter (`exp:100ms..5s`).
    #[arg(long, default_value = "exp:100ms..5s", value_parser = vu::parse_backoff)]
    pub backoff: crate::engine::vu::plan::Backoff,
    /// WebSocket: largest frame payload accepted from the server (default 16MiB), e.g. 1MiB;
    /// a larger frame counts as error `frame_too_large` and the session is closed with 1009.
    /// Scenario files: for ws_connect steps without their own `max_frame`.
    #[arg(long, value_name = "SIZE", value_parser = parse_ws_limit)]
    pub ws_max_frame: Option<u64>,
    /// WebSocket: largest message (the sum of its frames) accepted from the server (default
    /// 64MiB); a larger one counts as error `message_too_large` and the session is closed
    /// with 1009. Scenario files: for ws_connect steps without their own `max_message`.
    #[arg(long, value_name = "SIZE", value_parser = parse_ws_limit)]
    pub ws_max_message: Option<u64>,
    /// The eBPF probe running on the target host (`blaster probe --port P --listen ADDR`):
    /// its snapshot is read when the load starts and ends, and the report gets a `kernel`
    /// section (handshake, accept and receive queues, the application's remainder).
    #[arg(long, value_name = "URL", value_parser = crate::probe::remote::parse_probe_url)]
    pub probe: Option<crate::probe::remote::ProbeUrl>,
    #[command(flatten)]
    pub outputs: Outputs,
    /// Print no live progress and no text report (the JSON report is still written).
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on; a port range (127.0.0.1:9000-9015) listens on every port of it
    /// (each thread accepts on each port), so clients can spread past the ephemeral ports
    /// one (source, destination) pair allows.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR[:PORT-PORT]", value_parser = parse_listen)]
    pub listen: ListenSpec,
    /// Serve the routes of this mock file (TOML; see docs/mock.md) instead of the built-in
    /// ones: statuses, body templates, latency distributions, rate limits, stock counters,
    /// WebSocket echo and pub/sub.
    #[arg(long, value_name = "FILE.toml")]
    pub mock: Option<PathBuf>,
    /// Server threads (default: every CPU this process may use).
    #[arg(short = 't', long, value_parser = parse_count_usize)]
    pub threads: Option<usize>,
    /// Connections one thread holds at once (its direct-descriptor table; capped by `ulimit -n`).
    #[arg(long, default_value_t = ServeConfig::DEFAULT_MAX_CONNECTIONS_PER_THREAD, value_parser = parse_count_usize)]
    pub max_connections: usize,
    /// Pin server thread i to CPU i.
    #[arg(long)]
    pub pin: bool,
    /// Largest WebSocket frame payload a client may send (default 16MiB); a larger one is
    /// answered with close 1009.
    #[arg(long, value_name = "SIZE", value_parser = parse_ws_limit)]
    pub ws_max_frame: Option<u64>,
    /// Largest WebSocket message (the sum of its frames) a client may send (default 16MiB; a
    /// pub/sub message is kept whole until complete); a larger one is answered with close 1009.
    #[arg(long, value_name = "SIZE", value_parser = parse_ws_limit)]
    pub ws_max_message: Option<u64>,
}

#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// How long the demo load runs.
    #[arg(short = 'd', long, default_value = "5s", value_parser = units::parse_duration)]
    pub duration: Duration,
    /// Connections.
    #[arg(short = 'c', long, default_value = "50", value_parser = parse_count_usize)]
    pub connections: usize,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

/// Parses `--ws-max-frame` / `--ws-max-message`: a byte size (`16MiB`, `1MB`, `65536`) of at
/// least one byte.
pub fn parse_ws_limit(s: &str) -> Result<u64, String> {
    match units::parse_bytes(s).map_err(|e| e.to_string())? {
        0 => Err(format!(
            "invalid size limit \"{s}\": must be at least 1 byte, like 64KiB or 16MiB"
        )),
        n => Ok(n),
    }
}

fn parse_count_usize(s: &str) -> Result<usize, String> {
    let n = units::parse_count(s).map_err(|e| e.to_string())?;
    if n == 0 {
        return Err(format!("invalid count \"{s}\": must be at least 1"));
    }
    usize::try_from(n).map_err(|_| format!("invalid count \"{s}\": too large"))
}

/// CPUs this process may run on.
pub fn available_cpus() -> usize {
    core_affinity::get_core_ids().map_or(0, |c| c.len()).max(1)
}

impl RunArgs {
    /// Checks the flags and resolves the targets into a [`RunConfig`].
    pub fn to_config(&self, command_line: Vec<String>) -> Result<RunConfig> {
        if let Some(first) = self.targets.iter().find(|t| t.ends_with(".toml")) {
            bail!("run a scenario file alone: `blaster run {first}` (it names its own targets)");
        }
        if matches!(self.mode, Mode::Echo | Mode::Pubsub) {
            bail!("--mode echo and --mode pubsub are WebSocket modes: give a ws:// URL");
        }
        let mut targets = Vec::new();
        for raw in &self.targets {
            for url in expand_port_range(raw)? {
                targets.push(parse_target(&url)?);
            }
        }
        // One worker per CPU; a worker whose connections need more direct descriptors than
        // one ring's table holds (RLIMIT_NOFILE) drives several rings itself.
        let threads = self
            .threads
            .unwrap_or_else(available_cpus)
            .min(self.connections);
        let model = match (self.mode, self.rate) {
            (Mode::Request, Some(rate)) => LoadModel::Open { rate },
            (Mode::Request, None) => LoadModel::Closed,
            (Mode::Hold, None) => LoadModel::Hold {
                keepalive: self.keepalive_every,
            },
            (Mode::Hold, Some(_)) => bail!(
                "--mode hold and --rate do not go together: held connections send only --keepalive-every requests"
            ),
            (Mode::Echo | Mode::Pubsub, _) => {
                bail!("--mode echo and --mode pubsub are WebSocket modes: give a ws:// URL")
            }
        };
        if self.mode == Mode::Hold && self.requests.is_some() {
            bail!(
                "--mode hold runs for a duration, not a request count: give -d (e.g. -d 60s) instead of -n"
            );
        }
        if self.mode == Mode::Request && self.keepalive_every.is_some() {
            bail!("--keepalive-every applies to --mode hold only");
        }
        if self.keepalive_every.is_some_and(|d| d.is_zero()) {
            bail!("invalid --keepalive-every 0s: give a period such as --keepalive-every 5s");
        }
        let duration = match (self.duration, self.requests) {
            (None, None) => Some(Duration::from_secs(10)),
            (d, _) => d,
        };
        if duration == Some(Duration::ZERO) {
            bail!("invalid duration 0s: give a positive duration such as -d 10s");
        }
        if self.requests == Some(0) {
            bail!("invalid request count 0: give at least one request, e.g. -n 1000");
        }
        if self.interval < Duration::from_millis(10) {
            bail!(
                "invalid --report-interval {:?}: give at least 10ms, for example --report-interval 1s",
                self.interval
            );
        }
        if self.timeout.is_zero() {
            bail!("invalid --timeout 0s: give a positive timeout such as --timeout 5s");
        }
        let mut headers = Vec::with_capacity(self.headers.len());
        for h in &self.headers {
            let (name, value) = h.split_once(':').with_context(|| {
                format!("invalid header \"{h}\": expected 'Name: value', for example -H 'Accept: application/json'")
            })?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let body = match (&self.body, &self.body_file) {
            (Some(b), _) => b.clone().into_bytes(),
            (None, Some(path)) => std::fs::read(path).with_context(|| {
                format!(
                    "could not read --body-file {}: check the path",
                    path.display()
                )
            })?,
            (None, None) => Vec::new(),
        };
        let sources = match &self.source {
            Some(s) => parse_sources(s)?,
            None => Vec::new(),
        };
        let method = self.method.to_ascii_uppercase();
        let config = RunConfig {
            targets,
            sources,
            threads,
            connections: self.connections,
            model,
            stop: StopCondition {
                duration,
                requests: self.requests,
            },
            connect_rate: self.connect_rate,
            max_connecting: self.max_connecting.map(|n| n as usize),
            churn: self.churn,
            pipeline: self.pipeline,
            timeout: self.timeout,
            request: RequestSpec {
                method,
                headers,
                body,
            },
            late_after: self.late_after,
            report_interval: self.interval,
            command_line,
        };
        // Encode once now so a bad method or header is reported before any connection opens.
        for t in &config.targets {
            crate::proto::http1::encode_request(
                &config.request.method,
                &t.path,
                &t.host_header,
                &config.request.headers,
                &config.request.body,
            )?;
        }
        Ok(config)
    }
}

/// `scheme://host:FIRST-LAST/rest` as one URL per port of the range; any other text as it is
/// (`parse_target` judges it). Done on the text because a URL parser rejects the range.
pub fn expand_port_range(raw: &str) -> Result<Vec<String>> {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Ok(vec![raw.to_string()]);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // The port follows the last ':' outside an IPv6 literal's brackets.
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    let Some(colon) = authority[host_end..].rfind(':').map(|i| i + host_end) else {
        return Ok(vec![raw.to_string()]);
    };
    let (host, ports) = (&authority[..colon], &authority[colon + 1..]);
    let Some((a, b)) = ports.split_once('-') else {
        return Ok(vec![raw.to_string()]);
    };
    let bad = || {
        anyhow!(
            "invalid port range \"{ports}\" in \"{raw}\": write FIRST-LAST with 1 <= FIRST <= LAST <= 65535, e.g. http://127.0.0.1:9000-9015/"
        )
    };
    let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a..=b)
        .map(|p| format!("{scheme}://{host}:{p}{tail}"))
        .collect())
}

/// Parses and resolves one target URL.
pub fn parse_target(raw: &str) -> Result<Target> {
    let url = url::Url::parse(raw).with_context(|| {
        format!("invalid URL \"{raw}\": expected a URL such as http://127.0.0.1:8080/path")
    })?;
    match url.scheme() {
        "http" => {}
        "https" => bail!(
            "unsupported scheme in \"{raw}\": blaster speaks plain HTTP/1.1 (http://) in this version; test a TLS endpoint through a local TLS terminator"
        ),
        other => bail!("unsupported scheme \"{other}\" in \"{raw}\": use http://"),
    }
    let host = url
        .host_str()
        .with_context(|| format!("invalid URL \"{raw}\": it has no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = (bare_host, port)
        .to_socket_addrs()
        .with_context(|| format!("could not resolve host \"{host}\" of \"{raw}\": check the name or use an IP address"))?
        .next()
        .with_context(|| format!("host \"{host}\" of \"{raw}\" has no address"))?;
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok(Target {
        url: raw.to_string(),
        addr,
        host_header,
        path,
    })
}

/// Parses `--source`: a comma-separated list of addresses and IPv4 ranges `A-B`.
pub fn parse_sources(raw: &str) -> Result<Vec<IpAddr>> {
    let bad = || {
        format!(
            "invalid --source \"{raw}\": expected addresses or ranges such as 127.0.0.2,127.0.0.3 or 127.0.0.2-127.0.0.200"
        )
    };
    let mut out = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: std::net::Ipv4Addr = a.trim().parse().with_context(bad)?;
            let b: std::net::Ipv4Addr = b.trim().parse().with_context(bad)?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 1 << 20 {
                bail!(
                    "{}: the range must go upward and hold at most 1,048,576 addresses",
                    bad()
                );
            }
            out.extend((a..=b).map(|ip| IpAddr::V4(ip.into())));
        } else {
            out.push(part.parse().with_context(bad)?);
        }
    }
    if out.is_empty() {
        bail!(bad());
    }
    Ok(out)
}

/// `--listen`: an address and how many consecutive ports from its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSpec {
    pub addr: SocketAddr,
    pub ports: u16,
}

/// Parses `--listen`: `IP:PORT` or `IP:FIRST-LAST` (IPv6 in brackets: `[::1]:9000-9015`).
pub fn parse_listen(s: &str) -> Result<ListenSpec, String> {
    let bad = |why: &str| {
        format!(
            "invalid --listen \"{s}\": {why}; expected IP:PORT or IP:FIRST-LAST, such as 127.0.0.1:8080 or 127.0.0.1:9000-9015"
        )
    };
    let Some((host, ports)) = s.rsplit_once(':') else {
        return Err(bad("no port"));
    };
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| bad("not an IP address"))?;
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| bad("a port is 0 to 65535"))
    };
    let (first, count) = match ports.split_once('-') {
        None => (port(ports)?, 1),
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a == 0 || b < a {
                return Err(bad("a port range goes upward from a port above 0"));
            }
            (a, b - a + 1)
        }
    };
    Ok(ListenSpec {
        addr: SocketAddr::new(ip, first),
        ports: count,
    })
}

impl ServeArgs {
    /// Validates the flags (and reads the mock file) into the server's configuration.
    pub fn to_config(&self) -> Result<ServeConfig> {
        let mock = match &self.mock {
            Some(path) => Some(Arc::new(crate::target::mock::load(path)?)),
            None => None,
        };
        Ok(ServeConfig {
            listen: self.listen.addr,
            ports: self.listen.ports,
            threads: self.threads.unwrap_or_else(available_cpus),
            max_connections_per_thread: self.max_connections,
            pin: self.pin,
            mock,
            ws_limits: crate::proto::ws::WsLimits {
                max_frame: self
                    .ws_max_frame
                    .unwrap_or(ServeConfig::DEFAULT_WS_LIMITS.max_frame),
                max_message: self
                    .ws_max_message
                    .unwrap_or(ServeConfig::DEFAULT_WS_LIMITS.max_message),
            },
        })
    }
}

/// Installs Ctrl-C / SIGTERM handling: the first signal sets the returned flag (the run stops
/// and writes its report), a second one exits at once with code 130.
pub fn install_stop_signals() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Order matters: the conditional exit must see the flag as it was before this signal.
        signal_hook::flag::register_conditional_shutdown(sig, EXIT_INTERRUPTED, Arc::clone(&stop))
            .context("could not install the signal handler")?;
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("could not install the signal handler")?;
    }
    Ok(stop)
}

/// Entry point of the binary; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            // Printing help or a usage error can only fail on a closed stdout/stderr.
            let _ = e.print();
            return code;
        }
    };
    let command_line: Vec<String> = std::env::args().collect();
    let result = match cli.command {
        Command::Run(args) => run_command(&args, command_line),
        Command::Serve(args) => serve_command(&args),
        Command::Demo(args) => crate::demo::run(&args),
        Command::Doctor(args) => crate::doctor::run(args.connections, args.json),
        Command::Probe(args) => probe::run(&args),
        Command::Report(args) => report_command(&args),
        Command::Compare(args) => compare_command(&args),
        Command::Merge(args) => merge_command(&args),
        Command::Check(args) => {
            let vars = match parse_vars(&args.vars) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("blaster: error: {e:#}");
                    return EXIT_ERROR;
                }
            };
            crate::scenario::check(&args.file, &vars)
                .map(|summary| {
                    print!("{summary}");
                    EXIT_OK
                })
                .map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("blaster: error: {e:#}");
            EXIT_ERROR
        }
    }
}

pub(crate) fn run_command(args: &RunArgs, command_line: Vec<String>) -> Result<i32> {
    if let Some(first) = args.targets.first() {
        if first.ends_with(".toml") {
            return vu::run_scenario(args, first, command_line);
        }
        if first.starts_with("ws://") || first.starts_with("wss://") {
            return vu::run_ws(args, command_line);
        }
    }
    if args.ws_max_frame.is_some() || args.ws_max_message.is_some() {
        bail!(
            "--ws-max-frame and --ws-max-message apply to ws:// URLs and scenario files, not to {}: drop them, or run a WebSocket target",
            args.targets.first().map_or("this run", String::as_str)
        );
    }
    let config = args.to_config(command_line)?;
    let stop = install_stop_signals()?;
    let probe_start = probe_start(args)?;
    let progress = Progress::new(ProgressMode::detect(args.quiet), config.stop.duration);
    let mut observers = observe::Observers::start(args, progress, Arc::clone(&stop))?;
    let outcome =
        crate::engine::run_observed(&config, Arc::clone(&stop), |point| observers.observe(point));
    observers.finish();
    let outcome = outcome?;
    let ports: Vec<u16> = config.targets.iter().map(|t| t.addr.port()).collect();
    let kernel = probe_start.and_then(|(url, start)| {
        let m = &outcome.metrics;
        let latency = crate::report::summarize(&m.latency);
        kernel_report(&ports, &latency, m.responses, url, &start)
    });
    let code = finish_run_with_kernel(&config, &outcome, &args.outputs, args.quiet, kernel)?;
    observers.linger(args.prometheus_linger);
    Ok(code)
}

/// The probe's snapshot before the load (`--probe`): a probe that cannot be read stops the
/// run here, before any load is sent.
pub(crate) fn probe_start(
    args: &RunArgs,
) -> Result<Option<(&crate::probe::remote::ProbeUrl, crate::probe::ProbeSnapshot)>> {
    match &args.probe {
        Some(url) => Ok(Some((url, crate::probe::remote::fetch_snapshot(url)?))),
        None => Ok(None),
    }
}

/// Reads the probe's snapshot after the load and builds the report's `kernel` section for
/// the first of `ports` the probe watches (or its only port); it splits the client's mean
/// `latency` against the receive-queue wait per one of `count` things the server read
/// (responses to requests; for WebSocket runs see docs/PROBE.md). On failure warns and
/// returns `None` (the run's own report still matters).
pub(crate) fn kernel_report(
    ports: &[u16],
    latency: &crate::report::LatencySummary,
    count: u64,
    url: &crate::probe::remote::ProbeUrl,
    start: &crate::probe::ProbeSnapshot,
) -> Option<crate::report::kernel::KernelReport> {
    use crate::report::kernel::{KernelReport, pick_port};
    let result = crate::probe::remote::fetch_snapshot(url)
        .map_err(|e| format!("{e:#}"))
        .and_then(|end| {
            let port = pick_port(ports, &end).ok_or_else(|| {
                let hint = ports
                    .first()
                    .map_or_else(|| "the target's port".to_owned(), |p| p.to_string());
                format!(
                    "the probe at {url} watches port(s) {:?}, none of the targets' {ports:?}: \
                     run it with `blaster probe --port {hint} --listen ...`",
                    end.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
                )
            })?;
            KernelReport::from_snapshots(&url.to_string(), start, &end, port, latency, count)
        });
    match result {
        Ok(k) => Some(k),
        Err(e) => {
            eprintln!("blaster: warning: no kernel section in the report: {e}");
            None
        }
    }
}

/// Prints and writes the report of a finished run and returns the exit code.
pub fn finish_run(
    config: &RunConfig,
    outcome: &crate::engine::RunOutcome,
    outputs: &Outputs,
    quiet: bool,
) -> Result<i32> {
    finish_run_with_kernel(config, outcome, outputs, quiet, None)
}

/// [`finish_run`], with what the probe on the target saw (`--probe`).
pub fn finish_run_with_kernel(
    config: &RunConfig,
    outcome: &crate::engine::RunOutcome,
    outputs: &Outputs,
    quiet: bool,
    kernel: Option<crate::report::kernel::KernelReport>,
) -> Result<i32> {
    let mut report = crate::report::Report::from_run(config, outcome);
    report.kernel = kernel;
    write_outputs(&report, outputs)?;
    if !quiet {
        print!("{}", crate::report::text::render(&report));
    }
    Ok(if outcome.interrupted {
        EXIT_INTERRUPTED
    } else {
        EXIT_OK
    })
}

/// Writes the report in every format asked for; each file is written atomically.
pub(crate) fn write_outputs(report: &crate::report::Report, outputs: &Outputs) -> Result<()> {
    use crate::report::{html, json, junit, markdown};
    if let Some(path) = &outputs.json {
        json::write_json(report, path)?;
    }
    type Renderer = fn(&crate::report::Report) -> String;
    let others: [(&Option<PathBuf>, &str, Renderer); 3] = [
        (&outputs.html, "HTML report", html::render),
        (&outputs.summary_md, "markdown summary", markdown::render),
        (&outputs.junit, "JUnit report", junit::render),
    ];
    for (path, what, render) in others {
        if let Some(path) = path {
            json::write_atomic(path, render(report).as_bytes())
                .with_context(|| format!("cannot write the {what} to {}", path.display()))?;
        }
    }
    Ok(())
}

fn report_command(args: &ReportArgs) -> Result<i32> {
    let report = crate::report::compare::load_report(&args.input)?;
    let outputs = &args.outputs;
    write_outputs(&report, outputs)?;
    if outputs.json.is_none()
        && outputs.html.is_none()
        && outputs.summary_md.is_none()
        && outputs.junit.is_none()
    {
        print!("{}", crate::report::text::render(&report));
    }
    Ok(EXIT_OK)
}

fn merge_command(args: &MergeArgs) -> Result<i32> {
    let reports = args
        .inputs
        .iter()
        .map(|p| crate::report::compare::load_report(p))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = crate::report::merge::merge(&reports)?;
    write_outputs(&merged, &args.outputs)?;
    if !args.quiet {
        print!("{}", crate::report::text::render(&merged));
    }
    Ok(EXIT_OK)
}

fn compare_command(args: &CompareArgs) -> Result<i32> {
    use crate::report::compare;
    let baseline = compare::load_report(&args.baseline)?;
    let current = compare::load_report(&args.current)?;
    let opts = compare::CompareOptions {
        max_regression: args.max_regression,
        metrics: args.metrics.clone(),
        names: args.names.clone(),
    };
    let comparison = compare::compare(&baseline, &current, &opts);
    print!("{}", compare::render_table(&comparison));
    if let Some(path) = &args.junit {
        let xml = crate::report::junit::render_verdicts(&current, &comparison.verdicts());
        crate::report::json::write_atomic(path, xml.as_bytes())
            .with_context(|| format!("cannot write the JUnit report to {}", path.display()))?;
    }
    Ok(if comparison.regressed() {
        compare::EXIT_REGRESSION
    } else {
        EXIT_OK
    })
}

fn serve_command(args: &ServeArgs) -> Result<i32> {
    let config = args.to_config()?;
    let stop = install_stop_signals()?;
    crate::target::serve(&config, Arc::clone(&stop), |addrs| {
        let more = match addrs {
            [_, .., last] => format!(
                " (and {} more ports up to {})",
                addrs.len() - 1,
                last.port()
            ),
            _ => String::new(),
        };
        let mock = match &config.mock {
            Some(spec) => format!(
                ", mock {} ({} route{})",
                spec.path,
                spec.routes.len(),
                if spec.routes.len() == 1 { "" } else { "s" }
            ),
            None => String::new(),
        };
        println!(
            "blaster serve: listening on http://{}/{more} with {} thread(s){mock} (Ctrl-C stops)",
            addrs[0], config.threads
        );
    })?;
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_port_range_in_a_url_is_one_url_per_port() {
        use super::expand_port_range as x;
        assert_eq!(
            x("http://127.0.0.1:9000-9002/a?b=1").unwrap(),
            [
                "http://127.0.0.1:9000/a?b=1",
                "http://127.0.0.1:9001/a?b=1",
                "http://127.0.0.1:9002/a?b=1"
            ]
        );
        assert_eq!(
            x("http://[::1]:80-81").unwrap(),
            ["http://[::1]:80", "http://[::1]:81"]
        );
        // No range: unchanged, whatever it is.
        for same in [
            "http://127.0.0.1:8080/x-y",
            "http://[::1]/",
            "not a url",
            "http://h/",
        ] {
            assert_eq!(x(same).unwrap(), [same]);
        }
        for bad in [
            "http://h:9-1/",
            "http://h:0-3/",
            "http://h:1-70000/",
            "http://h:a-b/",
        ] {
            let e = x(bad).unwrap_err().to_string();
            assert!(e.contains("invalid port range") && e.contains(bad), "{e}");
        }
    }

    use super::*;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["blaster", "run", "http://127.0.0.1:8080/x?y=1"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Run(a) => *a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn compare_takes_a_comma_separated_metric_list() {
        let cli = Cli::try_parse_from([
            "blaster",
            "compare",
            "a.json",
            "b.json",
            "--metrics",
            "p50,rps",
        ])
        .unwrap();
        match cli.command {
            Command::Compare(a) => {
                use crate::report::compare::Metric;
                assert_eq!(a.metrics, vec![Metric::P50, Metric::Rps]);
                assert!((a.max_regression - 0.10).abs() < 1e-9);
            }
            _ => unreachable!(),
        }
        assert!(Cli::try_parse_from(["blaster", "compare", "a", "b", "--metrics", "p77"]).is_err());
    }

    #[test]
    fn ws_size_limits_take_units_and_refuse_zero() {
        assert_eq!(parse_ws_limit("16MiB"), Ok(16 << 20));
        assert_eq!(parse_ws_limit("1MB"), Ok(1_000_000));
        assert_eq!(parse_ws_limit("4096"), Ok(4096));
        let e = parse_ws_limit("0").unwrap_err();
        assert!(e.contains("\"0\"") && e.contains("at least 1 byte"), "{e}");
        let e = parse_ws_limit("lots").unwrap_err();
        assert!(e.contains("lots") && e.contains("1.5MiB"), "{e}");
        let a = args(&["--ws-max-frame", "1KiB", "--ws-max-message", "2KiB"]);
        assert_eq!((a.ws_max_frame, a.ws_max_message), (Some(1024), Some(2048)));
        let cli = Cli::try_parse_from(["blaster", "serve", "--ws-max-frame", "64KiB"]).unwrap();
        let Command::Serve(s) = cli.command else {
            unreachable!()
        };
        let limits = s.to_config().unwrap().ws_limits;
        assert_eq!(limits.max_frame, 64 << 10);
        assert_eq!(
            limits.max_message,
            ServeConfig::DEFAULT_WS_LIMITS.max_message
        );
    }

    #[test]
    fn ws_size_limits_are_refused_for_http_runs() {
        let a = args(&["--ws-max-frame", "1KiB", "-n", "1"]);
        let e = run_command(&a, vec![]).unwrap_err().to_string();
        assert!(
            e.contains("--ws-max-frame") && e.contains("http://127.0.0.1:8080/x?y=1"),
            "{e}"
        );
    }

    #[test]
    fn defaults_give_a_closed_ten_second_run() {
        let c = args(&[]).to_config(vec![]).unwrap();
        assert_eq!(c.model, LoadModel::Closed);
        assert_eq!(c.stop.duration, Some(Duration::from_secs(10)));
        assert_eq!(c.connections, 50);
        assert_eq!(c.targets[0].path, "/x?y=1");
        assert_eq!(c.targets[0].host_header, "127.0.0.1:8080");
        assert_eq!(c.request.method, "GET");
    }

    #[test]
    fn rate_selects_the_open_model() {
        let c = args(&["--rate", "2k", "-d", "3s"])
            .to_config(vec![])
            .unwrap();
        assert_eq!(c.model, LoadModel::Open { rate: 2000.0 });
        assert_eq!(c.stop.duration, Some(Duration::from_secs(3)));
    }

    #[test]
    fn requests_alone_has_no_time_limit() {
        let c = args(&["-n", "10k"]).to_config(vec![]).unwrap();
        assert_eq!(
            c.stop,
            StopCondition {
                duration: None,
                requests: Some(10_000)
            }
        );
    }

    #[test]
    fn hold_mode_takes_a_keepalive_period_and_refuses_a_rate() {
        let c = args(&["--mode", "hold", "--keepalive-every", "2s", "-d", "5s"])
            .to_config(vec![])
            .unwrap();
        assert_eq!(
            c.model,
            LoadModel::Hold {
                keepalive: Some(Duration::from_secs(2))
            }
        );
        assert!(
            args(&["--mode", "hold", "--rate", "10"])
                .to_config(vec![])
                .is_err()
        );
        assert!(
            args(&["--mode", "hold", "-n", "10"])
                .to_config(vec![])
                .is_err()
        );
        assert!(
            args(&["--keepalive-every", "1s"])
                .to_config(vec![])
                .is_err()
        );
    }

    #[test]
    fn churn_is_a_rate_on_top_of_any_mode() {
        let c = args(&["--mode", "hold", "--churn", "500"])
            .to_config(vec![])
            .unwrap();
        assert_eq!(c.churn, Some(500.0));
        let c = args(&["--churn", "2k/s"]).to_config(vec![]).unwrap();
        assert_eq!((c.model, c.churn), (LoadModel::Closed, Some(2000.0)));
        assert_eq!(args(&[]).to_config(vec![]).unwrap().churn, None);
        let err = Cli::try_parse_from(["blaster", "run", "http://127.0.0.1:8080/", "--churn", "0"])
            .expect_err("a zero churn rate is refused");
        assert!(err.to_string().contains("\"0\""), "{err}");
    }

    #[test]
    fn connections_beyond_one_ring_keep_one_thread_per_cpu() {
        // Regression: workers were added beyond -t (and the CPUs) when the connections needed
        // more than one ring's file table; a worker now drives several rings instead.
        let per_ring = crate::engine::ring::raise_nofile_limit() as usize;
        let many = (per_ring * 2 + 1).to_string();
        let c = args(&["-c", &many, "-t", "1", "--mode", "hold"])
            .to_config(vec![])
            .unwrap();
        assert_eq!(c.threads, 1);
        assert_eq!(c.connections_for_worker(0), per_ring * 2 + 1);
    }

    #[test]
    fn threads_never_exceed_connections() {
        let c = args(&["-c", "1", "-t", "4"]).to_config(vec![]).unwrap();
        assert_eq!(c.threads, 1);
    }

    #[test]
    fn headers_and_body_are_taken() {
        let c = args(&["-m", "post", "-H", "X-A: 1", "--body", "hi"])
            .to_config(vec![])
            .unwrap();
        assert_eq!(c.request.method, "POST");
        assert_eq!(
            c.request.headers,
            vec![("X-A".to_string(), "1".to_string())]
        );
        assert_eq!(c.request.body, b"hi");
    }

    #[test]
    fn bad_header_is_explained() {
        let e = args(&["-H", "nocolon"])
            .to_config(vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("nocolon") && e.contains("Name: value"), "{e}");
    }

    #[test]
    fn bad_url_and_scheme_are_explained() {
        let e = parse_target("not a url").unwrap_err().to_string();
        assert!(e.contains("invalid URL \"not a url\""), "{e}");
        let e = parse_target("https://127.0.0.1/").unwrap_err().to_string();
        assert!(e.contains("unsupported scheme"), "{e}");
        let e = parse_target("ftp://127.0.0.1/").unwrap_err().to_string();
        assert!(e.contains("\"ftp\""), "{e}");
    }

    #[test]
    fn default_port_and_ipv6_resolve() {
        let t = parse_target("http://127.0.0.1/").unwrap();
        assert_eq!(t.addr.port(), 80);
        assert_eq!(t.host_header, "127.0.0.1");
        let t = parse_target("http://[::1]:9000/").unwrap();
        assert_eq!(t.addr, "[::1]:9000".parse().unwrap());
    }

    #[test]
    fn scenario_files_are_refused_clearly_for_now() {
        let a = match Cli::try_parse_from(["blaster", "run", "plan.toml"])
            .unwrap()
            .command
        {
            Command::Run(a) => a,
            _ => unreachable!(),
        };
        let e = a.to_config(vec![]).unwrap_err().to_string();
        assert!(e.contains("scenario file"), "{e}");
    }

    #[test]
    fn sources_parse_lists_and_ranges() {
        let s = parse_sources("127.0.0.2-127.0.0.4,::1").unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[2], "127.0.0.4".parse::<IpAddr>().unwrap());
        assert!(parse_sources("127.0.0.9-127.0.0.2").is_err());
        assert!(
            parse_sources("x")
                .unwrap_err()
                .to_string()
                .contains("127.0.0.2-127.0.0.200")
        );
    }

    #[test]
    fn listen_takes_an_address_or_a_port_range() {
        let l = parse_listen("127.0.0.1:8080").unwrap();
        assert_eq!((l.addr, l.ports), ("127.0.0.1:8080".parse().unwrap(), 1));
        let l = parse_listen("127.0.0.1:9000-9015").unwrap();
        assert_eq!((l.addr.port(), l.ports), (9000, 16));
        let l = parse_listen("[::1]:9000-9001").unwrap();
        assert_eq!((l.addr, l.ports), ("[::1]:9000".parse().unwrap(), 2));
        assert_eq!(parse_listen("0.0.0.0:0").unwrap().ports, 1);
        for bad in [
            "127.0.0.1",
            "localhost:80",
            "127.0.0.1:9010-9000",
            "127.0.0.1:0-5",
            "1.2.3.4:70000",
        ] {
            let e = parse_listen(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains("127.0.0.1:9000-9015"), "{e}");
        }
        let cli =
            Cli::try_parse_from(["blaster", "serve", "--listen", "127.0.0.1:9000-9003"]).unwrap();
        let Command::Serve(a) = cli.command else {
            unreachable!()
        };
        let c = a.to_config().unwrap();
        assert_eq!((c.listen.port(), c.ports, c.mock), (9000, 4, None));
    }

    #[test]
    fn a_bad_mock_file_names_its_line() {
        let dir = std::env::temp_dir().join(format!("blaster-cli-mock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(&file, "[[routes]]\npath = \"/x\"\nstauts = 200\n").unwrap();
        let cli =
            Cli::try_parse_from(["blaster", "serve", "--mock", file.to_str().unwrap()]).unwrap();
        let Command::Serve(a) = cli.command else {
            unreachable!()
        };
        let e = a.to_config().unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            e.contains("bad.toml:3:1:") && e.contains("did you mean \"status\""),
            "{e}"
        );
    }

    #[test]
    fn zero_counts_are_refused() {
        assert!(Cli::try_parse_from(["blaster", "run", "http://127.0.0.1/", "-c", "0"]).is_err());
        assert!(args(&["-d", "0s"]).to_config(vec![]).is_err());
    }
}
