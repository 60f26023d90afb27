//! The cell run loop: turns, watchdogs, the link pump, exits and failures.
//!
//! Cells take turns (round robin) on the one CPU. Each turn enters the cell
//! and handles its exits until it yields, halts, fails or uses up its
//! slice. What is the same for every kind of cell is handled here; the
//! rest goes to the cell's `guest::Guest`. A failure is contained to the
//! cell: its manifest policy says whether it is stopped, restarted, or the
//! machine is powered off.

use alloc::format;
use alloc::string::String;
use core::fmt::Write;

use hvm_abi::CellControl;
use hvm_logic::cell::{Decision, State};
use hvm_logic::controls;
use hvm_logic::exit::{CrAccess, RawExit, VmExit};
use hvm_logic::guest::{GuestMemory, Ram};
use hvm_logic::link::End;
use hvm_logic::vmcs::Field;

use crate::arch;
use crate::cell::SWITCHED_MSRS;
use crate::devices;
use crate::guest::{Machine, Outcome};
use crate::vmcs::Vmcs;
use crate::vmx::Hypervisor;
use crate::{power_off, BootModules};
use kasane_manifest::CellKind;

/// A cell's memory as bytes.
///
/// # Safety
/// The memory is the cell's, identity mapped in hvm, and the cell is not
/// running; the caller holds no other reference to it.
unsafe fn memory_of<'a>(memory: GuestMemory) -> &'a mut [u8] {
    // SAFETY: forwarded to the caller.
    unsafe { core::slice::from_raw_parts_mut(memory.host_base as *mut u8, memory.size as usize) }
}

/// Directed switches in a row before the round robin gets a turn again.
const MAX_DIRECTED_STREAK: u32 = 8;

/// Queues cell 0's vector for link `number` (0x50 + number) with the
/// vectors waiting for cell 0, once: one pending vector says all there is
/// (the driver looks at the whole queue when it runs).
pub(crate) fn raise_link_vector(for_cell0: &mut alloc::vec::Vec<u8>, number: usize) {
    if let Some(vector) = hvm_logic::link::cell0_vector(number) {
        if !for_cell0.contains(&vector) {
            for_cell0.push(vector);
        }
    }
}

/// Whether the cell goes on after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Resume,
    Yield,
}

impl Hypervisor {
    /// Runs the cells until none is alive, then powers off.
    ///
    /// Cells take turns, each for at most a slice of 10 ms of TSC time
    /// measured by the VMX-preemption timer (SDM 26.5.1); a cell that
    /// yields, halts or fails gives up the rest of its turn. A halted Linux
    /// cell is skipped until its timer or a device raises an interrupt.
    pub fn run(mut self, modules: &BootModules, manifest: &[u8]) -> ! {
        let mut current = 0;
        loop {
            crate::serial::pump();
            self.check_watchdogs();
            self.apply_controls(modules, manifest);
            // A directed switch (a link notify gave this cell bytes) runs
            // the receiver now, out of the round-robin order, which then
            // resumes where it was.
            let directed = self
                .directed
                .take()
                .filter(|&p| self.cells.get(p).is_some_and(|c| c.life.alive()));
            let position = match directed {
                Some(position) => position,
                None => {
                    let Some(position) = self.next_runnable(current) else {
                        log!("all cells stopped");
                        power_off(true, "all cells stopped");
                    };
                    current = position + 1;
                    self.directed_streak = 0;
                    position
                }
            };
            if self.cells[position].life.state == State::Failed {
                let restart = self.load(position, modules, manifest);
                if let Err(reason) = restart {
                    let cell = &mut self.cells[position];
                    log!(
                        "cell {} ({}) restart failed: {}",
                        cell.index,
                        cell.description.name,
                        reason
                    );
                    cell.life.stopped();
                    continue;
                }
                let cell = &self.cells[position];
                log!(
                    "cell {} ({}) restarted (restart {} of {})",
                    cell.index,
                    cell.description.name,
                    cell.life.restarts,
                    cell.description.restart_limit
                );
            }
            if self.cells[position].life.alive() {
                self.pump_links();
                self.enter(position);
            }
        }
    }

    /// Applies the start, stop and restart requests cell 0 made
    /// (`CellControl`); a restart loads the pristine image like a
    /// failure's, but does not count against the restart limit.
    fn apply_controls(&mut self, modules: &BootModules, manifest: &[u8]) {
        for position in 1..self.cells.len() {
            let Some(op) = self.cells[position].control.take() else {
                continue;
            };
            let state = self.cells[position].life.state;
            let load = match op {
                CellControl::Stop => {
                    let cell = &mut self.cells[position];
                    cell.flush_line();
                    cell.life.stopped();
                    cell.platform.halted = false;
                    if let Some(link) = self.links.iter_mut().find(|l| l.peer == Some(position)) {
                        link.to_peer.clear();
                        link.to_cell0.clear();
                    }
                    false
                }
                CellControl::Start => matches!(state, State::Stopped | State::Created),
                CellControl::Restart => true,
                _ => false,
            };
            let cell = &self.cells[position];
            log!(
                "cell {} ({}): `{}` requested by cell 0",
                cell.index,
                cell.description.name,
                op.verb()
            );
            if load {
                self.cells[position].flush_line();
                if let Err(reason) = self.load(position, modules, manifest) {
                    let cell = &mut self.cells[position];
                    log!(
                        "cell {} ({}) could not be started: {}",
                        cell.index,
                        cell.description.name,
                        reason
                    );
                    cell.life.stopped();
                }
            }
        }
    }

    /// The next cell that can use the CPU, from `from` on (wrapping).
    fn next_runnable(&mut self, from: usize) -> Option<usize> {
        let n = self.cells.len();
        let now = arch::rdtsc();
        let mut any_alive = None;
        let for_cell0 = !self.for_cell0.is_empty();
        for i in 0..n {
            let position = (from + i) % n;
            let cell = &mut self.cells[position];
            if !cell.life.alive() {
                continue;
            }
            any_alive.get_or_insert(position);
            if cell.life.state == State::Failed || !cell.platform.halted {
                return Some(position);
            }
            // Cell 0 halted in the HLT activity state wakes for vectors
            // waiting for it (link vectors, interrupts other cells took).
            if position == 0 && (for_cell0 || !cell.platform.held.is_empty()) {
                cell.platform.halted = false;
                return Some(position);
            }
            cell.platform.lapic.update(now);
            if cell.platform.lapic.has_requests() {
                cell.platform.halted = false;
                return Some(position);
            }
        }
        // Every live cell is halted: run the first; it stays halted until an
        // interrupt is due (time passes while hvm loops).
        any_alive
    }

    fn check_watchdogs(&mut self) {
        let now = arch::rdtsc();
        for position in 0..self.cells.len() {
            let cell = &self.cells[position];
            if cell.life.state == State::Running && cell.watchdog.expired(now) {
                let what = format!(
                    "no heartbeat for longer than {} ms",
                    cell.description.heartbeat_ms
                );
                // SAFETY: the cell's initialised VMCS region; no other token
                // is alive between turns. fail() reads the cell's RIP.
                let vmcs = unsafe { Vmcs::load(cell.vmcs) }.expect("VMPTRLD of a cell's VMCS");
                self.fail(position, &vmcs, &what);
            }
        }
    }

    /// Pumps every link (`pump_link`); returns the cells that got bytes,
    /// one bit per position (the first 64), for a directed switch.
    pub(crate) fn pump_links(&mut self) -> u64 {
        let mut receivers = 0;
        for number in 0..self.links.len() {
            self.pump_link(number, &mut receivers);
        }
        receivers
    }

    /// Moves bytes across link `number` both ways and raises the
    /// interrupts that follow: in cell 0 vector 0x50 + number (contract 2
    /// of the links; held until it can take it), in a Linux peer the MSI-X
    /// vectors its driver programmed, in a server VM vector 0x50. Every
    /// descriptor is checked against its owner's memory
    /// (`hvm_logic::link::pump`).
    fn pump_link(&mut self, number: usize, receivers: &mut u64) {
        let link = &mut self.links[number];
        let Some(peer) = link.peer.filter(|&p| p != 0 && p < self.cells.len()) else {
            return;
        };
        let (left, right) = self.cells.split_at_mut(peer);
        let (cell0, peer_cell) = (&mut left[0], &mut right[0]);
        let peer_running = peer_cell.life.state == State::Running;
        let Some(cell0_console) = cell0.platform.links.get_mut(number) else {
            return;
        };
        // SAFETY: each cell's memory is identity mapped in hvm and owned by
        // that cell; neither runs (one CPU, hvm's turn), and the two ranges
        // are disjoint (separate allocations).
        let (cell0_bytes, peer_bytes) =
            unsafe { (memory_of(cell0.memory), memory_of(peer_cell.memory)) };
        let mut cell0_ram = Ram::new(cell0.memory, cell0_bytes);
        let mut peer_ram = Ram::new(peer_cell.memory, peer_bytes);
        let peer_end = match peer_cell.platform.links.first_mut() {
            Some(console) if peer_running => Some(End {
                console,
                ram: &mut peer_ram,
            }),
            _ => None,
        };
        let pumped = hvm_logic::link::pump(
            &mut link.to_peer,
            &mut link.to_cell0,
            End {
                console: cell0_console,
                ram: &mut cell0_ram,
            },
            peer_end,
        );
        if pumped.cell0.transmitted > 0 {
            *receivers |= 1u64.checked_shl(peer as u32).unwrap_or(0);
        }
        if pumped.peer.transmitted > 0 {
            *receivers |= 1;
        }
        if cell0_console.take_signal() {
            raise_link_vector(&mut self.for_cell0, number);
        }
        while cell0_console.take_interrupt().is_some() {}
        if let Some(console) = peer_cell.platform.links.first_mut() {
            let signalled = console.take_signal();
            let server = peer_cell.description.kind == CellKind::ServerVm;
            if server && signalled {
                peer_cell
                    .platform
                    .lapic
                    .raise(hvm_logic::link::SERVER_LINK_VECTOR);
                peer_cell.platform.halted = false;
            }
            while let Some(vector) = console.take_interrupt() {
                if !server {
                    peer_cell.platform.lapic.raise(vector);
                    peer_cell.platform.halted = false;
                }
            }
        }
        // A Linux cell's first bytes on its link arm its watchdog (it has
        // no heartbeat hypercall); a server VM heartbeats itself.
        if pumped.peer.transmitted > 0 && peer_cell.description.kind == CellKind::Linux {
            peer_cell.watchdog.feed(arch::rdtsc());
        }
        for (end, fault) in [pumped.cell0.fault, pumped.peer.fault]
            .into_iter()
            .enumerate()
        {
            let Some(fault) = fault else { continue };
            if link.logged < 20 {
                link.logged += 1;
                let cell = if end == 0 { &*cell0 } else { &*peer_cell };
                log!(
                    "cell {} ({}) link: refused: {} (queue {}, link {})",
                    cell.index,
                    cell.description.name,
                    fault.error,
                    fault.queue,
                    number
                );
            }
        }
    }

    /// Link vectors for cell 0 raised while cell 0 itself runs (`vmcs` is
    /// its VMCS) are delivered at once, or held until it can take them;
    /// otherwise they wait in `for_cell0` for its turn (`begin_turn`).
    fn deliver_to_cell0_now(&mut self, vmcs: &Vmcs) {
        let guest = self.cells[0].guest;
        let vectors = core::mem::take(&mut self.for_cell0);
        let mut machine = Machine {
            vmcs,
            tsc_hz: self.clock.hz,
            hlt_activity: self.hlt_activity(),
            for_cell0: &mut self.for_cell0,
        };
        for vector in vectors {
            let _ = guest.external_interrupt(&mut machine, &mut self.cells[0], vector);
        }
    }

    /// Puts the cell's own values of the MSRs VMX does not switch into the
    /// CPU, keeping the previous cell's.
    fn switch_msrs(&mut self, position: usize) {
        if self.msrs_of == Some(position) {
            return;
        }
        if let Some(previous) = self.msrs_of {
            for (slot, &msr) in self.cells[previous]
                .switched_msrs
                .iter_mut()
                .zip(SWITCHED_MSRS.iter())
            {
                // SAFETY: every x86-64 CPU with VT-x has these MSRs.
                *slot = unsafe { arch::rdmsr(msr) };
            }
        }
        for (&value, &msr) in self.cells[position]
            .switched_msrs
            .iter()
            .zip(SWITCHED_MSRS.iter())
        {
            // SAFETY: the values are the cell's own (zero, or what it
            // wrote, which the CPU accepted then); hvm uses none of these
            // MSRs itself.
            unsafe { arch::wrmsr(msr, value) };
        }
        self.msrs_of = Some(position);
    }

    /// Enters a cell and handles exits until it must yield or stop.
    fn enter(&mut self, position: usize) {
        self.switch_msrs(position);
        // SAFETY: the cell's VMCS region, initialised by load(); the token
        // lives for this turn only and no other is alive.
        let vmcs =
            unsafe { Vmcs::load(self.cells[position].vmcs) }.expect("VMPTRLD of a cell's VMCS");
        let slice_end = arch::rdtsc() + 10 * self.clock.per_ms();
        let rate = self.caps.preemption_timer_rate();
        let guest = self.cells[position].guest;
        let mut machine = Machine {
            vmcs: &vmcs,
            tsc_hz: self.clock.hz,
            hlt_activity: self.hlt_activity(),
            for_cell0: &mut self.for_cell0,
        };
        guest.begin_turn(&mut machine, &mut self.cells[position]);
        loop {
            let now = arch::rdtsc();
            let mut machine = Machine {
                vmcs: &vmcs,
                tsc_hz: self.clock.hz,
                hlt_activity: self.hlt_activity(),
                for_cell0: &mut self.for_cell0,
            };
            let cell = &mut self.cells[position];
            let until = match guest.before_entry(&mut machine, cell, now) {
                Some(deadline) => slice_end.min(deadline),
                None => slice_end,
            };
            if self.chosen.preemption_timer() {
                let ticks = (until.saturating_sub(now) >> rate).min(u64::from(u32::MAX));
                vmcs.write(Field::PreemptionTimerValue, ticks);
            }
            // SAFETY: the token says the cell's VMCS is current, and load()
            // completed it (controls, host and guest state); `launched` is
            // false only for the first entry after its VMCLEAR.
            let status = unsafe { arch::run_guest(&mut cell.regs, cell.launched) };
            if status != 0 {
                let what = format!(
                    "VM entry failed (VM-instruction error {})",
                    vmcs.read(Field::InstructionError)
                );
                self.fail(position, &vmcs, &what);
                return;
            }
            cell.launched = true;
            cell.exits += 1;
            vmcs.reinject_vectoring();
            let raw = RawExit {
                reason: vmcs.read(Field::ExitReason) as u32,
                qualification: vmcs.read(Field::ExitQualification),
                guest_physical: vmcs.read(Field::GuestPhysicalAddress),
                interruption_info: vmcs.read(Field::ExitInterruptionInfo) as u32,
            };
            crate::serial::pump();
            let flow = self.handle(position, &vmcs, VmExit::decode(raw));
            let cell = &mut self.cells[position];
            if cell.description.kind == CellKind::Microkernel {
                // Cell 0 waits in the HLT activity state (SDM 27.4.2), not
                // in software: it is halted exactly while the VMCS says so.
                cell.platform.halted = vmcs.read(Field::GuestActivityState) == 1;
            }
            match flow {
                Flow::Resume => {}
                Flow::Yield => return,
            }
            if arch::rdtsc() >= slice_end {
                return;
            }
        }
    }

    /// SDM A.6: IA32_VMX_MISC[6], entry in the HLT activity state.
    fn hlt_activity(&self) -> bool {
        self.caps.misc & (1 << 6) != 0
    }

    /// A cell failed: report it with its RIP and apply its policy.
    pub(crate) fn fail(&mut self, position: usize, vmcs: &Vmcs, what: &str) {
        let cell = &mut self.cells[position];
        let rip = vmcs.read(Field::GuestRip);
        cell.flush_line();
        cell.last_failure = format!("{what} rip={rip:#x}");
        log!(
            "cell {} ({}) failed: {} rip={:#x}",
            cell.index,
            cell.description.name,
            what,
            rip
        );
        match cell.life.failed() {
            Decision::Restart { attempt } => {
                log!(
                    "cell {} ({}) will be restarted (attempt {} of {})",
                    cell.index,
                    cell.description.name,
                    attempt,
                    cell.description.restart_limit
                )
            }
            Decision::Stop => log!("cell {} ({}) stopped", cell.index, cell.description.name),
            Decision::StopAfterLimit { restarts } => log!(
                "cell {} ({}) stopped: restart limit reached after {} restarts",
                cell.index,
                cell.description.name,
                restarts
            ),
            Decision::PowerOff => {
                power_off(false, "a cell failed and its manifest policy is poweroff")
            }
        }
        if let Some(link) = self.links.iter_mut().find(|l| l.peer == Some(position)) {
            link.to_peer.clear();
            link.to_cell0.clear();
        }
    }

    /// Turns what a kind decided into the loop's next step.
    fn outcome(&mut self, position: usize, vmcs: &Vmcs, outcome: Outcome) -> Flow {
        match outcome {
            Outcome::Resume => Flow::Resume,
            Outcome::Yield => Flow::Yield,
            Outcome::Hypercall => self.hypercall(position, vmcs),
            Outcome::Notify => {
                let receivers = self.pump_links();
                if position == 0 {
                    self.deliver_to_cell0_now(vmcs);
                }
                // Directed switch: the other end got bytes and can run, so
                // it runs now instead of after this slice. A bounded streak
                // keeps two chatty cells from starving the rest.
                let for_cell0 = !self.for_cell0.is_empty();
                let target = (0..self.cells.len().min(64)).find(|&p| {
                    let cell = &self.cells[p];
                    p != position
                        && receivers & (1 << p) != 0
                        && cell.life.state == State::Running
                        && (!cell.platform.halted || (p == 0 && for_cell0))
                });
                match target {
                    Some(target) if self.directed_streak < MAX_DIRECTED_STREAK => {
                        self.directed_streak += 1;
                        self.directed = Some(target);
                        Flow::Yield
                    }
                    _ => Flow::Resume,
                }
            }
            Outcome::Fail(what) => {
                self.fail(position, vmcs, &what);
                Flow::Yield
            }
        }
    }

    /// One exit: the common cases here, the kind's through its `Guest`.
    fn handle(&mut self, position: usize, vmcs: &Vmcs, exit: VmExit) -> Flow {
        let guest = self.cells[position].guest;
        let mut machine = Machine {
            vmcs,
            tsc_hz: self.clock.hz,
            hlt_activity: self.hlt_activity(),
            for_cell0: &mut self.for_cell0,
        };
        let cell = &mut self.cells[position];
        let outcome = match exit {
            VmExit::Cpuid => {
                guest.cpuid(&mut machine, cell);
                Outcome::Resume
            }
            VmExit::Vmcall => guest.vmcall(&mut machine, cell),
            VmExit::Io(access) if access.string => {
                let what = format!("string I/O to port {:#x} is not emulated", access.port);
                Outcome::Fail(what)
            }
            VmExit::Io(access) => {
                if devices::pci_io(&mut cell.platform, &mut cell.regs, access) {
                    vmcs.skip_instruction();
                    Outcome::Resume
                } else {
                    guest.io(&mut machine, cell, access)
                }
            }
            VmExit::Rdmsr | VmExit::Wrmsr => {
                guest.msr(&mut machine, cell, exit == VmExit::Wrmsr);
                Outcome::Resume
            }
            VmExit::CrAccess(access) => {
                if self.emulate_cr(position, vmcs, access) {
                    vmcs.skip_instruction();
                    Outcome::Resume
                } else {
                    let what = format!(
                        "unsupported control-register access (CR{})",
                        access.register
                    );
                    Outcome::Fail(what)
                }
            }
            VmExit::Hlt => guest.hlt(&mut machine, cell),
            VmExit::ExternalInterrupt { vector } => {
                guest.external_interrupt(&mut machine, cell, vector)
            }
            VmExit::InterruptWindow => {
                vmcs.interrupt_window(false);
                guest.interrupt_window(&mut machine, cell);
                Outcome::Resume
            }
            VmExit::PreemptionTimer => Outcome::Resume,
            VmExit::VmxInstruction => {
                vmcs.inject_exception(6, None);
                Outcome::Resume
            }
            VmExit::Xsetbv => {
                guest.xsetbv(&mut machine, cell);
                Outcome::Resume
            }
            VmExit::EptViolation(violation) => {
                let memory = cell.memory;
                match devices::mmio(vmcs, memory, &mut cell.platform, &mut cell.regs, violation) {
                    Some(exit) => exit.into(),
                    None => {
                        let kind = if violation.write {
                            "write"
                        } else if violation.fetch {
                            "instruction fetch"
                        } else {
                            "read"
                        };
                        let what = format!(
                            "EPT violation ({kind} at gpa={:#x}, outside the cell's memory)",
                            violation.guest_physical
                        );
                        Outcome::Fail(what)
                    }
                }
            }
            VmExit::TripleFault
            | VmExit::InvalidGuestState
            | VmExit::MsrLoading
            | VmExit::MachineCheckAtEntry
            | VmExit::EptMisconfig { .. }
            | VmExit::InitSignal
            | VmExit::StartupIpi
            | VmExit::ExceptionOrNmi { .. }
            | VmExit::Other(_) => {
                let mut what = String::new();
                let _ = match exit {
                    VmExit::Other(reason) => write!(what, "unhandled exit (basic reason {reason})"),
                    VmExit::ExceptionOrNmi { vector } => {
                        write!(what, "unexpected exception exit (vector {vector})")
                    }
                    _ => write!(
                        what,
                        "{} (qualification {:#x})",
                        exit.name(),
                        vmcs.read(Field::ExitQualification)
                    ),
                };
                Outcome::Fail(what)
            }
        };
        self.outcome(position, vmcs, outcome)
    }

    /// MOV to CR0 or CR4 (the guest/host masks own the bits VMX forces;
    /// SDM 25.6.6): the guest reads what it wrote, the CPU runs with the
    /// forced bits.
    fn emulate_cr(&mut self, position: usize, vmcs: &Vmcs, access: CrAccess) -> bool {
        if access.access_type != 0 || !matches!(access.register, 0 | 4) {
            return false;
        }
        let value = if access.gpr == 4 {
            vmcs.read(Field::GuestRsp)
        } else {
            match self.cells[position].regs.by_number(access.gpr) {
                Some(register) => *register,
                None => return false,
            }
        };
        if access.register == 0 {
            vmcs.write(Field::Cr0ReadShadow, value);
            vmcs.write(
                Field::GuestCr0,
                controls::fixed_bits(value, self.caps.cr0_fixed0, self.caps.cr0_fixed1),
            );
        } else {
            vmcs.write(Field::Cr4ReadShadow, value);
            vmcs.write(
                Field::GuestCr4,
                controls::fixed_bits(value, self.caps.cr4_fixed0, self.caps.cr4_fixed1),
            );
        }
        true
    }
}
