//! Shared helpers for blaster's end-to-end tests: locating the binary, fixture servers that
//! listen on loopback port 0, and skip macros for tests that need an external tool.
//!
//! Every helper here is bounded: child processes are owned by a [`ChildGuard`] that kills them
//! (by the PID this process started) when it is dropped, every wait has a deadline, and the
//! raw [`Fixture`] server stops its threads when it is dropped. All traffic stays on loopback.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The JSON report's schema (blaster/report-schema.json), compiled once per test binary.
pub fn report_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../blaster/report-schema.json");
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("schema file"))
                .expect("schema JSON");
        jsonschema::draft202012::new(&schema).expect("schema compiles")
    })
}

/// Fails the test with every schema violation (and where it is) when `report` does not match
/// blaster/report-schema.json.
pub fn assert_schema_valid(report: &Value) {
    let errors: Vec<String> = report_validator()
        .iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the report does not match the schema: {errors:#?}\n{report:#}"
    );
}

/// How long a plain `run_json` call may take before the child is killed and the test fails.
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Skips the current test (prints `skipped: <reason>` and returns) — except under CI
/// (`CI=true`), where a missing prerequisite means a broken install and the test panics.
#[macro_export]
macro_rules! skip {
    ($($reason:tt)+) => {{
        let reason = format!($($reason)+);
        if $crate::in_ci() {
            panic!("prerequisite missing under CI=true (CI must install it): {reason}");
        }
        eprintln!("skipped: {reason}");
        return;
    }};
}

/// `require!(cond, "reason")`: skips the test (see [`skip!`]) unless `cond` holds.
/// `require!(tool "nginx")`: skips unless the program is found on `PATH` (or in `/usr/sbin`,
/// `/sbin`); evaluates to the program's full path.
#[macro_export]
macro_rules! require {
    (tool $name:expr) => {
        match $crate::find_program($name) {
            Some(path) => path,
            None => $crate::skip!("`{}` is not installed (apt-get install {})", $name, $name),
        }
    };
    ($cond:expr, $($reason:tt)+) => {
        if !$cond {
            $crate::skip!($($reason)+);
        }
    };
}

/// True when running under CI (`CI=true`), where skipping is not allowed.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Finds a program on `PATH`, then in `/usr/sbin` and `/sbin` (nginx lives there and root's
/// `PATH` in a test runner may lack it).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------------
// The blaster binary
// ---------------------------------------------------------------------------------------------

/// Path of the `blaster` binary of the same profile as this test executable
/// (`target/<profile>/blaster`; the test itself is `target/<profile>/deps/<name>-<hash>`).
///
/// `cargo test -p blaster-tests` does not build another package's binary, and a binary left
/// from an earlier build may be stale, so the first call runs `cargo build -p blaster --bin
/// blaster` once per test process (a no-op when it is up to date, as under
/// `cargo test --workspace`). `BLASTER_BIN` overrides all of this.
pub fn blaster_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("BLASTER_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable is in target/<profile>/deps")
            .to_path_buf();
        let bin = profile_dir.join("blaster");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let cargo = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .or_else(|| option_env!("CARGO").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("cargo"));
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace)
            .args(["build", "-q", "-p", "blaster", "--bin", "blaster"])
            .arg("--target-dir")
            .arg(&target_dir)
            .stdin(Stdio::null());
        if release {
            cmd.arg("--release");
        }
        // Output is captured so that compiler warnings do not clutter the test output; it is
        // shown when the build fails.
        match cmd.output() {
            Ok(out) if out.status.success() => {}
            other => {
                let why = match &other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                if bin.is_file() {
                    eprintln!("warning: `cargo build -p blaster` failed; using {bin:?}:\n{why}");
                } else {
                    panic!("cannot build the blaster binary and {bin:?} is missing:\n{why}");
                }
            }
        }
        assert!(bin.is_file(), "blaster binary not found at {bin:?}");
        bin
    })
    .clone()
}

/// A port on 127.0.0.1 that was free a moment ago (bind port 0, read it, close).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A unique path in the system temp dir: `blaster-test-<pid>-<n>-<nanos><suffix>`.
pub fn unique_temp_path(suffix: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "blaster-test-{}-{n}-{nanos}{suffix}",
        std::process::id()
    ))
}

/// A temp file or directory removed on drop.
#[derive(Debug)]
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn new(suffix: &str) -> TempPath {
        TempPath(unique_temp_path(suffix))
    }

    /// A new temporary file holding `contents`.
    pub fn with(suffix: &str, contents: impl AsRef<[u8]>) -> TempPath {
        let file = TempPath::new(suffix);
        std::fs::write(file.path(), contents)
            .unwrap_or_else(|e| panic!("write {}: {e}", file.path().display()));
        file
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
            // blaster writes a report to `<path>.tmp` and renames it; a run stopped mid-write
            // (second Ctrl-C, or killed by a guard) leaves that file behind.
            let mut tmp = self.0.clone().into_os_string();
            tmp.push(".tmp");
            let _ = std::fs::remove_file(tmp);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// Owns a child process this test started; kills (SIGKILL, by its PID) and reaps it on drop,
/// also when the test panics. Captured stdout/stderr (when piped through [`ChildGuard::capture`])
/// are drained by bounded threads so the child never blocks on a full pipe.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Wraps a child; nothing is captured.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard {
            child,
            stdout: Arc::default(),
            stderr: Arc::default(),
            readers: Vec::new(),
            status: None,
        }
    }

    /// Spawns `cmd` with stdin closed and stdout/stderr piped into buffers.
    pub fn capture(mut cmd: Command) -> ChildGuard {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let mut guard = ChildGuard::new(child);
        guard.readers.push(drain(out, guard.stdout.clone()));
        guard.readers.push(drain(err, guard.stderr.clone()));
        guard
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    /// Sends `signal` to the child (only while it has not been reaped, so the PID is ours).
    pub fn signal(&mut self, signal: i32) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: kill(2) with the PID of our own unreaped child and a valid signal number.
            let rc = unsafe { libc::kill(self.pid(), signal) };
            assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid());
        }
    }

    /// Waits for the child to exit, at most `timeout`; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.status {
            return Some(status);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.status = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the child if it still runs and reaps it.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Captured stdout so far (lossy UTF-8).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// Captured stderr so far (lossy UTF-8).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits (at most `timeout`) for the child to exit and returns its status and output;
    /// kills it and panics when it overruns.
    pub fn into_output(mut self, timeout: Duration) -> Output {
        let Some(status) = self.wait_timeout(timeout) else {
            self.kill();
            panic!(
                "child {} still running after {timeout:?}; killed.\nstdout:\n{}\nstderr:\n{}",
                self.pid(),
                self.stdout_text(),
                self.stderr_text()
            );
        };
        // The pipes close when the child exits (unless it left a grandchild holding them;
        // blaster does not), so the readers end promptly.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        Output {
            status,
            stdout: std::mem::take(&mut *self.stdout.lock().unwrap()),
            stderr: std::mem::take(&mut *self.stderr.lock().unwrap()),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn drain(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => into.lock().unwrap().extend_from_slice(&buf[..n]),
            }
        }
    })
}

/// `blaster serve --listen 127.0.0.1:PORT -t threads`, waiting (at most 15 s) for its
/// `listening on http://ADDR/` line. Returns the guard and the address it listens on.
/// Retries with another port if the chosen one was taken in the meantime.
pub fn start_serve(threads: usize) -> (ChildGuard, SocketAddr) {
    start_serve_with(&["-t", &threads.to_string()])
}

/// `blaster serve --listen 127.0.0.1:PORT ARGS` (for example `--mock FILE -t 2`), like
/// [`start_serve`].
pub fn start_serve_with(args: &[&str]) -> (ChildGuard, SocketAddr) {
    let mut last_error = String::new();
    for _attempt in 0..3 {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut all = vec!["--listen", listen.as_str()];
        all.extend_from_slice(args);
        match spawn_serve(&all) {
            Ok(started) => return started,
            Err(e) => last_error = e,
        }
    }
    panic!("could not start blaster serve: {last_error}");
}

/// `blaster serve ARGS`, waiting (at most 15 s) for its `listening on http://ADDR/` line.
/// Returns the guard and the (first) address, or what went wrong when it exited first.
pub fn spawn_serve(args: &[&str]) -> Result<(ChildGuard, SocketAddr), String> {
    let mut cmd = Command::new(blaster_bin());
    cmd.arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn blaster serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut guard = ChildGuard::new(child);
    guard.readers.push(drain(stderr, guard.stderr.clone()));
    let (tx, rx) = mpsc::channel::<String>();
    let sink = guard.stdout.clone();
    // Reads lines until the child closes stdout (it is killed at the latest when the guard
    // drops), reporting each one and keeping them for diagnostics.
    guard.readers.push(thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    sink.lock().unwrap().extend_from_slice(line.as_bytes());
                    let _ = tx.send(line.clone());
                }
            }
        }
    }));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(line) => {
                if let Some(addr) = parse_listening(&line) {
                    return Ok((guard, addr));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                thread::sleep(Duration::from_millis(20));
                return Err(format!(
                    "blaster serve exited before listening: {:?}\nstderr:\n{}",
                    guard.wait_timeout(Duration::from_secs(1)),
                    guard.stderr_text()
                ));
            }
        }
        if Instant::now() >= deadline {
            panic!(
                "blaster serve printed no `listening on` line within 15 s.\nstdout:\n{}\nstderr:\n{}",
                guard.stdout_text(),
                guard.stderr_text()
            );
        }
    }
}

/// The example scenarios' folder, `examples/scenarios`.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("examples/scenarios")
}

/// `blaster serve --mock FILE -t 1` on a free loopback port (a fresh server: counters, stocks
/// and rate-limit windows start anew), like [`start_serve`].
pub fn start_mock(file: &Path) -> (ChildGuard, SocketAddr) {
    let file = file.to_str().expect("a UTF-8 mock file path");
    start_serve_with(&["--mock", file, "-t", "1"])
}

/// The `-e NAME=VALUE` arguments of a scenario file's `# smoke:` comment lines: the values that
/// shrink an example to a smoke run of a few seconds against the example mock (see
/// examples/scenarios/README.md). Several lines add up; a line whose text starts with `(` is
/// a note (no values). Errors say what is wrong with the lines, or that there is none.
pub fn smoke_args(src: &str) -> Result<Vec<String>, String> {
    let lines: Vec<&str> = src
        .lines()
        .filter_map(|l| l.strip_prefix("# smoke:"))
        .collect();
    if lines.is_empty() {
        return Err("no \"# smoke:\" line (add one with the -e values of a smoke run)".into());
    }
    let words: Vec<&str> = lines
        .iter()
        .filter(|l| !l.trim_start().starts_with('('))
        .flat_map(|l| l.split_whitespace())
        .collect();
    let mut args = Vec::new();
    for pair in words.chunks(2) {
        match pair {
            ["-e", kv] if kv.split_once('=').is_some_and(|(k, _)| !k.is_empty()) => {
                args.push("-e".to_owned());
                args.push((*kv).to_owned());
            }
            _ => {
                return Err(format!(
                    "smoke lines hold `-e NAME=VALUE` pairs (values without spaces), not {pair:?}"
                ));
            }
        }
    }
    Ok(args)
}

/// Extracts `ADDR` from a line containing `listening on http://ADDR/`.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on http://").nth(1)?;
    let addr = rest.split('/').next()?.trim();
    addr.parse().ok()
}

/// Runs `blaster ARGS` with a hard time limit: the child is killed and the test panics when
/// it overruns. Returns its exit status and captured output.
pub fn run_blaster<S: AsRef<std::ffi::OsStr>>(args: &[S], timeout: Duration) -> Output {
    let mut cmd = Command::new(blaster_bin());
    cmd.args(args);
    ChildGuard::capture(cmd).into_output(timeout)
}

/// A finished `run` with `--json`: the process output and the parsed report.
#[derive(Debug)]
pub struct JsonRun {
    pub output: Output,
    pub report: Value,
}

impl JsonRun {
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

/// Runs `blaster ARGS --json <tmp> -q` (limit `timeout`) and parses the report, whatever the
/// exit code; panics when no report was written.
pub fn run_json_output<S: AsRef<std::ffi::OsStr>>(args: &[S], timeout: Duration) -> JsonRun {
    let mut cmd = Command::new(blaster_bin());
    cmd.args(args);
    run_json_command(cmd, timeout)
}

/// Like [`run_json_output`] for a prepared `blaster` command (arguments, environment):
/// appends `--json <tmp> -q`, runs it (limit `timeout`) and parses the report.
pub fn run_json_command(mut cmd: Command, timeout: Duration) -> JsonRun {
    let json = TempPath::new(".json");
    cmd.arg("--json").arg(json.path()).arg("-q");
    let what = format!("{cmd:?}");
    let output = ChildGuard::capture(cmd).into_output(timeout);
    let report = read_report(json.path()).unwrap_or_else(|e| {
        panic!(
            "no JSON report from {what}: {e}\nstatus: {:?}\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    JsonRun { output, report }
}

/// Runs `blaster ARGS --json <tmp> -q`, asserts exit code 0, and returns the parsed report.
pub fn run_json<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Value {
    let run = run_json_output(args, DEFAULT_RUN_TIMEOUT);
    assert!(
        run.output.status.success(),
        "blaster {:?} failed: {:?}\nstderr:\n{}",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
        run.output.status,
        run.stderr()
    );
    run.report
}

/// Reads and parses a JSON report file.
pub fn read_report(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {path:?}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("parse {path:?}: {e}\n{text}"))
}

/// `report[a][b]...` as u64; panics with the report when missing or not an integer.
pub fn u(report: &Value, path: &[&str]) -> u64 {
    let mut v = report;
    for key in path {
        v = &v[*key];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("report field {path:?} is not a u64 ({v}) in:\n{report:#}"))
}

/// `report[a][b]...` as f64; panics when missing or not a number.
pub fn f(report: &Value, path: &[&str]) -> f64 {
    let mut v = report;
    for key in path {
        v = &v[*key];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("report field {path:?} is not a number ({v}) in:\n{report:#}"))
}

/// An error count by kind (absent kinds count zero).
pub fn error_count(report: &Value, kind: &str) -> u64 {
    report["errors"][kind].as_u64().unwrap_or(0)
}

/// A status-code count (absent codes count zero).
pub fn status_count(report: &Value, code: &str) -> u64 {
    report["status_codes"][code].as_u64().unwrap_or(0)
}

/// The accounting invariant every report must satisfy:
/// `requests == responses + (errors.total - connect_refused - connect_failed - unexpected_data)
/// + in_flight_at_end`, and `errors.total` is the sum of the kinds.
pub fn assert_invariant(report: &Value) {
    let requests = u(report, &["requests"]);
    let responses = u(report, &["responses"]);
    let total = u(report, &["errors", "total"]);
    let not_request_errors = error_count(report, "connect_refused")
        + error_count(report, "connect_failed")
        + error_count(report, "unexpected_data");
    let in_flight = u(report, &["in_flight_at_end"]);
    assert_eq!(
        requests,
        responses + (total - not_request_errors) + in_flight,
        "invariant requests == responses + request errors + in_flight_at_end broken:\n{report:#}"
    );
    let kinds: u64 = report["errors"]
        .as_object()
        .expect("errors is an object")
        .iter()
        .filter(|(k, _)| k.as_str() != "total")
        .map(|(_, v)| v.as_u64().expect("error count is a u64"))
        .sum();
    assert_eq!(
        kinds, total,
        "errors.total is not the sum of the kinds:\n{report:#}"
    );
    let statuses: u64 = report["status_codes"]
        .as_object()
        .expect("status_codes is an object")
        .values()
        .map(|v| v.as_u64().expect("status count is a u64"))
        .sum();
    assert_eq!(
        statuses, responses,
        "status_codes do not add up to responses:\n{report:#}"
    );
}

/// Asserts a run of exactly `n` requests that all got a 200 and no error.
pub fn assert_all_ok(report: &Value, n: u64) {
    assert_eq!(u(report, &["requests"]), n, "requests:\n{report:#}");
    assert_eq!(u(report, &["responses"]), n, "responses:\n{report:#}");
    assert_eq!(status_count(report, "200"), n, "status 200:\n{report:#}");
    assert_eq!(u(report, &["errors", "total"]), 0, "errors:\n{report:#}");
    assert_eq!(
        u(report, &["in_flight_at_end"]),
        0,
        "in flight:\n{report:#}"
    );
    assert_invariant(report);
}

/// A lock that makes timing-sensitive tests of one test binary run one at a time (the machine
/// has 2 CPUs; two load tests at once would measure each other). Survives a poisoned lock.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits (at most `timeout`) until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Raw TCP fixture server
// ---------------------------------------------------------------------------------------------

/// How the raw [`Fixture`] server answers each request it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A valid `200 OK` with body `ok` (keep-alive): for checking what blaster sends.
    Ok,
    /// Bytes that are not HTTP; the connection stays open until the client closes it.
    Garbage,
    /// A response head over 100 KiB (many filler headers).
    HugeHeaders,
    /// A head with `Content-Length: 1000`, 10 body bytes, then an abortive close (RST).
    ResetMidBody,
    /// A chunked response whose first chunk size is `zz`.
    BadChunk,
    /// Half a status line and headers, then a clean close (FIN).
    CloseMidHead,
}

/// Upper bound on a fixture's life, whatever the test does.
const FIXTURE_MAX_LIFE: Duration = Duration::from_secs(120);

/// A raw TCP server on 127.0.0.1:0 answering every request per its [`Mode`] and recording all
/// bytes it received. Its threads stop when it is dropped (and after 120 s at the latest).
#[derive(Debug)]
pub struct Fixture {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<u8>>>,
    connections: Arc<AtomicU64>,
    acceptor: Option<JoinHandle<()>>,
}

impl Fixture {
    pub fn start(mode: Mode) -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fixture");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("fixture addr");
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicU64::new(0));
        let acceptor = {
            let stop = stop.clone();
            let received = received.clone();
            let connections = connections.clone();
            thread::spawn(move || {
                let born = Instant::now();
                let mut handlers = Vec::new();
                while !stop.load(Ordering::Relaxed) && born.elapsed() < FIXTURE_MAX_LIFE {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            connections.fetch_add(1, Ordering::Relaxed);
                            let stop = stop.clone();
                            let received = received.clone();
                            handlers.push(thread::spawn(move || {
                                serve_conn(stream, mode, &stop, &received, born);
                            }));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(2));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    }
                    handlers.retain(|h: &JoinHandle<()>| !h.is_finished());
                }
                stop.store(true, Ordering::Relaxed);
                for h in handlers {
                    let _ = h.join();
                }
            })
        };
        Fixture {
            addr,
            stop,
            received,
            connections,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// All bytes received so far, over all connections, in arrival order per connection
    /// (connections interleave only when several are open at once).
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Length of a complete request at the start of `buf` (head plus `Content-Length` body), if
/// it is all there.
fn complete_request(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let body_len = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (buf.len() >= head_end + body_len).then_some(head_end + body_len)
}

fn huge_head() -> Vec<u8> {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    let filler = "x".repeat(1000);
    for i in 0..128 {
        head.extend_from_slice(format!("X-Filler-{i}: {filler}\r\n").as_bytes());
    }
    head.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
    head
}

/// Sets SO_LINGER {on, 0} so that closing the socket sends RST.
fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a pointer to a properly sized `linger`.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
}

fn serve_conn(
    mut stream: TcpStream,
    mode: Mode,
    stop: &AtomicBool,
    received: &Mutex<Vec<u8>>,
    born: Instant,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_nodelay(true);
    let mut pending = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) && born.elapsed() < FIXTURE_MAX_LIFE {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                received.lock().unwrap().extend_from_slice(&buf[..n]);
                pending.extend_from_slice(&buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        while let Some(len) = complete_request(&pending) {
            pending.drain(..len);
            let answered = match mode {
                Mode::Ok => stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
                Mode::Garbage => stream.write_all(b"\x00\x01garbage, not HTTP at all\r\n\r\n"),
                Mode::HugeHeaders => stream.write_all(&huge_head()),
                Mode::BadChunk => stream.write_all(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                ),
                Mode::ResetMidBody => {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
                    let _ = stream.write_all(&[b'a'; 10]);
                    thread::sleep(Duration::from_millis(20));
                    set_linger_zero(&stream);
                    return; // drop -> RST
                }
                Mode::CloseMidHead => {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Le");
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                    // Let the FIN go out after the data; the drop then closes the socket.
                    thread::sleep(Duration::from_millis(20));
                    return;
                }
            };
            if answered.is_err() {
                return;
            }
        }
    }
}

/// Splits a recorded stream of requests (each with an optional `Content-Length` body) into
/// `(head, body)` pairs. Trailing incomplete bytes are ignored.
pub fn split_requests(mut bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(len) = complete_request(bytes) {
        let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        out.push((
            String::from_utf8_lossy(&bytes[..head_end]).into_owned(),
            bytes[head_end..len].to_vec(),
        ));
        bytes = &bytes[len..];
    }
    out
}

/// The value of header `name` (case-insensitive) in a request or response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// Stops a child with SIGSTOP `after` from now, for `length`, then continues it (SIGCONT),
/// from a helper thread. Dropping the `Stall` waits for that thread, so the SIGCONT is always
/// sent and no signal can outlive the test: declare it *after* the child's [`ChildGuard`] so it
/// is dropped (joined) before the guard kills and reaps the child.
#[derive(Debug)]
pub struct Stall(Option<JoinHandle<()>>);

impl Stall {
    pub fn start(child: &ChildGuard, after: Duration, length: Duration) -> Stall {
        let pid = child.pid();
        Stall(Some(thread::spawn(move || {
            thread::sleep(after);
            // SAFETY: kill(2) on the PID of a child the test started; the child is not reaped
            // before this thread is joined (see the type's docs).
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            thread::sleep(length);
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        })))
    }

    /// Waits until the stall is over (the child continued).
    pub fn join(mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Stall {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_listening_reads_the_address() {
        assert_eq!(
            parse_listening("blaster serve: listening on http://127.0.0.1:8080/ (2 threads)\n"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_listening("listening on http://[::1]:9/"),
            Some("[::1]:9".parse().unwrap())
        );
        assert_eq!(parse_listening("starting"), None);
    }

    #[test]
    fn smoke_args_read_every_smoke_line() {
        let src = "# Plan: x\n#\n# smoke: -e A=1 -e B=2s\n# smoke: -e C=50/s\n\n[scenarios.a]\n";
        assert_eq!(
            smoke_args(src).unwrap(),
            ["-e", "A=1", "-e", "B=2s", "-e", "C=50/s"]
        );
        assert_eq!(
            smoke_args("# smoke: (none: it is short)\n").unwrap(),
            Vec::<String>::new()
        );
        assert!(
            smoke_args("# Plan: x\n")
                .unwrap_err()
                .contains("no \"# smoke:\" line")
        );
        assert!(
            smoke_args("# smoke: -e A=1 -d 2s\n")
                .unwrap_err()
                .contains("-d")
        );
        assert!(smoke_args("# smoke: -e A\n").is_err());
    }

    #[test]
    fn split_requests_handles_bodies_and_pipelining() {
        let raw = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\nGET /c";
        let reqs = split_requests(raw);
        assert_eq!(reqs.len(), 2);
        assert!(reqs[0].0.starts_with("POST /a "));
        assert_eq!(reqs[0].1, b"abc");
        assert_eq!(header(&reqs[0].0, "content-length"), Some("3"));
        assert!(reqs[1].0.starts_with("GET /b "));
    }

    #[test]
    fn fixture_ok_mode_answers_and_records() {
        let fx = Fixture::start(Mode::Ok);
        let mut s = TcpStream::connect(fx.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
        drop(s);
        assert_eq!(fx.received(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(fx.connections(), 1);
    }

    #[test]
    fn fixture_reset_mode_resets() {
        let fx = Fixture::start(Mode::ResetMidBody);
        let mut s = TcpStream::connect(fx.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        let err = loop {
            match s.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Some(e.kind()),
            }
        };
        assert_eq!(
            err,
            Some(std::io::ErrorKind::ConnectionReset),
            "got {got:?}"
        );
    }
}
