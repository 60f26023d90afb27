//! A modern virtio-pci console device, its PCI function, and the link.
//!
//! Each end of a link is one of these devices in one cell. It is a PCI
//! function (vendor 0x1AF4, device 0x1043, virtio 1.2 4.1.2) with the
//! virtio capabilities (4.1.4: COMMON, NOTIFY, ISR, DEVICE) and MSI-X, all
//! in one 32 KiB memory BAR that hvm emulates through EPT violations:
//!
//! | BAR offset | what |
//! |---|---|
//! | `0x0000` | common configuration (4.1.4.3) |
//! | `0x1000` | ISR status (4.1.4.5) |
//! | `0x2000` | console configuration (5.3.4) |
//! | `0x3000` | notifications, 4 bytes per queue (4.1.4.4) |
//! | `0x4000` | MSI-X table, 8 entries (PCI 3.0 6.8.2) |
//! | `0x5000` | MSI-X pending bits |
//!
//! The device offers VIRTIO_F_VERSION_1 and, for Linux, the multiport
//! feature (5.3.3): the driver then learns the port from control messages
//! (5.3.6.2) and names it `kasane.link`, which is what the agent looks for.
//! Cell 0's driver (virtio-drivers) uses the plain single-port console.
//! Bytes the driver transmits go to [`Pipe`] toward the other end; bytes
//! from the other end fill the driver's receive buffers. Register writes
//! that make no sense (bad feature sets, queue sizes, unknown offsets) are
//! ignored or refused as the spec allows; broken rings stop their queue and
//! set DEVICE_NEEDS_RESET (2.1.2), and are reported, never followed.

use crate::guest::Ram;
use crate::virtqueue::{Queue, QueueError, MAX_QUEUE_SIZE, NO_VECTOR};

/// Size of the memory BAR.
pub const BAR_SIZE: u64 = 0x8000;
/// MSI-X vectors offered.
pub const MSIX_VECTORS: usize = 8;
/// The port name the agent looks for.
pub const PORT_NAME: &[u8] = b"kasane.link";

const COMMON: u64 = 0x0000;
const ISR: u64 = 0x1000;
const DEVICE: u64 = 0x2000;
const NOTIFY: u64 = 0x3000;
const NOTIFY_MULTIPLIER: u64 = 4;
const MSIX_TABLE: u64 = 0x4000;
const MSIX_PBA: u64 = 0x5000;

/// Feature bits (6 "Reserved Feature Bits", 5.3.3).
const F_MULTIPORT: u64 = 1 << 1;
const F_VERSION_1: u64 = 1 << 32;

/// Device status bits (2.1).
const STATUS_FEATURES_OK: u8 = 8;
const STATUS_DRIVER_OK: u8 = 4;
const STATUS_NEEDS_RESET: u8 = 0x40;

/// Queue indices (5.3.2).
const RECEIVE: usize = 0;
const TRANSMIT: usize = 1;
const CONTROL_RECEIVE: usize = 2;
const CONTROL_TRANSMIT: usize = 3;

/// Control events (5.3.6.2).
mod event {
    pub const DEVICE_READY: u16 = 0;
    pub const DEVICE_ADD: u16 = 1;
    pub const PORT_READY: u16 = 3;
    pub const PORT_OPEN: u16 = 6;
    pub const PORT_NAME: u16 = 7;
}

/// Bytes in flight in one direction of a link.
#[derive(Clone, Debug)]
pub struct Pipe {
    bytes: [u8; Self::CAPACITY],
    start: usize,
    len: usize,
}

impl Default for Pipe {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipe {
    /// Bytes held at most; a sender beyond that waits (its buffers stay
    /// unconsumed in its transmit queue).
    pub const CAPACITY: usize = 16 * 1024;

    /// An empty pipe.
    pub const fn new() -> Self {
        Self {
            bytes: [0; Self::CAPACITY],
            start: 0,
            len: 0,
        }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Free space.
    pub fn room(&self) -> usize {
        Self::CAPACITY - self.len
    }

    /// Drops everything (a link reset).
    pub fn clear(&mut self) {
        self.start = 0;
        self.len = 0;
    }

    /// Appends as much of `data` as fits; returns how much. At most two
    /// block copies (the ring wraps once), not a loop per byte: 4 KB
    /// reads cross this twice per hop.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        let tail = (self.start + self.len) % Self::CAPACITY;
        let first = n.min(Self::CAPACITY - tail);
        self.bytes[tail..tail + first].copy_from_slice(&data[..first]);
        self.bytes[..n - first].copy_from_slice(&data[first..n]);
        self.len += n;
        n
    }

    /// Moves up to `out.len()` bytes out; returns how many (at most two
    /// block copies).
    pub fn pop(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        let first = n.min(Self::CAPACITY - self.start);
        out[..first].copy_from_slice(&self.bytes[self.start..self.start + first]);
        out[first..n].copy_from_slice(&self.bytes[..n - first]);
        self.start = (self.start + n) % Self::CAPACITY;
        self.len -= n;
        n
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct MsixEntry {
    address: u64,
    data: u32,
    control: u32,
}

/// What a register write asks of hvm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The driver notified queue N: process the device.
    Notify(u16),
    /// The driver reset the device.
    Reset,
}

/// A problem the device met, for hvm to log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub queue: usize,
    pub error: QueueError,
}

/// What processing produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// Bytes taken from the driver's transmit queue.
    pub transmitted: usize,
    /// Bytes put in the driver's receive buffers.
    pub received: usize,
    /// The first refused chain or broken ring, if any.
    pub fault: Option<Fault>,
}

/// The console device with its PCI configuration space.
#[derive(Clone, Debug)]
pub struct Console {
    multiport: bool,
    /// Guest-physical address of the BAR.
    bar: u32,
    /// PCI command register.
    command: u16,
    /// MSI-X message control (enable bit 15, function mask bit 14).
    msix_control: u16,
    msix: [MsixEntry; MSIX_VECTORS],
    msix_pending: u32,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    config_generation: u8,
    msix_config: u16,
    queue_select: u16,
    queues: [Queue; 4],
    isr: u8,
    /// Control messages waiting for a control-receive buffer.
    control: [Option<(u16, u16)>; 4],
    /// The guest opened the port (multiport).
    pub guest_open: bool,
    /// Chains refused since the last reset.
    pub refused: u32,
    /// MSI vectors to inject, as a bit set over 0..256.
    interrupts: [u64; 4],
    /// The device signalled the driver (used buffers or a configuration
    /// change) since [`Console::take_signal`] last looked, with or without
    /// MSI-X.
    signalled: bool,
}

impl Console {
    /// A device whose BAR sits at `bar` (firmware-assigned).
    pub fn new(multiport: bool, bar: u32) -> Self {
        Self {
            multiport,
            bar,
            command: 0,
            msix_control: (MSIX_VECTORS as u16) - 1,
            msix: [MsixEntry {
                control: 1,
                ..MsixEntry::default()
            }; MSIX_VECTORS],
            msix_pending: 0,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            config_generation: 0,
            msix_config: NO_VECTOR,
            queue_select: 0,
            queues: [Queue::new(); 4],
            isr: 0,
            control: [None; 4],
            guest_open: false,
            refused: 0,
            interrupts: [0; 4],
            signalled: false,
        }
    }

    fn queue_count(&self) -> usize {
        if self.multiport {
            4
        } else {
            2
        }
    }

    fn device_features(&self) -> u64 {
        F_VERSION_1 | if self.multiport { F_MULTIPORT } else { 0 }
    }

    /// The BAR's guest-physical range, when memory decoding is on.
    pub fn bar_range(&self) -> Option<(u64, u64)> {
        (self.command & 2 != 0 && self.bar != 0).then(|| (u64::from(self.bar), BAR_SIZE))
    }

    /// The driver is running (DRIVER_OK).
    pub fn driver_ok(&self) -> bool {
        self.status & STATUS_DRIVER_OK != 0 && self.status & STATUS_NEEDS_RESET == 0
    }

    /// Device reset (virtio 1.2 2.4): all but the PCI state.
    fn reset(&mut self) {
        let (bar, command, msix_control, msix) =
            (self.bar, self.command, self.msix_control, self.msix);
        *self = Self::new(self.multiport, bar);
        self.command = command;
        self.msix_control = msix_control;
        self.msix = msix;
    }

    // ---- PCI configuration space (PCI Local Bus 3.0 chapter 6) ----

    fn config_byte(&self, offset: u8) -> u8 {
        let mut space = [0u8; 0xA0];
        let put16 =
            |s: &mut [u8], at: usize, v: u16| s[at..at + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |s: &mut [u8], at: usize, v: u32| s[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put16(&mut space, 0x00, 0x1AF4);
        put16(&mut space, 0x02, 0x1040 + 3); // virtio 1.2 4.1.2.1: 0x1040 + console (3)
        put16(&mut space, 0x04, self.command);
        put16(&mut space, 0x06, 0x0010); // capabilities list
        space[0x08] = 1; // revision >= 1: a modern-only device
        space[0x0A] = 0x80; // class 07 (communication) / 80 (other)
        space[0x0B] = 0x07;
        put32(&mut space, 0x10, self.bar); // 32-bit memory BAR, not prefetchable
        put16(&mut space, 0x2C, 0x1AF4);
        put16(&mut space, 0x2E, 0x1100);
        space[0x34] = 0x40;
        // Virtio capabilities (4.1.4): cap id 9, next, length, cfg_type,
        // bar, padding, offset, length.
        let caps: [(usize, u8, u8, u32, u32); 4] = [
            (0x40, 1, 0x50, COMMON as u32, 0x38),
            (0x50, 3, 0x60, ISR as u32, 4),
            (0x60, 4, 0x70, DEVICE as u32, 12),
            (0x70, 2, 0x88, NOTIFY as u32, 0x100),
        ];
        for (at, kind, next, offset, length) in caps {
            space[at] = 0x09;
            space[at + 1] = next;
            space[at + 2] = if kind == 2 { 20 } else { 16 };
            space[at + 3] = kind;
            space[at + 4] = 0;
            put32(&mut space, at + 8, offset);
            put32(&mut space, at + 12, length);
        }
        put32(&mut space, 0x70 + 16, NOTIFY_MULTIPLIER as u32);
        // MSI-X capability (PCI 3.0 6.8.2): table and PBA in BAR 0.
        space[0x88] = 0x11;
        space[0x89] = 0;
        put16(&mut space, 0x8A, self.msix_control);
        put32(&mut space, 0x8C, MSIX_TABLE as u32);
        put32(&mut space, 0x90, MSIX_PBA as u32);
        space.get(usize::from(offset)).copied().unwrap_or(0)
    }

    /// A configuration read of `size` bytes at `offset`.
    pub fn config_read(&self, offset: u8, size: u8) -> u32 {
        (0..size).fold(0, |value, i| {
            value | (u32::from(self.config_byte(offset.wrapping_add(i))) << (8 * i))
        })
    }

    /// A configuration write; only the command register, the BAR (for
    /// sizing and placement) and the MSI-X control bits are writable.
    pub fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        for i in 0..size {
            let at = offset.wrapping_add(i);
            let byte = (value >> (8 * i)) as u8;
            match at {
                0x04 => self.command = (self.command & 0xFF00) | u16::from(byte & 0x07),
                0x05 => self.command = (self.command & 0x00FF) | (u16::from(byte & 0x04) << 8),
                0x10..=0x13 => {
                    let shift = 8 * u32::from(at - 0x10);
                    let bar = (self.bar & !(0xFF << shift)) | (u32::from(byte) << shift);
                    // Low bits are hardwired: the size is BAR_SIZE.
                    self.bar = bar & !(BAR_SIZE as u32 - 1);
                }
                0x8B => {
                    self.msix_control =
                        (self.msix_control & 0x3FFF) | (u16::from(byte & 0xC0) << 8);
                    self.deliver_pending();
                }
                _ => {}
            }
        }
    }

    // ---- MSI-X ----

    fn msix_enabled(&self) -> bool {
        self.msix_control & 0x8000 != 0
    }

    /// Signals vector `index`: through MSI-X when enabled and unmasked
    /// (pending while masked), else as an ISR bit the driver can poll.
    fn signal(&mut self, index: u16, isr_bit: u8) {
        self.isr |= isr_bit;
        self.signalled = true;
        if !self.msix_enabled() || index == NO_VECTOR || usize::from(index) >= MSIX_VECTORS {
            return;
        }
        self.msix_pending |= 1 << index;
        self.deliver_pending();
    }

    fn deliver_pending(&mut self) {
        if !self.msix_enabled() || self.msix_control & 0x4000 != 0 {
            return;
        }
        for index in 0..MSIX_VECTORS {
            let entry = self.msix[index];
            if self.msix_pending & (1 << index) != 0 && entry.control & 1 == 0 {
                self.msix_pending &= !(1 << index);
                // The cell has one vCPU: the message's vector is data[7:0]
                // (SDM Vol. 3 11.11.2); the address only picks that vCPU.
                let vector = entry.data as u8;
                self.interrupts[usize::from(vector / 64)] |= 1 << (vector % 64);
            }
        }
    }

    /// Whether the device signalled the driver since the last call (the
    /// ISR-status events of virtio 1.2 4.1.4.5), whatever the driver did
    /// with MSI-X: hvm turns this into a fixed vector for drivers that
    /// never program MSI-X (virtio-drivers does not).
    pub fn take_signal(&mut self) -> bool {
        core::mem::take(&mut self.signalled)
    }

    /// Takes the MSI vectors raised since the last call.
    pub fn take_interrupt(&mut self) -> Option<u8> {
        for word in 0..4 {
            let bits = self.interrupts[word];
            if bits != 0 {
                let bit = bits.trailing_zeros();
                self.interrupts[word] &= !(1 << bit);
                return Some((word as u32 * 64 + bit) as u8);
            }
        }
        None
    }

    // ---- BAR registers ----

    fn selected(&mut self) -> Option<&mut Queue> {
        let count = self.queue_count();
        let index = usize::from(self.queue_select);
        (index < count).then(|| &mut self.queues[index])
    }

    /// An MMIO read of `size` bytes at BAR `offset`.
    pub fn mmio_read(&mut self, offset: u64, size: u8) -> u64 {
        match offset {
            COMMON..0x1000 => self.common_read(offset, size),
            ISR => {
                // Reading the ISR clears it (4.1.4.5).
                let isr = self.isr;
                self.isr = 0;
                u64::from(isr)
            }
            DEVICE..0x200C => {
                // struct virtio_console_config: cols, rows, max_nr_ports,
                // emerg_wr (5.3.4).
                let config: [u8; 12] = [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
                let at = (offset - DEVICE) as usize;
                (0..usize::from(size)).fold(0, |v, i| {
                    v | (u64::from(*config.get(at + i).unwrap_or(&0)) << (8 * i))
                })
            }
            MSIX_TABLE..0x4080 => {
                let entry = &self.msix[((offset - MSIX_TABLE) / 16) as usize];
                let value = match (offset - MSIX_TABLE) % 16 {
                    0 => entry.address,
                    4 => entry.address >> 32,
                    8 => u64::from(entry.data),
                    12 => u64::from(entry.control),
                    _ => 0,
                };
                if size == 8 && (offset - MSIX_TABLE).is_multiple_of(16) {
                    entry.address
                } else {
                    value & 0xFFFF_FFFF
                }
            }
            MSIX_PBA => u64::from(self.msix_pending),
            _ => 0,
        }
    }

    fn common_read(&mut self, offset: u64, size: u8) -> u64 {
        let features = self.device_features();
        let value = match offset {
            0x00 => u64::from(self.device_feature_select),
            0x04 => match self.device_feature_select {
                0 => features & 0xFFFF_FFFF,
                1 => features >> 32,
                _ => 0,
            },
            0x08 => u64::from(self.driver_feature_select),
            0x0C => match self.driver_feature_select {
                0 => self.driver_features & 0xFFFF_FFFF,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            0x10 => u64::from(self.msix_config),
            0x12 => self.queue_count() as u64,
            0x14 => u64::from(self.status),
            0x15 => u64::from(self.config_generation),
            0x16 => u64::from(self.queue_select),
            _ => {
                let Some(queue) = self.selected().copied() else {
                    return 0;
                };
                match offset {
                    0x18 => u64::from(if queue.ready || queue.size != MAX_QUEUE_SIZE {
                        queue.size
                    } else {
                        MAX_QUEUE_SIZE
                    }),
                    0x1A => u64::from(queue.msix_vector),
                    0x1C => u64::from(queue.ready),
                    0x1E => u64::from(self.queue_select), // queue_notify_off
                    0x20 => queue.desc,
                    0x24 => queue.desc >> 32,
                    0x28 => queue.driver,
                    0x2C => queue.driver >> 32,
                    0x30 => queue.device,
                    0x34 => queue.device >> 32,
                    _ => 0,
                }
            }
        };
        match size {
            1 => value & 0xFF,
            2 => value & 0xFFFF,
            4 => value & 0xFFFF_FFFF,
            _ => value,
        }
    }

    /// An MMIO write of `size` bytes at BAR `offset`.
    pub fn mmio_write(&mut self, offset: u64, size: u8, value: u64) -> Effect {
        match offset {
            COMMON..0x1000 => self.common_write(offset, size, value),
            NOTIFY..0x3100 => {
                let queue = ((offset - NOTIFY) / NOTIFY_MULTIPLIER) as u16;
                if usize::from(queue) < self.queue_count() {
                    Effect::Notify(queue)
                } else {
                    Effect::None
                }
            }
            MSIX_TABLE..0x4080 => {
                let entry = &mut self.msix[((offset - MSIX_TABLE) / 16) as usize];
                match ((offset - MSIX_TABLE) % 16, size) {
                    (0, 8) => entry.address = value,
                    (0, _) => {
                        entry.address = (entry.address & !0xFFFF_FFFF) | (value & 0xFFFF_FFFF)
                    }
                    (4, _) => entry.address = (entry.address & 0xFFFF_FFFF) | (value << 32),
                    (8, _) => entry.data = value as u32,
                    (12, _) => entry.control = value as u32 & 1,
                    _ => {}
                }
                self.deliver_pending();
                Effect::None
            }
            // Writes elsewhere (the ISR, the console configuration, the
            // PBA) are ignored; emergency writes are not offered.
            _ => Effect::None,
        }
    }

    fn common_write(&mut self, offset: u64, _size: u8, value: u64) -> Effect {
        let low = value as u32;
        let set_half = |old: u64, high: bool, v: u64| {
            if high {
                (old & 0xFFFF_FFFF) | (v << 32)
            } else if _size == 8 {
                v
            } else {
                (old & !0xFFFF_FFFF) | (v & 0xFFFF_FFFF)
            }
        };
        match offset {
            0x00 => self.device_feature_select = low,
            0x08 => self.driver_feature_select = low,
            0x0C => {
                // Features can only be chosen before FEATURES_OK (3.1.1).
                if self.status & STATUS_FEATURES_OK == 0 {
                    match self.driver_feature_select {
                        0 => {
                            self.driver_features =
                                (self.driver_features & !0xFFFF_FFFF) | u64::from(low)
                        }
                        1 => {
                            self.driver_features =
                                (self.driver_features & 0xFFFF_FFFF) | (u64::from(low) << 32)
                        }
                        _ => {}
                    }
                }
            }
            0x10 => self.msix_config = value as u16,
            0x14 => {
                let status = value as u8;
                if status == 0 {
                    self.reset();
                    return Effect::Reset;
                }
                let mut status = status & !STATUS_NEEDS_RESET;
                // 2.2.2: the device refuses FEATURES_OK for features it did
                // not offer, and requires VERSION_1 (no legacy interface).
                if status & STATUS_FEATURES_OK != 0 && self.status & STATUS_FEATURES_OK == 0 {
                    let offered = self.device_features();
                    if self.driver_features & !offered != 0
                        || self.driver_features & F_VERSION_1 == 0
                    {
                        status &= !STATUS_FEATURES_OK;
                    }
                }
                self.status = status | (self.status & STATUS_NEEDS_RESET);
                if self.driver_ok() {
                    return Effect::Notify(0);
                }
            }
            0x16 => self.queue_select = value as u16,
            _ => {
                let Some(queue) = self.selected() else {
                    return Effect::None;
                };
                // Queue registers are fixed once the queue is enabled.
                if queue.ready && offset != 0x1A {
                    return Effect::None;
                }
                match offset {
                    0x18 => {
                        let size = value as u16;
                        if size.is_power_of_two() && size <= MAX_QUEUE_SIZE {
                            queue.size = size;
                        }
                    }
                    0x1A => {
                        queue.msix_vector = if usize::from(value as u16) < MSIX_VECTORS {
                            value as u16
                        } else {
                            NO_VECTOR
                        }
                    }
                    0x1C if low == 1 => queue.ready = true,
                    0x20 | 0x24 => queue.desc = set_half(queue.desc, offset == 0x24, value),
                    0x28 | 0x2C => queue.driver = set_half(queue.driver, offset == 0x2C, value),
                    0x30 | 0x34 => queue.device = set_half(queue.device, offset == 0x34, value),
                    _ => {}
                }
            }
        }
        Effect::None
    }

    /// The vector reported for a queue read back (for tests and hvm logs).
    pub fn queue_vector(&self, queue: usize) -> u16 {
        self.queues[queue].msix_vector
    }

    fn broken(&mut self, queue: usize, error: QueueError, activity: &mut Activity) {
        self.refused += 1;
        if activity.fault.is_none() {
            activity.fault = Some(Fault { queue, error });
        }
        if error.head().is_none() {
            // The ring itself is unusable: stop the queue, ask for a reset.
            self.queues[queue].broken = true;
            self.status |= STATUS_NEEDS_RESET;
            self.config_generation = self.config_generation.wrapping_add(1);
            let vector = self.msix_config;
            self.signal(vector, 2);
        }
    }

    /// Does all pending work against the driver's memory: the control
    /// queues, transmit into `outbound`, receive from `inbound`.
    pub fn process(
        &mut self,
        ram: &mut Ram<'_>,
        outbound: &mut Pipe,
        inbound: &mut Pipe,
    ) -> Activity {
        let mut activity = Activity::default();
        if !self.driver_ok() {
            return activity;
        }
        if self.multiport {
            self.control_transmit(ram, &mut activity);
            self.control_receive(ram, &mut activity);
        }
        self.transmit(ram, outbound, &mut activity);
        self.receive(ram, inbound, &mut activity);
        activity
    }

    /// Driver → device bytes (5.3.6.1): readable buffers into `outbound`.
    /// A chain that does not fit waits in the ring.
    fn transmit(&mut self, ram: &mut Ram<'_>, outbound: &mut Pipe, activity: &mut Activity) {
        let mut used = false;
        loop {
            let mut queue = self.queues[TRANSMIT];
            // Peek: take the chain only when the pipe can hold it all.
            let snapshot = queue;
            let chain = match queue.pop(ram) {
                Ok(Some(chain)) => chain,
                Ok(None) => break,
                Err(error) => {
                    self.queues[TRANSMIT] = queue;
                    if let Some(head) = error.head() {
                        let _ = self.queues[TRANSMIT].push_used(ram, head, 0);
                        used = true;
                    }
                    self.broken(TRANSMIT, error, activity);
                    continue;
                }
            };
            let total: u64 = chain
                .segments()
                .iter()
                .filter(|s| !s.writable)
                .map(|s| u64::from(s.len))
                .sum();
            if total > outbound.room() as u64 {
                self.queues[TRANSMIT] = snapshot;
                break;
            }
            for segment in chain.segments().iter().filter(|s| !s.writable) {
                // Checked by pop(); a failure here cannot happen.
                if let Ok(bytes) = ram.slice(segment.address, u64::from(segment.len)) {
                    outbound.push(bytes);
                }
            }
            activity.transmitted += total as usize;
            self.queues[TRANSMIT] = queue;
            if let Err(error) = self.queues[TRANSMIT].push_used(ram, chain.head, 0) {
                self.broken(TRANSMIT, error, activity);
                break;
            }
            used = true;
        }
        if used && !self.queues[TRANSMIT].quiet(ram) {
            let vector = self.queues[TRANSMIT].msix_vector;
            self.signal(vector, 1);
        }
    }

    /// Device → driver bytes: `inbound` into writable buffers.
    fn receive(&mut self, ram: &mut Ram<'_>, inbound: &mut Pipe, activity: &mut Activity) {
        let mut used = false;
        while !inbound.is_empty() {
            let chain = match self.queues[RECEIVE].pop(ram) {
                Ok(Some(chain)) => chain,
                Ok(None) => break,
                Err(error) => {
                    if let Some(head) = error.head() {
                        let _ = self.queues[RECEIVE].push_used(ram, head, 0);
                        used = true;
                    }
                    self.broken(RECEIVE, error, activity);
                    continue;
                }
            };
            let mut written = 0u32;
            for segment in chain.segments().iter().filter(|s| s.writable) {
                if let Ok(buffer) = ram.slice_mut(segment.address, u64::from(segment.len)) {
                    let n = inbound.pop(buffer);
                    written += n as u32;
                    if n < buffer.len() {
                        break;
                    }
                }
            }
            activity.received += written as usize;
            if let Err(error) = self.queues[RECEIVE].push_used(ram, chain.head, written) {
                self.broken(RECEIVE, error, activity);
                break;
            }
            used = true;
        }
        if used {
            let vector = self.queues[RECEIVE].msix_vector;
            self.signal(vector, 1);
        }
        // A buffer the driver adds needs a notify only while bytes wait
        // for one; otherwise the next pump (every notify, every turn)
        // fills it: one VM exit fewer per message received.
        self.queues[RECEIVE].ask_notify(ram, !inbound.is_empty());
    }

    /// Control messages from the driver (5.3.6.2): `struct
    /// virtio_console_control { le32 id; le16 event; le16 value; }`.
    fn control_transmit(&mut self, ram: &mut Ram<'_>, activity: &mut Activity) {
        let mut used = false;
        loop {
            let chain = match self.queues[CONTROL_TRANSMIT].pop(ram) {
                Ok(Some(chain)) => chain,
                Ok(None) => break,
                Err(error) => {
                    if let Some(head) = error.head() {
                        let _ = self.queues[CONTROL_TRANSMIT].push_used(ram, head, 0);
                    }
                    self.broken(CONTROL_TRANSMIT, error, activity);
                    continue;
                }
            };
            let mut message = [0u8; 8];
            if let Some(first) = chain
                .segments()
                .first()
                .filter(|s| s.len >= 8 && !s.writable)
            {
                let _ = ram.read(first.address, &mut message);
                let id = u32::from_le_bytes(message[0..4].try_into().unwrap_or([0; 4]));
                let event = u16::from_le_bytes([message[4], message[5]]);
                let value = u16::from_le_bytes([message[6], message[7]]);
                self.control_event(id, event, value);
            }
            let _ = self.queues[CONTROL_TRANSMIT].push_used(ram, chain.head, 0);
            used = true;
        }
        if used {
            let vector = self.queues[CONTROL_TRANSMIT].msix_vector;
            self.signal(vector, 1);
        }
    }

    fn queue_control(&mut self, event: u16, value: u16) {
        if let Some(slot) = self.control.iter_mut().find(|s| s.is_none()) {
            *slot = Some((event, value));
        }
    }

    fn control_event(&mut self, id: u32, event: u16, value: u16) {
        match (event, id) {
            // The driver is ready: announce port 0.
            (event::DEVICE_READY, _) if value == 1 => self.queue_control(event::DEVICE_ADD, 0),
            // Port 0 is set up: name it, and say the host side is open.
            (event::PORT_READY, 0) if value == 1 => {
                self.queue_control(event::PORT_NAME, 0);
                self.queue_control(event::PORT_OPEN, 1);
            }
            (event::PORT_OPEN, 0) => self.guest_open = value == 1,
            _ => {}
        }
    }

    fn control_receive(&mut self, ram: &mut Ram<'_>, activity: &mut Activity) {
        let mut used = false;
        while let Some((event, value)) = self.control[0] {
            let chain = match self.queues[CONTROL_RECEIVE].pop(ram) {
                Ok(Some(chain)) => chain,
                Ok(None) => break,
                Err(error) => {
                    if let Some(head) = error.head() {
                        let _ = self.queues[CONTROL_RECEIVE].push_used(ram, head, 0);
                    }
                    self.broken(CONTROL_RECEIVE, error, activity);
                    continue;
                }
            };
            let mut message = [0u8; 8 + PORT_NAME.len()];
            message[4..6].copy_from_slice(&event.to_le_bytes());
            message[6..8].copy_from_slice(&value.to_le_bytes());
            let len = if event == event::PORT_NAME {
                message[8..].copy_from_slice(PORT_NAME);
                message.len()
            } else {
                8
            };
            let mut written = 0u32;
            if let Some(first) = chain
                .segments()
                .first()
                .filter(|s| s.writable && s.len as usize >= len)
            {
                if ram.write(first.address, &message[..len]).is_ok() {
                    written = len as u32;
                }
            }
            let _ = self.queues[CONTROL_RECEIVE].push_used(ram, chain.head, written);
            used = true;
            self.control.rotate_left(1);
            self.control[3] = None;
        }
        if used {
            let vector = self.queues[CONTROL_RECEIVE].msix_vector;
            self.signal(vector, 1);
        }
    }
}

/// PCI configuration mechanism #1 (PCI 3.0 3.2.2.3.2) for one cell: a host
/// bridge at 00:00.0 and consoles at 00:01.0, 00:02.0, … on bus 0 (link i
/// is device 1 + i; whether that console exists is the cell's to say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfigPorts {
    address: u32,
}

/// Which function a configuration access reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    HostBridge,
    /// Console number N (device 1 + N, function 0).
    Console(u8),
    Absent,
}

impl ConfigPorts {
    /// The CONFIG_ADDRESS port.
    pub const ADDRESS: u16 = 0xCF8;
    /// The CONFIG_DATA ports.
    pub const DATA: u16 = 0xCFC;

    /// A dword write to 0xCF8 latches an address; other sizes are not
    /// configuration cycles (Linux probes with a byte write to 0xCFB).
    pub fn write_address(&mut self, size: u8, value: u32) {
        if size == 4 {
            self.address = value;
        }
    }

    /// The latched address.
    pub fn address(&self) -> u32 {
        self.address
    }

    /// Decodes the latch for an access at data port `port`: the function
    /// and the register offset.
    pub fn target(&self, port: u16) -> (Function, u8) {
        let offset = ((self.address & 0xFC) as u8) + (port - Self::DATA) as u8;
        if self.address & 0x8000_0000 == 0 {
            return (Function::Absent, offset);
        }
        let bus = (self.address >> 16) & 0xFF;
        let device = (self.address >> 11) & 0x1F;
        let function = (self.address >> 8) & 7;
        let target = match (bus, device, function) {
            (0, 0, 0) => Function::HostBridge,
            (0, 1..=31, 0) => Function::Console(device as u8 - 1),
            _ => Function::Absent,
        };
        (target, offset)
    }
}

/// The host bridge's configuration space: Red Hat's generic host bridge
/// IDs (1B36:0008), class 06/00, nothing writable.
pub fn host_bridge_read(offset: u8, size: u8) -> u32 {
    let space: [u8; 16] = [
        0x36, 0x1B, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0x00, 0x06, 0, 0, 0, 0,
    ];
    (0..size).fold(0, |value, i| {
        value
            | (u32::from(*space.get(usize::from(offset.wrapping_add(i))).unwrap_or(&0)) << (8 * i))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::virtqueue::tests::Guest;

    #[test]
    fn the_pipe_keeps_bytes_in_order_across_the_wrap() {
        let mut pipe = std::boxed::Box::new(Pipe::new());
        let mut model = std::collections::VecDeque::new();
        let mut next = 0u8;
        // Uneven pushes and pops walk the ring's start round it many times.
        for round in 0..200usize {
            let want = (round * 7919) % 9000;
            let data: std::vec::Vec<u8> = (0..want)
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            let pushed = pipe.push(&data);
            assert_eq!(pushed, want.min(Pipe::CAPACITY - model.len()));
            model.extend(&data[..pushed]);
            let mut out = std::vec![0u8; (round * 104_729) % 7000];
            let popped = pipe.pop(&mut out);
            assert_eq!(popped, out.len().min(model.len()));
            for byte in &out[..popped] {
                assert_eq!(Some(*byte), model.pop_front());
            }
            assert_eq!(pipe.len(), model.len());
        }
    }

    /// Drives the common configuration as a driver would (3.1.1).
    pub(crate) fn bring_up(device: &mut Console, queues: &[(u16, u64)]) {
        device.config_write(0x04, 2, 0x0006);
        device.mmio_write(0x14, 1, 1 | 2);
        device.mmio_write(0x08, 4, 1);
        device.mmio_write(0x0C, 4, 1); // VERSION_1
        device.mmio_write(0x08, 4, 0);
        device.mmio_write(0x0C, 4, if device.multiport { 2 } else { 0 });
        device.mmio_write(0x14, 1, 1 | 2 | 8);
        assert_eq!(device.mmio_read(0x14, 1) & 8, 8, "FEATURES_OK accepted");
        for &(index, base) in queues {
            device.mmio_write(0x16, 2, u64::from(index));
            device.mmio_write(0x18, 2, 8);
            device.mmio_write(0x1A, 2, u64::from(index));
            device.mmio_write(0x20, 8, base);
            device.mmio_write(0x28, 4, base + 0x100);
            device.mmio_write(0x2C, 4, 0);
            device.mmio_write(0x30, 8, base + 0x200);
            device.mmio_write(0x1C, 2, 1);
        }
        device.mmio_write(0x14, 1, 1 | 2 | 8 | 4);
        assert!(device.driver_ok());
    }

    pub(crate) fn queue_at(base: u64) -> Queue {
        crate::virtqueue::tests::queue(base, base + 0x100, base + 0x200)
    }

    #[test]
    fn pci_identity_and_capabilities() {
        let device = Console::new(true, 0xE000_0000);
        assert_eq!(device.config_read(0, 4), 0x1043_1AF4);
        assert_eq!(device.config_read(0x08, 1), 1);
        assert_eq!(device.config_read(0x34, 1), 0x40);
        // Walk the capability list: four virtio caps, then MSI-X.
        let mut at = device.config_read(0x34, 1) as u8;
        let mut kinds = std::vec::Vec::new();
        while at != 0 {
            let id = device.config_read(at, 1);
            kinds.push(if id == 9 {
                device.config_read(at + 3, 1)
            } else {
                0x100 | id
            });
            at = device.config_read(at + 1, 1) as u8;
        }
        assert_eq!(kinds, [1, 3, 4, 2, 0x111]);
        assert_eq!(device.config_read(0x8A, 2) & 0x7FF, MSIX_VECTORS as u32 - 1);
    }

    #[test]
    fn bar_sizing_and_decoding() {
        let mut device = Console::new(false, 0xE000_0000);
        assert_eq!(device.bar_range(), None, "memory decoding off");
        device.config_write(0x10, 4, 0xFFFF_FFFF);
        assert_eq!(!device.config_read(0x10, 4) + 1, BAR_SIZE as u32);
        device.config_write(0x10, 4, 0xE000_0000);
        device.config_write(0x04, 2, 2);
        assert_eq!(device.bar_range(), Some((0xE000_0000, BAR_SIZE)));
    }

    #[test]
    fn feature_negotiation_refuses_unoffered_features() {
        let mut device = Console::new(false, 0xE000_0000);
        device.mmio_write(0x08, 4, 0);
        device.mmio_write(0x0C, 4, 2); // MULTIPORT, not offered here
        device.mmio_write(0x08, 4, 1);
        device.mmio_write(0x0C, 4, 1);
        device.mmio_write(0x14, 1, 1 | 2 | 8);
        assert_eq!(device.mmio_read(0x14, 1) & 8, 0);
        device.mmio_write(0x14, 1, 0);
        assert_eq!(device.mmio_read(0x14, 1), 0, "reset");
    }

    #[test]
    fn bytes_cross_the_link_both_ways() {
        let (mut a_guest, mut b_guest) = (Guest::new(), Guest::new());
        let mut a = Console::new(false, 0xE000_0000);
        let mut b = Console::new(false, 0xE000_0000);
        bring_up(&mut a, &[(0, 0x1000), (1, 0x2000)]);
        bring_up(&mut b, &[(0, 0x1000), (1, 0x2000)]);
        let (mut a_to_b, mut b_to_a) = (Pipe::new(), Pipe::new());
        // A transmits "hello".
        a_guest.bytes[0x8000..0x8005].copy_from_slice(b"hello");
        a_guest.descriptor(&queue_at(0x2000), 0, 0x8000, 5, 0, 0);
        a_guest.offer(&queue_at(0x2000), 0);
        let activity = a.process(&mut a_guest.ram(), &mut a_to_b, &mut b_to_a);
        assert_eq!(activity.transmitted, 5);
        assert_eq!(a_guest.used_index(&queue_at(0x2000)), 1);
        // B has a receive buffer of 3 bytes, then another.
        b_guest.descriptor(&queue_at(0x1000), 0, 0x9000, 3, 2, 0);
        b_guest.offer(&queue_at(0x1000), 0);
        let activity = b.process(&mut b_guest.ram(), &mut b_to_a, &mut a_to_b);
        assert_eq!(activity.received, 3);
        assert_eq!(&b_guest.bytes[0x9000..0x9003], b"hel");
        b_guest.descriptor(&queue_at(0x1000), 1, 0x9100, 64, 2, 0);
        b_guest.offer(&queue_at(0x1000), 1);
        b.process(&mut b_guest.ram(), &mut b_to_a, &mut a_to_b);
        assert_eq!(&b_guest.bytes[0x9100..0x9102], b"lo");
        assert_eq!(b_guest.used(&queue_at(0x1000), 1), (1, 2));
    }

    #[test]
    fn hostile_descriptors_are_failed_and_counted() {
        let mut guest = Guest::new();
        let mut device = Console::new(false, 0xE000_0000);
        bring_up(&mut device, &[(0, 0x1000), (1, 0x2000)]);
        let (mut out, mut inbound) = (Pipe::new(), Pipe::new());
        guest.descriptor(&queue_at(0x2000), 0, 0xFFFF_0000, 64, 0, 0);
        guest.offer(&queue_at(0x2000), 0);
        let activity = device.process(&mut guest.ram(), &mut out, &mut inbound);
        assert!(matches!(
            activity.fault,
            Some(Fault {
                queue: 1,
                error: QueueError::BufferOutside { .. }
            })
        ));
        assert_eq!(device.refused, 1);
        assert!(out.is_empty());
        assert_eq!(
            guest.used(&queue_at(0x2000), 0),
            (0, 0),
            "returned with nothing done"
        );
        // A ring outside memory breaks the queue and asks for a reset.
        device.mmio_write(0x14, 1, 0);
        device.mmio_write(0x16, 2, 1);
        bring_up(&mut device, &[(0, 0x1000), (1, 0xFFF00)]);
        let activity = device.process(&mut guest.ram(), &mut out, &mut inbound);
        assert_eq!(activity.fault.unwrap().error, QueueError::RingOutside);
        assert_eq!(device.mmio_read(0x14, 1) & 0x40, 0x40);
        // Nonsense register writes change nothing they should not.
        device.mmio_write(0x16, 2, 77);
        device.mmio_write(0x18, 2, 3);
        assert_eq!(device.mmio_read(0x18, 2), 0);
        device.mmio_write(0x7777, 4, 1);
        assert_eq!(device.mmio_write(0x3000 + 4 * 9, 2, 0), Effect::None);
    }

    #[test]
    fn multiport_names_the_port_and_msix_interrupts() {
        let mut guest = Guest::new();
        let mut device = Console::new(true, 0xE000_0000);
        device.config_write(0x8B, 1, 0x80); // MSI-X enable
        for vector in 0..4u64 {
            device.mmio_write(0x4000 + 16 * vector + 8, 4, 0x40 + vector);
            device.mmio_write(0x4000 + 16 * vector + 12, 4, 0);
        }
        bring_up(
            &mut device,
            &[(0, 0x1000), (1, 0x2000), (2, 0x3000), (3, 0x4000)],
        );
        let (mut out, mut inbound) = (Pipe::new(), Pipe::new());
        // Control receive buffers.
        for i in 0..4u16 {
            guest.descriptor(
                &queue_at(0x3000),
                i,
                0xA000 + 0x100 * u64::from(i),
                64,
                2,
                0,
            );
            guest.offer(&queue_at(0x3000), i);
        }
        // DEVICE_READY, then PORT_READY for port 0.
        guest.bytes[0xB000..0xB008].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 1, 0]);
        guest.descriptor(&queue_at(0x4000), 0, 0xB000, 8, 0, 0);
        guest.offer(&queue_at(0x4000), 0);
        device.process(&mut guest.ram(), &mut out, &mut inbound);
        assert_eq!(guest.used(&queue_at(0x3000), 0), (0, 8));
        assert_eq!(
            &guest.bytes[0xA004..0xA008],
            &[1, 0, 0, 0],
            "DEVICE_ADD port 0"
        );
        guest.bytes[0xB100..0xB108].copy_from_slice(&[0, 0, 0, 0, 3, 0, 1, 0]);
        guest.descriptor(&queue_at(0x4000), 1, 0xB100, 8, 0, 0);
        guest.offer(&queue_at(0x4000), 1);
        device.process(&mut guest.ram(), &mut out, &mut inbound);
        assert_eq!(&guest.bytes[0xA104..0xA106], &[7, 0], "PORT_NAME");
        assert_eq!(&guest.bytes[0xA108..0xA108 + PORT_NAME.len()], PORT_NAME);
        assert_eq!(&guest.bytes[0xA204..0xA208], &[6, 0, 1, 0], "PORT_OPEN 1");
        let mut vectors = std::vec::Vec::new();
        while let Some(v) = device.take_interrupt() {
            vectors.push(v);
        }
        assert_eq!(vectors, [0x42, 0x43]);
        // A masked entry holds its message until unmasked.
        device.mmio_write(0x4000 + 16 * 2 + 12, 4, 1);
        guest.descriptor(&queue_at(0x4000), 2, 0xB100, 8, 0, 0);
        guest.offer(&queue_at(0x4000), 2);
        device.process(&mut guest.ram(), &mut out, &mut inbound);
        assert_eq!(device.take_interrupt(), Some(0x43));
        assert_eq!(device.take_interrupt(), None);
        assert_ne!(device.mmio_read(0x5000, 4), 0, "pending bit");
        device.mmio_write(0x4000 + 16 * 2 + 12, 4, 0);
        assert_eq!(device.take_interrupt(), Some(0x42));
    }

    #[test]
    fn configuration_ports_decode_bus_device_function() {
        let mut ports = ConfigPorts::default();
        ports.write_address(1, 0x8000_0000);
        assert_eq!(ports.address(), 0);
        ports.write_address(4, 0x8000_0810);
        assert_eq!(ports.target(0xCFC), (Function::Console(0), 0x10));
        ports.write_address(4, 0x8000_0002);
        assert_eq!(ports.target(0xCFE), (Function::HostBridge, 0x02));
        ports.write_address(4, 0x8001_0000);
        assert_eq!(ports.target(0xCFC).0, Function::Absent);
        assert_eq!(host_bridge_read(0x0A, 2), 0x0600);
    }
}
