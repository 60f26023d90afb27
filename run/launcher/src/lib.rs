//! The launcher behind `run/up` and the boot tests: build, image, boot, judge.
//!
//! [`build_components`] compiles the bare-metal parts, [`make_image`] turns a
//! manifest into an ISO, and [`boot`] runs it in an emulator, streaming the
//! console and deciding the outcome from it: a run is clean when hvm (or, in
//! bare mode, the microkernel) prints `poweroff ok`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Which emulator runs the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulator {
    /// Bochs with VT-x emulation (hvm runs in VMX mode).
    Bochs,
    /// QEMU with TCG: no VT-x, so hvm runs the microkernel in bare mode.
    Qemu,
    /// QEMU with KVM and nested VT-x (`-cpu host,+vmx`).
    Kvm,
}

impl Emulator {
    /// Parses `auto`, `bochs`, `qemu` or `kvm`.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "auto" => Ok(Self::auto()),
            "bochs" => Ok(Self::Bochs),
            "qemu" => Ok(Self::Qemu),
            "kvm" => Ok(Self::Kvm),
            other => Err(format!(
                "unknown emulator `{other}` (expected auto, bochs, qemu or kvm)"
            )),
        }
    }

    /// KVM with nested VT-x when the host offers both, otherwise Bochs.
    pub fn auto() -> Self {
        let kvm = Path::new("/dev/kvm").exists();
        let vmx = fs::read_to_string("/proc/cpuinfo").is_ok_and(|info| {
            info.lines()
                .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "vmx"))
        });
        if kvm && vmx {
            Self::Kvm
        } else {
            Self::Bochs
        }
    }
}

impl fmt::Display for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bochs => "bochs",
            Self::Qemu => "qemu",
            Self::Kvm => "kvm",
        })
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    if let Ok(root) = std::env::var("KASANE_ROOT") {
        return PathBuf::from(root);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository exists")
}

fn progress(message: &str) {
    eprintln!("run: {message}");
}

/// The bare-metal packages besides hvm and the boot modules they yield:
/// each listed binary is the component (boot module) of the same name.
pub const BARE_METAL_PACKAGES: &[(&str, &[&str])] = &[
    ("microkernel", &["microkernel"]),
    ("hello", &["hello"]),
    ("ktest", &["ktest"]),
    ("core-server", &["core"]),
    ("runtime-task", &["ramfs-task"]),
    (
        "core-programs",
        &[
            "rc", "ls", "cat", "wc", "ns", "mkdir", "rm", "mv", "cp", "date", "ps", "kill", "sleep",
        ],
    ),
];

/// Builds hvm and every bare-metal package; returns hvm's path and the
/// components by name. Plain files in `images/scripts/` are components too,
/// under their file names.
pub fn build_components(root: &Path) -> Result<(PathBuf, BTreeMap<String, PathBuf>), String> {
    let packages: Vec<&str> = BARE_METAL_PACKAGES
        .iter()
        .map(|(package, _)| *package)
        .collect();
    progress(&format!(
        "building hvm, {} (x86_64-unknown-none, release)",
        packages.join(", ")
    ));
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root).args([
        "build",
        "--release",
        "--target",
        "x86_64-unknown-none",
        "-p",
        "hvm",
    ]);
    for package in &packages {
        command.args(["-p", package]);
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(
            "building the bare-metal components failed (see cargo's messages above)".into(),
        );
    }
    let out = target_dir(root).join("x86_64-unknown-none/release");
    let mut components: BTreeMap<String, PathBuf> = BARE_METAL_PACKAGES
        .iter()
        .flat_map(|(_, binaries)| binaries.iter())
        .map(|binary| (binary.to_string(), out.join(binary)))
        .collect();
    if let Ok(entries) = fs::read_dir(root.join("images/scripts")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            components.insert(name, entry.path());
        }
    }
    Ok((out.join("hvm"), components))
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
}

/// Runs one of the Linux bridge's scripts and returns the path it prints
/// on its last line of standard output.
fn bridge_script(root: &Path, script: &str, flavour: &str) -> Result<PathBuf, String> {
    progress(&format!("guest-linux-bridge/{script} {flavour}"));
    let output = Command::new(root.join("guest-linux-bridge").join(script))
        .arg(flavour)
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run guest-linux-bridge/{script}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or("").trim();
    if !output.status.success() || last.is_empty() {
        return Err(format!(
            "guest-linux-bridge/{script} {flavour} failed ({})",
            output.status
        ));
    }
    Ok(PathBuf::from(last))
}

/// Adds the Linux guest's components when the manifest needs them and the
/// build has not provided them: `linux` is the Debian cloud kernel's
/// bzImage (`fetch-kernel cloud`, cached under build/linux) and
/// `linux-initrd` the agent's initramfs (`build-initramfs cloud`).
pub fn add_linux_components(
    root: &Path,
    manifest: &kasane_mkimage::BootManifestRef<'_>,
    components: &mut BTreeMap<String, PathBuf>,
) -> Result<(), String> {
    let needed = kasane_mkimage::required_components(manifest.0);
    if needed.iter().any(|(name, _)| name == "linux") && !components.contains_key("linux") {
        let kernel = bridge_script(root, "fetch-kernel", "cloud")?;
        components.insert("linux".to_owned(), kernel.join("vmlinuz"));
    }
    if needed.iter().any(|(name, _)| name == "linux-initrd")
        && !components.contains_key("linux-initrd")
    {
        let initrd = bridge_script(root, "build-initramfs", "cloud")?;
        components.insert("linux-initrd".to_owned(), initrd);
    }
    Ok(())
}

/// Memory (MiB) the emulator needs for a manifest: every cell, plus room for
/// hvm, GRUB's copies of the boot modules and 2 MiB alignment.
pub fn memory_needed(manifest: &Path) -> Result<u32, String> {
    let compiled = kasane_mkimage::compile_manifest(manifest).map_err(|e| e.to_string())?;
    let cells: u32 = compiled.cells.iter().map(|c| c.memory_mib).sum();
    let linux = compiled
        .cells
        .iter()
        .any(|c| c.kind == kasane_mkimage::CellKind::Linux);
    // The cloud kernel and its initramfs are ~15 MiB as GRUB modules.
    Ok(cells + if linux { 128 } else { 64 })
}

/// Builds the ISO for `manifest` under `build/images/` and returns its path.
pub fn make_image(
    root: &Path,
    manifest: &Path,
    hvm: &Path,
    mut components: BTreeMap<String, PathBuf>,
) -> Result<PathBuf, String> {
    let compiled = kasane_mkimage::compile_manifest(manifest).map_err(|e| e.to_string())?;
    add_linux_components(
        root,
        &kasane_mkimage::BootManifestRef(&compiled),
        &mut components,
    )?;
    let stem = manifest
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("image");
    let work = root.join("build/images").join(stem);
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let output = root.join("build/images").join(format!("{stem}.iso"));
    progress(&format!(
        "making {} from {}",
        output.display(),
        manifest.display()
    ));
    let spec = kasane_mkimage::ImageSpec {
        hvm,
        components,
        manifest: &compiled,
        work: &work,
        output: &output,
    };
    kasane_mkimage::build_image(&spec).map_err(|e| e.to_string())?;
    Ok(output)
}

/// How a boot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `poweroff ok`: a clean shutdown.
    Clean,
    /// `poweroff failed (...)` or a panic.
    Failed(String),
    /// No power-off within the time limit.
    Timeout,
    /// The emulator ended without a power-off line.
    EmulatorExited(String),
}

impl Outcome {
    /// The exit status `run/up` returns.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Clean => 0,
            Self::Failed(_) => 1,
            Self::Timeout => 124,
            Self::EmulatorExited(_) => 2,
        }
    }
}

/// A finished boot.
#[derive(Clone, Debug)]
pub struct Boot {
    /// Everything the console printed (CR removed).
    pub transcript: String,
    /// How it ended.
    pub outcome: Outcome,
}

/// Options for [`boot`].
#[derive(Clone, Debug)]
pub struct BootOptions {
    pub emulator: Emulator,
    pub iso: PathBuf,
    pub timeout: Duration,
    /// Copy the console to stdout as it arrives.
    pub echo: bool,
    /// Connect stdin to the console (QEMU only for now).
    pub interactive: bool,
    /// Guest memory in MiB.
    pub memory_mib: u32,
}

fn judge(transcript: &str) -> Option<Outcome> {
    for line in transcript.lines() {
        if line.contains("poweroff ok")
            && (line.starts_with("hvm: ") || line.starts_with("microkernel: "))
        {
            return Some(Outcome::Clean);
        }
        if line.contains("poweroff failed") || line.contains("PANIC") {
            return Some(Outcome::Failed(line.trim().to_owned()));
        }
    }
    None
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
}

/// Boots an ISO and watches its console.
pub fn boot(options: &BootOptions) -> Result<Boot, String> {
    // One directory per boot: tests in one process may boot the same ISO.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let run_dir = options
        .iso
        .with_extension(format!("run-{}-{run}", std::process::id()));
    let _ = fs::remove_dir_all(&run_dir);
    fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let (mut child, source) = match options.emulator {
        Emulator::Bochs => start_bochs(options, &run_dir)?,
        Emulator::Qemu | Emulator::Kvm => start_qemu(options)?,
    };
    let result = watch(&mut child, source, options);
    let _ = child.kill();
    let _ = child.wait();
    if result.as_ref().is_ok_and(|b| b.outcome == Outcome::Clean) {
        let _ = fs::remove_dir_all(&run_dir);
    }
    result
}

enum Source {
    File(PathBuf),
    Pipe(mpsc::Receiver<Vec<u8>>),
}

fn start_bochs(options: &BootOptions, run_dir: &Path) -> Result<(Child, Source), String> {
    if !which("bochs") {
        return Err(
            "bochs is not installed: run run/deps (apt-get install bochs bochsbios vgabios)".into(),
        );
    }
    let serial = run_dir.join("serial.txt");
    // PLATFORM.md: the Debian build has no `nogui`; RFB with timeout=0 runs
    // headless. Sound plugins must be off (they abort this Bochs).
    let config = format!(
        "megs: {megs}\n\
         cpu: model=corei7_skylake_x, count=1, ips=200000000\n\
         romimage: file=/usr/share/bochs/BIOS-bochs-latest\n\
         vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest\n\
         display_library: rfb, options=\"timeout=0\"\n\
         ata0-master: type=cdrom, path={iso}, status=inserted\n\
         boot: cdrom\n\
         speaker: enabled=0\n\
         sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy\n\
         plugin_ctrl: speaker=0, sb16=0, es1370=0, e1000=0, ne2k=0, parallel=0, gameport=0, extfpuirq=0\n\
         com1: enabled=1, mode=file, dev={serial}\n\
         port_e9_hack: enabled=1\n\
         log: {log}\n",
        megs = options.memory_mib,
        iso = options.iso.display(),
        serial = serial.display(),
        log = run_dir.join("bochs.log").display(),
    );
    let rc = run_dir.join("bochsrc");
    fs::write(&rc, config).map_err(|e| format!("{}: {e}", rc.display()))?;
    let commands = run_dir.join("cmds");
    fs::write(&commands, "c\n").map_err(|e| format!("{}: {e}", commands.display()))?;
    fs::write(&serial, b"").map_err(|e| format!("{}: {e}", serial.display()))?;
    let out = fs::File::create(run_dir.join("bochs.out")).map_err(|e| e.to_string())?;
    let child = Command::new("bochs")
        .current_dir(run_dir)
        .arg("-f")
        .arg(&rc)
        .arg("-q")
        .arg("-rc")
        .arg(&commands)
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out)
        .spawn()
        .map_err(|e| format!("cannot start bochs: {e}"))?;
    Ok((child, Source::File(serial)))
}

fn start_qemu(options: &BootOptions) -> Result<(Child, Source), String> {
    if !which("qemu-system-x86_64") {
        return Err(
            "qemu-system-x86_64 is not installed: run run/deps (apt-get install qemu-system-x86)"
                .into(),
        );
    }
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args(["-M", "pc", "-m"])
        .arg(format!("{}M", options.memory_mib))
        .args([
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
            "-serial",
            "stdio",
        ])
        .args([
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-boot",
            "d",
            "-cdrom",
        ])
        .arg(&options.iso);
    if options.emulator == Emulator::Kvm {
        command.args(["-enable-kvm", "-cpu", "host,+vmx"]);
    } else {
        command.args(["-cpu", "max"]);
    }
    command.stdin(if options.interactive {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start qemu: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buffer) {
            if n == 0 || sender.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    Ok((child, Source::Pipe(receiver)))
}

fn watch(child: &mut Child, source: Source, options: &BootOptions) -> Result<Boot, String> {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut offset = 0usize;
    let mut decided: Option<(Outcome, Instant)> = None;
    let stdout = std::io::stdout();
    loop {
        let before = bytes.len();
        match &source {
            Source::File(path) => {
                if let Ok(mut file) = fs::File::open(path) {
                    use std::io::Seek;
                    if file.seek(std::io::SeekFrom::Start(offset as u64)).is_ok() {
                        let mut chunk = Vec::new();
                        let _ = file.read_to_end(&mut chunk);
                        offset += chunk.len();
                        bytes.extend_from_slice(&chunk);
                    }
                }
            }
            Source::Pipe(receiver) => {
                while let Ok(chunk) = receiver.recv_timeout(Duration::from_millis(10)) {
                    bytes.extend_from_slice(&chunk);
                }
            }
        }
        if options.echo && bytes.len() > before {
            let fresh: Vec<u8> = bytes[before..]
                .iter()
                .copied()
                .filter(|&b| b != b'\r')
                .collect();
            let mut out = stdout.lock();
            let _ = out.write_all(&fresh);
            let _ = out.flush();
        }
        let transcript = String::from_utf8_lossy(&bytes).replace('\r', "");
        if decided.is_none() {
            if let Some(outcome) = judge(&transcript) {
                decided = Some((outcome, Instant::now()));
            }
        }
        let exited = child.try_wait().map_err(|e| e.to_string())?;
        if let Some(status) = exited {
            // Drain what the emulator wrote last.
            let before = bytes.len();
            match &source {
                Source::Pipe(receiver) => {
                    while let Ok(chunk) = receiver.recv_timeout(Duration::from_millis(100)) {
                        bytes.extend_from_slice(&chunk);
                    }
                }
                Source::File(path) => {
                    if let Ok(all) = fs::read(path) {
                        bytes.extend_from_slice(all.get(offset..).unwrap_or_default());
                    }
                }
            }
            if options.echo && bytes.len() > before {
                let fresh: Vec<u8> = bytes[before..]
                    .iter()
                    .copied()
                    .filter(|&b| b != b'\r')
                    .collect();
                let _ = stdout.lock().write_all(&fresh);
            }
            let transcript = String::from_utf8_lossy(&bytes).replace('\r', "");
            let outcome = match decided.map(|d| d.0).or_else(|| judge(&transcript)) {
                Some(outcome) => outcome,
                None => Outcome::EmulatorExited(format!(
                    "{} exited with {status} before powering off",
                    options.emulator
                )),
            };
            return Ok(Boot {
                transcript,
                outcome,
            });
        }
        if let Some((outcome, at)) = &decided {
            // Give the emulator a moment to end by itself, then stop it.
            if at.elapsed() > Duration::from_secs(3) {
                return Ok(Boot {
                    transcript,
                    outcome: outcome.clone(),
                });
            }
        }
        if start.elapsed() > options.timeout {
            return Ok(Boot {
                transcript,
                outcome: Outcome::Timeout,
            });
        }
        if matches!(source, Source::File(_)) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_reads_poweroff_lines() {
        assert_eq!(
            judge("hvm: poweroff ok (all cells stopped)\n"),
            Some(Outcome::Clean)
        );
        assert_eq!(judge("microkernel: poweroff ok\n"), Some(Outcome::Clean));
        assert!(matches!(
            judge("hvm: poweroff failed (x)\n"),
            Some(Outcome::Failed(_))
        ));
        assert!(matches!(
            judge("microkernel: PANIC: boom\n"),
            Some(Outcome::Failed(_))
        ));
        assert_eq!(judge("a cell printed poweroff ok in the middle\n"), None);
        assert_eq!(judge("booting\n"), None);
    }

    #[test]
    fn emulator_names() {
        assert_eq!(Emulator::parse("bochs"), Ok(Emulator::Bochs));
        assert_eq!(Emulator::parse("qemu"), Ok(Emulator::Qemu));
        assert!(Emulator::parse("vmware").is_err());
        assert_eq!(Outcome::Timeout.exit_code(), 124);
    }
}
