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
//! - The arena is one 4 MiB block of the system allocator, taken on the first allocation
//!   (it counts against the host's per-call memory cap like any other memory). If that fails,
//!   everything goes to the system allocator.
//! - It is not a `memory.grow` of its own: the SDK's plugins are linked with an initial linear
//!   memory that already holds the arena ([`INITIAL_MEMORY_BYTES`]), so wasi-libc's allocator
//!   hands it out of the memory the instance starts with and the instance never grows. A
//!   memory that grows makes the host's pooling allocator change page protections twice per
//!   instance (read/write when it grows, none again when the slot is reused), and taking
//!   protections away interrupts every core running the host (TLB shoot-downs), including
//!   the one making the next decision. A plugin linked without the larger initial memory
//!   still works; its system allocator simply grows the memory for the arena. Measured with
//!   `vnode bench plugins` (2 vCPUs, load 3-5, three interleaved pairs, before → after):
//!   place + translate over the golden corpus back-to-back p50 75-83 → 39-55 µs, p99
//!   413-444 → 95-239 µs; paced p99 302-626 → 209-333 µs; place + translate instantiating
//!   inline (no warm pool) 72-75 → 52-53 µs.
//! - An allocation that does not fit in what is left of the arena goes to the system
//!   allocator, so a plugin that churns through lots of memory (long strings, big config
//!   files) is bounded by the same cap as before, not by the arena.
//! - Freeing the most recent arena allocation gives its space back (so a growing `String` or
//!   `Vec` that is reallocated at the top of the arena grows in place); other arena frees are
//!   no-ops. Pointers outside the arena are the system allocator's and are freed there.
//! - Wasm components run on one thread; the atomics below compile to plain loads and stores.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Arena size (4 MiB): far more than a decision on a realistic pod uses.
const ARENA_BYTES: usize = 4 << 20;
/// Alignment of the arena (any allocation's alignment is honoured by the bump itself).
const ARENA_ALIGN: usize = 16;

/// The initial linear memory the SDK's plugins are linked with (`--initial-memory`, see
/// `plugins/.cargo/config.toml` and the scaffold of `vnode plugin new`): the 1 MiB stack and
/// static data of a typical plugin, the arena and room for the system allocator's own
/// allocations, so a decision's memory never has to grow (see the module docs).
pub const INITIAL_MEMORY_BYTES: usize = 6 << 20;

// Whole Wasm pages, holding the arena next to a 1 MiB stack and ~512 KiB of data and
// system-allocator overhead.
const _: () = assert!(INITIAL_MEMORY_BYTES.is_multiple_of(64 << 10));
const _: () = assert!(INITIAL_MEMORY_BYTES >= ARENA_BYTES + (1 << 20) + (512 << 10));
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
    #[inline(always)]
    fn next(&self) -> Option<usize> {
        match self.next.load(Ordering::Relaxed) {
            DISABLED => None,
            UNINIT => self.take_arena(),
            next => Some(next),
        }
    }

    /// Takes the arena from the system allocator (once per instance: kept out of line, so
    /// the bump that every allocation runs stays a few instructions).
    #[cold]
    #[inline(never)]
    fn take_arena(&self) -> Option<usize> {
        // SAFETY: a valid, non-zero-sized layout.
        let arena =
            unsafe { System.alloc(Layout::from_size_align_unchecked(ARENA_BYTES, ARENA_ALIGN)) };
        // Address 0 is never handed out by the system allocator (it would read as UNINIT);
        // null means there is no memory for the arena.
        if arena.is_null() {
            self.next.store(DISABLED, Ordering::Relaxed);
            return None;
        }
        let start = arena as usize;
        self.start.store(start, Ordering::Relaxed);
        self.end.store(start + ARENA_BYTES, Ordering::Relaxed);
        self.next.store(start, Ordering::Relaxed);
        Some(start)
    }

    #[inline(always)]
    fn in_arena(&self, ptr: *mut u8) -> bool {
        let addr = ptr as usize;
        addr >= self.start.load(Ordering::Relaxed) && addr < self.end.load(Ordering::Relaxed)
    }

    /// A bump allocation of `layout` in the arena, if it fits.
    #[inline(always)]
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

/// A copy of `text` in the global allocator's memory: the decoder's strings (a translation
/// decodes a few hundred). In a Wasm build the bump is inlined here, where `text.to_owned()`
/// costs two calls (`__rust_alloc` and the allocator behind it) plus its checks per string;
/// a string that does not fit in the arena, and every native build, take `to_owned()`.
#[inline(always)]
pub(crate) fn copy_str(text: &str) -> String {
    #[cfg(target_arch = "wasm32")]
    if !text.is_empty() {
        // SAFETY: a slice's length is at most `isize::MAX`, and alignment 1 is a power of two.
        let layout = unsafe { Layout::from_size_align_unchecked(text.len(), 1) };
        if let Some(ptr) = crate::ALLOCATOR.bump(layout) {
            // SAFETY: `ptr` is a fresh allocation of `text.len()` bytes with alignment 1 from
            // the global allocator (`ALLOCATOR` is the `#[global_allocator]` of every Wasm
            // build), so it may become a `String` of that capacity, which frees it through
            // the same allocator; the bytes copied are UTF-8 (they come from a `str`).
            unsafe {
                core::ptr::copy_nonoverlapping(text.as_ptr(), ptr, text.len());
                return String::from_raw_parts(ptr, text.len(), text.len());
            }
        }
    }
    text.to_owned()
}

impl Default for PluginAllocator {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every pointer handed out is either a fresh, suitably aligned, non-overlapping range
// of the arena (which this allocator alone owns: it came from its own `memory.grow`) or the
// system allocator's, and each is freed by whoever handed it out (decided by address).
unsafe impl GlobalAlloc for PluginAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(ptr) => ptr,
            // SAFETY: same contract as ours.
            None => unsafe { System.alloc(layout) },
        }
    }

    #[inline]
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

    #[inline]
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

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("layout")
    }

    /// The arena comes from the system allocator on first use (natively too), allocations
    /// bump through it, the newest one grows and is given back in place, and what does not
    /// fit goes to the system allocator.
    #[test]
    fn allocations_bump_through_an_arena_taken_from_the_system_allocator() {
        let a = PluginAllocator::new();
        // SAFETY: plain use of the GlobalAlloc contract; every pointer is used within its
        // layout and freed with it.
        unsafe {
            let p = a.alloc(layout(100, 8));
            assert!(!p.is_null());
            assert!(a.in_arena(p), "the first allocation takes the arena");
            let start = a.start.load(Ordering::Relaxed);
            assert_eq!(p as usize, start);
            assert_eq!(a.end.load(Ordering::Relaxed) - start, ARENA_BYTES);
            p.write_bytes(7, 100);

            // Aligned bump after the first allocation.
            let q = a.alloc(layout(10, 64));
            assert_eq!(q as usize % 64, 0);
            assert!(q as usize >= start + 100);

            // The newest allocation grows in place and keeps its contents.
            q.write_bytes(9, 10);
            let q2 = a.realloc(q, layout(10, 64), 5000);
            assert_eq!(q2, q);
            assert_eq!(*q2.add(9), 9);
            assert_eq!(a.next.load(Ordering::Relaxed), q as usize + 5000);

            // An older one moves (copied), the old space is not reused.
            let p2 = a.realloc(p, layout(100, 8), 200);
            assert_ne!(p2, p);
            assert!(a.in_arena(p2));
            assert_eq!(*p2.add(99), 7);

            // Freeing the newest gives its space back; the next allocation reuses it.
            a.dealloc(p2, layout(200, 8));
            let r = a.alloc(layout(200, 8));
            assert_eq!(r, p2);

            // Larger than what is left: the system allocator's.
            let big = a.alloc(layout(ARENA_BYTES, 8));
            assert!(!big.is_null());
            assert!(!a.in_arena(big));
            big.write_bytes(1, ARENA_BYTES);
            let big2 = a.realloc(big, layout(ARENA_BYTES, 8), ARENA_BYTES + 1);
            assert!(!a.in_arena(big2));
            assert_eq!(*big2.add(ARENA_BYTES - 1), 1);
            a.dealloc(big2, layout(ARENA_BYTES + 1, 8));
        }
    }

    /// The workspace's link settings give the plugins the initial memory this allocator
    /// counts on (the file is found above the SDK's directory, in this repository and in a
    /// crate written by `vnode plugin new` alike).
    #[test]
    fn the_plugins_are_linked_with_the_initial_memory_that_holds_the_arena() {
        let manifest_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = manifest_dir
            .ancestors()
            .map(|dir| dir.join(".cargo/config.toml"))
            .find(|file| file.exists())
            .expect("a .cargo/config.toml above the SDK");
        let text = std::fs::read_to_string(&config).expect("readable");
        let want = format!("link-arg=--initial-memory={INITIAL_MEMORY_BYTES}");
        assert!(
            text.contains(&want),
            "{} does not link with {want}",
            config.display()
        );
    }
}
