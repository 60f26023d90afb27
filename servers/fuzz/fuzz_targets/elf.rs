//! libFuzzer target: arbitrary bytes as an ELF executable.
#![no_main]

#[path = "../src/elf.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::elf(data));
