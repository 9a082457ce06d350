//! Against a real server: nginx on loopback (installed by .ci/run; skipped locally when
//! missing, a failure under CI=true).
//!
//! Routes: `/` returns `ok` from `return 200`; `/static` is a 10 000-byte file (Content-Length);
//! `/chunked` is the same file through `sub_filter`, which drops the length so nginx answers
//! with `Transfer-Encoding: chunked`; anything else is a 404.
//!
//! nginx runs in the foreground with `master_process off` (one process, our child), so the
//! guard's kill by PID leaves no orphaned worker behind.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use blaster_tests::{
    ChildGuard, TempPath, assert_all_ok, free_port, require, run_json, status_count, u,
    wait_for_port,
};

const STATIC_LEN: u64 = 10_000;

struct Nginx {
    // Field order matters: the process is killed before its directory is removed.
    child: ChildGuard,
    _dir: TempPath,
    addr: SocketAddr,
}

impl Nginx {
    fn start(nginx: PathBuf) -> Nginx {
        let dir = TempPath::new("-nginx");
        std::fs::create_dir_all(dir.path()).expect("nginx temp dir");
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("data.txt"), vec![b'a'; STATIC_LEN as usize])
            .expect("static file");
        let mut last = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let conf = format!(
                r#"
worker_processes 1;
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    gzip off;
    server {{
        listen 127.0.0.1:{port};
        location = / {{ default_type text/plain; return 200 "ok"; }}
        location = /static {{ alias {d}/data.txt; default_type text/plain; }}
        location = /chunked {{
            alias {d}/data.txt;
            default_type text/plain;
            chunked_transfer_encoding on;
            sub_filter 'no-such-text' 'x';
            sub_filter_types *;
        }}
    }}
}}
"#
            );
            let conf_path = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, conf).expect("nginx.conf");
            let mut cmd = Command::new(&nginx);
            cmd.arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null());
            let mut child = ChildGuard::capture(cmd);
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            if wait_for_port(addr, Duration::from_secs(10))
                && child.wait_timeout(Duration::ZERO).is_none()
            {
                return Nginx {
                    child,
                    _dir: dir,
                    addr,
                };
            }
            child.kill();
            last = format!(
                "stderr:\n{}\nerror.log:\n{}",
                child.stderr_text(),
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
        }
        panic!("nginx did not start: {last}");
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.child.kill();
    }
}

#[test]
fn nginx_return_200_counts_match() {
    let nginx = Nginx::start(require!(tool "nginx"));
    let r = run_json(&["run", &nginx.url("/"), "-n", "2000", "-c", "20", "-t", "1"]);
    assert_all_ok(&r, 2000);
}

#[test]
fn nginx_static_file_content_length_body() {
    let nginx = Nginx::start(require!(tool "nginx"));
    let r = run_json(&[
        "run",
        &nginx.url("/static"),
        "-n",
        "500",
        "-c",
        "10",
        "-t",
        "1",
    ]);
    assert_all_ok(&r, 500);
    assert!(u(&r, &["bytes", "received"]) >= 500 * STATIC_LEN, "{r:#}");
}

#[test]
fn nginx_chunked_body() {
    let nginx = Nginx::start(require!(tool "nginx"));
    let r = run_json(&[
        "run",
        &nginx.url("/chunked"),
        "-n",
        "500",
        "-c",
        "10",
        "-t",
        "1",
    ]);
    assert_all_ok(&r, 500);
    assert!(u(&r, &["bytes", "received"]) >= 500 * STATIC_LEN, "{r:#}");
}

#[test]
fn nginx_404_is_counted_as_a_response() {
    let nginx = Nginx::start(require!(tool "nginx"));
    let r = run_json(&[
        "run",
        &nginx.url("/missing"),
        "-n",
        "300",
        "-c",
        "5",
        "-t",
        "1",
    ]);
    assert_eq!(u(&r, &["responses"]), 300, "{r:#}");
    assert_eq!(status_count(&r, "404"), 300, "{r:#}");
    assert_eq!(u(&r, &["errors", "total"]), 0, "{r:#}");
}

#[test]
fn nginx_keep_alive_uses_one_connection_each() {
    let nginx = Nginx::start(require!(tool "nginx"));
    let r = run_json(&["run", &nginx.url("/"), "-n", "5000", "-c", "10", "-t", "1"]);
    assert_all_ok(&r, 5000);
    assert_eq!(u(&r, &["connections", "opened"]), 10, "{r:#}");
    assert_eq!(u(&r, &["connections", "reconnects"]), 0, "{r:#}");
    assert_eq!(u(&r, &["connections", "closed_by_peer"]), 0, "{r:#}");
}
