//! The rings of one worker thread. A ring's registered file table holds at most
//! RLIMIT_NOFILE direct descriptors (20,000 on the development machine, and not raisable
//! there), so a worker whose connections need more drives several rings: connection slot `s`
//! lives in ring `s / slots` at direct descriptor `s % slots`. Each ring has its own
//! provided-buffer ring. The thread blocks on the first (primary) ring; the others signal an
//! eventfd ([`Waker`]) that the primary ring polls, so completions on any ring wake it.
//! Both engines (the HTTP worker and the virtual-user worker) use this.

use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types};
use socket2::SockAddr;

use super::EngineError;
use super::ring::{BufRing, Ring, RingConfig, Token, Waker};

/// The operations both engines run on a connection: the `op` of their completion tokens.
pub mod op {
    pub const SOCKET: u8 = 1;
    /// IP_BIND_ADDRESS_NO_PORT and bind, before a connect from a source address.
    pub const SOCKOPT: u8 = 2;
    pub const BIND: u8 = 3;
    pub const CONNECT: u8 = 4;
    pub const RECV: u8 = 6;
    pub const SEND: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const CLOSE: u8 = 9;
    /// The primary ring's poll of the eventfd its secondary rings signal.
    pub const WAKE: u8 = 10;
}

/// The value of IP_BIND_ADDRESS_NO_PORT (a static: the kernel reads it after the push).
static ONE: libc::c_int = 1;

pub struct RingSet {
    pub rings: Vec<Ring>,
    /// The provided-buffer ring of each ring, same index.
    pub bufs: Vec<BufRing>,
    waker: Option<Waker>,
    /// Direct-descriptor slots per ring (the last ring may use fewer).
    slots: u32,
}

/// `user_data` of the primary ring's poll of the waker.
fn wake_token() -> u64 {
    Token::new(0, 0, op::WAKE).encode()
}

impl RingSet {
    /// Opens as many rings as `connections` need at `max_slots` direct descriptors per ring,
    /// with the connections spread evenly; `setup(n)` gives the sizes of a ring for `n`
    /// connections and its number of receive buffers (a power of two). The completions of
    /// the waker's poll carry [`op::WAKE`] (see [`RingSet::on_wake`]).
    pub fn open(
        connections: usize,
        max_slots: usize,
        bgid: u16,
        buf_size: u32,
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
                .arm_waker(waker, wake_token())
                .map_err(EngineError::Io)?;
        }
        Ok(RingSet {
            rings,
            bufs,
            waker,
            slots: slots as u32,
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

    /// Queues the opening of connection `slot` (of `generation`) on its ring: a socket into
    /// its direct descriptor, then, from `source`, IP_BIND_ADDRESS_NO_PORT and a bind (the
    /// kernel picks the port at connect time, for the full 4-tuple), then the connect, linked.
    /// Every entry completes with its [`op`] in the token; when one fails, the rest complete
    /// with ECANCELED, so the connect's completion always comes. Returns how many
    /// completions to expect.
    ///
    /// # Safety
    /// `target` and `source` must stay valid and unmoved until those completions arrived.
    pub unsafe fn push_connect(
        &mut self,
        slot: u32,
        generation: u32,
        target: &SockAddr,
        source: Option<&SockAddr>,
    ) -> Result<u8, EngineError> {
        let (ring, fd) = self.ring_of(slot);
        let fixed = types::Fixed(fd);
        let tok = |op| Token::new(slot, generation, op).encode();
        let domain = if target.is_ipv6() {
            libc::AF_INET6
        } else {
            libc::AF_INET
        };
        let dest = types::DestinationSlot::try_from_slot_target(fd).map_err(|_| {
            EngineError::Io(std::io::Error::other("direct descriptor slot out of range"))
        })?;
        let link = |e: squeue::Entry, op| e.flags(squeue::Flags::IO_LINK).user_data(tok(op));
        let mut chain: [squeue::Entry; 4] = std::array::from_fn(|_| opcode::Nop::new().build());
        let mut n = 0;
        chain[n] = link(
            opcode::Socket::new(domain, libc::SOCK_STREAM, libc::IPPROTO_TCP)
                .file_index(Some(dest))
                .build(),
            op::SOCKET,
        );
        n += 1;
        if let Some(source) = source {
            chain[n] = link(
                opcode::SetSockOpt::new(
                    fixed,
                    libc::IPPROTO_IP as u32,
                    libc::IP_BIND_ADDRESS_NO_PORT as u32,
                    (&raw const ONE).cast(),
                    std::mem::size_of::<libc::c_int>() as u32,
                )
                .build(),
                op::SOCKOPT,
            );
            chain[n + 1] = link(
                opcode::Bind::new(fixed, source.as_ptr().cast(), source.len()).build(),
                op::BIND,
            );
            n += 2;
        }
        chain[n] = opcode::Connect::new(fixed, target.as_ptr().cast(), target.len())
            .build()
            .user_data(tok(op::CONNECT));
        n += 1;
        // SAFETY: the caller keeps the addresses alive and in place until every completion
        // arrived; the option value is a static.
        unsafe { self.rings[ring].push_chain(&chain[..n]) }.map_err(EngineError::Io)?;
        Ok(n as u8)
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
                .arm_waker(waker, wake_token())
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
