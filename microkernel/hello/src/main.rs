//! The smallest root task: greets, checks a few kernel facts, and ends.
//!
//! It shows the whole life of a root task in one screen: the kernel starts
//! `_start` (from `microkernel_rt::entry!`) with RDI pointing at the
//! `RootBootInfo` page; the task talks to the kernel only through system
//! calls; deleting its own thread ends the system cleanly. `images/manifests/hello.toml` boots it.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("hello is a Kasane root task: build it with `cargo build -p hello --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod task {
    use microkernel_abi::boot::{RootBootInfo, ROOT_BOOT_MAGIC};
    use microkernel_abi::{FromSpecifier, KernelInfoSelector, ThreadId, Timeout};
    use microkernel_rt::console::print;
    use microkernel_rt::user;

    microkernel_rt::entry!(main: hello_main, panic: panic);

    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        print(format_args!("hello: panic: {info}\n"));
        loop {
            user::yield_now();
        }
    }

    fn hello_main(info: u64) -> ! {
        // SAFETY: the kernel maps the boot page read-only at this address
        // for the root task's whole life (microkernel_abi::boot).
        let info = unsafe { &*(info as *const RootBootInfo) };
        if info.magic != ROOT_BOOT_MAGIC {
            print(format_args!("hello: bad boot page\n"));
        }
        let me = user::kernel_info(KernelInfoSelector::CurrentThread).unwrap_or(0);
        print(format_args!(
            "hello: root task running as thread {:#x}, {} KiB free, {} modules, abi {}\n",
            me,
            info.memory_size / 1024,
            info.module_count,
            user::kernel_info(KernelInfoSelector::ApiVersion).unwrap_or(0)
        ));
        // Memory from the free window is usable at once.
        // SAFETY: the window is mapped read/write for the root task.
        let word = unsafe { &mut *(info.memory_base as *mut u64) };
        *word = 0x4b41_5341_4e45;
        let before = user::kernel_info(KernelInfoSelector::ClockMicroseconds).unwrap_or(0);
        // SAFETY: the UTCB is this thread's own.
        let utcb = unsafe { &mut *user::current_utcb() };
        // Nothing sends the (unassociated) timer interrupt: this times out.
        let quiet = FromSpecifier::Thread(ThreadId::interrupt(0));
        let waited = user::receive(
            utcb,
            quiet,
            Timeout::Relative {
                microseconds: 20_000,
            },
        );
        let after = user::kernel_info(KernelInfoSelector::ClockMicroseconds).unwrap_or(0);
        print(format_args!(
            "hello: a 20 ms receive ended with {:?} after {} us\n",
            waited.err(),
            after - before
        ));
        print(format_args!("hello: goodbye\n"));
        // SAFETY: deleting the root thread ends the system; nothing runs after.
        let _ = unsafe { user::thread_delete(ThreadId::from_raw(me)) };
        loop {
            user::yield_now();
        }
    }
}
