//! Pub/sub across server threads: a message published on any thread (by a client of the
//! built-in `/ws/pubsub/{topic}`, of a mock WebSocket route, or by a mock HTTP `publish`
//! route) reaches the topic's subscribers on every thread.
//!
//! Each worker keeps its own table of subscribers (topic -> its connections) and has an inbox
//! here. Posting puts one reference-counted copy of the encoded frames into an inbox and
//! wakes the worker if its inbox was empty by writing its eventfd, which each worker watches
//! with a multishot poll in its ring; a worker also looks at its inbox after every batch of
//! completions (one atomic load when it is empty).
//!
//! Mock routes [`Broker::publish`] to every inbox (the publisher's own included). The built-in
//! route delivers to the subscribers of its own thread directly and posts only to the threads
//! that have subscribers of the topic ([`Broker::others`]): workers announce the first and
//! last local subscriber of a topic ([`Broker::join`], [`Broker::leave`]) in a shared table
//! whose changes bump an epoch, and each worker caches per topic the other threads that
//! listen, with the epoch it read. A message whose topic has only local subscribers costs one
//! atomic load and no lock.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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
    /// Topic -> the workers that have subscribers of it.
    interest: Mutex<HashMap<Box<str>, Vec<usize>>>,
    /// Bumped (under the `interest` lock) on every change of `interest`.
    epoch: AtomicU64,
}

/// One worker's cached answer of [`Broker::others`] for one topic.
#[derive(Debug, Default)]
pub struct Interest {
    /// The broker's epoch when `others` was read; `None` before the first read.
    epoch: Option<u64>,
    others: Vec<usize>,
}

/// Takes a lock even if a thread panicked while holding it (the data stays consistent: every
/// critical section here is a push, a swap or a table update).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        Ok(Broker {
            inboxes,
            interest: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        })
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
            Self::post(inbox, mail.clone());
        }
    }

    /// Sends `frames` to the subscribers of `topic` on the threads `workers` (from
    /// [`Broker::others`]); nothing when it is empty.
    pub fn send_to(&self, workers: &[usize], topic: &str, frames: &[u8]) {
        let Some((&last, rest)) = workers.split_last() else {
            return;
        };
        let mail = Mail {
            topic: topic.into(),
            frames: frames.into(),
        };
        for &w in rest {
            Self::post(&self.inboxes[w], mail.clone());
        }
        Self::post(&self.inboxes[last], mail);
    }

    fn post(inbox: &Inbox, mail: Mail) {
        lock(&inbox.mail).push(mail);
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

    /// Worker `index` has its first subscriber of `topic`.
    pub fn join(&self, index: usize, topic: &str) {
        let mut table = lock(&self.interest);
        let workers = table.entry(topic.into()).or_default();
        if !workers.contains(&index) {
            workers.push(index);
            self.epoch.fetch_add(1, Ordering::Release);
        }
    }

    /// Worker `index` has no subscriber of `topic` any more.
    pub fn leave(&self, index: usize, topic: &str) {
        let mut table = lock(&self.interest);
        if let Some(workers) = table.get_mut(topic)
            && let Some(at) = workers.iter().position(|&w| w == index)
        {
            workers.swap_remove(at);
            if workers.is_empty() {
                table.remove(topic);
            }
            self.epoch.fetch_add(1, Ordering::Release);
        }
    }

    /// The workers other than `index` with subscribers of `topic`, from `cache` while no
    /// worker joined or left a topic since it was filled (one atomic load), else read again
    /// under the lock. A worker that joined before this call is included.
    pub fn others<'a>(&self, index: usize, topic: &str, cache: &'a mut Interest) -> &'a [usize] {
        if cache.epoch != Some(self.epoch.load(Ordering::Acquire)) {
            let table = lock(&self.interest);
            cache.others.clear();
            if let Some(workers) = table.get(topic) {
                cache.others.extend(workers.iter().filter(|&&w| w != index));
            }
            // Exact: every change of the table bumps the epoch while holding the lock.
            cache.epoch = Some(self.epoch.load(Ordering::Acquire));
        }
        &cache.others
    }

    /// Whether worker `index` has mail waiting (cheap: one atomic load).
    #[inline]
    pub fn has_mail(&self, index: usize) -> bool {
        self.inboxes[index].pending.load(Ordering::Acquire)
    }

    /// Takes worker `index`'s mail into `out` (which should be empty).
    pub fn take(&self, index: usize, out: &mut Vec<Mail>) {
        let inbox = &self.inboxes[index];
        let mut mail = lock(&inbox.mail);
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

    #[test]
    fn send_to_reaches_only_the_workers_named() {
        let broker = Broker::new(3).expect("eventfds");
        broker.send_to(&[0, 2], "t", b"frame");
        broker.send_to(&[], "t", b"nobody");
        assert!(broker.has_mail(0) && !broker.has_mail(1) && broker.has_mail(2));
        let mut mail = Vec::new();
        broker.take(2, &mut mail);
        assert_eq!(mail.len(), 1);
        assert_eq!(&*mail[0].frames, b"frame");
    }

    #[test]
    fn others_follows_joins_and_leaves() {
        let broker = Broker::new(3).expect("eventfds");
        let mut cache = Interest::default();
        broker.join(0, "t");
        assert_eq!(broker.others(0, "t", &mut cache), &[] as &[usize]);
        broker.join(2, "t");
        broker.join(1, "u");
        assert_eq!(broker.others(0, "t", &mut cache), &[2]);
        // Unchanged epoch: the cached answer, without the lock.
        let epoch = cache.epoch;
        assert_eq!(broker.others(0, "t", &mut cache), &[2]);
        assert_eq!(cache.epoch, epoch);
        broker.join(1, "t");
        let mut others = broker.others(0, "t", &mut cache).to_vec();
        others.sort_unstable();
        assert_eq!(others, [1, 2]);
        broker.leave(2, "t");
        broker.leave(1, "t");
        assert_eq!(broker.others(0, "t", &mut cache), &[] as &[usize]);
        // Leaving twice, or a topic never joined, changes nothing.
        broker.leave(1, "t");
        broker.leave(1, "never");
        assert_eq!(
            broker.others(1, "u", &mut Interest::default()),
            &[] as &[usize]
        );
        assert_eq!(broker.others(0, "u", &mut Interest::default()), &[1]);
    }
}
