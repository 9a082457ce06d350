//! The report's `kernel` object: what the eBPF probe on the target host saw during the run
//! (`blaster run --probe URL`), beside the client's latency.
//!
//! The run reads the probe's snapshot when the load starts and when it ends
//! ([`crate::probe::remote`]); [`KernelReport::from_snapshots`] keeps the difference for
//! the target's port. Per request, the client's mean latency splits into the time the
//! request waited in the target's receive queue (kernel) and the rest (the application,
//! plus the network and the client). The connection costs (handshake, accept queue) are
//! per connection, shown beside the client's connect time: the first request of a
//! connection that arrives before the accept also waits in the receive queue, so adding
//! the accept-queue wait to the per-request split would count it twice.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{LatencySummary, Report};
use crate::cli::units::{format_duration_us, format_thousands};
use crate::probe::{LatencyHist, ProbeSnapshot};

/// What the probe on the target host measured during the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelReport {
    /// The probe's snapshot URL.
    pub probe_url: String,
    /// The watched port these numbers are for.
    pub port: u16,
    /// Time between the two snapshots, seconds.
    pub window_s: f64,
    /// Connections to the port that became established (passive opens).
    pub connections: u64,
    /// Server side: SYN received to established (the SYN-ACK's and the ACK's trips), from
    /// the probe's `sock_ops` program (empty when it is not attached).
    pub server_handshake_us: KernelLatency,
    /// `connect()` to established, for connections made from the probe's host (empty
    /// otherwise).
    pub handshake_us: KernelLatency,
    /// Established until the application accepted it.
    pub accept_queue_us: KernelLatency,
    /// Data ready in the receive queue until the application read it.
    pub recv_queue_us: KernelLatency,
    /// Share of the window the per-read programs were attached (1: all the time; less
    /// with `blaster probe --recv-sample`, when `recv_queue_us` and `srtt_us` are samples).
    #[serde(default = "one")]
    pub recv_sampled_share: f64,
    /// Smoothed RTT, sampled at one in 16 reads that took data.
    pub srtt_us: KernelLatency,
    pub retransmits: u64,
    pub synack_retransmits: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
    /// Dropped TCP packets of the port, and by the kernel's drop reason.
    pub drops: u64,
    pub drops_by_reason: BTreeMap<String, u64>,
    /// Growth of the host's ListenOverflows / ListenDrops (every port).
    pub listen_overflows: u64,
    pub listen_drops: u64,
    /// The client's mean request latency split into the kernel's receive-queue share and
    /// the remainder.
    pub latency_split_us: LatencySplit,
    /// Probe parts that did not work on the target's kernel (their numbers stay 0).
    pub unavailable: Vec<String>,
}

/// Serde default of [`KernelReport::recv_sampled_share`] (reports written before it).
fn one() -> f64 {
    1.0
}

/// A kernel histogram in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelLatency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl KernelLatency {
    fn from_hist(h: &LatencyHist) -> KernelLatency {
        let us = |ns: u64| ns as f64 / 1e3;
        KernelLatency {
            count: h.count,
            mean: if h.count > 0 {
                h.sum_ns as f64 / h.count as f64 / 1e3
            } else {
                0.0
            },
            p50: us(h.p50_ns),
            p90: us(h.p90_ns),
            p99: us(h.p99_ns),
            max: us(h.max_ns),
        }
    }
}

/// The client's mean latency per request, split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySplit {
    /// The client's mean request latency.
    pub client: f64,
    /// Receive-queue wait per response: the total wait over the responses.
    pub recv_queue: f64,
    /// `client - recv_queue` (not below 0): the application, the network and the client.
    pub application: f64,
}

impl KernelReport {
    /// The run's share of what the probe saw: `end - start` for `port`, beside the
    /// client's `latency` over `responses`. Fails when the port is not watched or the
    /// snapshots do not belong together.
    pub fn from_snapshots(
        probe_url: &str,
        start: &ProbeSnapshot,
        end: &ProbeSnapshot,
        port: u16,
        latency: &LatencySummary,
        responses: u64,
    ) -> Result<KernelReport, String> {
        let delta = end.since(start)?;
        let p = delta.port(port).ok_or_else(|| {
            let watched: Vec<u16> = delta.ports.iter().map(|p| p.port).collect();
            format!(
                "the probe at {probe_url} watches port(s) {watched:?}, not the target's port {port}: \
                 restart it with `blaster probe --port {port} --listen ...`"
            )
        })?;
        let recv_queue = if responses > 0 {
            p.recv_queue_wait.sum_ns as f64 / responses as f64 / 1e3
        } else {
            0.0
        };
        Ok(KernelReport {
            probe_url: probe_url.to_string(),
            port,
            window_s: delta.elapsed_ms as f64 / 1e3,
            connections: p.connections,
            server_handshake_us: KernelLatency::from_hist(&p.server_handshake),
            handshake_us: KernelLatency::from_hist(&p.handshake),
            accept_queue_us: KernelLatency::from_hist(&p.accept_wait),
            recv_queue_us: KernelLatency::from_hist(&p.recv_queue_wait),
            recv_sampled_share: if delta.elapsed_ms > 0 {
                (delta.recv_attached_ms as f64 / delta.elapsed_ms as f64).min(1.0)
            } else {
                1.0
            },
            srtt_us: KernelLatency::from_hist(&p.srtt),
            retransmits: p.retransmits,
            synack_retransmits: p.synack_retransmits,
            resets_sent: p.resets_sent,
            resets_received: p.resets_received,
            drops: p.drops,
            drops_by_reason: p
                .drops_by_reason
                .iter()
                .map(|d| {
                    let name = if d.name.is_empty() {
                        format!("reason {}", d.reason)
                    } else {
                        d.name.clone()
                    };
                    (name, d.count)
                })
                .collect(),
            listen_overflows: delta.listen_overflows,
            listen_drops: delta.listen_drops,
            latency_split_us: LatencySplit {
                client: latency.mean,
                recv_queue,
                application: (latency.mean - recv_queue).max(0.0),
            },
            unavailable: delta.unavailable.clone(),
        })
    }
}

/// The port of the first target the probe watches, else the probe's only port (a target
/// behind a port mapping), else `None`.
pub fn pick_port(targets: &[u16], snapshot: &ProbeSnapshot) -> Option<u16> {
    let only = match snapshot.ports.as_slice() {
        [only] => Some(only.port),
        _ => None,
    };
    targets
        .iter()
        .copied()
        .find(|&t| snapshot.port(t).is_some())
        .or(only)
}

/// The text report's kernel lines (after the client's), each starting with two spaces and
/// a 14-column label like the rest of the summary.
pub fn render_text(r: &Report, k: &KernelReport, out: &mut String) {
    let us = |v: f64| format_duration_us(v.round() as u64);
    let line = |out: &mut String, label: &str, body: &str| {
        let _ = writeln!(out, "  {label:<14}{body}");
    };
    line(
        out,
        "kernel",
        &format!(
            "probe {}  port {}  {} connections in {:.1}s",
            k.probe_url,
            k.port,
            format_thousands(k.connections),
            k.window_s
        ),
    );
    let s = &k.latency_split_us;
    if s.client > 0.0 {
        let pct = |v: f64| v / s.client * 100.0;
        // WebSocket runs split the message latency, or in hold mode the handshake.
        let per = match r.ws.as_ref().filter(|_| r.model == "ws") {
            Some(ws) if ws.mode == "hold" => "per handshake",
            Some(_) => "per message",
            None => "per request",
        };
        line(
            out,
            per,
            &format!(
                "latency mean {} = receive queue {} ({:.0}%) + application, network, client {} ({:.0}%)",
                us(s.client),
                us(s.recv_queue),
                pct(s.recv_queue),
                us(s.application),
                pct(s.application),
            ),
        );
    }
    let pcts = |h: &KernelLatency| {
        if h.count == 0 {
            "not seen".to_string()
        } else {
            format!("p50 {}  p99 {}  max {}", us(h.p50), us(h.p99), us(h.max))
        }
    };
    if k.recv_sampled_share > 0.0 && k.recv_sampled_share < 0.999 {
        let mut p = pcts(&k.recv_queue_us);
        p.push_str(&format!(
            "  (sampled: {:.0}% of the time)",
            k.recv_sampled_share * 100.0
        ));
        line(out, "recv queue", &p);
    } else {
        line(out, "recv queue", &pcts(&k.recv_queue_us));
    }
    line(out, "accept queue", &pcts(&k.accept_queue_us));
    // The server's SYN-to-established beside the client's connect; connects made from the
    // probe's own host (a local client) when there are any.
    let mut conn = pcts(&k.server_handshake_us);
    if r.connect_latency_us.count > 0 {
        let _ = write!(
            conn,
            "  (client connect p50 {})",
            format_duration_us(r.connect_latency_us.p50)
        );
    }
    if k.handshake_us.count > 0 {
        let _ = write!(conn, "  local connects p50 {}", us(k.handshake_us.p50));
    }
    line(out, "handshake", &conn);
    line(
        out,
        "tcp",
        &format!(
            "srtt p50 {}  retransmits {} (SYN-ACK {})  resets sent {} received {}  listen overflows {} drops {}",
            if k.srtt_us.count > 0 {
                us(k.srtt_us.p50)
            } else {
                "-".to_string()
            },
            format_thousands(k.retransmits),
            format_thousands(k.synack_retransmits),
            format_thousands(k.resets_sent),
            format_thousands(k.resets_received),
            format_thousands(k.listen_overflows),
            format_thousands(k.listen_drops),
        ),
    );
    if k.drops > 0 {
        let mut reasons: Vec<(&String, &u64)> = k.drops_by_reason.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let list: Vec<String> = reasons
            .iter()
            .map(|(name, n)| format!("{name} {}", format_thousands(**n)))
            .collect();
        line(
            out,
            "drops",
            &format!("{} packets: {}", format_thousands(k.drops), list.join(", ")),
        );
    }
    for u in &k.unavailable {
        line(out, "", &format!("! not measured: {u}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{DropCount, PortProbe};

    fn hist(values_ns: &[u64]) -> LatencyHist {
        let mut h = blaster_common::Histogram::ZERO;
        for &v in values_ns {
            h.record(v);
        }
        LatencyHist::from_hist(&h)
    }

    #[test]
    fn kernel_report_is_the_difference_for_the_target_port() {
        let start = ProbeSnapshot {
            elapsed_ms: 500,
            ports: vec![PortProbe {
                port: 8080,
                connections: 3,
                recv_queue_wait: hist(&[5_000_000]),
                ..Default::default()
            }],
            ..Default::default()
        };
        let end = ProbeSnapshot {
            elapsed_ms: 2500,
            listen_overflows: 4,
            ports: vec![PortProbe {
                port: 8080,
                connections: 13,
                // The run added 100 µs, 300 µs waits to the earlier 5 ms one.
                recv_queue_wait: hist(&[5_000_000, 100_000, 300_000]),
                accept_wait: hist(&[50_000]),
                server_handshake: hist(&[20_000_000, 21_000_000]),
                drops: 2,
                drops_by_reason: vec![DropCount {
                    reason: 3,
                    name: "NO_SOCKET".into(),
                    count: 2,
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let latency = LatencySummary {
            count: 4,
            mean: 1000.0,
            ..Default::default()
        };
        let k =
            KernelReport::from_snapshots("http://p:9465/snapshot", &start, &end, 8080, &latency, 4)
                .unwrap();
        assert_eq!(k.connections, 10);
        assert_eq!(k.window_s, 2.0);
        assert_eq!(k.recv_queue_us.count, 2);
        assert_eq!(k.recv_queue_us.mean, 200.0);
        // 400 µs of waiting over 4 responses.
        assert_eq!(k.latency_split_us.recv_queue, 100.0);
        assert_eq!(k.latency_split_us.application, 900.0);
        assert_eq!(k.accept_queue_us.count, 1);
        assert_eq!(k.server_handshake_us.count, 2);
        assert_eq!(k.server_handshake_us.mean, 20_500.0);
        assert_eq!(k.handshake_us.count, 0);
        assert_eq!(k.drops_by_reason.get("NO_SOCKET"), Some(&2));
        assert_eq!(k.listen_overflows, 4);

        let err = KernelReport::from_snapshots("u", &start, &end, 9999, &latency, 4).unwrap_err();
        assert!(err.contains("--port 9999"), "{err}");
        assert_eq!(pick_port(&[9999, 8080], &end), Some(8080));
        assert_eq!(
            pick_port(&[9999], &end),
            Some(8080),
            "the probe's only port"
        );
    }

    /// The `kernel` object validates against its part of report-schema.json, and every field
    /// is in docs/report-schema.md.
    #[test]
    fn kernel_report_matches_the_schema_and_the_docs() {
        let dir = env!("CARGO_MANIFEST_DIR");
        let schema: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}/report-schema.json")).unwrap(),
        )
        .unwrap();
        let mut sub = schema["properties"]["kernel"].clone();
        sub["$defs"] = schema["$defs"].clone();
        let validator = jsonschema::draft202012::new(&sub).expect("kernel schema compiles");
        let mut k = KernelReport {
            probe_url: "http://127.0.0.1:9465/snapshot".into(),
            port: 8080,
            window_s: 1.5,
            connections: 3,
            ..Default::default()
        };
        k.drops_by_reason.insert("NO_SOCKET".into(), 1);
        k.recv_queue_us = KernelLatency::from_hist(&hist(&[1_000, 2_000]));
        k.server_handshake_us = KernelLatency::from_hist(&hist(&[20_000_000]));
        k.unavailable.push("tcp:tcp_probe: not here".into());
        let value = serde_json::to_value(&k).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}\n{value:#}");
        let mut bad = value.clone();
        bad["surprise"] = 1.into();
        assert!(!validator.is_valid(&bad), "unknown fields are rejected");

        let docs = std::fs::read_to_string(format!("{dir}/../docs/report-schema.md")).unwrap();
        assert!(docs.contains("| `kernel` |"));
        for field in value.as_object().unwrap().keys() {
            assert!(
                docs.contains(&format!("`kernel.{field}`")),
                "`kernel.{field}` missing from docs/report-schema.md"
            );
        }
        for sub in value["latency_split_us"].as_object().unwrap().keys() {
            assert!(
                docs.contains(&format!("`{sub}`")),
                "latency_split_us.{sub} undocumented"
            );
        }
    }
}
