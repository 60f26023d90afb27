//! Fuzz target body: the manifest's boot-form decoder (hvm reads it).
//!
//! A plain function, included by path both by the cargo-fuzz binary
//! (`fuzz_targets/boot_manifest.rs`) and by the stable test
//! `images/manifest/tests/fuzz.rs`. It asserts what `BootManifest::decode`
//! promises: no panic on any bytes, and a manifest that decodes passes the
//! checker and round-trips: decode, encode, decode gives it back.

use kasane_manifest::BootManifest;

/// Decodes `data` as a compiled manifest; one that decodes must encode and
/// decode to itself, and decode again from its own encoding with bytes of
/// padding after it (modules are padded).
pub fn boot_manifest(data: &[u8]) {
    let Ok(manifest) = BootManifest::decode(data) else {
        return;
    };
    assert!(
        kasane_manifest::check(&manifest).is_ok(),
        "a decoded manifest passes the checker"
    );
    let mut encoded = manifest.encode();
    let again = BootManifest::decode(&encoded).expect("an encoded manifest decodes");
    assert_eq!(again, manifest, "decode/encode/decode must round-trip");
    encoded.extend_from_slice(&[0xAA; 16]);
    let padded = BootManifest::decode(&encoded).expect("padding after the payload is ignored");
    assert_eq!(padded, manifest);
}
