//! The link: a virtio console on PCI, driven with `virtio-drivers`.
//!
//! hvm gives a server VM its link as a modern virtio-pci console at
//! 00:01.0 (virtio 1.2 4.1; device 0x1043, 5.3), reached through PCI
//! configuration mechanism #1 (ports 0xCF8/0xCFC) with its memory BAR at
//! 0xE000_0000. Cell 0 sees link i at 00:(1+i).0 (the `vm-probe` image
//! uses this module from that side). The console's port 0 carries the 9P
//! byte stream: receive queue 0, transmit queue 1 (5.3.2).
//!
//! DMA memory is the cell's own: the heap lies in the identity map, so a
//! buffer's guest-physical address is its virtual address (the kernel
//! window and direct map are translated by [`physical`]). hvm checks
//! every descriptor against the cell's memory anyway.
//!
//! Nothing here blocks: receive buffers stay posted and are collected when
//! the device has used them; one transmit is in flight at a time and the
//! rest waits in `outgoing`.

use alloc::alloc::{alloc_zeroed, Layout};
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::ptr::NonNull;

use hvm_abi::{DIRECT_MAP_BASE, KERNEL_WINDOW_BASE};
use virtio_doorbell::Doorbells;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::pci::bus::{Command, ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::Transport;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::arch;

const PAGE: usize = 4096;
const QUEUE_SIZE: usize = 8;
const RECEIVE_QUEUE: u16 = 0;
const TRANSMIT_QUEUE: u16 = 1;
const RECEIVE_BUFFERS: usize = 4;
const VERSION_1: u64 = 1 << 32;

/// The guest-physical address of a runtime virtual address: the boot
/// tables map the cell at the kernel window, the direct map and
/// identically (hvm's loader), and the cell starts at physical 0.
pub fn physical(address: u64) -> u64 {
    if address >= KERNEL_WINDOW_BASE {
        address - KERNEL_WINDOW_BASE
    } else if address >= DIRECT_MAP_BASE {
        address - DIRECT_MAP_BASE
    } else {
        address
    }
}

fn allocate_pages(pages: usize) -> *mut u8 {
    let layout = Layout::from_size_align(pages.max(1) * PAGE, PAGE).expect("page layout");
    // SAFETY: a non-zero size.
    let pointer = unsafe { alloc_zeroed(layout) };
    assert!(!pointer.is_null(), "runtime-vm: out of memory for DMA");
    pointer
}

/// The HAL: DMA memory from the heap (identity mapped).
pub struct CellHal;

// SAFETY: dma_alloc returns zeroed, page-aligned heap memory owned by the
// caller and never freed or reused; share() returns the guest-physical
// address of the buffer it is given, valid while virtio-drivers holds it.
unsafe impl Hal for CellHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let pointer = allocate_pages(pages);
        (
            physical(pointer as u64),
            NonNull::new(pointer).expect("not null"),
        )
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // The BAR's 2 MiB are mapped identically (hvm for a server VM,
        // `map_device` for the probe).
        NonNull::new(paddr as *mut u8).expect("not null")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        physical(buffer.as_ptr() as *mut u8 as u64)
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// PCI configuration mechanism #1 through ports 0xCF8/0xCFC (PCI 3.0
/// 3.2.2.3.2).
pub struct PortConfiguration;

fn config_address(function: DeviceFunction, offset: u8) -> u32 {
    0x8000_0000
        | (u32::from(function.bus) << 16)
        | (u32::from(function.device) << 11)
        | (u32::from(function.function) << 8)
        | u32::from(offset & 0xFC)
}

impl ConfigurationAccess for PortConfiguration {
    fn read_word(&self, function: DeviceFunction, offset: u8) -> u32 {
        arch::outl(0xCF8, config_address(function, offset));
        arch::inl(0xCFC)
    }

    fn write_word(&mut self, function: DeviceFunction, offset: u8, data: u32) {
        arch::outl(0xCF8, config_address(function, offset));
        arch::outl(0xCFC, data);
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortConfiguration
    }
}

/// Features asked for: only VIRTIO_F_VERSION_1 (virtio 1.2 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Features(u64);

impl bitflags::Flags for Features {
    const FLAGS: &'static [bitflags::Flag<Self>] =
        &[bitflags::Flag::new("VERSION_1", Features(VERSION_1))];
    type Bits = u64;
    fn bits(&self) -> u64 {
        self.0
    }
    fn from_bits_retain(bits: u64) -> Self {
        Features(bits)
    }
}

impl core::ops::BitAnd for Features {
    type Output = Self;
    fn bitand(self, other: Self) -> Self {
        Features(self.0 & other.0)
    }
}

/// The virtio consoles on PCI bus 0, in device order (link order).
pub fn consoles() -> Vec<DeviceFunction> {
    let root = PciRoot::new(PortConfiguration);
    root.enumerate_bus(0)
        .filter(|(_, info)| info.vendor_id == 0x1AF4 && info.device_id == 0x1043)
        .map(|(function, _)| function)
        .collect()
}

/// The memory BAR of `function` (BAR 0, a 32-bit memory BAR).
pub fn bar_of(function: DeviceFunction) -> u64 {
    u64::from(PortConfiguration.read_word(function, 0x10) & !0xF)
}

/// A server VM's one link: the console at 00:01.0, where hvm puts it
/// (checked, not assumed), else the first console on bus 0.
pub fn own_link() -> Option<DeviceFunction> {
    let function = DeviceFunction {
        bus: 0,
        device: 1,
        function: 0,
    };
    if PortConfiguration.read_word(function, 0) == 0x1043_1AF4 {
        return Some(function);
    }
    consoles().first().copied()
}

/// A posted buffer (whole pages of heap memory that live for ever).
struct Buffer {
    memory: &'static mut [u8],
    token: Option<u16>,
}

/// Pages of the transmit buffer: a whole 9P answer of the largest msize
/// (8216 bytes) goes out in one transmit and one notify.
const TRANSMIT_PAGES: usize = 3;

fn buffer(pages: usize) -> Buffer {
    // SAFETY: fresh zeroed pages of the heap (contiguous, identity
    // mapped), used only as this buffer.
    let memory = unsafe { core::slice::from_raw_parts_mut(allocate_pages(pages), pages * PAGE) };
    Buffer {
        memory,
        token: None,
    }
}

/// One end of a link.
pub struct Link {
    /// Kept for its drop, which resets the device; notifies go through
    /// `doorbells` (one VM exit each, not three).
    _transport: PciTransport,
    doorbells: Doorbells<2>,
    receive: VirtQueue<CellHal, QUEUE_SIZE>,
    transmit: VirtQueue<CellHal, QUEUE_SIZE>,
    receive_buffers: Vec<Buffer>,
    transmit_buffer: Buffer,
    /// Length of the transmit in flight.
    in_flight: usize,
    outgoing: VecDeque<u8>,
    /// The BAR's guest-physical address.
    pub bar: u64,
}

/// Why the link could not be brought up.
pub type LinkError = &'static str;

impl Link {
    /// Brings up the console at `function` (virtio 1.2 3.1.1: reset,
    /// ACKNOWLEDGE, DRIVER, features, FEATURES_OK, queues, DRIVER_OK) and
    /// posts the receive buffers.
    pub fn open(function: DeviceFunction) -> Result<Self, LinkError> {
        let mut root = PciRoot::new(PortConfiguration);
        let bar = bar_of(function);
        root.set_command(function, Command::MEMORY_SPACE | Command::BUS_MASTER);
        let mut transport = PciTransport::new::<CellHal, PortConfiguration>(&mut root, function)
            .map_err(|_| "the link device's PCI capabilities are not usable")?;
        let features = transport.begin_init(Features(VERSION_1));
        if features.0 & VERSION_1 == 0 {
            return Err("the link device does not offer VIRTIO_F_VERSION_1");
        }
        let receive = VirtQueue::new(&mut transport, RECEIVE_QUEUE, false, false)
            .map_err(|_| "cannot set up the receive queue")?;
        let transmit = VirtQueue::new(&mut transport, TRANSMIT_QUEUE, false, false)
            .map_err(|_| "cannot set up the transmit queue")?;
        transport.finish_init();
        let doorbells = Doorbells::find::<CellHal, _>(&mut root, &PortConfiguration, function)?;
        let mut link = Self {
            _transport: transport,
            doorbells,
            receive,
            transmit,
            receive_buffers: (0..RECEIVE_BUFFERS).map(|_| buffer(1)).collect(),
            transmit_buffer: buffer(TRANSMIT_PAGES),
            in_flight: 0,
            outgoing: VecDeque::new(),
            bar,
        };
        link.post()?;
        Ok(link)
    }

    /// Offers every idle receive buffer to the device. The notify (an
    /// exit to hvm) is needed only when the device had no buffer left:
    /// hvm reads the available ring whenever it pumps the link, at every
    /// notify of either end and before every turn (virtio 1.2 2.7.13:
    /// a driver may leave out notifications the device does not need).
    fn post(&mut self) -> Result<(), LinkError> {
        let starved = self.receive_buffers.iter().all(|b| b.token.is_none());
        let mut posted = false;
        for buffer in &mut self.receive_buffers {
            if buffer.token.is_none() {
                // SAFETY: the buffer is not touched until pop_used hands
                // it back with this token.
                let token = unsafe { self.receive.add(&[], &mut [&mut buffer.memory[..]]) }
                    .map_err(|_| "cannot post a receive buffer")?;
                buffer.token = Some(token);
                posted = true;
            }
        }
        if posted && starved {
            self.doorbells.ring(RECEIVE_QUEUE);
        }
        Ok(())
    }

    /// Collects received bytes into `into`; returns how many.
    pub fn receive(&mut self, into: &mut impl FnMut(&[u8])) -> Result<usize, LinkError> {
        let mut total = 0;
        while let Some(token) = self.receive.peek_used() {
            let Some(buffer) = self
                .receive_buffers
                .iter_mut()
                .find(|b| b.token == Some(token))
            else {
                return Err("the device used a receive buffer it was not given");
            };
            // SAFETY: the same buffer that was added with this token.
            let len = unsafe {
                self.receive
                    .pop_used(token, &[], &mut [&mut buffer.memory[..]])
            }
            .map_err(|_| "the receive queue went wrong")? as usize;
            buffer.token = None;
            let len = len.min(buffer.memory.len());
            into(&buffer.memory[..len]);
            total += len;
        }
        self.post()?;
        Ok(total)
    }

    /// Queues bytes for the peer and starts sending them.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        self.outgoing.extend(bytes);
        self.flush()
    }

    /// Bytes queued and not yet taken by the device.
    pub fn unsent(&self) -> usize {
        self.outgoing.len() + self.in_flight
    }

    /// Finishes a transmit the device used and starts the next.
    pub fn flush(&mut self) -> Result<(), LinkError> {
        if self.in_flight > 0 {
            let Some(token) = self.transmit.peek_used() else {
                return Ok(());
            };
            let buffer = &mut self.transmit_buffer;
            if buffer.token != Some(token) {
                return Err("the device used a transmit buffer it was not given");
            }
            let sent = &buffer.memory[..self.in_flight];
            // SAFETY: the same buffer (and length) that was added.
            unsafe { self.transmit.pop_used(token, &[sent], &mut []) }
                .map_err(|_| "the transmit queue went wrong")?;
            buffer.token = None;
            self.in_flight = 0;
        }
        if self.outgoing.is_empty() {
            return Ok(());
        }
        let buffer = &mut self.transmit_buffer;
        let n = self.outgoing.len().min(buffer.memory.len());
        let (front, back) = self.outgoing.as_slices();
        let first = front.len().min(n);
        buffer.memory[..first].copy_from_slice(&front[..first]);
        buffer.memory[first..n].copy_from_slice(&back[..n - first]);
        self.outgoing.drain(..n);
        let bytes = &buffer.memory[..n];
        // SAFETY: the transmit buffer is not written again until pop_used
        // returns it (`in_flight` guards it).
        let token = unsafe { self.transmit.add(&[bytes], &mut []) }
            .map_err(|_| "cannot queue a transmit buffer")?;
        buffer.token = Some(token);
        self.in_flight = n;
        self.doorbells.ring(TRANSMIT_QUEUE);
        Ok(())
    }

    /// Whether the device has handed back buffers not collected yet.
    pub fn has_used(&self) -> bool {
        self.receive.can_pop() || (self.in_flight > 0 && self.transmit.can_pop())
    }
}
