//! Golden tests: each bad manifest and the exact error it must produce.
//!
//! `tests/bad/NAME.toml` is paired with `tests/bad/NAME.err`, which holds the
//! one-line error text. Good manifests in `images/manifests/` must compile.

use std::fs;
use std::path::Path;

use kasane_manifest::{BootManifest, Manifest};

#[test]
fn bad_manifests_give_their_exact_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let mut seen = 0;
    for entry in fs::read_dir(&dir).expect("tests/bad exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("readable manifest");
        let expected = fs::read_to_string(path.with_extension("err"))
            .unwrap_or_else(|_| panic!("{} has no .err file", path.display()));
        let error =
            Manifest::compile(&text).expect_err(&format!("{} must be rejected", path.display()));
        assert_eq!(error.to_string(), expected.trim_end(), "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 8, "only {seen} golden cases found");
}

#[test]
fn shipped_manifests_compile_and_round_trip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
    let mut seen = 0;
    for entry in fs::read_dir(&dir).expect("images/manifests exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("readable manifest");
        let boot = Manifest::compile(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(BootManifest::decode(&boot.encode()), Ok(boot));
        seen += 1;
    }
    assert!(seen >= 1);
}
