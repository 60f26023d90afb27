//! Host-testable logic of hvm, kept apart from the hardware.
//!
//! hvm's binary is a thin shell around this crate: it reads MSRs and executes
//! VMX instructions; everything that can be decided from plain values is
//! decided here and tested with `cargo test` on the host.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod acpi;
pub mod cell;
pub mod clock;
pub mod controls;
pub mod cpuid;
pub mod decode;
pub mod ept;
pub mod exit;
pub mod guest;
pub mod ioapic;
pub mod lapic;
pub mod link;
pub mod linux;
pub mod msr;
pub mod uart;
pub mod virtio;
pub mod virtqueue;
pub mod vmcs;
