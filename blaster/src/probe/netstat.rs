//! The kernel's accept-queue overflow counters, `TcpExt` ListenOverflows and ListenDrops
//! from `/proc/net/netstat`. They count for the whole network namespace (every port), so
//! the probe reports how much they grew while it ran, beside its per-port numbers.

/// The two counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenCounters {
    /// Connections (SYNs or final ACKs) dropped because a listener's accept queue was full.
    pub overflows: u64,
    /// Every drop on a listening socket (overflows included).
    pub drops: u64,
}

impl ListenCounters {
    /// Reads this namespace's counters; `None` when `/proc/net/netstat` is unreadable or
    /// lacks them.
    pub fn read() -> Option<ListenCounters> {
        parse(&std::fs::read_to_string("/proc/net/netstat").ok()?)
    }

    /// How much each counter grew since `earlier`.
    pub fn since(&self, earlier: &ListenCounters) -> ListenCounters {
        ListenCounters {
            overflows: self.overflows.saturating_sub(earlier.overflows),
            drops: self.drops.saturating_sub(earlier.drops),
        }
    }
}

/// Parses the `TcpExt:` header and value lines of `/proc/net/netstat`.
fn parse(text: &str) -> Option<ListenCounters> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?.split_whitespace().skip(1);
    let values = lines.next()?.split_whitespace().skip(1);
    let mut out = ListenCounters::default();
    let mut found = 0;
    for (name, value) in names.zip(values) {
        let slot = match name {
            "ListenOverflows" => &mut out.overflows,
            "ListenDrops" => &mut out.drops,
            _ => continue,
        };
        *slot = value.parse().ok()?;
        found += 1;
    }
    (found == 2).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_netstat_listen_counters() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPLostRetransmit\n\
                    TcpExt: 0 7 9 1\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        let c = parse(text).unwrap();
        assert_eq!(
            c,
            ListenCounters {
                overflows: 7,
                drops: 9
            }
        );
        let later = ListenCounters {
            overflows: 10,
            drops: 9,
        };
        assert_eq!(later.since(&c).overflows, 3);
        assert_eq!(later.since(&c).drops, 0);
        assert_eq!(parse("TcpExt: ListenDrops\nTcpExt: 1\n"), None);
        assert_eq!(parse(""), None);
        // This machine's file has both.
        if let Ok(text) = std::fs::read_to_string("/proc/net/netstat") {
            assert!(parse(&text).is_some(), "{text}");
        }
    }
}
