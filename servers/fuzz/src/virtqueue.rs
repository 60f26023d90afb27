//! Fuzz target body: hvm's virtqueue descriptor-chain walker.
//!
//! A plain function, included by path both by the cargo-fuzz binary
//! (`fuzz_targets/virtqueue.rs`) and by the stable test
//! `hvm/logic/tests/virtqueue_fuzz.rs`. The input is a whole guest memory
//! (virtio 1.2 2.7 "Split Virtqueues": the rings and descriptors in it are
//! the guest's, all hostile) and the queue's registers. It asserts: no
//! panic; every buffer of a chain lies inside the guest memory given; a
//! chain has at most `MAX_SEGMENTS` buffers and a head below the queue
//! size; and the walk ends: a driver cannot offer more chains at once than
//! the queue has entries.

use hvm_logic::guest::{GuestMemory, Ram};
use hvm_logic::virtqueue::{Queue, MAX_QUEUE_SIZE, MAX_SEGMENTS};

/// Bytes of `data` read as the queue's registers before the memory.
pub const REGISTERS: usize = 8;

/// The queue `data`'s first bytes describe, and the guest memory the rest
/// is (at least 64 bytes, so that rings can fit; at most 64 KiB).
pub fn guest(data: &[u8]) -> (Queue, Vec<u8>) {
    let mut registers = [0u8; REGISTERS];
    let head = data.len().min(REGISTERS);
    registers[..head].copy_from_slice(&data[..head]);
    let mut memory = data[head..].to_vec();
    memory.truncate(0x1_0000);
    if memory.len() < 64 {
        memory.resize(64, 0);
    }
    let word = |at: usize| u64::from(u16::from_le_bytes([registers[at], registers[at + 1]]));
    // Sizes 1..=MAX_QUEUE_SIZE by powers of 2, as the driver may set them.
    let size = 1u16 << (registers[0] % (MAX_QUEUE_SIZE.trailing_zeros() as u8 + 1));
    // Ring addresses: mostly inside the memory, sometimes just past it.
    let span = memory.len() as u64 + 64;
    let mut queue = Queue::new();
    queue.size = size;
    queue.ready = registers[1] & 0x80 == 0;
    queue.desc = word(2) % span;
    queue.driver = word(4) % span;
    queue.device = word(6) % span;
    (queue, memory)
}

/// Walks every chain the driver offers, returns each to the used ring,
/// and checks the bounds.
pub fn virtqueue(data: &[u8]) {
    let (mut queue, mut memory) = guest(data);
    let size = memory.len() as u64;
    let guest_memory = GuestMemory {
        host_base: 0x4000_0000,
        size,
    };
    let mut heads = Vec::new();
    {
        let ram = Ram::new(guest_memory, &mut memory);
        // Without used-ring writes the available index stays put, so at
        // most `queue.size` chains can come before `None` or an error.
        loop {
            match queue.pop(&ram) {
                Ok(Some(chain)) => {
                    assert!(
                        chain.head < queue.size,
                        "head {} past the queue",
                        chain.head
                    );
                    assert!(chain.count >= 1 && chain.count <= MAX_SEGMENTS);
                    assert_eq!(chain.segments().len(), chain.count);
                    for segment in chain.segments() {
                        let end = segment.address.checked_add(u64::from(segment.len));
                        assert!(
                            end.is_some_and(|end| end <= size),
                            "buffer {:#x}+{:#x} outside a guest of {size:#x} bytes",
                            segment.address,
                            segment.len
                        );
                    }
                    heads.push(chain.head);
                    assert!(
                        heads.len() <= usize::from(queue.size),
                        "more chains than queue entries: the walk does not end"
                    );
                }
                Ok(None) => break,
                Err(error) => {
                    // An error that names a head names one of this queue.
                    if let Some(head) = error.head() {
                        assert!(head < queue.size);
                    }
                    break;
                }
            }
        }
    }
    let mut ram = Ram::new(guest_memory, &mut memory);
    for head in heads {
        // The used ring may lie outside memory: refused, never a panic.
        if queue.push_used(&mut ram, head, 0).is_err() {
            break;
        }
    }
}
