//! A hostile server VM: everything a guest should not do to hvm, at once.
//!
//! `hostile-vm` runs [`run`] before it serves ramfs like `ramfs-vm`, so a
//! test can show that hvm refuses or fails each of these and that every
//! other cell (and this one, afterwards) goes on:
//! - hypercalls it may not make or that do not exist, and bad arguments;
//! - nonsense in PCI configuration space: wild CONFIG_ADDRESS values,
//!   absent functions, writes to read-only registers, the BAR moved over
//!   its own RAM;
//! - nonsense in the device's registers (virtio 1.2 4.1.4.3): a bad status,
//!   a queue that does not exist, sizes and addresses out of range, notify
//!   of absent queues;
//! - descriptors outside its memory (virtio 1.2 2.7.5): a transmit buffer
//!   beyond its RAM, one that wraps the address space, a chain that loops,
//!   and a receive buffer beyond its RAM, on a split queue it builds by hand.
//!
//! - the ports of devices it was not given: the ATA channels' status
//!   registers (the boot CD on the primary, a disk on the secondary when
//!   the test attaches one), which must read as all ones, while the
//!   storage VM that owns `ata1` reaches the same disk (docs/storage.md).
//!
//! Each step prints what hvm answered. At the end the device is reset
//! (status 0, 2.4) and the link is brought up properly by `serve`.

use core::ptr::{read_volatile, write_volatile};

use hvm_abi::Hypercall;

use crate::arch;
use crate::link::{self, physical};
use crate::runtime::print;

const COMMON: u64 = 0x0000;
const NOTIFY: u64 = 0x3000;
const MSIX_TABLE: u64 = 0x4000;

fn config_read(device: u32, offset: u32) -> u32 {
    arch::outl(0xCF8, 0x8000_0000 | (device << 11) | (offset & 0xFC));
    arch::inl(0xCFC)
}

fn config_write(device: u32, offset: u32, value: u32) {
    arch::outl(0xCF8, 0x8000_0000 | (device << 11) | (offset & 0xFC));
    arch::outl(0xCFC, value);
}

/// MMIO in the link BAR, with plain `mov`s (hvm decodes each access).
struct Bar(u64);

impl Bar {
    fn write8(&self, offset: u64, value: u8) {
        // SAFETY: inside the BAR's page, mapped by hvm; the access exits
        // to hvm, which emulates (or ignores) it.
        unsafe { write_volatile((self.0 + offset) as *mut u8, value) }
    }
    fn write16(&self, offset: u64, value: u16) {
        // SAFETY: as write8.
        unsafe { write_volatile((self.0 + offset) as *mut u16, value) }
    }
    fn write32(&self, offset: u64, value: u32) {
        // SAFETY: as write8.
        unsafe { write_volatile((self.0 + offset) as *mut u32, value) }
    }
    fn write64(&self, offset: u64, value: u64) {
        // SAFETY: as write8.
        unsafe { write_volatile((self.0 + offset) as *mut u64, value) }
    }
    fn read8(&self, offset: u64) -> u8 {
        // SAFETY: as write8.
        unsafe { read_volatile((self.0 + offset) as *const u8) }
    }
    fn read32(&self, offset: u64) -> u32 {
        // SAFETY: as write8.
        unsafe { read_volatile((self.0 + offset) as *const u32) }
    }
}

fn hypercalls() {
    let outside = 0x7000_0000; // beyond any server VM's memory
    let calls: [(&str, u64, u64, u64); 8] = [
        ("number 99", 99, 0, 0),
        ("PowerOff", Hypercall::PowerOff as u64, 0, 0),
        ("CellControl(0, stop)", Hypercall::CellControl as u64, 0, 2),
        ("CellInfo(0)", Hypercall::CellInfo as u64, 0, 0x1000),
        ("ExitCount(0)", Hypercall::ExitCount as u64, 0, 0),
        ("ConsoleRead", Hypercall::ConsoleRead as u64, 0, 0),
        (
            "ConsoleWrite outside its memory",
            Hypercall::ConsoleWrite as u64,
            outside,
            16,
        ),
        (
            "ConsoleWrite of 1 MiB",
            Hypercall::ConsoleWrite as u64,
            0x1000,
            1 << 20,
        ),
    ];
    for (what, number, a0, a1) in calls {
        // SAFETY: none of these hands hvm memory it may write; the
        // out-of-range ones are the point, and hvm checks them.
        let (status, _) = unsafe { arch::vmcall(number, a0, a1) };
        let name = hvm_abi::HypercallError::from_raw(status).map_or("accepted", |e| e.as_str());
        print(format_args!("hostile-vm: hypercall {what}: {name}\n"));
    }
}

fn pci(device: u32) {
    arch::outl(0xCF8, 0xDEAD_BEEF);
    let wild = arch::inl(0xCFC);
    config_write(7, 0, 0x1234_5678);
    let absent = config_read(7, 0);
    config_write(device, 0, 0x1234_5678); // vendor/device: read-only
    let identity = config_read(device, 0);
    let bar = config_read(device, 0x10);
    config_write(device, 0x10, 0x0010_0000); // the BAR over its own RAM
    config_write(device, 0x04, 0xFFFF_FFFF); // every command bit
    for offset in (0x40..0x100).step_by(4) {
        config_write(device, offset, 0xFFFF_FFFF); // capabilities, MSI-X
    }
    config_write(device, 0x10, bar);
    config_write(device, 0x04, 0x0006);
    print(format_args!(
        "hostile-vm: PCI nonsense: wild address reads {wild:#x}, absent 00:07.0 reads {absent:#x}, device id still {identity:#x}, BAR back at {:#x}\n",
        config_read(device, 0x10) & !0xF
    ));
}

fn registers(bar: &Bar) {
    bar.write8(COMMON + 0x14, 0xFF); // every status bit at once
    bar.write16(COMMON + 0x16, 0x7777); // a queue that does not exist
    bar.write16(COMMON + 0x18, 0xFFFF);
    bar.write64(COMMON + 0x20, 0xFFFF_FFFF_FFFF_F000);
    bar.write16(COMMON + 0x1C, 1);
    bar.write32(NOTIFY + 4 * 9, 9); // notify an absent queue
    bar.write32(NOTIFY, 0);
    for entry in 0..8 {
        bar.write64(MSIX_TABLE + 16 * entry, 0xFEE0_0000_DEAD_0000);
        bar.write32(MSIX_TABLE + 16 * entry + 8, 0xFFFF_FF02); // vector 2
    }
    let unknown = bar.read32(0x7000);
    let status = bar.read8(COMMON + 0x14);
    bar.write8(COMMON + 0x14, 0); // reset (virtio 1.2 2.4)
    print(format_args!(
        "hostile-vm: register nonsense: status read back {status:#x}, unknown offset reads {unknown:#x}; device reset\n"
    ));
}

/// A split queue (virtio 1.2 2.7) built by hand in one zeroed page:
/// descriptors at +0, available ring at +0x100, used ring at +0x200.
fn bad_descriptors(bar: &Bar) {
    let page = alloc::vec![0u8; 2 * 4096].leak();
    let base = (page.as_mut_ptr() as u64 + 0xFFF) & !0xFFF;
    let ring = physical(base);
    let descriptor = |index: u64, address: u64, len: u32, flags: u16, next: u16| {
        let at = base + 16 * index;
        // SAFETY: inside the page leaked above.
        unsafe {
            write_volatile(at as *mut u64, address);
            write_volatile((at + 8) as *mut u32, len);
            write_volatile((at + 12) as *mut u16, flags);
            write_volatile((at + 14) as *mut u16, next);
        }
    };
    let offer = |heads: &[u16]| {
        for (slot, &head) in heads.iter().enumerate() {
            // SAFETY: the available ring inside the page.
            unsafe { write_volatile((base + 0x104 + 2 * slot as u64) as *mut u16, head) };
        }
        // SAFETY: the available ring's index.
        unsafe { write_volatile((base + 0x102) as *mut u16, heads.len() as u16) };
    };
    // Bring the device up by the book (virtio 1.2 3.1.1) but for the queue
    // contents: ACKNOWLEDGE | DRIVER, VERSION_1, FEATURES_OK.
    bar.write8(COMMON + 0x14, 0);
    bar.write8(COMMON + 0x14, 1 | 2);
    bar.write32(COMMON + 0x08, 1);
    bar.write32(COMMON + 0x0C, 1);
    bar.write32(COMMON + 0x08, 0);
    bar.write32(COMMON + 0x0C, 0);
    bar.write8(COMMON + 0x14, 1 | 2 | 8);
    for queue in [0u16, 1] {
        let offset = u64::from(queue) * 0x400; // each queue its own rings
        bar.write16(COMMON + 0x16, queue);
        bar.write16(COMMON + 0x18, 8);
        bar.write64(COMMON + 0x20, ring + offset);
        bar.write64(COMMON + 0x28, ring + offset + 0x100);
        bar.write64(COMMON + 0x30, ring + offset + 0x200);
        bar.write16(COMMON + 0x1C, 1);
    }
    bar.write8(COMMON + 0x14, 1 | 2 | 8 | 4);
    // Transmit (queue 1, rings at +0x400): beyond its RAM, wrapping the
    // address space, and a chain that loops on itself.
    let transmit = |index: u64, address: u64, len: u32, flags: u16, next: u16| {
        descriptor(0x40 + index, address, len, flags, next)
    };
    transmit(0, 0x7000_0000, 64, 0, 0);
    transmit(1, u64::MAX - 8, 64, 0, 0);
    transmit(2, ring, 16, 1, 2); // NEXT to itself
    let base_transmit = base + 0x400;
    for (slot, head) in [0u16, 1, 2].iter().enumerate() {
        // SAFETY: queue 1's available ring inside the page.
        unsafe { write_volatile((base_transmit + 0x104 + 2 * slot as u64) as *mut u16, *head) };
    }
    // SAFETY: queue 1's available index.
    unsafe { write_volatile((base_transmit + 0x102) as *mut u16, 3) };
    bar.write32(NOTIFY + 4, 1);
    // Receive (queue 0): a writable buffer beyond its RAM.
    descriptor(0, 0x7000_0000, 4096, 2, 0);
    offer(&[0]);
    bar.write32(NOTIFY, 0);
    arch::idle(|| false); // let the switch see the rings (any vector wakes)
                          // SAFETY: the used rings' indices, written by hvm.
    let (used_tx, used_rx) = unsafe {
        (
            read_volatile((base_transmit + 0x202) as *const u16),
            read_volatile((base + 0x202) as *const u16),
        )
    };
    let status = bar.read8(COMMON + 0x14);
    bar.write8(COMMON + 0x14, 0);
    print(format_args!(
        "hostile-vm: descriptors outside its memory offered; transmit chains returned {used_tx}, device status {status:#x}; device reset\n"
    ));
    let _ = used_rx;
}

/// Does all of the above, then returns for the server to start.
/// Reads device ports this cell was not given: the secondary channel's
/// status and alternate status (ATA/ATAPI-6 7.15, 7.3) and the primary
/// channel's status; and writes a command it must not reach (FLUSH CACHE
/// to the secondary channel).
fn ports() {
    arch::outb(0x177, 0xE7);
    let (status, alternate, primary) = (arch::inb(0x177), arch::inb(0x376), arch::inb(0x1F7));
    print(format_args!(
        "hostile-vm: ATA ports not given: 0x177 reads {status:#04x}, 0x376 reads {alternate:#04x}, 0x1f7 reads {primary:#04x}\n"
    ));
}

pub fn run() {
    print(format_args!("hostile-vm: starting the hostile acts\n"));
    hypercalls();
    ports();
    let Some(&function) = link::consoles().first() else {
        print(format_args!("hostile-vm: no link device\n"));
        return;
    };
    let device = u32::from(function.device);
    pci(device);
    let bar = Bar(link::bar_of(function));
    registers(&bar);
    bad_descriptors(&bar);
    print(format_args!("hostile-vm: done; serving ramfs\n"));
}
