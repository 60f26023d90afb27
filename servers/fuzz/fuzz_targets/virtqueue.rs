//! libFuzzer target: arbitrary bytes as a guest memory holding a virtqueue.
#![no_main]

#[path = "../src/virtqueue.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::virtqueue(data));
