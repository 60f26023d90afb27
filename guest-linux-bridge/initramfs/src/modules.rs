//! Finding kernel modules, their dependencies, and writing `modules.dep`.
//!
//! Debian's kernel package ships no `modules.dep` (depmod makes it when the
//! package is installed), so dependencies are read from each module's own
//! `.modinfo` ELF section (`depends=a,b`), which is what depmod reads too.
//! Modules compressed as `.ko.xz` are unpacked on the host with `xz`, so
//! the guest needs no decompressor; they are stored as plain `.ko`.
//!
//! A module's name is its file name without the suffix, with `-` read as
//! `_` (the kernel treats the two as the same in module names).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why modules could not be gathered.
#[derive(Debug)]
pub enum ModuleError {
    /// A directory or file could not be read.
    Io { path: PathBuf, error: io::Error },
    /// No module of that name exists under the tree (and it is not built in).
    NotFound { name: String, tree: PathBuf },
    /// A module file is not an ELF64 object with a readable `.modinfo`.
    BadObject { path: PathBuf, reason: &'static str },
    /// A compressed module could not be unpacked.
    Decompress { path: PathBuf, reason: String },
    /// The dependencies loop back on themselves.
    Cycle { name: String },
}

impl fmt::Display for ModuleError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModuleError::Io { path, error } => write!(formatter, "{}: {error}", path.display()),
            ModuleError::NotFound { name, tree } => write!(
                formatter,
                "module {name} is neither under {} nor built in",
                tree.display()
            ),
            ModuleError::BadObject { path, reason } => {
                write!(
                    formatter,
                    "{}: not a kernel module: {reason}",
                    path.display()
                )
            }
            ModuleError::Decompress { path, reason } => {
                write!(formatter, "{}: cannot decompress: {reason}", path.display())
            }
            ModuleError::Cycle { name } => write!(formatter, "module {name} depends on itself"),
        }
    }
}

impl std::error::Error for ModuleError {}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ModuleError + '_ {
    move |error| ModuleError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// One module ready for the archive.
#[derive(Debug, Clone)]
pub struct Module {
    /// The module name, e.g. `virtio_pci`.
    pub name: String,
    /// Path relative to `lib/modules/<release>/`, always ending in `.ko`.
    pub relative_path: String,
    /// Direct dependencies, by module name.
    pub depends: Vec<String>,
    /// The uncompressed object.
    pub object: Vec<u8>,
}

/// The modules of one kernel release: `lib/modules/<release>/`.
#[derive(Debug)]
pub struct ModuleTree {
    root: PathBuf,
    /// Module name → path of its file relative to `root`.
    files: BTreeMap<String, String>,
    builtin: BTreeSet<String>,
}

/// Suffixes a module file may carry, with how to unpack it.
const SUFFIXES: [&str; 2] = [".ko.xz", ".ko"];

/// The module name for a file name, or `None` if it is not a module.
pub fn module_name(file_name: &str) -> Option<String> {
    SUFFIXES
        .iter()
        .find_map(|suffix| file_name.strip_suffix(suffix))
        .map(|stem| stem.replace('-', "_"))
}

impl ModuleTree {
    /// Indexes every module file under `root/kernel`, and reads
    /// `root/modules.builtin` if present.
    pub fn scan(root: &Path) -> Result<ModuleTree, ModuleError> {
        let mut files = BTreeMap::new();
        let mut pending = vec![root.join("kernel")];
        while let Some(directory) = pending.pop() {
            for entry in fs::read_dir(&directory).map_err(io_error(&directory))? {
                let entry = entry.map_err(io_error(&directory))?;
                let path = entry.path();
                let kind = entry.file_type().map_err(io_error(&path))?;
                if kind.is_dir() {
                    pending.push(path);
                    continue;
                }
                let file_name = entry.file_name().to_string_lossy().into_owned();
                let Some(name) = module_name(&file_name) else {
                    continue;
                };
                let relative = path
                    .strip_prefix(root)
                    .map_err(|_| ModuleError::BadObject {
                        path: path.clone(),
                        reason: "outside the module tree",
                    })?
                    .to_string_lossy()
                    .into_owned();
                files.insert(name, relative);
            }
        }
        let builtin_path = root.join("modules.builtin");
        let builtin = match fs::read_to_string(&builtin_path) {
            Ok(text) => text
                .lines()
                .filter_map(|line| line.rsplit('/').next())
                .filter_map(module_name)
                .collect(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => BTreeSet::new(),
            Err(error) => return Err(io_error(&builtin_path)(error)),
        };
        Ok(ModuleTree {
            root: root.to_path_buf(),
            files,
            builtin,
        })
    }

    /// Whether the kernel has `name` built in (so it needs no file).
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&name.replace('-', "_"))
    }

    /// Reads one module, uncompressed, with its direct dependencies.
    pub fn load(&self, name: &str) -> Result<Module, ModuleError> {
        let name = name.replace('-', "_");
        let relative = self.files.get(&name).ok_or_else(|| ModuleError::NotFound {
            name: name.clone(),
            tree: self.root.clone(),
        })?;
        let path = self.root.join(relative);
        let object = if relative.ends_with(".xz") {
            decompress_xz(&path)?
        } else {
            fs::read(&path).map_err(io_error(&path))?
        };
        let info = modinfo(&object).map_err(|reason| ModuleError::BadObject {
            path: path.clone(),
            reason,
        })?;
        let depends = info
            .iter()
            .filter_map(|entry| entry.strip_prefix("depends="))
            .flat_map(|list| list.split(','))
            .filter(|dependency| !dependency.is_empty())
            .map(|dependency| dependency.replace('-', "_"))
            .collect();
        let relative_path = relative.strip_suffix(".xz").unwrap_or(relative).to_string();
        Ok(Module {
            name,
            relative_path,
            depends,
            object,
        })
    }

    /// The wanted modules and everything they need, dependencies first
    /// (the order to load them in). Built-in modules are left out.
    pub fn resolve(&self, wanted: &[&str]) -> Result<Vec<Module>, ModuleError> {
        let mut ordered = Vec::new();
        let mut done = BTreeSet::new();
        for name in wanted {
            self.visit(
                &name.replace('-', "_"),
                &mut Vec::new(),
                &mut done,
                &mut ordered,
            )?;
        }
        Ok(ordered)
    }

    fn visit(
        &self,
        name: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        ordered: &mut Vec<Module>,
    ) -> Result<(), ModuleError> {
        if done.contains(name) || self.is_builtin(name) {
            return Ok(());
        }
        if path.iter().any(|visiting| visiting == name) {
            return Err(ModuleError::Cycle {
                name: name.to_string(),
            });
        }
        let module = self.load(name)?;
        path.push(name.to_string());
        for dependency in &module.depends {
            self.visit(dependency, path, done, ordered)?;
        }
        path.pop();
        done.insert(name.to_string());
        ordered.push(module);
        Ok(())
    }
}

/// `modules.dep` for `modules` (given dependencies first): each module's
/// path, a colon, then the paths of all it needs directly or not. As with
/// depmod, the list is in reverse load order (the last one loads first).
pub fn modules_dep(modules: &[Module]) -> String {
    let by_name: BTreeMap<&str, &Module> = modules
        .iter()
        .map(|module| (module.name.as_str(), module))
        .collect();
    let position: BTreeMap<&str, usize> = modules
        .iter()
        .enumerate()
        .map(|(index, module)| (module.name.as_str(), index))
        .collect();
    let mut text = String::new();
    for module in modules {
        let mut needed = BTreeSet::new();
        let mut pending: Vec<&str> = module.depends.iter().map(String::as_str).collect();
        while let Some(name) = pending.pop() {
            if let Some(dependency) = by_name.get(name) {
                if needed.insert(name) {
                    pending.extend(dependency.depends.iter().map(String::as_str));
                }
            }
        }
        let mut needed: Vec<&str> = needed.into_iter().collect();
        needed.sort_by_key(|name| std::cmp::Reverse(position[name]));
        text.push_str(&module.relative_path);
        text.push(':');
        for name in needed {
            text.push(' ');
            text.push_str(&by_name[name].relative_path);
        }
        text.push('\n');
    }
    text
}

fn decompress_xz(path: &Path) -> Result<Vec<u8>, ModuleError> {
    let output = Command::new("xz")
        .arg("--decompress")
        .arg("--stdout")
        .arg(path)
        .output()
        .map_err(|error| ModuleError::Decompress {
            path: path.to_path_buf(),
            reason: format!("running xz: {error}"),
        })?;
    if !output.status.success() {
        return Err(ModuleError::Decompress {
            path: path.to_path_buf(),
            reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output.stdout)
}

/// The NUL-separated `key=value` strings of an ELF64 little-endian object's
/// `.modinfo` section. Every offset is checked; nothing is trusted.
pub fn modinfo(object: &[u8]) -> Result<Vec<String>, &'static str> {
    let read = |offset: usize, size: usize| -> Result<u64, &'static str> {
        let bytes = offset
            .checked_add(size)
            .and_then(|end| object.get(offset..end))
            .ok_or("truncated ELF header")?;
        let mut value = [0u8; 8];
        value[..size].copy_from_slice(bytes);
        Ok(u64::from_le_bytes(value))
    };
    let to_usize = |value: u64| usize::try_from(value).map_err(|_| "offset out of range");
    // ELF-64 Object File Format 1.5, "ELF Header": e_ident (class 2 =
    // 64-bit, data 1 = little-endian), e_shoff at 0x28, e_shentsize 0x3A,
    // e_shnum 0x3C, e_shstrndx 0x3E.
    if object.get(..6) != Some(&[0x7F, b'E', b'L', b'F', 2, 1][..]) {
        return Err("not an ELF64 little-endian object");
    }
    let section_offset = to_usize(read(0x28, 8)?)?;
    let entry_size = to_usize(read(0x3A, 2)?)?;
    let section_count = to_usize(read(0x3C, 2)?)?;
    let names_index = to_usize(read(0x3E, 2)?)?;
    if entry_size < 0x40 || names_index >= section_count {
        return Err("bad section header table");
    }
    let section = |index: usize| -> Result<(usize, usize, usize), &'static str> {
        let base = index
            .checked_mul(entry_size)
            .and_then(|offset| offset.checked_add(section_offset))
            .ok_or("section header out of range")?;
        // "Sections": sh_name at 0, sh_offset at 0x18, sh_size at 0x20.
        let name = to_usize(read(base, 4)?)?;
        let offset = to_usize(read(base + 0x18, 8)?)?;
        let size = to_usize(read(base + 0x20, 8)?)?;
        Ok((name, offset, size))
    };
    let contents = |offset: usize, size: usize| {
        offset
            .checked_add(size)
            .and_then(|end| object.get(offset..end))
            .ok_or("section out of range")
    };
    let (_, names_offset, names_size) = section(names_index)?;
    let names = contents(names_offset, names_size)?;
    for index in 0..section_count {
        let (name, offset, size) = section(index)?;
        let name_bytes = names.get(name..).ok_or("section name out of range")?;
        let name_end = name_bytes.iter().position(|&byte| byte == 0).unwrap_or(0);
        if &name_bytes[..name_end] != b".modinfo" {
            continue;
        }
        return Ok(contents(offset, size)?
            .split(|&byte| byte == 0)
            .filter(|entry| !entry.is_empty())
            .map(|entry| String::from_utf8_lossy(entry).into_owned())
            .collect());
    }
    Err("no .modinfo section")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_follow_the_kernel_rules() {
        assert_eq!(module_name("virtio_pci.ko").as_deref(), Some("virtio_pci"));
        assert_eq!(module_name("9pnet-fd.ko.xz").as_deref(), Some("9pnet_fd"));
        assert_eq!(module_name("modules.dep"), None);
    }

    #[test]
    fn modinfo_refuses_junk_without_panicking() {
        assert!(modinfo(b"").is_err());
        assert!(modinfo(b"\x7fELF\x02\x01").is_err());
        let mut header = vec![0u8; 0x40];
        header[..6].copy_from_slice(&[0x7F, b'E', b'L', b'F', 2, 1]);
        header[0x28] = 0xFF; // section headers past the end
        header[0x3A] = 0x40;
        header[0x3C] = 3;
        assert!(modinfo(&header).is_err());
        for length in 0..header.len() {
            assert!(modinfo(&header[..length]).is_err());
        }
    }

    #[test]
    fn modules_dep_lists_everything_needed_last_loaded_first() {
        let module = |name: &str, depends: &[&str]| Module {
            name: name.to_string(),
            relative_path: format!("kernel/{name}.ko"),
            depends: depends.iter().map(|name| name.to_string()).collect(),
            object: Vec::new(),
        };
        let modules = [
            module("ring", &[]),
            module("virtio", &["ring"]),
            module("pci", &["virtio", "ring"]),
        ];
        assert_eq!(
            modules_dep(&modules),
            "kernel/ring.ko:\n\
             kernel/virtio.ko: kernel/ring.ko\n\
             kernel/pci.ko: kernel/virtio.ko kernel/ring.ko\n"
        );
    }
}
