//! libFuzzer target: arbitrary bytes as the manifest's boot form.
#![no_main]

#[path = "../src/boot_manifest.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::boot_manifest(data));
