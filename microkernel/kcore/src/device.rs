//! The rules for a user-level driver's system calls: `device_map` and
//! `hvm_call`.
//!
//! The root task may drive devices itself (docs/microkernel-abi.md §9.11,
//! §9.12): it maps a device window (physical pages outside the cell's
//! memory) into its own space uncached, and it asks hvm about cells and
//! links through `hvm_call`, which forwards a fixed few hypercalls. This
//! module decides, for the kernel, whether a request may go ahead; the
//! kernel then edits page tables or issues the VMCALL.
//!
//! Invariants:
//! - Only the root task gets past either check (`NotPermitted` otherwise).
//! - A device window never overlaps the cell's memory (or the kernel could
//!   be made to map a page it gave someone else, uncached and outside the
//!   mapping database) nor the local APIC page, and it lies below the
//!   52-bit physical address limit (SDM Vol. 3 4.1.4, MAXPHYADDR ≤ 52).
//! - `hvm_call` forwards exactly `HVM_CALLS`; everything else is refused
//!   before hvm sees it.

use microkernel_abi::syscall::{HVM_CALLS, HVM_CELL_INFO, HVM_LAST_CALL, MAX_DEVICE_WINDOW};
use microkernel_abi::{Error, PAGE_SIZE};

/// The local APIC's registers (SDM Vol. 3 11.4.1): the kernel's own.
pub const LOCAL_APIC: (u64, u64) = (0xFEE0_0000, 0xFEF0_0000);

/// One past the highest physical address x86-64 paging can name.
pub const PHYSICAL_LIMIT: u64 = 1 << 52;

/// Checks a `device_map` of `length` bytes at physical `physical` for a
/// caller (`root`: whether it is the root task) in a cell whose memory is
/// physical `[ram.0, ram.1)`.
pub fn check_window(root: bool, physical: u64, length: u64, ram: (u64, u64)) -> Result<(), Error> {
    if !root {
        return Err(Error::NotPermitted);
    }
    if physical % PAGE_SIZE != 0 || length % PAGE_SIZE != 0 {
        return Err(Error::InvalidArgument);
    }
    if length == 0 || length > MAX_DEVICE_WINDOW {
        return Err(Error::InvalidArgument);
    }
    let end = physical
        .checked_add(length)
        .filter(|&end| end <= PHYSICAL_LIMIT)
        .ok_or(Error::InvalidArgument)?;
    let overlaps = |(start, stop): (u64, u64)| physical < stop && start < end;
    if overlaps((0, ram.1)) || overlaps(LOCAL_APIC) {
        return Err(Error::InvalidArgument);
    }
    Ok(())
}

/// What the kernel does with an `hvm_call` that passed [`check_hvm_call`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvmForward {
    /// Forward the two arguments as they are.
    Plain,
    /// `CellInfo`: the second argument is a user buffer the kernel fills
    /// from its own copy (hvm writes into kernel memory, never into the
    /// root task's pages directly).
    CellInfo,
}

/// Checks an `hvm_call` of hypercall `call` by a caller (`root`) in a
/// kernel that runs under hvm or not (`under_hvm`).
pub fn check_hvm_call(root: bool, under_hvm: bool, call: u64) -> Result<HvmForward, Error> {
    if !root {
        return Err(Error::NotPermitted);
    }
    if call > HVM_LAST_CALL {
        return Err(Error::InvalidArgument);
    }
    if !HVM_CALLS.contains(&call) {
        return Err(Error::NotPermitted);
    }
    if !under_hvm {
        return Err(Error::NotSupported);
    }
    Ok(if call == HVM_CELL_INFO {
        HvmForward::CellInfo
    } else {
        HvmForward::Plain
    })
}

/// hvm's status word (`hvm_abi::HypercallError` codes) as the kernel
/// reports it: it is passed through unchanged in RDI, so this only names
/// the success value.
pub const HVM_SUCCESS: u64 = 0;

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: (u64, u64) = (0, 32 << 20);

    #[test]
    fn only_the_root_task_maps_devices() {
        assert_eq!(
            check_window(false, 0xE000_0000, 0x8000, RAM),
            Err(Error::NotPermitted)
        );
        assert_eq!(check_window(true, 0xE000_0000, 0x8000, RAM), Ok(()));
    }

    #[test]
    fn ram_pages_are_not_device_windows() {
        for (physical, length) in [
            (0, 0x1000),
            (0x10_0000, 0x1000),
            ((32 << 20) - 0x1000, 0x1000),
            ((32 << 20) - 0x1000, 0x2000),
        ] {
            assert_eq!(
                check_window(true, physical, length, RAM),
                Err(Error::InvalidArgument),
                "{physical:#x}+{length:#x}"
            );
        }
        assert_eq!(check_window(true, 32 << 20, 0x1000, RAM), Ok(()));
        // A cell whose memory does not start at 0 (bare mode): nothing
        // below its end either.
        let bare = (0x100_0000, 0x500_0000);
        for physical in [0, 0xA_0000, 0x100_0000, 0x4FF_F000] {
            assert_eq!(
                check_window(true, physical, 0x1000, bare),
                Err(Error::InvalidArgument),
                "{physical:#x}"
            );
        }
        assert_eq!(check_window(true, 0x500_0000, 0x1000, bare), Ok(()));
    }

    #[test]
    fn malformed_and_kernel_windows_are_refused() {
        let bad = [
            (0xE000_0001, 0x1000),
            (0xE000_0000, 0x1001),
            (0xE000_0000, 0),
            (0xE000_0000, MAX_DEVICE_WINDOW + PAGE_SIZE),
            (u64::MAX - 0xFFF, 0x1000),
            (PHYSICAL_LIMIT, 0x1000),
            (LOCAL_APIC.0, 0x1000),
            (LOCAL_APIC.0 - 0x1000, 0x2000),
        ];
        for (physical, length) in bad {
            assert_eq!(
                check_window(true, physical, length, RAM),
                Err(Error::InvalidArgument),
                "{physical:#x}+{length:#x}"
            );
        }
    }

    #[test]
    fn hvm_call_forwards_exactly_five_calls_for_the_root_task() {
        let mut forwarded = std::vec::Vec::new();
        for call in 0..64 {
            match check_hvm_call(true, true, call) {
                Ok(forward) => forwarded.push((call, forward)),
                Err(error) if call <= HVM_LAST_CALL => assert_eq!(error, Error::NotPermitted),
                Err(error) => assert_eq!(error, Error::InvalidArgument, "{call}"),
            }
        }
        assert_eq!(
            forwarded,
            [
                (2, HvmForward::Plain),
                (3, HvmForward::Plain),
                (9, HvmForward::Plain),
                (11, HvmForward::CellInfo),
                (13, HvmForward::Plain),
            ]
        );
        assert_eq!(
            check_hvm_call(true, true, u64::MAX),
            Err(Error::InvalidArgument)
        );
    }

    #[test]
    fn hvm_call_is_refused_to_other_tasks_and_unsupported_bare() {
        for call in 0..16 {
            assert_eq!(check_hvm_call(false, true, call), Err(Error::NotPermitted));
        }
        assert_eq!(check_hvm_call(true, false, 2), Err(Error::NotSupported));
        // Power-off stays refused in bare mode too: the number is checked
        // first.
        assert_eq!(check_hvm_call(true, false, 4), Err(Error::NotPermitted));
    }
}
