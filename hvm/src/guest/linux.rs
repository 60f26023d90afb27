//! A Linux cell: a stock kernel on the PC hvm emulates (docs/linux-cell.md).
//!
//! The cell gets x2APIC with the TSC-deadline timer, an I/O APIC, COM1 and
//! the link as a virtio console on PCI; no hypercalls (VMCALL is #UD). It
//! sees CPUID and MSRs as `hvm_logic::cpuid::linux` and
//! `hvm_logic::msr::linux` decide. The device models are `hvm_logic`'s;
//! `devices.rs` drives them from the exits.

use alloc::format;
use alloc::string::String;

use hvm_logic::exit::IoAccess;
use hvm_logic::lapic::Lapic;
use hvm_logic::msr;
use hvm_logic::{cpuid, vmcs::Field};
use kasane_manifest::CellKind;

use super::{answer_cpuid, hold_for_cell0, host_cpuid, Entry, Guest, Machine, Outcome};
use crate::arch::{self, GuestRegisters};
use crate::cell::{Cell, Platform};
use crate::devices::{self, Exit};
use crate::loader::CellLayout;
use crate::vmcs::Vmcs;
use crate::BootModules;

pub(crate) struct Linux;

impl Guest for Linux {
    /// Loads the bzImage and initrd (boot.rst 64-bit protocol) and resets
    /// the platform; the link's peer is new.
    fn boot(
        &self,
        cell: &mut Cell,
        modules: &BootModules,
        _manifest: &[u8],
    ) -> Result<Entry, String> {
        let missing = |name: &str| format!("boot module `{name}` is missing");
        let kernel = modules
            .find(&cell.description.image)
            .ok_or_else(|| missing(&cell.description.image))?;
        let initrd = if cell.description.initrd.is_empty() {
            &[][..]
        } else {
            modules
                .find(&cell.description.initrd)
                .ok_or_else(|| missing(&cell.description.initrd))?
        };
        let layout = CellLayout {
            host_base: cell.memory.host_base,
            guest_base: 0,
            size: cell.memory.size,
        };
        let entry = crate::linux::load_linux(layout, kernel, initrd, &cell.description.cmdline)
            .map_err(|e| format!("cannot boot `{}`: {e}", cell.description.image))?;
        cell.platform = Platform::new(CellKind::Linux, cell.platform.links.len());
        cell.watchdog.disarm();
        // boot.rst: CS = __BOOT_CS (0x10), DS/ES/SS = __BOOT_DS (0x18),
        // long mode with the identity map, interrupts off, RSI = boot_params.
        Ok(Entry {
            rip: entry.rip,
            rsp: entry.rsp,
            cr3: entry.cr3,
            gdt_base: entry.gdt_base,
            gdt_limit: entry.gdt_limit,
            code: 0x10,
            data: 0x18,
            cr0: 0x8000_0031, // PG, NE, ET, PE
            cr4: 0x20,        // PAE
            efer: 0x500,      // LMA, LME
            registers: GuestRegisters {
                rsi: entry.rsi,
                ..Default::default()
            },
            owns_apic: false,
        })
    }

    /// The emulated APIC's timer bounds the turn; its highest pending
    /// vector is offered.
    fn before_entry(&self, machine: &mut Machine<'_>, cell: &mut Cell, now: u64) -> Option<u64> {
        emulated_apic_entry(machine, cell, now)
    }

    fn cpuid(&self, machine: &mut Machine<'_>, cell: &mut Cell) {
        let vmcs = machine.vmcs;
        let regs = &mut cell.regs;
        let (leaf, subleaf) = (regs.rax as u32, regs.rcx as u32);
        let osxsave = vmcs.read(Field::GuestCr4) & (1 << 18) != 0;
        let answer = cpuid::linux(leaf, subleaf, osxsave, machine.tsc_hz, host_cpuid);
        answer_cpuid(regs, answer);
        vmcs.skip_instruction();
    }

    /// Linux cells get no hypercalls: VMCALL is #UD (SDM 25.1.3).
    fn vmcall(&self, machine: &mut Machine<'_>, _cell: &mut Cell) -> Outcome {
        machine.vmcs.inject_exception(6, None);
        Outcome::Resume
    }

    fn io(&self, machine: &mut Machine<'_>, cell: &mut Cell, access: IoAccess) -> Outcome {
        let (exit, byte) = devices::linux_io(&mut cell.platform, &mut cell.regs, access);
        if let Some(byte) = byte {
            cell.console(&[byte]);
        }
        if exit == Exit::Done {
            machine.vmcs.skip_instruction();
        }
        exit.into()
    }

    /// The local APIC, a few identification MSRs, everything else #GP
    /// (Linux's safe accessors survive that).
    fn msr(&self, machine: &mut Machine<'_>, cell: &mut Cell, write: bool) {
        emulated_msr(machine, cell, write);
    }

    fn hlt(&self, machine: &mut Machine<'_>, cell: &mut Cell) -> Outcome {
        software_hlt(machine, cell)
    }

    fn external_interrupt(
        &self,
        machine: &mut Machine<'_>,
        _cell: &mut Cell,
        vector: u8,
    ) -> Outcome {
        hold_for_cell0(machine, vector)
    }

    /// The extended state is the Linux cell's alone (`devices::xsetbv`).
    fn xsetbv(&self, machine: &mut Machine<'_>, cell: &mut Cell) {
        if devices::xsetbv(&cell.regs) {
            machine.vmcs.skip_instruction();
        } else {
            machine.vmcs.inject_exception(13, Some(0));
        }
    }
}

/// RDMSR or WRMSR on the emulated platform (`hvm_logic::msr::linux`): the
/// emulated x2APIC with its TSC-deadline timer, a few identification
/// MSRs, #GP for the rest. Linux cells and server VMs share it.
pub(super) fn emulated_msr(machine: &mut Machine<'_>, cell: &mut Cell, write: bool) {
    let (platform, regs) = (&mut cell.platform, &mut cell.regs);
    let number = regs.rcx as u32;
    let now = arch::rdtsc();
    let value = (regs.rdx << 32) | (regs.rax & 0xFFFF_FFFF);
    let answer = match (msr::linux(number), write) {
        (msr::Linux::Apic, true) => platform.lapic.write(number, value, now).ok().map(|()| None),
        (msr::Linux::Apic, false) => platform.lapic.read(number, now).map(Some),
        (msr::Linux::Fixed(_), true) => Some(None), // accepted and ignored
        (msr::Linux::Fixed(value), false) => Some(Some(value)),
        (msr::Linux::Refuse, _) => None,
    };
    match answer {
        Some(read) => {
            if let Some(value) = read {
                regs.rax = value & 0xFFFF_FFFF;
                regs.rdx = value >> 32;
            }
            machine.vmcs.skip_instruction();
        }
        None => machine.vmcs.inject_exception(13, Some(0)),
    }
}

/// Offers a Linux cell's highest pending APIC vector: injected when the
/// vCPU can take it, otherwise an interrupt-window exit is requested.
pub(super) fn offer_interrupt(vmcs: &Vmcs, lapic: &mut Lapic) {
    if vmcs.injecting() {
        return; // an event is already being injected (re-injection)
    }
    let Some(vector) = lapic.pending() else {
        return;
    };
    if vmcs.interruptible() {
        vmcs.inject_external(vector);
        lapic.accept(vector);
    } else {
        vmcs.interrupt_window(true);
    }
}

/// Before an entry of a cell with the emulated x2APIC (Linux, server
/// VM): its timer bounds the turn, its highest pending vector is offered.
pub(super) fn emulated_apic_entry(
    machine: &mut Machine<'_>,
    cell: &mut Cell,
    now: u64,
) -> Option<u64> {
    let lapic = &mut cell.platform.lapic;
    lapic.update(now);
    let expiry = lapic.next_expiry();
    offer_interrupt(machine.vmcs, lapic);
    expiry
}

/// HLT of a cell with the emulated x2APIC: with interrupts off nothing
/// could wake it, which is a failure; otherwise it waits in software
/// (other cells run) until its APIC has a vector.
pub(super) fn software_hlt(machine: &mut Machine<'_>, cell: &mut Cell) -> Outcome {
    let vmcs = machine.vmcs;
    if vmcs.read(Field::GuestRflags) & (1 << 9) == 0 {
        return Outcome::Fail("halted with interrupts off".into());
    }
    vmcs.skip_instruction();
    cell.platform.lapic.update(arch::rdtsc());
    if cell.platform.lapic.pending().is_some() {
        return Outcome::Resume;
    }
    // Wait in software: other cells run until an interrupt.
    cell.platform.halted = true;
    Outcome::Yield
}
