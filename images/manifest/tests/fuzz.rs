//! Runs the boot-form fuzz target body on stable: seeds, cuts, mutations.
//!
//! The body (`servers/fuzz/src/boot_manifest.rs`) is the one the cargo-fuzz
//! binary runs. Seeds are the compiled forms of the shipped manifests; the
//! checksum is recomputed after a mutation, so changed payloads reach the
//! postcard decoder and the checker, not only the CRC test.

#[path = "../../../servers/fuzz/src/boot_manifest.rs"]
mod target;

use std::fs;
use std::path::Path;

use kasane_manifest::{BootManifest, DecodeError, Manifest};
use proptest::prelude::*;

/// The compiled form of every manifest in images/manifests.
fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
    let mut seeds = Vec::new();
    for entry in fs::read_dir(&dir).expect("images/manifests exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = fs::read_to_string(&path).expect("readable manifest");
            seeds.push(Manifest::compile(&text).expect("compiles").encode());
        }
    }
    seeds.sort();
    assert!(seeds.len() >= 8, "only {} manifests", seeds.len());
    seeds
}

/// `bytes` with the header's CRC-32 made to match its payload again.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() >= 20 {
        let length = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        if let Some(payload) = bytes.get(20..20 + length) {
            let crc = crc32(payload);
            bytes[16..20].copy_from_slice(&crc.to_le_bytes());
        }
    }
    bytes
}

/// CRC-32 (IEEE, reflected), bit by bit: the test's own, so it checks the
/// crate's checksum rather than repeating it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn seeds_decode_and_every_cut_is_refused_without_panic() {
    for seed in seeds() {
        target::boot_manifest(&seed);
        assert!(BootManifest::decode(&seed).is_ok());
        for cut in 0..seed.len() {
            target::boot_manifest(&seed[..cut]);
            assert!(
                BootManifest::decode(&seed[..cut]).is_err(),
                "a manifest cut at {cut} of {} bytes decodes",
                seed.len()
            );
        }
    }
}

#[test]
fn a_resealed_seed_still_decodes() {
    // The test's CRC agrees with the crate's: resealing changes nothing.
    for seed in seeds() {
        assert_eq!(reseal(seed.clone()), seed);
    }
}

#[test]
fn a_changed_byte_without_a_new_checksum_is_refused() {
    let seed = seeds().remove(0);
    for at in 20..seed.len() {
        let mut bytes = seed.clone();
        bytes[at] ^= 0x01;
        assert_eq!(
            BootManifest::decode(&bytes),
            Err(DecodeError::BadChecksum),
            "byte {at}"
        );
    }
}

proptest! {
    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        target::boot_manifest(&data);
    }

    #[test]
    fn random_payloads_behind_a_good_header(
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = seeds().remove(0)[..20].to_vec();
        bytes[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&payload);
        target::boot_manifest(&reseal(bytes));
    }

    #[test]
    fn mutated_seeds(
        which in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let seeds = seeds();
        let mut bytes = seeds[which.index(seeds.len())].clone();
        for (at, byte) in flips {
            let i = 20 + at.index(bytes.len() - 20);
            bytes[i] = byte;
        }
        target::boot_manifest(&reseal(bytes));
    }
}
