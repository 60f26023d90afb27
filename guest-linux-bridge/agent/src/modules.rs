//! Reading `modules.dep` and putting modules in the order to load them.
//!
//! Each line is `path: dependency-path ...` (depmod's format). A module is
//! loaded after everything it names, found by walking the entries; the file
//! order of the dependency list does not matter. Lines the agent cannot use
//! are reported, never fatal: a guest with fewer modules is still useful.

use std::collections::{BTreeMap, BTreeSet};

/// One usable line of `modules.dep`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to `/lib/modules/<release>/`.
    pub path: String,
    /// Paths of modules that must be loaded first.
    pub depends: Vec<String>,
}

/// Parses `modules.dep`; returns the entries and one message per bad line.
pub fn parse(text: &str) -> (Vec<Entry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((path, depends)) = line.split_once(':') else {
            problems.push(format!("modules.dep line {}: no ':'", index + 1));
            continue;
        };
        let path = path.trim();
        if path.is_empty() || path.starts_with('/') || path.split('/').any(|part| part == "..") {
            problems.push(format!("modules.dep line {}: bad path {path:?}", index + 1));
            continue;
        }
        entries.push(Entry {
            path: path.to_string(),
            depends: depends.split_whitespace().map(str::to_string).collect(),
        });
    }
    (entries, problems)
}

/// Every module in `entries`, each after its dependencies, with a message
/// for each dependency that has no entry or that closes a loop (those are
/// skipped; the module is still tried, and the kernel will say what it
/// lacks).
pub fn load_order(entries: &[Entry]) -> (Vec<String>, Vec<String>) {
    let by_path: BTreeMap<&str, &Entry> = entries
        .iter()
        .map(|entry| (entry.path.as_str(), entry))
        .collect();
    let mut order = Vec::new();
    let mut problems = Vec::new();
    let mut placed = BTreeSet::new();
    for entry in entries {
        visit(
            &entry.path,
            &by_path,
            &mut Vec::new(),
            &mut placed,
            &mut order,
            &mut problems,
        );
    }
    (order, problems)
}

fn visit<'a>(
    path: &'a str,
    by_path: &BTreeMap<&'a str, &'a Entry>,
    visiting: &mut Vec<&'a str>,
    placed: &mut BTreeSet<&'a str>,
    order: &mut Vec<String>,
    problems: &mut Vec<String>,
) {
    if placed.contains(path) {
        return;
    }
    if visiting.contains(&path) {
        problems.push(format!("dependency loop through {path}"));
        return;
    }
    let Some(entry) = by_path.get(path) else {
        problems.push(format!("{path} is needed but has no modules.dep entry"));
        return;
    };
    visiting.push(path);
    for dependency in &entry.depends {
        visit(dependency, by_path, visiting, placed, order, problems);
    }
    visiting.pop();
    placed.insert(path);
    order.push(path.to_string());
}

/// The module name of a path, as the kernel prints it: `virtio_pci`.
pub fn name_of(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split('.').next().unwrap_or(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPENDENCIES: &str = "\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
";

    #[test]
    fn dependencies_load_first_whatever_the_file_order() {
        let (entries, problems) = parse(DEPENDENCIES);
        assert!(problems.is_empty());
        let (order, problems) = load_order(&entries);
        assert!(problems.is_empty());
        let names: Vec<&str> = order.iter().map(|path| name_of(path)).collect();
        let position = |name: &str| names.iter().position(|&each| each == name).unwrap();
        assert_eq!(names.len(), 6);
        assert!(position("virtio_ring") < position("virtio"));
        assert!(position("virtio") < position("virtio_pci"));
        assert!(position("virtio_pci_modern_dev") < position("virtio_pci"));
        assert!(position("virtio_pci_legacy_dev") < position("virtio_pci"));
        assert!(position("virtio") < position("virtio_console"));
    }

    #[test]
    fn bad_lines_loops_and_missing_entries_are_reported() {
        let (entries, problems) =
            parse("no colon here\n/abs.ko:\n../up.ko:\na.ko: b.ko\nb.ko: a.ko c.ko\n");
        assert_eq!(problems.len(), 3);
        let (order, problems) = load_order(&entries);
        assert_eq!(order, ["b.ko", "a.ko"]);
        assert!(problems.iter().any(|problem| problem.contains("loop")));
        assert!(problems.iter().any(|problem| problem.contains("c.ko")));
    }

    #[test]
    fn names_drop_directories_and_suffixes() {
        assert_eq!(name_of("kernel/drivers/virtio/virtio_pci.ko"), "virtio_pci");
        assert_eq!(name_of("x.ko.xz"), "x");
    }
}
