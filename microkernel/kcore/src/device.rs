//! The rules for a user-level driver's system calls: `device_map`,
//! `hvm_call` and `space_control(GrantPorts)`.
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
//! - A port belongs to at most one task: grants never overlap each other
//!   nor the root task's PCI configuration ports, and the bitmap a task
//!   runs with opens its own grants and nothing else.

use microkernel_abi::syscall::{HVM_CALLS, HVM_CELL_INFO, HVM_LAST_CALL, MAX_DEVICE_WINDOW};
use microkernel_abi::{Error, TaskId, PAGE_SIZE};

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

/// The most port ranges the root task may grant (a device of the
/// manifest has one or two).
pub const MAX_PORT_GRANTS: usize = 8;
/// The most ports one grant opens (an NE2000 has 32, an ATA channel 8).
pub const MAX_GRANT_PORTS: u64 = 256;
/// The PCI configuration ports `[start, end)`, the root task's own.
pub const PCI_CONFIG_PORTS: (u64, u64) = (0xCF8, 0xD00);
/// Bytes of an I/O permission bitmap covering all 65 536 ports.
pub const FULL_BITMAP_BYTES: usize = 0x1_0000 / 8;

/// One range of I/O ports opened to one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortGrant {
    /// The task that may use the ports.
    pub task: TaskId,
    /// The first port.
    pub first: u16,
    /// How many ports, at least one.
    pub count: u16,
}

/// The port ranges granted to tasks other than the root task.
#[derive(Debug, Default)]
pub struct PortGrants {
    grants: [Option<PortGrant>; MAX_PORT_GRANTS],
}

impl PortGrants {
    /// No grants.
    pub const fn new() -> PortGrants {
        PortGrants {
            grants: [None; MAX_PORT_GRANTS],
        }
    }

    /// Opens `count` ports from `first` to `task` for a caller (`root`:
    /// whether it is the root task, whose own task is `root_task`).
    /// Whether `task` exists is the kernel's check.
    pub fn grant(
        &mut self,
        root: bool,
        root_task: TaskId,
        task: TaskId,
        first: u64,
        count: u64,
    ) -> Result<(), Error> {
        if !root {
            return Err(Error::NotPermitted);
        }
        if task == root_task || count == 0 || count > MAX_GRANT_PORTS {
            return Err(Error::InvalidArgument);
        }
        let end = first
            .checked_add(count)
            .filter(|&end| end <= 0x1_0000)
            .ok_or(Error::InvalidArgument)?;
        let overlaps = |start: u64, stop: u64| first < stop && start < end;
        if overlaps(PCI_CONFIG_PORTS.0, PCI_CONFIG_PORTS.1) {
            return Err(Error::NotPermitted);
        }
        if self
            .iter()
            .any(|g| overlaps(g.first.into(), u64::from(g.first) + u64::from(g.count)))
        {
            return Err(Error::AlreadyExists);
        }
        let slot = self
            .grants
            .iter_mut()
            .find(|g| g.is_none())
            .ok_or(Error::OutOfResources)?;
        // Both fit: end <= 0x10000 and count <= 256.
        *slot = Some(PortGrant {
            task,
            first: first as u16,
            count: count as u16,
        });
        Ok(())
    }

    /// Drops every grant of `task` (when it is destroyed).
    pub fn revoke(&mut self, task: TaskId) {
        for slot in &mut self.grants {
            if slot.is_some_and(|g| g.task == task) {
                *slot = None;
            }
        }
    }

    /// Whether `task` holds any port.
    pub fn holds(&self, task: TaskId) -> bool {
        self.iter().any(|g| g.task == task)
    }

    /// The grants, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &PortGrant> {
        self.grants.iter().flatten()
    }

    /// Fills `bitmap`, an I/O permission bitmap covering every port (SDM
    /// Vol. 1 19.5.2: a clear bit lets CPL 3 use the port), so that
    /// exactly `task`'s ports are open.
    pub fn load_bitmap(&self, task: TaskId, bitmap: &mut [u8; FULL_BITMAP_BYTES]) {
        bitmap.fill(0xFF);
        for grant in self.iter().filter(|g| g.task == task) {
            for port in grant.first as usize..grant.first as usize + grant.count as usize {
                bitmap[port / 8] &= !(1 << (port % 8));
            }
        }
    }
}

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

    fn task(index: u32) -> TaskId {
        TaskId::new(index, 1).unwrap()
    }

    fn open(bitmap: &[u8; FULL_BITMAP_BYTES]) -> std::vec::Vec<usize> {
        (0..0x1_0000)
            .filter(|&p| bitmap[p / 8] & (1 << (p % 8)) == 0)
            .collect()
    }

    #[test]
    fn only_the_root_task_grants_ports_and_never_to_itself() {
        let mut grants = PortGrants::new();
        let root = task(1);
        assert_eq!(
            grants.grant(false, root, task(2), 0x170, 8),
            Err(Error::NotPermitted)
        );
        assert_eq!(
            grants.grant(true, root, root, 0x170, 8),
            Err(Error::InvalidArgument)
        );
        assert!(!grants.holds(task(2)));
        assert_eq!(grants.grant(true, root, task(2), 0x170, 8), Ok(()));
        assert!(grants.holds(task(2)));
    }

    #[test]
    fn overlapping_malformed_and_pci_ranges_are_refused() {
        let mut grants = PortGrants::new();
        let root = task(1);
        grants.grant(true, root, task(2), 0x170, 8).unwrap();
        for (first, count) in [(0x16F, 2), (0x177, 1), (0x170, 8)] {
            assert_eq!(
                grants.grant(true, root, task(3), first, count),
                Err(Error::AlreadyExists),
                "{first:#x}+{count}"
            );
        }
        assert_eq!(
            grants.grant(true, root, task(2), 0x174, 1),
            Err(Error::AlreadyExists)
        );
        for (first, count) in [(0x300, 0), (0xFFFF, 2), (u64::MAX, 1), (0x300, 257)] {
            assert_eq!(
                grants.grant(true, root, task(3), first, count),
                Err(Error::InvalidArgument),
                "{first:#x}+{count}"
            );
        }
        for (first, count) in [(0xCF8, 1), (0xCF0, 9), (0xCFF, 4)] {
            assert_eq!(
                grants.grant(true, root, task(3), first, count),
                Err(Error::NotPermitted),
                "{first:#x}+{count}"
            );
        }
        // Touching ranges are fine, and so is the last port.
        assert_eq!(grants.grant(true, root, task(3), 0x178, 1), Ok(()));
        assert_eq!(grants.grant(true, root, task(3), 0xFFFF, 1), Ok(()));
        for port in 0..5 {
            assert_eq!(grants.grant(true, root, task(4), 0x400 + port, 1), Ok(()));
        }
        assert_eq!(
            grants.grant(true, root, task(4), 0x500, 1),
            Err(Error::OutOfResources)
        );
        grants.revoke(task(4));
        assert!(!grants.holds(task(4)));
        assert_eq!(grants.grant(true, root, task(5), 0x400, 8), Ok(()));
    }

    #[test]
    fn the_bitmap_opens_exactly_the_running_tasks_ports() {
        let mut grants = PortGrants::new();
        let root = task(1);
        grants.grant(true, root, task(2), 0x170, 8).unwrap();
        grants.grant(true, root, task(2), 0x376, 1).unwrap();
        grants.grant(true, root, task(3), 0x300, 32).unwrap();
        let mut bitmap = [0u8; FULL_BITMAP_BYTES];
        grants.load_bitmap(task(2), &mut bitmap);
        let mut expected: std::vec::Vec<usize> = (0x170..0x178).collect();
        expected.push(0x376);
        assert_eq!(open(&bitmap), expected);
        grants.load_bitmap(task(3), &mut bitmap);
        assert_eq!(open(&bitmap), (0x300..0x320).collect::<std::vec::Vec<_>>());
        grants.load_bitmap(task(4), &mut bitmap);
        assert!(open(&bitmap).is_empty());
        grants.revoke(task(2));
        grants.load_bitmap(task(2), &mut bitmap);
        assert!(open(&bitmap).is_empty());
    }
}
