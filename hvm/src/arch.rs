//! Everything in hvm that names a register: boot stub, port I/O, MSRs, VMX.
//!
//! GRUB enters `_start` in 32-bit protected mode with paging off (Multiboot2
//! spec 3.3, "I386 machine state"). The stub identity-maps the low 4 GiB with
//! 2 MiB pages, enables long mode (SDM Vol. 3 10.8.5) and calls `hvm_main`.
//! The other functions are thin `unsafe` wrappers: each caller argues why its
//! use is sound; nothing here pretends a privileged instruction is safe.

use core::arch::{asm, global_asm};

global_asm!(
    r#"
    .section .multiboot2, "a"
    .balign 8
mb2_header:
    .long 0xE85250D6
    .long 0
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (0xE85250D6 + (mb2_header_end - mb2_header))
    .balign 8
    .short 0
    .short 0
    .long 8
mb2_header_end:

    .section .text.boot, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    movl %eax, boot_magic
    movl %ebx, boot_info
    movl $boot_stack_top, %esp

    /* PML4[0] -> PDPT; PDPT[0..4] -> four page directories. */
    movl $boot_pdpt, %eax
    orl $3, %eax
    movl %eax, boot_pml4
    movl $boot_pd, %eax
    orl $3, %eax
    xorl %ecx, %ecx
1:  movl %eax, boot_pdpt(,%ecx,8)
    addl $4096, %eax
    incl %ecx
    cmpl $4, %ecx
    jne 1b
    /* 2048 x 2 MiB pages: present, writable, large. */
    movl $0x83, %eax
    xorl %ecx, %ecx
2:  movl %eax, boot_pd(,%ecx,8)
    addl $0x200000, %eax
    incl %ecx
    cmpl $2048, %ecx
    jne 2b

    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $(1 << 5), %eax          /* PAE */
    movl %eax, %cr4
    movl $0xC0000080, %ecx       /* IA32_EFER */
    rdmsr
    orl $(1 << 8), %eax          /* LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80010021, %eax        /* PG, WP, NE, PE */
    movl %eax, %cr0
    lgdt boot_gdt_pointer
    ljmp $0x08, $long_mode_entry

    .code64
long_mode_entry:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $boot_stack_top, %rsp
    xorq %rbp, %rbp
    movl boot_magic, %edi
    movl boot_info, %esi
    call hvm_main
3:  cli
    hlt
    jmp 3b

    .section .rodata
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF     /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF     /* 0x10: data */
boot_gdt_pointer:
    .short boot_gdt_pointer - boot_gdt - 1
    .quad boot_gdt

    .section .bss
    .balign 4096
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd: .skip 4096 * 4
boot_stack: .skip 65536
boot_stack_top:
boot_magic: .skip 4
boot_info: .skip 4
"#,
    options(att_syntax)
);

/// General-purpose registers of a guest, saved on exit and loaded on entry.
/// RSP and RIP live in the VMCS. The layout is fixed: `vmx_run` indexes it.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct GuestRegisters {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

impl GuestRegisters {
    /// Register by the SDM's GPR number (0 = RAX … 15 = R15); RSP (4) is in
    /// the VMCS and is reported as `None`.
    pub fn by_number(&mut self, number: u8) -> Option<&mut u64> {
        Some(match number {
            0 => &mut self.rax,
            1 => &mut self.rcx,
            2 => &mut self.rdx,
            3 => &mut self.rbx,
            5 => &mut self.rbp,
            6 => &mut self.rsi,
            7 => &mut self.rdi,
            8 => &mut self.r8,
            9 => &mut self.r9,
            10 => &mut self.r10,
            11 => &mut self.r11,
            12 => &mut self.r12,
            13 => &mut self.r13,
            14 => &mut self.r14,
            15 => &mut self.r15,
            _ => return None,
        })
    }
}

// vmx_run(regs: *mut GuestRegisters, launched: u64) -> u64
// Returns 0 after a VM exit (guest registers saved in *regs), 1 if
// VMLAUNCH/VMRESUME failed with VMfailInvalid, 2 with VMfailValid
// (SDM Vol. 3 31.2 "Conventions" for the CF/ZF encoding).
// HOST_RSP is set so that [rsp] holds `regs` at the exit landing; HOST_RIP
// is the landing (SDM 28.5 "Loading host state").
global_asm!(
    r#"
    .section .text
    .global vmx_run
vmx_run:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdi
    mov rax, 0x6C14
    vmwrite rax, rsp
    mov rax, 0x6C16
    lea rbx, [rip + vmx_exit_landing]
    vmwrite rax, rbx
    cmp rsi, 0
    mov rax, [rdi + 0]
    mov rbx, [rdi + 8]
    mov rcx, [rdi + 16]
    mov rdx, [rdi + 24]
    mov rsi, [rdi + 32]
    mov rbp, [rdi + 48]
    mov r8,  [rdi + 56]
    mov r9,  [rdi + 64]
    mov r10, [rdi + 72]
    mov r11, [rdi + 80]
    mov r12, [rdi + 88]
    mov r13, [rdi + 96]
    mov r14, [rdi + 104]
    mov r15, [rdi + 112]
    mov rdi, [rdi + 40]
    je 2f
    vmresume
    jmp 3f
2:  vmlaunch
3:  mov eax, 1
    jc 4f
    mov eax, 2
4:  add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

vmx_exit_landing:
    push rdi
    mov rdi, [rsp + 8]
    mov [rdi + 0], rax
    mov [rdi + 8], rbx
    mov [rdi + 16], rcx
    mov [rdi + 24], rdx
    mov [rdi + 32], rsi
    mov [rdi + 48], rbp
    mov [rdi + 56], r8
    mov [rdi + 64], r9
    mov [rdi + 72], r10
    mov [rdi + 80], r11
    mov [rdi + 88], r12
    mov [rdi + 96], r13
    mov [rdi + 104], r14
    mov [rdi + 112], r15
    pop rax
    mov [rdi + 40], rax
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    xor eax, eax
    ret

    // enter_bare(entry, boot_info, stack, cr3, gdt_pointer) -> !
    // Switches to the kernel's page tables and GDT and jumps to its entry in
    // ring 0 with RDI = boot_info. The caller maps this code identically in
    // the new tables.
    .global enter_bare
enter_bare:
    mov cr3, rcx
    lgdt [r8]
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, rdx
    push 0x08
    push rdi
    mov rdi, rsi
    xor rbp, rbp
    retfq
"#
);

extern "C" {
    fn vmx_run(regs: *mut GuestRegisters, launched: u64) -> u64;
    fn enter_bare(entry: u64, boot_info: u64, stack: u64, cr3: u64, gdt_pointer: u64) -> !;
    static __image_start: u8;
    static __image_end: u8;
}

/// Physical range of hvm's own image (identity mapped).
pub fn image_range() -> (u64, u64) {
    // Only the addresses of the linker-script symbols are taken.
    (
        &raw const __image_start as u64,
        &raw const __image_end as u64,
    )
}

/// Enters the guest whose VMCS is current. Returns 0 on a VM exit, 1 or 2 on
/// VMfailInvalid/VMfailValid.
///
/// # Safety
/// A VMCS must be current and fully initialised with host state describing
/// this CPU; `launched` must be 0 only for the first entry after VMCLEAR.
pub unsafe fn run_guest(regs: &mut GuestRegisters, launched: bool) -> u64 {
    // SAFETY: the caller upholds the VMCS contract; `regs` is a valid
    // exclusive reference for the duration of the call.
    unsafe { vmx_run(regs, u64::from(launched)) }
}

/// Jumps into a kernel in ring 0 (bare mode).
///
/// # Safety
/// `cr3` must map this code identically, the kernel entry, the stack and the
/// GDT pointed to by `gdt_pointer` (whose 0x08/0x10 are 64-bit code/data).
pub unsafe fn jump_to_kernel(
    entry: u64,
    boot_info: u64,
    stack: u64,
    cr3: u64,
    gdt_pointer: u64,
) -> ! {
    // SAFETY: forwarded contract.
    unsafe { enter_bare(entry, boot_info, stack, cr3, gdt_pointer) }
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The port write must not break an invariant of hvm (e.g. reprogramming a
/// device another part of hvm drives).
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

/// Writes a double word to an I/O port.
///
/// # Safety
/// As [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a double word from an I/O port.
///
/// # Safety
/// As [`inb`].
pub unsafe fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Reading must have no side effect hvm relies on not happening.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Reads a model-specific register.
///
/// # Safety
/// The MSR must exist on this CPU (or the caller accepts a #GP, which halts).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags))
    }
    (u64::from(high) << 32) | u64::from(low)
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist and the value must keep hvm's invariants.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// Executes CPUID for a guest (leaf, subleaf) -> (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: RDTSC has no side effects (CR4.TSD is clear in hvm).
    unsafe {
        asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags))
    }
    (u64::from(high) << 32) | u64::from(low)
}

/// Sets XCR0 (SDM Vol. 2 XSETBV).
///
/// # Safety
/// CR4.OSXSAVE must be set and `value` a valid XCR0 for this CPU (bit 0
/// set, AVX only with SSE, only bits CPUID.(EAX=0DH,ECX=0) reports), or the
/// instruction raises #GP in hvm.
pub unsafe fn xsetbv(value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("xsetbv", in("ecx") 0u32, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nomem, nostack, preserves_flags))
    }
}

/// Reads CR0.
pub fn read_cr0() -> u64 {
    let value: u64;
    // SAFETY: reading CR0 in ring 0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

/// Reads CR3.
pub fn read_cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 in ring 0 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

/// Reads CR4.
pub fn read_cr4() -> u64 {
    let value: u64;
    // SAFETY: reading CR4 in ring 0 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

/// Writes CR0.
///
/// # Safety
/// The value must keep paging and protection as hvm needs them.
pub unsafe fn write_cr0(value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { asm!("mov cr0, {}", in(reg) value, options(nostack, preserves_flags)) }
}

/// Writes CR4.
///
/// # Safety
/// The value must keep paging and protection as hvm needs them.
pub unsafe fn write_cr4(value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { asm!("mov cr4, {}", in(reg) value, options(nostack, preserves_flags)) }
}

/// VMXON (SDM Vol. 3 31.3). Returns false on VMfail.
///
/// # Safety
/// CR4.VMXE set, CR0/CR4 fixed bits satisfied, `region` a 4 KiB-aligned
/// physical page holding the VMCS revision id, owned by hvm for ever.
pub unsafe fn vmxon(region: u64) -> bool {
    let ok: u8;
    // SAFETY: forwarded to the caller; the operand is a memory location
    // holding the physical address.
    unsafe { asm!("vmxon [{}]", "setna {}", in(reg) &region, out(reg_byte) ok, options(nostack)) }
    ok == 0
}

/// VMCLEAR (SDM 31.3). Returns false on VMfail.
///
/// # Safety
/// VMX operation; `vmcs` a 4 KiB-aligned page with the revision id.
pub unsafe fn vmclear(vmcs: u64) -> bool {
    let failed: u8;
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("vmclear [{}]", "setna {}", in(reg) &vmcs, out(reg_byte) failed, options(nostack))
    }
    failed == 0
}

/// VMPTRLD (SDM 31.3). Returns false on VMfail.
///
/// # Safety
/// As [`vmclear`].
pub unsafe fn vmptrld(vmcs: u64) -> bool {
    let failed: u8;
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("vmptrld [{}]", "setna {}", in(reg) &vmcs, out(reg_byte) failed, options(nostack))
    }
    failed == 0
}

/// VMWRITE to the current VMCS. Returns false on VMfail.
///
/// # Safety
/// A VMCS must be current; writing host-state or control fields changes what
/// the next entry and exit do, so the caller owns their consistency.
pub unsafe fn vmwrite(field: u32, value: u64) -> bool {
    let failed: u8;
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("vmwrite {}, {}", "setna {}", in(reg) u64::from(field), in(reg) value, out(reg_byte) failed,
             options(nostack))
    }
    failed == 0
}

/// VMREAD from the current VMCS (0 on VMfail).
///
/// # Safety
/// A VMCS must be current.
pub unsafe fn vmread(field: u32) -> u64 {
    let value: u64;
    // SAFETY: forwarded to the caller.
    unsafe { asm!("vmread {}, {}", out(reg) value, in(reg) u64::from(field), options(nostack)) }
    value
}

/// INVEPT single-context (type 1) for `eptp` (SDM 31.3).
///
/// # Safety
/// VMX operation and INVEPT single-context supported.
pub unsafe fn invept_single(eptp: u64) {
    let descriptor: [u64; 2] = [eptp, 0];
    // SAFETY: forwarded to the caller; the descriptor lives on the stack.
    unsafe { asm!("invept {}, [{}]", in(reg) 1u64, in(reg) &descriptor, options(nostack)) }
}

/// Halts this CPU for ever with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli/hlt only stop this CPU.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// Zeroes `len` bytes at `address` (a multiple of 8) with `rep stosq`.
/// On Bochs' instruction clock this still costs about one cycle per
/// 8 bytes: scrubbing an 8 MiB server VM for its restart took 1.08 M of
/// the 1.25 M cycles from failure to serving (docs/runtime-vm.md).
///
/// # Safety
/// `address..address + len` is memory hvm owns, mapped and 8-byte aligned,
/// with no other reference to it.
pub unsafe fn zero(address: u64, len: u64) {
    debug_assert!(address.is_multiple_of(8) && len.is_multiple_of(8));
    // SAFETY: forwarded to the caller; DF is clear (the SysV ABI keeps it
    // clear across calls).
    unsafe {
        asm!("rep stosq", inout("rcx") len / 8 => _, inout("rdi") address => _, in("rax") 0u64,
             options(nostack))
    }
}
