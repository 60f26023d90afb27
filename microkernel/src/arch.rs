//! Everything in the microkernel that names a register or a descriptor.
//!
//! Entry and exit: user state is saved straight into the running thread's
//! [`Context`]. `syscall` (SDM Vol. 2B SYSCALL) builds the same frame the CPU
//! pushes for an interrupt, because TSS.RSP0 and the syscall stub both point
//! at the top of the current thread's context. The kernel then runs on its
//! one kernel stack, and leaves through `return_to_user`, which reloads the
//! context named by `RESUME_CONTEXT` with `sysretq` (if it entered by
//! `syscall`) or `iretq`. The kernel never blocks inside a system call, so
//! one kernel stack serves every thread.
//!
//! Exceptions in kernel mode are kernel bugs and panic; interrupts in kernel
//! mode only happen while the kernel idles (`sti; hlt`).

use core::arch::{asm, global_asm};

use microkernel_abi::TaskId;
use microkernel_core::device::{PortGrants, FULL_BITMAP_BYTES};

/// Kernel code selector.
pub const KERNEL_CODE: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DATA: u16 = 0x10;
/// User data selector (RPL 3); `sysret` derives it from STAR[63:48] + 8.
pub const USER_DATA: u16 = 0x18 | 3;
/// User code selector (RPL 3); STAR[63:48] + 16.
pub const USER_CODE: u16 = 0x20 | 3;
const TSS_SELECTOR: u16 = 0x28;

/// The `vector` value marking a frame built by the `syscall` stub.
pub const SYSCALL_VECTOR: u64 = 0x100;

/// A thread's saved user state, in the order the entry stubs push it.
/// 176 bytes and 16-aligned, so its top is a valid TSS.RSP0 (the CPU
/// aligns RSP0 down to 16 before pushing, SDM Vol. 3 7.14.2).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(16))]
pub struct Context {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Interrupt vector, or [`SYSCALL_VECTOR`].
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl Context {
    /// A fresh user context: interrupts on, user selectors.
    pub fn user(rip: u64, rsp: u64) -> Context {
        Context {
            rip,
            rsp,
            cs: u64::from(USER_CODE),
            ss: u64::from(USER_DATA),
            rflags: 0x202,
            ..Context::default()
        }
    }
}

/// Kernel-stack top; the stubs switch to it after saving user state.
#[no_mangle]
static mut KERNEL_STACK_TOP: u64 = 0;
/// Top of the running thread's context (`&context + 1`).
#[no_mangle]
static mut CURRENT_CONTEXT_TOP: u64 = 0;
/// The context `return_to_user` loads.
#[no_mangle]
static mut RESUME_CONTEXT: u64 = 0;
#[no_mangle]
static mut SCRATCH_USER_RSP: u64 = 0;

global_asm!(
    r#"
    // The general registers in `Context` order (r15 at the lowest
    // address). Neither macro changes the flags, which `return_to_user`
    // relies on between its `cmp` and `je`.
    .macro save_registers
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    .endm
    .macro restore_registers
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    .endm

    .section .text
    .global syscall_entry
syscall_entry:
    mov [rip + SCRATCH_USER_RSP], rsp
    mov rsp, [rip + CURRENT_CONTEXT_TOP]
    push {user_data}
    push [rip + SCRATCH_USER_RSP]
    push r11
    push {user_code}
    push rcx
    push 0
    push {syscall_vector}
    save_registers
    mov rsp, [rip + KERNEL_STACK_TOP]
    cld
    call trap_from_user
    jmp return_to_user

    .global return_to_user
return_to_user:
    mov rsp, [rip + RESUME_CONTEXT]
    cmp qword ptr [rsp + 15 * 8], {syscall_vector}
    restore_registers
    lea rsp, [rsp + 16]
    je 2f
    iretq
2:  mov rcx, [rsp]
    mov r11, [rsp + 16]
    mov rsp, [rsp + 24]
    sysretq

trap_common:
    save_registers
    cld
    test qword ptr [rsp + 18 * 8], 3
    jz 3f
    mov rsp, [rip + KERNEL_STACK_TOP]
    call trap_from_user
    jmp return_to_user
3:  mov rdi, rsp
    call trap_from_kernel
    restore_registers
    add rsp, 16
    iretq

    .macro trap_without_error number
    .balign 16
trap_\number:
    push 0
    push \number
    jmp trap_common
    .endm
    .macro trap_with_error number
    .balign 16
trap_\number:
    push \number
    jmp trap_common
    .endm

    trap_without_error 0
    trap_without_error 1
    trap_without_error 2
    trap_without_error 3
    trap_without_error 4
    trap_without_error 5
    trap_without_error 6
    trap_without_error 7
    trap_with_error 8
    trap_without_error 9
    trap_with_error 10
    trap_with_error 11
    trap_with_error 12
    trap_with_error 13
    trap_with_error 14
    trap_without_error 15
    trap_without_error 16
    trap_with_error 17
    trap_without_error 18
    trap_without_error 19
    trap_without_error 20
    trap_with_error 21
    trap_without_error 32
    trap_without_error 39
    trap_without_error 80
    trap_without_error 81
    trap_without_error 82
    trap_without_error 83
    trap_without_error 84
    trap_without_error 85
    trap_without_error 86
    trap_without_error 87
    trap_without_error 255

    .section .rodata
    .balign 8
    .global trap_table
trap_table:
    .quad 0, trap_0, 1, trap_1, 2, trap_2, 3, trap_3, 4, trap_4, 5, trap_5
    .quad 6, trap_6, 7, trap_7, 8, trap_8, 9, trap_9, 10, trap_10, 11, trap_11
    .quad 12, trap_12, 13, trap_13, 14, trap_14, 15, trap_15, 16, trap_16
    .quad 17, trap_17, 18, trap_18, 19, trap_19, 20, trap_20, 21, trap_21
    .quad 32, trap_32, 39, trap_39, 255, trap_255
    .quad 80, trap_80, 81, trap_81, 82, trap_82, 83, trap_83
    .quad 84, trap_84, 85, trap_85, 86, trap_86, 87, trap_87
    .global trap_table_end
trap_table_end:
"#,
    user_data = const USER_DATA as u64,
    user_code = const USER_CODE as u64,
    syscall_vector = const SYSCALL_VECTOR,
);

extern "C" {
    fn syscall_entry();
    fn return_to_user() -> !;
    static trap_table: [u64; 2];
    static trap_table_end: u8;
}

/// Vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 32;
/// Vector of spurious APIC interrupts.
pub const SPURIOUS_VECTOR: u8 = 255;
/// Vector of APIC errors.
pub const ERROR_VECTOR: u8 = 39;
/// Vector hvm injects for link 0 (link i: `LINK_VECTOR + i`); it never
/// went through the local APIC, so it gets no EOI.
pub const LINK_VECTOR: u8 = microkernel_abi::boot::LINK_INTERRUPT_BASE;

/// Bytes of the root task's I/O permission bitmap: ports 0..0xD00, the
/// highest it may use being the PCI configuration ports 0xCF8..0xCFF.
const IO_BITMAP_BYTES: usize = 0xD00 / 8;
/// The device owner's bitmap's offset in the TSS: it comes first and
/// covers all 65 536 ports, so no port of a device owner indexes past it
/// into the root task's (whose first byte, all ones, is the byte the CPU
/// may read past its end).
const DEVICE_BITMAP_OFFSET: u16 = 104;
/// The root task's bitmap's offset in the TSS.
const IO_BITMAP_OFFSET: u16 = DEVICE_BITMAP_OFFSET + FULL_BITMAP_BYTES as u16;
/// An offset past the TSS limit: no bitmap, every port faults at CPL 3.
const NO_IO_BITMAP: u16 = core::mem::size_of::<TaskStateSegment>() as u16;
/// The task whose grants the device bitmap holds (raw id; 0 is no task).
static mut DEVICE_BITMAP_TASK: u64 = 0;

/// Which I/O permission bitmap a thread runs with.
#[derive(Clone, Copy)]
pub enum IoPorts<'a> {
    /// None: every port faults.
    Closed,
    /// The root task's: the PCI configuration ports.
    Pci,
    /// A task's granted ports (`space_control(GrantPorts)`).
    Granted(TaskId, &'a PortGrants),
}

#[repr(C, packed)]
struct TaskStateSegment {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
    /// SDM Vol. 1 19.5.2 "I/O Permission Bit Map": a clear bit lets CPL 3
    /// use the port (IOPL stays 0); the byte after it must be all ones.
    /// The running device owner's ports; all closed until one runs.
    device_bitmap: [u8; FULL_BITMAP_BYTES],
    io_bitmap: [u8; IO_BITMAP_BYTES],
    io_bitmap_end: u8,
}

/// The PCI configuration ports (mechanism #1: address 0xCF8, data
/// 0xCFC..0xCFF) are open in the bitmap, every other port is closed.
const fn io_bitmap() -> [u8; IO_BITMAP_BYTES] {
    let mut bitmap = [0xFF; IO_BITMAP_BYTES];
    bitmap[0xCF8 / 8] = 0;
    bitmap
}

/// Forgets which task's grants the device bitmap holds, after a grant
/// was revoked, so that the next device owner reloads it.
pub fn device_bitmap_changed() {
    // SAFETY: single CPU, interrupts off in the kernel.
    unsafe { DEVICE_BITMAP_TASK = 0 };
}

static mut TSS: TaskStateSegment = TaskStateSegment {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: NO_IO_BITMAP,
    device_bitmap: [0xFF; FULL_BITMAP_BYTES],
    io_bitmap: io_bitmap(),
    io_bitmap_end: 0xFF,
};

static mut GDT: [u64; 7] = [
    0,
    0x00AF_9A00_0000_FFFF, // 0x08 kernel code (64-bit)
    0x00CF_9200_0000_FFFF, // 0x10 kernel data
    0x00CF_F200_0000_FFFF, // 0x18 user data (DPL 3)
    0x00AF_FA00_0000_FFFF, // 0x20 user code (64-bit, DPL 3)
    0,                     // 0x28 TSS, low half (filled at boot)
    0,                     // TSS, high half
];

#[repr(C, align(16))]
struct Idt([u64; 512]);
static mut IDT: Idt = Idt([0; 512]);

#[repr(C, align(16))]
struct Stack([u8; 16384]);
static mut DOUBLE_FAULT_STACK: Stack = Stack([0; 16384]);

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

/// Loads the GDT, TSS and IDT and programs the `syscall` MSRs.
///
/// # Safety
/// Once, at boot, with interrupts off; `stack_top` must be the top of
/// a stack that lives for ever.
pub unsafe fn init(stack_top: u64) {
    // SAFETY: boot is single-threaded; these statics are written only here
    // and by `set_current_context`.
    unsafe {
        KERNEL_STACK_TOP = stack_top;
        let tss = &raw const TSS as u64;
        let limit = (core::mem::size_of::<TaskStateSegment>() - 1) as u64;
        // 64-bit available TSS descriptor (SDM Vol. 3 8.2.3, Figure 8-4).
        GDT[5] = (limit & 0xFFFF)
            | ((tss & 0xFF_FFFF) << 16)
            | (0x89 << 40)
            | (((limit >> 16) & 0xF) << 48)
            | (((tss >> 24) & 0xFF) << 56);
        GDT[6] = tss >> 32;
        TSS.ist[0] = &raw const DOUBLE_FAULT_STACK as u64 + 16384;
        let gdt = DescriptorPointer {
            limit: (7 * 8 - 1) as u16,
            base: &raw const GDT as u64,
        };
        asm!(
            "lgdt [{gdt}]",
            "push {code}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            "mov ss, {data:x}",
            "ltr {tss:x}",
            gdt = in(reg) &gdt,
            code = in(reg) u64::from(KERNEL_CODE),
            tmp = out(reg) _,
            data = in(reg) u64::from(KERNEL_DATA),
            tss = in(reg) u64::from(TSS_SELECTOR),
        );

        // Interrupt gates (SDM Vol. 3 7.14.1): present, DPL 0, type 0xE;
        // #DF runs on IST1 so a broken kernel stack still reports.
        let table = &raw const trap_table as *const u64;
        let entries = (&raw const trap_table_end as usize - table as usize) / 16;
        for entry in 0..entries {
            let vector = *table.add(entry * 2) as usize;
            let handler = *table.add(entry * 2 + 1);
            let ist = if vector == 8 { 1u64 } else { 0 };
            IDT.0[vector * 2] = (handler & 0xFFFF)
                | (u64::from(KERNEL_CODE) << 16)
                | (ist << 32)
                | (0x8E << 40)
                | (((handler >> 16) & 0xFFFF) << 48);
            IDT.0[vector * 2 + 1] = handler >> 32;
        }
        let idt = DescriptorPointer {
            limit: (256 * 16 - 1) as u16,
            base: &raw const IDT as u64,
        };
        asm!("lidt [{}]", in(reg) &idt, options(nostack));

        // SYSCALL/SYSRET (SDM Vol. 2B): STAR[47:32] = kernel CS (SS = +8),
        // STAR[63:48] = 0x10 so SYSRET loads CS = 0x20|3, SS = 0x18|3.
        wrmsr(
            0xC000_0081,
            (0x10u64 << 48) | (u64::from(KERNEL_CODE) << 32),
        );
        wrmsr(0xC000_0082, syscall_entry as *const () as u64);
        // SFMASK: clear IF, TF, DF, AC, NT on entry.
        wrmsr(0xC000_0084, 0x4_4700);
        // EFER.SCE enables SYSCALL; EFER.NXE makes the XD bit of page
        // tables valid (SDM Vol. 3 4.1.1), where the CPU offers it.
        let efer = rdmsr(0xC000_0080);
        let has_nx = core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 20) != 0;
        wrmsr(0xC000_0080, efer | 1 | if has_nx { 1 << 11 } else { 0 });
        crate::paging::NO_EXECUTE_SUPPORTED.store(has_nx, core::sync::atomic::Ordering::Relaxed);

        // User code may not use x87/SSE state the kernel does not save:
        // CR0.EM makes them fault; CR4.OSFXSR/OSXMMEXCPT off (SDM 13.1).
        let mut cr0: u64;
        asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
        cr0 |= 1 << 2;
        asm!("mov cr0, {}", in(reg) cr0, options(nostack));
        let mut cr4: u64;
        asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        cr4 &= !((1 << 9) | (1 << 10));
        // Process-context identifiers (SDM Vol. 3 4.10.1): with CPUID.1:
        // ECX.PCID[17] and CPUID.(7,0):EBX.INVPCID[10], CR4.PCIDE[17]
        // tags TLB entries with CR3[11:0], so a space switch need not
        // flush. Setting it needs CR3[11:0] = 0 (SDM Vol. 3 2.5), as the
        // boot tables have.
        let has_pcid = core::arch::x86_64::__cpuid(1).ecx & (1 << 17) != 0
            && core::arch::x86_64::__cpuid_count(7, 0).ebx & (1 << 10) != 0
            && read_cr3() & 0xFFF == 0;
        if has_pcid {
            cr4 |= 1 << 17;
        }
        asm!("mov cr4, {}", in(reg) cr4, options(nostack));
        crate::paging::PCID_ENABLED.store(has_pcid, core::sync::atomic::Ordering::Relaxed);
    }
}

/// Makes `context` the one entry stubs save into and `return_to_user`
/// loads, and switches GS base (the UTCB) and, when the space changes, CR3
/// (`cr3` is what to load: `paging::cr3_load_value` of the space's root and
/// PCID) and the I/O bitmap (`io` gives the thread's task's; the device
/// bitmap is reloaded when another device owner ran last).
///
/// # Safety
/// `context` must stay valid (boxed in its thread) until the next call;
/// `cr3` must be a complete address space with the kernel half mapped.
#[inline(always)]
pub unsafe fn set_current_context<'a>(
    context: *mut Context,
    cr3: u64,
    gs_base: u64,
    io: impl FnOnce() -> IoPorts<'a>,
) {
    let top = context as u64 + core::mem::size_of::<Context>() as u64;
    // SAFETY: single CPU, interrupts off in the kernel; see above. The CPU
    // reads the bitmap offset from the TSS at every I/O instruction (SDM
    // Vol. 1 19.5.2), so changing it here takes effect at once. Under hvm
    // the permission check comes before the I/O exit (SDM Vol. 3 26.1.1
    // "Relative Priority of Faults and VM Exits"), so a refused port
    // faults in the guest and hvm emulates only permitted accesses.
    unsafe {
        CURRENT_CONTEXT_TOP = top;
        RESUME_CONTEXT = context as u64;
        TSS.rsp[0] = top;
        let current: u64;
        asm!("mov {}, cr3", out(reg) current, options(nomem, nostack));
        // CR3 reads back without bit 63 (SDM Vol. 3 4.10.4.1). A space is
        // one task's, whose threads share the ports, so the bitmap changes
        // with the space only (grants change while the root task runs).
        if current != cr3 & !crate::paging::NO_FLUSH {
            asm!("mov cr3, {}", in(reg) cr3, options(nostack));
            TSS.iomap_base = match io() {
                IoPorts::Closed => NO_IO_BITMAP,
                IoPorts::Pci => IO_BITMAP_OFFSET,
                IoPorts::Granted(task, grants) => {
                    if DEVICE_BITMAP_TASK != task.raw() {
                        let bitmap = &raw mut TSS.device_bitmap;
                        grants.load_bitmap(task, &mut *bitmap);
                        DEVICE_BITMAP_TASK = task.raw();
                    }
                    DEVICE_BITMAP_OFFSET
                }
            };
        }
        wrmsr(0xC000_0101, gs_base);
    }
}

/// Leaves the kernel into the context set by [`set_current_context`].
///
/// # Safety
/// A context must have been set; nothing on the kernel stack is needed any
/// more (it is abandoned).
pub unsafe fn resume() -> ! {
    // SAFETY: forwarded to the caller.
    unsafe { return_to_user() }
}

/// Reads a model-specific register.
///
/// # Safety
/// The MSR must exist.
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack))
    }
    (u64::from(high) << 32) | u64::from(low)
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist and the value keep the kernel's invariants.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack))
    }
}

/// The time-stamp counter.
pub fn read_tsc() -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: rdtsc only reads the counter (CR4.TSD is clear in ring 0
    // anyway).
    unsafe {
        asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags))
    };
    (u64::from(high) << 32) | u64::from(low)
}

/// CR2: the address of the last page fault.
pub fn read_cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack)) };
    value
}

/// CR3.
pub fn read_cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack)) };
    value
}

/// Drops the TLB entry of one page of the current address space.
pub fn invalidate_page(address: u64) {
    // SAFETY: invlpg only drops a cached translation.
    unsafe { asm!("invlpg [{}]", in(reg) address, options(nostack)) };
}

/// What [`invalidate_pcid`] drops (SDM Vol. 2A, INVPCID, "INVPCID
/// Types").
#[derive(Clone, Copy)]
pub enum PcidInvalidation {
    /// Type 0: one linear address's translations for the PCID.
    Address(u64),
    /// Type 1: every translation for the PCID (globals excepted).
    Context,
}

/// Drops cached translations tagged with `pcid`, whichever space is
/// loaded. Only with CR4.PCIDE set (INVPCID is checked at boot).
pub fn invalidate_pcid(pcid: u16, what: PcidInvalidation) {
    let (kind, address) = match what {
        PcidInvalidation::Address(address) => (0u64, address),
        PcidInvalidation::Context => (1, 0),
    };
    // The 128-bit descriptor: PCID in bits 11:0, the address in 127:64.
    let descriptor: [u64; 2] = [u64::from(pcid & 0xFFF), address];
    // SAFETY: INVPCID only drops cached translations; the descriptor is
    // valid (reserved bits zero, a canonical address from user space).
    unsafe {
        asm!(
            "invpcid {}, [{}]",
            in(reg) kind,
            in(reg) descriptor.as_ptr(),
            options(nostack, readonly),
        )
    };
}

/// Waits for an interrupt with interrupts enabled, then disables them.
pub fn wait_for_interrupt() {
    // SAFETY: the kernel-mode interrupt path (trap_from_kernel) handles
    // whatever arrives and returns here.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}

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
    .global kernel_stack_bottom
kernel_stack_bottom:
    .skip 65536
    .global kernel_stack_top
kernel_stack_top:
"#
);

extern "C" {
    static kernel_stack_top: u8;
}

/// Top of the boot (and only) kernel stack.
pub fn boot_stack_top() -> u64 {
    &raw const kernel_stack_top as u64
}
