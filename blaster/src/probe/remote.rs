//! Reading a running probe's snapshot over HTTP (`blaster run --probe URL`).
//!
//! The probe (`blaster probe --listen ADDR`) serves its current snapshot as JSON at
//! `/snapshot`. Fetching it takes one GET, twice per run, so this is a blocking HTTP/1.1
//! GET over a `std` TcpStream with timeouts, parsed with `httparse` (already a dependency):
//! an HTTP client crate would bring a runtime or TLS stack for two requests.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::ProbeSnapshot;

/// Connect, read and write timeout of one fetch.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest snapshot accepted (a snapshot of 64 ports with full histograms is far smaller).
const MAX_BYTES: u64 = 16 << 20;

/// Where a probe's snapshot is: host, port and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUrl {
    /// `host:port` as given (for the Host header and messages).
    pub authority: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl std::fmt::Display for ProbeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

/// Parses `--probe`: `http://HOST:PORT` (path `/snapshot` implied) or a full
/// `http://HOST:PORT/snapshot`. The port defaults to 9465, the probe's.
pub fn parse_probe_url(raw: &str) -> Result<ProbeUrl, String> {
    let expected =
        "expected http://HOST:PORT of a `blaster probe --listen`, e.g. http://10.0.0.5:9465";
    let url =
        url::Url::parse(raw).map_err(|e| format!("invalid probe URL {raw:?}: {e}; {expected}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "invalid probe URL {raw:?}: scheme {:?} is not supported; {expected}",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("invalid probe URL {raw:?}: no host; {expected}"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port().unwrap_or(9465);
    let path = match url.path() {
        "" | "/" => "/snapshot".to_string(),
        p => p.to_string(),
    };
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(ProbeUrl {
        authority,
        host,
        port,
        path,
    })
}

/// Fetches and parses the probe's current snapshot.
pub fn fetch_snapshot(url: &ProbeUrl) -> Result<ProbeSnapshot> {
    let body = get(url)?;
    serde_json::from_slice(&body).with_context(|| {
        format!("{url} did not answer with a probe snapshot (JSON of `blaster probe --listen`)")
    })
}

/// One GET; the body of a 200 answer.
fn get(url: &ProbeUrl) -> Result<Vec<u8>> {
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve the probe's host {}", url.host))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mut stream) = stream else {
        let why = last.map_or("no address".to_string(), |e| e.to_string());
        bail!(
            "cannot reach the probe at {url}: {why}; is `blaster probe --port P --listen ADDR` running there, \
             and is ADDR reachable from here (it listens on 127.0.0.1 unless told otherwise)?"
        );
    };
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        url.path, url.authority
    )
    .with_context(|| format!("sending the request to the probe at {url}"))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_BYTES)
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the probe's answer from {url}"))?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => bail!("the probe at {url} closed mid-answer"),
        Err(e) => bail!("the probe at {url} answered with invalid HTTP: {e}"),
    };
    let code = resp.code.unwrap_or(0);
    if code != 200 {
        bail!(
            "the probe at {url} answered {code} {}: check the path (the probe serves /snapshot)",
            resp.reason.unwrap_or("")
        );
    }
    let length = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    let mut body = raw.split_off(head_len);
    if let Some(n) = length {
        if body.len() < n {
            bail!("the probe at {url} sent {} of {n} body bytes", body.len());
        }
        body.truncate(n);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::endpoint::{Endpoint, Render};
    use std::sync::Arc;

    #[test]
    fn probe_url_forms() {
        let u = parse_probe_url("http://127.0.0.1:9465").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9465, "/snapshot")
        );
        assert_eq!(u.to_string(), "http://127.0.0.1:9465/snapshot");
        let u = parse_probe_url("http://[::1]:9000/snapshot").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9000));
        assert_eq!(u.authority, "[::1]:9000");
        assert_eq!(parse_probe_url("http://probe-host").unwrap().port, 9465);
        let e = parse_probe_url("https://h:1").unwrap_err();
        assert!(
            e.contains("\"https\"") && e.contains("expected http://HOST:PORT"),
            "{e}"
        );
        assert!(parse_probe_url("127.0.0.1:9465").is_err());
    }

    #[test]
    fn probe_snapshot_fetched_over_http() {
        let snap = ProbeSnapshot {
            elapsed_ms: 1234,
            listen_overflows: 2,
            ..Default::default()
        };
        let json = serde_json::to_string(&snap).unwrap();
        let render: Render = Arc::new(move || json.clone());
        let e = Endpoint::start(
            "127.0.0.1:0".parse().unwrap(),
            "/snapshot",
            "application/json",
            "--listen",
            render,
        )
        .unwrap();
        let url = parse_probe_url(&format!("http://{}", e.addr())).unwrap();
        assert_eq!(fetch_snapshot(&url).unwrap(), snap);
        let wrong = parse_probe_url(&format!("http://{}/other", e.addr())).unwrap();
        let err = format!("{:#}", fetch_snapshot(&wrong).unwrap_err());
        assert!(err.contains("404"), "{err}");
        drop(e);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let gone = parse_probe_url(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = format!("{:#}", fetch_snapshot(&gone).unwrap_err());
        assert!(err.contains("cannot reach the probe"), "{err}");
    }
}
