//! The thread-per-core io_uring engine: one pinned worker per CPU, each with its own ring,
//! connections, buffers and metrics; results are merged after the run.

pub mod ring;

use std::time::Duration;

use crate::metrics::WorkerMetrics;

/// What a load run produced, before it is turned into a [`crate::report::Report`].
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// All workers' metrics merged.
    pub metrics: WorkerMetrics,
    /// Wall time of the load phase.
    pub duration: Duration,
    /// Process CPU time spent during the run (getrusage), user and system.
    pub cpu_user: Duration,
    pub cpu_system: Duration,
    /// Worker threads that ran.
    pub threads: usize,
    /// The run was stopped by a signal before it finished.
    pub interrupted: bool,
}
