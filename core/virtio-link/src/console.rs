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

use virtio_doorbell::Doorbells;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::Transport;
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE};

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
    doorbells: Doorbells<2>,
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
            // hvm asks for the notify (clears VIRTQ_USED_F_NO_NOTIFY,
            // virtio 1.2 2.7.10) while bytes wait for a buffer; else its
            // next pump fills this one without being told.
            if self.receive.should_notify() {
                self.doorbells.ring(RECEIVE_QUEUE);
            }
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
