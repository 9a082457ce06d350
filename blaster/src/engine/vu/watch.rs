//! The soak watcher (`[special.soak]`): polls an endpoint during the run, reads a number at
//! a JSON path (for example the target's memory use) and fits its growth per hour.
//!
//! It runs on its own thread, off the engine: one small blocking HTTP/1.1 GET per interval
//! over a std `TcpStream` (a client crate would add a runtime and dozens of dependencies
//! for a request every 30 s); the response goes through the scenario runtime's parser, so
//! chunked bodies work.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::scenario::model::JsonPath;
use crate::scenario::runtime::{json_lookup, parse_response};

/// What the watcher saw: samples (seconds since the start, value) and failed polls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Watched {
    pub samples: Vec<(f64, f64)>,
    pub errors: Vec<String>,
}

pub struct Watcher {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Watched>,
}

impl Watcher {
    /// Polls `url` every `interval` (the first poll right away) until [`Watcher::finish`].
    pub fn start(url: String, path: JsonPath, interval: Duration) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let mut out = Watched::default();
            let mut next = start;
            while !flag.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    match poll(&url, &path) {
                        Ok(v) => out.samples.push((start.elapsed().as_secs_f64(), v)),
                        Err(e) => {
                            if out.errors.len() < 100 {
                                out.errors.push(e);
                            }
                        }
                    }
                    next += interval;
                }
                std::thread::sleep(Duration::from_millis(20).min(interval));
            }
            out
        });
        Watcher { stop, handle }
    }

    pub fn finish(self) -> Watched {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// One GET of `url`; the number at `path` of its JSON body.
pub fn poll(url: &str, path: &JsonPath) -> Result<f64, String> {
    let (authority, target) = super::worker::split_url(url.as_bytes(), false)
        .map_err(|kind| format!("cannot poll \"{url}\": {kind} (give an http:// URL)"))?;
    let with_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("cannot resolve \"{authority}\" of the watch URL"))?;
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr} to poll {url}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).ok();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("polling {url}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .take(16 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| format!("polling {url}: {e}"))?;
    let mut scratch = Vec::new();
    let resp = parse_response(&raw, &mut scratch).map_err(|e| format!("polling {url}: {e}"))?;
    if !(200..300).contains(&resp.status) {
        return Err(format!("polling {url}: status {}", resp.status));
    }
    let value = json_lookup(resp.body, path)
        .ok_or_else(|| format!("polling {url}: no value at {}", path.text))?;
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| format!("polling {url}: {} is {value}, not a number", path.text))
}

/// Least-squares slope of the samples, per hour; `None` with fewer than two samples or no
/// spread in time.
pub fn growth_per_hour(samples: &[(f64, f64)]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let mx = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let sxx: f64 = samples.iter().map(|s| (s.0 - mx).powi(2)).sum();
    if sxx <= f64::EPSILON {
        return None;
    }
    let sxy: f64 = samples.iter().map(|s| (s.0 - mx) * (s.1 - my)).sum();
    Some(sxy / sxx * 3600.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_the_fitted_slope_per_hour() {
        // 1 MB per minute with noise: 60 MB/h.
        let s: Vec<(f64, f64)> = (0..30)
            .map(|i| {
                let t = i as f64 * 60.0;
                (t, 100.0 + t / 60.0 + if i % 2 == 0 { 0.3 } else { -0.3 })
            })
            .collect();
        let g = growth_per_hour(&s).unwrap();
        assert!((g - 60.0).abs() < 0.5, "{g}");
        assert_eq!(growth_per_hour(&s[..1]), None);
        let flat: Vec<(f64, f64)> = (0..5).map(|i| (i as f64, 7.0)).collect();
        assert_eq!(growth_per_hour(&flat), Some(0.0));
    }
}
