//! The runtime's only machine-specific code: entry, IDT, ports, MSRs.
//!
//! hvm enters `_start` in 64-bit mode with interrupts off, RDI = the boot
//! information's physical address and hvm's GDT loaded (code 0x08, data
//! 0x10). The IDT has 64-bit interrupt gates (SDM Vol. 3 6.14.1) for the
//! 32 exceptions, which report a fault and never return, and for the
//! runtime's three vectors, which note the vector, signal end of interrupt
//! and return.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The heartbeat timer's vector (the x2APIC LVT timer entry).
pub const TIMER_VECTOR: u8 = 0x40;

/// Vectors that arrived and are not handled yet, one bit each:
/// bit 0 timer, bit 1 link, bit 2 command.
pub static PENDING: AtomicU32 = AtomicU32::new(0);
pub const PENDING_TIMER: u32 = 1;
pub const PENDING_LINK: u32 = 2;
pub const PENDING_COMMAND: u32 = 4;

/// Interrupts taken, by vector: timer, 0x50, 0x51.
pub static TAKEN: [AtomicU32; 3] = [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)];

/// This is a server VM, whose emulated x2APIC wants an EOI. Cell 0 (the
/// probe) gets its link vectors injected by hvm, past the physical APIC,
/// and must not write the x2APIC EOI register, which its APIC (in xAPIC
/// mode) does not have.
pub static NEEDS_EOI: AtomicBool = AtomicBool::new(false);

global_asm!(
    r#"
    .section .text.entry, "ax"
    .global _start
_start:
    cli
    lea rsp, [rip + runtime_stack_top]
    xor rbp, rbp
    call runtime_vm_start
2:  hlt
    jmp 2b

    .text
    .macro exception n
    .global runtime_exception_\n
runtime_exception_\n:
    mov edi, \n
    mov rsi, rsp
    and rsp, -16
    call runtime_vm_exception
    .endm
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    exception \n
    .endr

    .macro vector n
    .global runtime_vector_\n
runtime_vector_\n:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    mov edi, \n
    call runtime_vm_interrupt
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq
    .endm
    vector 64
    vector 80
    vector 81

    .section .bss
    .balign 16
runtime_stack_bottom:
    .skip 65536
runtime_stack_top:
"#
);

extern "C" {
    fn runtime_vector_64();
    fn runtime_vector_80();
    fn runtime_vector_81();
}

global_asm!(
    r#"
    .section .rodata
    .balign 8
    .global runtime_exception_table
runtime_exception_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad runtime_exception_\n
    .endr
"#
);

extern "C" {
    static runtime_exception_table: [u64; 32];
}

#[repr(C, align(16))]
struct Idt([u64; 512]);
static mut IDT: Idt = Idt([0; 512]);

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

/// A 64-bit interrupt gate (SDM Vol. 3 Figure 6-8): selector 0x08, DPL 0,
/// present, type 0xE.
fn gate(handler: u64) -> [u64; 2] {
    let low = (handler & 0xFFFF) | (0x08 << 16) | (0x8E << 40) | (((handler >> 16) & 0xFFFF) << 48);
    [low, handler >> 32]
}

/// Fills and loads the IDT.
///
/// # Safety
/// Once, at boot, with interrupts off.
pub unsafe fn init_idt() {
    let idt = &raw mut IDT;
    // SAFETY: boot is single-threaded and the IDT is written only here;
    // the table of stubs is static data.
    unsafe {
        for (vector, &stub) in runtime_exception_table.iter().enumerate() {
            let [low, high] = gate(stub);
            (*idt).0[2 * vector] = low;
            (*idt).0[2 * vector + 1] = high;
        }
        for (vector, handler) in [
            (TIMER_VECTOR, runtime_vector_64 as *const () as usize),
            (
                hvm_abi::LINK_VECTOR,
                runtime_vector_80 as *const () as usize,
            ),
            (
                hvm_abi::COMMAND_VECTOR,
                runtime_vector_81 as *const () as usize,
            ),
        ] {
            let [low, high] = gate(handler as u64);
            (*idt).0[2 * usize::from(vector)] = low;
            (*idt).0[2 * usize::from(vector) + 1] = high;
        }
        let pointer = DescriptorPointer {
            limit: (512 * 8 - 1) as u16,
            base: idt as u64,
        };
        asm!("lidt [{}]", in(reg) &pointer, options(nostack));
    }
}

/// Makes the next exception fatal to the VM: with an empty IDT an
/// exception cannot be delivered, which becomes #GP, then #DF, then a
/// triple fault (SDM Vol. 3 6.15, "Interrupt 8").
pub fn triple_fault() -> ! {
    let empty = DescriptorPointer { limit: 0, base: 0 };
    // SAFETY: deliberately fatal: the VM ends here (hvm sees the triple
    // fault and restarts it from its pristine image).
    unsafe { asm!("lidt [{}]", "ud2", in(reg) &empty, options(noreturn, nostack)) }
}

#[no_mangle]
extern "C" fn runtime_vm_interrupt(vector: u64) {
    let (bit, slot) = match vector as u8 {
        TIMER_VECTOR => (PENDING_TIMER, 0),
        hvm_abi::LINK_VECTOR => (PENDING_LINK, 1),
        _ => (PENDING_COMMAND, 2),
    };
    PENDING.fetch_or(bit, Ordering::SeqCst);
    TAKEN[slot].fetch_add(1, Ordering::Relaxed);
    if NEEDS_EOI.load(Ordering::Relaxed) {
        // x2APIC EOI register (SDM Vol. 3 11.12.1.2): any write of 0.
        // SAFETY: a server VM has the emulated x2APIC (enabled at start).
        unsafe { wrmsr(0x80B, 0) };
    }
}

#[no_mangle]
extern "C" fn runtime_vm_exception(vector: u64, frame: *const u64) -> ! {
    // The frame holds RIP first, or the error code then RIP.
    let has_error = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30);
    // SAFETY: the stub passed the stack pointer at entry, where the CPU
    // pushed at least RIP, CS and RFLAGS (and the error code before them).
    let rip = unsafe { frame.add(usize::from(has_error)).read() };
    crate::runtime::exception(vector, rip)
}

/// `in` of a double word.
pub fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: port I/O on ports hvm emulates for this cell (PCI
    // configuration); it has no memory effects.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack)) };
    value
}

/// `out` of a double word.
pub fn outl(port: u16, value: u32) {
    // SAFETY: as `inl`.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack)) }
}

/// `in` of a byte.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: every port of a server VM is hvm's to answer: emulated, or
    // forwarded to a device the manifest gave this cell; no memory effects.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack)) };
    value
}

/// `out` of a byte.
pub fn outb(port: u16, value: u8) {
    // SAFETY: as `inb`.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack)) }
}

/// `in` of a word.
pub fn inw(port: u16) -> u16 {
    let value: u16;
    // SAFETY: as `inb`.
    unsafe { asm!("in ax, dx", in("dx") port, out("ax") value, options(nomem, nostack)) };
    value
}

/// `out` of a word.
pub fn outw(port: u16, value: u16) {
    // SAFETY: as `inb`.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack)) }
}

/// Writes an MSR.
///
/// # Safety
/// The MSR and value must be ones the platform accepts.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack))
    }
}

pub fn rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: RDTSC has no side effects.
    unsafe { asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack)) };
    (u64::from(high) << 32) | u64::from(low)
}

pub fn cpuid(leaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// VMCALL: RAX number, RDI and RSI arguments; returns (RAX, RDX).
///
/// # Safety
/// Addresses passed must be the caller's own memory, as the call expects.
pub unsafe fn vmcall(number: u64, arg0: u64, arg1: u64) -> (u64, u64) {
    let (status, value): (u64, u64);
    // SAFETY: forwarded to the caller; hvm preserves the other registers.
    unsafe {
        asm!("vmcall", inout("rax") number => status, in("rdi") arg0, in("rsi") arg1,
             out("rdx") value, options(nostack))
    }
    (status, value)
}

/// Waits for an interrupt unless one is already pending: `sti; hlt` keeps
/// an interrupt from slipping in between the check and the halt (the STI
/// shadow covers the HLT, SDM Vol. 2 "STI").
pub fn idle(busy: impl Fn() -> bool) {
    // SAFETY: masking interrupts around the check; they are enabled again
    // by `sti` in both branches.
    unsafe { asm!("cli", options(nomem, nostack)) };
    if PENDING.load(Ordering::SeqCst) != 0 || busy() {
        // SAFETY: enabling interrupts again.
        unsafe { asm!("sti", options(nomem, nostack)) };
    } else {
        // SAFETY: halts until an interrupt, which the IDT handles.
        unsafe { asm!("sti", "hlt", options(nomem, nostack)) };
    }
}

/// Interrupts off and a loop for ever (the `hang` verb).
pub fn hang() -> ! {
    // SAFETY: deliberately wedges the VM; only hvm's watchdog ends it.
    unsafe { asm!("cli", "2:", "jmp 2b", options(noreturn, nomem, nostack)) }
}

/// Stops for good (a failure was already reported).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stopping the vCPU; hvm fails a cell halted with IF=0.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}
