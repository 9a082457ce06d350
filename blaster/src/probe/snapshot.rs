//! Plain data read out of the probe's maps: no aya types, serde both ways.

use std::collections::BTreeMap;

use blaster_common::{HIST_BUCKETS, Histogram, bucket_lower, bucket_upper, counter};
use serde::{Deserialize, Serialize};

/// Everything the probe measured, per watched port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeSnapshot {
    /// How long the probe was attached when this was read, ms.
    pub elapsed_ms: u64,
    /// One entry per watched port, in port order.
    pub ports: Vec<PortProbe>,
}

impl ProbeSnapshot {
    /// The entry of `port`, if it was watched.
    pub fn port(&self, port: u16) -> Option<&PortProbe> {
        self.ports.iter().find(|p| p.port == port)
    }
}

/// The numbers of one watched port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortProbe {
    /// The watched (listening) port.
    pub port: u16,
    /// Active opens to this port, `connect()` (SYN_SENT) to ESTABLISHED: the TCP
    /// handshake as the connecting side sees it.
    pub handshake: LatencyHist,
    /// Passive opens on this port, ESTABLISHED (in the accept queue) to returned by
    /// `accept(2)`/`accept4(2)`. Accepts through io_uring are not seen yet.
    pub accept_wait: LatencyHist,
    /// `tcp:tcp_retransmit_skb` on connections with this port at either end.
    pub retransmits: u64,
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
        let quantile = |q: f64| -> u64 {
            if h.count == 0 {
                return 0;
            }
            let rank = ((q * h.count as f64).ceil() as u64).clamp(1, h.count);
            let mut seen = 0;
            for (i, &n) in h.buckets.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return bucket_upper(i).min(h.max);
                }
            }
            h.max
        };
        Self {
            count: h.count,
            sum_ns: h.sum,
            mean_ns: h.sum.checked_div(h.count).unwrap_or(0),
            max_ns: h.max,
            p50_ns: quantile(0.50),
            p90_ns: quantile(0.90),
            p99_ns: quantile(0.99),
            buckets: (0..HIST_BUCKETS)
                .filter(|&i| h.buckets[i] != 0)
                .map(|i| Bucket {
                    lower_ns: bucket_lower(i),
                    upper_ns: bucket_upper(i),
                    count: h.buckets[i],
                })
                .collect(),
        }
    }
}

/// Adds one counter sample (already summed over CPUs) to its port's entry.
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
}
