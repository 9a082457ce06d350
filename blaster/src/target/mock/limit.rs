//! Per-key rate limits of mock routes: N requests per window for each value of a key (a
//! header such as `Authorization`, the client IP, a path or query parameter).
//!
//! Fixed windows: a key's window starts with its first request and lasts `window`; within it
//! the first `limit` requests pass and the rest are refused with the seconds left until the
//! window ends (the `Retry-After`). The state is shared by every server thread behind one
//! mutex per route: a limit must hold exactly however the kernel spread the connections, and
//! a lookup is a hash of a short key (a lock-free map would not pay for itself in a mock).
//! Windows that ended are pruned when the table has doubled since the last prune.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where a rate limit's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A request header (matched case-insensitively); requests without it are not limited.
    Header(String),
    /// The client's IP address.
    Ip,
    /// A path parameter of the route, by index.
    Param(usize),
    /// A query parameter; requests without it are not limited.
    Query(String),
}

/// A validated rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSpec {
    pub key: KeySource,
    /// Requests per window for every key value not in `limits` (`None`: those are not limited).
    pub limit: Option<u64>,
    /// Limits for particular key values.
    pub limits: Vec<(Vec<u8>, u64)>,
    pub window: Duration,
    /// Advertise this `Retry-After` (seconds) instead of the time left in the window: a
    /// server that lies about when to come back, to test that clients (and blaster's
    /// `retry_after_honoured` check) notice.
    pub retry_after: Option<u64>,
}

impl RateLimitSpec {
    /// The limit for one key value, if it is limited.
    fn limit_for(&self, key: &[u8]) -> Option<u64> {
        self.limits
            .iter()
            .find(|(k, _)| k.as_slice() == key)
            .map(|&(_, n)| n)
            .or(self.limit)
    }
}

/// What the limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The key is not limited.
    Free,
    /// Within the limit; `remaining` more requests fit in this window.
    Allowed { limit: u64, remaining: u64 },
    /// Over the limit: retry after this many seconds (at least 1).
    Limited { limit: u64, retry_after: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u64,
}

/// The shared state of one route's rate limit.
#[derive(Debug)]
pub struct RateLimiter {
    spec: RateLimitSpec,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    windows: HashMap<Box<[u8]>, Window>,
    /// Table size after the last prune.
    pruned_at: usize,
}

impl RateLimiter {
    pub fn new(spec: RateLimitSpec) -> RateLimiter {
        RateLimiter {
            spec,
            state: Mutex::new(State::default()),
        }
    }

    pub fn spec(&self) -> &RateLimitSpec {
        &self.spec
    }

    /// Counts one request of `key` at `now`.
    pub fn check(&self, key: &[u8], now: Instant) -> Verdict {
        let Some(limit) = self.spec.limit_for(key) else {
            return Verdict::Free;
        };
        let window = self.spec.window;
        // A poisoned lock only means another thread panicked mid-update of plain counters.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.windows.len() > 1024 && state.windows.len() >= state.pruned_at * 2 {
            state
                .windows
                .retain(|_, w| now.duration_since(w.start) < window);
            state.pruned_at = state.windows.len().max(512);
        }
        let entry = match state.windows.get_mut(key) {
            Some(w) => w,
            None => state.windows.entry(key.into()).or_insert(Window {
                start: now,
                count: 0,
            }),
        };
        if now.duration_since(entry.start) >= window {
            *entry = Window {
                start: now,
                count: 0,
            };
        }
        if entry.count < limit {
            entry.count += 1;
            return Verdict::Allowed {
                limit,
                remaining: limit - entry.count,
            };
        }
        let left = window.saturating_sub(now.duration_since(entry.start));
        let retry_after = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Verdict::Limited {
            limit,
            retry_after: self.spec.retry_after.unwrap_or(retry_after.max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limit: Option<u64>, limits: &[(&str, u64)]) -> RateLimiter {
        RateLimiter::new(RateLimitSpec {
            key: KeySource::Header("Authorization".into()),
            limit,
            limits: limits
                .iter()
                .map(|(k, n)| (k.as_bytes().to_vec(), *n))
                .collect(),
            window: Duration::from_secs(60),
            retry_after: None,
        })
    }

    /// Waiting the advertised Retry-After (whole seconds, rounded up) always reaches the next
    /// window, for windows of any length, so a client that honours it gets through.
    #[test]
    fn waiting_the_retry_after_reaches_a_new_window() {
        for window_ms in [300u64, 1_000, 1_500, 2_000, 59_999, 60_000] {
            let l = RateLimiter::new(RateLimitSpec {
                key: KeySource::Ip,
                limit: Some(1),
                limits: Vec::new(),
                window: Duration::from_millis(window_ms),
                retry_after: None,
            });
            let t0 = Instant::now();
            assert!(matches!(l.check(b"k", t0), Verdict::Allowed { .. }));
            for refused_at_ms in [0, 1, window_ms / 2, window_ms.saturating_sub(1)] {
                let at = t0 + Duration::from_millis(refused_at_ms);
                let Verdict::Limited { retry_after, .. } = l.check(b"k", at) else {
                    panic!("window {window_ms} ms: not limited at {refused_at_ms} ms");
                };
                let back = at + Duration::from_secs(retry_after);
                assert!(
                    back >= t0 + Duration::from_millis(window_ms),
                    "window {window_ms} ms, refused at {refused_at_ms} ms: Retry-After {retry_after} s ends inside the window"
                );
            }
        }
    }

    #[test]
    fn a_fixed_retry_after_is_advertised_whatever_the_window() {
        let l = RateLimiter::new(RateLimitSpec {
            key: KeySource::Ip,
            limit: Some(1),
            limits: Vec::new(),
            window: Duration::from_secs(60),
            retry_after: Some(1),
        });
        let t0 = Instant::now();
        l.check(b"k", t0);
        assert_eq!(
            l.check(b"k", t0),
            Verdict::Limited {
                limit: 1,
                retry_after: 1
            }
        );
        // ...and it lies: a second later the window is still closed.
        assert!(matches!(
            l.check(b"k", t0 + Duration::from_secs(1)),
            Verdict::Limited { .. }
        ));
    }

    #[test]
    fn exactly_n_per_window_then_retry_after() {
        let l = limiter(Some(3), &[]);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(
                l.check(b"a", t0),
                Verdict::Allowed {
                    limit: 3,
                    remaining: 2 - i
                }
            );
        }
        assert_eq!(
            l.check(b"a", t0),
            Verdict::Limited {
                limit: 3,
                retry_after: 60
            }
        );
        assert_eq!(
            l.check(b"a", t0 + Duration::from_millis(59_500)),
            Verdict::Limited {
                limit: 3,
                retry_after: 1
            }
        );
        // Another key has its own window.
        assert!(matches!(l.check(b"b", t0), Verdict::Allowed { .. }));
        // The window ends: a new one starts.
        assert_eq!(
            l.check(b"a", t0 + Duration::from_secs(60)),
            Verdict::Allowed {
                limit: 3,
                remaining: 2
            }
        );
    }

    #[test]
    fn per_key_limits_and_unlimited_keys() {
        let l = limiter(None, &[("free", 1)]);
        let t0 = Instant::now();
        assert_eq!(l.check(b"pro", t0), Verdict::Free);
        assert!(matches!(l.check(b"free", t0), Verdict::Allowed { .. }));
        assert!(matches!(l.check(b"free", t0), Verdict::Limited { .. }));
        let l = limiter(Some(5), &[("vip", 100)]);
        assert_eq!(
            l.check(b"vip", t0),
            Verdict::Allowed {
                limit: 100,
                remaining: 99
            }
        );
    }

    #[test]
    fn old_windows_are_pruned() {
        let l = limiter(Some(1), &[]);
        let t0 = Instant::now();
        for i in 0..3000u32 {
            l.check(&i.to_be_bytes(), t0);
        }
        for i in 3000..6000u32 {
            l.check(&i.to_be_bytes(), t0 + Duration::from_secs(120));
        }
        let len = l.state.lock().unwrap().windows.len();
        assert!(len < 6000, "{len}");
    }
}
