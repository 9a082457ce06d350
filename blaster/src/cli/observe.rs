//! The views a run feeds once per interval, for HTTP URL runs and VU runs alike: live
//! progress, the `--prometheus-listen` endpoint and the `--hdr-log` interval log. All of them
//! read the observer's merged interval points; none touches the workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::RunArgs;
use crate::metrics::interval::IntervalPoint;
use crate::report::hdrlog::HdrLog;
use crate::report::progress::Progress;
use crate::report::prometheus::Exporter;

pub(crate) struct Observers {
    progress: Progress,
    exporter: Option<Exporter>,
    hdr_log: Option<HdrLog>,
    log_failed: bool,
    /// The run's stop flag (Ctrl-C), which also ends [`Observers::linger`].
    stop: Arc<AtomicBool>,
}

impl Observers {
    /// Opens the interval log and starts the exporter that `args` ask for.
    pub(crate) fn start(
        args: &RunArgs,
        progress: Progress,
        stop: Arc<AtomicBool>,
    ) -> Result<Observers> {
        let hdr_log = match &args.hdr_log {
            Some(path) => Some(HdrLog::create(path, std::time::SystemTime::now())?),
            None => None,
        };
        let exporter = match args.prometheus_listen {
            Some(addr) => {
                let exporter = Exporter::start(addr)?;
                if !args.quiet {
                    eprintln!("blaster: metrics at http://{}/metrics", exporter.addr());
                }
                Some(exporter)
            }
            None => None,
        };
        Ok(Observers {
            progress,
            exporter,
            hdr_log,
            log_failed: false,
            stop,
        })
    }

    /// Scenario and `ws://` runs: labels the exporter's per-name series with the plan's steps.
    pub(crate) fn label_steps(&mut self, plan: &crate::engine::vu::plan::Plan) {
        if let Some(exporter) = self.exporter.as_mut() {
            exporter.label_steps(crate::report::prometheus::step_labels(plan));
        }
    }

    /// Feeds one finished interval to every view.
    pub(crate) fn observe(&mut self, point: &IntervalPoint) {
        self.progress.interval(point);
        if let Some(exporter) = &self.exporter {
            exporter.record(point);
        }
        if let Some(log) = self.hdr_log.as_mut()
            && let Err(e) = log.write(point)
            && !self.log_failed
        {
            // Keep the run going; the report still comes at the end.
            eprintln!("blaster: warning: {e:#}");
            self.log_failed = true;
        }
    }

    /// Removes the progress bar before the summary is printed.
    pub(crate) fn finish(&mut self) {
        self.progress.finish();
    }

    /// With an exporter, serves the final values for `--prometheus-linger` more (Ctrl-C ends
    /// the wait).
    pub(crate) fn linger(&self, linger: Duration) {
        if self.exporter.is_none() || linger.is_zero() {
            return;
        }
        let until = Instant::now() + linger;
        while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
