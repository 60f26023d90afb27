//! Runs the virtqueue fuzz target body on stable: seeds and mutations.
//!
//! The body (`servers/fuzz/src/virtqueue.rs`) is the one the cargo-fuzz
//! binary runs: its input is the queue's registers and then a whole guest
//! memory. The seed holds a queue of 8 (virtio 1.2 2.7) with two chains
//! offered; mutations change descriptors, ring entries and indices.

#[path = "../../../servers/fuzz/src/virtqueue.rs"]
mod target;

use hvm_logic::guest::{GuestMemory, Ram};
use hvm_logic::virtqueue::{QueueError, MAX_SEGMENTS};
use proptest::prelude::*;

const DESC: usize = 0x100;
const DRIVER: usize = 0x200;
const DEVICE: usize = 0x300;
const MEMORY: usize = 0x1000;
const NEXT: u16 = 1;
const WRITE: u16 = 2;

/// Writes descriptor `index` (2.7.5: addr, len, flags, next).
fn descriptor(memory: &mut [u8], index: usize, address: u64, len: u32, flags: u16, next: u16) {
    let at = DESC + 16 * index;
    memory[at..at + 8].copy_from_slice(&address.to_le_bytes());
    memory[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
    memory[at + 12..at + 14].copy_from_slice(&flags.to_le_bytes());
    memory[at + 14..at + 16].copy_from_slice(&next.to_le_bytes());
}

/// Offers `heads` in the available ring (2.7.6) and sets its index.
fn offer(memory: &mut [u8], heads: &[u16]) {
    for (slot, head) in heads.iter().enumerate() {
        let at = DRIVER + 4 + 2 * slot;
        memory[at..at + 2].copy_from_slice(&head.to_le_bytes());
    }
    memory[DRIVER + 2..DRIVER + 4].copy_from_slice(&(heads.len() as u16).to_le_bytes());
}

/// The registers (a queue of 8, ready, rings at DESC/DRIVER/DEVICE), then
/// a memory where chain 0 -> 1 and chain 2 are offered.
fn seed() -> Vec<u8> {
    let mut registers = vec![3, 0];
    for ring in [DESC, DRIVER, DEVICE] {
        registers.extend_from_slice(&(ring as u16).to_le_bytes());
    }
    assert_eq!(registers.len(), target::REGISTERS);
    let mut memory = vec![0u8; MEMORY];
    descriptor(&mut memory, 0, 0x800, 16, NEXT, 1);
    descriptor(&mut memory, 1, 0x900, 32, WRITE, 0);
    descriptor(&mut memory, 2, 0xA00, 0x600, WRITE, 0);
    offer(&mut memory, &[0, 2]);
    registers.extend_from_slice(&memory);
    registers
}

/// Pops until `None` or an error: the chains' heads and how it ended.
fn walk(data: &[u8]) -> (Vec<u16>, Option<QueueError>) {
    let (mut queue, mut memory) = target::guest(data);
    let memory_size = memory.len() as u64;
    let ram = Ram::new(
        GuestMemory {
            host_base: 0,
            size: memory_size,
        },
        &mut memory,
    );
    let mut heads = Vec::new();
    loop {
        match queue.pop(&ram) {
            Ok(Some(chain)) => heads.push(chain.head),
            Ok(None) => return (heads, None),
            Err(error) => return (heads, Some(error)),
        }
    }
}

#[test]
fn the_seed_gives_its_two_chains() {
    let seed = seed();
    assert_eq!(walk(&seed), (vec![0, 2], None));
    target::virtqueue(&seed);
    for cut in 0..seed.len() {
        target::virtqueue(&seed[..cut]);
    }
}

#[test]
fn a_looping_chain_is_refused() {
    let mut data = seed();
    let memory = &mut data[target::REGISTERS..];
    descriptor(memory, 1, 0x900, 32, NEXT, 0);
    assert_eq!(
        walk(&data),
        (vec![], Some(QueueError::ChainTooLong { head: 0 }))
    );
    assert_eq!(MAX_SEGMENTS, 8);
    target::virtqueue(&data);
}

#[test]
fn a_buffer_past_the_memory_is_refused() {
    let mut data = seed();
    let memory = &mut data[target::REGISTERS..];
    descriptor(memory, 2, 0xA00, 0x601, WRITE, 0);
    let (heads, error) = walk(&data);
    assert_eq!(heads, [0]);
    assert!(matches!(
        error,
        Some(QueueError::BufferOutside { head: 2, .. })
    ));
    target::virtqueue(&data);
}

#[test]
fn an_index_run_ahead_is_refused() {
    let mut data = seed();
    let at = target::REGISTERS + DRIVER + 2;
    data[at..at + 2].copy_from_slice(&9u16.to_le_bytes());
    assert!(matches!(
        walk(&data),
        (_, Some(QueueError::IndexRunaway { .. }))
    ));
    target::virtqueue(&data);
}

proptest! {
    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..0x600)) {
        target::virtqueue(&data);
    }

    /// Random descriptors behind the seed's rings: every chain shape,
    /// loops and wild addresses included.
    #[test]
    fn random_descriptors(
        table in proptest::collection::vec(any::<u8>(), 16 * 8),
        available in any::<u16>(),
        ring in proptest::collection::vec(0u16..12, 8),
    ) {
        let mut data = seed();
        let memory = &mut data[target::REGISTERS..];
        memory[DESC..DESC + table.len()].copy_from_slice(&table);
        for (slot, head) in ring.iter().enumerate() {
            let at = DRIVER + 4 + 2 * slot;
            memory[at..at + 2].copy_from_slice(&head.to_le_bytes());
        }
        memory[DRIVER + 2..DRIVER + 4].copy_from_slice(&(available % 10).to_le_bytes());
        target::virtqueue(&data);
    }

    #[test]
    fn mutated_seeds(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut data = seed();
        for (at, byte) in flips {
            let i = at.index(data.len());
            data[i] = byte;
        }
        target::virtqueue(&data);
    }
}
