//! A task's entry and its panic handler, declared once by [`entry!`].
//!
//! Every user task of the microkernel starts the same way: the kernel (for
//! the root task) or the task's starter (core, for the programs and task
//! servers it starts) sets RSP to the top of a stack and RIP to `_start`,
//! and nothing else but RDI is defined. For a root task RDI holds the
//! `RootBootInfo` address (`microkernel_abi::boot`); a task core starts
//! finds its arguments in memory instead and ignores it.
//!
//! `_start` aligns the stack (the System V ABI wants RSP + 8 to be a
//! multiple of 16 at a function's first instruction, which the `call`
//! establishes), clears RBP to end frame-pointer walks and calls the
//! task's main with RDI; main never returns, and `ud2` after the call
//! makes a return that should not happen a fault.
//!
//! What a panic does is the task's policy (a program reports on fd 2 and
//! exits; core and a task server fault so that their pager notices), so
//! [`entry!`] takes it as a function; [`fault`] and
//! `crate::console::print` are the pieces those policies share.

/// Declares the task's `_start` and its panic handler (bare metal only).
///
/// `main: fn(u64) -> !` is called with RDI as the task was entered;
/// `panic: fn(&core::panic::PanicInfo) -> !` is the panic handler. A crate
/// graph holds one of each, so one crate invokes this once: a library that
/// is itself a runtime (core-user, runtime-task) invokes it for its
/// programs.
#[macro_export]
macro_rules! entry {
    (main: $main:path, panic: $panic:path $(,)?) => {
        #[cfg(target_os = "none")]
        ::core::arch::global_asm!(
            ".section .text.entry, \"ax\"",
            ".global _start",
            "_start:",
            "    and rsp, -16",
            "    xor ebp, ebp",
            "    call {start}",
            "    ud2",
            start = sym microkernel_rt_start,
        );

        #[cfg(target_os = "none")]
        extern "C" fn microkernel_rt_start(rdi: u64) -> ! {
            $main(rdi)
        }

        #[cfg(target_os = "none")]
        #[panic_handler]
        fn microkernel_rt_panic(info: &::core::panic::PanicInfo<'_>) -> ! {
            $panic(info)
        }
    };
}

/// Ends the calling thread with an invalid-opcode exception: the kernel
/// sends its pager an exception message (or, for the root thread, which
/// has none, powers off reporting a failure) and never resumes it.
#[cfg(target_os = "none")]
pub fn fault() -> ! {
    // SAFETY: `ud2` raises #UD and touches no memory; the thread does not
    // run past it.
    unsafe { core::arch::asm!("ud2", options(noreturn, nomem, nostack)) }
}
