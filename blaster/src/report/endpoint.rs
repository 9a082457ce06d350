//! A tiny read-only HTTP endpoint: one path, a body rendered on each request.
//!
//! Used for Prometheus's `/metrics` and the probe's JSON snapshot. Scrapers send one GET and
//! read the answer, so this answers one request per connection with `Connection: close` on a
//! background thread; a web framework would be a large dependency for that. The thread polls a
//! stop flag and ends when the [`Endpoint`] is dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

/// Renders the body of one answer.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// A running endpoint; stops its thread when dropped.
pub struct Endpoint {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Serves `render()` at `path` on `addr` with `content_type`; `flag` names the option
    /// that asked for it, for error messages.
    pub fn start(
        addr: SocketAddr,
        path: &'static str,
        content_type: &'static str,
        flag: &str,
        render: Render,
    ) -> anyhow::Result<Endpoint> {
        let listener = TcpListener::bind(addr).with_context(|| {
            format!("cannot listen on {addr} for {flag}: the address is in use or not local; pick another, e.g. {flag} 127.0.0.1:0")
        })?;
        listener
            .set_nonblocking(true)
            .context("cannot make the listener non-blocking")?;
        let addr = listener.local_addr().context("listener has no address")?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("blaster-endpoint".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((stream, _)) => answer(stream, path, content_type, &render),
                            Err(_) => std::thread::sleep(Duration::from_millis(50)),
                        }
                    }
                })
                .context("cannot start the endpoint thread")?
        };
        Ok(Endpoint {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // The thread polls the flag at least every 50 ms.
            let _ = t.join();
        }
    }
}

fn answer(stream: TcpStream, path: &str, content_type: &str, render: &Render) {
    // A client that stalls must not hold the thread.
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Skip the rest of the head.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let asked = request_line.split_whitespace().nth(1).unwrap_or("");
    let asked = asked.split('?').next().unwrap_or("");
    let (status, content_type, body) = if asked == path {
        ("200 OK", content_type, render())
    } else {
        (
            "404 Not Found",
            "text/plain",
            format!("blaster serves {path}\n"),
        )
    };
    let mut out = &stream;
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn serves_its_path_and_404s_the_rest() {
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::clone(&calls);
        let render: Render =
            Arc::new(move || format!("n={}", counter.fetch_add(1, Ordering::Relaxed) + 1));
        let e = Endpoint::start(
            "127.0.0.1:0".parse().unwrap(),
            "/x",
            "text/plain",
            "--flag",
            render,
        )
        .unwrap();
        let a = get(e.addr(), "/x?y=1");
        assert!(
            a.starts_with("HTTP/1.1 200 OK") && a.ends_with("n=1"),
            "{a}"
        );
        assert!(get(e.addr(), "/x").ends_with("n=2"));
        assert!(get(e.addr(), "/other").starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn a_busy_address_is_explained() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let render: Render = Arc::new(String::new);
        let err = Endpoint::start(
            taken.local_addr().unwrap(),
            "/x",
            "text/plain",
            "--thing",
            render,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("--thing 127.0.0.1:0"), "{err}");
    }
}
