//! libFuzzer target: arbitrary bytes as a Linux bridge protocol stream.
#![no_main]

#[path = "../src/bridge.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::bridge(data));
