//! The built-in io_uring HTTP/1.1 target server (`blaster serve`): the server every test,
//! benchmark and the demo runs against.
//!
//! Boundary: this module starts and stops worker threads and validates the configuration; it
//! prints nothing (the CLI reports). Each worker ([`worker`]) owns one ring, one
//! `SO_REUSEPORT` listening socket per port ([`listener`]; `--listen 127.0.0.1:9000-9015`
//! gives every worker sixteen) and its connections; nothing is shared between workers except
//! the stop flag. Requests are parsed and routed by [`http`] and answered by [`respond`],
//! both pure. In mock mode (`blaster serve --mock FILE.toml`) the routes of a file answer
//! instead ([`mock`]; its counters, stocks, rate limits and pub/sub are shared by the
//! workers).
//!
//! Routes (GET, HEAD, POST, PUT; HEAD answers with the head only):
//! - `/`: 200 `ok`
//! - `/delay/{ms}`: 200 `ok` after `ms` milliseconds (0 to 3600000)
//! - `/status/{code}`: that status (200 to 599), empty body
//! - `/bytes/{n}`: 200 with `n` bytes (up to 1 GiB), byte `i` being `PATTERN[i % 64]`
//! - `/chunked/{n}[?trailer=1]`: the same body chunked (at most 4096 bytes per chunk), with an
//!   `X-Checksum` trailer (decimal sum of the body bytes) when asked
//! - `/ws/echo`: WebSocket (a valid Upgrade request gets 101; a request without
//!   `Upgrade: websocket` gets 426, an invalid upgrade 400). Every text or binary message comes
//!   back with the same opcode and bytes (streamed piece by piece as it arrives, so possibly
//!   refragmented); a ping gets a pong with its payload; a close gets a close with the same code,
//!   then the TCP connection closes. Frames and messages over 16 MiB (`--ws-max-frame`,
//!   `--ws-max-message`) get close 1009, invalid UTF-8 1007, other protocol errors (such as
//!   an unmasked frame) 1002.
//! - `/ws/pubsub/{topic}`: WebSocket; every message from any client of the topic goes to all of
//!   the topic's clients, the sender included, on every server thread (through the
//!   [`broker`]; a topic whose clients all sit on the sender's thread never touches it). A
//!   subscriber with more than 64 MiB of unsent output is dropped.
//! - anything else: 404
//!
//! Misbehaviour for tests, as query parameters of a WebSocket route (e.g.
//! `/ws/echo?close_after=3&delay_ms=50`):
//! - `close_after=N`: after N messages from the client, close with code 1000 (echo: after
//!   echoing the Nth).
//! - `delay_ms=D`: send each echo D ms after its message arrived (echo only; pongs are not
//!   delayed).
//! - `drop_at_ms=T`: T ms after the upgrade, drop the TCP connection without a close frame.

mod broker;
mod http;
mod listener;
pub mod mock;
mod respond;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{Context, anyhow, bail};

pub use listener::ListenError;
pub use respond::{PATTERN, body_sum};

use crate::config::ServeConfig;
use crate::engine::ring::raise_nofile_limit;
use worker::Worker;

/// What the server did, summed over its workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Requests parsed (including rejected ones).
    pub requests: u64,
    /// Failed accepts (a full descriptor table drops the connection that did not fit).
    pub accept_errors: u64,
    /// Times a connection's receive found the buffer ring empty and was re-armed.
    pub recv_no_buffers: u64,
    /// Times a connection stopped parsing because its client was not reading the responses.
    pub input_pauses: u64,
    /// Connections (and accepts) whose operations had not completed two seconds after the
    /// stop; their buffers were leaked rather than freed under the kernel. Always 0 unless the
    /// kernel misbehaves.
    pub stuck_at_stop: u64,
}

impl ServeStats {
    fn add(&mut self, other: ServeStats) {
        self.accepted += other.accepted;
        self.requests += other.requests;
        self.accept_errors += other.accept_errors;
        self.recv_no_buffers += other.recv_no_buffers;
        self.input_pauses += other.input_pauses;
        self.stuck_at_stop += other.stuck_at_stop;
    }
}

/// Runs the server until `stop` becomes true; blocking. Prints nothing itself.
///
/// `on_ready` is called with the bound addresses (one per port) once every worker is
/// accepting. If a worker fails, `stop` is set so the others end too, and the first error is
/// returned.
pub fn serve(
    config: &ServeConfig,
    stop: Arc<AtomicBool>,
    on_ready: impl FnOnce(&[SocketAddr]),
) -> anyhow::Result<()> {
    let running = start(config, &stop)?;
    on_ready(&running.addrs);
    join_all(running.workers).map(|_| ())
}

/// Starts the server on background threads in this process; stops and joins them on drop.
pub fn spawn(config: ServeConfig) -> anyhow::Result<ServerHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let running = start(&config, &stop)?;
    Ok(ServerHandle {
        stop,
        addrs: running.addrs,
        workers: running.workers,
    })
}

/// A server started by [`spawn`].
pub struct ServerHandle {
    stop: Arc<AtomicBool>,
    addrs: Vec<SocketAddr>,
    workers: Vec<JoinHandle<anyhow::Result<ServeStats>>>,
}

impl ServerHandle {
    /// The address the server listens on (with the real port when 0 was asked for); with a
    /// port range, its first port.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every address the server listens on, one per port.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Stops the server, waits for its threads, and returns what it did (or a worker's error).
    pub fn stop(mut self) -> anyhow::Result<ServeStats> {
        self.stop.store(true, Ordering::Relaxed);
        join_all(std::mem::take(&mut self.workers))
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Errors were the worker's to report through `stop`; dropping just ends the threads.
        let _ = join_all(std::mem::take(&mut self.workers));
    }
}

/// Connections each worker will hold: `max_connections_per_thread`, clamped to the open-files
/// limit (which caps a ring's descriptor table) after raising the soft limit to the hard one.
pub fn connection_limit(config: &ServeConfig) -> anyhow::Result<usize> {
    if config.max_connections_per_thread == 0 {
        bail!(
            "the server needs room for at least one connection per thread: raise the connection limit"
        );
    }
    let nofile = raise_nofile_limit();
    let cap = usize::try_from(nofile)
        .unwrap_or(usize::MAX)
        .min(u32::MAX as usize / 2);
    if cap < 16 {
        bail!(
            "the open-files limit is {nofile}, too low to serve connections: raise it with `ulimit -n`"
        );
    }
    Ok(config.max_connections_per_thread.min(cap))
}

struct Running {
    addrs: Vec<SocketAddr>,
    workers: Vec<JoinHandle<anyhow::Result<ServeStats>>>,
}

/// Binds the listeners, starts the workers and waits until each one is ready (or one failed).
fn start(config: &ServeConfig, stop: &Arc<AtomicBool>) -> anyhow::Result<Running> {
    if config.threads == 0 {
        bail!("the server needs at least one thread: use 1 or more threads");
    }
    let capacity = connection_limit(config)?;
    // Pub/sub between the threads: the built-in `/ws/pubsub/{topic}` needs it with more than
    // one thread, a mock file whenever it publishes (its own thread gets its mail too).
    let mock_pubsub = config.mock.as_ref().is_some_and(|m| m.uses_pubsub());
    let broker = if config.threads > 1 || mock_pubsub {
        let broker = broker::Broker::new(config.threads).map_err(|e| {
            anyhow!(
                "could not create the pub/sub wake-up eventfds of {} server threads: {e}; \
                 raise the open-files limit (ulimit -n) or use fewer threads",
                config.threads
            )
        })?;
        Some(Arc::new(broker))
    } else {
        None
    };
    let mock = config.mock.as_ref().map(|spec| {
        mock::MockServer::new(Arc::clone(spec), broker.clone().filter(|_| mock_pubsub))
    });
    let (listeners, addrs) = listener::bind_ports(config.listen, config.ports, config.threads)?;
    let cores = if config.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
    let mut workers = Vec::with_capacity(config.threads);
    for (index, listener) in listeners.into_iter().enumerate() {
        let worker_stop = Arc::clone(stop);
        let ready = ready_tx.clone();
        let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        let mock = mock.as_ref().map(|m| m.worker(index));
        let pubsub = broker.clone().map(|b| (b, index));
        let ws_limits = config.ws_limits;
        let spawned = std::thread::Builder::new()
            .name(format!("blaster-serve-{index}"))
            .spawn(move || {
                if let Some(core) = core {
                    // Pinning is an optimisation; an unpinned worker still serves correctly.
                    let _ = core_affinity::set_for_current(core);
                }
                let worker = match Worker::new(listener, capacity, mock, pubsub, ws_limits) {
                    Ok(worker) => worker,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return Err(anyhow!("worker {index} failed to start"));
                    }
                };
                let _ = ready.send(Ok(()));
                drop(ready);
                let result = worker
                    .run(&worker_stop)
                    .with_context(|| format!("server thread {index} failed"));
                if result.is_err() {
                    worker_stop.store(true, Ordering::Relaxed);
                }
                result
            });
        match spawned {
            Ok(handle) => workers.push(handle),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                let _ = join_all(workers);
                return Err(anyhow!("could not start a server thread: {e}"));
            }
        }
    }
    drop(ready_tx);
    let mut failure = None;
    for _ in 0..config.threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure.get_or_insert(e);
            }
            Err(_) => {
                failure.get_or_insert_with(|| anyhow!("a server thread ended before it was ready"));
                break;
            }
        }
    }
    if let Some(e) = failure {
        stop.store(true, Ordering::Relaxed);
        let _ = join_all(workers);
        return Err(e);
    }
    Ok(Running { addrs, workers })
}

/// Joins every worker; returns the summed counters or the first error.
fn join_all(workers: Vec<JoinHandle<anyhow::Result<ServeStats>>>) -> anyhow::Result<ServeStats> {
    let mut total = ServeStats::default();
    let mut first_error = None;
    for handle in workers {
        match handle.join() {
            Ok(Ok(stats)) => total.add(stats),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert_with(|| anyhow!("a server thread panicked"));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

#[cfg(test)]
mod tests;
