//! The microkernel cell (cell 0): hypercalls, the physical local APIC.
//!
//! Cell 0 runs Kasane's microkernel in VMX non-root mode. It owns the local
//! APIC: its x2APIC MSRs pass through, and physical interrupts are
//! re-injected into it, held while it cannot take them. It reaches hvm by
//! VMCALL (docs/hypercalls.md), prints through COM1 or port 0xE9, and sees
//! CPUID and MSRs as `hvm_logic::cpuid::microkernel` and
//! `hvm_logic::msr::microkernel_*` decide.

use alloc::string::String;

use hvm_abi::BootMode;
use hvm_logic::exit::IoAccess;
use hvm_logic::msr::{self, Read};
use hvm_logic::{cpuid, vmcs::Field};

use super::{
    answer_cpuid, console_ports, host_cpuid, load_kernel_image, Entry, Guest, Machine, Outcome,
};
use crate::arch;
use crate::cell::Cell;
use crate::BootModules;

pub(crate) struct Microkernel;

impl Guest for Microkernel {
    fn boot(
        &self,
        cell: &mut Cell,
        modules: &BootModules,
        manifest: &[u8],
    ) -> Result<Entry, String> {
        let entry = load_kernel_image(cell, modules, manifest, BootMode::VmxGuest as u32, None)?;
        // Only cell 0 is a microkernel (the manifest checker says so).
        Ok(Entry {
            owns_apic: true,
            ..entry
        })
    }

    /// Interrupts taken while other cells ran are delivered first.
    fn begin_turn(&self, machine: &mut Machine<'_>, cell: &mut Cell) {
        let vectors = core::mem::take(machine.for_cell0);
        for vector in vectors {
            deliver(machine, cell, vector);
        }
    }

    fn cpuid(&self, machine: &mut Machine<'_>, cell: &mut Cell) {
        let regs = &mut cell.regs;
        let (leaf, subleaf) = (regs.rax as u32, regs.rcx as u32);
        let answer = cpuid::microkernel(leaf, subleaf, machine.tsc_hz, host_cpuid);
        answer_cpuid(regs, answer);
        machine.vmcs.skip_instruction();
    }

    fn vmcall(&self, _machine: &mut Machine<'_>, _cell: &mut Cell) -> Outcome {
        Outcome::Hypercall
    }

    /// COM1 and port 0xE9 print, the rest is absent.
    fn io(&self, machine: &mut Machine<'_>, cell: &mut Cell, access: IoAccess) -> Outcome {
        console_ports(machine, cell, access)
    }

    fn msr(&self, machine: &mut Machine<'_>, cell: &mut Cell, write: bool) {
        let regs = &mut cell.regs;
        let number = regs.rcx as u32;
        let vmcs = machine.vmcs;
        if write {
            let value = (regs.rdx << 32) | (regs.rax & 0xFFFF_FFFF);
            // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU.
            let current = unsafe { arch::rdmsr(msr::APIC_BASE) };
            if msr::microkernel_write(cell.index, number, value, current) {
                // SAFETY: only EXTD changes (checked by the policy);
                // enabling x2APIC mode is allowed from xAPIC mode and hvm
                // itself never uses the APIC.
                unsafe { arch::wrmsr(msr::APIC_BASE, value) };
                vmcs.skip_instruction();
            } else {
                vmcs.inject_exception(13, Some(0));
            }
            return;
        }
        let value = match msr::microkernel_read(number) {
            Read::Value(value) => value,
            // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU.
            Read::HostApicBase => unsafe { arch::rdmsr(msr::APIC_BASE) },
            Read::Refuse => return vmcs.inject_exception(13, Some(0)),
        };
        regs.rax = value & 0xFFFF_FFFF;
        regs.rdx = value >> 32;
        vmcs.skip_instruction();
    }

    fn hlt(&self, machine: &mut Machine<'_>, cell: &mut Cell) -> Outcome {
        let vmcs = machine.vmcs;
        if vmcs.read(Field::GuestRflags) & (1 << 9) == 0 {
            cell.flush_line();
            log!(
                "cell {} ({}) halted with interrupts off; stopping it",
                cell.index,
                cell.description.name
            );
            cell.life.stopped();
            return Outcome::Yield;
        }
        vmcs.skip_instruction();
        // An interrupt already held for cell 0 (it came while the vCPU had
        // interrupts off) ends the HLT at once: inject it now that IF is 1
        // and the STI shadow is gone, rather than rely on the
        // interrupt-window exit to wake the HLT state (SDM 26.2 says it
        // does; Bochs 2.7 never wakes for it, and the unacknowledged
        // vector then blocks every later one).
        if !cell.platform.held.is_empty() {
            let vector = cell.platform.held.remove(0);
            if cell.platform.held.is_empty() {
                vmcs.interrupt_window(false);
            }
            vmcs.inject_external(vector);
            return Outcome::Resume;
        }
        // SDM 27.4.2: enter in the HLT activity state; an interrupt for the
        // cell wakes it. The turn ends: other cells run while cell 0 waits
        // (the run loop sees the activity state and wakes cell 0 for its
        // held or link vectors; a physical interrupt taken in another cell
        // yields that cell for it).
        if machine.hlt_activity {
            vmcs.write(Field::GuestActivityState, 1);
            return Outcome::Yield;
        }
        Outcome::Resume
    }

    /// Physical interrupts belong to cell 0 (SDM 27.6 "Event injection").
    fn external_interrupt(
        &self,
        machine: &mut Machine<'_>,
        cell: &mut Cell,
        vector: u8,
    ) -> Outcome {
        deliver(machine, cell, vector);
        Outcome::Resume
    }

    fn interrupt_window(&self, machine: &mut Machine<'_>, cell: &mut Cell) {
        if !cell.platform.held.is_empty() {
            let vector = cell.platform.held.remove(0);
            machine.vmcs.inject_external(vector);
        }
    }
}

/// Injects a physical interrupt now if the vCPU can take it, otherwise
/// holds it and asks for the interrupt window (SDM 25.6.2).
fn deliver(machine: &mut Machine<'_>, cell: &mut Cell, vector: u8) {
    let vmcs = machine.vmcs;
    if vmcs.interruptible() && !vmcs.injecting() {
        vmcs.inject_external(vector);
    } else {
        // One request per vector, as the local APIC's IRR keeps it.
        if !cell.platform.held.contains(&vector) {
            cell.platform.held.push(vector);
        }
        vmcs.interrupt_window(true);
    }
}
