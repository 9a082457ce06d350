//! `blaster probe --check`: what the probe needs from the machine, each with what to do.

use std::path::{Path, PathBuf};

/// Tracepoint fields the eBPF programs read at fixed offsets: (category, event,
/// [(field, offset)]). Checked against the running kernel's format files.
/// Fields of one tracepoint: (name, offset).
type Fields = &'static [(&'static str, usize)];

const LAYOUT: &[(&str, &str, Fields)] = &[
    (
        "sock",
        "inet_sock_set_state",
        &[
            ("skaddr", 8),
            ("oldstate", 16),
            ("newstate", 20),
            ("sport", 24),
            ("dport", 26),
            ("family", 28),
            ("protocol", 30),
            ("daddr", 36),
            ("daddr_v6", 56),
        ],
    ),
    ("syscalls", "sys_enter_accept4", &[("upeer_sockaddr", 24)]),
    ("syscalls", "sys_exit_accept4", &[("ret", 16)]),
    ("syscalls", "sys_enter_accept", &[("upeer_sockaddr", 24)]),
    ("syscalls", "sys_exit_accept", &[("ret", 16)]),
    ("tcp", "tcp_retransmit_skb", &[("sport", 28), ("dport", 30)]),
    (
        "tcp",
        "tcp_send_reset",
        &[("reason", 28), ("saddr", 32), ("daddr", 60)],
    ),
    ("tcp", "tcp_receive_reset", &[("sport", 16), ("dport", 18)]),
    ("tcp", "tcp_retransmit_synack", &[("sport", 24)]),
    // Raw tracepoints: their arguments (TP_PROTO), not the record, are read, so only
    // their presence is checked.
    ("sock", "sk_data_ready", &[]),
    ("sock", "sock_recv_length", &[]),
    (
        "skb",
        "kfree_skb",
        &[
            ("skbaddr", 8),
            ("rx_sk", 24),
            ("protocol", 32),
            ("reason", 36),
        ],
    ),
    ("io_uring", "io_uring_complete", &[("ctx", 8), ("res", 32)]),
];

/// Each capability the probe needs, `Ok` or what is wrong and what to do about it.
pub fn check() -> Vec<(String, Result<(), String>)> {
    let mut out = vec![
        (
            "privileges (root, or CAP_BPF and CAP_PERFMON)".to_string(),
            privileges(),
        ),
        ("tracefs mounted".to_string(), tracefs_dir().map(|_| ())),
        (
            "bpffs mounted (optional: only for pinning)".to_string(),
            bpffs(),
        ),
        (
            "kernel BTF at /sys/kernel/btf/vmlinux (optional: io_uring accepts, drop ports)"
                .to_string(),
            btf(),
        ),
        (
            "kernel struct offsets in BTF (optional: io_uring accepts, drop ports)".to_string(),
            {
                let (_, missing) = super::loader::kernel_offsets();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(missing.join("; "))
                }
            },
        ),
    ];
    for &(category, event, _) in LAYOUT {
        out.push((
            format!("tracepoint {category}:{event} (fields at the expected offsets)"),
            tracepoint_layout_ok(category, event),
        ));
    }
    out.push((
        "cgroup v2 for the sock_ops program (optional: server-side handshake time)".to_string(),
        match super::cgroup::root_mount() {
            Some(root) => {
                eprintln!("probe: the root cgroup v2 is mounted at {}", root.display());
                Ok(())
            }
            None => Err(format!(
                "no cgroup2 mounted: the probe mounts one for a moment when it may (root), \
                 else run `{}`",
                super::cgroup::mount_command()
            )),
        },
    ));
    let started = super::Probe::start(&[9]);
    let sock_ops = match &started {
        Ok(p) => match &p.sock_ops_cgroup {
            Some(_) => Ok(()),
            None => Err(p
                .skipped
                .iter()
                .find(|(what, _)| what.starts_with("sock_ops"))
                .map(|(_, why)| why.clone())
                .unwrap_or_else(|| "not attached".to_string())),
        },
        Err(_) => Err("the probe did not load (see the tracepoint programs)".to_string()),
    };
    out.push((
        "load and attach the tracepoint programs".to_string(),
        started
            .map(|p| {
                let other: Vec<_> = p
                    .skipped
                    .iter()
                    .filter(|(what, _)| !what.starts_with("sock_ops"))
                    .collect();
                if !other.is_empty() {
                    eprintln!("probe: optional programs skipped: {other:?}");
                }
            })
            .map_err(|e| format!("{e:#}")),
    ));
    out.push((
        "load the sock_ops program and attach it to the root cgroup v2 (optional: server-side \
         handshake time)"
            .to_string(),
        sock_ops,
    ));
    out
}

/// The tracefs `events` directory's parent, or how to mount it.
pub(crate) fn tracefs_dir() -> Result<PathBuf, String> {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        let events = Path::new(dir).join("events");
        match std::fs::metadata(&events) {
            Ok(m) if m.is_dir() => return Ok(PathBuf::from(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(format!(
                    "cannot read {}: permission denied ({})",
                    events.display(),
                    permission_hint()
                ));
            }
            _ => {}
        }
    }
    Err("tracefs is not mounted: run `mount -t tracefs nodev /sys/kernel/tracing`".to_string())
}

/// Whether `category:event` exists and has the fields the probe reads where it reads them.
pub fn tracepoint_layout_ok(category: &str, event: &str) -> Result<(), String> {
    let fields = LAYOUT
        .iter()
        .find(|(c, e, _)| *c == category && *e == event)
        .map(|(_, _, f)| *f)
        .ok_or_else(|| format!("{category}:{event} is not a tracepoint the probe uses"))?;
    let path = tracefs_dir()?
        .join("events")
        .join(category)
        .join(event)
        .join("format");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {}: {e} (kernel without this tracepoint, or not root)",
            path.display()
        )
    })?;
    for &(name, want) in fields {
        match field_offset(&text, name) {
            Some(got) if got == want => {}
            Some(got) => {
                return Err(format!(
                    "field `{name}` is at offset {got}, the probe reads it at {want}: \
                     this kernel's layout differs, the probe needs updating"
                ));
            }
            None => return Err(format!("field `{name}` missing from {}", path.display())),
        }
    }
    Ok(())
}

/// The offset of field `name` in a tracepoint format file.
fn field_offset(format: &str, name: &str) -> Option<usize> {
    format.lines().find_map(|l| {
        let l = l.trim().strip_prefix("field:")?;
        let (decl, rest) = l.split_once(';')?;
        // `const void * skaddr`, `__u8 saddr[4]`: the name is the last word, less any `[n]`.
        let field = decl.rsplit([' ', '*']).next()?.split('[').next()?;
        if field != name {
            return None;
        }
        rest.trim()
            .strip_prefix("offset:")?
            .split(';')
            .next()?
            .trim()
            .parse()
            .ok()
    })
}

fn privileges() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let has = |c: u32| caps & (1 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(permission_hint().to_string())
    }
}

/// What to do about missing privileges.
pub(crate) fn permission_hint() -> &'static str {
    "the probe needs root, or CAP_BPF and CAP_PERFMON: run as root or \
     `setcap cap_bpf,cap_perfmon+ep <path to blaster>`"
}

fn bpffs() -> Result<(), String> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: the path is a NUL-terminated literal and `st` is valid for writes.
    let rc = unsafe { libc::statfs(c"/sys/fs/bpf".as_ptr(), st.as_mut_ptr()) };
    // SAFETY: zero-initialised, and filled by statfs when it succeeded.
    let st = unsafe { st.assume_init() };
    // `f_type`'s width differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let f_type = st.f_type as i64;
    if rc == 0 && f_type == BPF_FS_MAGIC {
        Ok(())
    } else {
        Err(
            "bpffs is not mounted at /sys/fs/bpf: run `mount -t bpf bpf /sys/fs/bpf` \
             (not needed until the probe pins maps)"
                .to_string(),
        )
    }
}

fn btf() -> Result<(), String> {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        Ok(())
    } else {
        Err(
            "no /sys/kernel/btf/vmlinux: the kernel is built without CONFIG_DEBUG_INFO_BTF; \
             the tracepoint programs still work, but io_uring accepts, accepts without a \
             peer address and the ports of some dropped packets are not seen"
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::field_offset;

    #[test]
    fn probe_format_parsing() {
        let f = "format:\n\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
                 \tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;\n\
                 \tfield:enum sk_rst_reason reason;\toffset:28;\tsize:4;\tsigned:0;\n";
        assert_eq!(field_offset(f, "skaddr"), Some(8));
        assert_eq!(field_offset(f, "daddr_v6"), Some(56));
        assert_eq!(field_offset(f, "reason"), Some(28));
        assert_eq!(field_offset(f, "daddr"), None);
    }
}
