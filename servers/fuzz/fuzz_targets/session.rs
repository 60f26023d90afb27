//! libFuzzer target: a whole ramfs session fed arbitrary frames.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ninep_fuzz::session(data));
