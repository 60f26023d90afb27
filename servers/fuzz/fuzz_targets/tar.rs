//! libFuzzer target: arbitrary bytes as a server image (tar), read and
//! unpacked into ramfs.
#![no_main]

#[path = "../src/tar.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::tar(data));
