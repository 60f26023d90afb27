//! Core's main, memory set-up, its panic policy, and the end of the system.
//!
//! The kernel enters `_start` (from `microkernel_rt::entry!`) with RDI =
//! the `RootBootInfo` page, and `_start` calls [`core_main`]. Core
//! takes the first [`HEAP_BYTES`] of the free-memory window as its heap
//! and the rest as frames for processes; program code goes to the
//! executable arena of core's own image (see `linker.ld`).

use alloc::string::String;
use alloc::vec::Vec;

use microkernel_abi::boot::{RootBootInfo, ROOT_BOOT_MAGIC};
use microkernel_abi::ThreadId;
use microkernel_rt::boot::module_bytes;
use microkernel_rt::console::print;
use microkernel_rt::entry::fault;
use microkernel_rt::frames::{FrameBitmap, FRAME_SIZE};
use microkernel_rt::heap;
use microkernel_rt::user::thread_delete;

use crate::server::Core;

/// Bytes of the window core keeps for its own heap.
pub const HEAP_BYTES: u64 = 12 << 20;

/// Bytes of the window lent to each task server (their own frame pools,
/// so core's mount driver can page them in the middle of a call): a
/// second task server (the FAT server's task build in bare mode, say)
/// must not halve ramfs's room below the 2 MiB of files it allows itself.
pub const TASK_SERVER_BYTES: u64 = 4 << 20;

unsafe extern "C" {
    static __arena_start: u8;
    static __arena_end: u8;
}

microkernel_rt::entry!(main: core_main, panic: panic);

static ROOT_THREAD: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn core_main(boot_info: u64) -> ! {
    // SAFETY: the kernel maps the read-only boot page at RDI for the root
    // task's lifetime (microkernel_abi::boot).
    let info = unsafe { &*(boot_info as *const RootBootInfo) };
    ROOT_THREAD.store(info.thread, core::sync::atomic::Ordering::Relaxed);
    if info.magic != ROOT_BOOT_MAGIC || info.memory_size < 2 * HEAP_BYTES + TASK_SERVER_BYTES {
        print(format_args!("core: bad boot page or too little memory\n"));
        power_off();
    }
    // SAFETY: the window is mapped read/write for core alone and nothing
    // else uses its first HEAP_BYTES.
    if !unsafe { heap::claim(info.memory_base, HEAP_BYTES) } {
        print(format_args!("core: the heap could not be set up\n"));
        power_off();
    }
    crate::links::init(info);
    if info
        .args()
        .split_whitespace()
        .any(|word| word == "linktest=bridge")
    {
        // The Linux link test: core drives the link and nothing else.
        crate::links::bridge_test(ThreadId::from_raw(info.thread));
        power_off();
    }
    let modules: Vec<(String, &'static [u8])> = info
        .modules()
        .iter()
        // SAFETY: in the root task the modules are mapped read-only at
        // their addresses for good (boot.rs).
        .map(|m| (String::from(m.name()), unsafe { module_bytes(m) }))
        .collect();
    let pool_bytes = TASK_SERVER_BYTES * crate::server::task_server_count(&modules).max(1) as u64;
    if info.memory_size < 2 * HEAP_BYTES + pool_bytes {
        print(format_args!(
            "core: too little memory: {} KiB for {} KiB of heap and task servers\n",
            info.memory_size / 1024,
            (2 * HEAP_BYTES + pool_bytes) / 1024
        ));
        power_off();
    }
    let mut frames = alloc::boxed::Box::new(FrameBitmap::new());
    let window = info.memory_size - HEAP_BYTES - pool_bytes;
    let managed = frames.init(
        info.memory_base + HEAP_BYTES,
        (window / FRAME_SIZE) as usize,
    );
    let task_servers = crate::server::TaskServerPool {
        base: info.memory_base + HEAP_BYTES + window,
        frames: (pool_bytes / FRAME_SIZE) as usize,
    };
    // Only the addresses of the linker symbols are taken.
    let (arena_start, arena_end) = (
        core::ptr::addr_of!(__arena_start) as u64,
        core::ptr::addr_of!(__arena_end) as u64,
    );
    let mut arena = alloc::boxed::Box::new(FrameBitmap::new());
    arena.init(
        arena_start,
        ((arena_end - arena_start) / FRAME_SIZE) as usize,
    );
    print(format_args!(
        "core: starting: {} modules, {} KiB for processes, {} KiB code arena\n",
        modules.len(),
        managed as u64 * FRAME_SIZE / 1024,
        (arena_end - arena_start) / 1024
    ));
    let args = String::from(info.args());
    let mut core = Core::new(
        ThreadId::from_raw(info.thread),
        frames,
        task_servers,
        arena,
        modules,
    );
    core.run(&args);
    power_off()
}

/// Ends the root thread, which powers the machine off.
pub fn power_off() -> ! {
    let me = ThreadId::from_raw(ROOT_THREAD.load(core::sync::atomic::Ordering::Relaxed));
    // SAFETY: the root thread ends here; nothing runs after it.
    let _ = unsafe { thread_delete(me) };
    // A fault ends the root thread too, which the kernel reports.
    fault()
}

/// A fault of the root thread makes the kernel power off reporting a
/// failure, which is what a panic in core is.
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    print(format_args!("core: PANIC: {info}\n"));
    fault()
}
