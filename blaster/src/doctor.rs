//! `blaster doctor`: what on this host limits a load run, and the command to change it.
//!
//! [`checks`] reads the limits a run of N connections runs into (`getrlimit`, `/proc/sys`,
//! `/proc/meminfo`, `/sys` cpufreq, a test io_uring) and judges each against what that run
//! needs. Every judgement is a pure function from the values read to a [`Check`], so the rules
//! are unit-tested with synthetic values; only [`checks`] touches the host. [`render`] prints
//! the table and the commands (runtime and persistent); [`run`] is the subcommand.
//!
//! Exit codes of [`run`]: [`EXIT_NOTHING_LIMITS`] (0) when no check is `limit`,
//! [`EXIT_LIMITED`] (2) when at least one is. `warn` and `unknown` do not change the exit code.
//!
//! The doctor only reads: it never changes a limit or a sysctl. The one thing it creates is a
//! throw-away io_uring of 8 entries (with a table of direct descriptors) to prove that rings
//! can be set up here.
//!
//! Some judgements use figures measured on a 2-core Linux 6.18 load node
//! (shared/ENGINE-NOTES.md), not on the host being checked: ~7.9 KB of kernel memory per
//! loopback connection pair, 50 rings x 20,000 direct slots holding 1,000,000 connections in
//! one process, and `connect()`'s port search slowing past ~14,000 connections per
//! (source, destination) tuple with the default port range. The output says so.

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::units::format_thousands;

/// Connections judged against when the user gives no target.
pub const DEFAULT_TARGET_CONNECTIONS: u64 = 100_000;
/// Exit code of [`run`]: nothing limits a run of the target size.
pub const EXIT_NOTHING_LIMITS: i32 = 0;
/// Exit code of [`run`]: at least one check is [`Status::Limit`].
pub const EXIT_LIMITED: i32 = 2;

/// Kernel slab per loopback connection pair (client and server side), measured on the
/// reference node of shared/ENGINE-NOTES.md.
const PAIR_BYTES: u64 = 7_900;
/// Rings and direct slots per ring that held 1,000,000 loopback connections in one process
/// on the reference node.
const MEASURED_RINGS: u64 = 50;
const MEASURED_SLOTS: u64 = 20_000;
/// Beyond twice the measured ring count the doctor calls the descriptor limit a limit.
const MAX_RINGS: u64 = 2 * MEASURED_RINGS;
/// The kernel's cap on one ring's registered file table (`IORING_MAX_FIXED_FILES`).
const IORING_MAX_FIXED_FILES: u64 = 1 << 20;
/// The listen backlog worth having for a connection storm (largest common value).
const STORM_BACKLOG: u64 = 65_535;
/// The engine's receive buffers: 4 KiB each, at most 8192 per ring (engine/worker.rs).
const RECV_BUF_SIZE: u64 = 4096;
const MAX_RECV_BUFS: u64 = 8192;
/// Conventional value blaster suggests for `ulimit -n` (also `IORING_MAX_FIXED_FILES`).
const SUGGESTED_NOFILE: u64 = 1 << 20;
/// The widest usual ephemeral port range.
const WIDE_PORTS: (u64, u64) = (1024, 65535);

/// How a check judges this host for the target run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Enough for the target.
    Ok,
    /// Works, but costs speed or fails for some kinds of runs (loopback target, churn).
    Warn,
    /// The target run will fail or stall on this.
    Limit,
    /// Could not be read; the value says why.
    Unknown,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Limit => "LIMIT",
            Status::Unknown => "unknown",
        }
    }
}

/// One limit of this host, judged for the target run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The sysctl or limit name, e.g. `fs.nr_open`.
    pub name: &'static str,
    /// The value read on this host (or `unknown`; then [`Check::detail`] says why).
    pub value: String,
    pub status: Status,
    /// What it limits, in a few words (e.g. "connections per ring").
    pub limits: String,
    /// Why this status, with the numbers of the target run (or why the value is unknown).
    pub detail: String,
    /// The exact command(s) to change it, one per line (`sysctl -w ...`, `ulimit -n ...`).
    pub advice: Option<String>,
}

/// Why a value could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unread {
    /// The file does not exist (as opposed to an error reading or parsing it).
    missing: bool,
    reason: String,
}

/// A value read from the host, or why not.
type Read<T> = std::result::Result<T, Unread>;

impl Unread {
    fn missing(reason: impl Into<String>) -> Unread {
        Unread {
            missing: true,
            reason: reason.into(),
        }
    }

    fn failed(reason: impl Into<String>) -> Unread {
        Unread {
            missing: false,
            reason: reason.into(),
        }
    }
}

/// What a run of `target` connections needs, as far as the doctor can tell.
#[derive(Debug, Clone, Copy)]
struct Run {
    target: u64,
    cpus: u64,
    /// Direct-descriptor slots one ring can register: blaster raises the soft RLIMIT_NOFILE
    /// to the hard one, and the kernel caps a table at `IORING_MAX_FIXED_FILES`.
    slots_per_ring: u64,
}

impl Run {
    fn new(target: u64, cpus: u64, nofile_hard: Option<u64>) -> Run {
        Run {
            target: target.max(1),
            cpus: cpus.max(1),
            slots_per_ring: nofile_hard.unwrap_or(1024).clamp(1, IORING_MAX_FIXED_FILES),
        }
    }

    /// Rings the target needs by the descriptor table alone.
    fn rings_needed(&self) -> u64 {
        self.target.div_ceil(self.slots_per_ring)
    }

    /// Rings a run will set up: at least one per worker thread.
    fn rings(&self) -> u64 {
        self.rings_needed().max(self.cpus.min(self.target))
    }
}

fn check(
    name: &'static str,
    value: impl Into<String>,
    status: Status,
    limits: &str,
    detail: impl Into<String>,
    advice: Option<String>,
) -> Check {
    Check {
        name,
        value: value.into(),
        status,
        limits: limits.to_string(),
        detail: detail.into(),
        advice,
    }
}

fn unknown(name: &'static str, limits: &str, why: &Unread) -> Check {
    check(
        name,
        "unknown",
        Status::Unknown,
        limits,
        why.reason.clone(),
        None,
    )
}

/// Bytes in binary units, one decimal: `2.2 GiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn limit_text(v: u64) -> String {
    if v == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        v.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Judgements: pure functions of the values read.
// ---------------------------------------------------------------------------------------------

/// `6.18.44-fc` -> `(6, 18)`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn judge_kernel(release: &Read<String>) -> Check {
    const NAME: &str = "kernel";
    const WHAT: &str = "io_uring features";
    let release = match release {
        Ok(r) => r,
        Err(e) => return unknown(NAME, WHAT, e),
    };
    let Some(version) = kernel_version(release) else {
        return unknown(
            NAME,
            WHAT,
            &Unread::failed(format!("cannot parse the release \"{release}\"")),
        );
    };
    let (status, verdict) = if version < (6, 1) {
        (
            Status::Limit,
            "too old: blaster needs Linux 6.1 (DEFER_TASKRUN, direct sockets)",
        )
    } else if version < (6, 11) {
        (
            Status::Warn,
            "runs, but --source needs Linux 6.11 (bind on the ring)",
        )
    } else {
        (
            Status::Ok,
            "6.1+ for DEFER_TASKRUN and direct sockets, 6.11+ for the bind of --source",
        )
    };
    let advice = (status != Status::Ok).then(|| {
        "install a Linux 6.11 or newer kernel (distribution HWE/backports kernel) and reboot"
            .to_string()
    });
    check(NAME, release.clone(), status, WHAT, verdict, advice)
}

/// `disabled`: `kernel.io_uring_disabled`; `privileged`: CAP_SYS_ADMIN or a member of
/// `kernel.io_uring_group`; `probe`: a test ring with SINGLE_ISSUER | DEFER_TASKRUN (`Ok(true)`),
/// only a plain ring (`Ok(false)`), or the error.
fn judge_io_uring(
    disabled: &Read<u64>,
    privileged: bool,
    probe: &std::result::Result<bool, String>,
) -> Check {
    const NAME: &str = "kernel.io_uring_disabled";
    const WHAT: &str = "io_uring for this process";
    let enable = Some("sysctl -w kernel.io_uring_disabled=0".to_string());
    let value = match disabled {
        Ok(v) => v.to_string(),
        Err(e) if e.missing => "no such sysctl".to_string(),
        Err(e) => return unknown(NAME, WHAT, e),
    };
    let (status, verdict, advice) = match (disabled, probe) {
        (Ok(2), _) => (
            Status::Limit,
            "2 = off for everyone: blaster cannot run".to_string(),
            enable,
        ),
        (Ok(1), _) if !privileged => (
            Status::Limit,
            "1 = only root and kernel.io_uring_group, and this process is neither"
                .to_string(),
            Some(
                "sysctl -w kernel.io_uring_disabled=0\n\
                 or: sysctl -w kernel.io_uring_group=<gid of a group of the blaster user>"
                    .to_string(),
            ),
        ),
        (_, Err(e)) => (
            Status::Limit,
            format!("a test ring could not be set up here: {e}"),
            Some(
                "check `sysctl kernel.io_uring_disabled`, seccomp/container profiles (docker: --security-opt seccomp=unconfined) and `ulimit -l`"
                    .to_string(),
            ),
        ),
        (_, Ok(false)) => (
            Status::Warn,
            "a test ring got no SINGLE_ISSUER | DEFER_TASKRUN: about 2.7x the CPU per request (measured on the reference node)"
                .to_string(),
            Some("install a Linux 6.1 or newer kernel".to_string()),
        ),
        (Err(_), Ok(true)) => (
            Status::Ok,
            "no switch before Linux 6.6; a test ring with SINGLE_ISSUER | DEFER_TASKRUN was set up here"
                .to_string(),
            None,
        ),
        (Ok(_), Ok(true)) => (
            Status::Ok,
            "0 = on for everyone (1 root and kernel.io_uring_group, 2 nobody); a test ring with SINGLE_ISSUER | DEFER_TASKRUN was set up here"
                .to_string(),
            None,
        ),
    };
    check(NAME, value, status, WHAT, verdict, advice)
}

/// `nofile`: (soft, hard); `nr_open`: `fs.nr_open` if read; `table`: slots a test ring
/// registered (or the error), if a test ring was made.
fn judge_nofile(
    nofile: &Read<(u64, u64)>,
    nr_open: Option<u64>,
    table: Option<&std::result::Result<u64, String>>,
    run: Run,
) -> Check {
    const NAME: &str = "RLIMIT_NOFILE";
    const WHAT: &str = "connections per ring";
    let (soft, hard) = match nofile {
        Ok(v) => *v,
        Err(e) => return unknown(NAME, WHAT, e),
    };
    let value = format!("soft {}, hard {}", limit_text(soft), limit_text(hard));
    // blaster raises soft to hard; one ring's table of direct descriptors is capped by it.
    let tested = match table {
        Some(Ok(n)) => format!(
            "a test ring registered {} direct slots here; ",
            format_thousands(*n)
        ),
        Some(Err(e)) => format!("a test table of direct slots failed here ({e}); "),
        None => String::new(),
    };
    let per_ring = run.slots_per_ring;
    let rings = run.rings_needed();
    let (status, verdict) = if rings <= run.cpus {
        (
            Status::Ok,
            format!(
                "{tested}{} connections fit in {} ring(s) of {} slots, one per CPU",
                format_thousands(run.target),
                rings,
                format_thousands(per_ring)
            ),
        )
    } else if rings <= MAX_RINGS {
        (
            Status::Warn,
            format!(
                "{tested}{} connections need {} rings of {} slots (the hard limit), more than the {} CPUs: several rings per thread (measured on the reference node: {} rings x {} slots held 1M)",
                format_thousands(run.target),
                rings,
                format_thousands(per_ring),
                run.cpus,
                MEASURED_RINGS,
                format_thousands(MEASURED_SLOTS)
            ),
        )
    } else {
        (
            Status::Limit,
            format!(
                "{tested}{} connections would need {} rings of {} slots (the hard limit), past the {} rings known to work (measured on the reference node: {} x {})",
                format_thousands(run.target),
                format_thousands(rings),
                format_thousands(per_ring),
                MAX_RINGS,
                MEASURED_RINGS,
                format_thousands(MEASURED_SLOTS)
            ),
        )
    };
    let advice = (status != Status::Ok).then(|| {
        let ceiling = nr_open
            .unwrap_or(SUGGESTED_NOFILE)
            .min(SUGGESTED_NOFILE)
            .max(per_ring);
        let raise = if ceiling > hard || hard == libc::RLIM_INFINITY {
            format!(
                "ulimit -n {ceiling}    # as root, in the shell that starts blaster (sets soft and hard)"
            )
        } else {
            format!(
                "sysctl -w fs.nr_open={SUGGESTED_NOFILE}    # the ceiling of ulimit -n, then:\nulimit -n {SUGGESTED_NOFILE}    # as root, in the shell that starts blaster"
            )
        };
        if rings <= MAX_RINGS {
            format!(
                "{raise}\n# or leave it: blaster's workers drive {rings} rings between them (several per thread), up to {} connections each",
                format_thousands(per_ring)
            )
        } else {
            raise
        }
    });
    check(NAME, value, status, WHAT, verdict, advice)
}

fn judge_nr_open(nr_open: &Read<u64>, run: Run) -> Check {
    const NAME: &str = "fs.nr_open";
    const WHAT: &str = "how far ulimit -n can go";
    let v = match nr_open {
        Ok(v) => *v,
        Err(e) => return unknown(NAME, WHAT, e),
    };
    // One ring per CPU would need this many slots per ring.
    let wanted = run.target.div_ceil(run.cpus).min(IORING_MAX_FIXED_FILES);
    let rings_at_ceiling = run.target.div_ceil(v.clamp(1, IORING_MAX_FIXED_FILES));
    let (status, verdict) = if v >= wanted {
        (
            Status::Ok,
            format!(
                "ulimit -n can go to {}: enough slots for one ring per CPU",
                format_thousands(v.min(IORING_MAX_FIXED_FILES))
            ),
        )
    } else if rings_at_ceiling <= MAX_RINGS {
        (
            Status::Warn,
            format!(
                "ulimit -n cannot go above it; even there {} connections need {} rings",
                format_thousands(run.target),
                rings_at_ceiling
            ),
        )
    } else {
        (
            Status::Limit,
            format!(
                "ulimit -n cannot go above it; even there {} connections need {} rings (over {})",
                format_thousands(run.target),
                format_thousands(rings_at_ceiling),
                MAX_RINGS
            ),
        )
    };
    let advice = (status != Status::Ok)
        .then(|| format!("sysctl -w fs.nr_open={}", wanted.max(SUGGESTED_NOFILE)));
    check(NAME, v.to_string(), status, WHAT, verdict, advice)
}

/// `file_nr`: the three numbers of `/proc/sys/fs/file-nr` (allocated, free, max).
fn judge_file_max(file_nr: &Read<Vec<u64>>, run: Run) -> Check {
    const NAME: &str = "fs.file-max";
    const WHAT: &str = "open files, system-wide";
    let (allocated, max) = match file_nr {
        Ok(v) if v.len() >= 3 => (v[0], v[2]),
        Ok(_) => {
            return unknown(
                NAME,
                WHAT,
                &Unread::failed("fs/file-nr has fewer than 3 numbers"),
            );
        }
        Err(e) => return unknown(NAME, WHAT, e),
    };
    let free = max.saturating_sub(allocated);
    let (status, verdict) = if free < run.target {
        (
            Status::Limit,
            format!(
                "{} free, fewer than the {} connections (a direct descriptor is still an open file)",
                format_thousands(free),
                format_thousands(run.target)
            ),
        )
    } else if free < run.target.saturating_mul(2) {
        (
            Status::Warn,
            format!(
                "{} free: enough for blaster's sockets, not also for a target on this host (as many again)",
                format_thousands(free)
            ),
        )
    } else {
        (
            Status::Ok,
            format!(
                "{} free: enough for blaster's sockets and a loopback target's",
                format_thousands(free)
            ),
        )
    };
    let advice = (status != Status::Ok).then(|| {
        let want = allocated
            .saturating_add(run.target.saturating_mul(2))
            .saturating_add(65_536)
            .max(2_097_152);
        format!("sysctl -w fs.file-max={want}")
    });
    check(
        NAME,
        format!(
            "{} ({} in use)",
            format_thousands(max),
            format_thousands(allocated)
        ),
        status,
        WHAT,
        verdict,
        advice,
    )
}

/// Counts the ports listed in `ip_local_reserved_ports` ("8080,9000-9010").
fn reserved_port_count(text: &str) -> u64 {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => u64::from(p.parse::<u64>().is_ok()),
        })
        .sum()
}

/// `--source` range of `n` loopback addresses from 127.0.0.2.
fn loopback_sources(n: u64) -> String {
    let first = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    let last = Ipv4Addr::from(first.saturating_add(n - 1));
    format!("127.0.0.2-{last}")
}

/// `range`: (low, high) of `ip_local_port_range`; `reserved`: ports reserved inside it.
fn judge_port_range(range: &Read<(u64, u64)>, reserved: u64, run: Run) -> Check {
    const NAME: &str = "net.ipv4.ip_local_port_range";
    const WHAT: &str = "connections per (source, target) pair";
    let (lo, hi) = match range {
        Ok(v) => *v,
        Err(e) => return unknown(NAME, WHAT, e),
    };
    let ports = (hi + 1).saturating_sub(lo).saturating_sub(reserved).max(1);
    // connect() searches ports of one parity first, so a tuple fills slowly past about half
    // of the range (measured on the reference node: past ~14,000 of 28,232).
    let comfortable = (ports / 2).max(1);
    let tuples = run.target.div_ceil(comfortable);
    let (status, verdict) = if run.target <= comfortable {
        (
            Status::Ok,
            format!(
                "{} ports: {} connections fit one (source address, target address:port) tuple",
                format_thousands(ports),
                format_thousands(run.target)
            ),
        )
    } else if run.target <= ports {
        (
            Status::Warn,
            format!(
                "{} ports; connect() slows past ~{} per (source address, target address:port): spread {} connections over {} source addresses or target ports",
                format_thousands(ports),
                format_thousands(comfortable),
                format_thousands(run.target),
                tuples
            ),
        )
    } else {
        (
            Status::Limit,
            format!(
                "one source address reaches one target address:port at most {} times; {} connections need {} source addresses (~{} each) or as many target ports",
                format_thousands(ports),
                format_thousands(run.target),
                format_thousands(tuples),
                format_thousands(comfortable)
            ),
        )
    };
    let advice = (status != Status::Ok).then(|| {
        let wide_ports = WIDE_PORTS.1 - WIDE_PORTS.0 + 1;
        let wide_tuples = run.target.div_ceil(wide_ports / 2);
        let mut a = format!(
            "blaster run --source {} ...    # {} loopback sources; on a NIC add addresses: ip addr add 10.0.0.X/24 dev eth0",
            loopback_sources(tuples),
            format_thousands(tuples)
        );
        if (lo, hi) != WIDE_PORTS {
            let _ = write!(
                a,
                "\nsysctl -w net.ipv4.ip_local_port_range=\"{} {}\"    # {} ports; then {} sources suffice",
                WIDE_PORTS.0,
                WIDE_PORTS.1,
                format_thousands(wide_ports),
                format_thousands(wide_tuples)
            );
        }
        a
    });
    check(NAME, format!("{lo}-{hi}"), status, WHAT, verdict, advice)
}

/// `tcp_mem`: min, pressure, max in pages of `page` bytes.
fn judge_tcp_mem(tcp_mem: &Read<Vec<u64>>, page: u64, run: Run) -> Check {
    const NAME: &str = "net.ipv4.tcp_mem";
    const WHAT: &str = "TCP buffer memory";
    let (min, pressure, max) = match tcp_mem {
        Ok(v) if v.len() >= 3 => (v[0], v[1], v[2]),
        Ok(_) => return unknown(NAME, WHAT, &Unread::failed("fewer than 3 numbers")),
        Err(e) => return unknown(NAME, WHAT, e),
    };
    // Busy connections: one page each at the client; a loopback target doubles it.
    let one_end = run.target;
    let both_ends = run.target.saturating_mul(2);
    let (status, verdict) = if one_end > max {
        (
            Status::Limit,
            format!(
                "{} busy connections charge ~{} pages (a socket with data queued charges at least one), over the max {}: buffer allocations fail",
                format_thousands(run.target),
                format_thousands(one_end),
                format_thousands(max)
            ),
        )
    } else if both_ends > pressure {
        (
            Status::Warn,
            format!(
                "busy connections with a loopback target charge ~{} pages (one per socket with data queued), over the pressure mark {}: the kernel shrinks buffers",
                format_thousands(both_ends),
                format_thousands(pressure)
            ),
        )
    } else {
        (
            Status::Ok,
            format!(
                "~{} pages when every connection and its loopback peer have data queued (one page each)",
                format_thousands(both_ends)
            ),
        )
    };
    let advice = (status != Status::Ok).then(|| {
        let new_pressure = pressure.max(both_ends);
        let new_max = max.max(both_ends.saturating_add(both_ends / 2));
        format!(
            "sysctl -w net.ipv4.tcp_mem=\"{min} {new_pressure} {new_max}\"    # pages of {page} B: max {}",
            bytes(new_max.saturating_mul(page))
        )
    });
    check(
        NAME,
        format!(
            "{min} {pressure} {max} (max {})",
            bytes(max.saturating_mul(page))
        ),
        status,
        WHAT,
        verdict,
        advice,
    )
}

/// Receive buffers of the engine's buffer rings for the run.
fn recv_buffer_bytes(run: Run) -> u64 {
    let rings = run.rings();
    let per_ring_conns = run.target.div_ceil(rings);
    let bufs = per_ring_conns
        .saturating_mul(2)
        .clamp(64, MAX_RECV_BUFS)
        .next_power_of_two();
    rings.saturating_mul(bufs).saturating_mul(RECV_BUF_SIZE)
}

/// `available_kib`: MemAvailable of /proc/meminfo.
fn judge_memory(available_kib: &Read<u64>, run: Run) -> Check {
    const NAME: &str = "MemAvailable";
    const WHAT: &str = "connections per node";
    let avail = match available_kib {
        Ok(kib) => kib.saturating_mul(1024),
        Err(e) => return unknown(NAME, WHAT, e),
    };
    let kernel = run.target.saturating_mul(PAIR_BYTES);
    let buffers = recv_buffer_bytes(run);
    let needed = kernel.saturating_add(buffers);
    let sum = format!(
        "{} connections ~ {} kernel (7.9 KB per loopback pair, measured on the reference node) + {} receive buffers",
        format_thousands(run.target),
        bytes(kernel),
        bytes(buffers)
    );
    let (status, verdict) = if needed > avail {
        (Status::Limit, format!("{sum}: more than available"))
    } else if needed > avail / 10 * 8 {
        (
            Status::Warn,
            format!("{sum}: over 80% of what is available"),
        )
    } else {
        (Status::Ok, sum)
    };
    let advice = (status != Status::Ok).then(|| {
        "stop other work on this node, put the target on another host (halves the kernel share), or split the run over several load nodes".to_string()
    });
    check(NAME, bytes(avail), status, WHAT, verdict, advice)
}

fn judge_somaxconn(somaxconn: &Read<u64>, run: Run) -> Check {
    const NAME: &str = "net.core.somaxconn";
    const WHAT: &str = "accept queue (connect storms)";
    let v = match somaxconn {
        Ok(v) => *v,
        Err(e) => return unknown(NAME, WHAT, e),
    };
    let burst = run.target.min(STORM_BACKLOG);
    let (status, verdict) = if v >= burst {
        (
            Status::Ok,
            "caps listen()'s backlog; holds a connect storm (matters on the target host)"
                .to_string(),
        )
    } else {
        (
            Status::Warn,
            format!(
                "caps listen()'s backlog (matters on the target host): a storm of {} connects overflows it if the target accepts slowly: SYNs are dropped and retried after 1 s",
                format_thousands(run.target)
            ),
        )
    };
    let advice = (status != Status::Ok).then(|| {
        format!(
            "sysctl -w net.core.somaxconn={STORM_BACKLOG}    # on the target host; the server must also ask for it (nginx: listen ... backlog={STORM_BACKLOG})"
        )
    });
    check(NAME, v.to_string(), status, WHAT, verdict, advice)
}

fn judge_syn_backlog(backlog: &Read<u64>, syncookies: &Read<u64>, run: Run) -> Check {
    const NAME: &str = "net.ipv4.tcp_max_syn_backlog";
    const WHAT: &str = "SYN queue (connect storms)";
    let v = match backlog {
        Ok(v) => *v,
        Err(e) => return unknown(NAME, WHAT, e),
    };
    let cookies = syncookies.as_ref().ok().copied();
    let burst = run.target.min(STORM_BACKLOG);
    let (status, verdict) = if v >= burst {
        (
            Status::Ok,
            "half-open connections a listener keeps; holds a connect storm (matters on the target host)"
                .to_string(),
        )
    } else if cookies == Some(0) {
        (
            Status::Warn,
            "half-open connections a listener keeps (target host): a connect storm overflows it and syncookies are off, so SYNs are dropped and retried after 1 s".to_string(),
        )
    } else {
        (
            Status::Warn,
            "half-open connections a listener keeps (target host): a connect storm overflows it and the kernel falls back to syncookies (connects work; `Possible SYN flooding` in dmesg)".to_string(),
        )
    };
    let advice = (status != Status::Ok).then(|| {
        format!("sysctl -w net.ipv4.tcp_max_syn_backlog={STORM_BACKLOG}    # on the target host")
    });
    let value = match cookies {
        Some(c) => format!("{v} (syncookies {c})"),
        None => v.to_string(),
    };
    check(NAME, value, status, WHAT, verdict, advice)
}

/// `max`/`count`: `net.netfilter.nf_conntrack_max` / `_count`; missing = module not loaded.
fn judge_conntrack(max: &Read<u64>, count: &Read<u64>, run: Run) -> Check {
    const NAME: &str = "net.netfilter.nf_conntrack_max";
    const WHAT: &str = "tracked connections";
    let max = match max {
        Ok(v) => *v,
        Err(e) if e.missing => {
            return check(
                NAME,
                "not loaded",
                Status::Ok,
                WHAT,
                "conntrack is not loaded: nothing to fill",
                None,
            );
        }
        Err(e) => return unknown(NAME, WHAT, e),
    };
    let count = count.as_ref().ok().copied();
    let need = run.target.saturating_add(count.unwrap_or(0));
    let (status, verdict) = if max >= need {
        (
            Status::Ok,
            format!(
                "room for {} connections (when full, new connections' packets are dropped)",
                format_thousands(run.target)
            ),
        )
    } else if count == Some(0) {
        (
            Status::Warn,
            format!(
                "loaded but tracking nothing now; if a firewall rule turns tracking on, {} connections overflow it",
                format_thousands(run.target)
            ),
        )
    } else {
        (
            Status::Limit,
            format!(
                "{} connections overflow it (`nf_conntrack: table full, dropping packet` in dmesg)",
                format_thousands(run.target)
            ),
        )
    };
    let advice = (status != Status::Ok).then(|| {
        let want = need.saturating_add(need / 4);
        format!(
            "sysctl -w net.netfilter.nf_conntrack_max={want}\n\
             echo {} > /sys/module/nf_conntrack/parameters/hashsize    # buckets: max / 4\n\
             or skip tracking for the test port: iptables -t raw -A PREROUTING -p tcp --dport PORT -j NOTRACK; iptables -t raw -A OUTPUT -p tcp --dport PORT -j NOTRACK",
            want / 4
        )
    });
    let value = match count {
        Some(c) => format!(
            "{} ({} tracked)",
            format_thousands(max),
            format_thousands(c)
        ),
        None => format_thousands(max),
    };
    check(NAME, value, status, WHAT, verdict, advice)
}

/// `memlock`: (soft, hard); `ipc_lock`: the process has CAP_IPC_LOCK (not limited).
fn judge_memlock(
    memlock: &Read<(u64, u64)>,
    ipc_lock: bool,
    kernel: Option<(u32, u32)>,
    run: Run,
) -> Check {
    const NAME: &str = "RLIMIT_MEMLOCK";
    const WHAT: &str = "io_uring pinned memory";
    let (soft, hard) = match memlock {
        Ok(v) => *v,
        Err(e) => return unknown(NAME, WHAT, e),
    };
    let old_kernel = kernel.is_some_and(|v| v < (5, 12));
    // Before 5.12: SQ (8192 x 64 B) + CQ (32768 x 16 B) + the buffer ring; after: the buffer
    // ring's entries (8192 x 16 B) when user memory is pinned.
    let per_ring: u64 = if old_kernel { 1_200 << 10 } else { 128 << 10 };
    let need = run.rings().saturating_mul(per_ring);
    let value = format!(
        "soft {}, hard {}",
        if soft == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            bytes(soft)
        },
        if hard == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            bytes(hard)
        }
    );
    let (status, verdict) = if ipc_lock {
        (
            Status::Ok,
            "not enforced: this process has CAP_IPC_LOCK (root); others need it for rings before Linux 5.12 and buffer rings after".to_string(),
        )
    } else if soft >= need {
        (
            Status::Ok,
            format!(
                "{} rings pin ~{} (whole rings before Linux 5.12, buffer rings after)",
                run.rings(),
                bytes(need)
            ),
        )
    } else {
        (
            Status::Limit,
            format!(
                "{} rings need ~{}: ring or buffer-ring setup fails with ENOMEM",
                run.rings(),
                bytes(need)
            ),
        )
    };
    let advice = (status != Status::Ok)
        .then(|| "ulimit -l unlimited    # as root, in the shell that starts blaster".to_string());
    check(NAME, value, status, WHAT, verdict, advice)
}

fn judge_max_map_count(max_map_count: &Read<u64>, run: Run) -> Check {
    const NAME: &str = "vm.max_map_count";
    const WHAT: &str = "mappings per process";
    let v = match max_map_count {
        Ok(v) => *v,
        Err(e) => return unknown(NAME, WHAT, e),
    };
    // SQ ring, CQ ring, SQEs, buffer ring, buffers per ring; stack + guard per thread.
    let need = run.rings().saturating_mul(7).saturating_add(512);
    let (status, verdict) = if v >= need {
        (
            Status::Ok,
            format!(
                "{} rings and their threads need ~{} (queues, buffers, stacks)",
                run.rings(),
                format_thousands(need)
            ),
        )
    } else {
        (
            Status::Limit,
            format!(
                "{} rings need ~{} mappings: mmap fails",
                format_thousands(run.rings()),
                format_thousands(need)
            ),
        )
    };
    let advice = (status != Status::Ok)
        .then(|| format!("sysctl -w vm.max_map_count={}", need.saturating_mul(2)));
    check(NAME, v.to_string(), status, WHAT, verdict, advice)
}

fn judge_tw_reuse(tw_reuse: &Read<u64>) -> Check {
    const NAME: &str = "net.ipv4.tcp_tw_reuse";
    const WHAT: &str = "reconnects (churn)";
    let v = match tw_reuse {
        Ok(v) => *v,
        Err(e) => return unknown(NAME, WHAT, e),
    };
    let (value, status, verdict) = match v {
        1 => (
            "1 (all)".to_string(),
            Status::Ok,
            "ports in TIME_WAIT (60 s after a close) are reused for new connects",
        ),
        2 => (
            "2 (loopback only)".to_string(),
            Status::Warn,
            "TIME_WAIT ports (60 s after a close) are reused on loopback only: churn against a remote target runs out of ports",
        ),
        0 => (
            "0 (off)".to_string(),
            Status::Warn,
            "TIME_WAIT ports (60 s after a close) are never reused: churn (errors, Connection: close) runs out of ports",
        ),
        other => (other.to_string(), Status::Warn, "unexpected value"),
    };
    let advice = (status != Status::Ok)
        .then(|| "sysctl -w net.ipv4.tcp_tw_reuse=1    # on the load node".to_string());
    check(NAME, value, status, WHAT, verdict, advice)
}

fn judge_fin_timeout(fin_timeout: &Read<u64>) -> Check {
    const NAME: &str = "net.ipv4.tcp_fin_timeout";
    const WHAT: &str = "closes (churn)";
    let v = match fin_timeout {
        Ok(v) => *v,
        Err(e) => return unknown(NAME, WHAT, e),
    };
    let (status, verdict) = if v <= 30 {
        (
            Status::Ok,
            "a closed connection waits this long in FIN_WAIT2 for its peer: short enough for churn",
        )
    } else {
        (
            Status::Warn,
            "a closed connection waits this long in FIN_WAIT2 for its peer, holding memory and a port: they pile up during churn",
        )
    };
    let advice =
        (status != Status::Ok).then(|| "sysctl -w net.ipv4.tcp_fin_timeout=15".to_string());
    check(NAME, format!("{v} s"), status, WHAT, verdict, advice)
}

/// `governors`: `scaling_governor` of every CPU that has one.
fn judge_governor(governors: &Read<Vec<String>>) -> Check {
    const NAME: &str = "cpu governor";
    const WHAT: &str = "CPU clock under load";
    let govs = match governors {
        Ok(g) if !g.is_empty() => g,
        Ok(_) => {
            return unknown(
                NAME,
                WHAT,
                &Unread::missing(
                    "no cpufreq in /sys: a VM or no frequency driver; the host decides",
                ),
            );
        }
        Err(e) => return unknown(NAME, WHAT, e),
    };
    let slow: Vec<&String> = govs
        .iter()
        .filter(|g| g.as_str() != "performance")
        .collect();
    let value = if slow.is_empty() {
        format!("performance on {} CPUs", govs.len())
    } else {
        let mut names: Vec<&str> = slow.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        format!(
            "{} on {} of {} CPUs",
            names.join(","),
            slow.len(),
            govs.len()
        )
    };
    let (status, verdict) = if slow.is_empty() {
        (Status::Ok, "every CPU runs at full clock")
    } else {
        (
            Status::Warn,
            "CPUs clock down between bursts: noisier latency, fewer requests per CPU",
        )
    };
    let advice = (status != Status::Ok).then(|| {
        "cpupower frequency-set -g performance\nor: echo performance | tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor".to_string()
    });
    check(NAME, value, status, WHAT, verdict, advice)
}

// ---------------------------------------------------------------------------------------------
// Reading the host.
// ---------------------------------------------------------------------------------------------

fn read_text(path: &str) -> Read<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err(Unread::missing(format!("{path} does not exist")))
        }
        Err(e) => Err(Unread::failed(format!("{path}: {e}"))),
    }
}

fn parse_u64s(path: &str, text: &str) -> Read<Vec<u64>> {
    text.split_whitespace()
        .map(|w| {
            w.parse::<u64>()
                .map_err(|_| Unread::failed(format!("{path}: \"{w}\" is not a number")))
        })
        .collect()
}

fn read_u64s(path: &str) -> Read<Vec<u64>> {
    parse_u64s(path, &read_text(path)?)
}

fn read_u64(path: &str) -> Read<u64> {
    read_u64s(path)?
        .first()
        .copied()
        .ok_or_else(|| Unread::failed(format!("{path} is empty")))
}

fn read_pair(path: &str) -> Read<(u64, u64)> {
    match read_u64s(path)?.as_slice() {
        [a, b, ..] => Ok((*a, *b)),
        _ => Err(Unread::failed(format!("{path}: expected two numbers"))),
    }
}

#[derive(Clone, Copy)]
enum Limit {
    Nofile,
    Memlock,
}

fn getrlimit(which: Limit) -> Read<(u64, u64)> {
    let resource = match which {
        Limit::Nofile => libc::RLIMIT_NOFILE,
        Limit::Memlock => libc::RLIMIT_MEMLOCK,
    };
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
        return Err(Unread::failed(format!(
            "getrlimit: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Effective capabilities of this process (`CapEff` of /proc/self/status).
fn effective_caps() -> u64 {
    read_text("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

const CAP_IPC_LOCK: u64 = 1 << 14;
const CAP_SYS_ADMIN: u64 = 1 << 21;

/// The process's effective group and supplementary groups.
fn groups() -> Vec<u32> {
    // SAFETY: getegid has no preconditions.
    let mut out = vec![unsafe { libc::getegid() }];
    // SAFETY: a zero-size query only returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n > 0 {
        let mut buf = vec![0 as libc::gid_t; n as usize];
        // SAFETY: buf holds n entries, the size we pass.
        let got = unsafe { libc::getgroups(n, buf.as_mut_ptr()) };
        if got > 0 {
            buf.truncate(got as usize);
            out.extend(buf);
        }
    }
    out
}

fn meminfo_kib(field: &str) -> Read<u64> {
    let text = read_text("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| Unread::failed(format!("/proc/meminfo has no {field}")))
}

fn governors() -> Read<Vec<String>> {
    let dir = "/sys/devices/system/cpu";
    let entries = std::fs::read_dir(dir).map_err(|e| Unread::failed(format!("{dir}: {e}")))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_cpu = name
            .strip_prefix("cpu")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if !is_cpu {
            continue;
        }
        let path = entry.path().join("cpufreq/scaling_governor");
        if let Ok(g) = std::fs::read_to_string(&path) {
            out.push(g.trim().to_string());
        }
    }
    if out.is_empty() {
        return Err(Unread::missing(
            "no cpufreq in /sys: a VM or no frequency driver; the host decides",
        ));
    }
    Ok(out)
}

/// What [`probe_ring`] found: (`Ok(true)` with DEFER_TASKRUN, `Ok(false)` plain ring only, or the
/// setup error; the sparse table registered, if a ring was made).
type Probe = (
    std::result::Result<bool, String>,
    Option<std::result::Result<u64, String>>,
);

/// Sets up a throw-away ring as blaster does and registers a sparse table of `files` direct
/// descriptors on it.
fn probe_ring(files: u64) -> Probe {
    let fast = io_uring::IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(8);
    let (ring, deferred) = match fast {
        Ok(r) => (r, true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => match io_uring::IoUring::new(8) {
            Ok(r) => (r, false),
            Err(e) => return (Err(e.to_string()), None),
        },
        Err(e) => return (Err(e.to_string()), None),
    };
    let files = u32::try_from(files.min(IORING_MAX_FIXED_FILES)).unwrap_or(u32::MAX);
    let table = ring
        .submitter()
        .register_files_sparse(files)
        .map(|()| u64::from(files))
        .map_err(|e| e.to_string());
    (Ok(deferred), Some(table))
}

fn cpus() -> u64 {
    core_affinity::get_core_ids().map_or(1, |c| c.len().max(1)) as u64
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// Reads this host and judges every check for a run of `target_connections` connections
/// (default [`DEFAULT_TARGET_CONNECTIONS`]).
pub fn checks(target_connections: Option<u64>) -> Vec<Check> {
    let target = target_connections.unwrap_or(DEFAULT_TARGET_CONNECTIONS);
    let nofile = getrlimit(Limit::Nofile);
    let run = Run::new(target, cpus(), nofile.as_ref().ok().map(|&(_, hard)| hard));
    let release = read_text("/proc/sys/kernel/osrelease");
    let kernel = release.as_ref().ok().and_then(|r| kernel_version(r));
    let nr_open = read_u64("/proc/sys/fs/nr_open");
    let caps = effective_caps();

    let (probe, table) = probe_ring(nofile.as_ref().map_or(64, |&(soft, _)| soft));
    let io_uring_group = read_text("/proc/sys/kernel/io_uring_group")
        .ok()
        .and_then(|g| g.parse::<i64>().ok());
    let in_group =
        io_uring_group.is_some_and(|g| g >= 0 && groups().iter().any(|&mine| i64::from(mine) == g));
    let privileged = caps & CAP_SYS_ADMIN != 0 || in_group;

    let port_range = read_pair("/proc/sys/net/ipv4/ip_local_port_range");
    let reserved = read_text("/proc/sys/net/ipv4/ip_local_reserved_ports")
        .map_or(0, |t| reserved_port_count(&t));

    vec![
        judge_kernel(&release),
        judge_io_uring(
            &read_u64("/proc/sys/kernel/io_uring_disabled"),
            privileged,
            &probe,
        ),
        judge_nofile(&nofile, nr_open.as_ref().ok().copied(), table.as_ref(), run),
        judge_nr_open(&nr_open, run),
        judge_file_max(&read_u64s("/proc/sys/fs/file-nr"), run),
        judge_port_range(&port_range, reserved, run),
        judge_tcp_mem(&read_u64s("/proc/sys/net/ipv4/tcp_mem"), page_size(), run),
        judge_memory(&meminfo_kib("MemAvailable"), run),
        judge_somaxconn(&read_u64("/proc/sys/net/core/somaxconn"), run),
        judge_syn_backlog(
            &read_u64("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
            &read_u64("/proc/sys/net/ipv4/tcp_syncookies"),
            run,
        ),
        judge_conntrack(
            &read_u64("/proc/sys/net/netfilter/nf_conntrack_max"),
            &read_u64("/proc/sys/net/netfilter/nf_conntrack_count"),
            run,
        ),
        judge_memlock(
            &getrlimit(Limit::Memlock),
            caps & CAP_IPC_LOCK != 0,
            kernel,
            run,
        ),
        judge_max_map_count(&read_u64("/proc/sys/vm/max_map_count"), run),
        judge_tw_reuse(&read_u64("/proc/sys/net/ipv4/tcp_tw_reuse")),
        judge_fin_timeout(&read_u64("/proc/sys/net/ipv4/tcp_fin_timeout")),
        judge_governor(&governors()),
    ]
}

// ---------------------------------------------------------------------------------------------
// Output.
// ---------------------------------------------------------------------------------------------

/// Lines to make the advice of the non-ok checks survive a reboot.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Persistent {
    /// Lines for /etc/sysctl.d/99-blaster.conf (`key = value`).
    pub sysctl_conf: Vec<String>,
    /// Lines for /etc/security/limits.conf.
    pub limits_conf: Vec<String>,
    /// Lines for the `[Service]` section of a systemd unit.
    pub systemd: Vec<String>,
}

/// Derives the persistent form of every `sysctl -w` and `ulimit` command in the advice of the
/// checks that are not ok.
pub fn persistent(checks: &[Check]) -> Persistent {
    let mut p = Persistent::default();
    for c in checks.iter().filter(|c| c.status != Status::Ok) {
        let Some(advice) = &c.advice else { continue };
        for line in advice.lines() {
            let command = line.split("    #").next().unwrap_or("").trim();
            if let Some(setting) = command.strip_prefix("sysctl -w ") {
                if let Some((key, value)) = setting.split_once('=') {
                    let value = value.trim().trim_matches('"');
                    if value.contains('<') {
                        continue;
                    }
                    let prefix = format!("{key} = ");
                    match p.sysctl_conf.iter_mut().find(|l| l.starts_with(&prefix)) {
                        // Two checks advise the same key: keep the larger number.
                        Some(old) => {
                            let old_n = old[prefix.len()..].parse::<u64>().ok();
                            if old_n
                                .zip(value.parse::<u64>().ok())
                                .is_some_and(|(o, n)| n > o)
                            {
                                *old = format!("{prefix}{value}");
                            }
                        }
                        None => p.sysctl_conf.push(format!("{prefix}{value}")),
                    }
                }
            } else if let Some(n) = command.strip_prefix("ulimit -n ") {
                p.limits_conf.push(format!("*    -    nofile    {n}"));
                p.limits_conf.push(format!("root -    nofile    {n}"));
                p.systemd.push(format!("LimitNOFILE={n}"));
            } else if let Some(n) = command.strip_prefix("ulimit -l ") {
                p.limits_conf.push(format!("*    -    memlock   {n}"));
                p.limits_conf.push(format!("root -    memlock   {n}"));
                let n = if n == "unlimited" { "infinity" } else { n };
                p.systemd.push(format!("LimitMEMLOCK={n}"));
            }
        }
    }
    p
}

/// Word-wraps `text` to `width` columns.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The checks as an aligned table (check, value, status, what it limits), each followed by its
/// detail, then the commands to raise the limits of every check that is not ok, at runtime and
/// persistently.
pub fn render(checks: &[Check]) -> String {
    const WIDTH: usize = 100;
    let width = |f: fn(&Check) -> usize, header: &str| {
        checks.iter().map(f).max().unwrap_or(0).max(header.len())
    };
    let name_w = width(|c| c.name.len(), "check");
    let value_w = width(|c| c.value.len(), "value (read here)");
    let status_w = width(|c| c.status.label().len(), "status");
    let indent = name_w + 2;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<name_w$}  {:<value_w$}  {:<status_w$}  limits",
        "check", "value (read here)", "status"
    );
    for c in checks {
        let _ = writeln!(
            out,
            "{:<name_w$}  {:<value_w$}  {:<status_w$}  {}",
            c.name,
            c.value,
            c.status.label(),
            c.limits
        );
        for line in wrap(&c.detail, WIDTH.saturating_sub(indent + 2).max(40)) {
            let _ = writeln!(out, "{:indent$}  {line}", "");
        }
    }

    let todo: Vec<&Check> = checks
        .iter()
        .filter(|c| c.status != Status::Ok && c.advice.is_some())
        .collect();
    if todo.is_empty() {
        out.push_str("\nNothing to raise.\n");
        return out;
    }
    out.push_str("\nTo raise the limits (as root; sysctl -w and ulimit last until reboot or the shell ends):\n");
    for c in &todo {
        let _ = writeln!(out, "  {} [{}]", c.name, c.status.label());
        for line in c.advice.as_deref().unwrap_or("").lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    let p = persistent(checks);
    if !(p.sysctl_conf.is_empty() && p.limits_conf.is_empty() && p.systemd.is_empty()) {
        out.push_str("\nTo keep them after a reboot:\n");
        if !p.sysctl_conf.is_empty() {
            out.push_str("  /etc/sysctl.d/99-blaster.conf, then `sysctl --system`:\n");
            for l in &p.sysctl_conf {
                let _ = writeln!(out, "    {l}");
            }
        }
        if !p.limits_conf.is_empty() {
            out.push_str("  /etc/security/limits.conf (login sessions; log in again):\n");
            for l in &p.limits_conf {
                let _ = writeln!(out, "    {l}");
            }
        }
        if !p.systemd.is_empty() {
            out.push_str(
                "  systemd unit, [Service] section (or DefaultLimit... in /etc/systemd/system.conf):\n",
            );
            for l in &p.systemd {
                let _ = writeln!(out, "    {l}");
            }
        }
    }
    out
}

/// The exit code for these checks: [`EXIT_LIMITED`] when one is [`Status::Limit`].
pub fn exit_code(checks: &[Check]) -> i32 {
    if checks.iter().any(|c| c.status == Status::Limit) {
        EXIT_LIMITED
    } else {
        EXIT_NOTHING_LIMITS
    }
}

/// Facts of this host printed above the table.
#[derive(Debug, Clone, Serialize)]
struct Host {
    hostname: String,
    kernel: String,
    cpus: u64,
    mem_total_bytes: Option<u64>,
}

fn host() -> Host {
    Host {
        hostname: read_text("/proc/sys/kernel/hostname").unwrap_or_else(|_| "?".to_string()),
        kernel: read_text("/proc/sys/kernel/osrelease").unwrap_or_else(|_| "?".to_string()),
        cpus: cpus(),
        mem_total_bytes: meminfo_kib("MemTotal").ok().map(|k| k * 1024),
    }
}

const MEASURED_NOTE: &str = "Values are read on this host now (getrlimit, /proc/sys, /proc/meminfo, /sys, a test io_uring). \
Estimates marked ~ use figures measured on a 2-core Linux 6.18 load node (shared/ENGINE-NOTES.md), not here: \
7.9 KB kernel memory per loopback connection pair; 50 rings x 20,000 direct slots held 1,000,000 connections in one process; \
connect() slows past ~14,000 connections per (source, destination) tuple with ports 32768-60999.";

#[derive(Serialize)]
struct JsonReport<'a> {
    target_connections: u64,
    exit_code: i32,
    host: Host,
    checks: &'a [Check],
    persistent: Persistent,
    note: &'static str,
}

/// `blaster doctor`: prints the checks for a run of `target_connections` (text, or JSON when
/// `json`) and returns the exit code: [`EXIT_NOTHING_LIMITS`] (0) when nothing limits the
/// target, [`EXIT_LIMITED`] (2) when a check is `limit`.
pub fn run(target_connections: Option<u64>, json: bool) -> Result<i32> {
    let target = target_connections.unwrap_or(DEFAULT_TARGET_CONNECTIONS);
    let checks = checks(Some(target));
    let code = exit_code(&checks);
    let host = host();
    let out = if json {
        let report = JsonReport {
            target_connections: target,
            exit_code: code,
            host,
            persistent: persistent(&checks),
            checks: &checks,
            note: MEASURED_NOTE,
        };
        let mut s =
            serde_json::to_string_pretty(&report).context("could not encode the checks as JSON")?;
        s.push('\n');
        s
    } else {
        let mut s = format!(
            "blaster doctor: what limits a run of {} connections on {} (Linux {}, {} CPUs{})\n\n",
            format_thousands(target),
            host.hostname,
            host.kernel,
            host.cpus,
            host.mem_total_bytes
                .map_or(String::new(), |b| format!(", {} memory", bytes(b)))
        );
        s.push_str(&render(&checks));
        s.push('\n');
        for l in wrap(MEASURED_NOTE, 100) {
            s.push_str(&l);
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "\nExit code {code}: {}",
            if code == EXIT_LIMITED {
                "a check above is LIMIT (0 when nothing limits the run)"
            } else {
                "nothing above limits the run (2 when a check is LIMIT)"
            }
        );
        s
    };
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("could not write to stdout")?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(target: u64, cpus: u64, hard: u64) -> Run {
        Run::new(target, cpus, Some(hard))
    }

    fn missing() -> Unread {
        Unread::missing("/proc/sys/x does not exist")
    }

    #[test]
    fn numbers_and_bytes_read_well() {
        assert_eq!(format_thousands(0), "0");
        assert_eq!(format_thousands(999), "999");
        assert_eq!(format_thousands(1000), "1,000");
        assert_eq!(format_thousands(1_234_567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(575_802 * 4096), "2.2 GiB");
    }

    #[test]
    fn kernel_versions_are_judged() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(
            judge_kernel(&Ok("5.15.0-91-generic".into())).status,
            Status::Limit
        );
        assert_eq!(judge_kernel(&Ok("6.8.0".into())).status, Status::Warn);
        assert_eq!(judge_kernel(&Ok("6.18.44".into())).status, Status::Ok);
        assert_eq!(judge_kernel(&Ok("weird".into())).status, Status::Unknown);
    }

    #[test]
    fn low_nofile_is_a_limit_with_ulimit_advice() {
        let run = run_of(100_000, 2, 256);
        let c = judge_nofile(&Ok((256, 256)), Some(1_048_576), None, run);
        assert_eq!(c.status, Status::Limit, "{c:?}");
        assert!(c.detail.contains("391 rings"), "{}", c.detail);
        let advice = c.advice.unwrap();
        assert!(advice.starts_with("ulimit -n 1048576"), "{advice}");
    }

    #[test]
    fn nofile_is_judged_by_rings_per_cpu() {
        // This machine's numbers: 20,000 hard, 2 CPUs.
        let c = judge_nofile(
            &Ok((20_000, 20_000)),
            Some(1_048_576),
            None,
            run_of(100_000, 2, 20_000),
        );
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("5 rings of 20,000"), "{}", c.detail);
        let c = judge_nofile(&Ok((20_000, 20_000)), None, None, run_of(30_000, 2, 20_000));
        assert_eq!(c.status, Status::Ok);
        assert!(c.advice.is_none());
        // Hard already at fs.nr_open: the advice raises the ceiling first.
        let c = judge_nofile(
            &Ok((1024, 1024)),
            Some(1024),
            None,
            run_of(1_000_000, 2, 1024),
        );
        assert_eq!(c.status, Status::Limit);
        assert!(c.advice.unwrap().starts_with("sysctl -w fs.nr_open="));
    }

    #[test]
    fn nr_open_caps_raising_nofile() {
        assert_eq!(
            judge_nr_open(&Ok(1_048_576), run_of(1_000_000, 2, 20_000)).status,
            Status::Ok
        );
        assert_eq!(
            judge_nr_open(&Ok(20_000), run_of(1_000_000, 2, 20_000)).status,
            Status::Warn
        );
        assert_eq!(
            judge_nr_open(&Ok(1024), run_of(1_000_000, 2, 1024)).status,
            Status::Limit
        );
    }

    #[test]
    fn port_range_says_how_many_source_addresses() {
        let c = judge_port_range(&Ok((32768, 60999)), 0, run_of(1_000_000, 2, 20_000));
        assert_eq!(c.status, Status::Limit);
        assert_eq!(c.value, "32768-60999");
        // 28,232 ports, ~14,116 per tuple: 1M needs 71 sources.
        assert!(c.detail.contains("71 source addresses"), "{}", c.detail);
        let advice = c.advice.unwrap();
        assert!(advice.contains("--source 127.0.0.2-127.0.0.72"), "{advice}");
        assert!(
            advice.contains("ip_local_port_range=\"1024 65535\""),
            "{advice}"
        );
        assert!(advice.contains("then 32 sources suffice"), "{advice}");

        let ok = judge_port_range(&Ok((32768, 60999)), 0, run_of(10_000, 2, 20_000));
        assert_eq!(ok.status, Status::Ok);
        let warn = judge_port_range(&Ok((32768, 60999)), 0, run_of(20_000, 2, 20_000));
        assert_eq!(warn.status, Status::Warn);
        assert!(
            warn.detail.contains("2 source addresses"),
            "{}",
            warn.limits
        );
        // Reserved ports shrink the range.
        assert_eq!(reserved_port_count("8080, 9000-9009"), 11);
        assert_eq!(loopback_sources(300), "127.0.0.2-127.0.1.45");
    }

    #[test]
    fn io_uring_disabled_is_judged() {
        let c = judge_io_uring(&Ok(2), true, &Ok(true));
        assert_eq!(c.status, Status::Limit);
        assert_eq!(
            c.advice.as_deref(),
            Some("sysctl -w kernel.io_uring_disabled=0")
        );
        assert_eq!(
            judge_io_uring(&Ok(1), false, &Ok(true)).status,
            Status::Limit
        );
        assert_eq!(judge_io_uring(&Ok(1), true, &Ok(true)).status, Status::Ok);
        assert_eq!(judge_io_uring(&Ok(0), false, &Ok(true)).status, Status::Ok);
        assert_eq!(
            judge_io_uring(&Ok(0), false, &Ok(false)).status,
            Status::Warn
        );
        assert_eq!(
            judge_io_uring(&Ok(0), false, &Err("Operation not permitted".into())).status,
            Status::Limit
        );
        // Kernels before 6.6 have no switch: the test ring decides.
        assert_eq!(
            judge_io_uring(&Err(missing()), false, &Ok(true)).status,
            Status::Ok
        );
    }

    #[test]
    fn missing_files_are_unknown_with_the_reason() {
        let run = run_of(100_000, 2, 20_000);
        for c in [
            judge_nr_open(&Err(missing()), run),
            judge_somaxconn(&Err(missing()), run),
            judge_tcp_mem(&Err(missing()), 4096, run),
            judge_memory(&Err(missing()), run),
            judge_tw_reuse(&Err(missing())),
            judge_governor(&Err(missing())),
        ] {
            assert_eq!(c.status, Status::Unknown, "{c:?}");
            assert_eq!(c.value, "unknown");
            assert!(c.detail.contains("does not exist"), "{c:?}");
        }
        // Except conntrack: no file means the module is not loaded, which is fine.
        let c = judge_conntrack(&Err(missing()), &Err(missing()), run);
        assert_eq!(c.status, Status::Ok);
        assert_eq!(c.value, "not loaded");
    }

    #[test]
    fn conntrack_is_judged_by_table_size_and_use() {
        let big = run_of(1_000_000, 2, 20_000);
        assert_eq!(
            judge_conntrack(&Ok(262_144), &Ok(0), run_of(100_000, 2, 20_000)).status,
            Status::Ok
        );
        assert_eq!(
            judge_conntrack(&Ok(262_144), &Ok(0), big).status,
            Status::Warn
        );
        let c = judge_conntrack(&Ok(262_144), &Ok(10), big);
        assert_eq!(c.status, Status::Limit);
        assert!(c.advice.unwrap().contains("nf_conntrack_max=1250012"));
    }

    #[test]
    fn tcp_mem_and_memory_scale_with_the_target() {
        let tcp_mem = Ok(vec![287_901, 383_868, 575_802]);
        assert_eq!(
            judge_tcp_mem(&tcp_mem, 4096, run_of(100_000, 2, 20_000)).status,
            Status::Ok
        );
        assert_eq!(
            judge_tcp_mem(&tcp_mem, 4096, run_of(250_000, 2, 20_000)).status,
            Status::Warn
        );
        let c = judge_tcp_mem(&tcp_mem, 4096, run_of(1_000_000, 50, 20_000));
        assert_eq!(c.status, Status::Limit);
        assert!(
            c.advice
                .unwrap()
                .starts_with("sysctl -w net.ipv4.tcp_mem=\"287901 2000000 3000000\"")
        );

        let gib24 = Ok(24 << 20);
        assert_eq!(
            judge_memory(&gib24, run_of(100_000, 2, 20_000)).status,
            Status::Ok
        );
        // 1M pairs ~ 7.9 GB: fits 24 GiB, as measured; 3M does not.
        assert_eq!(
            judge_memory(&gib24, run_of(1_000_000, 2, 20_000)).status,
            Status::Ok
        );
        assert_eq!(
            judge_memory(&gib24, run_of(3_000_000, 2, 20_000)).status,
            Status::Limit
        );
    }

    #[test]
    fn backlogs_memlock_maps_and_churn_are_judged() {
        let storm = run_of(100_000, 2, 20_000);
        assert_eq!(judge_somaxconn(&Ok(4096), storm).status, Status::Warn);
        assert_eq!(judge_somaxconn(&Ok(65_535), storm).status, Status::Ok);
        assert_eq!(
            judge_somaxconn(&Ok(4096), run_of(1000, 2, 20_000)).status,
            Status::Ok
        );
        assert_eq!(
            judge_syn_backlog(&Ok(2048), &Ok(1), storm).status,
            Status::Warn
        );
        assert_eq!(
            judge_syn_backlog(&Ok(65_535), &Ok(1), storm).status,
            Status::Ok
        );

        let kib64 = Ok((64 << 10, 64 << 10));
        assert_eq!(
            judge_memlock(&kib64, false, Some((6, 18)), storm).status,
            Status::Limit
        );
        assert_eq!(
            judge_memlock(&kib64, true, Some((6, 18)), storm).status,
            Status::Ok
        );
        let mib8 = Ok((8 << 20, 8 << 20));
        assert_eq!(
            judge_memlock(&mib8, false, Some((6, 18)), storm).status,
            Status::Ok
        );
        assert_eq!(
            judge_memlock(&mib8, false, Some((5, 10)), run_of(1_000_000, 2, 1024)).status,
            Status::Limit
        );

        assert_eq!(judge_max_map_count(&Ok(65_530), storm).status, Status::Ok);
        assert_eq!(judge_max_map_count(&Ok(500), storm).status, Status::Limit);

        assert_eq!(judge_tw_reuse(&Ok(0)).status, Status::Warn);
        assert_eq!(judge_tw_reuse(&Ok(1)).status, Status::Ok);
        assert_eq!(judge_fin_timeout(&Ok(60)).status, Status::Warn);
        assert_eq!(judge_fin_timeout(&Ok(15)).status, Status::Ok);
        assert_eq!(
            judge_file_max(&Ok(vec![437, 0, 150_000]), storm).status,
            Status::Warn
        );
        assert_eq!(
            judge_file_max(&Ok(vec![437, 0, 50_000]), storm).status,
            Status::Limit
        );
        assert_eq!(
            judge_file_max(&Ok(vec![437, 0, 2_466_177]), storm).status,
            Status::Ok
        );

        assert_eq!(
            judge_governor(&Ok(vec!["performance".into(); 4])).status,
            Status::Ok
        );
        let c = judge_governor(&Ok(vec!["powersave".into(), "performance".into()]));
        assert_eq!(c.status, Status::Warn);
        assert_eq!(c.value, "powersave on 1 of 2 CPUs");
    }

    #[test]
    fn render_lists_commands_and_their_persistent_form() {
        let run = run_of(1_000_000, 2, 1024);
        let checks = vec![
            judge_nofile(&Ok((1024, 1024)), Some(1_048_576), None, run),
            judge_somaxconn(&Ok(4096), run),
            judge_tw_reuse(&Ok(1)),
        ];
        let text = render(&checks);
        assert!(text.contains("RLIMIT_NOFILE"));
        assert!(text.contains("LIMIT"));
        assert!(text.contains("To raise the limits"));
        assert!(text.contains("    ulimit -n 1048576"));
        assert!(text.contains("    net.core.somaxconn = 65535"), "{text}");
        assert!(text.contains("LimitNOFILE=1048576"));
        assert!(text.contains("*    -    nofile    1048576"));
        // The ok check has no advice section.
        assert!(!text.contains("tcp_tw_reuse ["));
        assert_eq!(exit_code(&checks), EXIT_LIMITED);
        assert_eq!(exit_code(&checks[1..]), EXIT_NOTHING_LIMITS);
        let json = serde_json::to_value(&checks[0]).unwrap();
        assert_eq!(json["status"], "limit");
        assert_eq!(json["name"], "RLIMIT_NOFILE");
    }

    #[test]
    fn checks_on_this_machine_have_values() {
        let all = checks(None);
        assert!(all.len() >= 15);
        for c in &all {
            assert!(!c.value.is_empty(), "{c:?}");
            assert!(!c.limits.is_empty() && !c.detail.is_empty(), "{c:?}");
            if c.status == Status::Unknown {
                assert_eq!(c.value, "unknown");
                assert!(!c.detail.is_empty(), "{c:?}");
            }
            if c.status != Status::Ok && c.status != Status::Unknown {
                assert!(
                    c.advice.is_some(),
                    "a {:?} check without advice: {c:?}",
                    c.status
                );
            }
        }
        // These are always readable on Linux.
        for name in [
            "kernel",
            "RLIMIT_NOFILE",
            "net.ipv4.ip_local_port_range",
            "MemAvailable",
        ] {
            let c = all.iter().find(|c| c.name == name).unwrap();
            assert_ne!(c.status, Status::Unknown, "{c:?}");
        }
        let text = render(&all);
        assert!(text.lines().count() > all.len());
    }
}
