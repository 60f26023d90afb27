//! The platform hvm emulates for a cell: PCI, ports, MMIO, XSETBV.
//!
//! The device models themselves (UART, local APIC, PCI and virtio, the
//! instruction decoder) are `hvm_logic`; this file reads and writes the
//! vCPU's registers and the VMCS around them. CPUID and MSR policy are
//! `hvm_logic::cpuid` and `hvm_logic::msr`, applied per kind in `guest/`. What a Linux cell sees and
//! why is described in docs/linux-cell.md.

use alloc::format;
use alloc::string::String;

use hvm_logic::decode::{self, Operation, Source};
use hvm_logic::exit::{EptViolation, IoAccess};
use hvm_logic::guest::{GuestMemory, Ram};
use hvm_logic::ioapic;
use hvm_logic::virtio::{self, ConfigPorts, Effect, Function};
use hvm_logic::vmcs::Field;

use crate::arch::{self, GuestRegisters};
use crate::cell::Platform;
use crate::vmcs::Vmcs;

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

/// PCI configuration ports for a cell with link devices. Returns false
/// when the port is not 0xCF8..0xCFF or the cell has no device. Any
/// nonsense a guest writes lands in `ConfigPorts` and `Console`, which
/// keep only the writable bits (PCI 3.0 6.2); absent functions read as
/// all ones (no device).
pub fn pci_io(platform: &mut Platform, regs: &mut GuestRegisters, access: IoAccess) -> bool {
    // 0xCF9 is the reset control register, not configuration space.
    let configuration =
        access.port == ConfigPorts::ADDRESS || (0xCFC..=0xCFF).contains(&access.port);
    if !configuration || platform.links.is_empty() {
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
            let console = match function {
                Function::Console(n) => platform.links.get_mut(usize::from(n)),
                _ => None,
            };
            match (function, console, access.input) {
                (Function::HostBridge, _, true) => {
                    Some(u64::from(virtio::host_bridge_read(offset, access.size)))
                }
                (_, Some(console), true) => {
                    Some(u64::from(console.config_read(offset, access.size)))
                }
                (_, Some(console), false) => {
                    console.config_write(offset, access.size, regs.rax as u32);
                    None
                }
                (_, None, true) => Some(mask),
                (_, None, false) => None,
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
    /// Link device N, at this BAR offset.
    Link(usize, u64),
    Ioapic(u64),
}

/// An EPT violation on a device page: decode the instruction at RIP and
/// perform it on the device. `None` when the address is no device's.
pub fn mmio(
    vmcs: &Vmcs,
    memory: GuestMemory,
    platform: &mut Platform,
    regs: &mut GuestRegisters,
    violation: EptViolation,
) -> Option<Exit> {
    let address = violation.guest_physical;
    let link = platform.links.iter().enumerate().find_map(|(n, console)| {
        console
            .bar_range()
            .filter(|(bar, size)| (*bar..bar + size).contains(&address))
            .map(|(bar, _)| (n, bar))
    });
    let target = if let Some((n, bar)) = link {
        Target::Link(n, address - bar)
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
    let rip = vmcs.read(Field::GuestRip);
    let paging = vmcs.read(Field::GuestCr0) & (1 << 31) != 0;
    let cr3 = vmcs.read(Field::GuestCr3);
    let mut code = [0u8; 15];
    let mut fetched = 0;
    // One page walk per 4 KiB page the instruction's bytes touch (at most
    // two), not one per byte: on Bochs' instruction clock the walks were a
    // large part of every MMIO exit.
    let mut page: Option<(u64, u64)> = None; // (linear page, physical page)
    for (i, slot) in code.iter_mut().enumerate() {
        let linear = rip.wrapping_add(i as u64);
        let linear_page = linear & !0xFFF;
        let physical_page = match page {
            Some((at, physical)) if at == linear_page => physical,
            _ => {
                let Some(physical) =
                    decode::translate(paging, cr3, linear_page, |a| ram.read_u64(a).ok())
                else {
                    break;
                };
                page = Some((linear_page, physical));
                physical
            }
        };
        let mut byte = [0u8];
        if ram
            .read(physical_page | (linear & 0xFFF), &mut byte)
            .is_err()
        {
            break;
        }
        *slot = byte[0];
        fetched += 1;
    }
    let instruction = match decode::decode(&code[..fetched]) {
        Ok(instruction) => instruction,
        Err(error) => {
            let what = format!("MMIO at gpa={address:#x} by an instruction hvm does not emulate ({error:?}, bytes {:02x?})",
                &code[..fetched.min(6)]
            );
            return Some(Exit::Fail(what));
        }
    };
    let size = instruction.size;
    let device_read = |platform: &mut Platform| -> u64 {
        match target {
            Target::Link(n, offset) => platform
                .links
                .get_mut(n)
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
            decode::store_value(get_register(vmcs, regs, number), high_byte)
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
            set_register(vmcs, regs, number, |old| {
                decode::merge_load(old, value, destination_size, high_byte)
            });
        }
        Operation::Test(source) => {
            let value = device_read(platform) & operand(regs, source);
            let rflags = vmcs.read(Field::GuestRflags);
            vmcs.write(Field::GuestRflags, decode::test_flags(rflags, value, size));
        }
        Operation::Store(source) => {
            let value = operand(regs, source) & (u64::MAX >> (64 - 8 * u32::from(size)));
            match target {
                Target::Link(n, offset) => {
                    if let Some(console) = platform.links.get_mut(n) {
                        if let Effect::Notify(_) = console.mmio_write(offset, size, value) {
                            exit = Exit::Notify;
                        }
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
    vmcs.write(Field::GuestRip, rip + u64::from(instruction.length));
    vmcs.end_interrupt_shadow();
    Some(exit)
}

fn get_register(vmcs: &Vmcs, regs: &mut GuestRegisters, number: u8) -> u64 {
    match regs.by_number(number) {
        Some(register) => *register,
        None => vmcs.read(Field::GuestRsp),
    }
}

fn set_register(
    vmcs: &Vmcs,
    regs: &mut GuestRegisters,
    number: u8,
    update: impl FnOnce(u64) -> u64,
) {
    match regs.by_number(number) {
        Some(register) => *register = update(*register),
        None => vmcs.write(Field::GuestRsp, update(vmcs.read(Field::GuestRsp))),
    }
}
