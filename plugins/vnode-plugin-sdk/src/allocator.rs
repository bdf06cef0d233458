//! The plugin's memory allocator (Wasm builds only): a bump allocator over one arena, with the
//! system allocator (wasi-libc's dlmalloc) behind it.
//!
//! Why: the host runs every decision in a fresh instance and throws it away afterwards, so
//! bookkeeping for reuse is wasted work. And a decision allocates once per string and list of
//! its input (about 70 for a placement input, 110 for a translator input): in contract 0.3.0
//! the SDK's decoder does, after the host's one `cabi_realloc` for the input buffer (with the
//! typed 0.1.0/0.2.0 contracts the host called `cabi_realloc` for each). A bump allocation is
//! an add and a compare, and the answer's buffer, allocated last, grows in place.
//!
//! Safety of the scheme:
//! - The arena is taken with one `memory.grow` on the first allocation (4 MiB, which counts
//!   against the host's per-call memory cap like any other growth). If that fails, everything
//!   goes to the system allocator.
//! - An allocation that does not fit in what is left of the arena goes to the system
//!   allocator, so a plugin that churns through lots of memory (long strings, big config
//!   files) is bounded by the same cap as before, not by the arena.
//! - Freeing the most recent arena allocation gives its space back (so a growing `String` or
//!   `Vec` that is reallocated at the top of the arena grows in place); other arena frees are
//!   no-ops. Pointers outside the arena are the system allocator's and are freed there.
//! - Wasm components run on one thread; the atomics below compile to plain loads and stores.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Wasm page size.
const PAGE: usize = 64 * 1024;
/// Arena size in pages (4 MiB): far more than a decision on a realistic pod uses.
const ARENA_PAGES: usize = 64;
/// `next` before the first allocation.
const UNINIT: usize = 0;
/// `next` when the arena could not be taken: every allocation goes to the system allocator.
const DISABLED: usize = usize::MAX;

/// Bump allocator with the system allocator behind it (see the module docs).
pub struct PluginAllocator {
    /// First free byte of the arena (or [`UNINIT`] / [`DISABLED`]).
    next: AtomicUsize,
    /// Arena bounds.
    start: AtomicUsize,
    end: AtomicUsize,
}

impl PluginAllocator {
    /// An allocator whose arena is taken on first use.
    pub const fn new() -> Self {
        PluginAllocator {
            next: AtomicUsize::new(UNINIT),
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
        }
    }

    /// The arena's first free byte, taking the arena on first use; `None` when disabled.
    fn next(&self) -> Option<usize> {
        match self.next.load(Ordering::Relaxed) {
            DISABLED => None,
            UNINIT => {
                let previous_pages = grow(ARENA_PAGES);
                if previous_pages == usize::MAX {
                    self.next.store(DISABLED, Ordering::Relaxed);
                    return None;
                }
                // Address 0 is never handed out (it would read as UNINIT): the arena starts
                // after the module's initial memory, which is never empty.
                let start = previous_pages * PAGE;
                self.start.store(start, Ordering::Relaxed);
                self.end
                    .store(start + ARENA_PAGES * PAGE, Ordering::Relaxed);
                self.next.store(start, Ordering::Relaxed);
                Some(start)
            }
            next => Some(next),
        }
    }

    fn in_arena(&self, ptr: *mut u8) -> bool {
        let addr = ptr as usize;
        addr >= self.start.load(Ordering::Relaxed) && addr < self.end.load(Ordering::Relaxed)
    }

    /// A bump allocation of `layout` in the arena, if it fits.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let next = self.next()?;
        let start = next.checked_add(layout.align() - 1)? & !(layout.align() - 1);
        let end = start.checked_add(layout.size())?;
        if end > self.end.load(Ordering::Relaxed) {
            return None;
        }
        self.next.store(end, Ordering::Relaxed);
        Some(start as *mut u8)
    }
}

impl Default for PluginAllocator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(target_arch = "wasm32")]
fn grow(pages: usize) -> usize {
    core::arch::wasm32::memory_grow(0, pages)
}

// Natively (unit tests of the allocator itself) there is no linear memory to grow.
#[cfg(not(target_arch = "wasm32"))]
fn grow(_pages: usize) -> usize {
    usize::MAX
}

// SAFETY: every pointer handed out is either a fresh, suitably aligned, non-overlapping range
// of the arena (which this allocator alone owns: it came from its own `memory.grow`) or the
// system allocator's, and each is freed by whoever handed it out (decided by address).
unsafe impl GlobalAlloc for PluginAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(ptr) => ptr,
            // SAFETY: same contract as ours.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.in_arena(ptr) {
            // Only the most recent allocation can be given back.
            if ptr as usize + layout.size() == self.next.load(Ordering::Relaxed) {
                self.next.store(ptr as usize, Ordering::Relaxed);
            }
            return;
        }
        // SAFETY: outside the arena, so the system allocator handed it out.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.in_arena(ptr) {
            // SAFETY: the system allocator's pointer; same contract as ours.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let addr = ptr as usize;
        let end = self.end.load(Ordering::Relaxed);
        // The top allocation grows (or shrinks) in place while it fits.
        if addr + layout.size() == self.next.load(Ordering::Relaxed)
            && let Some(new_end) = addr.checked_add(new_size)
            && new_end <= end
        {
            self.next.store(new_end, Ordering::Relaxed);
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: `new_size` with the old alignment is a valid layout (the caller promises
        // it does not overflow `isize` when rounded up to the alignment).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: non-zero size (larger than the old one).
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both ranges are valid for `layout.size()` bytes and do not overlap
            // (the new one was just handed out).
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size());
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_linear_memory_everything_goes_to_the_system_allocator() {
        let a = PluginAllocator::new();
        let layout = Layout::from_size_align(100, 8).expect("layout");
        // SAFETY: plain use of the GlobalAlloc contract.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            assert!(!a.in_arena(p));
            p.write_bytes(7, 100);
            let q = a.realloc(p, layout, 300);
            assert_eq!(*q.add(99), 7);
            a.dealloc(q, Layout::from_size_align(300, 8).expect("layout"));
        }
        assert_eq!(a.next.load(Ordering::Relaxed), DISABLED);
    }
}
