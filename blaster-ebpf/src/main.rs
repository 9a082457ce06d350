//! blaster's eBPF probe: TCP handshake and accept-queue latency per watched port, plus
//! retransmit and reset counters, aggregated in the kernel (see docs/PROBE.md and
//! `blaster-common` for the maps).
//!
//! Only tracepoints are used (kprobes and fentry are not available everywhere blaster
//! runs). Field offsets are those of the tracepoint formats in
//! `/sys/kernel/tracing/events/{sock,tcp,syscalls}/*/format`, stable since Linux 5.x;
//! the loader checks them against the running kernel before attaching.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuHashMap},
    programs::TracePointContext,
};
use blaster_common::{
    CounterKey, HistKey, Histogram, MAX_COUNTERS, MAX_HISTS, MAX_PORTS, MAX_TRACKED, PeerKey,
    Pending, counter, metric,
};

#[map(name = "WATCH")]
static WATCH: HashMap<u16, u8> = HashMap::with_max_entries(MAX_PORTS, 0);

#[map(name = "HIST")]
static HIST: PerCpuHashMap<HistKey, Histogram> = PerCpuHashMap::with_max_entries(MAX_HISTS, 0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuHashMap<CounterKey, u64> = PerCpuHashMap::with_max_entries(MAX_COUNTERS, 0);

#[map(name = "CONNECTING")]
static CONNECTING: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(MAX_TRACKED, 0);

#[map(name = "ESTABLISHED")]
static ESTABLISHED: LruHashMap<PeerKey, Pending> = LruHashMap::with_max_entries(MAX_TRACKED, 0);

#[map(name = "ACCEPTING")]
static ACCEPTING: HashMap<u64, u64> = HashMap::with_max_entries(MAX_TRACKED, 0);

const IPPROTO_TCP: u16 = 6;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_SYN_RECV: i32 = 3;
const TCP_CLOSE: i32 = 7;

/// Monotonic time, ns.
#[inline(always)]
fn now() -> u64 {
    // SAFETY: a helper without arguments or preconditions.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn watched(port: u16) -> bool {
    port != 0 && WATCH.get_ptr(port).is_some()
}

#[inline(always)]
fn count(port: u16, which: u16, detail: u32) {
    let key = CounterKey {
        port,
        counter: which,
        detail,
    };
    match COUNTERS.get_ptr_mut(key) {
        // SAFETY: a per-CPU map value of this CPU; tracepoint programs do not nest on a CPU.
        Some(p) => unsafe { *p += 1 },
        None => {
            let _ = COUNTERS.insert(key, 1, 0);
        }
    }
}

#[inline(always)]
fn record(port: u16, which: u16, ns: u64) {
    let key = HistKey {
        port,
        metric: which,
        _pad: 0,
    };
    match HIST.get_ptr_mut(key) {
        // SAFETY: a per-CPU map value of this CPU; tracepoint programs do not nest on a CPU.
        Some(h) => unsafe { (*h).record(ns) },
        None => count(port, counter::HIST_MISSING, which as u32),
    }
}

// ---- sock:inet_sock_set_state ---------------------------------------------------------

/// `sock:inet_sock_set_state`: skaddr@8 oldstate@16 newstate@20 sport@24 dport@26
/// family@28 protocol@30 daddr@36 daddr_v6@56.
#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = try_set_state(&ctx);
    0
}

#[inline(always)]
fn try_set_state(ctx: &TracePointContext) -> Result<(), i32> {
    // SAFETY: offsets within the tracepoint's record, per its format file.
    let protocol: u16 = unsafe { ctx.read_at(30)? };
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    // SAFETY: as above.
    let (skaddr, old, new): (u64, i32, i32) =
        unsafe { (ctx.read_at(8)?, ctx.read_at(16)?, ctx.read_at(20)?) };
    // SAFETY: as above.
    let (sport, dport): (u16, u16) = unsafe { (ctx.read_at(24)?, ctx.read_at(26)?) };
    match (old, new) {
        // connect(): the SYN is about to go out.
        (TCP_CLOSE, TCP_SYN_SENT) => {
            if watched(dport) {
                let p = Pending {
                    ts: now(),
                    port: dport,
                    _pad: [0; 3],
                };
                let _ = CONNECTING.insert(skaddr, p, 0);
            }
        }
        // The SYN-ACK arrived: active open complete.
        (TCP_SYN_SENT, TCP_ESTABLISHED) => match CONNECTING.get_ptr(skaddr) {
            Some(p) => {
                // SAFETY: a live map value; copied out before the remove below.
                let p = unsafe { *p };
                record(p.port, metric::HANDSHAKE, now().saturating_sub(p.ts));
                let _ = CONNECTING.remove(skaddr);
            }
            None => {
                if watched(dport) {
                    count(dport, counter::HANDSHAKE_UNMATCHED, 0);
                }
            }
        },
        // Refused, timed out or reset before it was established.
        (TCP_SYN_SENT, TCP_CLOSE) => {
            if let Some(p) = CONNECTING.get_ptr(skaddr) {
                // SAFETY: as above.
                let port = unsafe { (*p).port };
                count(port, counter::CONNECT_FAILED, 0);
                let _ = CONNECTING.remove(skaddr);
            }
        }
        // Passive open: the final ACK made the child socket established; it now waits
        // in the listener's accept queue, keyed by its peer as accept() will report it.
        (TCP_SYN_RECV, TCP_ESTABLISHED) => {
            if watched(sport) {
                // SAFETY: as above.
                let family: u16 = unsafe { ctx.read_at(28)? };
                let mut key = PeerKey {
                    addr: [0; 16],
                    port: dport,
                    family,
                    _pad: 0,
                };
                if family == AF_INET {
                    // SAFETY: as above.
                    let a: [u8; 4] = unsafe { ctx.read_at(36)? };
                    key.addr[..4].copy_from_slice(&a);
                } else if family == AF_INET6 {
                    // SAFETY: as above.
                    key.addr = unsafe { ctx.read_at(56)? };
                } else {
                    return Ok(());
                }
                let p = Pending {
                    ts: now(),
                    port: sport,
                    _pad: [0; 3],
                };
                let _ = ESTABLISHED.insert(key, p, 0);
            }
        }
        _ => {}
    }
    Ok(())
}

// ---- accept(2) / accept4(2) ------------------------------------------------------------

/// `syscalls:sys_enter_accept{,4}`: upeer_sockaddr@24.
#[inline(always)]
fn accept_enter(ctx: &TracePointContext) -> u32 {
    // SAFETY: offset within the tracepoint's record, per its format file.
    if let Ok(addr) = unsafe { ctx.read_at::<u64>(24) } {
        if addr != 0 {
            let _ = ACCEPTING.insert(bpf_get_current_pid_tgid(), addr, 0);
        }
    }
    0
}

/// `syscalls:sys_exit_accept{,4}`: ret@16. Reads the peer address accept() just wrote
/// to user memory and matches it against the established connections.
#[inline(always)]
fn accept_exit(ctx: &TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    let Some(addr) = ACCEPTING.get_ptr(id) else {
        return 0;
    };
    // SAFETY: a live map value; copied out before the remove below.
    let addr = unsafe { *addr };
    let _ = ACCEPTING.remove(id);
    // SAFETY: offset within the tracepoint's record, per its format file.
    let ret: i64 = unsafe { ctx.read_at(16) }.unwrap_or(-1);
    if ret < 0 {
        return 0;
    }
    let _ = try_accept_exit(addr);
    0
}

#[inline(always)]
fn try_accept_exit(addr: u64) -> Result<(), i32> {
    let sa = addr as *const u8;
    // SAFETY: bpf_probe_read_user checks the user pointer and fails instead of faulting.
    let family: u16 = unsafe { bpf_probe_read_user(sa as *const u16)? };
    // SAFETY: as above; sin_port / sin6_port at offset 2, network order.
    let port = u16::from_be(unsafe { bpf_probe_read_user(sa.wrapping_add(2) as *const u16)? });
    let mut key = PeerKey {
        addr: [0; 16],
        port,
        family,
        _pad: 0,
    };
    if family == AF_INET {
        // SAFETY: as above; sin_addr at offset 4.
        let a: [u8; 4] = unsafe { bpf_probe_read_user(sa.wrapping_add(4) as *const [u8; 4])? };
        key.addr[..4].copy_from_slice(&a);
    } else if family == AF_INET6 {
        // SAFETY: as above; sin6_addr at offset 8.
        key.addr = unsafe { bpf_probe_read_user(sa.wrapping_add(8) as *const [u8; 16])? };
    } else {
        return Ok(());
    }
    if let Some(p) = ESTABLISHED.get_ptr(key) {
        // SAFETY: a live map value; copied out before the remove below.
        let p = unsafe { *p };
        record(p.port, metric::ACCEPT_WAIT, now().saturating_sub(p.ts));
        let _ = ESTABLISHED.remove(key);
    }
    Ok(())
}

#[tracepoint(category = "syscalls", name = "sys_enter_accept4")]
pub fn sys_enter_accept4(ctx: TracePointContext) -> u32 {
    accept_enter(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    accept_exit(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_enter_accept")]
pub fn sys_enter_accept(ctx: TracePointContext) -> u32 {
    accept_enter(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    accept_exit(&ctx)
}

// ---- tcp counters -----------------------------------------------------------------------

/// The watched port among `a` and `b`, if any.
#[inline(always)]
fn watched_of(a: u16, b: u16) -> Option<u16> {
    if watched(a) {
        Some(a)
    } else if watched(b) {
        Some(b)
    } else {
        None
    }
}

/// `tcp:tcp_retransmit_skb`: sport@28 dport@30.
#[tracepoint(category = "tcp", name = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets within the tracepoint's record, per its format file.
    if let (Ok(s), Ok(d)) = unsafe { (ctx.read_at::<u16>(28), ctx.read_at::<u16>(30)) } {
        if let Some(port) = watched_of(s, d) {
            count(port, counter::RETRANSMIT, 0);
        }
    }
    0
}

/// `tcp:tcp_send_reset`: reason@28, saddr@32 and daddr@60 are `struct sockaddr_in{,6}`
/// (port at +2, network order).
#[tracepoint(category = "tcp", name = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets within the tracepoint's record, per its format file.
    let fields = unsafe {
        (
            ctx.read_at::<u32>(28),
            ctx.read_at::<u16>(34),
            ctx.read_at::<u16>(62),
        )
    };
    if let (Ok(reason), Ok(s), Ok(d)) = fields {
        if let Some(port) = watched_of(u16::from_be(s), u16::from_be(d)) {
            count(port, counter::SEND_RESET, reason);
        }
    }
    0
}

/// `tcp:tcp_receive_reset`: sport@16 dport@18.
#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets within the tracepoint's record, per its format file.
    if let (Ok(s), Ok(d)) = unsafe { (ctx.read_at::<u16>(16), ctx.read_at::<u16>(18)) } {
        if let Some(port) = watched_of(s, d) {
            count(port, counter::RECV_RESET, 0);
        }
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL-compatible: `bpf_probe_read_user` is a GPL-only helper.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
