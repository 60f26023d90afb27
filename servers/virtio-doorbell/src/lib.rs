//! The notify registers of a virtio PCI device, rung with one write each.
//!
//! virtio-drivers' `PciTransport::notify` writes `queue_select`, reads
//! the queue's `queue_notify_off` and then writes the notify register:
//! three register accesses for one notification. Under hvm each access
//! to the device is a VM exit that hvm decodes, so the links' drivers
//! (core's end, `core/virtio-link`, and a server VM's, `runtime-vm`)
//! find each queue's notify address once, when the device is set up,
//! and then ring it with one 16-bit write.
#![no_std]

use core::ptr::NonNull;

use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::Hal;

/// PCI 3.0 6.7: the vendor-specific capability ID virtio uses.
const CAPABILITY_VENDOR: u8 = 0x09;
/// virtio 1.2 4.1.4: `cfg_type` of the common and notify structures.
const COMMON_CFG: u8 = 1;
const NOTIFY_CFG: u8 = 2;
/// virtio 1.2 4.1.4: offsets in `virtio_pci_cap` of `bar`, `offset`,
/// `length`, and (4.1.4.4) `notify_off_multiplier` after it.
const CAP_BAR: u8 = 4;
const CAP_OFFSET: u8 = 8;
const CAP_LENGTH: u8 = 12;
const CAP_MULTIPLIER: u8 = 16;
/// virtio 1.2 4.1.4.3: `queue_select` and `queue_notify_off` in the
/// common configuration.
const QUEUE_SELECT: usize = 0x16;
const QUEUE_NOTIFY_OFF: usize = 0x1E;

/// The notify registers of a device's queues 0..N, found once.
pub struct Doorbells<const N: usize>([NonNull<u16>; N]);

impl<const N: usize> Doorbells<N> {
    /// Finds the common and notify structures from `function`'s
    /// capabilities (virtio 1.2 4.1.4) and each queue's notify address
    /// (4.1.4.4: the structure's offset plus `queue_notify_off` times
    /// `notify_off_multiplier`), checked against the structure.
    pub fn find<H: Hal, C: ConfigurationAccess>(
        root: &mut PciRoot<C>,
        config: &C,
        function: DeviceFunction,
    ) -> Result<Doorbells<N>, &'static str> {
        let (mut common, mut notify) = (None, None);
        for capability in root.capabilities(function) {
            let kind = (capability.private_header >> 8) as u8;
            if capability.id != CAPABILITY_VENDOR || !matches!(kind, COMMON_CFG | NOTIFY_CFG) {
                continue;
            }
            let at = capability.offset;
            let structure = (
                config.read_word(function, at + CAP_BAR) as u8,
                u64::from(config.read_word(function, at + CAP_OFFSET)),
                u64::from(config.read_word(function, at + CAP_LENGTH)),
            );
            if kind == COMMON_CFG {
                common.get_or_insert(structure);
            } else {
                let multiplier = u64::from(config.read_word(function, at + CAP_MULTIPLIER));
                notify.get_or_insert((structure, multiplier));
            }
        }
        let common = common.ok_or("the virtio device has no common configuration")?;
        let (notify, multiplier) = notify.ok_or("the virtio device has no notify structure")?;
        let mut region = |(bar, offset, length): (u8, u64, u64), least: u64| {
            let (base, size) = root
                .bar_info(function, bar)
                .ok()
                .flatten()
                .and_then(|info| info.memory_address_size())
                .ok_or("a virtio structure's BAR is not a memory BAR")?;
            if length < least || offset.saturating_add(length) > size || base == 0 {
                return Err("a virtio structure lies outside its BAR");
            }
            // SAFETY: the range lies inside the device's memory BAR (just
            // checked), which the caller made reachable for `H`.
            Ok(unsafe { H::mmio_phys_to_virt(base + offset, length as usize) })
        };
        let common_base = region(common, QUEUE_NOTIFY_OFF as u64 + 2)?;
        let notify_base = region(notify, 2)?;
        let mut bells = [NonNull::dangling(); N];
        for (queue, bell) in (0u16..).zip(&mut bells) {
            // SAFETY: both registers lie inside the common structure
            // (checked above), mapped as device memory; the transport is
            // not using it now (it selects a queue before every access).
            let off = unsafe {
                let select = common_base.as_ptr().add(QUEUE_SELECT).cast::<u16>();
                select.write_volatile(queue);
                let off = common_base.as_ptr().add(QUEUE_NOTIFY_OFF).cast::<u16>();
                off.read_volatile()
            };
            let at = u64::from(off) * multiplier;
            if at.saturating_add(2) > notify.2 {
                return Err("a queue's notify address lies outside its structure");
            }
            // SAFETY: inside the notify structure (just checked).
            *bell = unsafe { notify_base.add(at as usize).cast::<u16>() };
        }
        Ok(Doorbells(bells))
    }

    /// Tells the device that `queue` has new buffers (virtio 1.2
    /// 4.1.5.2: the queue's index written to its notify address); a
    /// queue of N or more has no doorbell here, and nothing happens.
    pub fn ring(&self, queue: u16) {
        if let Some(bell) = self.0.get(usize::from(queue)) {
            // SAFETY: `find` checked the address against the device's
            // notify structure; a 16-bit write there is what the device
            // expects.
            unsafe { bell.as_ptr().write_volatile(queue) };
        }
    }
}
