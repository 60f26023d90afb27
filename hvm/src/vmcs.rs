//! The current VMCS, reachable only through a token that VMPTRLD creates.
//!
//! VMREAD and VMWRITE act on whichever VMCS is current on this CPU (SDM
//! 25.1 "Overview"), so a field access is only right while the VMCS meant
//! is the current one. [`Vmcs`] is the proof of that: only a successful
//! VMPTRLD (SDM 31.3) makes one, it cannot be copied, cloned or sent to
//! another CPU, and whoever makes one promises that no other VMCS becomes
//! current while it lives. Every field access, and every event injection
//! built from them, is a method on it.

use core::marker::PhantomData;

use hvm_logic::controls::ProcBased;
use hvm_logic::vmcs::Field;

use crate::arch;

/// Proof that a cell's VMCS is current on this CPU.
pub struct Vmcs {
    /// Not `Send` or `Sync`: "current" is a property of one CPU.
    _this_cpu: PhantomData<*mut ()>,
}

impl Vmcs {
    /// Makes the VMCS at `region` current (VMPTRLD). `None` on VMfail.
    ///
    /// # Safety
    /// VMX is on; `region` is a 4 KiB VMCS region holding the revision id
    /// and owned by one cell; no other [`Vmcs`] is alive (the one made
    /// here replaces whatever VMCS was current), and none is made until
    /// this one is dropped.
    pub unsafe fn load(region: u64) -> Option<Self> {
        // SAFETY: forwarded to the caller.
        let loaded = unsafe { arch::vmptrld(region) };
        loaded.then_some(Self {
            _this_cpu: PhantomData,
        })
    }

    /// VMCLEARs the region first (so its next entry is a VMLAUNCH, SDM
    /// 25.1), then makes it current as [`Vmcs::load`].
    ///
    /// # Safety
    /// As [`Vmcs::load`].
    pub unsafe fn clear_and_load(region: u64) -> Option<Self> {
        // SAFETY: forwarded to the caller.
        if !unsafe { arch::vmclear(region) } {
            return None;
        }
        // SAFETY: forwarded to the caller.
        unsafe { Self::load(region) }
    }

    /// VMREAD of `field`.
    pub fn read(&self, field: Field) -> u64 {
        // SAFETY: the token exists only while this VMCS is current.
        unsafe { arch::vmread(field.encoding()) }
    }

    /// VMWRITE of a field an exit handler may change
    /// (`Field::guest_writable`: guest state, event injection, CR read
    /// shadows). Controls and host state decide what the cell can reach,
    /// so they go through [`Vmcs::write_control`]; asking for one here
    /// panics.
    pub fn write(&self, field: Field, value: u64) {
        assert!(
            field.guest_writable(),
            "VMCS field {:#x} is not the guest's",
            field.encoding()
        );
        // SAFETY: a guest-state or event field (checked above) of the
        // current VMCS (the token); it cannot widen the cell's reach.
        unsafe { self.write_control(field, value) }
    }

    /// VMWRITE of any field. A refused write is logged: it means hvm broke
    /// a rule of SDM chapter 25, and the next entry will say which.
    ///
    /// # Safety
    /// Control and host-state fields decide what the cell can reach (EPT
    /// pointer, MSR and I/O exiting) and where the CPU goes on an exit
    /// (host RIP, RSP, CR3): the caller writes values that keep the cell
    /// inside its memory and hvm's host state intact (SDM 25.5, 25.6).
    pub unsafe fn write_control(&self, field: Field, value: u64) {
        debug_assert!(field.fits(value));
        // SAFETY: the token exists only while this VMCS is current; the
        // value's meaning is the caller's contract.
        if !unsafe { arch::vmwrite(field.encoding(), value) } {
            log!("VMWRITE {:#x} <- {:#x} failed", field.encoding(), value);
        }
    }

    /// Moves RIP past the instruction that exited.
    pub fn skip_instruction(&self) {
        let rip = self.read(Field::GuestRip);
        let length = self.read(Field::ExitInstructionLength);
        self.write(Field::GuestRip, rip + length);
        self.end_interrupt_shadow();
    }

    /// Moving past an instruction ends STI/MOV-SS blocking (SDM 26.3.1.5).
    pub fn end_interrupt_shadow(&self) {
        let interruptibility = self.read(Field::GuestInterruptibility);
        if interruptibility & 0b11 != 0 {
            self.write(Field::GuestInterruptibility, interruptibility & !0b11);
        }
    }

    /// Whether the vCPU can take an external interrupt now: RFLAGS.IF and
    /// no STI/MOV-SS blocking (SDM 26.3.1.5).
    pub fn interruptible(&self) -> bool {
        self.read(Field::GuestRflags) & (1 << 9) != 0
            && self.read(Field::GuestInterruptibility) & 0b11 == 0
    }

    /// Whether an event is already set up for injection at the next entry.
    pub fn injecting(&self) -> bool {
        self.read(Field::EntryInterruptionInfo) & (1 << 31) != 0
    }

    /// Asks for (or stops asking for) an exit as soon as the vCPU can take
    /// an interrupt (SDM 25.6.2 "interrupt-window exiting").
    pub fn interrupt_window(&self, wanted: bool) {
        let bit = u64::from(ProcBased::INTERRUPT_WINDOW_EXITING.bits());
        let procbased = self.read(Field::ProcBasedControls);
        let procbased = if wanted {
            procbased | bit
        } else {
            procbased & !bit
        };
        // SAFETY: only the interrupt-window bit changes; it adds exits.
        unsafe { self.write_control(Field::ProcBasedControls, procbased) };
    }

    /// Injects an external interrupt (SDM 25.8.3, type 0) and wakes the
    /// vCPU from HLT.
    pub fn inject_external(&self, vector: u8) {
        self.write(Field::EntryInterruptionInfo, (1 << 31) | u64::from(vector));
        self.write(Field::GuestActivityState, 0);
    }

    /// Injects a hardware exception (type 3) with an optional error code.
    pub fn inject_exception(&self, vector: u8, error_code: Option<u32>) {
        let mut info = (1u64 << 31) | (3 << 8) | u64::from(vector);
        if let Some(code) = error_code {
            info |= 1 << 11;
            self.write(Field::EntryExceptionErrorCode, u64::from(code));
        }
        self.write(Field::EntryInterruptionInfo, info);
    }

    /// An exit during event delivery leaves the event in the IDT-vectoring
    /// field; it is injected again on the next entry (SDM 28.2.4, 27.6.1).
    pub fn reinject_vectoring(&self) {
        let info = self.read(Field::IdtVectoringInfo);
        if info & (1 << 31) == 0 {
            return;
        }
        self.write(Field::EntryInterruptionInfo, info & !(1 << 12));
        if info & (1 << 11) != 0 {
            self.write(
                Field::EntryExceptionErrorCode,
                self.read(Field::IdtVectoringErrorCode),
            );
        }
        // Software interrupts and exceptions need their instruction length.
        if matches!((info >> 8) & 7, 4..=6) {
            self.write(
                Field::EntryInstructionLength,
                self.read(Field::ExitInstructionLength),
            );
        }
    }
}
