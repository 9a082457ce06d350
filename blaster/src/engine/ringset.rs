//! The rings of one worker thread. A ring's registered file table holds at most
//! RLIMIT_NOFILE direct descriptors (20,000 on the development machine, and not raisable
//! there), so a worker whose connections need more drives several rings: connection slot `s`
//! lives in ring `s / slots` at direct descriptor `s % slots`. Each ring has its own
//! provided-buffer ring. The thread blocks on the first (primary) ring; the others signal an
//! eventfd ([`Waker`]) that the primary ring polls, so completions on any ring wake it.
//! Both engines (the HTTP worker and the virtual-user worker) use this.

use std::time::Duration;

use io_uring::cqueue;

use super::EngineError;
use super::ring::{BufRing, Ring, RingConfig, Waker};

pub struct RingSet {
    pub rings: Vec<Ring>,
    /// The provided-buffer ring of each ring, same index.
    pub bufs: Vec<BufRing>,
    waker: Option<Waker>,
    /// Direct-descriptor slots per ring (the last ring may use fewer).
    slots: u32,
    /// `user_data` of the primary ring's poll of the waker.
    wake_user_data: u64,
}

impl RingSet {
    /// Opens as many rings as `connections` need at `max_slots` direct descriptors per ring,
    /// with the connections spread evenly; `setup(n)` gives the sizes of a ring for `n`
    /// connections and its number of receive buffers (a power of two). `wake_user_data` is
    /// what the completions of the waker's poll carry (see [`RingSet::on_wake`]).
    pub fn open(
        connections: usize,
        max_slots: usize,
        bgid: u16,
        buf_size: u32,
        wake_user_data: u64,
        mut setup: impl FnMut(usize) -> (RingConfig, u16),
    ) -> Result<RingSet, EngineError> {
        let connections = connections.max(1);
        let count = connections.div_ceil(max_slots.max(1)).max(1);
        let slots = connections.div_ceil(count).max(1);
        let waker = if count > 1 {
            Some(Waker::new().map_err(|e| {
                EngineError::Io(std::io::Error::other(format!(
                    "could not create the eventfd that links a worker's rings: {e}"
                )))
            })?)
        } else {
            None
        };
        let mut rings = Vec::with_capacity(count);
        let mut bufs = Vec::with_capacity(count);
        for r in 0..count {
            let n = slots.min(connections - (r * slots).min(connections));
            let (config, entries) = setup(n);
            let ring = match &waker {
                Some(waker) if r > 0 => Ring::new_secondary(config, waker)?,
                _ => Ring::new(config)?,
            };
            bufs.push(ring.register_buf_ring(bgid, entries, buf_size)?);
            rings.push(ring);
        }
        if let Some(waker) = &waker {
            rings[0]
                .arm_waker(waker, wake_user_data)
                .map_err(EngineError::Io)?;
        }
        Ok(RingSet {
            rings,
            bufs,
            waker,
            slots: slots as u32,
            wake_user_data,
        })
    }

    /// Direct-descriptor slots per ring.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// The ring and direct-descriptor index of connection slot `slot`.
    #[inline]
    pub fn ring_of(&self, slot: u32) -> (usize, u32) {
        if self.rings.len() == 1 {
            (0, slot)
        } else {
            ((slot / self.slots) as usize, slot % self.slots)
        }
    }

    /// Submits every ring's queued work and waits on the primary ring until a completion is
    /// ready on any ring or `timeout` passes.
    ///
    /// A secondary ring signals the waker when completions for it are on their way; under
    /// DEFER_TASKRUN they reach its completion queue only when this thread enters that ring
    /// with GETEVENTS, which [`Ring::flush`] does when the ring's TASKRUN flag is up. With one
    /// ring both loops are empty.
    pub fn wait(&mut self, timeout: Duration) -> std::io::Result<()> {
        let (primary, secondaries) = self
            .rings
            .split_first_mut()
            .expect("a ring set has at least one ring");
        let mut ready = false;
        for ring in secondaries.iter_mut() {
            if ring.needs_flush() {
                ring.flush()?;
            }
            ready |= ring.has_completions();
        }
        primary.submit_and_wait(Some(if ready { Duration::ZERO } else { timeout }))?;
        for ring in secondaries {
            if ring.needs_flush() {
                ring.flush()?;
            }
        }
        Ok(())
    }

    /// The primary ring's poll of the waker completed: a secondary ring has work, which the
    /// next [`RingSet::wait`] flushes. Re-arms the poll when the kernel ended it.
    pub fn on_wake(&mut self, res: i32, flags: u32) -> Result<(), EngineError> {
        if res < 0 && res != -libc::ECANCELED {
            return Err(EngineError::Io(std::io::Error::other(format!(
                "polling the eventfd that links a worker's rings failed: {}",
                std::io::Error::from_raw_os_error(-res)
            ))));
        }
        if !cqueue::more(flags)
            && res != -libc::ECANCELED
            && let Some(waker) = &self.waker
        {
            self.rings[0]
                .arm_waker(waker, self.wake_user_data)
                .map_err(EngineError::Io)?;
        }
        Ok(())
    }

    /// Unregisters every buffer ring (before they are dropped).
    pub fn unregister_bufs(&self) {
        for (ring, bufs) in self.rings.iter().zip(&self.bufs) {
            ring.unregister_buf_ring(bufs);
        }
    }
}
