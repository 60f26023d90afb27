//! `buffer_alias`: which process buffers core may name for the zero-copy
//! read, and the address of its own it names them by.

use core_system::buffer_alias;

/// A process with pages at 0x10000.. backed by frames at 0x900000..,
/// consecutive except that page 0x13000 lives elsewhere; 0x12000 is
/// read-only; 0x15000 is not the process's.
fn page(address: u64) -> Option<(u64, bool)> {
    match address {
        0x10000 | 0x11000 | 0x14000 => Some((0x90_0000 + (address - 0x10000), true)),
        0x12000 => Some((0x90_2000, false)),
        0x13000 => Some((0x70_0000, true)),
        _ => None,
    }
}

#[test]
fn a_buffer_in_consecutive_writable_frames_is_aliased() {
    assert_eq!(buffer_alias(0x10010, 16, page), Some(0x90_0010));
    // Across a page boundary, frames following one another.
    assert_eq!(buffer_alias(0x10ff0, 0x20, page), Some(0x90_0ff0));
    // Up to the last byte of a page, not one more.
    assert_eq!(buffer_alias(0x11000, 0x1000, page), Some(0x90_1000));
}

#[test]
fn anything_else_is_refused() {
    // Empty, unmapped, not the process's.
    assert_eq!(buffer_alias(0x10000, 0, page), None);
    assert_eq!(buffer_alias(0x15000, 8, page), None);
    assert_eq!(buffer_alias(0x7f00_dead_0000, 8, page), None);
    // Read-only, at the start or further on.
    assert_eq!(buffer_alias(0x12000, 8, page), None);
    assert_eq!(buffer_alias(0x11ff0, 0x20, page), None);
    // Writable but scattered: the next frame is elsewhere.
    assert_eq!(buffer_alias(0x13ff0, 0x20, page), None);
    // Running off the process's pages, or off the address space.
    assert_eq!(buffer_alias(0x14ff0, 0x20, page), None);
    assert_eq!(
        buffer_alias(u64::MAX - 4, 16, |_| Some((0x1000, true))),
        None
    );
}
