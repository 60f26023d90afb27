//! Entry points: the root's main, the thread trampoline, the panic policy.
//!
//! The kernel enters `_start` (from `microkernel_rt::entry!`) in ring 3
//! with RDI = the `RootBootInfo` address and RSP at the top of the root
//! stack (`microkernel_abi::boot`). Every other thread begins at
//! `ktest_thread_start` with RSP at the top of its own stack and no other
//! register defined; the trampoline finds its entry function in the start
//! table (module `threads`).
//!
//! The suite sets up the pager, runs the cases and the benchmarks, and ends
//! by deleting the root thread, which powers the machine off. A panic in
//! the root thread ends it with an invalid-opcode fault instead, so the
//! kernel powers off reporting a failure; a panic elsewhere parks the
//! thread (its case then fails on a timeout).

use core::arch::global_asm;

use microkernel_abi::boot::{RootBootInfo, ROOT_BOOT_MAGIC};
use microkernel_abi::{TaskId, ThreadId};
use microkernel_rt::entry::fault;
use microkernel_rt::user::thread_delete;

use crate::frames::FRAME_SIZE;
use crate::pager::{pager_main, PAGER_PRIORITY};
use crate::threads::{current_thread, own_utcb, park, root_thread, set_root, FRAMES};

microkernel_rt::entry!(main: ktest_main, panic: panic);

// As `_start` does, the trampoline aligns the stack (the System V ABI
// wants RSP + 8 to be a multiple of 16 at a function's first instruction,
// which the `call` establishes), clears RBP to end frame-pointer walks,
// and never returns.
global_asm!(
    ".text",
    ".global ktest_thread_start",
    "ktest_thread_start:",
    "    and rsp, -16",
    "    xor ebp, ebp",
    "    call {thread}",
    "    ud2",
    thread = sym ktest_thread_main,
);

unsafe extern "C" {
    /// Where every thread but the root starts (defined above).
    pub fn ktest_thread_start() -> !;
}

extern "C" fn ktest_thread_main() -> ! {
    let thread = current_thread();
    match crate::threads::start_of(thread) {
        Some((entry, argument)) => entry(argument),
        None => {
            say!("ktest: note: thread {thread:?} started without an entry");
            park()
        }
    }
}

fn ktest_main(boot_info: u64) -> ! {
    // SAFETY: the kernel maps the read-only `RootBootInfo` page at the
    // address in RDI for the root task's lifetime (boot.rs), and nothing
    // writes it.
    let info = unsafe { &*(boot_info as *const RootBootInfo) };
    let thread = ThreadId::from_raw(info.thread);
    set_root(thread, TaskId::from_raw(info.task));
    if info.magic != ROOT_BOOT_MAGIC {
        say!("ktest: FAIL boot_info: magic {:#x}", info.magic);
        say!("ktest: 0 passed, 1 failed");
        exit();
    }
    let frames = usize::try_from(info.memory_size / FRAME_SIZE).unwrap_or(usize::MAX);
    let managed = FRAMES.init(info.memory_base, frames);
    say!(
        "ktest: starting: root thread {thread:?}, {} KiB free memory at {:#x} ({managed} pages managed)",
        info.memory_size / 1024,
        info.memory_base
    );
    // SAFETY: first and only call in the root thread.
    let utcb = unsafe { own_utcb() };
    if let Err(failure) = crate::threads::setup(pager_main, PAGER_PRIORITY) {
        say!("ktest: FAIL setup: {failure}");
        say!("ktest: 0 passed, 1 failed");
        exit();
    }
    let mut context = crate::cases::Context { utcb, info };
    let free_before = FRAMES.free_count();
    let (passed, failed) = crate::cases::run_all(&mut context);
    say!("ktest: {passed} passed, {failed} failed");
    crate::bench::run(&mut context);
    let free_after = FRAMES.free_count();
    if free_after != free_before {
        say!("ktest: note: {free_before} pages were free before the cases, {free_after} after");
    }
    exit()
}

/// Ends the root thread, which makes the kernel power off.
fn exit() -> ! {
    // SAFETY: the root thread ends here and nothing runs after it; the
    // other threads of ktest go with the machine.
    let result = unsafe { thread_delete(root_thread()) };
    say!("ktest: FAIL exit: deleting the root thread returned {result:?}");
    fault()
}

fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let thread = current_thread();
    say!("ktest: PANIC in thread {thread:?}: {info}");
    if thread == root_thread() {
        fault()
    }
    park()
}
