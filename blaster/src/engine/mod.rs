//! The thread-per-core io_uring engine: one pinned worker per CPU, each with its own rings
//! (one, or as many as its connections need registered file tables), connections, buffers and
//! metrics; results are merged after the run.
//!
//! [`run`] splits the configured load into one [`WorkerPlan`] per worker, starts the workers
//! on their CPUs, waits for them and merges their metrics. Nothing is shared on the hot path:
//! workers see the read-only config, the shared start clock and a stop flag they poll once per
//! loop.

pub mod clock;
pub mod conn;
pub mod pacing;
pub mod ring;
pub mod ringset;
pub mod vu;
pub mod worker;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::Duration;

use thiserror::Error;

use crate::config::{RunConfig, share};
use crate::metrics::WorkerMetrics;
use crate::metrics::interval::{Aggregator, IntervalPoint, IntervalSnapshot};
use crate::report::TimePoint;
use clock::Clock;
use ring::RingError;

/// What a load run produced, before it is turned into a [`crate::report::Report`].
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// All workers' metrics merged.
    pub metrics: WorkerMetrics,
    /// Wall time of the load phase.
    pub duration: Duration,
    /// CPU time the worker threads spent (getrusage RUSAGE_THREAD, summed), user and system.
    pub cpu_user: Duration,
    pub cpu_system: Duration,
    /// Worker threads that ran.
    pub threads: usize,
    /// The run was stopped by a signal before it finished.
    pub interrupted: bool,
    /// One point per reporting interval; their counts add up to the run's totals.
    pub timeseries: Vec<TimePoint>,
    /// The process's resident memory, sampled once per interval.
    pub memory: MemoryUse,
}

/// Resident memory (RSS) of the process over the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Before the workers set up their rings and connection slabs.
    pub rss_start_bytes: u64,
    /// The largest sample.
    pub rss_peak_bytes: u64,
    /// The most connections open at the end of an interval, and the RSS then.
    pub peak_open_connections: u64,
    pub rss_at_peak_connections_bytes: u64,
}

impl MemoryUse {
    fn sample(&mut self, open_connections: u64) {
        let rss = rss_bytes();
        self.rss_peak_bytes = self.rss_peak_bytes.max(rss);
        if open_connections >= self.peak_open_connections {
            self.peak_open_connections = open_connections;
            self.rss_at_peak_connections_bytes = rss;
        }
    }
}

/// The process's resident set size from /proc/self/status (0 when unreadable).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Why a run could not start or go on.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Ring(#[from] RingError),
    #[error("{0}")]
    Config(String),
    #[error(
        "could not connect to {targets}: {}",
        if *refused { "connection refused; is the target running and listening there?" } else { "every connection attempt failed (see errors); is the address reachable?" }
    )]
    NoConnection { targets: String, refused: bool },
    #[error("io_uring submission failed: {0}")]
    Io(std::io::Error),
    #[error("worker thread {0} panicked")]
    Panicked(usize),
}

/// One worker's share of the run.
#[derive(Debug, Clone, Copy)]
pub struct WorkerPlan {
    /// Connections this worker owns.
    pub connections: usize,
    /// Global index of its first connection (spreads targets and sources evenly).
    pub first_connection: usize,
    /// Clock time the load starts and ends (ns); `u64::MAX` for no time limit.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Requests this worker may send (`u64::MAX` for no limit).
    pub request_limit: u64,
    /// Length of one reporting interval (ns).
    pub interval_ns: u64,
    /// Most direct descriptors one ring may register: a worker drives
    /// `ceil(connections / ring_slots)` rings.
    pub ring_slots: usize,
}

/// Environment variable that lowers the direct descriptors per ring, so tests can drive many
/// rings with few connections (`BLASTER_RING_SLOTS=1000`). Not a user-facing option.
pub const RING_SLOTS_ENV: &str = "BLASTER_RING_SLOTS";

/// Most direct descriptors per ring: the open-files limit `nofile` (a ring's registered file
/// table cannot exceed it, nor the kernel's 1,048,576), or less when [`RING_SLOTS_ENV`] says.
pub fn ring_slots(nofile: u64, env: Option<&str>) -> Result<usize, EngineError> {
    let cap = nofile.clamp(1, 1 << 20) as usize;
    match env {
        None => Ok(cap),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n.min(cap)),
            _ => Err(EngineError::Config(format!(
                "invalid {RING_SLOTS_ENV}=\"{v}\": give a positive number of direct descriptors per ring, e.g. {RING_SLOTS_ENV}=1000, or unset it"
            ))),
        },
    }
}

/// Runs the load described by `config` until it ends or `stop` becomes true.
pub fn run(config: &RunConfig, stop: Arc<AtomicBool>) -> Result<RunOutcome, EngineError> {
    run_observed(config, stop, |_| {})
}

/// Like [`run`], and calls `observe` on the calling thread with every completed interval, in
/// order, while the workers run (live progress, time series, interval logs).
pub fn run_observed(
    config: &RunConfig,
    stop: Arc<AtomicBool>,
    mut observe: impl FnMut(&IntervalPoint),
) -> Result<RunOutcome, EngineError> {
    let ring_slots = ring_slots(
        ring::raise_nofile_limit(),
        std::env::var(RING_SLOTS_ENV).ok().as_deref(),
    )?;
    let config = Arc::new(config.clone());
    let threads = config.threads;
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let clock = Clock::new();
    // Give workers a moment to set up their rings before the schedule starts.
    let start_ns = clock.now_ns() + 5_000_000;
    let end_ns = config
        .stop
        .duration
        .map_or(u64::MAX, |d| start_ns + d.as_nanos() as u64);
    let interval_ns = (config.report_interval.as_nanos() as u64).max(1_000_000);
    let mut memory = MemoryUse {
        rss_start_bytes: rss_bytes(),
        ..MemoryUse::default()
    };
    let (tx, rx) = mpsc::channel::<IntervalSnapshot>();

    let mut handles = Vec::with_capacity(threads);
    let mut first_connection = 0;
    for index in 0..threads {
        let connections = config.connections_for_worker(index);
        let plan = WorkerPlan {
            connections,
            first_connection,
            start_ns,
            end_ns,
            request_limit: config
                .stop
                .requests
                .map_or(u64::MAX, |n| share(n as usize, threads, index) as u64),
            interval_ns,
            ring_slots,
        };
        first_connection += connections;
        let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        let (config, stop, tx) = (Arc::clone(&config), Arc::clone(&stop), tx.clone());
        let handle = std::thread::Builder::new()
            .name(format!("blaster-worker-{index}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                worker::Worker::new(index, config, clock, stop.clone(), plan, Some(tx))
                    .inspect_err(|_| stop.store(true, std::sync::atomic::Ordering::Relaxed))?
                    .run()
                    .inspect_err(|_| stop.store(true, std::sync::atomic::Ordering::Relaxed))
            })
            .map_err(|e| {
                EngineError::Io(std::io::Error::other(format!(
                    "could not start a worker thread: {e}"
                )))
            })?;
        handles.push(handle);
    }

    // Observe until every worker hung up its end of the channel (they do when they return).
    drop(tx);
    let mut aggregator = Aggregator::new(threads, start_ns, interval_ns);
    let mut timeseries = Vec::new();
    for snapshot in rx.iter() {
        for point in aggregator.push(snapshot) {
            memory.sample(point.open_connections);
            observe(&point);
            timeseries.push(TimePoint::from_interval(&point));
        }
    }
    for point in aggregator.finish() {
        observe(&point);
        timeseries.push(TimePoint::from_interval(&point));
    }

    let mut merged = WorkerMetrics::new();
    let mut first_error = None;
    for (index, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(Ok(m)) => merged.merge(&m),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(EngineError::Panicked(index));
            }
        }
    }
    // The load phase ends when the last worker finished draining; a worker that stopped on an
    // error leaves ended_ns at 0, so fall back to now.
    let end = if merged.ended_ns > start_ns {
        merged.ended_ns
    } else {
        clock.now_ns()
    };
    if let Some(e) = first_error {
        return Err(e);
    }
    if merged.closing_at_exit > 0 {
        eprintln!(
            "blaster: {} connections were still closing when the run ended; the kernel finishes closing them",
            merged.closing_at_exit
        );
    }
    Ok(RunOutcome {
        duration: Duration::from_nanos(end.saturating_sub(start_ns)),
        cpu_user: Duration::from_nanos(merged.cpu_user_ns),
        cpu_system: Duration::from_nanos(merged.cpu_system_ns),
        metrics: merged,
        timeseries,
        threads,
        interrupted: stop.load(std::sync::atomic::Ordering::Relaxed),
        memory,
    })
}

/// CPU time so far of `who` (`RUSAGE_SELF` or `RUSAGE_THREAD`): (user, system).
pub fn rusage(who: libc::c_int) -> (Duration, Duration) {
    // SAFETY: a zeroed rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes only into the struct we own.
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

#[cfg(test)]
mod tests;
