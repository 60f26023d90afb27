//! The microkernel's entry stub and the few instructions it needs so far.

use core::arch::{asm, global_asm};

global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    cli
    lea rsp, [rip + kernel_stack_top]
    xor rbp, rbp
    call kernel_main
2:  hlt
    jmp 2b

    .section .bss
    .balign 16
kernel_stack:
    .skip 65536
kernel_stack_top:
"#
);

/// The hypervisor's vendor string (CPUID 0x4000_0000) when CPUID.1:ECX[31]
/// says one is present.
pub fn hypervisor_vendor() -> Option<HypervisorName> {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 31) == 0 {
        return None;
    }
    let leaf = core::arch::x86_64::__cpuid(0x4000_0000);
    let mut name = [0u8; 12];
    name[..4].copy_from_slice(&leaf.ebx.to_le_bytes());
    name[4..8].copy_from_slice(&leaf.ecx.to_le_bytes());
    name[8..].copy_from_slice(&leaf.edx.to_le_bytes());
    Some(HypervisorName(name))
}

/// A 12-byte CPUID vendor string.
pub struct HypervisorName([u8; 12]);

impl HypervisorName {
    /// The name without trailing NULs ("?" if not ASCII).
    pub fn as_str(&self) -> &str {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(12);
        core::str::from_utf8(&self.0[..end]).unwrap_or("?")
    }
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The caller owns the device behind the port.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Writes a 16-bit word to an I/O port.
///
/// # Safety
/// As [`outb`].
pub unsafe fn outw(port: u16, value: u16) {
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// As [`outb`].
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Issues a hypercall (hvm_abi): RAX = number, RDI/RSI = arguments.
/// Returns (RAX status, RDX value).
///
/// # Safety
/// Only valid under hvm (VMCALL elsewhere raises #UD). Buffers named by
/// physical address must stay valid for the call.
pub unsafe fn hypercall(number: u64, arg0: u64, arg1: u64) -> (u64, u64) {
    let (status, value): (u64, u64);
    // SAFETY: forwarded to the caller; hvm preserves all other registers.
    unsafe {
        asm!("vmcall", inout("rax") number => status, in("rdi") arg0, in("rsi") arg1, out("rdx") value,
             options(nostack))
    }
    (status, value)
}

/// Halts for ever with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stopping this CPU is always allowed.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}
