//! System-call numbers, the register convention, operations and flags.
//!
//! Register convention for the `syscall` instruction (the System V order,
//! with R10 in place of RCX because `syscall` overwrites RCX):
//!
//! - RAX: the [`Syscall`] number in; the status out (0 = success, else an
//!   [`Error`] code; for `ipc` an
//!   [`IpcError`](crate::IpcError) status word).
//! - Arguments 0..=5 in RDI, RSI, RDX, R10, R8, R9. Results come back in
//!   the same six registers; each call below says which carry results.
//!   Those that carry none are zero on return, so no kernel value leaks.
//! - `ipc` alone also passes MR3..MR6 in R12..R15, in and out, so that a
//!   message of up to six words never touches memory. Every other call
//!   preserves R12..R15.
//! - RCX and R11 are destroyed (the CPU puts the return RIP and RFLAGS
//!   there). RBX, RBP and RSP are preserved by every call.
//!
//! Invariants:
//! - Numbers and bit positions here are ABI; [`Syscall::try_from`] and the
//!   `from_raw` functions reject anything unknown instead of guessing, and
//!   reserved flag bits must be zero.
//! - The set is small on purpose (L4 X.2 has a dozen calls; this has twelve).

use crate::error::Error;

/// System-call numbers (RAX on entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Syscall {
    /// Send and/or receive a message (L4 X.2, "IPC"). In: RDI `to`
    /// (nil = no send phase), RSI `from` (nil = no receive phase, any =
    /// open receive), RDX [`Timeouts`](crate::Timeouts), R10 = MR0 (tag),
    /// R8, R9, R12..R15 = MR1..MR6; MR7 onward in the UTCB. Out: RAX status,
    /// RSI the sender of the received message, R10, R8, R9, R12..R15 = the
    /// received MR0..MR6 (only after a completed receive phase).
    Ipc = 0,
    /// Create or delete a thread (L4 X.2, "ThreadControl"); root task only.
    /// In: RDI [`ThreadControlOperation`]; Create: RSI task, RDX pager,
    /// R10 UTCB address (page aligned), out RDI the new thread id;
    /// Delete: RSI thread.
    ThreadControl = 1,
    /// Create or destroy a task, i.e. an address space (L4 X.2,
    /// "SpaceControl"); root task only. In: RDI [`SpaceControlOperation`];
    /// Create: out RDI the new task id; Destroy: RSI task; GrantPorts:
    /// RSI task, RDX first port, R10 port count.
    SpaceControl = 2,
    /// Read and change a thread's user state (L4 X.2, "ExchangeRegisters").
    /// In: RDI thread, RSI [`ExchangeControl`], RDX instruction pointer,
    /// R10 stack pointer, R8 pager. Out: RSI [`ThreadStateFlags`], RDX old
    /// instruction pointer, R10 old stack pointer, R8 old pager.
    ExchangeRegisters = 3,
    /// Set a thread's priority and timeslice (L4 X.2, "Schedule").
    /// In: RDI thread, RSI priority 0..=255 or [`KEEP`], RDX timeslice in
    /// microseconds or [`KEEP`]. Out: RSI old priority, RDX old timeslice.
    Schedule = 4,
    /// Give up the rest of the timeslice to threads of the same priority
    /// (L4 X.2, "ThreadSwitch" with a nil destination). No arguments.
    Yield = 5,
    /// Revoke rights from mappings derived from the caller's pages
    /// (L4 X.2, "Unmap"). In: RDI flexpage (its rights are the rights to
    /// revoke), RSI [`UnmapFlags`].
    Unmap = 6,
    /// Associate a thread with an interrupt, or acknowledge one
    /// (L4 X.2, "Interrupt"). In: RDI [`InterruptControlOperation`],
    /// RSI interrupt number, RDX handler thread (Associate only).
    InterruptControl = 7,
    /// Write bytes to the kernel console. In: RDI address, RSI length (at
    /// most [`MAX_DEBUG_WRITE`]). Out: RDI bytes written.
    DebugWrite = 8,
    /// Read one kernel fact. In: RDI [`KernelInfoSelector`]. Out: RDI value.
    KernelInfo = 9,
    /// Root task only: forward one hypercall to hvm (docs/hypercalls.md).
    /// In: RDI the hypercall number, RSI and RDX its arguments. Only
    /// [`HVM_CALLS`] are forwarded. Out: RDI hvm's status (0, or an
    /// `hvm_abi::HypercallError` code), RSI hvm's RDX value. For
    /// `CellInfo`, RDX is a user address of a buffer of
    /// [`HVM_CELL_INFO_BYTES`] the kernel fills. `NotSupported` in bare
    /// mode (no hvm).
    HvmCall = 10,
    /// Root task only: map a device window (physical pages outside the
    /// cell's memory) uncached into the caller's own space. In: RDI the
    /// physical address, RSI bytes (both page aligned, at most
    /// [`MAX_DEVICE_WINDOW`]), RDX the user address (page aligned, every
    /// page unmapped).
    DeviceMap = 11,
}

impl Syscall {
    /// Every system call, in number order.
    pub const ALL: [Syscall; 12] = [
        Syscall::Ipc,
        Syscall::ThreadControl,
        Syscall::SpaceControl,
        Syscall::ExchangeRegisters,
        Syscall::Schedule,
        Syscall::Yield,
        Syscall::Unmap,
        Syscall::InterruptControl,
        Syscall::DebugWrite,
        Syscall::KernelInfo,
        Syscall::HvmCall,
        Syscall::DeviceMap,
    ];

    /// The RAX value.
    pub const fn number(self) -> u64 {
        self as u64
    }
}

impl TryFrom<u64> for Syscall {
    type Error = Error;

    fn try_from(number: u64) -> Result<Syscall, Error> {
        usize::try_from(number)
            .ok()
            .and_then(|index| Syscall::ALL.get(index).copied())
            .ok_or(Error::InvalidSyscall)
    }
}

/// "Leave unchanged", for `schedule`'s priority and timeslice.
pub const KEEP: u64 = u64::MAX;

/// The priority of a new thread. 255 is the highest priority, 0 the lowest.
pub const DEFAULT_PRIORITY: u8 = 128;

/// The timeslice of a new thread, in microseconds.
pub const DEFAULT_TIMESLICE_MICROSECONDS: u32 = 10_000;

/// The shortest timeslice `schedule` accepts, in microseconds; shorter
/// slices would spend more time switching than running.
pub const MIN_TIMESLICE_MICROSECONDS: u32 = 100;

/// The longest timeslice `schedule` accepts, in microseconds (one second).
pub const MAX_TIMESLICE_MICROSECONDS: u32 = 1_000_000;

/// The most bytes one `debug_write` takes.
pub const MAX_DEBUG_WRITE: u64 = 1024;

/// The hypercalls `hvm_call` forwards (hvm_abi numbers): `CellStatus`,
/// `CellControl`, `LinkStatus`, `CellInfo`, `ExitCount`. Every other
/// number is refused (`NotPermitted` for hvm's other calls,
/// `InvalidArgument` for numbers hvm does not define).
pub const HVM_CALLS: [u64; 5] = [2, 3, 9, 11, 13];

/// The `CellInfo` hypercall, whose second argument is a buffer.
pub const HVM_CELL_INFO: u64 = 11;

/// Highest hypercall number hvm defines (hvm_abi); above it `hvm_call`
/// answers `InvalidArgument`.
pub const HVM_LAST_CALL: u64 = 13;

/// Bytes of `hvm_abi::CellInfo`, the buffer of an `hvm_call(CellInfo)`.
pub const HVM_CELL_INFO_BYTES: u64 = 212;

/// The largest window one `device_map` maps (1 MiB).
pub const MAX_DEVICE_WINDOW: u64 = 1 << 20;

/// Operations of `thread_control` (RDI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum ThreadControlOperation {
    /// Create a halted thread in a task; start it with `exchange_registers`
    /// (set instruction and stack pointer, resume).
    Create = 0,
    /// Delete a thread; its IPC partners get [`Error::PartnerDestroyed`].
    Delete = 1,
}

impl TryFrom<u64> for ThreadControlOperation {
    type Error = Error;

    fn try_from(word: u64) -> Result<Self, Error> {
        match word {
            0 => Ok(ThreadControlOperation::Create),
            1 => Ok(ThreadControlOperation::Delete),
            _ => Err(Error::InvalidArgument),
        }
    }
}

/// Operations of `space_control` (RDI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum SpaceControlOperation {
    /// Create an empty task with no threads and no mappings.
    Create = 0,
    /// Destroy a task: its threads, and every mapping in it and derived
    /// from it.
    Destroy = 1,
    /// Open a range of I/O ports to a task other than the root task, for
    /// as long as the task lives (a device the manifest gives a task
    /// server). The range may not overlap another grant or the PCI
    /// configuration ports; at most 256 ports a grant, 8 grants.
    GrantPorts = 2,
}

impl TryFrom<u64> for SpaceControlOperation {
    type Error = Error;

    fn try_from(word: u64) -> Result<Self, Error> {
        match word {
            0 => Ok(SpaceControlOperation::Create),
            1 => Ok(SpaceControlOperation::Destroy),
            2 => Ok(SpaceControlOperation::GrantPorts),
            _ => Err(Error::InvalidArgument),
        }
    }
}

/// Operations of `interrupt_control` (RDI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum InterruptControlOperation {
    /// Make a thread the interrupt's handler and unmask it; root task only.
    Associate = 0,
    /// Mask the interrupt and forget its handler; root task only.
    Dissociate = 1,
    /// Unmask the interrupt after handling it; its handler only. The kernel
    /// masks an interrupt when it sends the message, so that a slow handler
    /// gets one message, not a storm.
    Acknowledge = 2,
}

impl TryFrom<u64> for InterruptControlOperation {
    type Error = Error;

    fn try_from(word: u64) -> Result<Self, Error> {
        match word {
            0 => Ok(InterruptControlOperation::Associate),
            1 => Ok(InterruptControlOperation::Dissociate),
            2 => Ok(InterruptControlOperation::Acknowledge),
            _ => Err(Error::InvalidArgument),
        }
    }
}

/// What `kernel_info` reports (RDI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum KernelInfoSelector {
    /// [`ABI_VERSION`](crate::ABI_VERSION).
    ApiVersion = 0,
    /// The caller's [`ThreadId`](crate::ThreadId).
    CurrentThread = 1,
    /// The caller's [`TaskId`](crate::TaskId).
    CurrentTask = 2,
    /// Microseconds since the kernel started.
    ClockMicroseconds = 3,
    /// The user address of the caller's UTCB.
    UtcbAddress = 4,
    /// Root task only (others get `NotPermitted`): the next byte of
    /// console input, or [`NO_CONSOLE_INPUT`] when none is waiting. Polled:
    /// it never blocks. The root task owns the console (core's `/dev/cons`).
    ConsoleInput = 5,
}

/// What `kernel_info(ConsoleInput)` answers when no byte is waiting.
pub const NO_CONSOLE_INPUT: u64 = 0x100;

impl TryFrom<u64> for KernelInfoSelector {
    type Error = Error;

    fn try_from(word: u64) -> Result<Self, Error> {
        match word {
            0 => Ok(KernelInfoSelector::ApiVersion),
            1 => Ok(KernelInfoSelector::CurrentThread),
            2 => Ok(KernelInfoSelector::CurrentTask),
            3 => Ok(KernelInfoSelector::ClockMicroseconds),
            4 => Ok(KernelInfoSelector::UtcbAddress),
            5 => Ok(KernelInfoSelector::ConsoleInput),
            _ => Err(Error::InvalidArgument),
        }
    }
}

bitflags::bitflags! {
    /// The control word of `exchange_registers` (RSI in).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ExchangeControl: u64 {
        /// Set the instruction pointer from RDX.
        const SET_INSTRUCTION_POINTER = 1 << 0;
        /// Set the stack pointer from R10.
        const SET_STACK_POINTER = 1 << 1;
        /// Set the pager from R8.
        const SET_PAGER = 1 << 2;
        /// Stop the thread from running (an IPC it is in goes on).
        const HALT = 1 << 3;
        /// Let a halted thread run again; not together with `HALT`.
        const RESUME = 1 << 4;
        /// Abort a pending send phase with [`Error::Cancelled`].
        const CANCEL_SEND = 1 << 5;
        /// Abort a pending receive phase with [`Error::Cancelled`].
        const CANCEL_RECEIVE = 1 << 6;
    }
}

impl ExchangeControl {
    /// Decodes the control word: unknown bits, or `HALT` with `RESUME`,
    /// are [`Error::InvalidArgument`].
    pub fn from_raw(word: u64) -> Result<ExchangeControl, Error> {
        let control = ExchangeControl::from_bits(word).ok_or(Error::InvalidArgument)?;
        if control.contains(ExchangeControl::HALT | ExchangeControl::RESUME) {
            return Err(Error::InvalidArgument);
        }
        Ok(control)
    }
}

bitflags::bitflags! {
    /// A thread's state as `exchange_registers` reports it (RSI out).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct ThreadStateFlags: u64 {
        /// Halted: it will not run until resumed.
        const HALTED = 1 << 0;
        /// Blocked in an IPC send phase.
        const SENDING = 1 << 1;
        /// Blocked in an IPC receive phase (including waiting for a reply).
        const RECEIVING = 1 << 2;
    }
}

bitflags::bitflags! {
    /// Flags of `unmap` (RSI).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct UnmapFlags: u64 {
        /// Revoke the rights from the caller's own mappings too, not only
        /// from those derived from them (L4 X.2, "Unmap": the flush bit).
        const INCLUDE_SELF = 1 << 0;
    }
}

impl UnmapFlags {
    /// Decodes RSI; unknown bits are [`Error::InvalidArgument`].
    pub fn from_raw(word: u64) -> Result<UnmapFlags, Error> {
        UnmapFlags::from_bits(word).ok_or(Error::InvalidArgument)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for (position, syscall) in Syscall::ALL.iter().enumerate() {
            assert_eq!(syscall.number(), position as u64);
            assert_eq!(Syscall::try_from(syscall.number()), Ok(*syscall));
        }
        assert_eq!(Syscall::try_from(12), Err(Error::InvalidSyscall));
        assert_eq!(Syscall::try_from(u64::MAX), Err(Error::InvalidSyscall));
    }

    #[test]
    fn operations_decode() {
        assert_eq!(
            ThreadControlOperation::try_from(1),
            Ok(ThreadControlOperation::Delete)
        );
        assert_eq!(
            ThreadControlOperation::try_from(2),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            SpaceControlOperation::try_from(0),
            Ok(SpaceControlOperation::Create)
        );
        assert_eq!(
            SpaceControlOperation::try_from(9),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            InterruptControlOperation::try_from(2),
            Ok(InterruptControlOperation::Acknowledge)
        );
        assert_eq!(
            InterruptControlOperation::try_from(3),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            KernelInfoSelector::try_from(4),
            Ok(KernelInfoSelector::UtcbAddress)
        );
        assert_eq!(KernelInfoSelector::try_from(6), Err(Error::InvalidArgument));
    }

    #[test]
    fn flags_decode_strictly() {
        assert_eq!(
            ExchangeControl::from_raw(0b11),
            Ok(ExchangeControl::SET_INSTRUCTION_POINTER | ExchangeControl::SET_STACK_POINTER)
        );
        assert_eq!(
            ExchangeControl::from_raw(1 << 7),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            ExchangeControl::from_raw(0b1_1000),
            Err(Error::InvalidArgument)
        );
        assert_eq!(UnmapFlags::from_raw(1), Ok(UnmapFlags::INCLUDE_SELF));
        assert_eq!(UnmapFlags::from_raw(2), Err(Error::InvalidArgument));
    }
}
