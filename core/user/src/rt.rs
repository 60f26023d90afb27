//! Program start, printing and the panic policy, on the user runtime.
//!
//! `_start` (from `microkernel_rt::entry!`) runs with RSP at
//! `layout::STACK_TOP` and nothing else set up, and calls `start`: it
//! reads the `StartBlock` from the argument page, which core mapped
//! read-only before the thread ran, gives the runtime's heap its range,
//! and never returns: the program's end is an `exits` call. Start and
//! panic exist only on bare metal; on the host the program is a stub
//! ([`crate::program!`]).

use alloc::string::ToString;
use core::sync::atomic::{AtomicU64, Ordering};

use microkernel_abi::ThreadId;

static CORE_THREAD: AtomicU64 = AtomicU64::new(0);
static PID: AtomicU64 = AtomicU64::new(0);

/// Core's server thread.
pub fn core_thread() -> ThreadId {
    ThreadId::from_raw(CORE_THREAD.load(Ordering::Relaxed))
}

/// This process's pid, as core told it at start.
pub fn pid() -> u64 {
    PID.load(Ordering::Relaxed)
}

#[cfg(target_os = "none")]
microkernel_rt::entry!(main: start, panic: panic);

#[cfg(target_os = "none")]
unsafe extern "Rust" {
    /// Defined by [`crate::program!`] in the program.
    fn core_user_main(
        argv: alloc::vec::Vec<alloc::string::String>,
    ) -> Result<(), alloc::string::String>;
}

/// The program's start; RDI (`_rdi`) means nothing to a task core starts.
#[cfg(target_os = "none")]
fn start(_rdi: u64) -> ! {
    use core_abi::layout::{ARGS_ADDRESS, ARGS_SIZE, HEAP_BASE, HEAP_SIZE};
    use core_abi::{decode_strings, StartBlock, START_MAGIC};
    use microkernel_rt::heap;

    // SAFETY: core maps the argument page read-only at ARGS_ADDRESS before
    // starting the thread and never changes it; StartBlock is plain words.
    let block = unsafe { (ARGS_ADDRESS as *const StartBlock).read() };
    if block.magic != START_MAGIC {
        crate::sys::exits("bad argument page");
    }
    CORE_THREAD.store(block.core_thread, Ordering::Relaxed);
    PID.store(block.pid, Ordering::Relaxed);
    // SAFETY: the heap range is this program's alone by the layout; core's
    // pager backs it with zeroed pages on first touch.
    if !unsafe { heap::claim(HEAP_BASE, HEAP_SIZE) } {
        crate::sys::exits("no heap");
    }
    let length = (block.argv_length as usize).min(ARGS_SIZE as usize - StartBlock::ARGV_OFFSET);
    // SAFETY: inside the argument page (length clamped above).
    let encoded = unsafe {
        core::slice::from_raw_parts(
            (ARGS_ADDRESS as usize + StartBlock::ARGV_OFFSET) as *const u8,
            length,
        )
    };
    let argv = decode_strings(encoded).unwrap_or_default();
    // SAFETY: the program defines this function through `program!`.
    let result = unsafe { core_user_main(argv) };
    match result {
        Ok(()) => crate::sys::exits(""),
        Err(status) => crate::sys::exits(&status),
    }
}

/// Formats and writes to `fd` (errors are dropped: nowhere to report).
pub fn print_to(fd: u32, arguments: core::fmt::Arguments<'_>) {
    let text = match arguments.as_str() {
        Some(text) => text.to_string(),
        None => alloc::fmt::format(arguments),
    };
    let _ = crate::sys::write(fd, text.as_bytes());
}

/// A program reports a panic on fd 2 and exits with `panic`.
#[cfg(target_os = "none")]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    print_to(2, format_args!("panic: {info}\n"));
    crate::sys::exits("panic")
}
