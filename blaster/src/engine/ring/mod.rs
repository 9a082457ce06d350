//! The io_uring facade: the one place that creates rings, pushes submissions and reaps
//! completions for both the load engine and the built-in target.
//!
//! - [`Ring`] sets a ring up with `SINGLE_ISSUER | DEFER_TASKRUN` (measured: 2.7x less CPU
//!   per request here), probes the opcodes blaster needs once, and turns setup errno values
//!   into advice (memlock, `kernel.io_uring_disabled`, `ulimit -n`).
//! - [`Token`] packs `(slot, generation, op)` into a completion's `user_data`.
//! - [`BufRing`] is a provided-buffer ring for multishot receives.
//! - [`Waker`] links the rings of a worker that drives several: the secondary rings signal
//!   it, the primary ring polls it ([`Ring::new_secondary`], [`Ring::arm_waker`],
//!   [`Ring::needs_flush`], [`Ring::flush`]).
//!
//! Building an SQE is safe; pushing one is the unsafe boundary, because the kernel reads the
//! memory the entry points at until the completion arrives. [`Ring::push`] documents what its
//! callers must keep alive.

mod bufring;
mod token;
mod waker;

pub use bufring::BufRing;
pub use token::{GENERATION_MASK, Token};
pub use waker::Waker;

use std::io;
use std::time::Duration;

use io_uring::{IoUring, opcode, squeue, types};
use thiserror::Error;

/// Why a ring could not be set up, with what to do about it.
#[derive(Debug, Error)]
pub enum RingError {
    #[error(
        "io_uring is not available on this kernel ({0}): blaster needs Linux 6.1 or newer with io_uring enabled"
    )]
    Unsupported(io::Error),
    #[error(
        "io_uring is disabled by the administrator ({0}): check `sysctl kernel.io_uring_disabled` (0 enables it for everyone)"
    )]
    Disabled(io::Error),
    #[error(
        "could not allocate an io_uring with {entries} entries ({source}): the locked-memory limit is too low; raise it with `ulimit -l unlimited` (or LimitMEMLOCK= in a systemd unit), or use fewer connections per thread"
    )]
    Memory { entries: u32, source: io::Error },
    #[error(
        "could not register a table of {files} direct descriptors ({source}): the open-files limit (RLIMIT_NOFILE soft {soft}, hard {hard}) caps one ring's table; raise it with `ulimit -n`, or spread the connections over more threads with -t"
    )]
    FileTable {
        files: u32,
        soft: u64,
        hard: u64,
        source: io::Error,
    },
    #[error(
        "could not register a provided-buffer ring of {entries} buffers ({source}): the kernel is too old (buffer rings need Linux 5.19) or locked memory is limited (`ulimit -l`)"
    )]
    BufRing { entries: u16, source: io::Error },
    #[error(
        "this kernel's io_uring lacks the {op} operation that blaster needs: upgrade to Linux 6.1 or newer"
    )]
    MissingOp { op: &'static str },
    #[error("io_uring setup failed: {0}")]
    Other(io::Error),
}

/// Sizes of one ring.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    /// Submission queue entries (a power of two is used).
    pub sq_entries: u32,
    /// Completion queue entries; larger than the SQ so bursts of multishot completions fit.
    pub cq_entries: u32,
    /// Direct-descriptor slots to register (0 for none).
    pub files: u32,
}

impl RingConfig {
    /// Sizes for a ring driving `connections` sockets.
    pub fn for_connections(connections: usize) -> RingConfig {
        let conns = u32::try_from(connections).unwrap_or(u32::MAX);
        let sq = conns.saturating_mul(2).clamp(256, 8192).next_power_of_two();
        RingConfig {
            sq_entries: sq,
            cq_entries: (sq * 4).min(65536),
            files: conns,
        }
    }

    /// Sizes for a ring holding `connections` mostly idle sockets. The submission queue needs
    /// room for one loop turn's connects (256 chains of up to four entries) and closes, not for
    /// a request per connection: 1,024 entries of 64 bytes instead of 8,192. The completion
    /// queue keeps 8,192 entries, because the kernel sizes the table it looks cancels up in
    /// from it (256 buckets from 8,192 entries on, fewer below; every close cancels a receive
    /// by its `user_data`, and 20,000 armed receives share those buckets). The ring's memory,
    /// mapped into the process, drops from about 1 MiB to 196 KiB (53 to 10 bytes per
    /// connection at 20,000 per ring). A burst beyond the completion queue waits in the
    /// kernel's overflow list; nothing is lost.
    pub fn for_held_connections(connections: usize) -> RingConfig {
        let conns = u32::try_from(connections).unwrap_or(u32::MAX);
        let sq = conns.saturating_mul(2).clamp(256, 1024).next_power_of_two();
        RingConfig {
            sq_entries: sq,
            cq_entries: 8192,
            files: conns,
        }
    }
}

/// One io_uring, owned by one thread.
pub struct Ring {
    uring: IoUring,
    /// Whether DEFER_TASKRUN was granted (6.1+); without it we still work, slower.
    pub deferred_taskrun: bool,
}

/// Opcodes blaster relies on, checked once at start-up.
const REQUIRED_OPS: &[(u8, &str)] = &[
    (
        opcode::Socket::CODE,
        "SOCKET (direct descriptors, Linux 5.19)",
    ),
    (opcode::Connect::CODE, "CONNECT"),
    (opcode::RecvMulti::CODE, "RECV"),
    (opcode::Send::CODE, "SEND"),
    (opcode::Close::CODE, "CLOSE"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::AcceptMulti::CODE, "ACCEPT"),
];

impl Ring {
    /// Sets up a ring; falls back (with a warning on stderr) when the kernel lacks
    /// `SINGLE_ISSUER | DEFER_TASKRUN`.
    pub fn new(config: RingConfig) -> Result<Ring, RingError> {
        Ring::build(config, None)
    }

    /// Sets up a secondary ring of a worker that drives several: like [`Ring::new`], and the
    /// ring signals `waker` when completions are on their way, so a thread blocked on its
    /// primary ring (which polls the waker, see [`Ring::arm_waker`]) wakes up. The ring also
    /// raises `IORING_SQ_TASKRUN` while deferred completions wait, so [`Ring::needs_flush`]
    /// can tell, without a system call, that [`Ring::flush`] has something to do.
    pub fn new_secondary(config: RingConfig, waker: &Waker) -> Result<Ring, RingError> {
        Ring::build(config, Some(waker))
    }

    fn build(config: RingConfig, waker: Option<&Waker>) -> Result<Ring, RingError> {
        let mut builder = IoUring::builder();
        builder
            .setup_cqsize(config.cq_entries)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_submit_all();
        if waker.is_some() {
            builder.setup_taskrun_flag();
        }
        let fast = builder.build(config.sq_entries);
        let (uring, deferred_taskrun) = match fast {
            Ok(uring) => (uring, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                eprintln!(
                    "blaster: warning: this kernel lacks IORING_SETUP_SINGLE_ISSUER/DEFER_TASKRUN (Linux 6.1); \
                     running without them costs about 2.7x more CPU per request"
                );
                let slow = IoUring::builder()
                    .setup_cqsize(config.cq_entries)
                    .build(config.sq_entries);
                (
                    slow.map_err(|e| classify_setup_error(e, config.sq_entries))?,
                    false,
                )
            }
            Err(e) => return Err(classify_setup_error(e, config.sq_entries)),
        };
        let ring = Ring {
            uring,
            deferred_taskrun,
        };
        ring.probe()?;
        if config.files > 0 {
            ring.uring
                .submitter()
                .register_files_sparse(config.files)
                .map_err(|source| {
                    let (soft, hard) = nofile_limits();
                    RingError::FileTable {
                        files: config.files,
                        soft,
                        hard,
                        source,
                    }
                })?;
        }
        if let Some(waker) = waker {
            ring.uring
                .submitter()
                .register_eventfd(waker.fd())
                .map_err(RingError::Other)?;
        }
        Ok(ring)
    }

    fn probe(&self) -> Result<(), RingError> {
        let mut probe = io_uring::Probe::new();
        if self.uring.submitter().register_probe(&mut probe).is_err() {
            // Probing itself needs 5.6; a kernel that old fails later with a clear errno.
            return Ok(());
        }
        for &(code, op) in REQUIRED_OPS {
            if !probe.is_supported(code) {
                return Err(RingError::MissingOp { op });
            }
        }
        Ok(())
    }

    /// Queues one submission, flushing the queue to the kernel first when it is full.
    ///
    /// # Safety
    /// Every pointer inside `entry` (send buffers, socket addresses, timespecs, ...) must stay
    /// valid and unmoved until the completion for `entry` arrives; for linked entries, until the
    /// completion of each of them.
    pub unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the caller guarantees the entry's memory outlives the operation.
            let pushed = unsafe { self.uring.submission().push(entry) };
            if pushed.is_ok() {
                return Ok(());
            }
            // The queue is full: hand what it holds to the kernel and try again.
            self.uring.submit()?;
        }
    }

    /// Queues several linked submissions without a flush between them (a flush in the middle
    /// of a chain would cut the link).
    ///
    /// # Safety
    /// As for [`Ring::push`], for every entry.
    pub unsafe fn push_chain(&mut self, entries: &[squeue::Entry]) -> io::Result<()> {
        let room = {
            let sq = self.uring.submission();
            sq.capacity() - sq.len()
        };
        if room < entries.len() {
            self.uring.submit()?;
        }
        // SAFETY: the caller guarantees the entries' memory outlives the operations; the
        // queue has room for all of them, checked above.
        unsafe { self.uring.submission().push_multiple(entries) }
            .map_err(|_| io::Error::other("submission queue full while pushing a linked chain"))
    }

    /// Queues the close of direct descriptor `slot`, after cancelling one long-lived
    /// operation on it when `cancel` names it: `(its user_data, the cancel's user_data)`. The
    /// cancel names the operation by its `user_data`, which the kernel finds with a hash
    /// lookup; cancelling "everything on this descriptor" scans every pending request instead,
    /// which made closing 10,000 connections quadratic. Returns how many operations were
    /// queued (their completions arrive with the given user_data).
    pub fn close_slot(
        &mut self,
        slot: u32,
        cancel: Option<(u64, u64)>,
        close_user_data: u64,
    ) -> io::Result<u8> {
        let close = opcode::Close::new(types::Fixed(slot))
            .build()
            .user_data(close_user_data);
        match cancel {
            Some((target, cancel_user_data)) => {
                let chain = [
                    opcode::AsyncCancel::new(target)
                        .build()
                        .flags(squeue::Flags::IO_HARDLINK)
                        .user_data(cancel_user_data),
                    close,
                ];
                // SAFETY: neither entry points at memory.
                unsafe { self.push_chain(&chain) }.map(|()| 2)
            }
            // SAFETY: the entry points at no memory.
            None => unsafe { self.push(&close) }.map(|()| 1),
        }
    }

    /// Submits what is queued and waits until at least one completion is ready or `timeout`
    /// passes (`None`: wait for a completion). Interruption by a signal is not an error.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let result = match timeout {
            None => self.uring.submit_and_wait(1),
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.uring.submitter().submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Submits what is queued without waiting.
    pub fn submit(&mut self) -> io::Result<()> {
        match self.uring.submit() {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Arms a multishot poll of `waker` on this (primary) ring: a completion with `user_data`
    /// arrives whenever a secondary ring signals it. Re-arm when a completion comes without
    /// the MORE flag.
    pub fn arm_waker(&mut self, waker: &Waker, user_data: u64) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(waker.fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data);
        // SAFETY: a poll points at no memory; the eventfd outlives the ring's use of it (the
        // worker drops its rings before the waker).
        unsafe { self.push(&entry) }
    }

    /// Whether [`Ring::flush`] has something to do: submissions are queued, or the kernel
    /// holds deferred completions (the `IORING_SQ_TASKRUN` flag, raised on secondary rings).
    /// A few loads from the shared ring memory, no system call.
    pub fn needs_flush(&mut self) -> bool {
        let sq = self.uring.submission();
        !sq.is_empty() || sq.taskrun()
    }

    /// Submits what is queued and, when the kernel holds deferred completions, lets it post
    /// them to the completion queue; never waits.
    pub fn flush(&mut self) -> io::Result<()> {
        // The crate adds IORING_ENTER_GETEVENTS (which runs deferred task work) when the
        // TASKRUN flag is up.
        self.submit()
    }

    /// Whether completions are ready to reap.
    pub fn has_completions(&mut self) -> bool {
        let mut cq = self.uring.completion();
        cq.sync();
        !cq.is_empty()
    }

    /// Moves every ready completion into `out` (cleared first) as `(user_data, result, flags)`.
    /// Returns how many completions the kernel dropped because the CQ overflowed so far.
    pub fn reap(&mut self, out: &mut Vec<(u64, i32, u32)>) -> u32 {
        out.clear();
        let mut cq = self.uring.completion();
        cq.sync();
        out.extend(cq.by_ref().map(|c| (c.user_data(), c.result(), c.flags())));
        cq.overflow()
    }

    /// Registers a provided-buffer ring on this ring.
    pub fn register_buf_ring(
        &self,
        bgid: u16,
        entries: u16,
        buf_size: u32,
    ) -> Result<BufRing, RingError> {
        BufRing::new(&self.uring.submitter(), bgid, entries, buf_size)
    }

    /// Unregisters a buffer ring before it is dropped.
    pub fn unregister_buf_ring(&self, ring: &BufRing) {
        // Failure here only means the kernel already forgot it; nothing to do.
        let _ = self.uring.submitter().unregister_buf_ring(ring.bgid());
    }
}

fn classify_setup_error(e: io::Error, entries: u32) -> RingError {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => RingError::Unsupported(e),
        Some(libc::EPERM) | Some(libc::EACCES) => RingError::Disabled(e),
        Some(libc::ENOMEM) => RingError::Memory { entries, source: e },
        _ => RingError::Other(e),
    }
}

/// The process's RLIMIT_NOFILE (soft, hard).
pub fn nofile_limits() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if rc != 0 {
        return (0, 0);
    }
    (lim.rlim_cur, lim.rlim_max)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (the registered file table of a ring is
/// capped by it) and returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    let (soft, hard) = nofile_limits();
    if soft < hard {
        let lim = libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
            return hard;
        }
    }
    soft
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_config_sizes_cq_above_sq() {
        let c = RingConfig::for_connections(100);
        assert_eq!(c.sq_entries, 256);
        assert!(c.cq_entries > c.sq_entries);
        assert_eq!(c.files, 100);
        let big = RingConfig::for_connections(20_000);
        assert_eq!(big.sq_entries, 8192);
        assert_eq!(big.cq_entries, 32768);
        let held = RingConfig::for_held_connections(20_000);
        assert_eq!((held.sq_entries, held.cq_entries), (1024, 8192));
        assert_eq!(held.files, 20_000);
    }

    #[test]
    fn ring_sets_up_with_a_file_table() {
        let ring = Ring::new(RingConfig::for_connections(64)).expect("io_uring available");
        assert!(ring.deferred_taskrun, "kernel 6.1+ grants DEFER_TASKRUN");
    }

    /// Secondary rings signal the primary: a worker blocked on its primary ring wakes when a
    /// receive completes on a secondary ring (deferred task work under DEFER_TASKRUN), finds
    /// it by the TASKRUN flag, and gets the completion with one flush.
    #[test]
    fn a_secondary_ring_wakes_a_thread_blocked_on_the_primary() {
        const WAKE: u64 = 1;
        const RECV: u64 = 2;
        let waker = Waker::new().expect("eventfd");
        let mut primary = Ring::new(RingConfig::for_connections(8)).expect("primary ring");
        let mut secondary =
            Ring::new_secondary(RingConfig::for_connections(8), &waker).expect("secondary ring");
        primary.arm_waker(&waker, WAKE).expect("poll armed");
        primary.submit().expect("submit");

        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let mut buf = [0u8; 16];
        let recv = opcode::Recv::new(
            types::Fd(std::os::fd::AsRawFd::as_raw_fd(&a)),
            buf.as_mut_ptr(),
            buf.len() as u32,
        )
        .build()
        .user_data(RECV);
        // SAFETY: `buf` outlives the receive: the test waits for its completion below.
        unsafe { secondary.push(&recv) }.expect("push");
        assert!(secondary.needs_flush(), "a queued submission needs a flush");
        secondary.flush().expect("flush");
        assert!(
            !secondary.needs_flush(),
            "nothing queued, nothing received yet"
        );

        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            std::io::Write::write_all(&mut &b, b"ping").expect("write");
            b
        });
        let started = std::time::Instant::now();
        let mut cqes = Vec::new();
        while cqes.is_empty() && started.elapsed() < Duration::from_secs(5) {
            primary
                .submit_and_wait(Some(Duration::from_secs(5)))
                .expect("wait");
            primary.reap(&mut cqes);
        }
        let waited = started.elapsed();
        assert!(
            cqes.iter().any(|c| c.0 == WAKE && c.1 > 0),
            "the primary got the waker's poll completion: {cqes:?}"
        );
        assert!(
            waited >= Duration::from_millis(90) && waited < Duration::from_secs(2),
            "woke after {waited:?}, expected right after the write (100 ms)"
        );
        assert!(
            secondary.needs_flush(),
            "the secondary's TASKRUN flag says completions wait"
        );
        secondary.flush().expect("flush");
        secondary.reap(&mut cqes);
        assert_eq!(cqes, vec![(RECV, 4, 0)], "the receive completed");
        assert_eq!(&buf[..4], b"ping");
        assert!(!secondary.needs_flush(), "flushed");
        drop(writer.join());

        // Does posting the completions signal the eventfd again? Then the worker sees one
        // spurious wake per flush; count what arrives within 50 ms.
        primary
            .submit_and_wait(Some(Duration::from_millis(50)))
            .expect("wait");
        primary.reap(&mut cqes);
        eprintln!("after the flush the primary got {cqes:?}");
    }

    #[test]
    fn file_table_above_rlimit_says_what_to_raise() {
        let (_, hard) = nofile_limits();
        if hard == libc::RLIM_INFINITY || hard > u64::from(u32::MAX / 2) {
            eprintln!("skipped: RLIMIT_NOFILE hard limit is unlimited here");
            return;
        }
        let err = Ring::new(RingConfig {
            sq_entries: 64,
            cq_entries: 128,
            files: (hard * 2) as u32,
        })
        .err()
        .expect("a table above the hard limit must fail");
        let msg = err.to_string();
        assert!(msg.contains("ulimit -n"), "{msg}");
    }
}
