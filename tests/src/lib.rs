//! Helpers shared by the boot tests: build once, boot a manifest, assert.
//!
//! Each boot test names a manifest under `images/manifests/`, boots it in an
//! emulator through the same launcher `run/up` uses, and checks the console
//! transcript line by line. Builds happen once per test process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use kasane_run::{boot, build_components, make_image, root, Boot, BootOptions, Emulator, Outcome};

/// hvm's path and the other components by name.
type Components = (PathBuf, std::collections::BTreeMap<String, PathBuf>);

static BUILT: OnceLock<Result<Components, String>> = OnceLock::new();

/// Images already made in this process, by manifest: tests that share a
/// manifest must not rebuild its ISO while another test boots it.
static IMAGES: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());

/// Builds the components (once) and the image for `manifest`, boots it, and
/// returns the result. Panics with the reason when building fails.
pub fn boot_manifest(manifest: &str, emulator: Emulator, timeout_seconds: u64) -> Boot {
    boot_with(manifest, emulator, timeout_seconds, None)
}

/// As [`boot_manifest`], typing the lines of `script` (a path from the
/// repository root) at the shell's prompts, then ^D, as
/// `run/up --script` does. The transcript shows each typed line after its
/// `; ` prompt (core's console echoes it).
pub fn boot_script(manifest: &str, script: &str, emulator: Emulator, timeout_seconds: u64) -> Boot {
    let path = root().join(script);
    let lines = kasane_run::read_script(&path).unwrap_or_else(|e| panic!("{e}"));
    boot_with(manifest, emulator, timeout_seconds, Some(lines))
}

/// As [`boot_script`], with the lines given.
pub fn boot_typing(
    manifest: &str,
    lines: &[&str],
    emulator: Emulator,
    timeout_seconds: u64,
) -> Boot {
    let lines = lines.iter().map(|l| l.to_string()).collect();
    boot_with(manifest, emulator, timeout_seconds, Some(lines))
}

fn boot_with(
    manifest: &str,
    emulator: Emulator,
    timeout_seconds: u64,
    script: Option<Vec<String>>,
) -> Boot {
    let root = root();
    let built = BUILT.get_or_init(|| build_components(&root));
    let (hvm, components) = built
        .as_ref()
        .unwrap_or_else(|e| panic!("build failed: {e}"))
        .clone();
    let manifest_path = root
        .join("images/manifests")
        .join(format!("{manifest}.toml"));
    let iso = {
        let mut images = IMAGES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match images.get(manifest) {
            Some(iso) => iso.clone(),
            None => {
                let iso = make_image(&root, &manifest_path, &hvm, components)
                    .unwrap_or_else(|e| panic!("image failed: {e}"));
                images.insert(manifest.to_owned(), iso.clone());
                iso
            }
        }
    };
    let options = BootOptions {
        emulator,
        iso,
        timeout: Duration::from_secs(timeout_seconds),
        echo: false,
        interactive: false,
        script,
        memory_mib: kasane_run::memory_needed(&manifest_path)
            .unwrap_or(256)
            .max(256),
    };
    boot(&options).unwrap_or_else(|e| panic!("boot failed: {e}"))
}

/// Asserts that the transcript has a line containing each needle, in order.
pub fn assert_lines_in_order(boot: &Boot, needles: &[&str]) {
    let mut lines = boot.transcript.lines();
    for needle in needles {
        if !lines.any(|line| line.contains(needle)) {
            panic!(
                "expected a line containing {needle:?} (in order); transcript:\n{}",
                boot.transcript
            );
        }
    }
}

/// Asserts that each of `lines` was typed at a prompt, in order: the
/// transcript has the line `; ` + line for each (the prompt, then the
/// echo of what was typed).
pub fn assert_typed(boot: &Boot, lines: &[&str]) {
    let mut transcript = boot.transcript.lines();
    for line in lines {
        let expected = format!("; {line}");
        if !transcript.any(|l| l == expected) {
            panic!(
                "expected the typed line {expected:?} (in order); transcript:\n{}",
                boot.transcript
            );
        }
    }
}

/// As [`assert_lines_in_order`], over what commands printed: lines that
/// begin with the prompt `; ` (a typed line's echo) are passed over, so a
/// needle cannot match the command that was meant to print it.
pub fn assert_output_in_order(boot: &Boot, needles: &[&str]) {
    let mut lines = boot.transcript.lines().filter(|l| !l.starts_with("; "));
    for needle in needles {
        if !lines.any(|line| line.contains(needle)) {
            panic!(
                "expected an output line containing {needle:?} (in order); transcript:\n{}",
                boot.transcript
            );
        }
    }
}

/// Asserts that no line contains `needle`.
pub fn assert_absent(boot: &Boot, needle: &str) {
    if let Some(line) = boot.transcript.lines().find(|line| line.contains(needle)) {
        panic!("unexpected line {line:?}; transcript:\n{}", boot.transcript);
    }
}

/// Asserts a clean power-off.
pub fn assert_clean(boot: &Boot) {
    assert_eq!(
        boot.outcome,
        Outcome::Clean,
        "transcript:\n{}",
        boot.transcript
    );
}
