//! Types shared by blaster's eBPF probe (`blaster-ebpf`, kernel side) and its loader
//! (`blaster::probe`, user side). Everything here is `#[repr(C)]`, `Copy` and free of
//! pointers, so the same bytes mean the same thing on both sides of a BPF map.
//!
//! `no_std` by default; the `user` feature adds the `aya::Pod` impls the loader needs.
//!
//! # Maps (names are the ELF symbol names the loader looks up)
//!
//! | map | kind | key | value | written by |
//! | --- | --- | --- | --- | --- |
//! | [`MAP_WATCH`] | hash | port `u16` | slot `u16` | user: the ports to watch, slots 0.. |
//! | [`MAP_HIST`] | per-CPU array | [`hist_index`] | [`Histogram`] | kernel adds |
//! | [`MAP_COUNTERS`] | per-CPU hash | [`CounterKey`] | `u64` | kernel inserts and adds |
//! | [`MAP_CONNECTING`] | LRU hash | socket address `u64` | [`Pending`] | kernel only (SYN sent) |
//! | [`MAP_ESTABLISHED`] | LRU hash | [`PeerKey`] | [`Pending`] | kernel only (awaiting accept) |
//! | [`MAP_ACCEPTING`] | hash | pid_tgid `u64` | user pointer `u64` | kernel only (in accept) |
//! | [`MAP_SOCKS`] | LRU hash | socket address `u64` | [`SockInfo`] | kernel only (passive opens on watched ports) |
//! | [`MAP_SYN_RECV`] | LRU hash | [`FlowKey`] | [`Pending`] | kernel only (SYN received, `sock_ops`) |
//! | [`MAP_OFFSETS`] | array (1) | `u32` 0 | [`KernelOffsets`] | user: struct offsets from the kernel's BTF |
//! | [`MAP_STATE`] | array ([`state::COUNT`]) | `u32` | `u64` | kernel: [`state`] gauges |
//!
//! Histograms live in a per-CPU array indexed by the port's slot and the metric: a
//! [`Histogram`] is larger than the 512-byte BPF stack, so the kernel side only ever updates
//! an entry in place, and an array needs no hashing and no pre-inserted entries.
#![no_std]

/// Watched listening ports: key `u16` port (host order), value `u8` 1.
pub const MAP_WATCH: &str = "WATCH";
/// Per-(port slot, metric) latency histograms: [`hist_index`] -> [`Histogram`] (per CPU).
pub const MAP_HIST: &str = "HIST";
/// Per-(port, counter, detail) event counts: [`CounterKey`] -> `u64` (per CPU).
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Sockets in SYN_SENT: socket address -> [`Pending`].
pub const MAP_CONNECTING: &str = "CONNECTING";
/// Passively opened sockets not yet accepted: [`PeerKey`] -> socket address `u64` (its
/// entry in [`MAP_SOCKS`]).
pub const MAP_ESTABLISHED: &str = "ESTABLISHED";
/// Threads inside accept(2)/accept4(2): pid_tgid -> user `struct sockaddr *`.
pub const MAP_ACCEPTING: &str = "ACCEPTING";
/// Passively opened sockets on watched ports: socket address -> [`SockInfo`].
pub const MAP_SOCKS: &str = "SOCKS";
/// SYNs received on watched ports, awaiting their final ACK (the `sock_ops` program):
/// [`FlowKey`] -> [`Pending`]. Abandoned SYNs are left to the LRU to evict.
pub const MAP_SYN_RECV: &str = "SYN_RECV";
/// One [`KernelOffsets`] at index 0, written by user space before attaching.
pub const MAP_OFFSETS: &str = "OFFSETS";
/// Gauges the programs keep for themselves; see [`state`].
pub const MAP_STATE: &str = "STATE";

/// Most ports the probe watches at once (entries of [`MAP_WATCH`]).
pub const MAX_PORTS: u32 = 64;
/// Entries of [`MAP_HIST`]: every metric for every watched port.
pub const MAX_HISTS: u32 = MAX_PORTS * metric::COUNT as u32;
/// Entries of [`MAP_COUNTERS`].
pub const MAX_COUNTERS: u32 = 4096;
/// Entries of the LRU connection-tracking maps.
pub const MAX_TRACKED: u32 = 65536;

/// Sub-bucket bits of the log-linear histogram: `2^HIST_SUB_BITS` linear sub-buckets per
/// power of two, so a bucket is at most 1/8 (12.5 %) of its lower bound wide.
pub const HIST_SUB_BITS: u32 = 3;
/// Linear sub-buckets per power of two.
pub const HIST_SUB: usize = 1 << HIST_SUB_BITS;
/// Largest power of two with its own buckets: values of `2^(HIST_MAX_LOG2+1)` ns
/// (about 137 s) and more all land in the last bucket.
pub const HIST_MAX_LOG2: u32 = 36;
/// Number of buckets: values `0..HIST_SUB` one each, then `HIST_SUB` per power of two.
pub const HIST_BUCKETS: usize = (HIST_MAX_LOG2 - HIST_SUB_BITS + 2) as usize * HIST_SUB;

/// What a histogram measures (the `which` of [`hist_index`]). All values are nanoseconds.
pub mod metric {
    /// Active open, SYN to established: `connect()` moved the socket to SYN_SENT, the
    /// SYN-ACK moved it to ESTABLISHED. Keyed by the remote (listening) port.
    pub const HANDSHAKE: u16 = 0;
    /// Passive open, established to accepted: the handshake completed (child socket
    /// ESTABLISHED) until `accept(2)`/`accept4(2)` returned it. Keyed by the local
    /// listening port.
    pub const ACCEPT_WAIT: u16 = 1;
    /// Passive opens on this port: data became ready on an empty receive queue
    /// (`sock:sk_data_ready`) until a read took data from it (`sock:sock_recv_length`,
    /// which sees `read(2)`, `recv*(2)` and io_uring receives alike).
    pub const RECV_QUEUE_WAIT: u16 = 2;
    /// Smoothed RTT (`tcp_sock.srtt_us`) of passive opens on this port, sampled at each
    /// read that took data.
    pub const RTT: u16 = 3;
    /// Passive open, server side: the SYN arrived at the listener (its request socket
    /// got its receive window, `BPF_SOCK_OPS_RWND_INIT`) until the child socket became
    /// established (`BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB`): the SYN-ACK's trip to the
    /// client and the ACK's trip back. Keyed by the local listening port.
    pub const SERVER_HANDSHAKE: u16 = 4;
    /// Number of metrics; [`super::MAX_HISTS`] reserves room for all of them.
    pub const COUNT: u16 = 5;
}

/// What a counter counts ([`CounterKey::counter`]).
pub mod counter {
    /// `tcp:tcp_retransmit_skb` on a connection with a watched port at either end.
    pub const RETRANSMIT: u16 = 0;
    /// `tcp:tcp_send_reset`; `detail` is the kernel's `sk_rst_reason`.
    pub const SEND_RESET: u16 = 1;
    /// `tcp:tcp_receive_reset`.
    pub const RECV_RESET: u16 = 2;
    /// `tcp:tcp_retransmit_synack` on this (listening) port.
    pub const SYNACK_RETRANSMIT: u16 = 3;
    /// `skb:kfree_skb` of a TCP packet to or from this port; `detail` is the kernel's
    /// `enum skb_drop_reason` number.
    pub const KFREE_SKB: u16 = 4;
    /// An accept returned a connection whose establishment the probe had not seen
    /// (started before the probe, or accept called without a peer address).
    pub const ACCEPT_UNMATCHED: u16 = 5;
    /// A handshake completed whose SYN_SENT the probe had not seen.
    pub const HANDSHAKE_UNMATCHED: u16 = 6;
    /// A sample was dropped because its [`super::MAP_HIST`] index was out of range.
    pub const HIST_MISSING: u16 = 7;
    /// Active opens that failed (SYN_SENT to CLOSE: refused, timed out, reset).
    pub const CONNECT_FAILED: u16 = 8;
    /// Passive opens: a connection to this port became established (entered the accept
    /// queue).
    pub const PASSIVE_OPEN: u16 = 9;
    /// Accepts through io_uring (matched by the completion's descriptor); `detail` 0 for
    /// a direct (fixed) descriptor, 1 for a regular one.
    pub const URING_ACCEPT: u16 = 10;
    /// Passive opens that closed before the application accepted them.
    pub const CLOSED_UNACCEPTED: u16 = 11;
    /// SYNs to this port that got a request socket (the `sock_ops` program; not SYNs
    /// answered with a cookie: their request socket has no listener, so no cgroup program
    /// runs for it).
    pub const SYN_RECEIVED: u16 = 12;
    /// Passive opens established whose SYN the `sock_ops` program had not seen (a SYN
    /// cookie, a SYN before the probe started, an evicted entry).
    pub const SERVER_HANDSHAKE_UNMATCHED: u16 = 13;
}

/// Indexes of [`MAP_STATE`].
pub mod state {
    /// Sockets in [`super::MAP_SOCKS`] established but not yet accepted. The io_uring
    /// completion program does its descriptor lookups only while this is non-zero.
    pub const UNACCEPTED: u32 = 0;
    /// When the receive-queue programs were last attached (`bpf_ktime_get_ns()` clock, set
    /// by user space just before; 0 while they stay attached for good). Sampled receive
    /// waits (`blaster probe --recv-sample`) ignore a `ready` stamp older than this: it was
    /// left by an earlier window, and the read that ended it was not seen.
    pub const RECV_WINDOW: u32 = 1;
    /// Entries of the map.
    pub const COUNT: u32 = 2;
}

/// What the kernel side knows about a passively opened socket on a watched port (value
/// of [`MAP_SOCKS`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SockInfo {
    /// `bpf_ktime_get_ns()` when it became established; 0 once accepted.
    pub established: u64,
    /// When data became ready on its empty receive queue; 0 when nothing is waiting.
    pub ready: u64,
    /// The watched port, host byte order.
    pub port: u16,
    /// That port's slot (see [`hist_index`]).
    pub slot: u16,
    /// Reads that took data so far (wrapping): the smoothed RTT is sampled at every
    /// [`SRTT_EVERY`]th, the first included.
    pub reads: u16,
    /// Zero.
    pub _pad: u16,
}

/// The smoothed RTT is read at one in this many reads of a socket (a power of two): per
/// request, a program's every histogram update and kernel read shows in a small server's
/// throughput, and the RTT changes slowly.
pub const SRTT_EVERY: u16 = 16;

/// Byte offsets of kernel struct fields the programs follow with
/// `bpf_probe_read_kernel`, read by the loader from the running kernel's BTF
/// (`/sys/kernel/btf/vmlinux`). A group whose bit in `valid` is clear is not used.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// Bits of [`offsets`] telling which groups below are filled in.
    pub valid: u32,
    /// `struct file`: `private_data` (a `struct socket *` for sockets).
    pub file_private_data: u32,
    /// `struct socket`: `sk`.
    pub socket_sk: u32,
    /// `struct io_ring_ctx`: `file_table.data.nr` (`u32`).
    pub ctx_files_nr: u32,
    /// `struct io_ring_ctx`: `file_table.data.nodes` (`struct io_rsrc_node **`).
    pub ctx_files_nodes: u32,
    /// `struct io_rsrc_node`: `file_ptr` (a `struct file *` with flag bits in the low 2).
    pub rsrc_node_file_ptr: u32,
    /// `struct task_struct`: `files`.
    pub task_files: u32,
    /// `struct files_struct`: `fdt`.
    pub files_fdt: u32,
    /// `struct fdtable`: `max_fds` (`u32`).
    pub fdt_max_fds: u32,
    /// `struct fdtable`: `fd` (`struct file **`).
    pub fdt_fd: u32,
    /// `struct sk_buff`: `head`.
    pub skb_head: u32,
    /// `struct sk_buff`: `network_header` (`u16`).
    pub skb_network_header: u32,
    /// `struct sk_buff`: `transport_header` (`u16`).
    pub skb_transport_header: u32,
    /// `struct sock`: `__sk_common.skc_num` (local port, host order, `u16`).
    pub sk_num: u32,
    /// `struct sock`: `__sk_common.skc_dport` (remote port, network order, `u16`).
    pub sk_dport: u32,
    /// `struct sock`: `sk_protocol` (`u16`).
    pub sk_protocol: u32,
    /// `struct tcp_sock`: `srtt_us` (`u32`, 8 x the smoothed RTT in µs).
    pub tcp_srtt_us: u32,
    /// Which argument of the raw `io_uring_complete` tracepoint is the
    /// `struct io_uring_cqe *` (2 on 6.x kernels; the raw program is used only then).
    pub uring_cqe_arg: u32,
    /// `struct io_uring_cqe`: `res` (`s32`).
    pub cqe_res: u32,
}

/// Bits of [`KernelOffsets::valid`].
pub mod offsets {
    /// `file_private_data` and `socket_sk`: a `struct file` can be followed to its socket.
    pub const FILE_SOCKET: u32 = 1;
    /// `ctx_files_*` and `rsrc_node_file_ptr`: io_uring direct descriptors.
    pub const URING_FIXED: u32 = 2;
    /// `task_files`, `files_fdt`, `fdt_*`: the current task's descriptor table.
    pub const FD_TABLE: u32 = 4;
    /// `skb_*`: a dropped packet's TCP ports.
    pub const SKB: u32 = 8;
    /// `sk_*`: a socket's ports and protocol.
    pub const SOCK: u32 = 16;
    /// `tcp_srtt_us`: the smoothed RTT of a TCP socket.
    pub const TCP_SRTT: u32 = 32;
    /// `uring_cqe_arg` and `cqe_res`: io_uring completions as a raw tracepoint.
    pub const URING_CQE: u32 = 64;
}

/// Index in [`MAP_HIST`] of metric `which` of the port in `slot` (its value in
/// [`MAP_WATCH`]).
#[inline(always)]
pub const fn hist_index(slot: u16, which: u16) -> u32 {
    slot as u32 * metric::COUNT as u32 + which as u32
}

/// A log-linear histogram of nanosecond values (value of [`MAP_HIST`]).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Histogram {
    /// Number of samples.
    pub count: u64,
    /// Sum of the samples, ns (wraps after ~584 years of samples).
    pub sum: u64,
    /// Largest sample, ns.
    pub max: u64,
    /// Samples per bucket; see [`bucket_index`].
    pub buckets: [u64; HIST_BUCKETS],
}

impl Histogram {
    /// An empty histogram.
    pub const ZERO: Self = Self {
        count: 0,
        sum: 0,
        max: 0,
        buckets: [0; HIST_BUCKETS],
    };

    /// Adds one sample.
    #[inline(always)]
    pub fn record(&mut self, v: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(v);
        if v > self.max {
            self.max = v;
        }
        let i = bucket_index(v);
        // The `if` keeps the verifier's bounds check visible.
        if i < HIST_BUCKETS {
            self.buckets[i] += 1;
        }
    }

    /// Adds `other` into `self` (merging per-CPU copies).
    pub fn merge(&mut self, other: &Self) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
        self.max = self.max.max(other.max);
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Key of [`MAP_COUNTERS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CounterKey {
    /// Watched port the event belongs to, host byte order.
    pub port: u16,
    /// One of [`counter`].
    pub counter: u16,
    /// Counter-specific detail (reset reason, drop reason), else 0.
    pub detail: u32,
}

/// A connection the probe saw start, waiting for its next step.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Pending {
    /// `bpf_ktime_get_ns()` when it started.
    pub ts: u64,
    /// The watched port it belongs to, host byte order.
    pub port: u16,
    /// That port's slot (see [`hist_index`]).
    pub slot: u16,
    /// Zero.
    pub _pad: [u16; 2],
}

/// Key of [`MAP_ESTABLISHED`]: the peer of a passively opened connection, as both the
/// state-change tracepoint and the address `accept(2)` returns show it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PeerKey {
    /// Peer address: IPv4 in the first 4 bytes (rest zero) or IPv6, network order.
    pub addr: [u8; 16],
    /// Peer port, host byte order.
    pub port: u16,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
    /// Zero.
    pub _pad: u32,
}

/// Key of [`MAP_SYN_RECV`]: a connection's 4-tuple as a `sock_ops` program sees it, the
/// same for the request socket (at the SYN) and the child socket (established). IPv4
/// addresses are stored IPv4-mapped (`::ffff:a.b.c.d`), so a dual-stack listener's child
/// (AF_INET6, mapped) matches its request socket (AF_INET).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Local address, as the four 32-bit words of an IPv6 address (network order).
    pub local_ip: [u32; 4],
    /// Remote address, likewise.
    pub remote_ip: [u32; 4],
    /// Local port, host order (`bpf_sock_ops.local_port`).
    pub local_port: u32,
    /// Remote port as `bpf_sock_ops.remote_port` holds it (network order).
    pub remote_port: u32,
}

/// Floor of log2 of `v` (`v > 0`), written without `leading_zeros` so the BPF backend
/// emits plain shifts and compares.
#[inline(always)]
pub const fn log2_floor(mut v: u64) -> u32 {
    let mut r = 0;
    if v >= 1 << 32 {
        v >>= 32;
        r += 32;
    }
    if v >= 1 << 16 {
        v >>= 16;
        r += 16;
    }
    if v >= 1 << 8 {
        v >>= 8;
        r += 8;
    }
    if v >= 1 << 4 {
        v >>= 4;
        r += 4;
    }
    if v >= 1 << 2 {
        v >>= 2;
        r += 2;
    }
    if v >= 1 << 1 {
        r += 1;
    }
    r
}

/// The bucket of value `v`: values below [`HIST_SUB`] have a bucket each; above that,
/// each power of two `[2^k, 2^(k+1))` is split into [`HIST_SUB`] equal buckets. Values
/// past `2^(HIST_MAX_LOG2+1)` land in the last bucket.
#[inline(always)]
pub const fn bucket_index(v: u64) -> usize {
    if v < HIST_SUB as u64 {
        return v as usize;
    }
    let k = log2_floor(v);
    if k > HIST_MAX_LOG2 {
        return HIST_BUCKETS - 1;
    }
    let sub = ((v >> (k - HIST_SUB_BITS)) as usize) & (HIST_SUB - 1);
    (k - HIST_SUB_BITS + 1) as usize * HIST_SUB + sub
}

/// The smallest value that lands in bucket `i`.
pub const fn bucket_lower(i: usize) -> u64 {
    if i < HIST_SUB {
        return i as u64;
    }
    let k = (i / HIST_SUB) as u32 + HIST_SUB_BITS - 1;
    let sub = (i % HIST_SUB) as u64;
    (1u64 << k) + (sub << (k - HIST_SUB_BITS))
}

/// The largest value that lands in bucket `i` (the last bucket is open: `u64::MAX`).
pub const fn bucket_upper(i: usize) -> u64 {
    if i + 1 >= HIST_BUCKETS {
        u64::MAX
    } else {
        bucket_lower(i + 1) - 1
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are `#[repr(C)]`, `Copy`, contain only integers and arrays of
    // integers, and have explicit padding fields, so every bit pattern is valid.
    unsafe impl aya::Pod for super::Histogram {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CounterKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Pending {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PeerKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::KernelOffsets {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_monotonic() {
        assert_eq!(HIST_BUCKETS, 280);
        for i in 0..HIST_BUCKETS - 1 {
            assert_eq!(bucket_index(bucket_lower(i)), i, "lower of {i}");
            assert_eq!(bucket_index(bucket_upper(i)), i, "upper of {i}");
            assert_eq!(bucket_upper(i) + 1, bucket_lower(i + 1));
        }
        assert_eq!(bucket_index(u64::MAX), HIST_BUCKETS - 1);
        assert_eq!(bucket_index(1 << 37), HIST_BUCKETS - 1);
        assert_eq!(bucket_index((1 << 37) - 1), HIST_BUCKETS - 1);
    }

    #[test]
    fn log2_matches_leading_zeros() {
        for v in [1u64, 2, 3, 4, 7, 8, 1000, 1 << 40, u64::MAX] {
            assert_eq!(log2_floor(v), 63 - v.leading_zeros());
        }
    }

    #[test]
    fn bucket_width_is_at_most_one_eighth() {
        for i in HIST_SUB..HIST_BUCKETS - 1 {
            let (lo, hi) = (bucket_lower(i), bucket_upper(i));
            assert!((hi - lo + 1) * 8 <= lo, "bucket {i}: {lo}..={hi}");
        }
    }
}
