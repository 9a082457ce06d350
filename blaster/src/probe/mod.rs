//! The eBPF probe (see docs/PROBE.md).
//!
//! The kernel side (`blaster-ebpf`) is built by `cargo xtask build-ebpf` and embedded by
//! the loader ([`Probe`], feature `probe`) from the path in `BLASTER_PROBE_OBJ`, which
//! `cargo xtask build|run|test` set. It watches a few listening ports and aggregates, in
//! kernel maps, per port: handshake time (server side through a `sock_ops` program on a
//! cgroup v2, and of connections made from this host), accept-queue wait, receive-queue
//! wait and smoothed RTT as log-linear histograms; retransmits (also of SYN-ACKs), resets and
//! dropped packets by reason as counters.
//!
//! Always compiled (no eBPF needed): the plain data of a snapshot ([`ProbeSnapshot`]),
//! what changed between two of them, the BTF reader and `/proc/net/netstat`, so that
//! `blaster run --probe URL` can use a probe running elsewhere.
//! With feature `probe`: [`Probe::start`] loads and attaches, [`Probe::snapshot`] reads
//! the maps; [`run_probe`] does both around a sleep; [`check`] tells what the machine
//! lacks.

pub mod btf;
#[cfg(feature = "probe")]
mod cgroup;
#[cfg(feature = "probe")]
mod check;
#[cfg(feature = "probe")]
mod loader;
pub mod netstat;
pub mod remote;
mod snapshot;
#[cfg(all(test, feature = "probe"))]
mod tests;

#[cfg(feature = "probe")]
pub use check::{check, tracepoint_layout_ok};
#[cfg(feature = "probe")]
pub use loader::{Probe, ProbeOptions, run_probe};
pub use snapshot::{Bucket, DropCount, LatencyHist, PortProbe, ProbeSnapshot};
