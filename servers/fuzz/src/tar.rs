//! Fuzz target body: arbitrary bytes as a server image (a tar archive),
//! read and unpacked into a ramfs.
//!
//! Included by path in servers/tar/tests/fuzz.rs (stable) and by the
//! libFuzzer binary `tar`. Invariants: no panic; every entry's data lies
//! inside the input; names are clean relative paths; the unpacked tree
//! stays within ramfs's limits.

use kasane_tar::{entries, Kind};

/// Reads `data` as an archive, then unpacks it into a small ramfs.
pub fn tar(data: &[u8]) {
    for entry in entries(data) {
        let Ok(entry) = entry else { break };
        assert!(!entry.path.is_empty() && !entry.path.starts_with('/'));
        assert!(entry
            .names()
            .all(|n| !n.is_empty() && n != "." && n != ".."));
        let inside = data.as_ptr_range();
        if !entry.data.is_empty() {
            assert!(inside.contains(&entry.data.as_ptr()));
        }
        if entry.kind == Kind::Directory {
            assert!(entry.data.is_empty());
        }
    }
    let mut tree = ramfs::RamFs::new(Zero, "eve", "eve", 0o775).with_limits(ramfs::Limits {
        max_file_size: 1 << 16,
        max_total_bytes: 1 << 18,
    });
    let _ = tree.unpack_tar(data);
    assert!(tree.used_bytes() <= 1 << 18);
}

struct Zero;

impl ramfs::Clock for Zero {
    fn now(&self) -> u32 {
        0
    }
}
