//! libFuzzer target: decode arbitrary bytes as one 9P frame.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ninep_fuzz::frame_decode(data));
