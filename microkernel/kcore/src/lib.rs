//! Host-testable logic of the Kasane microkernel, apart from any hardware.
//!
//! The bare-metal kernel (`microkernel/src`) is a thin shell around this
//! crate: it owns the CPU state, page tables and memory copies, and asks
//! these modules what to do.
//!
//! - [`clock`]: timer calibration arithmetic (TSC, APIC timer, tick).
//! - [`device`]: who may map a device window or call hvm, and what.
//! - [`table`]: objects named by versioned ids (threads, tasks).
//! - [`scheduler`]: 256 fixed priorities, round robin, timeslices.
//! - [`ipc`]: the rendezvous state machine of `ipc`.
//! - [`timeout`]: deadlines for blocked IPC.
//! - [`mapping`]: the mapping database behind map, grant and unmap.
//! - [`fpage`]: flexpage arithmetic.
//! - [`transfer`]: checking and planning a message's typed items.
//! - [`syscall`]: decoding system-call registers into typed requests.
//! - [`user_address`]: untrusted user addresses, checked once.
//!
//! Invariants:
//! - No unsafe code, no hardware access, no global state: every structure
//!   is a value the kernel owns and tests can build.
//! - Public functions do not panic on any input from user space; the few
//!   internal `panic!`s guard the modules' own data-structure invariants.
//! - Nothing recurses over user-controlled depth (trees, queues, cascades).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod clock;
pub mod device;
pub mod fpage;
pub mod ipc;
pub mod mapping;
pub mod scheduler;
pub mod syscall;
pub mod table;
pub mod timeout;
pub mod transfer;
pub mod user_address;
