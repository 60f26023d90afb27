//! The heap of a task: one global allocator, given its memory at start.
//!
//! The allocator is talc (size-binned free lists, constant-time
//! allocation) behind a spin lock. It owns no memory until [`claim`]
//! hands it a range: a root task takes part of its free-memory window, a
//! task core starts takes `task_link::layout`'s heap (zero pages that core,
//! its pager, supplies on first touch). Built only with the `heap`
//! feature, so a task without a heap (hello, ktest) links no allocator.

/// The allocator of every `alloc` type in the task.
#[global_allocator]
static HEAP: talc::TalcLock<spin::mutex::SpinMutex<()>, talc::source::Manual> =
    talc::TalcLock::new(talc::source::Manual);

/// Gives the heap `size` bytes at `base`; false if talc cannot use them.
///
/// # Safety
///
/// The range must be readable and writable (or be backed on first touch),
/// belong to this task alone and hold no Rust object, for the rest of the
/// task's life.
pub unsafe fn claim(base: u64, size: u64) -> bool {
    let Ok(size) = usize::try_from(size) else {
        return false;
    };
    // SAFETY: the caller hands over the range for good (above).
    unsafe { HEAP.lock().claim(base as *mut u8, size) }.is_some()
}
