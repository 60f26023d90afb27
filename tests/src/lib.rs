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

pub mod host9p;

/// hvm's path and the other components by name.
type Components = (PathBuf, std::collections::BTreeMap<String, PathBuf>);

static BUILT: OnceLock<Result<Components, String>> = OnceLock::new();

/// Images already made in this process, by manifest: tests that share a
/// manifest must not rebuild its ISO while another test boots it.
static IMAGES: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());

/// What a boot has besides its manifest, emulator, limit and typing.
#[derive(Default)]
struct Extra {
    /// A raw image attached as the manifest's `ata1`.
    disk: Option<PathBuf>,
    /// Host loopback ports slirp forwards in, `(host, guest)`.
    forwards: Vec<(u16, u16)>,
    /// The NE2000 on this UDP port of the loopback, not slirp.
    hub: Option<u16>,
}

fn typed(lines: &[&str]) -> Option<Vec<String>> {
    Some(lines.iter().map(|l| l.to_string()).collect())
}

/// Builds the components (once) and the image for `manifest`, boots it, and
/// returns the result. Panics with the reason when building fails.
pub fn boot_manifest(manifest: &str, emulator: Emulator, timeout_seconds: u64) -> Boot {
    boot_with(manifest, emulator, timeout_seconds, None, Extra::default())
}

/// As [`boot_manifest`], with `disk` (a raw image) attached as the
/// secondary ATA channel's master, the manifest's `ata1`.
pub fn boot_with_disk(
    manifest: &str,
    disk: &std::path::Path,
    emulator: Emulator,
    timeout_seconds: u64,
) -> Boot {
    let extra = Extra {
        disk: Some(disk.to_path_buf()),
        ..Extra::default()
    };
    boot_with(manifest, emulator, timeout_seconds, None, extra)
}

/// As [`boot_manifest`], typing the lines of `script` (a path from the
/// repository root) at the shell's prompts, then ^D, as
/// `run/up --script` does. The transcript shows each typed line after its
/// `; ` prompt (core's console echoes it).
pub fn boot_script(manifest: &str, script: &str, emulator: Emulator, timeout_seconds: u64) -> Boot {
    let path = root().join(script);
    let lines = kasane_run::read_script(&path).unwrap_or_else(|e| panic!("{e}"));
    boot_with(
        manifest,
        emulator,
        timeout_seconds,
        Some(lines),
        Extra::default(),
    )
}

/// As [`boot_script`], with the lines given.
pub fn boot_typing(
    manifest: &str,
    lines: &[&str],
    emulator: Emulator,
    timeout_seconds: u64,
) -> Boot {
    boot_with(
        manifest,
        emulator,
        timeout_seconds,
        typed(lines),
        Extra::default(),
    )
}

/// As [`boot_typing`], with `disk` attached as the manifest's `ata1`.
pub fn boot_typing_with_disk(
    manifest: &str,
    lines: &[&str],
    disk: &std::path::Path,
    emulator: Emulator,
    timeout_seconds: u64,
) -> Boot {
    let extra = Extra {
        disk: Some(disk.to_path_buf()),
        ..Extra::default()
    };
    boot_with(manifest, emulator, timeout_seconds, typed(lines), extra)
}

/// As [`boot_typing`], with TCP ports of the host's loopback forwarded
/// into the guest by Bochs's slirp, `(host, guest)` (at most 5), so a
/// program on the host can call a Kasane service.
pub fn boot_typing_forwarded(
    manifest: &str,
    lines: &[&str],
    forwards: &[(u16, u16)],
    emulator: Emulator,
    timeout_seconds: u64,
) -> Boot {
    let extra = Extra {
        forwards: forwards.to_vec(),
        ..Extra::default()
    };
    boot_with(manifest, emulator, timeout_seconds, typed(lines), extra)
}

/// As [`boot_typing`], with the NE2000 on UDP port `hub` of the loopback
/// instead of slirp (Bochs's socket module, QEMU's socket netdev: see
/// `kasane_run::BootOptions::hub`): two such boots joined by a wire are
/// two Kasane nodes on one Ethernet.
pub fn boot_typing_on_hub(
    manifest: &str,
    lines: &[&str],
    hub: u16,
    emulator: Emulator,
    timeout_seconds: u64,
) -> Boot {
    let extra = Extra {
        hub: Some(hub),
        ..Extra::default()
    };
    boot_with(manifest, emulator, timeout_seconds, typed(lines), extra)
}

fn boot_with(
    manifest: &str,
    emulator: Emulator,
    timeout_seconds: u64,
    script: Option<Vec<String>>,
    extra: Extra,
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
        disk: extra.disk,
        nic: kasane_run::nic_needed(&manifest_path).unwrap_or(false),
        forwards: extra.forwards,
        hub: extra.hub,
    };
    boot(&options).unwrap_or_else(|e| panic!("boot failed: {e}"))
}

/// What one transcript line must be. Checks compare whole lines; the two
/// looser kinds are for lines that carry figures which vary from run to
/// run (cycle counts, rates, pids, sizes, times) and say so where used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The whole line, exactly.
    Is(&'a str),
    /// A line that begins with this text; the rest varies (a figure, or a
    /// summary another part of the system may extend).
    StartsWith(&'a str),
    /// The whole line, where each `*` stands for any run of characters,
    /// none included: figures in the middle of a line.
    Pattern(&'a str),
}

impl Line<'_> {
    /// Whether `line` (one whole transcript line) is this.
    pub fn matches(&self, line: &str) -> bool {
        match *self {
            Line::Is(text) => line == text,
            Line::StartsWith(prefix) => line.starts_with(prefix),
            Line::Pattern(pattern) => pattern_matches(pattern, line),
        }
    }
}

/// Whether `line` is `pattern` with each `*` standing for any run of
/// characters. Leftmost matching of each fixed piece is enough: with only
/// `*` as a wildcard, an earlier match never leaves less room after it.
fn pattern_matches(pattern: &str, line: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        // No `*`: the line is the pattern.
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Asserts that the transcript has a line matching each of `expected`,
/// in order (other lines may come between).
pub fn assert_lines_in_order(boot: &Boot, expected: &[Line]) {
    assert_in_order(boot, boot.transcript.lines(), expected, "a line");
}

/// Asserts that each of `lines` was typed at a prompt, in order: the
/// transcript has the line `; ` + line for each (the prompt, then the
/// echo of what was typed).
pub fn assert_typed(boot: &Boot, lines: &[&str]) {
    let expected: Vec<String> = lines.iter().map(|line| format!("; {line}")).collect();
    let expected: Vec<Line> = expected.iter().map(|line| Line::Is(line)).collect();
    assert_in_order(boot, boot.transcript.lines(), &expected, "the typed line");
}

/// The lines commands printed: lines that begin with the prompt `; ` (a
/// typed line's echo, or the last prompt) are passed over, so an
/// expectation cannot match the command that was meant to print it.
fn output_lines(boot: &Boot) -> impl Iterator<Item = &str> {
    boot.transcript.lines().filter(|l| !l.starts_with("; "))
}

/// As [`assert_lines_in_order`], over what commands printed (prompt lines
/// are passed over).
pub fn assert_output_in_order(boot: &Boot, expected: &[Line]) {
    assert_in_order(boot, output_lines(boot), expected, "an output line");
}

fn assert_in_order<'t>(
    boot: &Boot,
    mut lines: impl Iterator<Item = &'t str>,
    expected: &[Line],
    what: &str,
) {
    for want in expected {
        if !lines.any(|line| want.matches(line)) {
            panic!(
                "expected {what} {want:?} (in order); transcript:\n{}",
                boot.transcript
            );
        }
    }
}

/// The lines strictly between the first line equal to `from` and the next
/// line equal to `to`, prompt lines (`; `...) passed over. Panics if
/// either is missing.
pub fn output_between<'b>(boot: &'b Boot, from: &str, to: &str) -> Vec<&'b str> {
    let mut lines = output_lines(boot).skip_while(|line| *line != from);
    if lines.next().is_none() {
        panic!("no line {from:?}; transcript:\n{}", boot.transcript);
    }
    let mut between = Vec::new();
    for line in lines {
        if line == to {
            return between;
        }
        between.push(line);
    }
    panic!(
        "no line {to:?} after {from:?}; transcript:\n{}",
        boot.transcript
    );
}

/// Asserts that what commands printed between the line `from` and the
/// next line `to` is exactly `expected`, one line for each: nothing
/// missing, nothing more (so a listing shows that what was removed is
/// gone).
pub fn assert_output_between(boot: &Boot, from: &str, to: &str, expected: &[Line]) {
    let got = output_between(boot, from, to);
    let mismatch = got.len() != expected.len()
        || got
            .iter()
            .zip(expected)
            .any(|(line, want)| !want.matches(line));
    if mismatch {
        let first = got
            .iter()
            .zip(expected)
            .position(|(line, want)| !want.matches(line))
            .unwrap_or(got.len().min(expected.len()));
        panic!(
            "between {from:?} and {to:?}: {} lines where {} were expected; the first difference \
             is at line {}: got {:?}, expected {:?}\nlines:\n{}\ntranscript:\n{}",
            got.len(),
            expected.len(),
            first + 1,
            got.get(first),
            expected.get(first),
            got.join("\n"),
            boot.transcript
        );
    }
}

/// Asserts that no line contains `needle` anywhere (an absence is checked
/// with a substring: that is the stricter test).
pub fn assert_no_line_contains(boot: &Boot, needle: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_whole_line() {
        assert!(Line::Is("a").matches("a"));
        assert!(!Line::Is("a").matches("cat: a"));
        assert!(!Line::Is("a").matches("a "));
        assert!(!Line::Is("").matches(" "));
    }

    #[test]
    fn a_prefix_takes_any_rest() {
        let line = Line::StartsWith("microkernel: timer via x2apic");
        assert!(line.matches("microkernel: timer via x2apic, tick 1000 us"));
        assert!(!line.matches("hvm: microkernel: timer via x2apic"));
    }

    #[test]
    fn a_pattern_matches_whole_lines_with_stars() {
        let ps = Line::Pattern("eve * *K Ready    ps");
        assert!(ps.matches("eve              28      72K Ready    ps"));
        assert!(!ps.matches("eve              28      72K Ready    psx"));
        assert!(!ps.matches(" eve              28      72K Ready    ps"));
        assert!(Line::Pattern("a*").matches("a"));
        assert!(Line::Pattern("*").matches(""));
        assert!(Line::Pattern("a*b*a").matches("aba"));
        assert!(!Line::Pattern("ab*ba").matches("aba"));
        assert!(Line::Pattern("x*yy*y").matches("xyyyy"));
        assert!(!Line::Pattern("no stars").matches("no stars!"));
    }
}
