//! Weight memory backed by 2 MiB pages where the system allows it.
//!
//! Generation streams every weight once per token. With 4 KiB pages each page of that stream
//! is a TLB miss and a page walk; with Linux's transparent huge pages (in `madvise` mode on
//! many distributions, so a program has to ask) one TLB entry covers 512 of them. The heap
//! cannot be asked reliably: `calloc` hands back memory other allocations have already
//! touched, and advice does not change pages that are already there. So a large buffer is
//! its own anonymous mapping, aligned to 2 MiB and advised before its first write. Smaller
//! buffers (the scales of every matrix, the values of small ones: together some 15 % of the
//! bytes a token reads) share such mappings, "slabs", handed out front to back.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
#[cfg(target_os = "linux")]
use std::sync::{Arc, Mutex};

/// Buffers smaller than this share a slab: alone they could not fill a huge page.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const HUGE: usize = 2 << 20;
/// Size of a slab shared by small buffers.
#[cfg(target_os = "linux")]
const SLAB: usize = 16 * HUGE;
/// Alignment of a buffer inside a slab (a cache line, and enough for any element type).
#[cfg(target_os = "linux")]
const SLAB_ALIGN: usize = 64;

/// A zero-initialised byte buffer of fixed length.
pub struct PageBuffer {
    inner: Inner,
}

enum Inner {
    /// `u64` words so that any element type of [`PageVec`] is aligned.
    Heap { words: Vec<u64>, len: usize },
    #[cfg(target_os = "linux")]
    Mapped {
        _mapping: Mapping,
        /// The buffer: the first 2 MiB boundary inside the mapping.
        data: *mut u8,
        len: usize,
    },
    /// A part of a slab no other buffer uses; the slab is unmapped with its last part.
    #[cfg(target_os = "linux")]
    Slab {
        _slab: Arc<Mapping>,
        data: *mut u8,
        len: usize,
    },
}

/// An anonymous mapping, unmapped on drop.
#[cfg(target_os = "linux")]
struct Mapping {
    /// As `mmap` returned it.
    base: *mut u8,
    mapped: usize,
}

// SAFETY: plain memory; who may write to which part of it is decided by its owners.
#[cfg(target_os = "linux")]
unsafe impl Send for Mapping {}
// SAFETY: as above; `Mapping` itself is never read or written through.
#[cfg(target_os = "linux")]
unsafe impl Sync for Mapping {}

#[cfg(target_os = "linux")]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping `map_huge` made, unmapped once; every buffer inside it has
        // been dropped (each holds the mapping or an `Arc` of it).
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.mapped);
        }
    }
}

/// The slab small buffers are being cut from, and the offset of its first free byte.
#[cfg(target_os = "linux")]
struct OpenSlab {
    slab: Arc<Mapping>,
    data: *mut u8,
    used: usize,
}

// SAFETY: only the free part of the slab is reached through it, under the mutex.
#[cfg(target_os = "linux")]
unsafe impl Send for OpenSlab {}

#[cfg(target_os = "linux")]
static OPEN_SLAB: Mutex<Option<OpenSlab>> = Mutex::new(None);

/// `len` (> 0, < `HUGE`) fresh zero bytes cut from the open slab, or from a new one.
#[cfg(target_os = "linux")]
fn from_slab(len: usize) -> Option<Inner> {
    let mut open = OPEN_SLAB.lock().unwrap_or_else(|e| e.into_inner());
    let start = open.as_ref().map(|o| o.used.next_multiple_of(SLAB_ALIGN));
    let start = match start {
        Some(s) if s + len <= SLAB => s,
        _ => {
            let (mapping, data) = map_huge(SLAB)?;
            *open = Some(OpenSlab {
                slab: Arc::new(mapping),
                data,
                used: 0,
            });
            0
        }
    };
    let o = open.as_mut()?;
    o.used = start + len;
    Some(Inner::Slab {
        _slab: o.slab.clone(),
        // SAFETY: `start + len <= SLAB`, inside the slab's aligned part.
        data: unsafe { o.data.add(start) },
        len,
    })
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
            if let Some((mapping, data)) = map_huge(len) {
                return PageBuffer {
                    inner: Inner::Mapped {
                        _mapping: mapping,
                        data,
                        len,
                    },
                };
            }
        } else if len > 0 {
            if let Some(inner) = from_slab(len) {
                return PageBuffer { inner };
            }
        }
        PageBuffer {
            inner: Inner::Heap {
                words: vec![0u64; len.div_ceil(8)],
                len,
            },
        }
    }

    /// Whether the buffer lies in a mapping advised for huge pages (its own, or a slab shared
    /// with other small buffers) rather than on the heap.
    pub fn is_mapped(&self) -> bool {
        !matches!(self.inner, Inner::Heap { .. })
    }
}

/// A fresh anonymous mapping with `len` bytes from a 2 MiB boundary, advised for huge pages,
/// and that boundary.
#[cfg(target_os = "linux")]
fn map_huge(len: usize) -> Option<(Mapping, *mut u8)> {
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
    Some((Mapping { base, mapped }, data))
}

impl Deref for PageBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.inner {
            // SAFETY: `len` of the words' initialised bytes, owned by `self`.
            Inner::Heap { words, len } => unsafe {
                std::slice::from_raw_parts(words.as_ptr() as *const u8, *len)
            },
            #[cfg(target_os = "linux")]
            // SAFETY: `len` initialised (zero-filled by the kernel) bytes that only `self`
            // reaches.
            Inner::Mapped { data, len, .. } | Inner::Slab { data, len, .. } => unsafe {
                std::slice::from_raw_parts(*data, *len)
            },
        }
    }
}

impl DerefMut for PageBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.inner {
            // SAFETY: as in `deref`, borrowed uniquely through `&mut self`.
            Inner::Heap { words, len } => unsafe {
                std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, *len)
            },
            #[cfg(target_os = "linux")]
            // SAFETY: as in `deref`, borrowed uniquely through `&mut self`.
            Inner::Mapped { data, len, .. } | Inner::Slab { data, len, .. } => unsafe {
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

/// Element types a [`PageVec`] can hold: every bit pattern (zero included) is a value.
pub trait Plain: Copy + std::fmt::Debug + private::Sealed {}
impl Plain for u8 {}
impl Plain for i8 {}
impl Plain for u16 {}

mod private {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for i8 {}
    impl Sealed for u16 {}
}

/// A fixed-length array of plain values in a [`PageBuffer`] (the scales of a matrix).
#[derive(Clone, Default)]
pub struct PageVec<T: Plain> {
    bytes: PageBuffer,
    _element: PhantomData<T>,
}

impl<T: Plain> PageVec<T> {
    pub fn from_slice(values: &[T]) -> PageVec<T> {
        let size = std::mem::size_of_val(values);
        let mut bytes = PageBuffer::zeroed(size);
        // SAFETY: `values` is `size` initialised bytes of plain values.
        let raw = unsafe { std::slice::from_raw_parts(values.as_ptr() as *const u8, size) };
        bytes.copy_from_slice(raw);
        PageVec {
            bytes,
            _element: PhantomData,
        }
    }
}

impl<T: Plain> Deref for PageVec<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        let len = self.bytes.len() / std::mem::size_of::<T>();
        // SAFETY: the buffer is aligned for `T` (heap words, a slab part or a mapping), holds
        // `len` whole values written by `from_slice`, and every bit pattern is a `T`.
        unsafe { std::slice::from_raw_parts(self.bytes.as_ptr() as *const T, len) }
    }
}

impl<T: Plain> FromIterator<T> for PageVec<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> PageVec<T> {
        PageVec::from_slice(&iter.into_iter().collect::<Vec<T>>())
    }
}

impl<T: Plain> std::fmt::Debug for PageVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageVec")
            .field("len", &self.len())
            .field("mapped", &self.bytes.is_mapped())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_zeroed_aligned_mappings() {
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
        assert_eq!(&small[..], &[0u8; 100][..]);
        assert!(PageBuffer::default().is_empty());
    }

    #[test]
    fn small_buffers_sharing_a_slab_are_zeroed_aligned_and_apart() {
        let mut parts: Vec<PageBuffer> = (1..200).map(|n| PageBuffer::zeroed(n * 97)).collect();
        for (i, p) in parts.iter_mut().enumerate() {
            assert_eq!(p.len(), (i + 1) * 97);
            assert!(p.iter().all(|&b| b == 0), "part {i} is not zeroed");
            assert_eq!(p.as_ptr() as usize % 8, 0);
            p.fill(i as u8);
        }
        // Each part kept its own bytes: none overlaps another.
        for (i, p) in parts.iter().enumerate() {
            assert!(p.iter().all(|&b| b == i as u8), "part {i} was overwritten");
        }
        // Dropping some parts leaves the others intact.
        parts.truncate(50);
        let later = PageBuffer::zeroed(HUGE - 1);
        assert!(later.iter().all(|&b| b == 0));
        assert!(parts[49].iter().all(|&b| b == 49));
    }

    #[test]
    fn page_vecs_hold_their_values() {
        let values: Vec<u16> = (0..5000).map(|i| (i * 31) as u16).collect();
        let v = PageVec::from_slice(&values);
        assert_eq!(&v[..], &values[..]);
        let c = v.clone();
        assert_eq!(&c[..], &values[..]);
        let signed: PageVec<i8> = (0..300).map(|i| (i % 200 - 100) as i8).collect();
        assert_eq!(signed.len(), 300);
        assert_eq!(signed[299], -1);
        assert_eq!(signed[0], -100);
        assert!(PageVec::<u8>::default().is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn small_buffers_share_mapped_slabs_on_linux() {
        assert!(PageBuffer::zeroed(100).is_mapped());
        assert!(!PageBuffer::zeroed(0).is_mapped());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn large_buffers_are_mapped_on_linux() {
        assert!(PageBuffer::zeroed(HUGE).is_mapped());
    }
}
