//! Fuzz target body: the ELF reader hvm, the microkernel and core load with.
//!
//! A plain function, included by path both by the cargo-fuzz binary
//! (`fuzz_targets/elf.rs`) and by the stable test `images/elf/tests/fuzz.rs`.
//! It asserts the invariants `kasane_elf::Executable` documents: no panic
//! on any bytes; every segment's file bytes inside the file, no larger than
//! its memory, its virtual range not wrapping; the entry point inside an
//! executable segment.

use kasane_elf::Executable;

/// Parses `data`; an executable that parses must keep every promise.
pub fn elf(data: &[u8]) {
    let Ok(executable) = Executable::parse(data) else {
        return;
    };
    let entry = executable.entry();
    let mut entry_found = false;
    for segment in executable.segments() {
        let end = segment.file_offset.checked_add(segment.file_size);
        assert!(
            end.is_some_and(|end| end <= data.len()),
            "segment bytes lie inside the file: {segment:?}"
        );
        assert!(
            segment.file_size as u64 <= segment.memory_size,
            "{segment:?}"
        );
        assert!(segment.memory_size > 0, "empty segments are passed over");
        assert!(
            segment
                .virtual_address
                .checked_add(segment.memory_size)
                .is_some(),
            "the virtual range does not wrap: {segment:?}"
        );
        assert_eq!(segment.data(data).len(), segment.file_size);
        entry_found |=
            segment.executable && (segment.virtual_address..segment.end()).contains(&entry);
    }
    assert!(
        entry_found,
        "the entry {entry:#x} is in an executable segment"
    );
}
