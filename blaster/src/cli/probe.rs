//! `blaster probe`: runs the eBPF probe on this (target) host and shows what the kernel saw
//! per watched port. The probe itself lives in [`crate::probe`], compiled only with the
//! `probe` feature (`cargo xtask build`); without it this command says how to get it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::units;

#[derive(Debug, Args, Clone)]
pub struct ProbeArgs {
    /// Listening port to watch (repeatable).
    #[arg(long = "port", value_name = "PORT", required_unless_present = "check")]
    pub ports: Vec<u16>,
    /// List what works on this kernel (program types, tracefs, BTF, privileges) and exit.
    #[arg(long)]
    pub check: bool,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(short = 'd', long, value_parser = units::parse_duration)]
    pub duration: Option<Duration>,
    /// How often the live summary is printed.
    #[arg(long, default_value = "1s", value_parser = units::parse_duration)]
    pub interval: Duration,
    /// Serve the current snapshot as JSON at http://ADDR/snapshot (loopback by default: give
    /// the flag alone for 127.0.0.1:9465).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9465")]
    pub listen: Option<SocketAddr>,
    /// Write the final snapshot as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Do not trace accept(2)/accept4(2): for servers that accept through io_uring. Any
    /// attached syscall tracepoint slows every syscall on the host a little.
    #[arg(long)]
    pub no_accept_syscalls: bool,
    /// Do not trace io_uring completions: for servers that do not accept through
    /// io_uring. The program runs for every completion of every ring on the host.
    #[arg(long)]
    pub no_io_uring: bool,
    /// The cgroup v2 directory whose sockets the sock_ops program (server-side handshake
    /// time) watches, e.g. a container's. Default: the root cgroup v2 (every process);
    /// mounted for a moment when no cgroup2 is mounted.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Attach the per-read programs (receive-queue wait and srtt: they run for every data
    /// arrival and read on the host) only this share of the time, e.g. 10%: at the start of
    /// each --recv-sample-period. Their histograms are then samples of that share of the
    /// time (the report says which share); everything else is still watched all the time.
    /// For a busy production host where the full probe costs too much.
    #[arg(long, value_name = "PERCENT", value_parser = parse_share)]
    pub recv_sample: Option<f64>,
    /// One sampling cycle of --recv-sample.
    #[arg(long, default_value = "1s", value_name = "DUR", value_parser = units::parse_duration)]
    pub recv_sample_period: Duration,
}

/// `10%` (or `0.1`): a share above 0 and at most 1.
fn parse_share(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("\"{s}\" is not a share: write a percentage such as 10%"))?;
    if !(v > 0.0 && v <= 1.0) {
        return Err(format!(
            "\"{s}\" is out of range: give more than 0% and at most 100%"
        ));
    }
    Ok(v)
}

#[cfg(not(feature = "probe"))]
pub fn run(args: &ProbeArgs) -> Result<i32> {
    let _ = args;
    anyhow::bail!(
        "this blaster was built without the eBPF probe: build it with `cargo xtask setup && cargo xtask build` \
         (nightly toolchain and bpf-linker; see docs/PROBE.md), then run target/debug/blaster probe ... as root"
    )
}

#[cfg(feature = "probe")]
pub fn run(args: &ProbeArgs) -> Result<i32> {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};

    use crate::probe::{Probe, ProbeOptions, ProbeSnapshot};
    use crate::report::endpoint::{Endpoint, Render};

    if args.check {
        let mut all_ok = true;
        for (what, result) in crate::probe::check() {
            // Items the probe does not need yet are named "(optional ...)" by `check()`.
            match result {
                Ok(()) => println!("ok    {what}"),
                Err(why) if what.contains("(optional") => println!("warn  {what}: {why}"),
                Err(why) => {
                    all_ok = false;
                    println!("FAIL  {what}: {why}");
                }
            }
        }
        return Ok(if all_ok {
            super::EXIT_OK
        } else {
            super::EXIT_ERROR
        });
    }
    let stop = super::install_stop_signals()?;
    let probe = Probe::start_with(
        &args.ports,
        &ProbeOptions {
            accept_syscalls: !args.no_accept_syscalls,
            io_uring: !args.no_io_uring,
            cgroup: args.cgroup.clone(),
        },
    )?;
    if let Some(cg) = &probe.sock_ops_cgroup {
        eprintln!("blaster probe: sock_ops (server-side handshake time) attached to the {cg}");
    }
    for (what, why) in &probe.skipped {
        let left_out = (args.no_accept_syscalls && what.starts_with("syscalls:"))
            || (args.no_io_uring && what.starts_with("io_uring:"));
        if !left_out {
            eprintln!("blaster probe: warning: {what} not attached: {why}");
        }
    }
    for what in &probe.offsets_missing {
        eprintln!(
            "blaster probe: warning: {what}: io_uring accepts, accepts without a peer address \
             or the ports of some dropped packets are not seen"
        );
    }
    // Shared with the endpoint, which reads the maps afresh for every request: a run's
    // start and end snapshots (`blaster run --probe`) must not lag by an interval.
    let probe = Arc::new(Mutex::new(probe));
    let mut latest = ProbeSnapshot::default();
    let _endpoint = match args.listen {
        Some(addr) => {
            let probe = Arc::clone(&probe);
            let render: Render = Arc::new(move || {
                let probe = probe.lock().unwrap_or_else(|e| e.into_inner());
                match probe.snapshot() {
                    Ok(snap) => serde_json::to_string_pretty(&snap).unwrap_or_default(),
                    Err(e) => format!("{{\"error\": {:?}}}", format!("{e:#}")),
                }
            });
            let e = Endpoint::start(addr, "/snapshot", "application/json", "--listen", render)?;
            eprintln!("blaster probe: snapshot at http://{}/snapshot", e.addr());
            Some(e)
        }
        None => None,
    };
    println!(
        "blaster probe: watching port(s) {:?} (Ctrl-C stops)",
        args.ports
    );
    let sample = args.recv_sample.filter(|&share| share < 1.0).map(|share| {
        (
            share,
            args.recv_sample_period.max(Duration::from_millis(50)),
        )
    });
    if let Some((share, period)) = sample {
        println!(
            "blaster probe: receive-queue wait and srtt sampled: attached {:.0}% of the time ({} ms of every {} ms)",
            share * 100.0,
            period.mul_f64(share).as_millis(),
            period.as_millis()
        );
    }
    let started = std::time::Instant::now();
    let mut next = started + args.interval;
    loop {
        if let Some((share, period)) = sample {
            // Attached during the first `share` of each cycle.
            let into = started.elapsed().as_secs_f64() % period.as_secs_f64();
            let on = into < period.as_secs_f64() * share;
            probe
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_recv_attached(on)?;
        }
        let done =
            stop.load(Ordering::Relaxed) || args.duration.is_some_and(|d| started.elapsed() >= d);
        if done || std::time::Instant::now() >= next {
            let snap = probe.lock().unwrap_or_else(|e| e.into_inner()).snapshot()?;
            for p in &snap.ports {
                println!("{}", summary_line(snap.elapsed_ms, p));
            }
            if snap.listen_overflows + snap.listen_drops > 0 {
                println!(
                    "           host: listen overflows {}  listen drops {} (all ports)",
                    snap.listen_overflows, snap.listen_drops
                );
            }
            latest = snap;
            next += args.interval;
        }
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&latest)?;
        std::fs::write(path, text).map_err(|e| {
            anyhow::anyhow!("cannot write the probe snapshot to {}: {e}", path.display())
        })?;
    }
    Ok(if stop.load(Ordering::Relaxed) {
        super::EXIT_INTERRUPTED
    } else {
        super::EXIT_OK
    })
}

/// One port's line of the live summary.
#[cfg(feature = "probe")]
fn summary_line(elapsed_ms: u64, p: &crate::probe::PortProbe) -> String {
    use std::fmt::Write as _;
    let us = |ns: u64| units::format_duration_us(ns / 1_000);
    let mut line = format!(
        "[{:>6.1}s] port {:<5} conns {}  handshake p50 {} p99 {}  accept wait p50 {} p99 {}  recv wait p50 {} p99 {}  srtt p50 {}  local connects {} (p50 {})  retrans {} (SYN-ACK {})  resets sent {} recv {}",
        elapsed_ms as f64 / 1e3,
        p.port,
        p.connections,
        us(p.server_handshake.p50_ns),
        us(p.server_handshake.p99_ns),
        us(p.accept_wait.p50_ns),
        us(p.accept_wait.p99_ns),
        us(p.recv_queue_wait.p50_ns),
        us(p.recv_queue_wait.p99_ns),
        us(p.srtt.p50_ns),
        p.handshake.count,
        us(p.handshake.p50_ns),
        p.retransmits,
        p.synack_retransmits,
        p.resets_sent,
        p.resets_received,
    );
    if p.drops > 0 {
        let _ = write!(line, "  drops {}", p.drops);
        for d in p.drops_by_reason.iter().take(3) {
            let name = if d.name.is_empty() {
                d.reason.to_string()
            } else {
                d.name.clone()
            };
            let _ = write!(line, " {name}:{}", d.count);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn recv_sample_takes_a_share() {
        use super::parse_share;
        assert_eq!(parse_share("10%"), Ok(0.1));
        assert_eq!(parse_share(" 100 % "), Ok(1.0));
        assert_eq!(parse_share("0.25"), Ok(0.25));
        for bad in ["0%", "101%", "-5%", "ten", ""] {
            let e = parse_share(bad).unwrap_err();
            assert!(e.contains(&format!("\"{bad}\"")), "{e}");
        }
    }

    use clap::Parser as _;

    use crate::cli::{Cli, Command};

    fn probe_args(argv: &[&str]) -> super::ProbeArgs {
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Probe(a) => a,
            other => panic!("not a probe command: {other:?}"),
        }
    }

    #[test]
    fn probe_cgroup_flag_defaults_to_the_root() {
        let a = probe_args(&["blaster", "probe", "--port", "8080"]);
        assert_eq!(a.cgroup, None);
        let a = probe_args(&[
            "blaster",
            "probe",
            "--port",
            "8080",
            "--cgroup",
            "/sys/fs/cgroup/system.slice",
        ]);
        assert_eq!(
            a.cgroup.as_deref(),
            Some(std::path::Path::new("/sys/fs/cgroup/system.slice"))
        );
        assert!(Cli::try_parse_from(["blaster", "probe", "--port", "1", "--cgroup"]).is_err());
    }
}
