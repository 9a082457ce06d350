//! `--prometheus-listen`: serves `/metrics` (Prometheus text format) during a run.
//!
//! The registry is updated by the engine's observer once per interval, from the merged
//! interval snapshot, never by the workers; so the counters equal the report's totals once the
//! last interval is in. Scrapes are answered by a [`super::endpoint::Endpoint`].
//!
//! Scenario runs add per-request-name families labelled with the step's static tags
//! (`scenario`, `name`, `group`, `method`, `flow`, file tags) and its `kind`; WebSocket runs
//! add the `blaster_ws_*` families. Both come from the same interval points (their per-step
//! and WebSocket parts).

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// The labels of one request name's series: its static tags and `kind` (label sets differ
/// between names when their tags do, which Prometheus allows).
pub type NameLabels = Vec<(String, String)>;

/// Latency buckets of every histogram: 50 µs x 2^n, up to about 52 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 21))
}

/// The labels of every step of `plan`, by step id (`None`: ws_close steps, which take no
/// samples). Tag keys that are not valid Prometheus label names get `_` for the offending
/// characters; `kind` and `error` are reserved for blaster's own labels.
pub fn step_labels(plan: &crate::engine::vu::plan::Plan) -> Vec<Option<NameLabels>> {
    use crate::engine::vu::plan::StepClass;
    plan.steps
        .iter()
        .map(|st| {
            (st.class != StepClass::WsClose).then(|| {
                let mut labels: NameLabels = st
                    .tags
                    .iter()
                    .map(|(k, v)| (label_name(k), v.clone()))
                    .filter(|(k, _)| k != "kind" && k != "error")
                    .collect();
                labels.push(("kind".to_owned(), st.class.name().to_owned()));
                labels.sort();
                labels.dedup_by(|a, b| a.0 == b.0);
                labels
            })
        })
        .collect()
}

/// `key` as a Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
fn label_name(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) || out.starts_with("__") {
        out.insert_str(0, "tag_");
    }
    out
}

/// Replays a µs histogram into a Prometheus histogram (it has no "observe n times"). Runs on
/// the observer thread, once per interval, and only with --prometheus-listen.
fn replay(into: &Histogram, h: &hdrhistogram::Histogram<u64>) {
    for v in h.iter_recorded() {
        let seconds = v.value_iterated_to() as f64 / 1e6;
        for _ in 0..v.count_at_value() {
            into.observe(seconds);
        }
    }
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
    name_requests: Family<NameLabels, Counter>,
    name_failures: Family<NameLabels, Counter>,
    name_errors: Family<NameLabels, Counter>,
    name_duration: Family<NameLabels, Histogram, fn() -> Histogram>,
    ws_messages_sent: Counter,
    ws_messages_received: Counter,
    ws_messages_lost: Counter,
    ws_handshakes: Family<ResultLabel, Counter>,
    ws_reconnects: Counter,
    ws_open_sessions: Gauge,
    ws_message_latency: Histogram,
}

/// A running `/metrics` endpoint; stops serving when dropped.
pub struct Exporter {
    metrics: Arc<Metrics>,
    /// Per step id, the labels of its request name (scenario runs; empty otherwise).
    steps: Vec<Option<NameLabels>>,
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
            duration: latency_histogram(),
            interval_latency: Family::default(),
            name_requests: Family::default(),
            name_failures: Family::default(),
            name_errors: Family::default(),
            name_duration: Family::new_with_constructor(latency_histogram),
            ws_messages_sent: Counter::default(),
            ws_messages_received: Counter::default(),
            ws_messages_lost: Counter::default(),
            ws_handshakes: Family::default(),
            ws_reconnects: Counter::default(),
            ws_open_sessions: Gauge::default(),
            ws_message_latency: latency_histogram(),
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
        registry.register(
            "name_requests",
            "Scenario runs: samples per request name (requests, handshakes, messages)",
            m.name_requests.clone(),
        );
        registry.register(
            "name_failures",
            "Scenario runs: failed samples per request name",
            m.name_failures.clone(),
        );
        registry.register(
            "name_errors",
            "Scenario runs: failed samples per request name, by error kind",
            m.name_errors.clone(),
        );
        registry.register(
            "name_duration_seconds",
            "Scenario runs: request duration, handshake or message latency per request name",
            m.name_duration.clone(),
        );
        registry.register(
            "ws_messages_sent",
            "WebSocket messages sent",
            m.ws_messages_sent.clone(),
        );
        registry.register(
            "ws_messages_received",
            "WebSocket messages received",
            m.ws_messages_received.clone(),
        );
        registry.register(
            "ws_messages_lost",
            "WebSocket messages lost (sequence gaps)",
            m.ws_messages_lost.clone(),
        );
        registry.register(
            "ws_handshakes",
            "WebSocket handshakes, by result (ok, failed)",
            m.ws_handshakes.clone(),
        );
        registry.register(
            "ws_reconnects",
            "WebSocket sessions opened again after a drop",
            m.ws_reconnects.clone(),
        );
        registry.register(
            "ws_open_sessions",
            "WebSocket sessions open now",
            m.ws_open_sessions.clone(),
        );
        registry.register(
            "ws_message_latency_seconds",
            "WebSocket message latency (echo round trip, pub/sub delivery, ws_expect)",
            m.ws_message_latency.clone(),
        );
        for result in ["ok", "failed"] {
            // Both series exist from the start, so a rate of failures is 0 rather than absent.
            m.ws_handshakes
                .get_or_create(&ResultLabel {
                    result: result.to_owned(),
                })
                .inc_by(0);
        }
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
            steps: Vec::new(),
            registry,
            endpoint,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.endpoint.addr()
    }

    /// Labels the per-name series of a scenario run: `labels[step id]` (see [`step_labels`]).
    pub fn label_steps(&mut self, labels: Vec<Option<NameLabels>>) {
        self.steps = labels;
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
        replay(&m.duration, &p.latency);
        for (&id, st) in &p.steps {
            let Some(Some(labels)) = self.steps.get(id as usize) else {
                continue;
            };
            m.name_requests.get_or_create(labels).inc_by(st.count);
            m.name_failures.get_or_create(labels).inc_by(st.failed);
            for (kind, &n) in &st.errors {
                let mut with_kind = labels.clone();
                with_kind.push(("error".to_owned(), (*kind).to_owned()));
                m.name_errors.get_or_create(&with_kind).inc_by(n);
            }
            replay(&m.name_duration.get_or_create(labels), &st.latency);
        }
        if let Some(ws) = &p.ws {
            m.ws_messages_sent.inc_by(ws.msgs_sent);
            m.ws_messages_received.inc_by(ws.msgs_received);
            m.ws_messages_lost.inc_by(ws.lost);
            for (result, n) in [("ok", ws.handshakes_ok), ("failed", ws.handshakes_failed)] {
                m.ws_handshakes
                    .get_or_create(&ResultLabel {
                        result: result.to_owned(),
                    })
                    .inc_by(n);
            }
            m.ws_reconnects.inc_by(ws.reconnects);
            m.ws_open_sessions.set(ws.open_sessions as i64);
            replay(&m.ws_message_latency, &ws.msg_latency);
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
    use std::collections::BTreeMap;
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
    fn per_name_and_websocket_series_are_labelled_and_add_up() {
        use crate::metrics::interval::{StepInterval, WsInterval};
        let mut exporter = Exporter::start("127.0.0.1:0".parse().unwrap()).unwrap();
        let labels = |name: &str| {
            vec![
                ("kind".to_owned(), "http".to_owned()),
                ("name".to_owned(), name.to_owned()),
                ("scenario".to_owned(), "s".to_owned()),
            ]
        };
        exporter.label_steps(vec![Some(labels("home")), None, Some(labels("home"))]);
        let mut p = point();
        let mut latency = new_histogram();
        latency.record(1_000).unwrap();
        p.steps.insert(
            0,
            StepInterval {
                count: 3,
                failed: 1,
                errors: [("timeout", 1)].into(),
                latency: latency.clone(),
            },
        );
        p.steps.insert(
            2,
            StepInterval {
                count: 2,
                failed: 0,
                errors: BTreeMap::new(),
                latency: latency.clone(),
            },
        );
        p.ws = Some(WsInterval {
            msgs_sent: 7,
            msgs_received: 6,
            lost: 1,
            handshakes_ok: 2,
            handshakes_failed: 1,
            reconnects: 1,
            open_sessions: 2,
            msg_latency: latency,
        });
        exporter.record(&p);
        exporter.record(&p);
        let text = exporter.render();
        let home = r#"{kind="http",name="home",scenario="s"}"#;
        for line in [
            format!("blaster_name_requests_total{home} 10"),
            format!("blaster_name_failures_total{home} 2"),
            r#"blaster_name_errors_total{kind="http",name="home",scenario="s",error="timeout"} 2"#
                .to_owned(),
            format!("blaster_name_duration_seconds_count{home} 4"),
            "blaster_ws_messages_sent_total 14".to_owned(),
            "blaster_ws_messages_received_total 12".to_owned(),
            "blaster_ws_messages_lost_total 2".to_owned(),
            r#"blaster_ws_handshakes_total{result="ok"} 4"#.to_owned(),
            r#"blaster_ws_handshakes_total{result="failed"} 2"#.to_owned(),
            "blaster_ws_reconnects_total 2".to_owned(),
            "blaster_ws_open_sessions 2".to_owned(),
            "blaster_ws_message_latency_seconds_count 2".to_owned(),
        ] {
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn tag_keys_become_valid_label_names() {
        assert_eq!(label_name("team"), "team");
        assert_eq!(label_name("api.version"), "api_version");
        assert_eq!(label_name("1st"), "tag_1st");
        assert_eq!(label_name("__x"), "tag___x");
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
