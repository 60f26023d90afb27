//! The Kasane system manifest: one declarative file describing the system.
//!
//! A manifest (TOML, `images/manifests/*.toml`) names the cells hvm runs,
//! their memory, what each boots, and what hvm does when one fails. The image
//! builder parses and checks it on the host ([`Manifest::from_toml`], feature
//! `std`) and compiles it into the compact [`BootManifest`] that hvm reads at
//! boot ([`BootManifest::decode`], `no_std` + `alloc`).
//!
//! A manifest also lists the 9P servers (`[[server]]`): each is placed as a
//! task that core starts in cell 0, or as a `server-vm` cell of the same
//! name. The compiler turns that table into cells and cell 0's modules
//! ([`Manifest::to_boot`]) and keeps it in the boot form
//! ([`BootManifest::servers`]), which cell 0 receives as its `manifest`
//! module, so core starts, posts and mounts the servers the table names.
//!
//! Invariants of a checked manifest: at least one cell; cell 0 and only cell 0
//! is the microkernel; names are unique lowercase identifiers; every limit is
//! within the bounds below; every server's modules are cell 0's, and a `vm`
//! server has its cell. hvm decodes the boot form strictly and checks it
//! again, since a corrupted module must not become a boot hang.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod boot;
mod check;
#[cfg(feature = "std")]
mod source;

pub use boot::{BootCell, BootManifest, BootServer, DecodeError, MANIFEST_MAGIC, MANIFEST_VERSION};
pub use check::{check, ManifestError};
#[cfg(feature = "std")]
pub use source::{Cell, Manifest, Server, System};

use serde::{Deserialize, Serialize};

/// The command line a Linux cell gets when its manifest names none: the
/// serial console, few messages (every byte costs a VM exit), a TSC trusted
/// as the clock, PCI bus 0 scanned by configuration cycles (`lastbus=1`:
/// hvm's DSDT has no PCI root; `pci=noacpi` would also turn the local APIC
/// off on kernels without an MP-table parser), a fixed kernel address, and
/// an immediate reset through the FADT's reset register on a panic, so hvm
/// sees it (hardware-reduced ACPI would otherwise make Linux try EFI, then
/// the BIOS, which a Linux cell does not have).
pub const DEFAULT_LINUX_CMDLINE: &str =
    "console=ttyS0 quiet tsc=reliable no_timer_check pci=lastbus=1 nokaslr reboot=acpi panic=-1";

/// What a cell runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellKind {
    /// The Kasane microkernel (cell 0).
    Microkernel,
    /// A stock Linux kernel with the bridge agent.
    Linux,
    /// A unikernel 9P server.
    ServerVm,
}

/// What hvm does when a cell fails (triple fault, stray access, bad exit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Report the failure and leave the cell stopped; the rest keeps running.
    Stop,
    /// Report, then restart the cell from its pristine image (up to
    /// `restart_limit` times, then stop it).
    Restart,
    /// Report and power the whole machine off as a failure.
    Poweroff,
}

/// Where a 9P server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// A microkernel task in cell 0 that core starts and pages.
    Task,
    /// A unikernel VM, the `server-vm` cell of the server's name; a task
    /// when hvm runs without VT-x (bare mode).
    Vm,
}

/// The name of cell 0's boot module that holds the compiled manifest, for
/// core to read the server table from.
pub const MANIFEST_MODULE: &str = "manifest";

/// The boot module with the task build of server program `program`.
pub fn task_module(program: &str) -> alloc::string::String {
    alloc::format!("{program}-task")
}

/// The boot module with the VM build (runtime-vm) of server program
/// `program`.
pub fn vm_module(program: &str) -> alloc::string::String {
    alloc::format!("{program}-vm")
}

/// A device hvm can give one server VM whole: its name in a manifest's
/// `devices` and the I/O ports it decodes. Only devices that move data
/// through ports (no bus-master DMA) belong here, since without an IOMMU a
/// DMA engine could write anywhere (docs/threat-model.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    pub name: &'static str,
    /// Port ranges as (first, count); for a PCI device, relative to its
    /// I/O BAR.
    pub ports: &'static [(u16, u16)],
    /// A PCI function's (vendor, device) ID, for a device whose ports the
    /// firmware chose: hvm finds it on the host's bus 0 at boot and opens
    /// `ports` from its BAR 0, which must be an I/O BAR (PCI Local Bus
    /// 3.0 §6.2.5.1). Only a server VM can be given such a device.
    pub pci: Option<(u16, u16)>,
}

impl Device {
    /// Whether `port` (an access of `size` bytes starting there) lies
    /// wholly inside one of the device's ranges.
    pub fn covers(&self, port: u16, size: u8) -> bool {
        let (start, end) = (u32::from(port), u32::from(port) + u32::from(size));
        self.ports.iter().any(|&(first, count)| {
            start >= u32::from(first) && end <= u32::from(first) + u32::from(count)
        })
    }
}

impl Device {
    /// Where the firmware put a PCI device's ports: the I/O base of BAR 0
    /// of the function 0 on bus 0 whose ID is the device's `pci`, if it is
    /// there and BAR 0 is an I/O BAR. `read(slot, offset)` reads a
    /// configuration dword of function 0 of `slot` (0..32) on bus 0
    /// (mechanism #1, PCI Local Bus 3.0 §3.2.2.3.2); hvm and core (in
    /// bare mode) each read through their own ports. `None` for a device
    /// with no `pci`.
    pub fn io_base(&self, mut read: impl FnMut(u8, u8) -> u32) -> Option<u16> {
        let (vendor, device) = self.pci?;
        // §6.2.1: the ID dword is device ID (31..16) and vendor ID (15..0).
        let id = (u32::from(device) << 16) | u32::from(vendor);
        let slot = (0..32).find(|&slot| read(slot, 0) == id)?;
        let bar = read(slot, 0x10);
        // §6.2.5.1: bit 0 set is an I/O BAR, its base in bits 31..2 (x86
        // I/O space is 16 bits; a base past it is no port).
        let base = bar & 0xFFFF_FFFC;
        (bar & 1 == 1 && base != 0)
            .then(|| u16::try_from(base).ok())
            .flatten()
    }
}

/// The devices a manifest may assign (`[[server]] devices`).
pub const DEVICES: &[Device] = &[
    Device {
        // The secondary ATA channel: command block 0x170-0x177, control
        // block (alternate status / device control) 0x376 (ATA/ATAPI-6
        // clause 7).
        name: "ata1",
        ports: &[(0x170, 8), (0x376, 1)],
        pci: None,
    },
    Device {
        // The RTL8029AS, a PCI NE2000: 32 ports from BAR 0, registers at
        // 0x00-0x0F, the remote-DMA data port at 0x10, reset at 0x1F
        // (RTL8029AS datasheet §6). It never masters the bus.
        name: "ne2k",
        ports: &[(0, 0x20)],
        pci: Some((0x10EC, 0x8029)),
    },
];

/// The device called `name`.
pub fn device(name: &str) -> Option<&'static Device> {
    DEVICES.iter().find(|device| device.name == name)
}

/// Bounds the checker enforces.
pub mod limits {
    /// Most cells in one system.
    pub const MAX_CELLS: usize = 8;
    /// Smallest memory of a microkernel cell, in MiB.
    pub const MIN_MICROKERNEL_MIB: u32 = 16;
    /// Smallest memory of a Linux cell, in MiB.
    pub const MIN_LINUX_MIB: u32 = 64;
    /// Smallest memory of a server VM, in MiB.
    pub const MIN_SERVER_VM_MIB: u32 = 4;
    /// Largest memory of one cell, in MiB.
    pub const MAX_CELL_MIB: u32 = 4096;
    /// Longest name (system, cell, module).
    pub const MAX_NAME_LEN: usize = 31;
    /// Longest argument string.
    pub const MAX_ARGS_LEN: usize = 255;
    /// Most restarts a manifest may allow one cell.
    pub const MAX_RESTART_LIMIT: u32 = 100;
    /// Most extra modules per cell.
    pub const MAX_MODULES: usize = 30;
    /// Longest Linux command line (boot.rst: `cmdline_size` is at least 2047
    /// for 2.06+ kernels; hvm keeps it well inside).
    pub const MAX_CMDLINE_LEN: usize = 1024;
    /// Longest watchdog period, in ms (10 minutes).
    pub const MAX_HEARTBEAT_MS: u32 = 600_000;
    /// Shortest non-zero watchdog period, in ms.
    pub const MIN_HEARTBEAT_MS: u32 = 10;
    /// Most Linux cells in one system (each is linked to cell 0).
    pub const MAX_LINUX_CELLS: usize = 1;
    /// Most servers in one system.
    pub const MAX_SERVERS: usize = 8;
    /// Longest server program name (its module adds `-task` or `-vm`).
    pub const MAX_PROGRAM_LEN: usize = MAX_NAME_LEN - 5;
    /// Longest mount point.
    pub const MAX_MOUNT_LEN: usize = 64;
    /// Most devices one server may be given.
    pub const MAX_DEVICES: usize = 4;
}

#[cfg(test)]
mod device_tests {
    use super::device;

    #[test]
    fn a_pci_device_is_found_by_its_id_and_its_io_bar() {
        let ne2k = device("ne2k").expect("ne2k");
        // Slot 3 holds the card, with an I/O BAR at 0xc100.
        let bus = |io_bar: u32| {
            move |slot: u8, offset: u8| match (slot, offset) {
                (3, 0x00) => 0x8029_10EC,
                (3, 0x10) => io_bar,
                (_, 0x00) => 0xFFFF_FFFF,
                _ => 0,
            }
        };
        assert_eq!(ne2k.io_base(bus(0xC101)), Some(0xC100));
        // A memory BAR, an empty one, or one past the 16-bit port space.
        assert_eq!(ne2k.io_base(bus(0xFEB0_0000)), None);
        assert_eq!(ne2k.io_base(bus(0x1)), None);
        assert_eq!(ne2k.io_base(bus(0x1_0001)), None);
        // No such card.
        assert_eq!(ne2k.io_base(|_, _| 0xFFFF_FFFF), None);
        // A device with fixed ports has no BAR to find.
        assert_eq!(device("ata1").expect("ata1").io_base(bus(0xC101)), None);
    }
}
