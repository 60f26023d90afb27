//! The platform hvm emulates for a cell: CPUID and MSR policy, ports, MMIO.
//!
//! The device models themselves (UART, local APIC, PCI and virtio, the
//! instruction decoder) are `hvm_logic`; this file reads and writes the
//! vCPU's registers and the VMCS around them. What a Linux cell sees and
//! why is described in docs/linux-cell.md.

use alloc::string::String;
use core::fmt::Write;

use hvm_logic::decode::{self, Operation, Source};
use hvm_logic::exit::{EptViolation, IoAccess};
use hvm_logic::guest::{GuestMemory, Ram};
use hvm_logic::virtio::{self, ConfigPorts, Effect, Function};
use hvm_logic::vmcs::Field;
use hvm_logic::{ioapic, lapic};

use crate::arch::{self, GuestRegisters};
use crate::vmx::{inject_exception, read, skip_instruction, write, Platform};

/// Guest-physical address of the link device's BAR (below 4 GiB, above
/// any cell's RAM, clear of the local APIC page).
pub const LINK_BAR: u32 = 0xE000_0000;

/// The TSC frequency a Linux cell is told (CPUID 0x15/0x16). Under Bochs
/// the TSC counts instructions, so any value is as true as another; 200 MHz
/// matches the `ips` the launcher gives Bochs.
pub const TSC_HZ: u64 = 200_000_000;

/// What a device exit asks of the hypervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Handled; RIP already advanced where needed.
    Done,
    /// Handled, and a link device was notified: move bytes.
    Notify,
    /// The guest asked for a reset.
    Reset(&'static str),
    /// Refused: fail the cell.
    Fail(String),
}

/// CPUID for a Linux cell: the host's values minus what hvm does not
/// emulate, plus what it does (x2APIC, TSC-deadline, ARAT, the TSC
/// frequency) and the KVM signature, which is how Linux learns that x2APIC
/// without interrupt remapping is fine (arch/x86/kernel/apic: "Using X2APIC
/// without IR is not architecturally supported on bare metal but may be
/// supported in guests") — with no KVM feature bits, so nothing else of
/// KVM's paravirtual interface is expected.
pub fn linux_cpuid(regs: &mut GuestRegisters, guest_cr4: u64) {
    let (leaf, subleaf) = (regs.rax as u32, regs.rcx as u32);
    let host_max = arch::cpuid(0, 0).0;
    let (mut a, mut b, mut c, mut d) = if leaf <= host_max || leaf >= 0x8000_0000 {
        arch::cpuid(leaf, subleaf)
    } else {
        (0, 0, 0, 0)
    };
    match leaf {
        0 => a = host_max.max(0x16),
        1 => {
            b &= 0x00FF_FFFF; // initial APIC ID 0
                              // ECX: no DTES64 (2), MONITOR (3), DS-CPL (4), VMX (5), SMX (6),
                              // EST (7), TM2 (8), xTPR (14), PDCM (15), DCA (18).
            c &= !((1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8));
            c &= !((1 << 14) | (1 << 15) | (1 << 18));
            // x2APIC (21), TSC-deadline (24), hypervisor (31); OSXSAVE (27)
            // mirrors the guest's CR4.OSXSAVE, not hvm's.
            c |= (1 << 21) | (1 << 24) | (1 << 31);
            c &= !(1 << 27);
            if guest_cr4 & (1 << 18) != 0 {
                c |= 1 << 27;
            }
            // EDX: no MCE (7), MTRR (12), MCA (14), DS (21), ACPI thermal
            // (22), TM (29), PBE (31): their MSRs are not emulated.
            d &=
                !((1 << 7) | (1 << 12) | (1 << 14) | (1 << 21) | (1 << 22) | (1 << 29) | (1 << 31));
        }
        5 | 0xA | 0xF | 0x10 | 0x12 | 0x14 | 0x1B => (a, b, c, d) = (0, 0, 0, 0),
        6 => (a, b, c, d) = (1 << 2, 0, 0, 0), // ARAT only (SDM CPUID leaf 6)
        7 if subleaf == 0 => {
            // EBX: no TSC_ADJUST (1), SGX (2), RDT-M (12), MPX (14),
            // RDT-A (15), PT (25).
            b &= !((1 << 1) | (1 << 2) | (1 << 12) | (1 << 14) | (1 << 15) | (1 << 25));
            c &= !(1 << 5); // WAITPKG
                            // EDX: no hybrid (15), PCONFIG (18), CET-IBT (20), IBRS/IBPB
                            // (26), STIBP (27), L1D_FLUSH (28), ARCH_CAPABILITIES (29),
                            // CORE_CAPABILITIES (30), SSBD (31): their MSRs are refused.
            d &= !((1 << 15) | (1 << 18) | (1 << 20) | (0x3F << 26));
        }
        7 => (a, b, c, d) = (0, 0, 0, 0),
        0xD if subleaf == 1 => {
            a &= !(1 << 3); // no XSAVES: IA32_XSS is not emulated
            c = 0;
            d = 0;
        }
        0x15 => (a, b, c, d) = (1, 1, TSC_HZ as u32, 0),
        0x16 => {
            let mhz = (TSC_HZ / 1_000_000) as u32;
            (a, b, c, d) = (mhz, mhz, 100, 0)
        }
        0x4000_0000 => {
            a = 0x4000_0001;
            b = u32::from_le_bytes(*b"KVMK");
            c = u32::from_le_bytes(*b"VMKV");
            d = u32::from_le_bytes(*b"M\0\0\0");
        }
        0x4000_0001..=0x4000_00FF => (a, b, c, d) = (0, 0, 0, 0),
        0x8000_0007 => (a, b, c, d) = (0, 0, 0, 1 << 8), // invariant TSC
        _ => {}
    }
    regs.rax = u64::from(a);
    regs.rbx = u64::from(b);
    regs.rcx = u64::from(c);
    regs.rdx = u64::from(d);
}

/// RDMSR/WRMSR for a Linux cell: the local APIC, a few identification
/// MSRs, everything else #GP (Linux's safe accessors survive that).
pub fn linux_msr(platform: &mut Platform, regs: &mut GuestRegisters, is_write: bool) {
    let msr = regs.rcx as u32;
    let now = arch::rdtsc();
    let value = (regs.rdx << 32) | (regs.rax & 0xFFFF_FFFF);
    let ok = if lapic::handles(msr) {
        if is_write {
            platform.lapic.write(msr, value, now).is_ok()
        } else {
            match platform.lapic.read(msr, now) {
                Some(v) => {
                    regs.rax = v & 0xFFFF_FFFF;
                    regs.rdx = v >> 32;
                    true
                }
                None => false,
            }
        }
    } else {
        let known = match msr {
            0x3A => Some(1),  // IA32_FEATURE_CONTROL: locked, VMX off
            0x8B => Some(0),  // IA32_BIOS_SIGN_ID: no microcode revision
            0x1A0 => Some(1), // IA32_MISC_ENABLE: fast strings
            0x1D9 => Some(0), // IA32_DEBUGCTL
            _ => None,
        };
        match (known, is_write) {
            (Some(_), true) => true, // accepted and ignored
            (Some(v), false) => {
                regs.rax = v & 0xFFFF_FFFF;
                regs.rdx = v >> 32;
                true
            }
            (None, _) => false,
        }
    };
    if ok {
        skip_instruction();
    } else {
        inject_exception(13, Some(0));
    }
}

/// XSETBV (SDM Vol. 2): XCR0 only, bit 0 set, AVX only with SSE, and only
/// components the CPU reports. The extended state is the Linux cell's
/// alone: hvm and cell 0 are built without SSE, so XCR0 and the registers
/// need no switching.
pub fn xsetbv(regs: &GuestRegisters) -> bool {
    let value = (regs.rdx << 32) | (regs.rax & 0xFFFF_FFFF);
    let (a, _, _, d) = arch::cpuid(0xD, 0);
    let supported = (u64::from(d) << 32) | u64::from(a);
    let valid = regs.rcx as u32 == 0
        && value & 1 != 0
        && value & !supported == 0
        && (value & 4 == 0 || value & 2 != 0);
    if valid {
        // SAFETY: checked above as the SDM requires; CR4.OSXSAVE is set
        // in hvm when XSAVE exists (vmx::enable), and CPUID said it does.
        unsafe { arch::xsetbv(value) };
    }
    valid
}

fn io_mask(size: u8) -> u64 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    }
}

/// PCI configuration ports for a cell with a link device. Returns false
/// when the port is not 0xCF8..0xCFF or the cell has no device.
pub fn pci_io(platform: &mut Platform, regs: &mut GuestRegisters, access: IoAccess) -> bool {
    // 0xCF9 is the reset control register, not configuration space.
    let configuration =
        access.port == ConfigPorts::ADDRESS || (0xCFC..=0xCFF).contains(&access.port);
    if !configuration || platform.link.is_none() {
        return false;
    }
    let mask = io_mask(access.size);
    let value = match access.port {
        ConfigPorts::ADDRESS if access.input && access.size == 4 => {
            Some(u64::from(platform.pci.address()))
        }
        ConfigPorts::ADDRESS if !access.input => {
            platform.pci.write_address(access.size, regs.rax as u32);
            None
        }
        ConfigPorts::ADDRESS => Some(mask),
        ConfigPorts::DATA..=0xCFF => {
            let (function, offset) = platform.pci.target(access.port);
            let console = platform.link.as_mut().expect("checked above");
            match (function, access.input) {
                (Function::HostBridge, true) => {
                    Some(u64::from(virtio::host_bridge_read(offset, access.size)))
                }
                (Function::Console, true) => {
                    Some(u64::from(console.config_read(offset, access.size)))
                }
                (Function::Console, false) => {
                    console.config_write(offset, access.size, regs.rax as u32);
                    None
                }
                (_, true) => Some(mask),
                (_, false) => None,
            }
        }
        _ => access.input.then_some(mask),
    };
    if let Some(value) = value {
        regs.rax = (regs.rax & !mask) | (value & mask);
    }
    true
}

/// Ports of a Linux cell: COM1, the reset paths, silence elsewhere.
/// Returns the exit and a byte the UART transmitted.
pub fn linux_io(
    platform: &mut Platform,
    regs: &mut GuestRegisters,
    access: IoAccess,
) -> (Exit, Option<u8>) {
    let mask = io_mask(access.size);
    let byte = regs.rax as u8;
    let result = linux_port(platform, regs, access, mask, byte);
    // The UART's interrupt is IRQ 4: GSI 4 of the I/O APIC (the DSDT's
    // COM1). An edge becomes the vector Linux programmed there, if unmasked.
    if platform.uart.take_edge() {
        if let Some(vector) = platform.ioapic.as_ref().and_then(|io| io.vector(4)) {
            platform.lapic.raise(vector);
        }
    }
    result
}

fn linux_port(
    platform: &mut Platform,
    regs: &mut GuestRegisters,
    access: IoAccess,
    mask: u64,
    byte: u8,
) -> (Exit, Option<u8>) {
    if access.input {
        let value = match access.port {
            0x3F8..=0x3FF => u64::from(platform.uart.read(access.port - 0x3F8)),
            // No i8042: status 0 lets a keyboard-controller reset proceed.
            0x64 => 0,
            _ => mask,
        };
        regs.rax = (regs.rax & !mask) | (value & mask);
        return (Exit::Done, None);
    }
    match access.port {
        0x3F8..=0x3FF => (Exit::Done, platform.uart.write(access.port - 0x3F8, byte)),
        // i8042 "pulse reset line" (the keyboard-controller reboot).
        0x64 if byte == 0xFE => (Exit::Reset("i8042 reset"), None),
        // Reset control register; also the FADT's ACPI reset register.
        0xCF9 if byte & 0x04 != 0 => (Exit::Reset("port 0xCF9 / ACPI reset"), None),
        _ => (Exit::Done, None),
    }
}

/// Which device an MMIO address belongs to.
enum Target {
    Link(u64),
    Ioapic(u64),
}

/// An EPT violation on a device page: decode the instruction at RIP and
/// perform it on the device. `None` when the address is no device's.
pub fn mmio(
    memory: GuestMemory,
    platform: &mut Platform,
    regs: &mut GuestRegisters,
    violation: EptViolation,
) -> Option<Exit> {
    let address = violation.guest_physical;
    let link = platform
        .link
        .as_ref()
        .and_then(|console| console.bar_range())
        .filter(|(bar, size)| (*bar..bar + size).contains(&address));
    let target = if let Some((bar, _)) = link {
        Target::Link(address - bar)
    } else if platform.ioapic.is_some()
        && (ioapic::BASE..ioapic::BASE + ioapic::SIZE).contains(&address)
    {
        Target::Ioapic(address - ioapic::BASE)
    } else {
        return None;
    };
    // SAFETY: the cell's memory is identity mapped in hvm and the cell is
    // stopped while hvm handles its exit; Ram checks every access.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(memory.host_base as *mut u8, memory.size as usize)
    };
    let ram = Ram::new(memory, bytes);
    let rip = read(Field::GuestRip);
    let paging = read(Field::GuestCr0) & (1 << 31) != 0;
    let cr3 = read(Field::GuestCr3);
    let mut code = [0u8; 15];
    let mut fetched = 0;
    for (i, slot) in code.iter_mut().enumerate() {
        let linear = rip.wrapping_add(i as u64);
        let Some(physical) = decode::translate(paging, cr3, linear, |a| ram.read_u64(a).ok())
        else {
            break;
        };
        let mut byte = [0u8];
        if ram.read(physical, &mut byte).is_err() {
            break;
        }
        *slot = byte[0];
        fetched += 1;
    }
    let instruction = match decode::decode(&code[..fetched]) {
        Ok(instruction) => instruction,
        Err(error) => {
            let mut what = String::new();
            let _ = write!(
                what,
                "MMIO at gpa={address:#x} by an instruction hvm does not emulate ({error:?}, bytes {:02x?})",
                &code[..fetched.min(6)]
            );
            return Some(Exit::Fail(what));
        }
    };
    let size = instruction.size;
    let device_read = |platform: &mut Platform| -> u64 {
        match target {
            Target::Link(offset) => platform
                .link
                .as_mut()
                .map_or(0, |console| console.mmio_read(offset, size)),
            Target::Ioapic(offset) => platform
                .ioapic
                .as_ref()
                .map_or(0, |ioapic| u64::from(ioapic.read(offset))),
        }
    };
    let operand = |regs: &mut GuestRegisters, source: Source| match source {
        Source::Immediate(value) => value,
        Source::Register { number, high_byte } => {
            decode::store_value(get_register(regs, number), high_byte)
        }
    };
    let mut exit = Exit::Done;
    match instruction.operation {
        Operation::Load {
            number,
            high_byte,
            destination_size,
        } => {
            let value = device_read(platform);
            set_register(regs, number, |old| {
                decode::merge_load(old, value, destination_size, high_byte)
            });
        }
        Operation::Test(source) => {
            let value = device_read(platform) & operand(regs, source);
            let rflags = read(Field::GuestRflags);
            write(Field::GuestRflags, decode::test_flags(rflags, value, size));
        }
        Operation::Store(source) => {
            let value = operand(regs, source) & (u64::MAX >> (64 - 8 * u32::from(size)));
            match target {
                Target::Link(offset) => {
                    let console = platform.link.as_mut().expect("found above");
                    if let Effect::Notify(_) = console.mmio_write(offset, size, value) {
                        exit = Exit::Notify;
                    }
                }
                Target::Ioapic(offset) => {
                    if let Some(ioapic) = platform.ioapic.as_mut() {
                        ioapic.write(offset, value as u32);
                    }
                }
            }
        }
    }
    write(Field::GuestRip, rip + u64::from(instruction.length));
    let interruptibility = read(Field::GuestInterruptibility);
    if interruptibility & 0b11 != 0 {
        write(Field::GuestInterruptibility, interruptibility & !0b11);
    }
    Some(exit)
}

fn get_register(regs: &mut GuestRegisters, number: u8) -> u64 {
    match regs.by_number(number) {
        Some(register) => *register,
        None => read(Field::GuestRsp),
    }
}

fn set_register(regs: &mut GuestRegisters, number: u8, update: impl FnOnce(u64) -> u64) {
    match regs.by_number(number) {
        Some(register) => *register = update(*register),
        None => write(Field::GuestRsp, update(read(Field::GuestRsp))),
    }
}
