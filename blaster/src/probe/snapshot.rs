//! Plain data read out of the probe's maps: no aya types, serde both ways.

use std::collections::BTreeMap;

use blaster_common::{HIST_BUCKETS, Histogram, bucket_lower, bucket_upper, counter};
use serde::{Deserialize, Serialize};

/// Everything the probe measured, per watched port. Fields added after the first version
/// default to zero/empty when reading an older probe's JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeSnapshot {
    /// How long the probe was attached when this was read, ms.
    pub elapsed_ms: u64,
    /// Of that, how long the per-read programs (receive-queue wait, srtt) were attached:
    /// `elapsed_ms` unless `blaster probe --recv-sample` samples them (then those two
    /// histograms cover this share of the time); 0 when they could not be attached.
    #[serde(default)]
    pub recv_attached_ms: u64,
    /// `TcpExt` ListenOverflows growth since the probe started: connections dropped
    /// because an accept queue was full, on any port of the host's network namespace.
    #[serde(default)]
    pub listen_overflows: u64,
    /// `TcpExt` ListenDrops growth since the probe started (all listener drops, any port).
    #[serde(default)]
    pub listen_drops: u64,
    /// Tracepoints the probe could not attach on this kernel, with why: the numbers they
    /// feed stay zero.
    #[serde(default)]
    pub unavailable: Vec<String>,
    /// One entry per watched port, in port order.
    pub ports: Vec<PortProbe>,
}

impl ProbeSnapshot {
    /// The entry of `port`, if it was watched.
    pub fn port(&self, port: u16) -> Option<&PortProbe> {
        self.ports.iter().find(|p| p.port == port)
    }

    /// What happened between `earlier` and this snapshot of the same probe: counters and
    /// histograms as differences. A port missing from `earlier` counts from zero. Fails
    /// when `earlier` is not an older snapshot of the same running probe.
    pub fn since(&self, earlier: &ProbeSnapshot) -> Result<ProbeSnapshot, String> {
        if earlier.elapsed_ms > self.elapsed_ms {
            return Err(format!(
                "the probe restarted between the two snapshots (it had run {} ms, then {} ms)",
                earlier.elapsed_ms, self.elapsed_ms
            ));
        }
        let empty = PortProbe::default();
        Ok(ProbeSnapshot {
            elapsed_ms: self.elapsed_ms - earlier.elapsed_ms,
            recv_attached_ms: self
                .recv_attached_ms
                .saturating_sub(earlier.recv_attached_ms),
            listen_overflows: self
                .listen_overflows
                .saturating_sub(earlier.listen_overflows),
            listen_drops: self.listen_drops.saturating_sub(earlier.listen_drops),
            unavailable: self.unavailable.clone(),
            ports: self
                .ports
                .iter()
                .map(|p| p.since(earlier.port(p.port).unwrap_or(&empty)))
                .collect(),
        })
    }
}

/// The numbers of one watched port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PortProbe {
    /// The watched (listening) port.
    pub port: u16,
    /// Passive opens: connections to this port that became established.
    pub connections: u64,
    /// Passive opens on this port, server side: the SYN arrived (a request socket was
    /// made) until the connection was established (the final ACK came): the SYN-ACK's and
    /// the ACK's trips, as the server sees them. From the `sock_ops` program; empty when
    /// it is not attached (see `unavailable`).
    pub server_handshake: LatencyHist,
    /// SYNs to this port that got a request socket (`sock_ops`).
    pub syns_received: u64,
    /// Passive opens established whose SYN the `sock_ops` program had not seen (before the
    /// probe started, or evicted from its table).
    pub server_handshake_unmatched: u64,
    /// Active opens to this port, `connect()` (SYN_SENT) to ESTABLISHED: the TCP
    /// handshake as the connecting side sees it.
    pub handshake: LatencyHist,
    /// Passive opens on this port, ESTABLISHED (in the accept queue) to returned by
    /// `accept(2)`/`accept4(2)` or an io_uring accept.
    pub accept_wait: LatencyHist,
    /// Passive opens on this port: data ready on an empty receive queue until a read
    /// took data.
    pub recv_queue_wait: LatencyHist,
    /// Smoothed RTT of passive opens on this port, sampled at one in 16 reads that took data.
    pub srtt: LatencyHist,
    /// Of the accepts, those seen through io_uring completions.
    pub uring_accepts: u64,
    /// Passive opens that closed before they were accepted.
    pub closed_unaccepted: u64,
    /// `tcp:tcp_retransmit_skb` on connections with this port at either end.
    pub retransmits: u64,
    /// `tcp:tcp_retransmit_synack` on this listening port.
    pub synack_retransmits: u64,
    /// `tcp:tcp_send_reset` on connections with this port at either end.
    pub resets_sent: u64,
    /// Of those, by the kernel's reset reason (`enum sk_rst_reason` number, count).
    pub resets_sent_by_reason: Vec<(u32, u64)>,
    /// `tcp:tcp_receive_reset` on connections with this port at either end.
    pub resets_received: u64,
    /// Active opens that closed before they were established (refused, timed out).
    pub connect_failed: u64,
    /// Handshakes that completed but whose SYN the probe did not see (started before it).
    pub handshake_unmatched: u64,
    /// Samples lost because the histogram entry was missing (a probe bug if not 0).
    pub hist_missing: u64,
    /// TCP packets to or from this port the kernel dropped (`skb:kfree_skb`).
    pub drops: u64,
    /// Of those, by the kernel's drop reason, most frequent first.
    pub drops_by_reason: Vec<DropCount>,
}

/// Dropped packets of one reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropCount {
    /// The kernel's `enum skb_drop_reason` number.
    pub reason: u32,
    /// Its name without the `SKB_DROP_REASON_` prefix (from the running kernel's
    /// `skb:kfree_skb` format), or "" when unknown.
    pub name: String,
    pub count: u64,
}

impl PortProbe {
    /// What happened on this port between `earlier` and `self`.
    pub fn since(&self, earlier: &PortProbe) -> PortProbe {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let resets_sent_by_reason = self
            .resets_sent_by_reason
            .iter()
            .map(|&(r, n)| {
                let before = earlier
                    .resets_sent_by_reason
                    .iter()
                    .find(|(er, _)| *er == r)
                    .map_or(0, |&(_, n)| n);
                (r, d(n, before))
            })
            .filter(|&(_, n)| n > 0)
            .collect();
        let mut drops_by_reason: Vec<DropCount> = self
            .drops_by_reason
            .iter()
            .map(|c| {
                let before = earlier
                    .drops_by_reason
                    .iter()
                    .find(|e| e.reason == c.reason)
                    .map_or(0, |e| e.count);
                DropCount {
                    count: d(c.count, before),
                    ..c.clone()
                }
            })
            .filter(|c| c.count > 0)
            .collect();
        drops_by_reason.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
        PortProbe {
            port: self.port,
            connections: d(self.connections, earlier.connections),
            server_handshake: self.server_handshake.since(&earlier.server_handshake),
            syns_received: d(self.syns_received, earlier.syns_received),
            server_handshake_unmatched: d(
                self.server_handshake_unmatched,
                earlier.server_handshake_unmatched,
            ),
            handshake: self.handshake.since(&earlier.handshake),
            accept_wait: self.accept_wait.since(&earlier.accept_wait),
            recv_queue_wait: self.recv_queue_wait.since(&earlier.recv_queue_wait),
            srtt: self.srtt.since(&earlier.srtt),
            uring_accepts: d(self.uring_accepts, earlier.uring_accepts),
            closed_unaccepted: d(self.closed_unaccepted, earlier.closed_unaccepted),
            retransmits: d(self.retransmits, earlier.retransmits),
            synack_retransmits: d(self.synack_retransmits, earlier.synack_retransmits),
            resets_sent: d(self.resets_sent, earlier.resets_sent),
            resets_sent_by_reason,
            resets_received: d(self.resets_received, earlier.resets_received),
            connect_failed: d(self.connect_failed, earlier.connect_failed),
            handshake_unmatched: d(self.handshake_unmatched, earlier.handshake_unmatched),
            hist_missing: d(self.hist_missing, earlier.hist_missing),
            drops: d(self.drops, earlier.drops),
            drops_by_reason,
        }
    }
}

/// A latency histogram summary, nanoseconds. Percentiles are the upper bound of the
/// log-linear bucket they fall in (at most 12.5 % above the true value), capped at `max_ns`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyHist {
    /// Number of samples.
    pub count: u64,
    /// Sum of the samples.
    pub sum_ns: u64,
    /// Mean (0 without samples).
    pub mean_ns: u64,
    /// Largest sample.
    pub max_ns: u64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// The non-empty buckets, in order.
    pub buckets: Vec<Bucket>,
}

/// One histogram bucket: `count` samples in `lower_ns..=upper_ns`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Smallest value of the bucket.
    pub lower_ns: u64,
    /// Largest value of the bucket.
    pub upper_ns: u64,
    /// Samples in it.
    pub count: u64,
}

impl LatencyHist {
    /// Summarises a (merged) kernel histogram.
    pub fn from_hist(h: &Histogram) -> Self {
        let buckets = (0..HIST_BUCKETS)
            .filter(|&i| h.buckets[i] != 0)
            .map(|i| Bucket {
                lower_ns: bucket_lower(i),
                upper_ns: bucket_upper(i),
                count: h.buckets[i],
            })
            .collect();
        Self::from_buckets(buckets, h.sum, h.max)
    }

    /// The summary of non-empty `buckets` (in order) with this sum and maximum.
    fn from_buckets(buckets: Vec<Bucket>, sum_ns: u64, max_ns: u64) -> Self {
        let count: u64 = buckets.iter().map(|b| b.count).sum();
        let quantile = |q: f64| -> u64 {
            if count == 0 {
                return 0;
            }
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for b in &buckets {
                seen += b.count;
                if seen >= rank {
                    return b.upper_ns.min(max_ns);
                }
            }
            max_ns
        };
        Self {
            count,
            sum_ns,
            mean_ns: sum_ns.checked_div(count).unwrap_or(0),
            max_ns,
            p50_ns: quantile(0.50),
            p90_ns: quantile(0.90),
            p99_ns: quantile(0.99),
            buckets,
        }
    }

    /// The samples recorded between `earlier` and `self` (two readings of the same
    /// histogram). The maximum of the difference is not recorded anywhere: it is the
    /// later maximum when the top bucket still grew, else the top bucket's upper bound.
    pub fn since(&self, earlier: &LatencyHist) -> LatencyHist {
        let buckets: Vec<Bucket> = self
            .buckets
            .iter()
            .map(|b| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|e| e.lower_ns == b.lower_ns)
                    .map_or(0, |e| e.count);
                Bucket {
                    count: b.count.saturating_sub(before),
                    ..*b
                }
            })
            .filter(|b| b.count > 0)
            .collect();
        let max_ns = match (buckets.last(), self.buckets.last()) {
            (None, _) => 0,
            (Some(top), Some(all)) if top.lower_ns == all.lower_ns => self.max_ns,
            (Some(top), _) => top.upper_ns.min(self.max_ns),
        };
        Self::from_buckets(buckets, self.sum_ns.wrapping_sub(earlier.sum_ns), max_ns)
    }
}

/// The `{ number, "NAME" }` pairs of a tracepoint format's `__print_symbolic`, e.g. the
/// drop reasons of `skb:kfree_skb`. Pairs whose number is a symbol (not a literal) are
/// skipped.
#[cfg_attr(
    not(feature = "probe"),
    allow(dead_code, reason = "used by the loader")
)]
pub fn symbolic_names(format: &str) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    for part in format.split('{').skip(1) {
        let Some((pair, _)) = part.split_once('}') else {
            continue;
        };
        let Some((num, name)) = pair.split_once(',') else {
            continue;
        };
        if let (Ok(n), Some(name)) = (
            num.trim().parse::<u32>(),
            name.trim()
                .strip_prefix('"')
                .and_then(|n| n.strip_suffix('"')),
        ) {
            out.entry(n).or_insert_with(|| name.to_string());
        }
    }
    out
}

/// Adds one counter sample (already summed over CPUs) to its port's entry.
#[cfg_attr(
    not(feature = "probe"),
    allow(dead_code, reason = "used by the loader")
)]
pub(crate) fn add_counter(
    ports: &mut BTreeMap<u16, PortProbe>,
    port: u16,
    which: u16,
    detail: u32,
    n: u64,
) {
    let Some(p) = ports.get_mut(&port) else {
        return;
    };
    match which {
        counter::RETRANSMIT => p.retransmits += n,
        counter::SEND_RESET => {
            p.resets_sent += n;
            match p
                .resets_sent_by_reason
                .iter_mut()
                .find(|(r, _)| *r == detail)
            {
                Some((_, c)) => *c += n,
                None => {
                    p.resets_sent_by_reason.push((detail, n));
                    p.resets_sent_by_reason.sort_unstable();
                }
            }
        }
        counter::RECV_RESET => p.resets_received += n,
        counter::CONNECT_FAILED => p.connect_failed += n,
        counter::HANDSHAKE_UNMATCHED => p.handshake_unmatched += n,
        counter::HIST_MISSING => p.hist_missing += n,
        counter::PASSIVE_OPEN => p.connections += n,
        counter::SYNACK_RETRANSMIT => p.synack_retransmits += n,
        counter::URING_ACCEPT => p.uring_accepts += n,
        counter::CLOSED_UNACCEPTED => p.closed_unaccepted += n,
        counter::SYN_RECEIVED => p.syns_received += n,
        counter::SERVER_HANDSHAKE_UNMATCHED => p.server_handshake_unmatched += n,
        counter::KFREE_SKB => {
            p.drops += n;
            match p.drops_by_reason.iter_mut().find(|c| c.reason == detail) {
                Some(c) => c.count += n,
                None => p.drops_by_reason.push(DropCount {
                    reason: detail,
                    name: String::new(),
                    count: n,
                }),
            }
            p.drops_by_reason
                .sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blaster_common::bucket_index;

    #[test]
    fn probe_hist_summary() {
        let mut h = Histogram::ZERO;
        for v in 1..=100u64 {
            h.record(v * 1000);
        }
        let s = LatencyHist::from_hist(&h);
        assert_eq!(s.count, 100);
        assert_eq!(s.max_ns, 100_000);
        assert_eq!(s.mean_ns, 50_500);
        // p50 = 50 µs, reported as its bucket's upper bound (<= 12.5 % above).
        assert!(s.p50_ns >= 50_000 && s.p50_ns <= 56_250, "{}", s.p50_ns);
        assert_eq!(s.p99_ns, bucket_upper(bucket_index(99_000)).min(100_000));
        assert_eq!(s.buckets.iter().map(|b| b.count).sum::<u64>(), 100);
        let json = serde_json::to_string(&s).unwrap();
        let back: LatencyHist = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn probe_hist_since_is_the_difference() {
        let mut h = Histogram::ZERO;
        for v in 1..=10u64 {
            h.record(v * 1_000_000);
        }
        let early = LatencyHist::from_hist(&h);
        let mut only_new = Histogram::ZERO;
        for v in [20_000u64, 21_000, 22_000, 90_000_000] {
            h.record(v);
            only_new.record(v);
        }
        let late = LatencyHist::from_hist(&h);
        let d = late.since(&early);
        let want = LatencyHist::from_hist(&only_new);
        assert_eq!(d, want, "the top bucket grew, so its max is exact");
        // Nothing new: empty.
        let none = late.since(&late);
        assert_eq!((none.count, none.sum_ns, none.max_ns), (0, 0, 0));
        // New samples below the old maximum: max is their bucket's upper bound.
        let mut h2 = h;
        h2.record(21_500);
        let d2 = LatencyHist::from_hist(&h2).since(&late);
        assert_eq!(d2.count, 1);
        assert_eq!(d2.max_ns, bucket_upper(bucket_index(21_500)));
    }

    #[test]
    fn probe_snapshot_since_subtracts_counters() {
        let mut early = ProbeSnapshot {
            elapsed_ms: 1000,
            listen_overflows: 2,
            ..Default::default()
        };
        let mut ports = BTreeMap::new();
        ports.insert(
            80,
            PortProbe {
                port: 80,
                ..Default::default()
            },
        );
        add_counter(&mut ports, 80, counter::PASSIVE_OPEN, 0, 5);
        add_counter(&mut ports, 80, counter::KFREE_SKB, 3, 1);
        early.ports = ports.values().cloned().collect();
        add_counter(&mut ports, 80, counter::PASSIVE_OPEN, 0, 7);
        add_counter(&mut ports, 80, counter::KFREE_SKB, 3, 2);
        add_counter(&mut ports, 80, counter::KFREE_SKB, 40, 4);
        add_counter(&mut ports, 80, counter::SEND_RESET, 1, 1);
        add_counter(&mut ports, 80, counter::SYN_RECEIVED, 0, 3);
        add_counter(&mut ports, 80, counter::SERVER_HANDSHAKE_UNMATCHED, 0, 1);
        let late = ProbeSnapshot {
            elapsed_ms: 3000,
            listen_overflows: 5,
            ports: ports.into_values().collect(),
            ..Default::default()
        };
        let d = late.since(&early).unwrap();
        assert_eq!((d.elapsed_ms, d.listen_overflows), (2000, 3));
        let p = d.port(80).unwrap();
        assert_eq!(p.connections, 7);
        assert_eq!(p.drops, 6);
        let reasons: Vec<(u32, u64)> = p
            .drops_by_reason
            .iter()
            .map(|c| (c.reason, c.count))
            .collect();
        assert_eq!(reasons, [(40, 4), (3, 2)]);
        assert_eq!(p.resets_sent_by_reason, [(1, 1)]);
        assert_eq!((p.syns_received, p.server_handshake_unmatched), (3, 1));
        assert!(early.since(&late).unwrap_err().contains("restarted"));
    }

    #[test]
    fn probe_symbolic_names_of_a_format() {
        let f = r#"print fmt: "reason: %s", __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, { TCP_CLOSE, "TCP_CLOSE" })"#;
        let names = symbolic_names(f);
        assert_eq!(names.get(&3).map(String::as_str), Some("NO_SOCKET"));
        assert_eq!(names.len(), 2);
    }
}
