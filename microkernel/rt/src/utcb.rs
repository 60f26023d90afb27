//! Setting a UTCB's receive targets: where a receive may write the task.
//!
//! `microkernel_abi::utcb::Utcb` lays the page out but, having no unsafe
//! code, offers no way to set the receive window or buffers: either one
//! lets the kernel write the task's memory on a later receive, which safe
//! code could then not rule out. [`ReceiveTargets`] adds the two setters,
//! each `unsafe` with the contract that keeps the safe `ipc` wrappers
//! (module `user`) sound.
//!
//! Invariant: the setters write only the words the ABI names
//! (`Utcb::RECEIVE_WINDOW_OFFSET`, `Utcb::RECEIVE_BUFFERS_OFFSET`), which
//! `microkernel_abi::utcb` checks against the struct at compile time.

use microkernel_abi::item::Fpage;
use microkernel_abi::utcb::{ReceiveBuffer, Utcb, RECEIVE_BUFFER_COUNT};

/// The unsafe setters of a UTCB's receive targets.
pub trait ReceiveTargets {
    /// Sets the region of this task where received mappings may land (nil
    /// refuses all map and grant items).
    ///
    /// # Safety
    ///
    /// Until the window is set back to nil, every later IPC receive may
    /// replace or add pages anywhere in `window`: the caller must make sure
    /// no Rust object lives there, or that its owner expects its memory to
    /// be replaced.
    unsafe fn set_receive_window(&mut self, window: Fpage);

    /// Offers a buffer for the `slot`-th received string item (length 0
    /// withdraws it). Panics if `slot >= RECEIVE_BUFFER_COUNT`.
    ///
    /// # Safety
    ///
    /// Until the slot is cleared, every later IPC receive may write up to
    /// `buffer.length` bytes at `buffer.address`: that memory must stay
    /// valid and not be accessed through any Rust reference while an IPC
    /// is in progress.
    unsafe fn set_receive_buffer(&mut self, slot: usize, buffer: ReceiveBuffer);
}

impl ReceiveTargets for Utcb {
    unsafe fn set_receive_window(&mut self, window: Fpage) {
        let page: *mut Utcb = self;
        // SAFETY: the pointer comes from the exclusive borrow of the whole
        // page, and the ABI fixes an aligned u64 (the raw fpage) at this
        // offset inside it; what the kernel may do with it later is this
        // function's contract.
        unsafe {
            page.byte_add(Utcb::RECEIVE_WINDOW_OFFSET)
                .cast::<u64>()
                .write(window.raw());
        }
    }

    unsafe fn set_receive_buffer(&mut self, slot: usize, buffer: ReceiveBuffer) {
        assert!(slot < RECEIVE_BUFFER_COUNT, "receive buffer slot {slot}");
        let page: *mut Utcb = self;
        let offset = Utcb::RECEIVE_BUFFERS_OFFSET + slot * core::mem::size_of::<ReceiveBuffer>();
        // SAFETY: as above: the ABI fixes RECEIVE_BUFFER_COUNT aligned
        // `ReceiveBuffer`s (repr(C), two u64) from this offset inside the
        // exclusively borrowed page, and `slot` is in range.
        unsafe { page.byte_add(offset).cast::<ReceiveBuffer>().write(buffer) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use microkernel_abi::item::Rights;

    #[test]
    fn the_setters_write_what_the_getters_read() {
        let mut utcb = Box::new(Utcb::zeroed());
        assert!(!utcb.has_receive_targets());
        let window = Fpage::new(0x10_0000, 20, Rights::FULL).unwrap();
        // SAFETY: the test never receives, so nothing is ever written
        // through the window or the buffer.
        unsafe {
            utcb.set_receive_window(window);
            utcb.set_receive_buffer(
                3,
                ReceiveBuffer {
                    address: 0x2000,
                    length: 64,
                },
            );
        }
        assert_eq!(utcb.receive_window(), window.raw());
        assert_eq!(utcb.receive_buffers()[3].length, 64);
        assert_eq!(utcb.receive_buffers()[3].address, 0x2000);
        assert_eq!(utcb.receive_buffers()[2], ReceiveBuffer::default());
        assert!(utcb.has_receive_targets());
        utcb.clear_receive_targets();
        assert!(!utcb.has_receive_targets());
    }

    #[test]
    #[should_panic(expected = "receive buffer slot")]
    fn a_slot_past_the_last_panics() {
        let mut utcb = Box::new(Utcb::zeroed());
        // SAFETY: it panics before writing anything.
        unsafe { utcb.set_receive_buffer(RECEIVE_BUFFER_COUNT, ReceiveBuffer::default()) };
    }
}
