//! An NE2000 (National DP8390 core, as in the RTL-8029 PCI card) driver by
//! programmed I/O, exposed as a smoltcp [`Device`].
//!
//! The card moves packets only through its I/O ports (remote DMA into its
//! own 16 KiB buffer memory, read and written through the data port), never
//! by bus-master DMA, so the network VM that owns its ports can drive it
//! with no IOMMU and no way to reach memory outside the VM. The port
//! accesses go through [`Ports`], so this logic is tested on the host
//! against a model of the chip (`tests/model.rs`).
//!
//! Register numbers, command bits and the buffer-ring rules are from the
//! DP8390D datasheet (National Semiconductor, "DP8390D/NS32490D NIC Network
//! Interface Controller", 1996), sections 6 (buffer ring), 7 (remote DMA)
//! and 10 (register descriptions), and the NE2000's memory map (buffer RAM
//! at 0x4000-0x7FFF, station-address PROM at 0x0000 with each byte
//! doubled, reset port at base+0x1F, data port at base+0x10).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Port access relative to the card's I/O base (0x00..=0x1F). The runtime
/// implements it with `in`/`out` on the ports it was assigned.
pub trait Ports {
    fn inb(&mut self, offset: u16) -> u8;
    fn outb(&mut self, offset: u16, value: u8);
    fn inw(&mut self, offset: u16) -> u16;
    fn outw(&mut self, offset: u16, value: u16);
}

/// Page 0 and page 1 register offsets (DP8390D §10).
mod reg {
    pub const CR: u16 = 0x00;
    pub const PSTART: u16 = 0x01;
    pub const PSTOP: u16 = 0x02;
    pub const BNRY: u16 = 0x03;
    pub const TPSR: u16 = 0x04;
    pub const TBCR0: u16 = 0x05;
    pub const TBCR1: u16 = 0x06;
    pub const ISR: u16 = 0x07;
    pub const RSAR0: u16 = 0x08;
    pub const RSAR1: u16 = 0x09;
    pub const RBCR0: u16 = 0x0A;
    pub const RBCR1: u16 = 0x0B;
    pub const RCR: u16 = 0x0C;
    pub const TCR: u16 = 0x0D;
    pub const DCR: u16 = 0x0E;
    pub const IMR: u16 = 0x0F;
    /// Page 1: the station address, PAR0..PAR5.
    pub const PAR0: u16 = 0x01;
    /// Page 1: the current page the NIC receives into.
    pub const CURR: u16 = 0x07;
    /// Page 1: the multicast filter, MAR0..MAR7.
    pub const MAR0: u16 = 0x08;
    /// NE2000: the remote-DMA data port and the reset port.
    pub const DATA: u16 = 0x10;
    pub const RESET: u16 = 0x1F;
}

/// Command register bits (DP8390D §10.1).
mod cr {
    pub const STOP: u8 = 0x01;
    pub const START: u8 = 0x02;
    pub const TRANSMIT: u8 = 0x04;
    pub const REMOTE_READ: u8 = 0x08;
    pub const REMOTE_WRITE: u8 = 0x10;
    /// "Abort/complete remote DMA".
    pub const NO_DMA: u8 = 0x20;
    pub const PAGE1: u8 = 0x40;
}

/// Interrupt status bits (DP8390D §10.3).
mod isr {
    pub const RECEIVED: u8 = 0x01;
    pub const TRANSMITTED: u8 = 0x02;
    pub const RX_ERROR: u8 = 0x04;
    pub const TX_ERROR: u8 = 0x08;
    pub const OVERWRITE: u8 = 0x10;
    pub const DMA_DONE: u8 = 0x40;
    pub const RESET: u8 = 0x80;
}

/// The NE2000's buffer memory in 256-byte pages: one full frame to send
/// at 0x40, the receive ring after it up to the end of memory.
const TX_PAGE: u8 = 0x40;
const RX_START: u8 = 0x46;
const RX_STOP: u8 = 0x80;
/// An Ethernet frame without its CRC, which the NIC strips and adds.
const MIN_FRAME: usize = 60;
const MAX_FRAME: usize = 1514;
/// Polls of a status bit before the card is declared dead. Bochs and QEMU
/// finish remote DMA at once; real cards within microseconds.
const SPIN_LIMIT: u32 = 100_000;

/// What can go wrong with the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The reset bit never rose: no NE2000 at these ports.
    NoCard,
    /// A remote DMA did not complete.
    DmaTimeout,
    /// The previous frame is still being sent.
    TransmitBusy,
    /// A frame longer than Ethernet allows.
    FrameTooLong(usize),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::NoCard => write!(
                f,
                "ne2k: no NE2000 answers at these ports (reset never completed)"
            ),
            Error::DmaTimeout => write!(f, "ne2k: remote DMA did not complete"),
            Error::TransmitBusy => write!(f, "ne2k: the previous frame is still being sent"),
            Error::FrameTooLong(n) => {
                write!(f, "ne2k: a {n}-byte frame is longer than Ethernet's 1514")
            }
        }
    }
}

/// Counters a status file can show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub sent: u64,
    /// Frames the ring held that failed the header checks.
    pub bad_headers: u64,
    /// Ring overflows recovered by resetting the ring.
    pub overflows: u64,
    pub tx_errors: u64,
}

/// One NE2000.
pub struct Ne2k<P: Ports> {
    ports: P,
    mac: [u8; 6],
    /// The ring page the next received frame starts at.
    next: u8,
    pub stats: Stats,
}

impl<P: Ports> core::fmt::Debug for Ne2k<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ne2k")
            .field("mac", &self.mac)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<P: Ports> Ne2k<P> {
    /// Resets the card, reads its station address from the PROM and starts
    /// it receiving unicast and broadcast frames.
    pub fn new(mut ports: P) -> Result<Self, Error> {
        // NE2000: a read of the reset port, written back, resets the chip;
        // ISR.RST then rises (DP8390D §10.3).
        let r = ports.inb(reg::RESET);
        ports.outb(reg::RESET, r);
        spin(&mut ports, isr::RESET).map_err(|_| Error::NoCard)?;
        ports.outb(reg::ISR, 0xFF);

        // The initialisation sequence of DP8390D §11.0, first in byte mode
        // to read the PROM.
        ports.outb(reg::CR, cr::STOP | cr::NO_DMA);
        ports.outb(reg::DCR, 0x48); // byte-wide, normal operation, FIFO 8
        ports.outb(reg::RBCR0, 0);
        ports.outb(reg::RBCR1, 0);
        ports.outb(reg::RCR, 0x20); // monitor mode while setting up
        ports.outb(reg::TCR, 0x02); // internal loopback while setting up
        ports.outb(reg::IMR, 0x00); // the driver polls
        ports.outb(reg::ISR, 0xFF);

        let mut prom = [0u8; 32];
        remote_read_bytes(&mut ports, 0, &mut prom)?;
        // The NE2000 PROM holds each address byte twice.
        let mut mac = [0u8; 6];
        for (i, byte) in mac.iter_mut().enumerate() {
            *byte = prom[i * 2];
        }

        // From here on, 16-bit remote DMA (DCR.WTS).
        ports.outb(reg::DCR, 0x49);
        let mut card = Self {
            ports,
            mac,
            next: RX_START + 1,
            stats: Stats::default(),
        };
        card.start_ring();
        Ok(card)
    }

    /// The station address read from the PROM.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// (Re)initialises the receive ring and starts the card (DP8390D §6.0,
    /// §11.0); frames in the ring are dropped.
    fn start_ring(&mut self) {
        let p = &mut self.ports;
        p.outb(reg::CR, cr::STOP | cr::NO_DMA);
        p.outb(reg::RBCR0, 0);
        p.outb(reg::RBCR1, 0);
        p.outb(reg::TCR, 0x02);
        p.outb(reg::TPSR, TX_PAGE);
        p.outb(reg::PSTART, RX_START);
        p.outb(reg::PSTOP, RX_STOP);
        // The boundary trails the current page by one: the ring is empty.
        p.outb(reg::BNRY, RX_START);
        p.outb(reg::ISR, 0xFF);
        p.outb(reg::CR, cr::STOP | cr::NO_DMA | cr::PAGE1);
        for (i, byte) in self.mac.iter().enumerate() {
            p.outb(reg::PAR0 + i as u16, *byte);
        }
        for i in 0..8 {
            p.outb(reg::MAR0 + i, 0xFF);
        }
        p.outb(reg::CURR, RX_START + 1);
        p.outb(reg::CR, cr::START | cr::NO_DMA);
        p.outb(reg::TCR, 0x00); // normal transmit
        p.outb(reg::RCR, 0x0C); // accept broadcast and multicast
        self.next = RX_START + 1;
    }

    /// The page the NIC will receive into next.
    fn current_page(&mut self) -> u8 {
        let p = &mut self.ports;
        p.outb(reg::CR, cr::START | cr::NO_DMA | cr::PAGE1);
        let curr = p.inb(reg::CURR);
        p.outb(reg::CR, cr::START | cr::NO_DMA);
        curr
    }

    /// Takes one received frame out of the ring into `buf`, returning its
    /// length, or `None` if the ring is empty. A ring whose header is
    /// implausible (a card or emulator fault) is reset, losing what it held.
    pub fn receive(&mut self, buf: &mut Vec<u8>) -> Result<Option<usize>, Error> {
        let status = self.ports.inb(reg::ISR);
        if status & isr::OVERWRITE != 0 {
            // DP8390D §6.3: the ring overflowed; restart it.
            self.stats.overflows += 1;
            self.start_ring();
            return Ok(None);
        }
        if status & (isr::RECEIVED | isr::RX_ERROR) != 0 {
            self.ports.outb(reg::ISR, isr::RECEIVED | isr::RX_ERROR);
        }
        let curr = self.current_page();
        if curr == self.next {
            return Ok(None);
        }
        // The 4-byte header the NIC writes before each frame (DP8390D
        // §6.1): receive status, next page, byte count low and high (the
        // count includes the header).
        let mut header = [0u8; 4];
        remote_read(&mut self.ports, u16::from(self.next) << 8, &mut header)?;
        let (rsr, next, count) = (
            header[0],
            header[1],
            usize::from(u16::from_le_bytes([header[2], header[3]])),
        );
        let len = count.wrapping_sub(4);
        let plausible = (RX_START..RX_STOP).contains(&next)
            && rsr & 0x01 != 0
            && (14..=MAX_FRAME + 4).contains(&len);
        if !plausible || !(RX_START..RX_STOP).contains(&curr) {
            self.stats.bad_headers += 1;
            self.start_ring();
            return Ok(None);
        }
        buf.clear();
        buf.resize(len, 0);
        // Remote DMA wraps from PSTOP to PSTART by itself (DP8390D §7.0).
        let start = (u16::from(self.next) << 8) + 4;
        remote_read(&mut self.ports, start, buf)?;
        buf.truncate(len.min(MAX_FRAME));
        self.next = next;
        // BNRY trails the next frame by one page (DP8390D §6.1).
        let boundary = if next == RX_START {
            RX_STOP - 1
        } else {
            next - 1
        };
        self.ports.outb(reg::BNRY, boundary);
        self.stats.received += 1;
        Ok(Some(buf.len()))
    }

    /// Whether the card is still sending the previous frame.
    pub fn transmitting(&mut self) -> bool {
        self.ports.inb(reg::CR) & cr::TRANSMIT != 0
    }

    /// Copies `frame` to the card's transmit page and sends it, padded to
    /// Ethernet's minimum.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), Error> {
        if frame.len() > MAX_FRAME {
            return Err(Error::FrameTooLong(frame.len()));
        }
        let mut waited = 0;
        while self.transmitting() {
            waited += 1;
            if waited > SPIN_LIMIT {
                return Err(Error::TransmitBusy);
            }
        }
        let status = self.ports.inb(reg::ISR);
        if status & isr::TX_ERROR != 0 {
            self.stats.tx_errors += 1;
        }
        self.ports.outb(reg::ISR, isr::TRANSMITTED | isr::TX_ERROR);
        let len = frame.len().max(MIN_FRAME);
        let mut padded;
        let bytes = if frame.len() < len {
            padded = vec![0u8; len];
            padded[..frame.len()].copy_from_slice(frame);
            &padded[..]
        } else {
            frame
        };
        remote_write(&mut self.ports, u16::from(TX_PAGE) << 8, bytes)?;
        let p = &mut self.ports;
        p.outb(reg::TPSR, TX_PAGE);
        p.outb(reg::TBCR0, len as u8);
        p.outb(reg::TBCR1, (len >> 8) as u8);
        p.outb(reg::CR, cr::START | cr::NO_DMA | cr::TRANSMIT);
        self.stats.sent += 1;
        Ok(())
    }

    /// The port interface, for the runtime's own accesses.
    pub fn ports_mut(&mut self) -> &mut P {
        &mut self.ports
    }
}

/// Waits for `bit` in ISR, and clears it.
fn spin<P: Ports>(ports: &mut P, bit: u8) -> Result<(), Error> {
    for _ in 0..SPIN_LIMIT {
        if ports.inb(reg::ISR) & bit != 0 {
            ports.outb(reg::ISR, bit);
            return Ok(());
        }
    }
    Err(Error::DmaTimeout)
}

fn set_remote<P: Ports>(ports: &mut P, address: u16, count: usize) {
    ports.outb(reg::RBCR0, count as u8);
    ports.outb(reg::RBCR1, (count >> 8) as u8);
    ports.outb(reg::RSAR0, address as u8);
    ports.outb(reg::RSAR1, (address >> 8) as u8);
}

/// Remote read in byte mode (used only for the PROM).
fn remote_read_bytes<P: Ports>(ports: &mut P, address: u16, out: &mut [u8]) -> Result<(), Error> {
    ports.outb(reg::ISR, isr::DMA_DONE);
    set_remote(ports, address, out.len());
    ports.outb(reg::CR, cr::START | cr::REMOTE_READ);
    for byte in out.iter_mut() {
        *byte = ports.inb(reg::DATA);
    }
    spin(ports, isr::DMA_DONE)
}

/// Remote read in word mode: the count is rounded up to even (DP8390D §7.0,
/// a word transfer moves two bytes).
fn remote_read<P: Ports>(ports: &mut P, address: u16, out: &mut [u8]) -> Result<(), Error> {
    let count = (out.len() + 1) & !1;
    ports.outb(reg::ISR, isr::DMA_DONE);
    set_remote(ports, address, count);
    ports.outb(reg::CR, cr::START | cr::REMOTE_READ);
    let mut chunks = out.chunks_exact_mut(2);
    for pair in &mut chunks {
        pair.copy_from_slice(&ports.inw(reg::DATA).to_le_bytes());
    }
    if let [last] = chunks.into_remainder() {
        *last = ports.inw(reg::DATA).to_le_bytes()[0];
    }
    spin(ports, isr::DMA_DONE)
}

fn remote_write<P: Ports>(ports: &mut P, address: u16, bytes: &[u8]) -> Result<(), Error> {
    let count = (bytes.len() + 1) & !1;
    ports.outb(reg::ISR, isr::DMA_DONE);
    set_remote(ports, address, count);
    ports.outb(reg::CR, cr::START | cr::REMOTE_WRITE);
    let mut chunks = bytes.chunks_exact(2);
    for pair in &mut chunks {
        ports.outw(reg::DATA, u16::from_le_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        ports.outw(reg::DATA, u16::from(*last));
    }
    spin(ports, isr::DMA_DONE)
}

/// A received frame handed to smoltcp.
pub struct RxFrame(Vec<u8>);

/// Permission to send one frame.
pub struct TxFrame<'a, P: Ports>(&'a mut Ne2k<P>);

impl smoltcp::phy::RxToken for RxFrame {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl<P: Ports> smoltcp::phy::TxToken for TxFrame<'_, P> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let result = f(&mut frame);
        // A frame the card could not take is lost, as on a wire; TCP
        // retransmits it.
        if self.0.send(&frame).is_err() {
            self.0.stats.tx_errors += 1;
        }
        result
    }
}

impl<P: Ports> Device for Ne2k<P> {
    type RxToken<'a>
        = RxFrame
    where
        Self: 'a;
    type TxToken<'a>
        = TxFrame<'a, P>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxFrame, TxFrame<'_, P>)> {
        let mut buf = Vec::with_capacity(MAX_FRAME);
        match Ne2k::receive(self, &mut buf) {
            Ok(Some(_)) => Some((RxFrame(buf), TxFrame(self))),
            _ => None,
        }
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxFrame<'_, P>> {
        Some(TxFrame(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(1);
        caps
    }
}
