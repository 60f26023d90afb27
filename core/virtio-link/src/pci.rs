//! Finding hvm's link devices on PCI bus 0.
#![deny(unsafe_code)]

use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};

/// Red Hat's vendor id (virtio).
pub const VIRTIO_VENDOR: u16 = 0x1AF4;
/// A modern virtio console (virtio 1.2 4.1.2: 0x1040 + device id 3).
pub const CONSOLE_DEVICE: u16 = 0x1043;
/// Where hvm places link 0's BAR; link i's is `i * LINK_BAR_STRIDE` above.
pub const LINK_BAR_BASE: u64 = 0xE000_0000;
/// Distance between two links' BARs.
pub const LINK_BAR_STRIDE: u64 = 0x1_0000;
/// Bytes of one link's BAR (hvm's console: 32 KiB).
pub const LINK_BAR_SIZE: u64 = 0x8000;

/// One link device found on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkFunction {
    /// Its function (bus 0, device 1 + link index).
    pub function: DeviceFunction,
    /// The link's index (device number − 1).
    pub index: u32,
    /// Its memory BAR's physical address, as the device reports it.
    pub bar: u64,
}

/// Every virtio console on bus 0 that sits where hvm's contract puts
/// link i (device 1 + i, its BAR at `LINK_BAR_BASE + i * LINK_BAR_STRIDE`);
/// anything else is not a link and is left alone.
pub fn find_links<C: ConfigurationAccess + Clone>(
    access: &C,
) -> impl Iterator<Item = LinkFunction> + '_ {
    let root = PciRoot::new(access.clone());
    let functions: [Option<DeviceFunction>; 32] = {
        let mut found = [None; 32];
        for (function, info) in root.enumerate_bus(0) {
            if info.vendor_id == VIRTIO_VENDOR && info.device_id == CONSOLE_DEVICE {
                if let Some(slot) = found.get_mut(usize::from(function.device)) {
                    *slot = Some(function);
                }
            }
        }
        found
    };
    functions.into_iter().flatten().filter_map(move |function| {
        let index = u32::from(function.device).checked_sub(1)?;
        // BAR 0, a 32-bit memory BAR (PCI 3.0 6.2.5.1).
        let raw = access.read_word(function, 0x10);
        let bar = u64::from(raw & !0xF);
        let expected = LINK_BAR_BASE + u64::from(index) * LINK_BAR_STRIDE;
        (raw & 1 == 0 && bar == expected).then_some(LinkFunction {
            function,
            index,
            bar,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// (device number, vendor, device id, BAR 0).
    type FakeDevice = (u8, u16, u16, u32);

    /// A bus of devices with only function 0; writes are ignored.
    #[derive(Clone)]
    struct FakeBus(Rc<std::vec::Vec<FakeDevice>>);

    impl ConfigurationAccess for FakeBus {
        fn read_word(&self, function: DeviceFunction, offset: u8) -> u32 {
            let Some(&(_, vendor, device, bar)) = self
                .0
                .iter()
                .find(|d| d.0 == function.device && function.function == 0 && function.bus == 0)
            else {
                return 0xFFFF_FFFF;
            };
            match offset {
                0x00 => u32::from(vendor) | (u32::from(device) << 16),
                0x0C => 0, // header type 0, single function
                0x10 => bar,
                _ => 0,
            }
        }
        fn write_word(&mut self, _: DeviceFunction, _: u8, _: u32) {}
        // The trait's method is unsafe; cloning the fake is not.
        #[allow(unsafe_code)]
        unsafe fn unsafe_clone(&self) -> Self {
            self.clone()
        }
    }

    #[test]
    fn links_are_the_consoles_where_the_contract_puts_them() {
        let bus = FakeBus(Rc::new(std::vec![
            (0, 0x8086, 0x1237, 0), // host bridge
            (1, VIRTIO_VENDOR, CONSOLE_DEVICE, 0xE000_0000),
            (2, VIRTIO_VENDOR, 0x1041, 0xE001_0000), // a network device
            (3, VIRTIO_VENDOR, CONSOLE_DEVICE, 0xE002_0000),
            (4, VIRTIO_VENDOR, CONSOLE_DEVICE, 0xD000_0000), // wrong BAR
            (5, VIRTIO_VENDOR, CONSOLE_DEVICE, 0xE004_0001), // I/O BAR
        ]));
        let links: std::vec::Vec<(u32, u64)> = find_links(&bus).map(|l| (l.index, l.bar)).collect();
        assert_eq!(links, [(0, 0xE000_0000), (2, 0xE002_0000)]);
    }
}
