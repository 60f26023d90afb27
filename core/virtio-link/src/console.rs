//! One link's console, driven by `virtio-drivers`.
//!
//! hvm's link device is a single-port virtio console (virtio 1.2 5.3):
//! queue 0 receives, queue 1 transmits, and nothing else is negotiated but
//! `VIRTIO_F_VERSION_1`. `virtio-drivers` does the PCI transport set-up
//! (capabilities, common configuration) and the split virtqueues; this
//! module rings the queues' notify registers itself (one access each),
//! asks for no interrupt when a sent buffer is used, keeps one receive
//! buffer posted and sends through a bounce page, both DMA pages from the
//! caller's [`Hal`], so that what the device reads and writes is always
//! memory the `Hal` can translate (never the caller's stack).

use core::ptr::NonNull;

use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::Transport;
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE};

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

const QUEUE_SIZE: usize = 4;
/// virtio 1.2 5.3.2: receiveq of port 0.
pub const RECEIVE_QUEUE: u16 = 0;
/// virtio 1.2 5.3.2: transmitq of port 0.
pub const TRANSMIT_QUEUE: u16 = 1;
/// virtio 1.2 6: VIRTIO_F_VERSION_1.
const VERSION_1: u64 = 1 << 32;

/// Features core asks for: only VIRTIO_F_VERSION_1.
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

/// Pages in each direction's buffer: room for a whole 9P message of
/// the largest msize Kasane uses (8216 bytes) in one round, so a 4 KB
/// read's answer crosses the link in one receive and one notify rather
/// than two of each.
const BUFFER_PAGES: usize = 3;

/// A DMA buffer of [`BUFFER_PAGES`] pages from the `Hal`, owned by the
/// console for its life.
struct Page {
    physical: u64,
    pointer: NonNull<u8>,
}

impl Page {
    const SIZE: usize = BUFFER_PAGES * PAGE_SIZE;

    fn new<H: Hal>(direction: BufferDirection) -> Page {
        let (physical, pointer) = H::dma_alloc(BUFFER_PAGES, direction);
        Page { physical, pointer }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: dma_alloc gave BUFFER_PAGES zeroed pages, physically
        // contiguous, owned by this console alone; the device touches them
        // only while a queue holds them, and the console borrows them then
        // only through that queue.
        unsafe { core::slice::from_raw_parts_mut(self.pointer.as_ptr(), Self::SIZE) }
    }
}

/// The notify registers of the two queues, found once when the console
/// opens. virtio-drivers' own notify selects the queue and reads its
/// `queue_notify_off` before it writes, three register accesses where
/// one will do; under hvm each is a VM exit.
struct Doorbells([NonNull<u16>; 2]);

impl Doorbells {
    /// Finds the common and notify structures from `function`'s
    /// capabilities (virtio 1.2 4.1.4) and each queue's notify address
    /// (4.1.4.4: the structure's offset plus `queue_notify_off` times
    /// `notify_off_multiplier`), checked against the structure.
    fn find<H: Hal, C: ConfigurationAccess>(
        root: &mut PciRoot<C>,
        config: &C,
        function: DeviceFunction,
    ) -> Result<Doorbells, &'static str> {
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
        let common = common.ok_or("the link device has no common configuration")?;
        let (notify, multiplier) = notify.ok_or("the link device has no notify structure")?;
        let mut region = |(bar, offset, length): (u8, u64, u64), least: u64| {
            let (base, size) = root
                .bar_info(function, bar)
                .ok()
                .flatten()
                .and_then(|info| info.memory_address_size())
                .ok_or("a link device structure's BAR is not a memory BAR")?;
            if length < least || offset.saturating_add(length) > size || base == 0 {
                return Err("a link device structure lies outside its BAR");
            }
            // SAFETY: the range lies inside the device's memory BAR (just
            // checked), which the caller made reachable for `H`.
            Ok(unsafe { H::mmio_phys_to_virt(base + offset, length as usize) })
        };
        let common_base = region(common, QUEUE_NOTIFY_OFF as u64 + 2)?;
        let notify_base = region(notify, 2)?;
        let mut bells = [NonNull::dangling(); 2];
        for (queue, bell) in [RECEIVE_QUEUE, TRANSMIT_QUEUE].into_iter().zip(&mut bells) {
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
                return Err("a link queue's notify address lies outside its structure");
            }
            // SAFETY: inside the notify structure (just checked).
            *bell = unsafe { notify_base.add(at as usize).cast::<u16>() };
        }
        Ok(Doorbells(bells))
    }

    /// Tells the device that `queue` has new buffers (virtio 1.2 4.1.5.2:
    /// the queue's index written to its notify address).
    fn ring(&self, queue: u16) {
        // SAFETY: `find` checked the address against the device's notify
        // structure; a 16-bit write there is what the device expects.
        unsafe { self.0[usize::from(queue)].as_ptr().write_volatile(queue) };
    }
}

/// The console of one link: transport, queues, buffers. Dropping it
/// resets the device (virtio-drivers' transport does); its two buffer
/// pages are kept (a console is set up once per link reset at most).
pub struct LinkConsole<H: Hal> {
    /// Kept for its drop, which resets the device; notifies go through
    /// `doorbells`.
    _transport: PciTransport,
    receive: VirtQueue<H, QUEUE_SIZE>,
    transmit: VirtQueue<H, QUEUE_SIZE>,
    incoming: Page,
    outgoing: Page,
    doorbells: Doorbells,
    token: Option<u16>,
    /// Bytes of the last filled receive buffer not yet handed out
    /// (`start..end` of `incoming`): a caller with a small buffer gets
    /// the rest on its next call, before the buffer is offered again.
    unread: (usize, usize),
}

impl<H: Hal> LinkConsole<H> {
    /// Resets and sets up the link device at `function` (its BAR already
    /// reachable through `H::mmio_phys_to_virt`; `config` is `root`'s
    /// configuration access), then posts a receive buffer.
    pub fn open<C: ConfigurationAccess>(
        root: &mut PciRoot<C>,
        config: &C,
        function: DeviceFunction,
    ) -> Result<Self, &'static str> {
        let mut transport = PciTransport::new::<H, C>(root, function)
            .map_err(|_| "the link device's PCI capabilities are not usable")?;
        // virtio 1.2 3.1.1: reset, acknowledge, driver, features.
        let features = transport.begin_init(Features(VERSION_1));
        if features.0 & VERSION_1 == 0 {
            return Err("the link device does not offer VIRTIO_F_VERSION_1");
        }
        let receive = VirtQueue::new(&mut transport, RECEIVE_QUEUE, false, false)
            .map_err(|_| "cannot set up the receive queue")?;
        let mut transmit = VirtQueue::new(&mut transport, TRANSMIT_QUEUE, false, false)
            .map_err(|_| "cannot set up the transmit queue")?;
        // `send` waits for its buffer itself: a used-buffer interrupt per
        // send would only wake core's loop for nothing (virtio 1.2
        // 2.7.7.2, VIRTQ_AVAIL_F_NO_INTERRUPT).
        transmit.set_dev_notify(false);
        transport.finish_init();
        let doorbells = Doorbells::find::<H, C>(root, config, function)?;
        let mut console = LinkConsole {
            _transport: transport,
            receive,
            transmit,
            incoming: Page::new::<H>(BufferDirection::DeviceToDriver),
            outgoing: Page::new::<H>(BufferDirection::DriverToDevice),
            doorbells,
            token: None,
            unread: (0, 0),
        };
        console.post()?;
        Ok(console)
    }

    /// Physical address of the receive buffer (for the hostile test).
    pub fn receive_buffer(&self) -> u64 {
        self.incoming.physical
    }

    /// Offers the receive buffer to the device.
    fn post(&mut self) -> Result<(), &'static str> {
        if self.token.is_none() {
            let buffer = self.incoming.bytes();
            // SAFETY: the buffer is not touched until pop_used returns it
            // (virtio-drivers' contract for `add`).
            let token = unsafe { self.receive.add(&[], &mut [buffer]) }
                .map_err(|_| "cannot post a receive buffer")?;
            self.token = Some(token);
            // Always: the notify is what makes hvm fill the buffer with
            // bytes already waiting.
            self.doorbells.ring(RECEIVE_QUEUE);
        }
        Ok(())
    }

    /// Bytes received since the last call, if any, copied into `out`.
    /// Nothing is lost when `out` is smaller than what came: the rest is
    /// kept for the next call.
    pub fn receive(&mut self, out: &mut [u8]) -> Result<usize, &'static str> {
        if self.unread.0 == self.unread.1 {
            let Some(token) = self.token else {
                return Ok(0);
            };
            if self.receive.peek_used() != Some(token) {
                return Ok(0);
            }
            let buffer = self.incoming.bytes();
            // SAFETY: the same buffer that was added with this token.
            let length = unsafe { self.receive.pop_used(token, &[], &mut [buffer]) }
                .map_err(|_| "the receive queue went wrong")? as usize;
            self.token = None;
            self.unread = (0, length.min(Page::SIZE));
        }
        let (start, end) = self.unread;
        let n = (end - start).min(out.len());
        out[..n].copy_from_slice(&self.incoming.bytes()[start..start + n]);
        self.unread.0 += n;
        if self.unread.0 == self.unread.1 {
            self.unread = (0, 0);
            self.post()?;
        }
        Ok(n)
    }

    /// Sends `bytes`, a buffer at a time; returns when the device took
    /// them (hvm moves them at the notify, or as soon as its pipe has
    /// room).
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), &'static str> {
        for chunk in bytes.chunks(Page::SIZE) {
            let page = self.outgoing.bytes();
            page[..chunk.len()].copy_from_slice(chunk);
            let page: &[u8] = &self.outgoing.bytes()[..chunk.len()];
            let inputs = [page];
            // SAFETY: the page stays untouched until the same token is
            // popped below (virtio-drivers' contract for `add`).
            let token = unsafe { self.transmit.add(&inputs, &mut []) }
                .map_err(|_| "the transmit queue is full")?;
            if self.transmit.should_notify() {
                self.doorbells.ring(TRANSMIT_QUEUE);
            }
            // hvm moves the bytes during the notify, or as soon as its
            // pipe toward the peer has room.
            while !self.transmit.can_pop() {
                core::hint::spin_loop();
            }
            // SAFETY: the buffers added with this token, still valid.
            unsafe { self.transmit.pop_used(token, &inputs, &mut []) }
                .map_err(|_| "the transmit queue went wrong")?;
        }
        Ok(())
    }
}
