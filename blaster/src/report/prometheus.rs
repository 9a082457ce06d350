//! `--prometheus-listen`: serves `/metrics` (Prometheus text format) during a run.
//!
//! The registry is updated by the engine's observer once per interval, from the merged
//! interval snapshot, never by the workers; so the counters equal the report's totals once the
//! last interval is in. Scrapes are answered by a [`super::endpoint::Endpoint`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::endpoint::{Endpoint, Render};
use crate::metrics::ErrorKind;
use crate::metrics::interval::IntervalPoint;

/// Default address of `--prometheus-listen` with no value: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabel {
    quantile: String,
}

/// The run's metrics, as Prometheus sees them.
struct Metrics {
    requests: Counter,
    responses: Family<StatusLabel, Counter>,
    errors: Family<KindLabel, Counter>,
    bytes_sent: Counter,
    bytes_received: Counter,
    connections_opened: Counter,
    connect_failures: Counter,
    late: Counter,
    open_connections: Gauge,
    duration: Histogram,
    interval_latency: Family<QuantileLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

/// A running `/metrics` endpoint; stops serving when dropped.
pub struct Exporter {
    metrics: Arc<Metrics>,
    registry: Arc<Mutex<Registry>>,
    endpoint: Endpoint,
}

impl Exporter {
    /// Binds `addr` and starts answering scrapes.
    pub fn start(addr: SocketAddr) -> anyhow::Result<Exporter> {
        let metrics = Arc::new(Metrics {
            requests: Counter::default(),
            responses: Family::default(),
            errors: Family::default(),
            bytes_sent: Counter::default(),
            bytes_received: Counter::default(),
            connections_opened: Counter::default(),
            connect_failures: Counter::default(),
            late: Counter::default(),
            open_connections: Gauge::default(),
            // 50 µs to about 52 s.
            duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 21)),
            interval_latency: Family::default(),
        });
        let mut registry = Registry::with_prefix("blaster");
        let m = &metrics;
        registry.register("requests", "Requests sent", m.requests.clone());
        registry.register(
            "responses",
            "Responses received, by status code",
            m.responses.clone(),
        );
        registry.register(
            "errors",
            "Errors, by kind (same names as the JSON report)",
            m.errors.clone(),
        );
        registry.register("bytes_sent", "Bytes sent", m.bytes_sent.clone());
        registry.register("bytes_received", "Bytes received", m.bytes_received.clone());
        registry.register(
            "connections_opened",
            "Connections established",
            m.connections_opened.clone(),
        );
        registry.register(
            "connect_failures",
            "Connection attempts that failed",
            m.connect_failures.clone(),
        );
        registry.register(
            "late",
            "Open model: sends later than --late-after",
            m.late.clone(),
        );
        registry.register(
            "open_connections",
            "Connections open now",
            m.open_connections.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request latency (from the intended send time in the open model)",
            m.duration.clone(),
        );
        registry.register(
            "interval_latency_seconds",
            "Exact latency quantiles of the last interval (HdrHistogram)",
            m.interval_latency.clone(),
        );
        let registry = Arc::new(Mutex::new(registry));
        let render: Render = {
            let registry = Arc::clone(&registry);
            Arc::new(move || encode(&registry))
        };
        let endpoint = Endpoint::start(
            addr,
            "/metrics",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "--prometheus-listen",
            render,
        )?;
        Ok(Exporter {
            metrics,
            registry,
            endpoint,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr()
    }

    /// Adds one finished interval.
    pub fn record(&self, p: &IntervalPoint) {
        let m = &self.metrics;
        let c = &p.counters;
        m.requests.inc_by(c.requests);
        for (code, &n) in c.status.iter().enumerate().filter(|&(_, &n)| n > 0) {
            m.responses
                .get_or_create(&StatusLabel {
                    status: code.to_string(),
                })
                .inc_by(n);
        }
        for kind in ErrorKind::ALL {
            let n = c.errors[kind as usize];
            if n > 0 {
                m.errors
                    .get_or_create(&KindLabel {
                        kind: kind.as_str().to_owned(),
                    })
                    .inc_by(n);
            }
        }
        m.bytes_sent.inc_by(c.bytes_sent);
        m.bytes_received.inc_by(c.bytes_received);
        m.connections_opened.inc_by(c.conns_opened);
        m.connect_failures.inc_by(c.conns_failed);
        m.late.inc_by(c.late);
        m.open_connections.set(p.open_connections as i64);
        // The histogram has no "observe n times": replay the interval's recorded values. This
        // runs on the observer thread, once per interval, and only with --prometheus-listen.
        for v in p.latency.iter_recorded() {
            let seconds = v.value_iterated_to() as f64 / 1e6;
            for _ in 0..v.count_at_value() {
                m.duration.observe(seconds);
            }
        }
        if !p.latency.is_empty() {
            for (q, label) in [
                (0.5, "0.5"),
                (0.9, "0.9"),
                (0.99, "0.99"),
                (0.999, "0.999"),
                (1.0, "1"),
            ] {
                m.interval_latency
                    .get_or_create(&QuantileLabel {
                        quantile: label.to_owned(),
                    })
                    .set(p.latency.value_at_quantile(q) as f64 / 1e6);
            }
        }
    }

    /// The current exposition text (what a scrape returns).
    pub fn render(&self) -> String {
        encode(&self.registry)
    }
}

fn encode(registry: &Mutex<Registry>) -> String {
    let mut out = String::new();
    let registry = registry.lock().unwrap_or_else(|e| e.into_inner());
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::interval::Counters;
    use crate::metrics::new_histogram;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    fn point() -> IntervalPoint {
        let mut latency = new_histogram();
        for v in [500, 1_000, 2_000] {
            latency.record(v).unwrap();
        }
        let mut status = vec![0; 1000];
        status[200] = 2;
        status[503] = 1;
        let mut errors = [0; ErrorKind::ALL.len()];
        errors[ErrorKind::Timeout as usize] = 4;
        IntervalPoint {
            index: 0,
            start_ns: 0,
            end_ns: 1_000_000_000,
            counters: Counters {
                requests: 7,
                responses: 3,
                status,
                errors,
                ..Counters::default()
            },
            open_connections: 5,
            latency,
            ..IntervalPoint::empty(0, 0, 0)
        }
    }

    #[test]
    fn intervals_add_up_and_scrapes_see_them() {
        let exporter = Exporter::start("127.0.0.1:0".parse().unwrap()).unwrap();
        exporter.record(&point());
        exporter.record(&point());
        let mut s = TcpStream::connect(exporter.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.contains("blaster_requests_total 14"), "{text}");
        assert!(
            text.contains("blaster_responses_total{status=\"200\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("blaster_responses_total{status=\"503\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("blaster_errors_total{kind=\"timeout\"} 8"),
            "{text}"
        );
        assert!(text.contains("blaster_open_connections 5"), "{text}");
        assert!(
            text.contains("blaster_request_duration_seconds_count 6"),
            "{text}"
        );
        assert!(
            text.contains("blaster_interval_latency_seconds{quantile=\"0.5\"}"),
            "{text}"
        );
    }

    #[test]
    fn other_paths_are_404() {
        let exporter = Exporter::start("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut s = TcpStream::connect(exporter.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    }

    #[test]
    fn a_busy_address_is_explained() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let err = Exporter::start(taken.local_addr().unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--prometheus-listen 127.0.0.1:0"), "{err}");
    }
}
