//! The loader: loads the embedded eBPF object, fills the maps user space owns (watched
//! ports, pre-inserted histograms, kernel struct offsets from BTF), attaches the
//! programs and reads the maps back into a [`ProbeSnapshot`].

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap},
    programs::{
        CgroupAttachMode, RawTracePoint, SockOps, TracePoint, raw_trace_point::RawTracePointLinkId,
    },
};
use blaster_common::{
    CounterKey, Histogram, KernelOffsets, MAP_COUNTERS, MAP_HIST, MAP_OFFSETS, MAP_STATE,
    MAP_WATCH, MAX_PORTS, hist_index, metric, offsets, state,
};

use super::btf::Btf;
use super::cgroup;
use super::check;
use super::netstat::ListenCounters;
use super::snapshot::{self, LatencyHist, PortProbe, ProbeSnapshot};

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
    (
        "tcp_retransmit_synack",
        "tcp",
        "tcp_retransmit_synack",
        false,
    ),
    ("sk_data_ready", "sock", "sk_data_ready", false),
    ("sock_recv_length", "sock", "sock_recv_length", false),
    ("kfree_skb", "skb", "kfree_skb", false),
    ("io_uring_complete", "io_uring", "io_uring_complete", false),
];

/// Programs of [`PROGRAMS`] that are raw tracepoints (the tracepoint's arguments, no
/// formatted record: cheaper on the hot paths, once per data arrival or read).
const RAW: &[&str] = &["sk_data_ready", "sock_recv_length", "io_uring_complete_raw"];

/// The programs that run for every data arrival and every read on the host: what
/// `--recv-sample` attaches only part of the time.
const RECV_PROGRAMS: &[&str] = &["sk_data_ready", "sock_recv_length"];

/// The histogram metrics of every watched port.
const METRICS: &[u16] = &[
    metric::HANDSHAKE,
    metric::ACCEPT_WAIT,
    metric::RECV_QUEUE_WAIT,
    metric::RTT,
    metric::SERVER_HANDSHAKE,
];

/// Name of the `sock_ops` program in the object, and how [`Probe::skipped`] names it.
const SOCK_OPS: &str = "sock_ops";

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns()`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// How the probe attaches (the plain data behind `blaster probe`'s flags).
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Trace accept(2)/accept4(2) (`--no-accept-syscalls` turns it off): while any
    /// syscall tracepoint is attached, every syscall of every process on the host takes
    /// the kernel's slower traced path (about 60 ns more here), which a server that
    /// accepts through io_uring does not need to pay.
    pub accept_syscalls: bool,
    /// The cgroup v2 directory the `sock_ops` program (server-side handshake time)
    /// attaches to (`--cgroup`). `None`: the root cgroup v2, and when that fails the
    /// probe runs without it (listed in [`Probe::skipped`]); given: failing is an error.
    pub cgroup: Option<PathBuf>,
    /// Trace io_uring completions (`--no-io-uring` turns it off): the program runs for
    /// every completion of every ring on the host (twice per keep-alive request of an
    /// io_uring server), only to see accepts made through io_uring.
    pub io_uring: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            accept_syscalls: true,
            io_uring: true,
            cgroup: None,
        }
    }
}

/// The kernel struct fields the programs follow, by [`offsets`] group: (group, [(struct,
/// field path, setter)]).
type OffsetSetter = fn(&mut KernelOffsets, u32);
/// (struct, field path, where the offset goes).
type OffsetField = (&'static str, &'static str, OffsetSetter);
const OFFSET_GROUPS: &[(u32, &[OffsetField])] = &[
    (
        offsets::FILE_SOCKET,
        &[
            ("file", "private_data", |o, v| o.file_private_data = v),
            ("socket", "sk", |o, v| o.socket_sk = v),
        ],
    ),
    (
        offsets::URING_FIXED,
        &[
            ("io_ring_ctx", "file_table.data.nr", |o, v| {
                o.ctx_files_nr = v
            }),
            ("io_ring_ctx", "file_table.data.nodes", |o, v| {
                o.ctx_files_nodes = v
            }),
            ("io_rsrc_node", "file_ptr", |o, v| o.rsrc_node_file_ptr = v),
        ],
    ),
    (
        offsets::FD_TABLE,
        &[
            ("task_struct", "files", |o, v| o.task_files = v),
            ("files_struct", "fdt", |o, v| o.files_fdt = v),
            ("fdtable", "max_fds", |o, v| o.fdt_max_fds = v),
            ("fdtable", "fd", |o, v| o.fdt_fd = v),
        ],
    ),
    (
        offsets::SKB,
        &[
            ("sk_buff", "head", |o, v| o.skb_head = v),
            ("sk_buff", "network_header", |o, v| o.skb_network_header = v),
            ("sk_buff", "transport_header", |o, v| {
                o.skb_transport_header = v
            }),
        ],
    ),
    (
        offsets::SOCK,
        &[
            ("sock", "__sk_common.skc_num", |o, v| o.sk_num = v),
            ("sock", "__sk_common.skc_dport", |o, v| o.sk_dport = v),
            ("sock", "sk_protocol", |o, v| o.sk_protocol = v),
        ],
    ),
    (
        offsets::TCP_SRTT,
        &[("tcp_sock", "srtt_us", |o, v| o.tcp_srtt_us = v)],
    ),
    (
        offsets::URING_CQE,
        &[("io_uring_cqe", "res", |o, v| o.cqe_res = v)],
    ),
];

/// The offsets this kernel's BTF gives, and for each group it lacks, why.
pub(crate) fn kernel_offsets() -> (KernelOffsets, Vec<String>) {
    let mut o = KernelOffsets::default();
    let btf = match Btf::from_kernel() {
        Ok(b) => b,
        Err(e) => return (o, vec![e]),
    };
    let mut missing = Vec::new();
    for &(group, fields) in OFFSET_GROUPS {
        let mut all = true;
        for &(strukt, path, set) in fields {
            match btf.offset(strukt, path) {
                Ok(v) => set(&mut o, v),
                Err(e) => {
                    missing.push(e);
                    all = false;
                }
            }
        }
        if group == offsets::URING_CQE {
            // Not "missing" otherwise: the classic tracepoint program takes over.
            match btf.raw_tp_arg_pointing_to("io_uring_complete", "io_uring_cqe") {
                Ok(2) => o.uring_cqe_arg = 2,
                _ => all = false,
            }
        }
        if all {
            o.valid |= group;
        }
    }
    (o, missing)
}

/// The probe, loaded and attached; detached when dropped.
pub struct Probe {
    ebpf: Ebpf,
    ports: Vec<u16>,
    started: Instant,
    /// ListenOverflows/ListenDrops when the probe started.
    listen_start: Option<ListenCounters>,
    /// Drop reason names of this kernel (`skb:kfree_skb` format).
    drop_names: BTreeMap<u32, String>,
    /// Optional programs that could not be attached, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Kernel struct fields missing from BTF: the paths that need them are off
    /// (io_uring accepts, accepts without a peer address, ports of some dropped packets).
    pub offsets_missing: Vec<String>,
    /// The cgroup the `sock_ops` program is attached to, if it is.
    pub sock_ops_cgroup: Option<String>,
    /// Links of the attached [`RECV_PROGRAMS`] (empty while detached).
    recv_links: Vec<(&'static str, RawTracePointLinkId)>,
    /// Whether they were loaded at all (the kernel may lack the tracepoints).
    recv_loaded: bool,
    /// Time they were attached before the current window, and when that window began.
    recv_attached: Duration,
    recv_since: Option<Instant>,
}

impl Probe {
    /// Loads the embedded object, watches `ports` and attaches the programs.
    pub fn start(ports: &[u16]) -> Result<Self> {
        Self::start_with(ports, &ProbeOptions::default())
    }

    /// [`Probe::start`] with `opts`.
    pub fn start_with(ports: &[u16], opts: &ProbeOptions) -> Result<Self> {
        let accept_syscalls = opts.accept_syscalls;
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
        // The histogram array is per CPU and preallocated: size it for these ports only
        // (room for every port would be 590 KB per CPU).
        let hists = ports.len() as u32 * u32::from(metric::COUNT);
        let mut ebpf = aya::EbpfLoader::new()
            .map_max_entries(MAP_HIST, hists)
            .load(OBJECT)
            .map_err(|e| {
                anyhow::anyhow!(
                    "loading the eBPF object failed: {e} ({}); run `blaster probe --check`",
                    check::permission_hint()
                )
            })?;

        {
            let mut watch: HashMap<&mut MapData, u16, u16> =
                HashMap::try_from(ebpf.map_mut(MAP_WATCH).context("map WATCH missing")?)?;
            // Slot i (histograms at hist_index(i, metric)) for the i-th port in order.
            for (slot, &p) in ports.iter().enumerate() {
                watch
                    .insert(p, slot as u16, 0)
                    .with_context(|| format!("watching port {p}"))?;
            }
        }

        let (offs, offsets_missing) = kernel_offsets();
        {
            let mut map: Array<&mut MapData, KernelOffsets> =
                Array::try_from(ebpf.map_mut(MAP_OFFSETS).context("map OFFSETS missing")?)?;
            map.set(0, offs, 0).context("writing kernel offsets")?;
        }

        let mut skipped = Vec::new();
        let mut recv_links = Vec::new();
        for &(prog, category, name, required) in PROGRAMS {
            if category == "syscalls" && !accept_syscalls {
                skipped.push((
                    format!("{category}:{name}"),
                    "left out (--no-accept-syscalls): accept(2) is not seen".to_string(),
                ));
                continue;
            }
            if category == "io_uring" && !opts.io_uring {
                skipped.push((
                    format!("{category}:{name}"),
                    "left out (--no-io-uring): accepts through io_uring are not seen".to_string(),
                ));
                continue;
            }
            // io_uring completions: the raw tracepoint when BTF told where the CQE is.
            let prog = if prog == "io_uring_complete" && offs.valid & offsets::URING_CQE != 0 {
                "io_uring_complete_raw"
            } else {
                prog
            };
            let res = (|| -> Result<()> {
                let program = ebpf
                    .program_mut(prog)
                    .with_context(|| format!("program {prog} missing from the object"))?;
                let verifier = |e: aya::programs::ProgramError| {
                    anyhow::anyhow!("{e:#} ({})", verifier_tail(&format!("{e:?}")))
                };
                if RAW.contains(&prog) {
                    let p: &mut RawTracePoint = program.try_into()?;
                    p.load().map_err(verifier)?;
                    let link = p.attach(name)?;
                    if let Some(&recv) = RECV_PROGRAMS.iter().find(|&&r| r == prog) {
                        recv_links.push((recv, link));
                    }
                } else {
                    let p: &mut TracePoint = program.try_into()?;
                    p.load().map_err(verifier)?;
                    p.attach(category, name)?;
                }
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
        // The server-side handshake: optional with the default (root) cgroup, required
        // when `--cgroup` names one.
        let required = opts.cgroup.is_some();
        let what = format!("{SOCK_OPS} (server-side handshake time)");
        let sock_ops_cgroup = match cgroup::open(opts.cgroup.as_deref()) {
            Err(e) if required => bail!("{e}"),
            Err(e) => {
                skipped.push((what, e));
                None
            }
            Ok(cg) => match attach_sock_ops(&mut ebpf, &cg) {
                Ok(()) => Some(cg.describe),
                Err(e) if required => {
                    return Err(e.context(format!(
                        "attaching the sock_ops program to the {} failed ({}); run \
                         `blaster probe --check`",
                        cg.describe,
                        check::permission_hint()
                    )));
                }
                Err(e) => {
                    skipped.push((what, format!("{e:#}")));
                    None
                }
            },
        };
        let drop_names = check::tracefs_dir()
            .ok()
            .and_then(|d| std::fs::read_to_string(d.join("events/skb/kfree_skb/format")).ok())
            .map(|f| snapshot::symbolic_names(&f))
            .unwrap_or_default();
        Ok(Self {
            ebpf,
            ports,
            started: Instant::now(),
            listen_start: ListenCounters::read(),
            drop_names,
            skipped,
            offsets_missing,
            sock_ops_cgroup,
            recv_loaded: recv_links.len() == RECV_PROGRAMS.len(),
            recv_links,
            recv_attached: Duration::ZERO,
            recv_since: Some(Instant::now()),
        })
    }

    /// Attaches (`on`) or detaches the programs that run for every data arrival and read
    /// ([`RECV_PROGRAMS`]: the receive-queue wait and the srtt samples), for sampling:
    /// while detached they cost nothing. Each attach starts a window: a data-ready stamp
    /// from before it is ignored (its read went unseen). No-op when already in that state
    /// or when the kernel lacks the tracepoints.
    pub fn set_recv_attached(&mut self, on: bool) -> Result<()> {
        if !self.recv_loaded || on == self.recv_since.is_some() {
            return Ok(());
        }
        if on {
            {
                let mut map: Array<&mut MapData, u64> =
                    Array::try_from(self.ebpf.map_mut(MAP_STATE).context("map STATE missing")?)?;
                map.set(state::RECV_WINDOW, monotonic_ns(), 0)
                    .context("writing the sampling window's start")?;
            }
            for &name in RECV_PROGRAMS {
                let p: &mut RawTracePoint = self
                    .ebpf
                    .program_mut(name)
                    .with_context(|| format!("program {name} missing"))?
                    .try_into()?;
                let link = p
                    .attach(name)
                    .with_context(|| format!("attaching sock:{name} again"))?;
                self.recv_links.push((name, link));
            }
            self.recv_since = Some(Instant::now());
        } else {
            for (name, link) in self.recv_links.drain(..) {
                let p: &mut RawTracePoint = self
                    .ebpf
                    .program_mut(name)
                    .with_context(|| format!("program {name} missing"))?
                    .try_into()?;
                p.detach(link)
                    .with_context(|| format!("detaching sock:{name}"))?;
            }
            if let Some(since) = self.recv_since.take() {
                self.recv_attached += since.elapsed();
            }
        }
        Ok(())
    }

    /// How long the receive programs have been attached in all, so far.
    fn recv_attached_total(&self) -> Duration {
        self.recv_attached + self.recv_since.map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// The kernel's id of the loaded `sock_ops` program (tests check it goes away).
    #[cfg(test)]
    pub(crate) fn sock_ops_program_id(&self) -> Option<u32> {
        let p: &SockOps = self.ebpf.program(SOCK_OPS)?.try_into().ok()?;
        p.info().ok().map(|i| i.id())
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

        let hist: PerCpuArray<&MapData, Histogram> =
            PerCpuArray::try_from(self.ebpf.map(MAP_HIST).context("map HIST missing")?)?;
        for (slot, port) in self.ports.iter().enumerate() {
            let Some(p) = ports.get_mut(port) else {
                continue;
            };
            for &m in METRICS {
                let per_cpu = hist
                    .get(&hist_index(slot as u16, m), 0)
                    .context("reading map HIST")?;
                let mut h = Histogram::ZERO;
                for v in per_cpu.iter() {
                    h.merge(v);
                }
                let summary = LatencyHist::from_hist(&h);
                match m {
                    metric::HANDSHAKE => p.handshake = summary,
                    metric::ACCEPT_WAIT => p.accept_wait = summary,
                    metric::RECV_QUEUE_WAIT => p.recv_queue_wait = summary,
                    metric::RTT => p.srtt = summary,
                    metric::SERVER_HANDSHAKE => p.server_handshake = summary,
                    _ => {}
                }
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

        for p in ports.values_mut() {
            for d in &mut p.drops_by_reason {
                d.name = self.drop_names.get(&d.reason).cloned().unwrap_or_default();
            }
        }
        let listen = match (self.listen_start, ListenCounters::read()) {
            (Some(start), Some(now)) => now.since(&start),
            _ => ListenCounters::default(),
        };
        Ok(ProbeSnapshot {
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            recv_attached_ms: if self.recv_loaded {
                self.recv_attached_total().as_millis() as u64
            } else {
                0
            },
            listen_overflows: listen.overflows,
            listen_drops: listen.drops,
            unavailable: self
                .skipped
                .iter()
                .map(|(what, why)| format!("{what}: {why}"))
                .chain(self.offsets_missing.iter().map(|m| format!("BTF: {m}")))
                .collect(),
            ports: ports.into_values().collect(),
        })
    }
}

/// Loads the `sock_ops` program and attaches it to `cg`. The link is the program's:
/// dropping the [`Ebpf`] detaches it.
fn attach_sock_ops(ebpf: &mut Ebpf, cg: &cgroup::Cgroup) -> Result<()> {
    let program: &mut SockOps = ebpf
        .program_mut(SOCK_OPS)
        .context("program sock_ops missing from the object")?
        .try_into()?;
    program
        .load()
        .map_err(|e| anyhow::anyhow!("{e:#} ({})", verifier_tail(&format!("{e:?}"))))?;
    // `Single`: on 5.7+ aya attaches with a BPF link, which always shares the cgroup with
    // other programs (another probe, another tool) and takes no mode flag (the kernel
    // answers EINVAL to BPF_F_ALLOW_MULTI there).
    program
        .attach(&cg.file, CgroupAttachMode::Single)
        .with_context(|| format!("attaching to the {}", cg.describe))?;
    Ok(())
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
