//! Error codes the kernel returns in RAX, with stable numbers and text.
//!
//! Invariants:
//! - 0 means success and is not an [`Error`]; every error code is in 1..=255.
//! - A code, once given to a variant, is never reused for another meaning.
//! - IPC status words add the failing phase at bit 16 ([`IpcError`]); other
//!   system calls return a bare code.

use core::fmt;

/// Why a system call failed. The discriminant is the code in RAX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Error {
    /// RAX held a number that names no system call.
    InvalidSyscall = 1,
    /// An argument is malformed: an unknown operation or flag bit, reserved
    /// bits set, or a value out of range.
    InvalidArgument = 2,
    /// The thread id is nil, stale (its thread was destroyed) or names no
    /// thread, or IPC names the calling thread as its own partner.
    InvalidThread = 3,
    /// The task id is nil, stale or names no task.
    NoSuchTask = 4,
    /// The caller may not do this (e.g. a privileged call from a task other
    /// than the root task).
    NotPermitted = 5,
    /// A user pointer or range is outside the user half of the address
    /// space, wraps around, or is misaligned.
    BadAddress = 6,
    /// The IPC timeout ran out, or was zero and no partner was ready.
    Timeout = 7,
    /// The message does not fit: too many words, more strings than the
    /// receiver offered buffers, a string longer than its buffer, or a map
    /// or grant item for a receiver whose receive window is nil.
    MessageTooLong = 8,
    /// The IPC was cancelled by `exchange_registers`.
    Cancelled = 9,
    /// The partner thread was destroyed while this thread waited for it.
    PartnerDestroyed = 10,
    /// The kernel ran out of a fixed resource (thread table, memory).
    OutOfResources = 11,
    /// The thing to be created exists already (e.g. an interrupt already has
    /// a handler, or the address is already mapped).
    AlreadyExists = 12,
    /// A typed item or flexpage is malformed (unknown kind, misaligned base,
    /// size outside 2^12..=2^47).
    InvalidItem = 13,
    /// Copying a string item touched an unmapped or read-only page of the
    /// sender's or receiver's buffer; nothing of the IPC was delivered.
    StringFault = 14,
    /// The kernel knows this request but does not implement it (yet).
    NotSupported = 15,
}

impl Error {
    /// Every error, in code order; used to test that codes are unique.
    pub const ALL: [Error; 15] = [
        Error::InvalidSyscall,
        Error::InvalidArgument,
        Error::InvalidThread,
        Error::NoSuchTask,
        Error::NotPermitted,
        Error::BadAddress,
        Error::Timeout,
        Error::MessageTooLong,
        Error::Cancelled,
        Error::PartnerDestroyed,
        Error::OutOfResources,
        Error::AlreadyExists,
        Error::InvalidItem,
        Error::StringFault,
        Error::NotSupported,
    ];

    /// The code the kernel puts in RAX.
    pub const fn code(self) -> u64 {
        self as u64
    }

    /// The error for a code, or `None` for 0 (success) and unknown codes.
    pub const fn from_code(code: u64) -> Option<Error> {
        Some(match code {
            1 => Error::InvalidSyscall,
            2 => Error::InvalidArgument,
            3 => Error::InvalidThread,
            4 => Error::NoSuchTask,
            5 => Error::NotPermitted,
            6 => Error::BadAddress,
            7 => Error::Timeout,
            8 => Error::MessageTooLong,
            9 => Error::Cancelled,
            10 => Error::PartnerDestroyed,
            11 => Error::OutOfResources,
            12 => Error::AlreadyExists,
            13 => Error::InvalidItem,
            14 => Error::StringFault,
            15 => Error::NotSupported,
            _ => return None,
        })
    }

    /// Turns a non-IPC RAX value into a result. A code this crate does not
    /// know (a newer kernel) reads as [`Error::NotSupported`] rather than as
    /// success, so a caller never mistakes a failure for an answer.
    pub const fn check(code: u64) -> Result<(), Error> {
        if code == 0 {
            return Ok(());
        }
        match Error::from_code(code) {
            Some(error) => Err(error),
            None => Err(Error::NotSupported),
        }
    }

    const fn text(self) -> &'static str {
        match self {
            Error::InvalidSyscall => "unknown system call number",
            Error::InvalidArgument => "invalid argument",
            Error::InvalidThread => "no such thread (nil, stale or destroyed id)",
            Error::NoSuchTask => "no such task",
            Error::NotPermitted => "operation not permitted",
            Error::BadAddress => "bad user address",
            Error::Timeout => "IPC timed out",
            Error::MessageTooLong => "message too long for the receiver",
            Error::Cancelled => "IPC cancelled",
            Error::PartnerDestroyed => "IPC partner destroyed",
            Error::OutOfResources => "kernel resources exhausted",
            Error::AlreadyExists => "already exists",
            Error::InvalidItem => "malformed typed item or flexpage",
            Error::StringFault => "fault while copying a string item",
            Error::NotSupported => "not supported",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.text())
    }
}

impl core::error::Error for Error {}

/// Which half of an IPC failed. A failed send phase delivered nothing and
/// skipped the receive phase; a failed receive phase came after a completed
/// send (L4 X.2, "IPC": ErrorCode's phase bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpcPhase {
    /// The message was not delivered.
    Send = 0,
    /// The message (if any) was delivered; nothing was received.
    Receive = 1,
}

/// An IPC failure: what went wrong and in which phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpcError {
    /// What went wrong.
    pub error: Error,
    /// Where it went wrong.
    pub phase: IpcPhase,
}

/// Bit of the IPC status word that marks a receive-phase failure.
pub const IPC_RECEIVE_PHASE_BIT: u64 = 1 << 16;

impl IpcError {
    /// A send-phase failure.
    pub const fn send(error: Error) -> IpcError {
        IpcError {
            error,
            phase: IpcPhase::Send,
        }
    }

    /// A receive-phase failure.
    pub const fn receive(error: Error) -> IpcError {
        IpcError {
            error,
            phase: IpcPhase::Receive,
        }
    }

    /// The RAX value of a failed `ipc`.
    pub const fn status(self) -> u64 {
        let phase = match self.phase {
            IpcPhase::Send => 0,
            IpcPhase::Receive => IPC_RECEIVE_PHASE_BIT,
        };
        self.error.code() | phase
    }

    /// Decodes the RAX value of `ipc`. Unknown codes read as
    /// [`Error::NotSupported`] for the same reason as in [`Error::check`].
    pub const fn from_status(status: u64) -> Result<(), IpcError> {
        if status == 0 {
            return Ok(());
        }
        let phase = if status & IPC_RECEIVE_PHASE_BIT != 0 {
            IpcPhase::Receive
        } else {
            IpcPhase::Send
        };
        let error = match Error::from_code(status & 0xFFFF) {
            Some(error) => error,
            None => Error::NotSupported,
        };
        Err(IpcError { error, phase })
    }
}

impl fmt::Display for IpcError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            IpcPhase::Send => "send",
            IpcPhase::Receive => "receive",
        };
        write!(formatter, "{} (in the {phase} phase)", self.error)
    }
}

impl core::error::Error for IpcError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        for (position, error) in Error::ALL.iter().enumerate() {
            assert_eq!(error.code(), position as u64 + 1);
            assert_eq!(Error::from_code(error.code()), Some(*error));
            assert_eq!(Error::check(error.code()), Err(*error));
        }
        assert_eq!(Error::from_code(0), None);
        assert_eq!(Error::from_code(16), None);
        assert_eq!(Error::check(0), Ok(()));
        assert_eq!(Error::check(999), Err(Error::NotSupported));
    }

    #[test]
    fn ipc_status_round_trips() {
        for error in Error::ALL {
            for ipc_error in [IpcError::send(error), IpcError::receive(error)] {
                assert_eq!(IpcError::from_status(ipc_error.status()), Err(ipc_error));
            }
        }
        assert_eq!(IpcError::from_status(0), Ok(()));
        assert_eq!(Error::Timeout.code(), 7);
        assert_eq!(IpcError::receive(Error::Timeout).status(), 0x1_0007);
    }

    #[test]
    fn display_is_human_text() {
        extern crate std;
        use std::string::ToString;
        assert_eq!(Error::Timeout.to_string(), "IPC timed out");
        assert_eq!(
            IpcError::receive(Error::PartnerDestroyed).to_string(),
            "IPC partner destroyed (in the receive phase)"
        );
    }
}
