//! The link switch: how links are numbered, placed and pumped.
//!
//! Cell 0 has one link to every cell that has one (a Linux cell, each
//! server VM), numbered 0, 1, … in manifest cell order. Link i is, in cell
//! 0, a virtio console at PCI 00:(1+i).0 whose memory BAR sits at
//! [`cell0_bar`]`(i)`; the peer sees its single link as 00:01.0 with the BAR
//! at [`LINK_BAR`]. hvm is the switch between the two devices of a link:
//! [`pump`] takes what each driver transmitted into the pipe toward the
//! other end and fills the other's receive buffers from it. Every
//! descriptor is checked against the memory of the cell that owns the ring
//! (`Console::process` over that cell's [`Ram`]), so a hostile peer can
//! only hurt its own link.
//!
//! Interrupts: when cell 0's device of link i signals, hvm injects
//! [`cell0_vector`]`(i)` into cell 0; a server VM gets [`SERVER_LINK_VECTOR`]
//! for its link and [`SERVER_COMMAND_VECTOR`] for a pending command.

use crate::guest::Ram;
use crate::virtio::{Activity, Console, Pipe, BAR_SIZE};

/// Guest-physical address of the first link BAR (below 4 GiB, above any
/// cell's RAM, clear of the local APIC page).
pub const LINK_BAR: u32 = hvm_abi::LINK_BAR as u32;
/// Distance between the BARs of cell 0's links.
pub const BAR_STRIDE: u32 = hvm_abi::LINK_BAR_STRIDE as u32;
/// Most links cell 0 can have: its vectors 0x50 + i stay below 0x60.
pub const MAX_LINKS: usize = 16;
/// Cell 0's vector for link 0; link i uses this plus i.
pub const CELL0_VECTOR_BASE: u8 = hvm_abi::LINK_VECTOR;
/// A server VM's vector for its link device.
pub const SERVER_LINK_VECTOR: u8 = hvm_abi::LINK_VECTOR;
/// A server VM's vector for a pending control command (`TakeCommand`).
pub const SERVER_COMMAND_VECTOR: u8 = hvm_abi::COMMAND_VECTOR;

const _: () = assert!(BAR_SIZE <= BAR_STRIDE as u64);

/// The BAR of cell 0's device for link `link`.
pub fn cell0_bar(link: usize) -> Option<u32> {
    (link < MAX_LINKS).then(|| LINK_BAR + BAR_STRIDE * link as u32)
}

/// The vector cell 0 gets when its device for link `link` signals.
pub fn cell0_vector(link: usize) -> Option<u8> {
    (link < MAX_LINKS).then(|| CELL0_VECTOR_BASE + link as u8)
}

/// Numbers the links: given, in manifest order, whether each cell has a
/// link to cell 0, returns the link of cell `index` (cell 0 itself has
/// none; cells past [`MAX_LINKS`] links get none).
pub fn number(has_link: impl IntoIterator<Item = bool>, index: usize) -> Option<usize> {
    let mut next = 0;
    for (cell, linked) in has_link.into_iter().enumerate().skip(1) {
        if linked && next < MAX_LINKS {
            if cell == index {
                return Some(next);
            }
            next += 1;
        }
    }
    None
}

/// How many links cell 0 has (see [`number`]).
pub fn count(has_link: impl IntoIterator<Item = bool>) -> usize {
    has_link
        .into_iter()
        .skip(1)
        .filter(|&l| l)
        .count()
        .min(MAX_LINKS)
}

/// One end of a link during a pump: the device and its owner's memory.
pub struct End<'a, 'b> {
    pub console: &'a mut Console,
    pub ram: &'a mut Ram<'b>,
}

/// What one pump of a link did, per end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pumped {
    pub cell0: Activity,
    pub peer: Activity,
}

fn merge(total: &mut Activity, more: Activity) {
    total.transmitted += more.transmitted;
    total.received += more.received;
    if total.fault.is_none() {
        total.fault = more.fault;
    }
}

/// Moves bytes across one link both ways: cell 0's transmissions into
/// `to_peer`, the peer's into `to_cell0`, and each side's receive buffers
/// from the pipe toward it. Cell 0's end runs twice (before and after the
/// peer) so a request and an answer produced in one pump both arrive. A
/// peer that is not running (`None`) neither sends nor receives; its bytes
/// wait in the pipe.
pub fn pump(
    to_peer: &mut Pipe,
    to_cell0: &mut Pipe,
    cell0: End<'_, '_>,
    peer: Option<End<'_, '_>>,
) -> Pumped {
    let mut pumped = Pumped::default();
    let first = cell0.console.process(cell0.ram, to_peer, to_cell0);
    merge(&mut pumped.cell0, first);
    if let Some(peer) = peer {
        pumped.peer = peer.console.process(peer.ram, to_cell0, to_peer);
    }
    let second = cell0.console.process(cell0.ram, to_peer, to_cell0);
    merge(&mut pumped.cell0, second);
    pumped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::tests::{bring_up, queue_at};
    use crate::virtqueue::tests::Guest;

    #[test]
    fn links_are_numbered_in_manifest_order_skipping_unlinked_cells() {
        // cell 0, a server VM, a cell without a link, Linux, a server VM.
        let cells = [true, true, false, true, true];
        assert_eq!(count(cells), 3);
        assert_eq!(number(cells, 0), None, "cell 0 is every link's hub");
        assert_eq!(number(cells, 1), Some(0));
        assert_eq!(number(cells, 2), None);
        assert_eq!(number(cells, 3), Some(1));
        assert_eq!(number(cells, 4), Some(2));
        assert_eq!(number(cells, 99), None);
        assert_eq!(cell0_bar(0), Some(0xE000_0000));
        assert_eq!(cell0_bar(2), Some(0xE002_0000));
        assert_eq!(cell0_vector(3), Some(0x53));
        assert_eq!(cell0_vector(MAX_LINKS), None);
        let many = || core::iter::repeat_n(true, 40);
        assert_eq!(
            count(many()),
            MAX_LINKS,
            "links beyond the vectors are not made"
        );
        assert_eq!(number(many(), MAX_LINKS), Some(MAX_LINKS - 1));
        assert_eq!(number(many(), MAX_LINKS + 1), None);
    }

    /// A driver that offers `bytes` on its transmit queue (queue 1 at
    /// 0x2000) from buffer `at`, descriptor `slot`.
    fn transmit(guest: &mut Guest, slot: u16, at: u64, bytes: &[u8]) {
        let start = at as usize;
        guest.bytes[start..start + bytes.len()].copy_from_slice(bytes);
        guest.descriptor(&queue_at(0x2000), slot, at, bytes.len() as u32, 0, 0);
        guest.offer(&queue_at(0x2000), slot);
    }

    /// Offers a 256-byte receive buffer at `at` on queue 0 (0x1000).
    fn post_receive(guest: &mut Guest, slot: u16, at: u64) {
        guest.descriptor(&queue_at(0x1000), slot, at, 256, 2, 0);
        guest.offer(&queue_at(0x1000), slot);
    }

    struct Link {
        cell0: Console,
        cell0_guest: Guest,
        peer: Console,
        peer_guest: Guest,
        to_peer: Pipe,
        to_cell0: Pipe,
    }

    impl Link {
        fn new(index: usize) -> Self {
            let mut cell0 = Console::new(false, cell0_bar(index).unwrap());
            let mut peer = Console::new(false, LINK_BAR);
            bring_up(&mut cell0, &[(0, 0x1000), (1, 0x2000)]);
            bring_up(&mut peer, &[(0, 0x1000), (1, 0x2000)]);
            Self {
                cell0,
                cell0_guest: Guest::new(),
                peer,
                peer_guest: Guest::new(),
                to_peer: Pipe::new(),
                to_cell0: Pipe::new(),
            }
        }

        fn pump(&mut self, peer_running: bool) -> Pumped {
            let mut cell0_ram = self.cell0_guest.ram();
            let mut peer_ram = self.peer_guest.ram();
            let peer = peer_running.then_some(End {
                console: &mut self.peer,
                ram: &mut peer_ram,
            });
            pump(
                &mut self.to_peer,
                &mut self.to_cell0,
                End {
                    console: &mut self.cell0,
                    ram: &mut cell0_ram,
                },
                peer,
            )
        }
    }

    #[test]
    fn each_link_carries_only_its_own_bytes() {
        let mut links = [Link::new(0), Link::new(1), Link::new(2)];
        for (i, link) in links.iter_mut().enumerate() {
            post_receive(&mut link.cell0_guest, 0, 0x8000);
            post_receive(&mut link.peer_guest, 0, 0x8000);
            transmit(&mut link.cell0_guest, 0, 0x9000, &[b'a' + i as u8; 3]);
        }
        for link in &mut links {
            let pumped = link.pump(true);
            assert_eq!(pumped.cell0.transmitted, 3);
            assert_eq!(pumped.peer.received, 3);
            assert!(link.peer.take_signal(), "the peer's device signalled");
        }
        for (i, link) in links.iter_mut().enumerate() {
            assert_eq!(&link.peer_guest.bytes[0x8000..0x8003], &[b'a' + i as u8; 3]);
            // The peer answers; cell 0's device of that link gets it.
            transmit(&mut link.peer_guest, 0, 0x9000, &[b'A' + i as u8; 2]);
            let pumped = link.pump(true);
            assert_eq!(pumped.cell0.received, 2);
            assert_eq!(
                &link.cell0_guest.bytes[0x8000..0x8002],
                &[b'A' + i as u8; 2]
            );
            assert!(link.cell0.take_signal());
            assert!(!link.cell0.take_signal(), "a signal is taken once");
        }
    }

    #[test]
    fn a_transmit_queue_that_asks_for_quiet_raises_no_signal() {
        let mut link = Link::new(0);
        post_receive(&mut link.peer_guest, 0, 0x8000);
        post_receive(&mut link.peer_guest, 1, 0x8100);
        // virtio 1.2 2.7.7.2: VIRTQ_AVAIL_F_NO_INTERRUPT in the flags of
        // cell 0's transmit queue's available ring.
        let flags = queue_at(0x2000).driver as usize;
        link.cell0_guest.bytes[flags] = 1;
        transmit(&mut link.cell0_guest, 0, 0x9000, b"quiet");
        assert_eq!(link.pump(true).cell0.transmitted, 5);
        assert!(
            !link.cell0.take_signal(),
            "the used buffer is not signalled"
        );
        assert!(link.peer.take_signal(), "the receiver still hears of it");
        // Received bytes still signal cell 0, and without the flag a
        // transmit does too.
        transmit(&mut link.peer_guest, 0, 0x9000, b"back");
        post_receive(&mut link.cell0_guest, 0, 0x8000);
        assert_eq!(link.pump(true).cell0.received, 4);
        assert!(link.cell0.take_signal());
        link.cell0_guest.bytes[flags] = 0;
        transmit(&mut link.cell0_guest, 1, 0x9100, b"loud");
        assert_eq!(link.pump(true).cell0.transmitted, 4);
        assert!(link.cell0.take_signal());
    }

    #[test]
    fn a_receiver_is_asked_to_notify_only_while_bytes_wait() {
        let mut link = Link::new(0);
        let used_flags = |guest: &Guest| {
            let at = queue_at(0x1000).device as usize;
            u16::from_le_bytes([guest.bytes[at], guest.bytes[at + 1]])
        };
        post_receive(&mut link.peer_guest, 0, 0x8000);
        link.pump(true);
        assert_eq!(used_flags(&link.peer_guest), 1, "nothing waits: no notify");
        // More bytes than the one buffer holds: the rest waits, and the
        // driver's next buffer must be announced.
        transmit(&mut link.cell0_guest, 0, 0x9000, &[7; 300]);
        assert_eq!(link.pump(true).peer.received, 256);
        assert_eq!(used_flags(&link.peer_guest), 0, "bytes wait: notify");
        post_receive(&mut link.peer_guest, 1, 0x8100);
        assert_eq!(link.pump(true).peer.received, 44);
        assert_eq!(used_flags(&link.peer_guest), 1);
    }

    #[test]
    fn a_stopped_peer_keeps_its_bytes_waiting() {
        let mut link = Link::new(0);
        transmit(&mut link.cell0_guest, 0, 0x9000, b"Tversion");
        let pumped = link.pump(false);
        assert_eq!(pumped.cell0.transmitted, 8);
        assert_eq!(link.to_peer.len(), 8, "waits for the peer");
        post_receive(&mut link.peer_guest, 0, 0x8000);
        let pumped = link.pump(true);
        assert_eq!(pumped.peer.received, 8);
        assert!(link.to_peer.is_empty());
    }

    #[test]
    fn a_hostile_peer_is_refused_and_other_links_go_on() {
        let mut links = [Link::new(0), Link::new(1)];
        // Link 1's peer offers a transmit buffer far outside its memory
        // and a receive buffer that wraps the address space.
        links[1]
            .peer_guest
            .descriptor(&queue_at(0x2000), 0, 0xFFFF_FFFF_0000, 64, 0, 0);
        links[1].peer_guest.offer(&queue_at(0x2000), 0);
        links[1]
            .peer_guest
            .descriptor(&queue_at(0x1000), 0, u64::MAX - 8, 64, 2, 0);
        links[1].peer_guest.offer(&queue_at(0x1000), 0);
        transmit(&mut links[1].cell0_guest, 0, 0x9000, b"x");
        let pumped = links[1].pump(true);
        assert!(pumped.peer.fault.is_some(), "refused: {pumped:?}");
        assert_eq!(pumped.peer.transmitted, 0);
        assert!(
            links[1].to_cell0.is_empty(),
            "nothing from outside its memory"
        );
        // Link 0 is untouched and still works.
        post_receive(&mut links[0].cell0_guest, 0, 0x8000);
        transmit(&mut links[0].peer_guest, 0, 0x9000, b"ok");
        let pumped = links[0].pump(true);
        assert_eq!(pumped.cell0.received, 2);
        assert_eq!(pumped.peer.fault, None);
        assert_eq!(&links[0].cell0_guest.bytes[0x8000..0x8002], b"ok");
    }
}
