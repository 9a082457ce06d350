//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`) for multishot receives.
//!
//! The kernel picks a free buffer for every received chunk and names it in the completion;
//! the buffer is the kernel's from the moment it is in the ring until a completion names it,
//! then ours until [`BufRing::recycle`] hands it back. Written by hand over `mmap` because the
//! io-uring crate exposes only the registration call and the entry type.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;
use io_uring::types::BufRingEntry;

use super::RingError;

/// An anonymous private mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping with no address hint touches no existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created and nobody else unmaps.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A registered ring of `entries` buffers of `buf_size` bytes each.
pub struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    entries: u16,
    buf_size: u32,
    bgid: u16,
    /// Our copy of the tail; published to the kernel by [`BufRing::commit`].
    tail: u16,
    dirty: bool,
}

impl BufRing {
    pub(super) fn new(
        submitter: &Submitter<'_>,
        bgid: u16,
        entries: u16,
        buf_size: u32,
    ) -> Result<BufRing, RingError> {
        assert!(
            entries.is_power_of_two(),
            "buffer ring entries must be a power of two"
        );
        let err = |source| RingError::BufRing { entries, source };
        let ring = Mapping::new(usize::from(entries) * std::mem::size_of::<BufRingEntry>())
            .map_err(err)?;
        let bufs = Mapping::new(usize::from(entries) * buf_size as usize).map_err(err)?;
        // SAFETY: the ring mapping is page aligned, sized for `entries` entries, and lives in
        // this BufRing until after the ring is unregistered or the io_uring is closed (the
        // owner unregisters it with `Ring::unregister_buf_ring` before dropping it).
        unsafe {
            submitter.register_buf_ring_with_flags(ring.ptr.as_ptr() as u64, entries, bgid, 0)
        }
        .map_err(err)?;
        let mut this = BufRing {
            ring,
            bufs,
            entries,
            buf_size,
            bgid,
            tail: 0,
            dirty: false,
        };
        for bid in 0..entries {
            this.recycle(bid);
        }
        this.commit();
        Ok(this)
    }

    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// The first `len` bytes of buffer `bid`, which a completion has just handed to us.
    #[inline]
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        assert!(
            bid < self.entries && len <= self.buf_size as usize,
            "buffer id or length out of range"
        );
        // SAFETY: bid and len are in range (checked above); a completion named this buffer, so
        // the kernel is done writing it until we recycle it, and `&self` keeps recycle away.
        unsafe {
            std::slice::from_raw_parts(
                self.bufs
                    .ptr
                    .as_ptr()
                    .add(usize::from(bid) * self.buf_size as usize),
                len,
            )
        }
    }

    /// Hands buffer `bid` back to the kernel (visible after the next [`BufRing::commit`]).
    #[inline]
    pub fn recycle(&mut self, bid: u16) {
        debug_assert!(bid < self.entries);
        let mask = self.entries - 1;
        let index = usize::from(self.tail & mask);
        // SAFETY: `index` < entries, so the entry lies inside the ring mapping; the kernel only
        // reads entries between its head and the published tail, and this one is past the tail.
        unsafe {
            let entry = &mut *self.ring.ptr.as_ptr().cast::<BufRingEntry>().add(index);
            entry.set_addr(
                self.bufs
                    .ptr
                    .as_ptr()
                    .add(usize::from(bid) * self.buf_size as usize) as u64,
            );
            entry.set_len(self.buf_size);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        self.dirty = true;
    }

    /// Publishes recycled buffers to the kernel.
    #[inline]
    pub fn commit(&mut self) {
        if !self.dirty {
            return;
        }
        // SAFETY: the tail field overlays the `resv` of the first entry, inside the mapping,
        // suitably aligned for a u16; the kernel reads it concurrently, hence the atomic store
        // with Release so the entries written above are visible before the new tail.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.ptr.as_ptr().cast::<BufRingEntry>())
                as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
        self.dirty = false;
    }
}
