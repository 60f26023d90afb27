//! ktest: the root task that tests the microkernel's primitives from user mode.
//!
//! The kernel starts ktest as the root task of a test manifest
//! (`microkernel_abi::boot`): ring 3, RDI = the `RootBootInfo` address, a
//! 64 KiB stack, the free memory mapped at `ROOT_MEMORY_BASE`. ktest is the
//! sigma0-style pager of every task it creates. It runs one case per kernel
//! primitive and prints `ktest: ok NAME` or `ktest: FAIL NAME: why` for
//! each, then `ktest: N passed, N failed`, then the `bench` lines, and ends
//! by deleting its own thread, which powers the machine off.
//! `docs/microkernel-tests.md` says what each case proves.
//!
//! Layout of the crate:
//! - `entry`: `_start`, the thread trampoline and the panic handler;
//! - `console`: line-at-a-time output and the failure text of a case;
//! - `frames`: the frame allocator over the free-memory window;
//! - `layout`: where things live in ktest and in the tasks it creates;
//! - `threads`: creating threads and tasks, and cleaning them up;
//! - `pager`: the pager thread, its fault policy and its fault log;
//! - `programs`: the code that threads of tests run;
//! - `cases`: the test cases; `bench`: the IPC benchmarks.
//!
//! On the host this builds to a stub (and `cargo test` runs the unit tests
//! of the parts that are plain logic).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
// A case's failure is a formatted line kept on the stack (there is no
// heap); moving 256 bytes on the cold failure path costs nothing that
// matters, and boxing is not available.
#![allow(clippy::result_large_err)]

#[macro_use]
mod console;
mod frames;

#[cfg(target_os = "none")]
mod bench;
#[cfg(target_os = "none")]
mod cases;
#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod layout;
#[cfg(target_os = "none")]
mod pager;
#[cfg(target_os = "none")]
mod programs;
#[cfg(target_os = "none")]
mod threads;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "ktest is the microkernel's test root task: build it with \
         `cargo build --profile image --target x86_64-unknown-none -p ktest` and boot it \
         with `run/up --manifest images/manifests/ktest.toml`"
    );
    std::process::exit(2);
}
