//! The eBPF probe's loader (feature `probe`; see docs/PROBE.md).
//!
//! The kernel side (`blaster-ebpf`) is built by `cargo xtask build-ebpf` and embedded
//! here from the path in `BLASTER_PROBE_OBJ`, which `cargo xtask build|run|test` set.
//! It watches a few listening ports and aggregates, in kernel maps:
//! - handshake time (connect() to established) and accept-queue wait (established to
//!   accept()) as log-linear histograms per port,
//! - retransmits, resets sent (by reason) and received per port.
//!
//! [`Probe::start`] loads and attaches it, [`Probe::snapshot`] reads the maps into a plain
//! [`ProbeSnapshot`]; [`run_probe`] does both around a sleep; [`check`] tells what the
//! machine lacks.

mod check;
mod snapshot;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{HashMap, MapData, PerCpuHashMap, PerCpuValues},
    programs::TracePoint,
};
use blaster_common::{
    CounterKey, HistKey, Histogram, MAP_COUNTERS, MAP_HIST, MAP_WATCH, MAX_PORTS, metric,
};

pub use check::{check, tracepoint_layout_ok};
pub use snapshot::{Bucket, LatencyHist, PortProbe, ProbeSnapshot};

/// The eBPF object, built by `cargo xtask build-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!(
    "BLASTER_PROBE_OBJ",
    "BLASTER_PROBE_OBJ is not set: build blaster with the probe through `cargo xtask build` \
     (it builds the eBPF object and sets BLASTER_PROBE_OBJ to its path)"
));

/// The programs of the object: (program name, tracepoint category, tracepoint name,
/// required). Optional ones are skipped when the kernel lacks the tracepoint.
const PROGRAMS: &[(&str, &str, &str, bool)] = &[
    ("inet_sock_set_state", "sock", "inet_sock_set_state", true),
    ("sys_enter_accept4", "syscalls", "sys_enter_accept4", false),
    ("sys_exit_accept4", "syscalls", "sys_exit_accept4", false),
    ("sys_enter_accept", "syscalls", "sys_enter_accept", false),
    ("sys_exit_accept", "syscalls", "sys_exit_accept", false),
    ("tcp_retransmit_skb", "tcp", "tcp_retransmit_skb", false),
    ("tcp_send_reset", "tcp", "tcp_send_reset", false),
    ("tcp_receive_reset", "tcp", "tcp_receive_reset", false),
];

/// Histogram metrics the loader pre-inserts for every watched port.
const METRICS: &[u16] = &[metric::HANDSHAKE, metric::ACCEPT_WAIT];

/// The probe, loaded and attached; detached when dropped.
pub struct Probe {
    ebpf: Ebpf,
    ports: Vec<u16>,
    started: Instant,
    /// Optional programs that could not be attached, with the reason.
    pub skipped: Vec<(String, String)>,
}

impl Probe {
    /// Loads the embedded object, watches `ports` and attaches the programs.
    pub fn start(ports: &[u16]) -> Result<Self> {
        let mut ports: Vec<u16> = ports.to_vec();
        ports.sort_unstable();
        ports.dedup();
        if ports.is_empty() {
            bail!("no port to watch: give at least one listening port");
        }
        if ports.len() > MAX_PORTS as usize {
            bail!(
                "{} ports to watch, the probe watches at most {MAX_PORTS}",
                ports.len()
            );
        }
        if ports.contains(&0) {
            bail!("port 0 cannot be watched: give the port the listener actually bound");
        }
        check::tracefs_dir().map_err(anyhow::Error::msg)?;
        raise_memlock();
        let mut ebpf = Ebpf::load(OBJECT).map_err(|e| {
            anyhow::anyhow!(
                "loading the eBPF object failed: {e} ({}); run `blaster probe --check`",
                check::permission_hint()
            )
        })?;

        {
            let mut watch: HashMap<&mut MapData, u16, u8> =
                HashMap::try_from(ebpf.map_mut(MAP_WATCH).context("map WATCH missing")?)?;
            for &p in &ports {
                watch
                    .insert(p, 1, 0)
                    .with_context(|| format!("watching port {p}"))?;
            }
        }
        {
            let ncpu = aya::util::nr_cpus().map_err(|(what, e)| anyhow::anyhow!("{what}: {e}"))?;
            let mut hist: PerCpuHashMap<&mut MapData, HistKey, Histogram> =
                PerCpuHashMap::try_from(ebpf.map_mut(MAP_HIST).context("map HIST missing")?)?;
            for &port in &ports {
                for &m in METRICS {
                    let zero = PerCpuValues::try_from(vec![Histogram::ZERO; ncpu])?;
                    let key = HistKey {
                        port,
                        metric: m,
                        _pad: 0,
                    };
                    hist.insert(key, zero, 0)
                        .with_context(|| format!("creating histogram {m} of port {port}"))?;
                }
            }
        }

        let mut skipped = Vec::new();
        for &(prog, category, name, required) in PROGRAMS {
            let res = (|| -> Result<()> {
                let p: &mut TracePoint = ebpf
                    .program_mut(prog)
                    .with_context(|| format!("program {prog} missing from the object"))?
                    .try_into()?;
                p.load()
                    .map_err(|e| anyhow::anyhow!("{e:#} ({})", verifier_tail(&format!("{e:?}"))))?;
                p.attach(category, name)?;
                Ok(())
            })();
            if let Err(e) = res {
                if required {
                    return Err(e.context(format!(
                        "attaching {category}:{name} failed ({}); run `blaster probe --check`",
                        check::permission_hint()
                    )));
                }
                skipped.push((format!("{category}:{name}"), format!("{e:#}")));
            }
        }
        Ok(Self {
            ebpf,
            ports,
            started: Instant::now(),
            skipped,
        })
    }

    /// The watched ports, sorted.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Reads the maps (summed over CPUs) into plain data. The probe keeps running.
    pub fn snapshot(&self) -> Result<ProbeSnapshot> {
        let mut ports: BTreeMap<u16, PortProbe> = self
            .ports
            .iter()
            .map(|&port| {
                (
                    port,
                    PortProbe {
                        port,
                        ..PortProbe::default()
                    },
                )
            })
            .collect();

        let hist: PerCpuHashMap<&MapData, HistKey, Histogram> =
            PerCpuHashMap::try_from(self.ebpf.map(MAP_HIST).context("map HIST missing")?)?;
        for item in hist.iter() {
            let (key, per_cpu) = item.context("reading map HIST")?;
            let mut h = Histogram::ZERO;
            for v in per_cpu.iter() {
                h.merge(v);
            }
            let Some(p) = ports.get_mut(&key.port) else {
                continue;
            };
            match key.metric {
                metric::HANDSHAKE => p.handshake = LatencyHist::from_hist(&h),
                metric::ACCEPT_WAIT => p.accept_wait = LatencyHist::from_hist(&h),
                _ => {}
            }
        }

        let counters: PerCpuHashMap<&MapData, CounterKey, u64> = PerCpuHashMap::try_from(
            self.ebpf
                .map(MAP_COUNTERS)
                .context("map COUNTERS missing")?,
        )?;
        for item in counters.iter() {
            let (key, per_cpu) = item.context("reading map COUNTERS")?;
            let n = per_cpu.iter().sum();
            snapshot::add_counter(&mut ports, key.port, key.counter, key.detail, n);
        }

        Ok(ProbeSnapshot {
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            ports: ports.into_values().collect(),
        })
    }
}

/// Watches `ports` for `duration`, then returns what the probe measured.
pub fn run_probe(ports: &[u16], duration: Duration) -> Result<ProbeSnapshot> {
    let probe = Probe::start(ports)?;
    std::thread::sleep(duration);
    probe.snapshot()
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; lift it (best effort).
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass and has no other effect on memory.
    unsafe {
        libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
    }
}

/// The last lines of a verifier log inside an aya error's debug form, if any.
fn verifier_tail(debug: &str) -> String {
    let lines: Vec<&str> = debug.split("\\n").collect();
    if lines.len() <= 1 {
        return "no verifier log".to_string();
    }
    lines[lines.len().saturating_sub(6)..].join(" | ")
}
