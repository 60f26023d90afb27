//! kasane-initramfs: pack the bridge agent and virtio modules into a cpio.
//!
//! Usage: kasane-initramfs --kernel DIR --agent FILE --output FILE
//!        [--module NAME]... [--busybox FILE]
//!
//! `--kernel` is a directory as `fetch-kernel` prints it: a `release` file
//! and `lib/modules/<release>/`. The archive holds `/init` (the agent),
//! `/dev/console`, mount points for devtmpfs, proc and sysfs, the modules
//! named (default: virtio_pci and virtio_console) with everything they
//! depend on, and a `modules.dep` for just those. With `--busybox` (a
//! static busybox, Debian's `busybox-static`) it also holds `/bin/busybox`
//! with links for the programs `lx` runs from Kasane ([`APPLETS`]), `/tmp`,
//! and an `/etc/passwd` and `/etc/group` that name uid and gid 0 `eve`:
//! the agent's 9P server checks permissions by user name, and Kasane's
//! user is eve, Plan 9's host owner, as root is Linux's.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bridge_initramfs::cpio::Archive;
use bridge_initramfs::modules::{modules_dep, ModuleTree};

const DEFAULT_MODULES: [&str; 2] = ["virtio_pci", "virtio_console"];

const USAGE: &str = "usage: kasane-initramfs --kernel DIR --agent FILE --output FILE [--module NAME]... [--busybox FILE]";

/// The busybox programs linked in `/bin`.
const APPLETS: [&str; 24] = [
    "sh", "cat", "echo", "uname", "ls", "wc", "true", "false", "sleep", "mkdir", "rm", "cp", "mv",
    "head", "tail", "grep", "sed", "sort", "env", "pwd", "id", "date", "od", "yes",
];

struct Options {
    kernel: PathBuf,
    agent: PathBuf,
    output: PathBuf,
    modules: Vec<String>,
    busybox: Option<PathBuf>,
}

fn parse(arguments: &[String]) -> Result<Options, String> {
    let mut kernel = None;
    let mut agent = None;
    let mut output = None;
    let mut modules = Vec::new();
    let mut busybox = None;
    let mut rest = arguments.iter();
    while let Some(flag) = rest.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_string());
        }
        let value = rest
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--kernel" => kernel = Some(PathBuf::from(value)),
            "--agent" => agent = Some(PathBuf::from(value)),
            "--output" => output = Some(PathBuf::from(value)),
            "--module" => modules.push(value.clone()),
            "--busybox" => busybox = Some(PathBuf::from(value)),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    let missing = |name: &str| format!("{name} is required\n{USAGE}");
    Ok(Options {
        kernel: kernel.ok_or_else(|| missing("--kernel"))?,
        agent: agent.ok_or_else(|| missing("--agent"))?,
        output: output.ok_or_else(|| missing("--output"))?,
        busybox,
        modules: if modules.is_empty() {
            DEFAULT_MODULES
                .iter()
                .map(|name| name.to_string())
                .collect()
        } else {
            modules
        },
    })
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|error| format!("cannot read {what} {}: {error}", path.display()))
}

fn build(options: &Options) -> Result<String, String> {
    let release_path = options.kernel.join("release");
    let release_bytes = read(&release_path, "the kernel release file").map_err(|error| {
        format!("{error} (--kernel wants a directory printed by guest-linux-bridge/fetch-kernel)")
    })?;
    let release = String::from_utf8(release_bytes)
        .map_err(|_| format!("{} is not text", release_path.display()))?
        .trim()
        .to_string();
    if release.is_empty() || release.contains('/') {
        return Err(format!(
            "{} holds no usable release",
            release_path.display()
        ));
    }
    let tree_path = options.kernel.join("lib/modules").join(&release);
    if !tree_path.is_dir() {
        return Err(format!(
            "{} is missing: is {} an unpacked kernel (guest-linux-bridge/fetch-kernel)?",
            tree_path.display(),
            options.kernel.display()
        ));
    }
    let agent = read(&options.agent, "the agent")?;
    if agent.get(..4) != Some(b"\x7fELF") {
        return Err(format!(
            "{} is not an ELF executable",
            options.agent.display()
        ));
    }
    let tree = ModuleTree::scan(&tree_path).map_err(|error| error.to_string())?;
    let wanted: Vec<&str> = options.modules.iter().map(String::as_str).collect();
    let modules = tree.resolve(&wanted).map_err(|error| error.to_string())?;

    let mut archive = Archive::new(Vec::new());
    let cpio = |error: bridge_initramfs::cpio::CpioError| error.to_string();
    archive.directory("dev", 0o755).map_err(cpio)?;
    archive
        .character_device("dev/console", 0o600, 5, 1)
        .map_err(cpio)?;
    archive.directory("proc", 0o555).map_err(cpio)?;
    archive.directory("sys", 0o555).map_err(cpio)?;
    archive.file("init", 0o755, &agent).map_err(cpio)?;
    if let Some(path) = &options.busybox {
        let busybox = read(path, "busybox")?;
        if busybox.get(..4) != Some(b"\x7fELF") {
            return Err(format!("{} is not an ELF executable", path.display()));
        }
        archive.directory("bin", 0o755).map_err(cpio)?;
        archive.file("bin/busybox", 0o755, &busybox).map_err(cpio)?;
        for applet in APPLETS {
            archive
                .symbolic_link(&format!("bin/{applet}"), "busybox")
                .map_err(cpio)?;
        }
        archive.directory("tmp", 0o1777).map_err(cpio)?;
        archive.directory("etc", 0o755).map_err(cpio)?;
        archive
            .file("etc/passwd", 0o644, b"eve:x:0:0:host owner:/:/bin/sh\n")
            .map_err(cpio)?;
        archive
            .file("etc/group", 0o644, b"eve:x:0:eve\n")
            .map_err(cpio)?;
    }
    let module_root = format!("lib/modules/{release}");
    archive.directories(&module_root, 0o755).map_err(cpio)?;
    for module in &modules {
        let name = format!("{module_root}/{}", module.relative_path);
        if let Some((parent, _)) = name.rsplit_once('/') {
            archive.directories(parent, 0o755).map_err(cpio)?;
        }
        archive.file(&name, 0o644, &module.object).map_err(cpio)?;
    }
    let dependencies = modules_dep(&modules);
    archive
        .file(
            &format!("{module_root}/modules.dep"),
            0o644,
            dependencies.as_bytes(),
        )
        .map_err(cpio)?;
    let (bytes, length) = archive.finish().map_err(cpio)?;
    if let Some(parent) = options
        .output
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        fs::create_dir_all(parent)
            .map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
    }
    fs::write(&options.output, &bytes)
        .map_err(|error| format!("cannot write {}: {error}", options.output.display()))?;
    let names: Vec<&str> = modules.iter().map(|module| module.name.as_str()).collect();
    Ok(format!(
        "kasane-initramfs: wrote {} ({length} bytes): /init, release {release}, modules {}",
        options.output.display(),
        names.join(" ")
    ))
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let result = parse(&arguments).and_then(|options| build(&options));
    match result {
        Ok(summary) => {
            eprintln!("{summary}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("kasane-initramfs: {message}");
            ExitCode::FAILURE
        }
    }
}
