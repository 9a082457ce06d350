//! The validated run configuration.
//!
//! The CLI (and later scenario files) turn raw user input into these plain values; nothing
//! below this module sees clap types or unparsed strings. Every value here has already been
//! checked, so the engine can assume it is sane (non-zero counts, resolved addresses).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// One resolved target endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as the user wrote it (for reports).
    pub url: String,
    /// Resolved address to connect to.
    pub addr: SocketAddr,
    /// Value of the `Host` header (`host[:port]`).
    pub host_header: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// The load model: how requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadModel {
    /// Fixed connections, each sending its next request as soon as the last answer came.
    Closed,
    /// A fixed arrival rate in requests per second (all threads together); latency is timed
    /// from each request's intended send time.
    Open { rate: f64 },
    /// Open the connections and hold them; with `keepalive`, each connection sends one request
    /// per period (timed like the closed model).
    Hold { keepalive: Option<Duration> },
}

impl LoadModel {
    pub fn name(&self) -> &'static str {
        match self {
            LoadModel::Closed => "closed",
            LoadModel::Open { .. } => "open",
            LoadModel::Hold { .. } => "hold",
        }
    }
}

/// When the run ends (whichever comes first; at least one is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopCondition {
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
}

/// What every request looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    pub method: String,
    /// Extra headers in the order given (`Host` is added from the target unless given here).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Everything a load run needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// At least one target; connections are spread over them round-robin.
    pub targets: Vec<Target>,
    /// Source addresses to bind before connect; empty lets the kernel choose.
    pub sources: Vec<IpAddr>,
    /// Worker threads (each pinned to one CPU when pinning is possible).
    pub threads: usize,
    /// Connections in total (spread over the threads).
    pub connections: usize,
    pub model: LoadModel,
    pub stop: StopCondition,
    /// New connections per second in total, `None` for as fast as possible.
    pub connect_rate: Option<f64>,
    /// Connects in flight at once in total (`None`: [`DEFAULT_CONNECTING_PER_WORKER`] per
    /// worker). A storm beyond what the target accepts overflows its accept queue; the SYNs it
    /// drops come back only after the kernel's retransmit timer (1 s, 3 s, 7 s), past the
    /// connect timeout, and every reconnect feeds the storm. Bounding the connects in flight
    /// lets the storm run as fast as the target accepts and no faster.
    pub max_connecting: Option<usize>,
    /// Churn: connections closed and reopened per second in total across the run (on top of
    /// any model), `None` for none.
    pub churn: Option<f64>,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// A request not answered within this time ends as a `timeout` error.
    pub timeout: Duration,
    pub request: RequestSpec,
    /// A send more than this after its intended time counts as `late` (open model).
    pub late_after: Duration,
    /// Length of one interval of the time series and of live progress.
    pub report_interval: Duration,
    /// The original command line, for the report.
    pub command_line: Vec<String>,
}

/// Connects in flight per worker unless `--max-connecting` says otherwise. Enough for one
/// worker to reach the kernel's connect rate on loopback or a LAN (a connect completes in tens
/// of microseconds there, a remote one in a round trip: connects/s ≈ this / handshake time),
/// and far below a default accept queue (`net.core.somaxconn` = 4096). Not more: on loopback
/// a worker with 1,024 connects in flight opened 100,000 connections at 35-36k/s with a
/// connect p99 of 41-45 ms (they queue at the target), with 256 at 38-41k/s and 8 ms
/// (docs/PERFORMANCE.md, "New connections per second").
pub const DEFAULT_CONNECTING_PER_WORKER: usize = 256;

impl RunConfig {
    /// Connects in flight at once allowed to one worker.
    pub fn connecting_per_worker(&self) -> usize {
        match self.max_connecting {
            None => DEFAULT_CONNECTING_PER_WORKER,
            Some(total) => total.div_ceil(self.threads.max(1)).max(1),
        }
    }

    /// Connections owned by worker `index` of `threads` (the remainder goes to the first ones).
    pub fn connections_for_worker(&self, index: usize) -> usize {
        share(self.connections, self.threads, index)
    }
}

/// Splits `total` into `parts` near-equal shares and returns share `index`.
pub fn share(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
}

/// Configuration of the built-in target server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Address every worker's `SO_REUSEPORT` listening socket binds (port 0: pick a free one).
    /// With `ports` > 1, the first of a range of consecutive ports.
    pub listen: SocketAddr,
    /// How many consecutive ports from `listen`'s port to listen on (each worker accepts on
    /// every one), so clients can spread over more (source, destination) pairs than one port
    /// gives. At least 1; more than 1 needs a port other than 0.
    pub ports: u16,
    /// Worker threads, each with its own io_uring, listening socket and connections.
    pub threads: usize,
    /// Connections one worker holds at once (the size of its direct-descriptor table); the
    /// server clamps it to the open-files limit (see `target::connection_limit`).
    pub max_connections_per_thread: usize,
    /// Pin worker `i` to CPU `i` (modulo the CPUs available).
    pub pin: bool,
    /// Mock mode: the routes of a mock file instead of the built-in ones.
    pub mock: Option<std::sync::Arc<crate::target::mock::MockSpec>>,
    /// Largest WebSocket frame and message a client may send; larger ones get close 1009.
    pub ws_limits: crate::proto::ws::WsLimits,
}

impl ServeConfig {
    /// Connections per worker unless configured otherwise.
    pub const DEFAULT_MAX_CONNECTIONS_PER_THREAD: usize = 16384;
    /// The server's WebSocket limits unless configured otherwise: 16 MiB frames and messages
    /// (a pub/sub message is kept whole until it is complete).
    pub const DEFAULT_WS_LIMITS: crate::proto::ws::WsLimits = crate::proto::ws::WsLimits {
        max_frame: 16 << 20,
        max_message: 16 << 20,
    };
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ports: 1,
            threads: 1,
            max_connections_per_thread: ServeConfig::DEFAULT_MAX_CONNECTIONS_PER_THREAD,
            pin: false,
            mock: None,
            ws_limits: ServeConfig::DEFAULT_WS_LIMITS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn share_splits_evenly_with_remainder_first() {
        let shares: Vec<usize> = (0..3).map(|i| share(10, 3, i)).collect();
        assert_eq!(shares, vec![4, 3, 3]);
        assert_eq!(shares.iter().sum::<usize>(), 10);
        assert_eq!(share(1, 4, 3), 0);
    }
}
