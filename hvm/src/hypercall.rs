//! hvm's hypercalls: what a microkernel cell's VMCALL asks, and the answer.
//!
//! The ABI (numbers, registers, errors) is `hvm_abi` and docs/hypercalls.md:
//! RAX holds the number, RDI and RSI the arguments; hvm returns the status
//! in RAX and a value in RDX. Addresses are guest-physical and checked
//! against the cell's memory before hvm reads a byte.

use alloc::format;
use hvm_abi::{CellState, Hypercall, HypercallError, CONSOLE_WRITE_MAX};
use hvm_logic::cell::State;

use crate::arch;
use crate::run::Flow;
use crate::vmcs::Vmcs;
use crate::vmx::Hypervisor;
use crate::{power_off, serial};

impl Hypervisor {
    /// Runs the hypercall the cell at `position` made. RIP is advanced
    /// here when the cell goes on; a call that ends the cell's turn says so.
    pub(crate) fn hypercall(&mut self, position: usize, vmcs: &Vmcs) -> Flow {
        let cell = &mut self.cells[position];
        let regs = &mut cell.regs;
        let (number, a0, a1) = (regs.rax, regs.rdi, regs.rsi);
        let mut value = 0;
        let result: Result<(), HypercallError> = match Hypercall::from_raw(number) {
            None => Err(HypercallError::UnknownCall),
            // Numbers reserved for issue 12's cell calls (hvm/abi); hvm
            // answers them when it implements them.
            Some(Hypercall::CellInfo | Hypercall::TakeCommand | Hypercall::ExitCount) => {
                Err(HypercallError::UnknownCall)
            }
            Some(Hypercall::Version) => {
                value = hvm_abi::ABI_VERSION;
                Ok(())
            }
            Some(Hypercall::ConsoleWrite) => {
                if a1 > CONSOLE_WRITE_MAX {
                    Err(HypercallError::BadArgument)
                } else {
                    match cell.memory.check(a0, a1) {
                        Ok(range) => {
                            // SAFETY: `range` is inside the cell's memory,
                            // identity mapped in hvm; the cell is not running.
                            let bytes = unsafe {
                                core::slice::from_raw_parts(
                                    range.host() as *const u8,
                                    range.len() as usize,
                                )
                            };
                            cell.console(bytes);
                            Ok(())
                        }
                        Err(_) => Err(HypercallError::BadAddress),
                    }
                }
            }
            Some(Hypercall::CellSelf) => {
                value = u64::from(cell.index);
                Ok(())
            }
            Some(Hypercall::Heartbeat) => {
                cell.watchdog.feed(arch::rdtsc());
                Ok(())
            }
            Some(Hypercall::Yield) => {
                cell.regs.rax = 0;
                vmcs.skip_instruction();
                return Flow::Yield;
            }
            Some(Hypercall::LinkStatus) => match (&self.link, a0) {
                (Some(link), 0) if self.cells[position].platform.link.is_some() => {
                    value = link.generation;
                    Ok(())
                }
                _ => Err(HypercallError::NoSuchCell),
            },
            Some(Hypercall::CellStatus) => {
                match self.cells.iter().find(|c| u64::from(c.index) == a0) {
                    Some(other) => {
                        value = match other.life.state {
                            State::Created => CellState::Created,
                            State::Running => CellState::Running,
                            State::Stopped => CellState::Stopped,
                            State::Failed => CellState::Failed,
                        } as u64;
                        Ok(())
                    }
                    None => Err(HypercallError::NoSuchCell),
                }
            }
            Some(Hypercall::CellControl) if position != 0 => Err(HypercallError::Denied),
            Some(Hypercall::CellControl) => {
                if hvm_abi::CellControl::from_raw(a1).is_none() {
                    Err(HypercallError::BadArgument)
                } else {
                    // Only cell 0 exists so far, and it may not control itself.
                    Err(HypercallError::NoSuchCell)
                }
            }
            Some(Hypercall::ConsoleRead) if position != 0 => Err(HypercallError::Denied),
            Some(Hypercall::ConsoleRead) => {
                // Cell 0 owns console input (core's /dev/cons). A reader
                // has a prompt or an echo without its newline yet: show it.
                cell.flush_line();
                value = serial::read_byte().map_or(hvm_abi::NO_CONSOLE_INPUT, u64::from);
                Ok(())
            }
            Some(Hypercall::PowerOff) if position != 0 => Err(HypercallError::Denied),
            Some(Hypercall::PowerOff) => {
                cell.flush_line();
                if a0 == 0 {
                    power_off(true, "requested by cell 0");
                }
                log!("cell 0 reports failure status {:#x}", a0);
                power_off(false, "cell 0 requested power-off with a failure status");
            }
            Some(Hypercall::FaultReport) => {
                let what = format!("fault reported by the cell itself (code {a0:#x})");
                self.fail(position, vmcs, &what);
                return Flow::Yield;
            }
        };
        let regs = &mut self.cells[position].regs;
        match result {
            Ok(()) => {
                regs.rax = 0;
                regs.rdx = value;
            }
            Err(error) => regs.rax = error as u64,
        }
        vmcs.skip_instruction();
        Flow::Resume
    }
}
