//! Counts the trusted computing base: lines of Rust the bare build compiles.
//!
//! DESIGN.md §6 budgets every line that runs in VMX root or ring 0: hvm, the
//! microkernel, and the `no_std` crates they link. `run/tcb-lines` runs the
//! binary, which asks cargo for that crate set; this library counts one
//! crate by walking its module tree from its roots (`lib.rs`, each binary's
//! `main.rs`), so a module cfg'd out of the bare build, `#[cfg(test)] mod
//! tests;` included, leaves its file out, and a file no `mod` names is not
//! counted. Within a file, [`count::count_file`] says which lines count.

#![forbid(unsafe_code)]

pub mod cfg;
pub mod count;
pub mod lex;

use cfg::Build;
use count::count_file;
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

/// The budget: run/test fails above this many lines (DESIGN.md §6).
pub const LIMIT: usize = 14_000;
/// The aim the budget keeps in sight.
pub const AIM: usize = 12_000;

/// One crate's count.
#[derive(Clone, Debug, Default)]
pub struct CrateCount {
    /// Counted lines per compiled file, in the order the walk met them.
    pub files: Vec<(PathBuf, usize)>,
    /// `.rs` files under the crate's `src/` that the bare build does not
    /// compile (cfg'd out or never named by a `mod`).
    pub left_out: Vec<PathBuf>,
}

impl CrateCount {
    /// The crate's total.
    pub fn lines(&self) -> usize {
        self.files.iter().map(|(_, n)| n).sum()
    }
}

/// Counts the crate in `dir` whose module trees start at `roots`.
pub fn count_crate(dir: &Path, roots: &[PathBuf], build: &Build) -> io::Result<CrateCount> {
    let mut count = CrateCount::default();
    let mut seen = BTreeSet::new();
    for root in roots {
        walk(root, true, build, &mut seen, &mut count)?;
    }
    let mut all = Vec::new();
    rust_files(&dir.join("src"), &mut all)?;
    count.left_out = all.into_iter().filter(|f| !seen.contains(f)).collect();
    count.left_out.sort();
    Ok(count)
}

/// Counts `file` and the module files it names. `owns_directory` is true
/// for a crate root, a `mod.rs` and a file named by `#[path]`: their child
/// modules live beside them rather than in a directory named after them
/// (the Rust reference, "Modules", "Module source filenames").
fn walk(
    file: &Path,
    owns_directory: bool,
    build: &Build,
    seen: &mut BTreeSet<PathBuf>,
    count: &mut CrateCount,
) -> io::Result<()> {
    if !seen.insert(file.to_path_buf()) {
        return Ok(());
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
    let found = count_file(&text, build);
    count.files.push((file.to_path_buf(), found.lines.len()));
    let parent = file.parent().unwrap_or(Path::new("."));
    let mut base = parent.to_path_buf();
    if !owns_directory {
        base.push(file.file_stem().unwrap_or_default());
    }
    for module in found.modules {
        let mut dir = base.clone();
        dir.extend(&module.inline_path);
        let (child, child_owns) = match &module.path {
            // Outside inline modules a path is relative to the file's own
            // directory; inside them, to the inline modules' directory.
            Some(path) if module.inline_path.is_empty() => (parent.join(path), true),
            Some(path) => (dir.join(path), true),
            None => {
                let flat = dir.join(format!("{}.rs", module.name));
                if flat.exists() {
                    (flat, false)
                } else {
                    (dir.join(&module.name).join("mod.rs"), true)
                }
            }
        };
        walk(&child, child_owns, build, seen, count)?;
    }
    Ok(())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The roots of a crate's lib and bin targets, from its `Cargo.toml` text,
/// following cargo's defaults (`src/lib.rs`, `src/main.rs`,
/// `src/bin/NAME.rs`) where a target names no path. Build scripts run on
/// the build host and are not roots.
pub fn crate_roots(dir: &Path, manifest: &str) -> Result<Vec<PathBuf>, String> {
    let table: toml::Table = manifest.parse().map_err(|e| format!("{e}"))?;
    let mut roots = Vec::new();
    let lib = table
        .get("lib")
        .and_then(|l| l.get("path"))
        .and_then(|p| p.as_str())
        .map(|p| dir.join(p))
        .unwrap_or_else(|| dir.join("src/lib.rs"));
    if lib.exists() {
        roots.push(lib);
    }
    let bins = table.get("bin").and_then(|b| b.as_array());
    match bins {
        Some(bins) => {
            for bin in bins {
                let path = match (bin.get("path"), bin.get("name")) {
                    (Some(path), _) => path.as_str().map(|p| dir.join(p)),
                    (None, Some(name)) => name.as_str().map(|n| {
                        let named = dir.join(format!("src/bin/{n}.rs"));
                        if named.exists() {
                            named
                        } else {
                            dir.join("src/main.rs")
                        }
                    }),
                    (None, None) => None,
                };
                roots.extend(path);
            }
        }
        None => {
            let main = dir.join("src/main.rs");
            if main.exists() {
                roots.push(main);
            }
        }
    }
    roots.dedup();
    if roots.is_empty() {
        return Err(format!("{}: no lib or bin target", dir.display()));
    }
    Ok(roots)
}
