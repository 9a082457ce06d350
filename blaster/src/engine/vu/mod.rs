//! The virtual-user engine: runs scenario files and the `ws://` quick modes on the same
//! thread-per-core io_uring design as the HTTP engine ([`crate::engine::worker`]).
//!
//! Where the HTTP engine sends one pre-encoded request over and over, a VU runs a program (a
//! flow compiled into [`plan::Op`]s): requests rendered from templates, WebSocket sessions,
//! think time, loops, checks and captures. Each worker owns its share of every scenario's VUs
//! (VU `i` of a scenario belongs to worker `i % T`) and its share of every arrival-rate
//! schedule, so nothing is shared on the hot path but the run-wide counters of the scenario
//! runtime. The results are the same [`RunOutcome`] as an HTTP run (so progress, time series,
//! Prometheus and every report format work unchanged) plus [`FlowMetrics`].

pub mod monitor;
pub mod plan;
pub mod rate;
pub mod watch;
pub mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::clock::Clock;
use super::{EngineError, MemoryUse, RunOutcome, rss_bytes};
use crate::metrics::WorkerMetrics;
use crate::metrics::flow::FlowMetrics;
use crate::metrics::interval::{Aggregator, IntervalPoint, IntervalSnapshot};
use crate::report::TimePoint;
use crate::report::series::{SeriesBuilder, SeriesReport};
use crate::scenario::runtime::Shared;
use plan::Plan;

/// What a VU run produced.
#[derive(Debug, Clone)]
pub struct VuOutcome {
    pub run: RunOutcome,
    pub flow: FlowMetrics,
    /// Per-name time series.
    pub series: SeriesReport,
    /// `on_flow` stopped the run (a threshold with abort_on_fail failed).
    pub aborted: bool,
}

/// Settings of a VU run that are not in the plan.
#[derive(Debug, Clone, Copy)]
pub struct VuOptions<'a> {
    pub threads: usize,
    pub report_interval: Duration,
    pub late_after: Duration,
    /// Connects in flight at once in total (`--max-connecting`; `None`:
    /// [`crate::config::DEFAULT_CONNECTING_PER_WORKER`] per worker).
    pub max_connecting: Option<usize>,
    /// Source addresses to bind before connecting (`--source`), spread over the VUs.
    pub sources: &'a [std::net::IpAddr],
}

/// Runs the plan until every scenario ended or `stop` becomes true; `observe` sees every
/// completed interval on the calling thread. When the plan is `live`, `on_flow` also sees
/// the run's cumulative scenario metrics at the end of every interval (with the time since
/// the start) and stops the run by returning true.
pub fn run_observed(
    plan: Arc<Plan>,
    options: VuOptions<'_>,
    stop: Arc<AtomicBool>,
    mut observe: impl FnMut(&IntervalPoint),
    mut on_flow: impl FnMut(Duration, &FlowMetrics) -> bool,
) -> Result<VuOutcome, EngineError> {
    super::ring::raise_nofile_limit();
    let shared = Arc::new(
        Shared::new(Arc::clone(&plan.file)).map_err(|e| EngineError::Config(e.to_string()))?,
    );
    let threads = options.threads.max(1);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let clock = Clock::new();
    let start_ns = clock.now_ns() + 5_000_000;
    let interval_ns = (options.report_interval.as_nanos() as u64).max(1_000_000);
    let mut memory = MemoryUse {
        rss_start_bytes: rss_bytes(),
        ..MemoryUse::default()
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let (tx, rx) = mpsc::channel::<IntervalSnapshot>();
    let (flow_tx, flow_rx) = mpsc::channel::<worker::FlowSnapshot>();
    let live = plan.live;
    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        let setup = worker::WorkerSetup {
            index,
            threads,
            plan: Arc::clone(&plan),
            shared: Arc::clone(&shared),
            clock,
            stop: Arc::clone(&stop),
            start_ns,
            interval_ns,
            late_after: options.late_after,
            sources: options.sources.to_vec(),
            max_connecting: options
                .max_connecting
                .map_or(crate::config::DEFAULT_CONNECTING_PER_WORKER, |total| {
                    total.div_ceil(threads).max(1)
                }),
            seed: seed ^ (index as u64).wrapping_mul(0x9E37_79B9),
            snapshots: Some(tx.clone()),
            flow_snapshots: live.then(|| flow_tx.clone()),
        };
        let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
        let stop = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name(format!("blaster-vu-{index}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                worker::VuWorker::new(setup)
                    .inspect_err(|_| stop.store(true, Ordering::Relaxed))?
                    .run()
                    .inspect_err(|_| stop.store(true, Ordering::Relaxed))
            })
            .map_err(|e| {
                EngineError::Io(std::io::Error::other(format!(
                    "could not start a worker thread: {e}"
                )))
            })?;
        handles.push(handle);
    }
    drop(tx);
    drop(flow_tx);
    let mut aggregator = Aggregator::new(threads, start_ns, interval_ns);
    let mut timeseries = Vec::new();
    let mut series = SeriesBuilder::new(&plan, interval_ns);
    let mut latest: Vec<Option<(u64, Box<FlowMetrics>)>> = vec![None; threads];
    let mut aborted = false;
    for snapshot in rx.iter() {
        for point in aggregator.push(snapshot) {
            memory.sample(point.open_connections);
            observe(&point);
            timeseries.push(TimePoint::from_interval(&point));
            series.push(&point);
            if !live || aborted {
                continue;
            }
            while let Ok((worker, index, flow)) = flow_rx.try_recv() {
                latest[worker] = Some((index, flow));
            }
            if latest
                .iter()
                .all(|l| l.as_ref().is_some_and(|(i, _)| *i >= point.index))
            {
                let mut merged = FlowMetrics::default();
                for (_, f) in latest.iter().flatten() {
                    merged.merge(f);
                }
                let elapsed = Duration::from_nanos(point.end_ns);
                if on_flow(elapsed, &merged) {
                    aborted = true;
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
    }
    for point in aggregator.finish() {
        observe(&point);
        timeseries.push(TimePoint::from_interval(&point));
        series.push(&point);
    }
    let mut merged = WorkerMetrics::new();
    let mut flow = FlowMetrics::default();
    let mut first_error = None;
    for (index, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(Ok((m, f))) => {
                merged.merge(&m);
                flow.merge(&f);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(EngineError::Panicked(index));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let end = if merged.ended_ns > start_ns {
        merged.ended_ns
    } else {
        clock.now_ns()
    };
    Ok(VuOutcome {
        run: RunOutcome {
            duration: Duration::from_nanos(end.saturating_sub(start_ns)),
            cpu_user: Duration::from_nanos(merged.cpu_user_ns),
            cpu_system: Duration::from_nanos(merged.cpu_system_ns),
            metrics: merged,
            timeseries,
            threads,
            interrupted: stop.load(Ordering::Relaxed) && !aborted,
            memory,
        },
        flow,
        series: series.finish(),
        aborted,
    })
}
