//! hvm's hypercalls: what a microkernel cell's VMCALL asks, and the answer.
//!
//! The ABI (numbers, registers, errors) is `hvm_abi` and docs/hypercalls.md:
//! RAX holds the number, RDI and RSI the arguments; hvm returns the status
//! in RAX and a value in RDX. Addresses are guest-physical and checked
//! against the cell's memory before hvm reads a byte.

use alloc::format;
use hvm_abi::CONSOLE_WRITE_MAX;
use hvm_abi::{CellControl, CellInfo, CellKindCode, CellState, Hypercall, HypercallError};
use hvm_logic::cell::State;
use kasane_manifest::CellKind;

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
        let call = Hypercall::from_raw(number);
        let server = cell.description.kind == CellKind::ServerVm;
        let result: Result<(), HypercallError> = match call {
            None => Err(HypercallError::UnknownCall),
            // A server VM gets the calls docs/hypercalls.md lists for it.
            Some(call) if server && !call.server_vm_may() => Err(HypercallError::Denied),
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
            Some(Hypercall::LinkStatus) => {
                // Cell 0 names one of its links; any other cell its own
                // (link 0 of its view).
                let number = match (position, a0) {
                    (0, n) => usize::try_from(n).ok(),
                    (_, 0) => self.cells[position].link,
                    _ => None,
                };
                match number.and_then(|n| self.links.get(n)) {
                    Some(link) => {
                        value = link.generation;
                        Ok(())
                    }
                    None => Err(HypercallError::NoSuchCell),
                }
            }
            Some(Hypercall::CellStatus) => {
                match self.cells.iter().find(|c| u64::from(c.index) == a0) {
                    Some(other) => {
                        value = state_code(other.life.state) as u64;
                        Ok(())
                    }
                    None => Err(HypercallError::NoSuchCell),
                }
            }
            Some(Hypercall::CellControl) if position != 0 => Err(HypercallError::Denied),
            Some(Hypercall::CellControl) => self.control(a0, a1),
            Some(Hypercall::CellInfo) if position != 0 => Err(HypercallError::Denied),
            Some(Hypercall::CellInfo) => self.cell_info(a0, a1),
            Some(Hypercall::ExitCount) if position != 0 => Err(HypercallError::Denied),
            Some(Hypercall::ExitCount) => {
                match self.cells.iter().find(|c| u64::from(c.index) == a0) {
                    Some(other) => {
                        value = other.exits;
                        Ok(())
                    }
                    None => Err(HypercallError::NoSuchCell),
                }
            }
            Some(Hypercall::TakeCommand) if !server => Err(HypercallError::Denied),
            Some(Hypercall::TakeCommand) => {
                value = core::mem::take(&mut cell.command);
                Ok(())
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

fn state_code(state: State) -> CellState {
    match state {
        State::Created => CellState::Created,
        State::Running => CellState::Running,
        State::Stopped => CellState::Stopped,
        State::Failed => CellState::Failed,
    }
}

impl Hypervisor {
    /// `CellControl(cell, op)` from cell 0. Start, stop and restart are
    /// queued for the run loop (`apply_controls`), which has the boot
    /// modules a restart needs; an injection op is left for the guest to
    /// take (`TakeCommand`) with vector 0x51 raised, and the guest performs
    /// the failure itself.
    fn control(&mut self, target: u64, op: u64) -> Result<(), HypercallError> {
        let op = CellControl::from_raw(op).ok_or(HypercallError::BadArgument)?;
        let position = self
            .cells
            .iter()
            .position(|c| u64::from(c.index) == target)
            .ok_or(HypercallError::NoSuchCell)?;
        if position == 0 {
            return Err(HypercallError::Denied); // cell 0 does not control itself
        }
        let cell = &mut self.cells[position];
        if op.is_injection() {
            if cell.description.kind != CellKind::ServerVm || cell.life.state != State::Running {
                return Err(HypercallError::BadArgument);
            }
            cell.command = op as u64;
            cell.platform.lapic.raise(hvm_abi::COMMAND_VECTOR);
            cell.platform.halted = false;
            log!(
                "cell {} ({}): `{}` injected by cell 0",
                cell.index,
                cell.description.name,
                op.verb()
            );
            return Ok(());
        }
        cell.control = Some(op);
        Ok(())
    }

    /// Writes a `CellInfo` about cell `target` at cell 0's guest-physical
    /// `address`, checked against cell 0's memory first.
    fn cell_info(&mut self, target: u64, address: u64) -> Result<(), HypercallError> {
        let other = self
            .cells
            .iter()
            .find(|c| u64::from(c.index) == target)
            .ok_or(HypercallError::NoSuchCell)?;
        let mut info = CellInfo::empty();
        info.kind = match other.description.kind {
            CellKind::Microkernel => CellKindCode::Microkernel,
            CellKind::Linux => CellKindCode::Linux,
            CellKind::ServerVm => CellKindCode::ServerVm,
        } as u32;
        info.state = state_code(other.life.state) as u32;
        info.restarts = other.life.restarts;
        info.restart_limit = other.description.restart_limit;
        info.link = other
            .link
            .and_then(|l| u32::try_from(l).ok())
            .unwrap_or(u32::MAX);
        CellInfo::put(&mut info.name, &other.description.name);
        CellInfo::put(&mut info.last_failure, &other.last_failure);
        let size = core::mem::size_of::<CellInfo>() as u64;
        let range = self.cells[0]
            .memory
            .check(address, size)
            .map_err(|_| HypercallError::BadAddress)?;
        // SAFETY: `range` lies inside cell 0's memory (checked above),
        // identity mapped in hvm; cell 0 is not running while hvm answers
        // its call; write_unaligned needs no alignment.
        unsafe { core::ptr::write_unaligned(range.host() as *mut CellInfo, info) };
        Ok(())
    }
}
