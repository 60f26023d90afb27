//! The user thread control block (UTCB): a page of per-thread registers.
//!
//! One page per thread, shared with the kernel, holding the message
//! registers, the receive targets and a few kernel-written facts.
//!
//! Layout (byte offsets; L4 X.2, "Virtual Registers", with the TCRs that
//! the kernel must trust, such as the pager, kept in the kernel instead):
//!
//! | offset  | field                | written by                    |
//! |---------|----------------------|-------------------------------|
//! | 0x000   | `self_address`       | kernel, at creation           |
//! | 0x008   | `thread_id`          | kernel, at creation           |
//! | 0x010   | `task_id`            | kernel, at creation           |
//! | 0x018   | `user_handle`        | user only                     |
//! | 0x020   | `error_detail`       | kernel, on some IPC errors    |
//! | 0x028   | `receive_window`     | user; kernel reads on receive |
//! | 0x030   | reserved             |                               |
//! | 0x100   | `message_registers`  | both: MR0..MR63               |
//! | 0x300   | `receive_buffers`    | user; kernel reads on receive |
//! | 0x380   | reserved to 0x1000   |                               |
//!
//! The kernel sets the thread's GS base to the UTCB's address, so user code
//! finds it at `gs:[0]` (`self_address`); `kernel_info(UtcbAddress)` also
//! reports it.
//!
//! Invariants:
//! - The struct is exactly one page and page aligned; the offsets above are
//!   checked at compile time.
//! - MR0..MR6 travel in CPU registers: the kernel neither reads nor writes
//!   `message_registers[0..7]`; the runtime's `user` wrappers copy them in
//!   and out.
//! - The kernel trusts nothing it reads here: it reads each word once
//!   (volatile, since other threads of the task can write the page at any
//!   time) and validates it like a register argument.
//! - The receive window and buffers tell the kernel where it may write into
//!   the task's memory, so this crate offers no way to set them: user code
//!   sets them only through the `unsafe` setters of the user runtime
//!   (`microkernel_rt::utcb::ReceiveTargets`), whose contracts make later
//!   safe `ipc` calls sound. Clearing them is always safe.

use crate::message::MESSAGE_REGISTER_COUNT;

/// Receive buffers per thread: string items beyond this many are refused.
pub const RECEIVE_BUFFER_COUNT: usize = 8;

/// Where the n-th received string item goes. Length 0 marks an unused slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ReceiveBuffer {
    /// User address of the buffer.
    pub address: u64,
    /// Its length in bytes.
    pub length: u64,
}

/// The UTCB page. See the module documentation for the layout.
#[repr(C, align(4096))]
pub struct Utcb {
    /// The UTCB's own user address, so `gs:[0]` yields a pointer to it.
    pub self_address: u64,
    /// The thread's id (raw [`ThreadId`](crate::ThreadId)).
    pub thread_id: u64,
    /// The thread's task (raw [`TaskId`](crate::TaskId)).
    pub task_id: u64,
    /// Free for the user's thread library; the kernel never touches it.
    pub user_handle: u64,
    /// After an IPC failed with [`StringFault`](crate::Error::StringFault):
    /// the user address that could not be accessed. Otherwise unspecified.
    pub error_detail: u64,
    receive_window: u64,
    reserved_header: [u64; 26],
    /// MR0..MR63. MR0 is the tag; see the invariants about MR0..MR6.
    pub message_registers: [u64; MESSAGE_REGISTER_COUNT],
    receive_buffers: [ReceiveBuffer; RECEIVE_BUFFER_COUNT],
    reserved_tail: [u64; 400],
}

const _: () = {
    assert!(core::mem::size_of::<Utcb>() == 4096);
    assert!(core::mem::align_of::<Utcb>() == 4096);
    assert!(core::mem::offset_of!(Utcb, self_address) == Utcb::SELF_ADDRESS_OFFSET);
    assert!(core::mem::offset_of!(Utcb, thread_id) == Utcb::THREAD_ID_OFFSET);
    assert!(core::mem::offset_of!(Utcb, task_id) == Utcb::TASK_ID_OFFSET);
    assert!(core::mem::offset_of!(Utcb, user_handle) == Utcb::USER_HANDLE_OFFSET);
    assert!(core::mem::offset_of!(Utcb, error_detail) == Utcb::ERROR_DETAIL_OFFSET);
    assert!(core::mem::offset_of!(Utcb, receive_window) == Utcb::RECEIVE_WINDOW_OFFSET);
    assert!(core::mem::offset_of!(Utcb, message_registers) == Utcb::MESSAGE_REGISTERS_OFFSET);
    assert!(core::mem::offset_of!(Utcb, receive_buffers) == Utcb::RECEIVE_BUFFERS_OFFSET);
};

impl Utcb {
    /// Byte offset of `self_address`.
    pub const SELF_ADDRESS_OFFSET: usize = 0x000;
    /// Byte offset of `thread_id`.
    pub const THREAD_ID_OFFSET: usize = 0x008;
    /// Byte offset of `task_id`.
    pub const TASK_ID_OFFSET: usize = 0x010;
    /// Byte offset of `user_handle`.
    pub const USER_HANDLE_OFFSET: usize = 0x018;
    /// Byte offset of `error_detail`.
    pub const ERROR_DETAIL_OFFSET: usize = 0x020;
    /// Byte offset of the receive window (a raw [`Fpage`](crate::Fpage)).
    pub const RECEIVE_WINDOW_OFFSET: usize = 0x028;
    /// Byte offset of MR0; MRn is at this plus 8n.
    pub const MESSAGE_REGISTERS_OFFSET: usize = 0x100;
    /// Byte offset of receive buffer 0 (address, then length); buffer n is
    /// at this plus 16n.
    pub const RECEIVE_BUFFERS_OFFSET: usize = 0x300;

    /// An all-zero UTCB: no receive window, no buffers. The kernel creates
    /// real UTCBs; this is for tests and for building one to copy.
    pub const fn zeroed() -> Utcb {
        Utcb {
            self_address: 0,
            thread_id: 0,
            task_id: 0,
            user_handle: 0,
            error_detail: 0,
            receive_window: 0,
            reserved_header: [0; 26],
            message_registers: [0; MESSAGE_REGISTER_COUNT],
            receive_buffers: [ReceiveBuffer {
                address: 0,
                length: 0,
            }; RECEIVE_BUFFER_COUNT],
            reserved_tail: [0; 400],
        }
    }

    /// The raw receive window: where received map and grant items may land.
    pub fn receive_window(&self) -> u64 {
        self.receive_window
    }

    /// The receive buffers.
    pub fn receive_buffers(&self) -> &[ReceiveBuffer; RECEIVE_BUFFER_COUNT] {
        &self.receive_buffers
    }

    /// Clears the receive window and every buffer. Always safe: it only
    /// narrows what the kernel may write.
    pub fn clear_receive_targets(&mut self) {
        self.receive_window = 0;
        self.receive_buffers = [ReceiveBuffer::default(); RECEIVE_BUFFER_COUNT];
    }

    /// Whether a receive could write outside the UTCB itself.
    pub fn has_receive_targets(&self) -> bool {
        self.receive_window != 0 || self.receive_buffers.iter().any(|buffer| buffer.length != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zeroed_utcb_lets_the_kernel_write_nothing() {
        extern crate std;
        let mut utcb = std::boxed::Box::new(Utcb::zeroed());
        assert!(!utcb.has_receive_targets());
        assert_eq!(utcb.receive_window(), 0);
        utcb.clear_receive_targets();
        assert!(!utcb.has_receive_targets());
    }
}
