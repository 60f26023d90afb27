//! The user library of Kasane programs: Plan 9 file calls as IPC to core.
//!
//! A program built with this crate for `x86_64-unknown-none` gets:
//! - [`entry!`]: `_start`, which reads the argument page core mapped at
//!   `core_abi::layout::ARGS_ADDRESS`, sets up the heap (zero pages that
//!   core's pager supplies on first touch) and calls the program's
//!   `fn(Vec<String>) -> Result<(), String>`; an `Err` is the exit string;
//! - [`sys`]: `open`, `read`, `write`, ..., each one `call` to core, errors
//!   as Plan 9 strings;
//! - `print!`/`println!` to fd 1 and `eprint!`/`eprintln!` to fd 2, and a
//!   panic handler that reports on fd 2 and exits with `panic`.
//!
//! On the host the crate is empty, so the programs compile to stubs.
#![no_std]

#[doc(hidden)]
pub extern crate alloc;

#[cfg(target_os = "none")]
pub mod rt;
#[cfg(target_os = "none")]
pub mod sys;

pub use core_abi::{FileInfo, SpawnRequest};

/// Declares the program's main function (`fn(Vec<String>) -> Result<(),
/// String>`). On bare metal it becomes the target of `_start`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[cfg(target_os = "none")]
        #[no_mangle]
        fn core_user_main(
            argv: $crate::alloc::vec::Vec<$crate::alloc::string::String>,
        ) -> Result<(), $crate::alloc::string::String> {
            $main(argv)
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

/// Prints a line to fd 2.
#[macro_export]
macro_rules! eprintln {
    ($($arg:tt)*) => { $crate::rt::print_to(2, format_args!("{}\n", format_args!($($arg)*))) };
}
