//! The driver against a model of the DP8390/NE2000 written from the
//! datasheet: the PROM, remote DMA with its ring wrap, the receive ring with
//! its headers and overflow, and transmit.

use ne2k::{Error, Ne2k, Ports};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

struct Model {
    mem: Vec<u8>,
    cr: u8,
    pstart: u8,
    pstop: u8,
    bnry: u8,
    tpsr: u8,
    tbcr: u16,
    isr: u8,
    rsar: u16,
    rbcr: u16,
    rcr: u8,
    dcr: u8,
    par: [u8; 6],
    curr: u8,
    sent: Vec<Vec<u8>>,
    /// A card that never finishes its reset.
    dead: bool,
}

impl Model {
    fn new() -> Self {
        let mut mem = vec![0u8; 0x8000];
        for (i, b) in MAC.iter().enumerate() {
            mem[2 * i] = *b;
            mem[2 * i + 1] = *b;
        }
        mem[28..32].fill(0x57);
        Self {
            mem,
            cr: 0x21,
            pstart: 0,
            pstop: 0,
            bnry: 0,
            tpsr: 0,
            tbcr: 0,
            isr: 0,
            rsar: 0,
            rbcr: 0,
            rcr: 0,
            dcr: 0,
            par: [0; 6],
            curr: 0,
            sent: Vec::new(),
            dead: false,
        }
    }

    fn started(&self) -> bool {
        self.cr & 0x03 == 0x02
    }

    /// A frame arrives from the wire. Returns whether the card took it.
    fn deliver(&mut self, frame: &[u8]) -> bool {
        if !self.started() || self.rcr & 0x20 != 0 {
            return false;
        }
        let broadcast = frame[..6] == [0xFF; 6];
        if !(frame[..6] == self.par || broadcast && self.rcr & 0x04 != 0) {
            return false;
        }
        let total = frame.len() + 4;
        let pages = total.div_ceil(256) as u8;
        let ring = self.pstop - self.pstart;
        // Free pages between CURR and BNRY (the NIC stops at BNRY).
        let used = (self.curr + ring - self.bnry - 1) % ring;
        if pages > ring - 1 - used {
            self.isr |= 0x10;
            return false;
        }
        let mut next = self.curr + pages;
        if next >= self.pstop {
            next -= ring;
        }
        let mut bytes = vec![0x01, next, total as u8, (total >> 8) as u8];
        bytes.extend_from_slice(frame);
        let mut at = usize::from(self.curr) << 8;
        for b in bytes {
            self.mem[at] = b;
            at += 1;
            if at == usize::from(self.pstop) << 8 {
                at = usize::from(self.pstart) << 8;
            }
        }
        self.curr = next;
        self.isr |= 0x01;
        true
    }

    fn data_in(&mut self) -> u8 {
        let b = self.mem[usize::from(self.rsar) % 0x8000];
        self.advance();
        b
    }

    fn data_out(&mut self, b: u8) {
        let at = usize::from(self.rsar) % 0x8000;
        if at >= 0x4000 {
            self.mem[at] = b;
        }
        self.advance();
    }

    fn advance(&mut self) {
        self.rsar = self.rsar.wrapping_add(1);
        if self.rsar == u16::from(self.pstop) << 8 && self.pstop != 0 {
            self.rsar = u16::from(self.pstart) << 8;
        }
        self.rbcr = self.rbcr.saturating_sub(1);
        if self.rbcr == 0 {
            self.isr |= 0x40;
        }
    }
}

impl Ports for Model {
    fn inb(&mut self, offset: u16) -> u8 {
        let page = self.cr >> 6;
        match (page, offset) {
            (_, 0x00) => self.cr,
            (_, 0x10) => self.data_in(),
            (_, 0x1F) => 0,
            (0, 0x03) => self.bnry,
            (0, 0x07) => self.isr,
            (1, 0x07) => self.curr,
            (1, 1..=6) => self.par[usize::from(offset) - 1],
            _ => 0xFF,
        }
    }

    fn outb(&mut self, offset: u16, v: u8) {
        let page = self.cr >> 6;
        match (page, offset) {
            (_, 0x00) => {
                self.cr = v & !0x04;
                if v & 0x04 != 0 && self.started() {
                    let start = usize::from(self.tpsr) << 8;
                    self.sent
                        .push(self.mem[start..start + usize::from(self.tbcr)].to_vec());
                    self.isr |= 0x02;
                }
            }
            (_, 0x10) => self.data_out(v),
            (_, 0x1F) if !self.dead => self.isr |= 0x80,
            (0, 0x01) => self.pstart = v,
            (0, 0x02) => self.pstop = v,
            (0, 0x03) => self.bnry = v,
            (0, 0x04) => self.tpsr = v,
            (0, 0x05) => self.tbcr = (self.tbcr & 0xFF00) | u16::from(v),
            (0, 0x06) => self.tbcr = (self.tbcr & 0x00FF) | (u16::from(v) << 8),
            (0, 0x07) => self.isr &= !v,
            (0, 0x08) => self.rsar = (self.rsar & 0xFF00) | u16::from(v),
            (0, 0x09) => self.rsar = (self.rsar & 0x00FF) | (u16::from(v) << 8),
            (0, 0x0A) => self.rbcr = (self.rbcr & 0xFF00) | u16::from(v),
            (0, 0x0B) => self.rbcr = (self.rbcr & 0x00FF) | (u16::from(v) << 8),
            (0, 0x0C) => self.rcr = v,
            (0, 0x0E) => self.dcr = v,
            (1, 1..=6) => self.par[usize::from(offset) - 1] = v,
            (1, 0x07) => self.curr = v,
            _ => {}
        }
    }

    fn inw(&mut self, offset: u16) -> u16 {
        assert_eq!(offset, 0x10, "word access only on the data port");
        assert!(self.dcr & 1 != 0, "word access in byte mode");
        let lo = self.data_in();
        let hi = self.data_in();
        u16::from_le_bytes([lo, hi])
    }

    fn outw(&mut self, offset: u16, v: u16) {
        assert_eq!(offset, 0x10, "word access only on the data port");
        assert!(self.dcr & 1 != 0, "word access in byte mode");
        let [lo, hi] = v.to_le_bytes();
        self.data_out(lo);
        self.data_out(hi);
    }
}

fn frame(to: [u8; 6], len: usize, seed: u8) -> Vec<u8> {
    let mut f = to.to_vec();
    f.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x00]);
    f.extend((14..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    f
}

#[test]
fn reads_its_address_and_sends_padded_frames() {
    let mut card = Ne2k::new(Model::new()).unwrap();
    assert_eq!(card.mac(), MAC);
    card.send(&frame([0xFF; 6], 42, 1)).unwrap();
    let big = frame([0xFF; 6], 1514, 2);
    card.send(&big).unwrap();
    let sent = &card.ports_mut().sent;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].len(), 60, "padded to Ethernet's minimum");
    assert_eq!(&sent[0][..42], &frame([0xFF; 6], 42, 1)[..]);
    assert_eq!(sent[1], big);
    assert_eq!(card.send(&[0; 1515]), Err(Error::FrameTooLong(1515)));
}

#[test]
fn receives_every_frame_in_order_across_the_ring_end() {
    let mut card = Ne2k::new(Model::new()).unwrap();
    let mut buf = Vec::new();
    let mut expected = Vec::new();
    // 300 frames of mixed sizes: the 58-page ring wraps many times.
    for i in 0..300usize {
        let f = frame(MAC, 60 + (i * 97) % 1455, i as u8);
        assert!(card.ports_mut().deliver(&f), "frame {i} taken");
        expected.push(f);
        if i % 3 == 2 {
            while let Some(n) = card.receive(&mut buf).unwrap() {
                assert_eq!(buf[..n], expected.remove(0)[..]);
            }
        }
    }
    while let Some(n) = card.receive(&mut buf).unwrap() {
        assert_eq!(buf[..n], expected.remove(0)[..]);
    }
    assert!(expected.is_empty());
    assert_eq!(card.stats.received, 300);
    assert_eq!(card.receive(&mut buf).unwrap(), None);
}

#[test]
fn frames_for_others_are_not_received() {
    let mut card = Ne2k::new(Model::new()).unwrap();
    assert!(!card.ports_mut().deliver(&frame([2, 9, 9, 9, 9, 9], 100, 0)));
    assert!(
        card.ports_mut().deliver(&frame([0xFF; 6], 100, 0)),
        "broadcast"
    );
    let mut buf = Vec::new();
    assert_eq!(card.receive(&mut buf).unwrap(), Some(100));
}

#[test]
fn an_overflowed_ring_is_restarted() {
    let mut card = Ne2k::new(Model::new()).unwrap();
    let mut taken = 0;
    while card.ports_mut().deliver(&frame(MAC, 1500, 0)) {
        taken += 1;
    }
    assert!(
        taken > 5 && taken < 58,
        "the ring filled after {taken} frames"
    );
    let mut buf = Vec::new();
    assert_eq!(
        card.receive(&mut buf).unwrap(),
        None,
        "the overflow drops the ring"
    );
    assert_eq!(card.stats.overflows, 1);
    let f = frame(MAC, 200, 7);
    assert!(card.ports_mut().deliver(&f));
    assert_eq!(card.receive(&mut buf).unwrap(), Some(200));
    assert_eq!(buf, f);
}

#[test]
fn a_corrupt_ring_header_resets_the_ring() {
    let mut card = Ne2k::new(Model::new()).unwrap();
    let f = frame(MAC, 100, 3);
    assert!(card.ports_mut().deliver(&f));
    // The header's next-page byte points outside the ring.
    let header = 0x47 << 8;
    card.ports_mut().mem[header + 1] = 0x10;
    let mut buf = Vec::new();
    assert_eq!(card.receive(&mut buf).unwrap(), None);
    assert_eq!(card.stats.bad_headers, 1);
    assert!(card.ports_mut().deliver(&f));
    assert_eq!(card.receive(&mut buf).unwrap(), Some(100));
}

#[test]
fn no_card_is_a_clear_error() {
    let mut model = Model::new();
    model.dead = true;
    let error = Ne2k::new(model).unwrap_err();
    assert_eq!(error, Error::NoCard);
    assert!(error.to_string().contains("no NE2000"));
}

/// Ring headers that lie as a hostile or broken card might write them:
/// a length below an Ethernet header, a length above the largest frame
/// (past the ring's end if believed), and a status without "received".
/// Each resets the ring and is counted; the next good frame comes in.
#[test]
fn ring_headers_with_bad_lengths_or_status_are_dropped() {
    let mut card = Ne2k::new(Model::new()).unwrap();
    let mut buf = Vec::new();
    let f = frame(MAC, 100, 5);
    for (at, value) in [(2, 10u8), (3, 0x0F), (0, 0x00)] {
        assert!(card.ports_mut().deliver(&f));
        // The frame's header is at CURR before delivery: find it where the
        // driver will read it (BNRY + 1, the first unread page).
        let page = usize::from(card.ports_mut().bnry) + 1;
        let page = if page >= usize::from(card.ports_mut().pstop) {
            usize::from(card.ports_mut().pstart)
        } else {
            page
        };
        let header = page << 8;
        if at == 2 {
            // total length 10 (with its 4-byte header): below 14 + 4.
            card.ports_mut().mem[header + 2] = value;
            card.ports_mut().mem[header + 3] = 0;
        } else {
            card.ports_mut().mem[header + at] = value;
        }
        let before = card.stats.bad_headers;
        assert_eq!(card.receive(&mut buf).unwrap(), None, "header byte {at}");
        assert_eq!(card.stats.bad_headers, before + 1, "header byte {at}");
    }
    let good = frame(MAC, 300, 9);
    assert!(card.ports_mut().deliver(&good));
    assert_eq!(card.receive(&mut buf).unwrap(), Some(300));
    assert_eq!(buf, good);
}
