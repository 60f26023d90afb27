//! The root task's view of its boot modules.
//!
//! `microkernel_abi::boot::RootModule` says where the kernel mapped a
//! module; reading it as a slice is sound only in the root task, whose
//! address space holds it there, so it is an `unsafe fn` here rather than
//! a method of the ABI crate (which has no unsafe code).

use microkernel_abi::boot::RootModule;

/// The module's bytes.
///
/// # Safety
///
/// Only in the root task, whose address space holds the module at
/// `module.address` (read only, for the task's whole life).
pub unsafe fn module_bytes(module: &RootModule) -> &'static [u8] {
    // SAFETY: the kernel mapped `length` bytes at `address` read-only for
    // the root task's lifetime (microkernel_abi::boot), and the caller is
    // the root task.
    unsafe { core::slice::from_raw_parts(module.address as *const u8, module.length as usize) }
}
