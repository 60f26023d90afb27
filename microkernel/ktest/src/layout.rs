//! Where things live: in ktest's own space and in the tasks it creates.
//!
//! ktest's space (the root task's, `microkernel_abi::boot`): the image at
//! 0x40_0000, the free-memory window, the boot page, the root stack and
//! UTCB. Extra threads of ktest get fresh UTCB pages just above the root
//! UTCB; their stacks come from the frame allocator.
//!
//! A task ktest creates starts empty and runs ktest's own code: its pager
//! maps ktest's image pages at the same addresses, and fresh zeroed frames
//! for the upper half of each stack slot and for the scratch area. Every
//! other address faults without an answer, which is what the memory tests
//! look for.
//!
//! | region (task ktest creates) | served by the pager |
//! |---|---|
//! | `image_start()..image_end()` | ktest's pages, same address |
//! | `STACK_AREA + n * STACK_SLOT_SIZE`, upper [`STACK_SIZE`] bytes | fresh frames; the lower half is a guard |
//! | `SCRATCH_AREA`, [`SCRATCH_SIZE`] bytes | fresh frames |
//! | [`WINDOW`] | never: the receive window of the map and grant tests |
//! | [`UNMAPPED`] | never: a buffer that must fault |
//! | UTCB pages from [`TASK_UTCB_BASE`] | the kernel maps them at thread creation |

use microkernel_abi::boot::ROOT_UTCB;
use microkernel_abi::PAGE_SIZE;

/// UTCB of ktest's second thread; each later thread takes the next page
/// (never reused, because the ABI does not say when a deleted thread's
/// UTCB page is unmapped).
pub const LOCAL_UTCB_BASE: u64 = ROOT_UTCB + PAGE_SIZE;

/// First address above the pages for ktest's thread UTCBs.
pub const LOCAL_UTCB_END: u64 = ROOT_UTCB + 0x100_0000;

/// Pages of a stack of one of ktest's own threads.
pub const LOCAL_STACK_FRAMES: usize = 8;

/// First UTCB page of a created task's threads.
pub const TASK_UTCB_BASE: u64 = 0x7FFF_0000_0000;

/// Start of the stack slots in a created task.
pub const STACK_AREA: u64 = 0x1000_0000;

/// Bytes between the bases of two stack slots.
pub const STACK_SLOT_SIZE: u64 = 0x1_0000;

/// Bytes of stack the pager serves at the top of each slot.
pub const STACK_SIZE: u64 = 0x8000;

/// Stack slots per created task.
pub const STACK_SLOTS: u64 = 64;

/// Zero-filled memory the pager serves in a created task.
pub const SCRATCH_AREA: u64 = 0x2000_0000;

/// Bytes of the scratch area.
pub const SCRATCH_SIZE: u64 = 0x10_0000;

/// The page where agents of the memory tests receive mappings.
pub const WINDOW: u64 = 0x3000_0000;

/// A page that is never mapped in a created task.
pub const UNMAPPED: u64 = 0x4000_0000;

/// A user address that ktest itself never maps.
pub const UNMAPPED_IN_KTEST: u64 = 0x7000_0000_0000;

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// The first address of ktest's image (from the linker script).
pub fn image_start() -> u64 {
    (&raw const __image_start) as u64
}

/// The first page-aligned address above ktest's image.
pub fn image_end() -> u64 {
    (&raw const __image_end) as u64
}

/// Where stack slot `slot` of a created task ends (its initial RSP).
pub const fn stack_top(slot: u64) -> u64 {
    STACK_AREA + (slot + 1) * STACK_SLOT_SIZE
}

/// Whether the pager serves `address` of a created task with a fresh frame.
pub fn is_fresh_memory(address: u64) -> bool {
    let in_stack = (STACK_AREA..STACK_AREA + STACK_SLOTS * STACK_SLOT_SIZE).contains(&address)
        && (address - STACK_AREA) % STACK_SLOT_SIZE >= STACK_SLOT_SIZE - STACK_SIZE;
    let in_scratch = (SCRATCH_AREA..SCRATCH_AREA + SCRATCH_SIZE).contains(&address);
    in_stack || in_scratch
}

/// Whether `address` lies in ktest's image.
pub fn is_image(address: u64) -> bool {
    (image_start()..image_end()).contains(&address)
}
