//! blaster's eBPF probe: per watched port, TCP handshake, accept-queue wait,
//! receive-queue wait and smoothed RTT histograms, plus retransmit, reset and drop
//! counters, aggregated in the kernel (see docs/PROBE.md and `blaster-common` for the
//! maps).
//!
//! Only tracepoints and one `sock_ops` program are used (kprobes and fentry are not
//! available everywhere blaster runs). The `sock_ops` program, attached to a cgroup v2
//! (the root by default), times the server side of the handshake: request sockets have
//! no tracepoint. Field offsets are those of the tracepoint formats in
//! `/sys/kernel/tracing/events/{sock,tcp,skb,io_uring,syscalls}/*/format`, stable since
//! Linux 5.x; the loader checks them against the running kernel before attaching. The
//! few kernel structs followed by pointer (descriptor tables, `sk_buff` headers) are read
//! with `bpf_probe_read_kernel` at offsets the loader takes from the kernel's BTF
//! ([`KernelOffsets`]); without BTF those paths are off and the rest still works.
#![no_std]
#![no_main]
// `atomic_xadd`: core's atomic types have no read-modify-write methods on the BPF target
// (it has no compare-and-swap), but LLVM lowers a fetch-add to BPF's atomic add.
#![feature(core_intrinsics)]
#![allow(internal_features)]

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, BPF_SOCK_OPS_RWND_INIT},
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_user,
    },
    macros::{map, raw_tracepoint, sock_ops, tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap},
    programs::{RawTracePointContext, SockOpsContext, TracePointContext},
};
use blaster_common::{
    CounterKey, FlowKey, Histogram, KernelOffsets, MAX_COUNTERS, MAX_HISTS, MAX_PORTS, MAX_TRACKED,
    PeerKey, Pending, SRTT_EVERY, SockInfo, counter, hist_index, metric, offsets, state,
};

#[map(name = "WATCH")]
static WATCH: HashMap<u16, u16> = HashMap::with_max_entries(MAX_PORTS, 0);

#[map(name = "HIST")]
static HIST: PerCpuArray<Histogram> = PerCpuArray::with_max_entries(MAX_HISTS, 0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuHashMap<CounterKey, u64> = PerCpuHashMap::with_max_entries(MAX_COUNTERS, 0);

#[map(name = "CONNECTING")]
static CONNECTING: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(MAX_TRACKED, 0);

#[map(name = "ESTABLISHED")]
static ESTABLISHED: LruHashMap<PeerKey, u64> = LruHashMap::with_max_entries(MAX_TRACKED, 0);

#[map(name = "SOCKS")]
static SOCKS: LruHashMap<u64, SockInfo> = LruHashMap::with_max_entries(MAX_TRACKED, 0);

#[map(name = "SYN_RECV")]
static SYN_RECV: LruHashMap<FlowKey, Pending> = LruHashMap::with_max_entries(MAX_TRACKED, 0);

#[map(name = "OFFSETS")]
static OFFSETS: Array<KernelOffsets> = Array::with_max_entries(1, 0);

#[map(name = "STATE")]
static STATE: Array<u64> = Array::with_max_entries(state::COUNT, 0);

#[map(name = "ACCEPTING")]
static ACCEPTING: HashMap<u64, u64> = HashMap::with_max_entries(MAX_TRACKED, 0);

const IPPROTO_TCP: u16 = 6;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_SYN_RECV: i32 = 3;
const TCP_CLOSE: i32 = 7;

/// `MSG_PEEK`: a read that leaves the data queued.
const MSG_PEEK: i32 = 2;
/// `ETH_P_IP` and `ETH_P_IPV6` (`skb:kfree_skb` records `skb->protocol` in host order).
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
/// A completion that consumed a provided buffer: a receive, never an accept.
const IORING_CQE_F_BUFFER: u32 = 1;
/// `skb->transport_header` when no transport header is set.
const NO_HEADER: u16 = 0xffff;

/// Reads the `T` at byte `off` of a tracepoint's record. Tracepoint programs may read their
/// context directly, which is cheaper than the `bpf_probe_read` behind `read_at`.
///
/// # Safety
///
/// `off` must be the offset of a field of type `T` in the record (per its format file).
#[inline(always)]
unsafe fn field<T: Copy>(ctx: &TracePointContext, off: usize) -> Result<T, i32> {
    // SAFETY: the caller names a field of the record; the verifier bounds-checks the access.
    Ok(unsafe { core::ptr::read(ctx.as_ptr().cast::<u8>().add(off).cast::<T>()) })
}

/// Monotonic time, ns.
#[inline(always)]
fn now() -> u64 {
    // SAFETY: a helper without arguments or preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// The slot of a watched port (its histograms' place in [`HIST`]), if it is watched.
#[inline(always)]
fn slot_of(port: u16) -> Option<u16> {
    if port == 0 {
        return None;
    }
    // SAFETY: a live map value, copied out.
    WATCH.get_ptr(port).map(|s| unsafe { *s })
}

#[inline(always)]
fn watched(port: u16) -> bool {
    slot_of(port).is_some()
}

#[inline(always)]
fn count(port: u16, which: u16, detail: u32) {
    let key = CounterKey {
        port,
        counter: which,
        detail,
    };
    match COUNTERS.get_ptr_mut(key) {
        // SAFETY: a live per-CPU map value of this CPU. A program in softirq (the sock_ops
        // one, say) may interrupt one in process context on the same CPU: at worst one
        // increment of the same key is lost, never an invalid access.
        Some(p) => unsafe { *p += 1 },
        None => {
            let _ = COUNTERS.insert(key, 1, 0);
        }
    }
}

/// Adds `ns` to histogram `which` of the port in `slot` (a per-CPU array: no hashing on
/// the per-request paths).
#[inline(always)]
fn record(port: u16, slot: u16, which: u16, ns: u64) {
    match HIST.get_ptr_mut(hist_index(slot, which)) {
        // SAFETY: as in `count`: this CPU's value; an interrupting program can at worst
        // lose one sample of the same histogram.
        Some(h) => unsafe { (*h).record(ns) },
        None => count(port, counter::HIST_MISSING, which as u32),
    }
}

/// Adds `delta` to gauge `which` of [`STATE`] (atomically: programs on every CPU share it).
#[inline(always)]
fn gauge_add(which: u32, delta: u64) {
    if let Some(p) = STATE.get_ptr_mut(which) {
        // SAFETY: a live, 8-byte aligned array map value; only ever accessed atomically.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, delta) };
    }
}

#[inline(always)]
fn gauge(which: u32) -> u64 {
    match STATE.get_ptr_mut(which) {
        // SAFETY: a live, aligned array map value. A plain (volatile) load: an aligned 8-byte
        // load is atomic on every BPF JIT, and BPF v1 has no atomic-load instruction.
        Some(p) => unsafe { core::ptr::read_volatile(p) },
        None => 0,
    }
}

/// The kernel struct offsets, if the loader found them in BTF.
#[inline(always)]
fn kernel_offsets() -> Option<&'static KernelOffsets> {
    OFFSETS.get(0)
}

/// Reads a `T` at kernel address `base + off`.
#[inline(always)]
fn read_kernel<T>(base: u64, off: u32) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel checks the address and fails instead of faulting.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }
}

/// An accept returned socket `sk`: records its accept-queue wait if it is a passive open
/// on a watched port that was still waiting. True if it was.
#[inline(always)]
fn accepted(sk: u64) -> bool {
    let Some(info) = SOCKS.get_ptr_mut(sk) else {
        return false;
    };
    // SAFETY: a live map value of the LRU hash; concurrent updates of the same socket
    // are serialised by the socket itself (its state changes and accept).
    let (established, port, slot) = unsafe { ((*info).established, (*info).port, (*info).slot) };
    if established == 0 {
        return false;
    }
    // SAFETY: as above.
    unsafe { (*info).established = 0 };
    gauge_add(state::UNACCEPTED, u64::MAX);
    record(
        port,
        slot,
        metric::ACCEPT_WAIT,
        now().saturating_sub(established),
    );
    true
}

/// The socket behind `struct file *file`, if the offsets are known (0 otherwise).
#[inline(always)]
fn file_sock(o: &KernelOffsets, file: u64) -> u64 {
    if file == 0 || o.valid & offsets::FILE_SOCKET == 0 {
        return 0;
    }
    let Ok(socket) = read_kernel::<u64>(file, o.file_private_data) else {
        return 0;
    };
    if socket == 0 {
        return 0;
    }
    read_kernel::<u64>(socket, o.socket_sk).unwrap_or(0)
}

/// The socket behind descriptor `fd` of the current task.
#[inline(always)]
fn fd_sock(o: &KernelOffsets, fd: u32) -> u64 {
    if o.valid & offsets::FD_TABLE == 0 {
        return 0;
    }
    // SAFETY: a helper without preconditions; the result is only used as an address
    // for bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() };
    let Ok(files) = read_kernel::<u64>(task, o.task_files) else {
        return 0;
    };
    let Ok(fdt) = read_kernel::<u64>(files, o.files_fdt) else {
        return 0;
    };
    match read_kernel::<u32>(fdt, o.fdt_max_fds) {
        Ok(max) if fd < max => {}
        _ => return 0,
    }
    let Ok(fds) = read_kernel::<u64>(fdt, o.fdt_fd) else {
        return 0;
    };
    let file = read_kernel::<u64>(fds, fd * 8).unwrap_or(0);
    file_sock(o, file)
}

/// The socket behind direct descriptor `slot` of io_uring context `ctx`.
#[inline(always)]
fn fixed_sock(o: &KernelOffsets, ctx: u64, slot: u32) -> u64 {
    if o.valid & offsets::URING_FIXED == 0 {
        return 0;
    }
    match read_kernel::<u32>(ctx, o.ctx_files_nr) {
        Ok(nr) if slot < nr => {}
        _ => return 0,
    }
    let Ok(nodes) = read_kernel::<u64>(ctx, o.ctx_files_nodes) else {
        return 0;
    };
    let node = read_kernel::<u64>(nodes, slot * 8).unwrap_or(0);
    if node == 0 {
        return 0;
    }
    let file = read_kernel::<u64>(node, o.rsrc_node_file_ptr).unwrap_or(0) & !3;
    file_sock(o, file)
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
    let protocol: u16 = unsafe { field(ctx, 30)? };
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    // SAFETY: as above.
    let (skaddr, old, new): (u64, i32, i32) =
        unsafe { (field(ctx, 8)?, field(ctx, 16)?, field(ctx, 20)?) };
    // SAFETY: as above.
    let (sport, dport): (u16, u16) = unsafe { (field(ctx, 24)?, field(ctx, 26)?) };
    match (old, new) {
        // connect(): the SYN is about to go out.
        (TCP_CLOSE, TCP_SYN_SENT) => {
            if let Some(slot) = slot_of(dport) {
                let p = Pending {
                    ts: now(),
                    port: dport,
                    slot,
                    _pad: [0; 2],
                };
                let _ = CONNECTING.insert(skaddr, p, 0);
            }
        }
        // The SYN-ACK arrived: active open complete.
        (TCP_SYN_SENT, TCP_ESTABLISHED) => match CONNECTING.get_ptr(skaddr) {
            Some(p) => {
                // SAFETY: a live map value; copied out before the remove below.
                let p = unsafe { *p };
                record(
                    p.port,
                    p.slot,
                    metric::HANDSHAKE,
                    now().saturating_sub(p.ts),
                );
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
            if let Some(slot) = slot_of(sport) {
                // SAFETY: as above.
                let family: u16 = unsafe { field(ctx, 28)? };
                let mut key = PeerKey {
                    addr: [0; 16],
                    port: dport,
                    family,
                    _pad: 0,
                };
                if family == AF_INET {
                    // SAFETY: as above.
                    // (Whole aligned words: the verifier refuses a context pointer that
                    // was moved, which a byte-array copy may do.)
                    let a: u32 = unsafe { field(ctx, 36)? };
                    key.addr[..4].copy_from_slice(&a.to_ne_bytes());
                } else if family == AF_INET6 {
                    // SAFETY: as above.
                    let (hi, lo): (u64, u64) = unsafe { (field(ctx, 56)?, field(ctx, 64)?) };
                    key.addr[..8].copy_from_slice(&hi.to_ne_bytes());
                    key.addr[8..].copy_from_slice(&lo.to_ne_bytes());
                } else {
                    return Ok(());
                }
                let info = SockInfo {
                    established: now(),
                    ready: 0,
                    port: sport,
                    slot,
                    reads: 0,
                    _pad: 0,
                };
                if SOCKS.insert(skaddr, info, 0).is_ok() {
                    gauge_add(state::UNACCEPTED, 1);
                }
                // The peer-address match is the fallback for accept(2) without BTF; with
                // the descriptor table readable it is not needed (one map insert less
                // per connection).
                let fd_table = kernel_offsets().is_some_and(|o| {
                    o.valid & (offsets::FD_TABLE | offsets::FILE_SOCKET)
                        == offsets::FD_TABLE | offsets::FILE_SOCKET
                });
                if !fd_table {
                    let _ = ESTABLISHED.insert(key, skaddr, 0);
                }
                count(sport, counter::PASSIVE_OPEN, 0);
            }
        }
        // Any other close: forget a passive open (and whether it was ever accepted).
        (_, TCP_CLOSE) => {
            if let Some(info) = SOCKS.get_ptr(skaddr) {
                // SAFETY: a live map value; copied out before the remove below.
                let info = unsafe { *info };
                if info.established != 0 {
                    gauge_add(state::UNACCEPTED, u64::MAX);
                    count(info.port, counter::CLOSED_UNACCEPTED, 0);
                }
                let _ = SOCKS.remove(skaddr);
            }
        }
        _ => {}
    }
    Ok(())
}

// ---- accept(2) / accept4(2) ------------------------------------------------------------

/// `syscalls:sys_enter_accept{,4}`: upeer_sockaddr@24 (0 when the caller passed none).
#[inline(always)]
fn accept_enter(ctx: &TracePointContext) -> u32 {
    // SAFETY: offset within the tracepoint's record, per its format file.
    if let Ok(addr) = unsafe { field::<u64>(ctx, 24) } {
        let _ = ACCEPTING.insert(bpf_get_current_pid_tgid(), addr, 0);
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
    let ret: i64 = unsafe { field(ctx, 16) }.unwrap_or(-1);
    if ret < 0 {
        return 0;
    }
    // The descriptor leads to the socket when BTF gave the offsets; else the peer
    // address accept() wrote (if the caller asked for it) finds it. Only while a passive
    // open on a watched port waits: accepts on other ports cost no table walk.
    if gauge(state::UNACCEPTED) == 0 {
        return 0;
    }
    if let Some(o) = kernel_offsets()
        && accepted(fd_sock(o, ret as u32))
    {
        return 0;
    }
    if addr != 0 {
        let _ = try_accept_exit(addr);
    }
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
    if let Some(sk) = ESTABLISHED.get_ptr(key) {
        // SAFETY: a live map value; copied out before the remove below.
        let sk = unsafe { *sk };
        let _ = ESTABLISHED.remove(key);
        accepted(sk);
    }
    Ok(())
}

// ---- io_uring accepts ------------------------------------------------------------------

/// `io_uring:io_uring_complete`: ctx@8 res@32. io_uring accepts make no accept syscall,
/// and a multishot accept's request was submitted long before (often before the probe
/// started), so every completion with a non-negative result is tried as a descriptor:
/// first as a direct descriptor of its ring, then as a regular one of the current task
/// (the ring's owner, or an io-wq worker sharing its table). Only while some passive open
/// waits to be accepted ([`state::UNACCEPTED`]), so steady keep-alive traffic costs one
/// map read per completion. A result that is a byte count rather than a descriptor
/// finds no waiting socket and records nothing.
#[tracepoint(category = "io_uring", name = "io_uring_complete")]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    if gauge(state::UNACCEPTED) == 0 {
        return 0;
    }
    let Some(o) = kernel_offsets() else {
        return 0;
    };
    // SAFETY: offsets within the tracepoint's record, per its format file.
    let fields = unsafe {
        (
            field::<u64>(&ctx, 8),
            field::<i32>(&ctx, 32),
            field::<u32>(&ctx, 36),
        )
    };
    if let (Ok(ring), Ok(res), Ok(cflags)) = fields
        && cflags & IORING_CQE_F_BUFFER == 0
    {
        uring_accept(o, ring, res);
    }
    0
}

/// The same as a raw tracepoint, for kernels whose `io_uring_complete` passes
/// `(struct io_ring_ctx *ctx, void *req, struct io_uring_cqe *cqe)` (6.x; the loader
/// checks in BTF that the CQE is argument 2): no trace record is formatted for each of the
/// host's io_uring completions. (One fixed argument: the verifier refuses a context
/// offset chosen at run time.)
#[raw_tracepoint(tracepoint = "io_uring_complete")]
pub fn io_uring_complete_raw(ctx: RawTracePointContext) -> i32 {
    if gauge(state::UNACCEPTED) == 0 {
        return 0;
    }
    let Some(o) = kernel_offsets() else {
        return 0;
    };
    let ring: u64 = ctx.arg(0);
    let cqe: u64 = ctx.arg(2);
    // `flags` follows `res` in `struct io_uring_cqe` (a uapi struct: fixed layout).
    if let (Ok(res), Ok(cflags)) = (
        read_kernel::<i32>(cqe, o.cqe_res),
        read_kernel::<u32>(cqe, o.cqe_res + 4),
    ) && cflags & IORING_CQE_F_BUFFER == 0
    {
        uring_accept(o, ring, res);
    }
    0
}

/// A completion of ring `ring` with result `res`: if `res` is the descriptor of a
/// passive open waiting to be accepted, that was its accept.
#[inline(always)]
fn uring_accept(o: &KernelOffsets, ring: u64, res: i32) {
    if res < 0 {
        return;
    }
    let sk = fixed_sock(o, ring, res as u32);
    if sk != 0 && accepted(sk) {
        if let Some(i) = SOCKS.get_ptr(sk) {
            // SAFETY: a live map value.
            count(unsafe { (*i).port }, counter::URING_ACCEPT, 0);
        }
        return;
    }
    let sk = fd_sock(o, res as u32);
    if sk != 0 && accepted(sk) {
        if let Some(i) = SOCKS.get_ptr(sk) {
            // SAFETY: a live map value.
            count(unsafe { (*i).port }, counter::URING_ACCEPT, 1);
        }
    }
}

// ---- receive queue -----------------------------------------------------------------------

/// `sock:sk_data_ready` (raw: `struct sock *sk`). Data (or a FIN) became ready; the wait
/// starts when the queue had nothing unread. A raw tracepoint: the kernel builds no trace
/// record for it, and the socket pointer is all this needs (only TCP sockets are in
/// [`SOCKS`]).
#[raw_tracepoint(tracepoint = "sk_data_ready")]
pub fn sk_data_ready(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    if let Some(info) = SOCKS.get_ptr_mut(sk) {
        // SAFETY: a live map value; the socket's receive path is serialised by its lock.
        unsafe {
            let ready = (*info).ready;
            // A stamp from before the current sampling window: its read went unseen.
            if ready == 0 || ready < gauge(state::RECV_WINDOW) {
                (*info).ready = now();
            }
        }
    }
    0
}

/// `sock:sock_recv_length` (raw: `struct sock *sk, int ret, int flags`). A read
/// returned: if it took data, the wait since the data became ready ends; if it saw the end
/// of the stream, there is nothing left waiting.
#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn sock_recv_length(ctx: RawTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    let ret = ctx.arg::<u64>(1) as i32;
    let flags = ctx.arg::<u64>(2) as i32;
    if ret < 0 || flags & MSG_PEEK != 0 {
        return 0;
    }
    let Some(info) = SOCKS.get_ptr_mut(sk) else {
        return 0;
    };
    // SAFETY: as above.
    let (ready, port, slot, reads) =
        unsafe { ((*info).ready, (*info).port, (*info).slot, (*info).reads) };
    if ready != 0 {
        // SAFETY: as above.
        unsafe { (*info).ready = 0 };
        if ret > 0 && ready >= gauge(state::RECV_WINDOW) {
            record(
                port,
                slot,
                metric::RECV_QUEUE_WAIT,
                now().saturating_sub(ready),
            );
        }
    }
    if ret > 0 {
        // SAFETY: as above.
        unsafe { (*info).reads = reads.wrapping_add(1) };
        if reads & (SRTT_EVERY - 1) == 0 {
            srtt_sample(sk, port, slot);
        }
    }
    0
}

/// Records the smoothed RTT of socket `sk` (`tcp_sock.srtt_us`, offset from BTF), sampled
/// at one in [`SRTT_EVERY`] reads that took data: per request at most rather than per
/// segment, and without a program on `tcp:tcp_probe`, which fires for every segment of
/// every connection.
#[inline(always)]
fn srtt_sample(sk: u64, port: u16, slot: u16) {
    let Some(o) = kernel_offsets() else {
        return;
    };
    if o.valid & offsets::TCP_SRTT == 0 {
        return;
    }
    // srtt_us holds 8 x the smoothed RTT in µs; 0: not measured yet.
    let srtt = read_kernel::<u32>(sk, o.tcp_srtt_us).unwrap_or(0) >> 3;
    if srtt != 0 {
        record(port, slot, metric::RTT, srtt as u64 * 1000);
    }
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

// ---- sock_ops: server-side handshake ----------------------------------------------------

/// The cgroup's `sock_ops` program (attached by the loader to a cgroup v2, the root by
/// default, so it sees the sockets of every process below it in every network namespace).
/// It runs a few times per connection (not per packet); two callbacks matter:
///
/// - `BPF_SOCK_OPS_RWND_INIT` on a request socket (`is_fullsock` 0): `tcp_conn_request`
///   asks for the initial receive window of the SYN it just accepted, before the SYN-ACK
///   goes out (also for Fast Open SYNs; `TIMEOUT_INIT` would miss those, and older
///   kernels call it again at the final ACK). On a full socket it is a `connect()`, not
///   ours. A SYN answered with a cookie gets a request socket without a listener, for
///   which no cgroup program runs: its connection counts as unmatched.
/// - `BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB`: the child socket is established (the final
///   ACK came, or at once for Fast Open).
///
/// Both see the same 4-tuple, the key of [`SYN_RECV`]. The return value 1 leaves the
/// kernel's choices (window, timeout) alone: `reply` is never set.
#[sock_ops]
pub fn sock_ops(ctx: SockOpsContext) -> u32 {
    let op = ctx.op();
    if op != BPF_SOCK_OPS_RWND_INIT && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        return 1;
    }
    // Host order, the listener's port for both callbacks.
    let port = ctx.local_port() as u16;
    let Some(slot) = slot_of(port) else {
        return 1;
    };
    let key = flow_key(&ctx);
    if op == BPF_SOCK_OPS_RWND_INIT {
        // SAFETY: a field of the context; the verifier checks the access.
        if unsafe { core::ptr::read_volatile(&(*ctx.ops).is_fullsock) } != 0 {
            return 1;
        }
        let p = Pending {
            ts: now(),
            port,
            slot,
            _pad: [0; 2],
        };
        // A SYN for a 4-tuple already waiting replaces it (the old one was abandoned: a
        // retransmitted SYN of a live request finds the request, not this path).
        let _ = SYN_RECV.insert(key, p, 0);
        count(port, counter::SYN_RECEIVED, 0);
    } else {
        match SYN_RECV.get_ptr(key) {
            Some(p) => {
                // SAFETY: a live map value; copied out before the remove below.
                let ts = unsafe { (*p).ts };
                let _ = SYN_RECV.remove(key);
                record(
                    port,
                    slot,
                    metric::SERVER_HANDSHAKE,
                    now().saturating_sub(ts),
                );
            }
            None => count(port, counter::SERVER_HANDSHAKE_UNMATCHED, 0),
        }
    }
    1
}

/// The 4-tuple of a `sock_ops` context, IPv4 addresses IPv4-mapped (see [`FlowKey`]).
/// Each context word is read on its own: the verifier allows only 4-byte loads of them.
#[inline(always)]
fn flow_key(ctx: &SockOpsContext) -> FlowKey {
    let ops = ctx.ops;
    let mut key = FlowKey {
        local_ip: [0; 4],
        remote_ip: [0; 4],
        local_port: ctx.local_port(),
        remote_port: ctx.remote_port(),
    };
    if ctx.family() == AF_INET6 as u32 {
        // SAFETY: fields of the context; the verifier checks each 4-byte access.
        unsafe {
            key.local_ip[0] = core::ptr::read_volatile(&(*ops).local_ip6[0]);
            key.local_ip[1] = core::ptr::read_volatile(&(*ops).local_ip6[1]);
            key.local_ip[2] = core::ptr::read_volatile(&(*ops).local_ip6[2]);
            key.local_ip[3] = core::ptr::read_volatile(&(*ops).local_ip6[3]);
            key.remote_ip[0] = core::ptr::read_volatile(&(*ops).remote_ip6[0]);
            key.remote_ip[1] = core::ptr::read_volatile(&(*ops).remote_ip6[1]);
            key.remote_ip[2] = core::ptr::read_volatile(&(*ops).remote_ip6[2]);
            key.remote_ip[3] = core::ptr::read_volatile(&(*ops).remote_ip6[3]);
        }
    } else {
        // ::ffff:a.b.c.d
        let mapped = 0xffff_u32.to_be();
        key.local_ip[2] = mapped;
        key.local_ip[3] = ctx.local_ip4();
        key.remote_ip[2] = mapped;
        key.remote_ip[3] = ctx.remote_ip4();
    }
    key
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
    if let (Ok(s), Ok(d)) = unsafe { (field::<u16>(&ctx, 28), field::<u16>(&ctx, 30)) } {
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
            field::<u32>(&ctx, 28),
            field::<u16>(&ctx, 34),
            field::<u16>(&ctx, 62),
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
    if let (Ok(s), Ok(d)) = unsafe { (field::<u16>(&ctx, 16), field::<u16>(&ctx, 18)) } {
        if let Some(port) = watched_of(s, d) {
            count(port, counter::RECV_RESET, 0);
        }
    }
    0
}

/// `tcp:tcp_retransmit_synack`: sport@24 (the listening port).
#[tracepoint(category = "tcp", name = "tcp_retransmit_synack")]
pub fn tcp_retransmit_synack(ctx: TracePointContext) -> u32 {
    // SAFETY: offset within the tracepoint's record, per its format file.
    if let Ok(s) = unsafe { field::<u16>(&ctx, 24) } {
        if watched(s) {
            count(s, counter::SYNACK_RETRANSMIT, 0);
        }
    }
    0
}

/// `skb:kfree_skb` (drops only; freed-after-use packets go to `consume_skb`):
/// skbaddr@8 rx_sk@24 protocol@32 reason@36. The port comes from the receiving socket
/// when there is one, else from the packet's TCP header.
#[tracepoint(category = "skb", name = "kfree_skb")]
pub fn kfree_skb(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets within the tracepoint's record, per its format file.
    let fields = unsafe {
        (
            field::<u64>(&ctx, 8),
            field::<u64>(&ctx, 24),
            field::<u16>(&ctx, 32),
            field::<u32>(&ctx, 36),
        )
    };
    let (Ok(skb), Ok(rx_sk), Ok(l3), Ok(reason)) = fields else {
        return 0;
    };
    let port = drop_port(skb, rx_sk, l3);
    if port != 0 {
        count(port, counter::KFREE_SKB, reason);
    }
    0
}

/// The watched port a dropped packet belongs to, or 0.
#[inline(always)]
fn drop_port(skb: u64, rx_sk: u64, l3: u16) -> u16 {
    if rx_sk != 0 {
        if let Some(info) = SOCKS.get_ptr(rx_sk) {
            // SAFETY: a live map value.
            return unsafe { (*info).port };
        }
    }
    let Some(o) = kernel_offsets() else {
        return 0;
    };
    if rx_sk != 0 {
        if o.valid & offsets::SOCK == 0 {
            return 0;
        }
        if read_kernel::<u16>(rx_sk, o.sk_protocol) != Ok(IPPROTO_TCP) {
            return 0;
        }
        let local = read_kernel::<u16>(rx_sk, o.sk_num).unwrap_or(0);
        let remote = u16::from_be(read_kernel::<u16>(rx_sk, o.sk_dport).unwrap_or(0));
        return watched_of(local, remote).unwrap_or(0);
    }
    if o.valid & offsets::SKB == 0 {
        return 0;
    }
    let Ok(head) = read_kernel::<u64>(skb, o.skb_head) else {
        return 0;
    };
    let nh = read_kernel::<u16>(skb, o.skb_network_header).unwrap_or(NO_HEADER);
    let th = read_kernel::<u16>(skb, o.skb_transport_header).unwrap_or(NO_HEADER);
    if nh == NO_HEADER || th == NO_HEADER || th <= nh {
        return 0;
    }
    // IPv4 protocol at +9; IPv6 next header at +6 (extension headers are not followed).
    let proto_at = match l3 {
        ETH_P_IP => 9,
        ETH_P_IPV6 => 6,
        _ => return 0,
    };
    if read_kernel::<u8>(head + nh as u64, proto_at) != Ok(IPPROTO_TCP as u8) {
        return 0;
    }
    let src = u16::from_be(read_kernel::<u16>(head + th as u64, 0).unwrap_or(0));
    let dst = u16::from_be(read_kernel::<u16>(head + th as u64, 2).unwrap_or(0));
    watched_of(dst, src).unwrap_or(0)
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
