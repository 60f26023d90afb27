//! Host tests of the TCB counter on fixture files.
//!
//! `fixtures/mixed.rs` marks each line that must count with a `// +`
//! comment; `fixtures/walk/` is a crate whose module tree tests which files
//! count.

use kasane_tcb::cfg::Build;
use kasane_tcb::count::count_file;
use kasane_tcb::{count_crate, crate_roots};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn counts_exactly_the_marked_lines() {
    let text = std::fs::read_to_string(fixtures().join("mixed.rs")).unwrap();
    let marked: BTreeSet<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| line.trim_end().ends_with("// +"))
        .map(|(n, _)| n + 1)
        .collect();
    let counted = count_file(&text, &Build::default()).lines;
    assert_eq!(counted, marked);
}

#[test]
fn a_feature_enabled_for_the_build_counts() {
    let text = "#[cfg(feature = \"std\")]\nfn host() {}\n";
    let build = Build {
        features: ["std".to_string()].into(),
    };
    assert_eq!(count_file(text, &build).lines.len(), 2);
    assert!(count_file(text, &Build::default()).lines.is_empty());
}

#[test]
fn walks_the_module_tree_and_leaves_out_what_is_not_compiled() {
    let dir = fixtures().join("walk");
    let roots = crate_roots(&dir, "[package]\nname = \"walk\"\n").unwrap();
    assert_eq!(roots, vec![dir.join("src/lib.rs")]);
    let count = count_crate(&dir, &roots, &Build::default()).unwrap();
    let name = |p: &PathBuf| {
        p.strip_prefix(dir.join("src"))
            .unwrap()
            .display()
            .to_string()
    };
    let files: Vec<(String, usize)> = count.files.iter().map(|(p, n)| (name(p), *n)).collect();
    assert_eq!(
        files,
        vec![
            ("lib.rs".to_string(), 7),
            ("a.rs".to_string(), 2),
            ("a/sub.rs".to_string(), 1),
            ("b/mod.rs".to_string(), 1),
            ("b/c.rs".to_string(), 2),
            ("x/y.rs".to_string(), 1),
            ("inline/deep.rs".to_string(), 1),
        ]
    );
    assert_eq!(count.lines(), 15);
    let left_out: Vec<String> = count.left_out.iter().map(name).collect();
    assert_eq!(left_out, vec!["host.rs", "tests.rs", "unreached.rs"]);
}

#[test]
fn a_named_binary_is_a_root() {
    let dir = fixtures().join("walk");
    let manifest = "[lib]\npath = \"src/lib.rs\"\n[[bin]]\nname = \"w\"\npath = \"src/a.rs\"\n";
    let roots = crate_roots(&dir, manifest).unwrap();
    assert_eq!(roots, vec![dir.join("src/lib.rs"), dir.join("src/a.rs")]);
}
