//! `kasane-tcb`: prints the TCB's size per crate and checks it fits the budget.
//!
//! The crate set is asked of cargo each time, so it cannot drift from the
//! build: every workspace crate in the normal dependency graph of hvm and
//! the microkernel for `x86_64-unknown-none`, with the features that build
//! enables. `--files` adds each file's count. Exits 1 when the total passes [`kasane_tcb::LIMIT`], 2 when it
//! cannot count.

use kasane_tcb::cfg::Build;
use kasane_tcb::{count_crate, crate_roots, AIM, LIMIT};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The binaries that run in VMX root (hvm) and ring 0 (the microkernel).
const TCB_BINARIES: [&str; 2] = ["hvm", "microkernel"];

struct Crate {
    name: String,
    dir: PathBuf,
    build: Build,
}

fn main() -> ExitCode {
    match run() {
        Ok(total) if total > LIMIT => {
            eprintln!("tcb: {total} lines is above the limit of {LIMIT} (DESIGN.md §6)");
            ExitCode::from(1)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcb: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<usize, String> {
    let per_file = std::env::args().any(|a| a == "--files");
    let root = workspace_root()?;
    let crates = tcb_crates(&root)?;
    let mut total = 0;
    println!("tcb: lines per crate (compiled for x86_64-unknown-none, tests excluded)");
    for krate in &crates {
        let manifest = std::fs::read_to_string(krate.dir.join("Cargo.toml"))
            .map_err(|e| format!("{}: {e}", krate.dir.display()))?;
        let roots = crate_roots(&krate.dir, &manifest)?;
        let count = count_crate(&krate.dir, &roots, &krate.build).map_err(|e| e.to_string())?;
        let place = krate.dir.strip_prefix(&root).unwrap_or(&krate.dir);
        println!(
            "  {:<20} {:<28} {:>6}",
            krate.name,
            place.display(),
            count.lines()
        );
        if per_file {
            for (file, lines) in &count.files {
                let file = file.strip_prefix(&root).unwrap_or(file);
                println!("    {:<49} {lines:>6}", file.display());
            }
        }
        for file in &count.left_out {
            let file = file.strip_prefix(&root).unwrap_or(file);
            println!("    not compiled for the bare target: {}", file.display());
        }
        total += count.lines();
    }
    println!("bench tcb_rust_lines {total} lines");
    println!("tcb: {total} lines (aim {AIM}, limit {LIMIT})");
    Ok(total)
}

fn workspace_root() -> Result<PathBuf, String> {
    // run/tcb/ is two levels below the workspace root.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .ok_or_else(|| "cannot find the workspace root".to_string())
}

/// Asks `cargo tree` for the workspace crates hvm and the microkernel link
/// on the bare target, with their enabled features.
fn tcb_crates(root: &Path) -> Result<Vec<Crate>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root).args([
        "tree",
        "--quiet",
        "--target",
        "x86_64-unknown-none",
        "--edges",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}|{f}",
    ]);
    for binary in TCB_BINARIES {
        command.args(["--package", binary]);
    }
    let output = command.output().map_err(|e| format!("cargo tree: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut crates: Vec<Crate> = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(krate) = parse_tree_line(line, root) else {
            continue;
        };
        if !crates.iter().any(|c| c.name == krate.name) {
            crates.push(krate);
        }
    }
    for binary in TCB_BINARIES {
        if !crates.iter().any(|c| c.name == binary) {
            return Err(format!("cargo tree did not list {binary}"));
        }
    }
    Ok(crates)
}

/// `name v0.1.0 (/path)|feature,feature` for a local crate under `root`.
fn parse_tree_line(line: &str, root: &Path) -> Option<Crate> {
    let (package, features) = line.split_once('|')?;
    let (name, rest) = package.split_once(' ')?;
    let dir = PathBuf::from(rest.split_once('(')?.1.split_once(')')?.0);
    if !dir.starts_with(root) {
        return None;
    }
    let features = features
        .split(',')
        .map(|f| f.trim().trim_end_matches(" (*)").trim())
        .filter(|f| !f.is_empty() && *f != "(*)")
        .map(str::to_string)
        .collect();
    Some(Crate {
        name: name.to_string(),
        dir,
        build: Build { features },
    })
}
