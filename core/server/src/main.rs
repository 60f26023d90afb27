//! Core, the OS personality: the root task that serves Plan 9 system calls.
//!
//! Core runs as the root task of cell 0 (`args = "root=core ..."`). It is
//! the pager of every process it starts. The process table, the
//! namespaces, the Chan table, the servants and the dispatch of the calls
//! of `core-abi` are `core-system`'s host-tested logic; this binary is the
//! shell around it that owns the UTCB, the buffers, the frames and the
//! task-server links, and implements `core_system::Kernel` over the
//! microkernel's system calls.
//!
//! Core has one thread (no Mngr/clerk pool yet): it receives page faults,
//! system calls and task servers' answers alike. A call that must wait (a
//! pipe, `wait`, `sleep`, a console line, a read or write of a slow task
//! server) is parked, unanswered, and answered later with a send to the
//! client, which is still awaiting its reply (ABI §9.1); other processes
//! run meanwhile. At boot core starts the task servers of the manifest's
//! `[[server]]` table (cell 0's `manifest` module), spawns the program
//! named after `root=core` (`/bin/rc`), and powers off when that process
//! exits.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("core is a Kasane root task: build it with `cargo build -p core-server --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod links;
#[cfg(target_os = "none")]
mod process;
#[cfg(target_os = "none")]
mod servants;
#[cfg(target_os = "none")]
mod server;
#[cfg(target_os = "none")]
mod task_server;
#[cfg(target_os = "none")]
mod vm_server;
