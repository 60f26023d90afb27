//! The user library of Kasane programs: Plan 9 file calls as IPC to core.
//!
//! A program built with this crate for `x86_64-unknown-none` gets:
//! - [`program!`]: the program is its `main` (`fn(Vec<String>) ->
//!   Result<(), String>`, an `Err` being the exit string); the user
//!   runtime's `_start` (`microkernel_rt::entry!`) reads the argument page
//!   core mapped at `core_abi::layout::ARGS_ADDRESS`, gives the heap its
//!   range (zero pages that core's pager supplies on first touch) and
//!   calls it;
//! - [`sys`]: `open`, `read`, `write`, ..., each one `call` to core, errors
//!   as Plan 9 strings;
//! - `print!`/`println!` to fd 1 and `eprint!`/`eprintln!` to fd 2, and a
//!   panic policy that reports on fd 2 and exits with `panic`;
//! - [`prelude`]: the `alloc` names every program uses;
//! - [`args`]: flags as Plan 9's `ARGBEGIN` reads them, and [`usage`];
//! - [`copy`]: what cp and mv share;
//! - [`net`]: dial(2)'s `dial`, `announce`, `listen`, `accept` over `/net`;
//! - [`http`]: what `hget` needs of HTTP/1.0;
//! - [`linux`]: `linux(nr, args…)`, a Linux system call delegated to the
//!   Linux cell.
//!
//! On the host the library builds too, so that the programs' code is
//! checked there, but every call fails and a program is a stub that says
//! where it runs.
#![cfg_attr(not(test), no_std)]

#[doc(hidden)]
pub extern crate alloc;

pub mod args;
pub mod copy;
pub mod http;
pub mod linux;
pub mod net;
pub mod rt;
pub mod sys;

pub use core_abi::{FileInfo, SpawnRequest};

/// Says `usage: LINE` on fd 2 and returns the exit string `usage`, as a
/// Plan 9 program's `usage()` does: `return Err(usage("wc [-lwrbc]
/// [file ...]"))`.
pub fn usage(line: &str) -> alloc::string::String {
    rt::print_to(2, format_args!("usage: {line}\n"));
    alloc::string::String::from("usage")
}

/// Says `message` on fd 2 and returns it as the exit string, as a Plan 9
/// program's `sysfatal` does: `.map_err(|e| fail(format!("dial: {e}")))?`.
pub fn fail(message: alloc::string::String) -> alloc::string::String {
    rt::print_to(2, format_args!("{message}\n"));
    message
}

/// What every program imports: the `alloc` types and macros (a program is
/// `no_std`). The print macros are imported by name, so that on the host
/// they do not clash with std's.
pub mod prelude {
    pub use alloc::boxed::Box;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec::Vec;
    pub use alloc::{format, vec};
}

/// Makes `main` (`fn(Vec<String>) -> Result<(), String>`) the program.
///
/// A program's file holds its code and `#![no_main]` (with
/// `#![cfg_attr(target_os = "none", no_std)]`); this macro adds the rest.
/// On bare metal `_start` calls `main` with argv and exits with its
/// result; on the host (where there is no core) the binary only says how
/// to build it and exits with status 2.
#[macro_export]
macro_rules! program {
    ($main:path) => {
        #[cfg(target_os = "none")]
        #[no_mangle]
        fn core_user_main(
            argv: $crate::alloc::vec::Vec<$crate::alloc::string::String>,
        ) -> Result<(), $crate::alloc::string::String> {
            $main(argv)
        }

        #[cfg(not(target_os = "none"))]
        #[export_name = "main"]
        extern "C" fn core_user_host_main(_argc: i32, _argv: *const *const u8) -> i32 {
            let _: fn(
                $crate::alloc::vec::Vec<$crate::alloc::string::String>,
            ) -> Result<(), $crate::alloc::string::String> = $main;
            ::std::eprintln!(
                "{} is a Kasane program: build it with --target x86_64-unknown-none",
                env!("CARGO_BIN_NAME")
            );
            2
        }
    };
}

/// Prints to fd 1.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::rt::print_to(1, format_args!($($arg)*)) };
}

/// Prints a line to fd 1.
#[macro_export]
macro_rules! println {
    () => { $crate::rt::print_to(1, format_args!("\n")) };
    ($($arg:tt)*) => { $crate::rt::print_to(1, format_args!("{}\n", format_args!($($arg)*))) };
}

/// Prints to fd 2.
#[macro_export]
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::rt::print_to(2, format_args!($($arg)*)) };
}

/// Prints a line to fd 2.
#[macro_export]
macro_rules! eprintln {
    ($($arg:tt)*) => { $crate::rt::print_to(2, format_args!("{}\n", format_args!($($arg)*))) };
}
