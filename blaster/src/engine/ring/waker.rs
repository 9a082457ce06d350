//! The eventfd that wakes a worker blocked on its primary ring when one of its secondary rings
//! has completions on the way.
//!
//! Every secondary ring registers the same eventfd (`IORING_REGISTER_EVENTFD`); the kernel
//! signals it when completions are queued for the ring, including deferred ones under
//! `DEFER_TASKRUN` (which only reach the completion queue once the thread enters that ring with
//! `GETEVENTS`). The primary ring keeps a multishot poll on the eventfd, so a signal is a
//! completion on the ring the worker waits on. The counter is never read: a multishot poll
//! fires on every signal, and the worker finds which rings have work from their TASKRUN flags.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd shared by a worker's rings; closed on drop.
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker { fd })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
