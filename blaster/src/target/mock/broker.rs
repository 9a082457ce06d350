//! Pub/sub across server threads for mock mode: a message published on any thread (by a
//! WebSocket client or an HTTP `publish` route) reaches the topic's subscribers on every
//! thread.
//!
//! Each worker keeps its own table of subscribers (topic -> its connections) and has an inbox
//! here. Publishing puts one reference-counted copy of the encoded frames into every inbox
//! and wakes the workers whose inbox was empty by writing their eventfd, which each worker
//! watches with a multishot poll in its ring; a worker also looks at its inbox after every
//! batch of completions (one relaxed load when it is empty). The built-in routes' pub/sub
//! (`/ws/pubsub/{topic}`) stays per thread and does not come here.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One published message (or several, already framed) for a topic.
#[derive(Debug, Clone)]
pub struct Mail {
    pub topic: Arc<str>,
    pub frames: Arc<[u8]>,
}

#[derive(Debug)]
struct Inbox {
    mail: Mutex<Vec<Mail>>,
    /// Mail is waiting (set by publishers, cleared by the owner when it takes the mail).
    pending: AtomicBool,
    /// Written to wake the owner.
    wake: OwnedFd,
}

/// The inboxes of every worker.
#[derive(Debug)]
pub struct Broker {
    inboxes: Box<[Inbox]>,
}

impl Broker {
    /// An inbox (and an eventfd) for each of `workers` threads.
    pub fn new(workers: usize) -> io::Result<Broker> {
        let inboxes = (0..workers)
            .map(|_| {
                // SAFETY: eventfd takes integer arguments only and returns a new descriptor or -1.
                let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(Inbox {
                    mail: Mutex::new(Vec::new()),
                    pending: AtomicBool::new(false),
                    // SAFETY: `fd` was just returned by eventfd and nothing else owns it.
                    wake: unsafe { OwnedFd::from_raw_fd(fd) },
                })
            })
            .collect::<io::Result<_>>()?;
        Ok(Broker { inboxes })
    }

    /// The eventfd worker `index` polls to be woken.
    pub fn wake_fd(&self, index: usize) -> RawFd {
        self.inboxes[index].wake.as_raw_fd()
    }

    /// Sends `frames` to the subscribers of `topic` on every thread.
    pub fn publish(&self, topic: &str, frames: &[u8]) {
        let mail = Mail {
            topic: topic.into(),
            frames: frames.into(),
        };
        for inbox in self.inboxes.iter() {
            inbox
                .mail
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(mail.clone());
            if !inbox.pending.swap(true, Ordering::AcqRel) {
                let one: u64 = 1;
                // SAFETY: write reads 8 bytes from `one`, which lives across the call; the
                // eventfd is open as long as the broker. A full counter (EAGAIN) still wakes.
                let _ = unsafe {
                    libc::write(
                        inbox.wake.as_raw_fd(),
                        (&one as *const u64).cast(),
                        std::mem::size_of::<u64>(),
                    )
                };
            }
        }
    }

    /// Whether worker `index` has mail waiting (cheap: one atomic load).
    #[inline]
    pub fn has_mail(&self, index: usize) -> bool {
        self.inboxes[index].pending.load(Ordering::Acquire)
    }

    /// Takes worker `index`'s mail into `out` (which should be empty).
    pub fn take(&self, index: usize, out: &mut Vec<Mail>) {
        let inbox = &self.inboxes[index];
        let mut mail = inbox.mail.lock().unwrap_or_else(|e| e.into_inner());
        inbox.pending.store(false, Ordering::Release);
        std::mem::swap(&mut *mail, out);
    }

    /// Resets worker `index`'s eventfd counter after its poll fired.
    pub fn clear_wake(&self, index: usize) {
        let mut count: u64 = 0;
        // SAFETY: read writes at most 8 bytes into `count`, which lives across the call; the
        // eventfd is non-blocking, so an empty counter returns EAGAIN at once.
        let _ = unsafe {
            libc::read(
                self.inboxes[index].wake.as_raw_fd(),
                (&mut count as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_inbox_gets_one_shared_copy() {
        let broker = Broker::new(3).expect("eventfds");
        assert!(!broker.has_mail(1));
        broker.publish("t", b"frame");
        broker.publish("u", b"other");
        for i in 0..3 {
            assert!(broker.has_mail(i));
            let mut mail = Vec::new();
            broker.take(i, &mut mail);
            assert_eq!(mail.len(), 2);
            assert_eq!(&*mail[0].topic, "t");
            assert_eq!(&*mail[1].frames, b"other");
            assert!(!broker.has_mail(i));
            broker.clear_wake(i);
        }
    }
}
