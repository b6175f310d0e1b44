//! Weight memory backed by 2 MiB pages where the system allows it.
//!
//! Generation streams every weight once per token. With 4 KiB pages each page of that stream
//! is a TLB miss and a page walk; with Linux's transparent huge pages (in `madvise` mode on
//! many distributions, so a program has to ask) one TLB entry covers 512 of them. The heap
//! cannot be asked reliably: `calloc` hands back memory other allocations have already
//! touched, and advice does not change pages that are already there. So a large buffer is
//! its own anonymous mapping, aligned to 2 MiB and advised before its first write.

use std::ops::{Deref, DerefMut};

/// Buffers smaller than this stay on the heap: they could not fill a huge page.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const HUGE: usize = 2 << 20;

/// A zero-initialised byte buffer of fixed length.
pub struct PageBuffer {
    inner: Inner,
}

enum Inner {
    Heap(Vec<u8>),
    #[cfg(target_os = "linux")]
    Mapped {
        /// The mapping as `mmap` returned it (for `munmap`).
        base: *mut u8,
        mapped: usize,
        /// The buffer: the first 2 MiB boundary inside the mapping.
        data: *mut u8,
        len: usize,
    },
}

// SAFETY: the mapping is plain memory owned by this value alone, like a `Vec<u8>`'s.
unsafe impl Send for PageBuffer {}
// SAFETY: shared access only reads through `&[u8]`.
unsafe impl Sync for PageBuffer {}

impl PageBuffer {
    /// `len` zero bytes, on huge pages when `len` is large and the system grants them, else
    /// on the heap.
    pub fn zeroed(len: usize) -> PageBuffer {
        #[cfg(target_os = "linux")]
        if len >= HUGE {
            if let Some(inner) = map_huge(len) {
                return PageBuffer { inner };
            }
        }
        PageBuffer {
            inner: Inner::Heap(vec![0u8; len]),
        }
    }

    /// Whether the buffer is its own mapping (advised for huge pages) rather than heap memory.
    pub fn is_mapped(&self) -> bool {
        !matches!(self.inner, Inner::Heap(_))
    }
}

#[cfg(target_os = "linux")]
fn map_huge(len: usize) -> Option<Inner> {
    // Room to move the start up to the next 2 MiB boundary.
    let mapped = len.checked_add(HUGE)?;
    // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            mapped,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    let base = base as *mut u8;
    let skip = (base as usize).next_multiple_of(HUGE) - base as usize;
    // SAFETY: `skip < HUGE`, so `data..data + len` lies inside the mapping.
    let data = unsafe { base.add(skip) };
    // SAFETY: advice on our own mapping before any page of it exists; a refusal (huge pages
    // off, or an old kernel) leaves ordinary pages, which is still correct.
    unsafe {
        libc::madvise(data as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    Some(Inner::Mapped {
        base,
        mapped,
        data,
        len,
    })
}

impl Drop for PageBuffer {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Inner::Mapped { base, mapped, .. } = self.inner {
            // SAFETY: the mapping `map_huge` made, unmapped once; no slice of it outlives
            // `self`.
            unsafe {
                libc::munmap(base as *mut libc::c_void, mapped);
            }
        }
    }
}

impl Deref for PageBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.inner {
            Inner::Heap(v) => v,
            #[cfg(target_os = "linux")]
            // SAFETY: `len` initialised (zero-filled by the kernel) bytes owned by `self`.
            Inner::Mapped { data, len, .. } => unsafe { std::slice::from_raw_parts(*data, *len) },
        }
    }
}

impl DerefMut for PageBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.inner {
            Inner::Heap(v) => v,
            #[cfg(target_os = "linux")]
            // SAFETY: as in `deref`, borrowed uniquely through `&mut self`.
            Inner::Mapped { data, len, .. } => unsafe {
                std::slice::from_raw_parts_mut(*data, *len)
            },
        }
    }
}

impl Clone for PageBuffer {
    fn clone(&self) -> PageBuffer {
        let mut copy = PageBuffer::zeroed(self.len());
        copy.copy_from_slice(self);
        copy
    }
}

impl Default for PageBuffer {
    fn default() -> PageBuffer {
        PageBuffer::zeroed(0)
    }
}

impl std::fmt::Debug for PageBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageBuffer")
            .field("len", &self.len())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_zeroed_aligned_mappings_and_small_ones_heap() {
        let mut big = PageBuffer::zeroed(3 * HUGE + 123);
        assert_eq!(big.len(), 3 * HUGE + 123);
        assert!(big.iter().all(|&b| b == 0));
        if big.is_mapped() {
            assert_eq!(big.as_ptr() as usize % HUGE, 0);
        }
        big[3 * HUGE + 122] = 7;
        let copy = big.clone();
        assert_eq!(copy[3 * HUGE + 122], 7);
        assert_eq!(&copy[..], &big[..]);
        let small = PageBuffer::zeroed(100);
        assert!(!small.is_mapped());
        assert_eq!(&small[..], &[0u8; 100][..]);
        assert!(PageBuffer::default().is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn large_buffers_are_mapped_on_linux() {
        assert!(PageBuffer::zeroed(HUGE).is_mapped());
    }
}
