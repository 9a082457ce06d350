//! `--hdr-log`: per-interval latency histograms in HdrHistogram's interval log format, so
//! HdrHistogram's own tools (HistogramLogProcessor, HdrHistogramVisualizer) and a later
//! `blaster merge` can read them.
//!
//! Intervals are written as they complete (a long run's per-interval histograms are too big to
//! keep), and the file is flushed after each, so an interrupted run leaves a valid log of the
//! intervals it finished.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;

use crate::metrics::interval::IntervalPoint;

/// An open interval log.
pub struct HdrLog {
    path: PathBuf,
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
}

impl HdrLog {
    /// Creates the file and writes the log's header (start time, units).
    pub fn create(path: &Path, started: SystemTime) -> anyhow::Result<HdrLog> {
        let file = File::create(path).map_err(|e| {
            anyhow::anyhow!("cannot create the --hdr-log file {}: {e}; check the directory exists and is writable", path.display())
        })?;
        let mut log = HdrLog {
            path: path.to_owned(),
            out: BufWriter::new(file),
            serializer: V2DeflateSerializer::new(),
        };
        let header = IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "blaster {} request latency, microseconds",
                env!("CARGO_PKG_VERSION")
            ))
            .with_start_time(started)
            .with_base_time(started)
            .begin_log_with(&mut log.out, &mut log.serializer)
            .map(drop);
        header
            .and_then(|()| log.out.flush())
            .map_err(|e| log.error(e))?;
        Ok(log)
    }

    /// Appends one interval (timestamps relative to the start time in the header).
    pub fn write(&mut self, p: &IntervalPoint) -> anyhow::Result<()> {
        let start = Duration::from_nanos(p.start_ns);
        let duration = Duration::from_nanos(p.end_ns.saturating_sub(p.start_ns));
        let mut writer = IntervalLogWriterBuilder::new()
            .begin_log_with(&mut self.out, &mut self.serializer)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot write the --hdr-log file {}: {e}",
                    self.path.display()
                )
            })?;
        writer
            .write_histogram(&p.latency, start, duration, None)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot write the --hdr-log file {}: {e:?}",
                    self.path.display()
                )
            })?;
        self.out.flush().map_err(|e| self.error(e))
    }

    fn error(&self, e: std::io::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot write the --hdr-log file {}: {e}",
            self.path.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::interval::Counters;
    use crate::metrics::new_histogram;
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn intervals_read_back_with_hdrhistogram_s_parser() {
        let path = std::env::temp_dir().join(format!("blaster-hdrlog-{}.hlog", std::process::id()));
        let mut log = HdrLog::create(&path, SystemTime::now()).unwrap();
        for i in 0..3u64 {
            let mut latency = new_histogram();
            for v in 1..=(i + 1) * 10 {
                latency.record(v * 100).unwrap();
            }
            log.write(&IntervalPoint {
                index: i,
                start_ns: i * 1_000_000_000,
                end_ns: (i + 1) * 1_000_000_000,
                counters: Counters::default(),
                open_connections: 0,
                latency,
                ..IntervalPoint::empty(0, 0, 0)
            })
            .unwrap();
        }
        drop(log);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).ok();
        let mut counts = Vec::new();
        let mut starts = Vec::new();
        for entry in IntervalLogIterator::new(&bytes) {
            if let LogEntry::Interval(h) = entry.unwrap() {
                let decoded = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    h.encoded_histogram(),
                )
                .unwrap();
                let hist: hdrhistogram::Histogram<u64> = Deserializer::new()
                    .deserialize(&mut decoded.as_slice())
                    .unwrap();
                counts.push(hist.len());
                starts.push(h.start_timestamp().as_secs());
            }
        }
        assert_eq!(counts, vec![10, 20, 30]);
        assert_eq!(starts, vec![0, 1, 2]);
    }
}
