//! The agent's heap: talc over blocks from the C library, behind a futex.
//!
//! musl's allocator (mallocng) gives memory back to the kernel eagerly,
//! so a small vector made and dropped for every frame cost, under Bochs,
//! about 14 000 instructions a time in `mmap`, `munmap` and page faults
//! (docs/linux-bridge.md, "Where a delegated call goes"). talc takes
//! 1 MiB blocks from it and keeps a block while anything in it lives.
//! Its lock is a futex mutex, so a thread that finds it taken sleeps
//! rather than spinning on the Linux cell's one vCPU.
#![allow(unsafe_code)]

use std::alloc::System;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use rustix::thread::futex;
use talc::source::GlobalAllocSource;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and a thread may sleep on it: the unlock must wake one.
const CONTENDED: u32 = 2;

/// A mutex on a futex word: U. Drepper, "Futexes Are Tricky", mutex 2.
pub struct FutexLock(AtomicU32);

// SAFETY: `lock` and `try_lock` return holding the lock only after this
// thread moved the word from UNLOCKED (by compare-exchange or swap, with
// Acquire), and only the holder calls `unlock` (lock_api's contract),
// which stores UNLOCKED with Release: so one holder at a time, and what
// it wrote is seen by the next. The word is the only state, so the guard
// may be sent to another thread.
unsafe impl lock_api::RawMutex for FutexLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: FutexLock = FutexLock(AtomicU32::new(UNLOCKED));
    type GuardMarker = lock_api::GuardSend;

    fn lock(&self) {
        if self.try_lock() {
            return;
        }
        // Say we wait, then sleep while the word still says so.
        while self.0.swap(CONTENDED, Acquire) != UNLOCKED {
            // A wake-up, EAGAIN (the word changed) or EINTR: look again.
            let _ = futex::wait(&self.0, futex::Flags::PRIVATE, CONTENDED, None);
        }
    }

    fn try_lock(&self) -> bool {
        self.0
            .compare_exchange(UNLOCKED, LOCKED, Acquire, Relaxed)
            .is_ok()
    }

    unsafe fn unlock(&self) {
        if self.0.swap(UNLOCKED, Release) == CONTENDED {
            let _ = futex::wake(&self.0, futex::Flags::PRIVATE, 1);
        }
    }
}

/// The allocator type: talc, locked by [`FutexLock`], over `System`.
pub type Heap = talc::TalcLock<FutexLock, GlobalAllocSource<System>>;

/// The agent's allocator (its `#[global_allocator]`).
pub const fn heap() -> Heap {
    talc::TalcLock::new(GlobalAllocSource::new(System))
}

#[cfg(test)]
mod tests {
    use super::FutexLock;

    type Mutex<T> = lock_api::Mutex<FutexLock, T>;

    #[test]
    fn the_lock_excludes_and_wakes_its_waiters() {
        let counter = std::sync::Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let mut value = counter.lock();
                        // A read, a yield and a write: lost updates show
                        // if two threads are ever inside at once.
                        let seen = *value;
                        if seen % 1000 == 0 {
                            std::thread::yield_now();
                        }
                        *value = seen + 1;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(*counter.lock(), 80_000);
        let held = counter.lock();
        assert!(
            counter.try_lock().is_none(),
            "a held lock is not taken again"
        );
        drop(held);
        assert!(counter.try_lock().is_some());
    }
}
