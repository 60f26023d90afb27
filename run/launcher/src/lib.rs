//! The launcher behind `run/up` and the boot tests: build, image, boot, judge.
//!
//! [`build_components`] compiles the bare-metal parts, [`make_image`] turns a
//! manifest into an ISO, and [`boot`] runs it in an emulator, streaming the
//! console and deciding the outcome from it: a run is clean when hvm (or, in
//! bare mode, the microkernel) prints `poweroff ok`.
//!
//! The console is COM1 both ways: QEMU's on its stdio, Bochs's as a TCP
//! server on 127.0.0.1 that the launcher connects to. A [`Typist`] types
//! a script at the shell's prompts (`run/up --script`), or the terminal's
//! keys are passed on (`interactive`). Neither emulator takes a byte of
//! input before the guest's UART has room for it, so input is not lost.

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
    ("runtime-task", &["ramfs-task", "faulty-task"]),
    (
        "core-programs",
        &[
            "rc", "ls", "cat", "wc", "ns", "mkdir", "rm", "mv", "cp", "date", "ps", "kill",
            "sleep", "bench", "garbage", "with",
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
        "building hvm, {} (x86_64-unknown-none, profile image: optimised as a whole, a few minutes the first time)",
        packages.join(", ")
    ));
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root).args([
        "build",
        "--profile",
        "image",
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
    let out = target_dir(root).join("x86_64-unknown-none/image");
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
    /// Connect stdin to the console: QEMU reads the terminal itself, and
    /// for Bochs the launcher forwards it (the terminal set to -icanon
    /// -echo meanwhile: the guest echoes).
    pub interactive: bool,
    /// Lines to type at the shell's prompts, then ^D (see [`Typist`]).
    /// Takes the place of `interactive`.
    pub script: Option<Vec<String>>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
}

/// The lines of a script for [`BootOptions::script`], every one of them
/// (blank and `#` comment lines too: rc ignores them, and the transcript
/// shows them as typed).
pub fn read_script(path: &Path) -> Result<Vec<String>, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("cannot read the script {}: {e}", path.display()))?;
    Ok(text.lines().map(str::to_owned).collect())
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

/// rc's prompts (`$prompt`'s default words): a new command, and the rest
/// of an unfinished one.
const PROMPTS: [&str; 2] = ["; ", "\t"];

/// ^D: at an empty line, end of file for the reader of /dev/cons.
const END_OF_FILE: u8 = 0x04;

/// Types a script into the guest's shell, one line per prompt.
///
/// The shell is waiting when the console's last line is a prompt with
/// nothing after it, and that line began after the last line typed (so
/// the prompt is a new one, not the one the line was typed at). Then the
/// next line is typed with its `\n`; after the last line, ^D, so the
/// shell reads end of file and exits. The guest echoes what it reads, so
/// the transcript shows each typed line after its prompt.
///
/// A command whose output does not end its last line (`cat /dev/time`)
/// leaves the prompt after that output: a last line that merely ends with
/// `; ` counts as a prompt once the console has been quiet for
/// [`Typist::SETTLE`], so the script does not stall there.
#[derive(Clone, Debug)]
pub struct Typist {
    lines: std::collections::VecDeque<String>,
    /// The transcript's length when the last keys were typed.
    typed_at: Option<usize>,
    done: bool,
}

impl Typist {
    pub fn new(lines: Vec<String>) -> Self {
        Typist {
            lines: lines.into(),
            typed_at: None,
            done: false,
        }
    }

    /// Whether everything, ^D included, has been typed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// How long the console stays quiet before a prompt after unfinished
    /// output counts.
    pub const SETTLE: Duration = Duration::from_millis(500);

    /// Given the transcript so far (CR removed) and how long the console
    /// has been quiet, the keys to type now, if the shell waits at a new
    /// prompt.
    pub fn keys(&mut self, transcript: &str, quiet: Duration) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        let start = transcript.rfind('\n').map_or(0, |n| n + 1);
        let fresh = self.typed_at.is_none_or(|at| start > at);
        let last = &transcript[start..];
        let prompt =
            PROMPTS.contains(&last) || (last.ends_with(PROMPTS[0]) && quiet >= Self::SETTLE);
        if !fresh || !prompt {
            return None;
        }
        self.typed_at = Some(transcript.len());
        Some(match self.lines.pop_front() {
            Some(line) => format!("{line}\n").into_bytes(),
            None => {
                self.done = true;
                vec![END_OF_FILE]
            }
        })
    }
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
    let (mut child, console) = match options.emulator {
        Emulator::Bochs => start_bochs_retrying(options, &run_dir)?,
        Emulator::Qemu | Emulator::Kvm => start_qemu(options)?,
    };
    let result = watch(&mut child, console, options);
    let _ = child.kill();
    let _ = child.wait();
    if result.as_ref().is_ok_and(|b| b.outcome == Outcome::Clean) {
        let _ = fs::remove_dir_all(&run_dir);
    }
    result
}

/// The guest's serial console as the launcher sees it.
struct Console {
    /// What the guest writes, in chunks (a thread reads the emulator).
    output: mpsc::Receiver<Vec<u8>>,
    /// Where typed bytes go, when anything is typed.
    input: Option<Box<dyn Write + Send>>,
    /// The terminal's mode while its keys are forwarded.
    _terminal: Option<RawTerminal>,
}

/// Reads `from` until it ends, sending each chunk.
fn forward_output(mut from: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0 || sender.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The terminal on stdin taking keys one at a time without echoing them
/// (the guest echoes), as `stty` left it before on drop.
struct RawTerminal {
    saved: String,
}

impl RawTerminal {
    fn enter() -> Option<Self> {
        let saved = Command::new("stty")
            .arg("-g")
            .stdin(Stdio::inherit())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let saved = String::from_utf8(saved.stdout).ok()?.trim().to_owned();
        let status = Command::new("stty")
            .args(["-icanon", "-echo", "min", "1", "time", "0"])
            .stdin(Stdio::inherit())
            .status()
            .ok()?;
        status.success().then_some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = Command::new("stty")
            .arg(&self.saved)
            .stdin(Stdio::inherit())
            .status();
    }
}

/// [`start_bochs`], again (up to three times) when Bochs gave up at once
/// because its headless display found no free port: Bochs instances
/// started together (parallel tests) race for the ports 5900-5949.
fn start_bochs_retrying(options: &BootOptions, run_dir: &Path) -> Result<(Child, Console), String> {
    let mut attempt = 1;
    loop {
        match start_bochs(options, run_dir) {
            Err(e) if attempt < 3 && display_port_taken(run_dir) => {
                eprintln!("run: Bochs found no display port ({e}); starting it again");
                std::thread::sleep(Duration::from_millis(500 * attempt));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Whether Bochs's output says its RFB display could not bind a port.
fn display_port_taken(run_dir: &Path) -> bool {
    fs::read_to_string(run_dir.join("bochs.out"))
        .is_ok_and(|out| out.contains("RFB could not bind"))
}

/// Bochs offers COM1 as a TCP server and waits for one client before it
/// starts the machine; the launcher connects as soon as it listens.
fn start_bochs(options: &BootOptions, run_dir: &Path) -> Result<(Child, Console), String> {
    if !which("bochs") {
        return Err(
            "bochs is not installed: run run/deps (apt-get install bochs bochsbios vgabios)".into(),
        );
    }
    // A port the system just gave out is free for Bochs to take.
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("no free TCP port for the serial console: {e}"))?
        .port();
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
         com1: enabled=1, mode=socket-server, dev=127.0.0.1:{port}\n\
         port_e9_hack: enabled=1\n\
         log: {log}\n",
        megs = options.memory_mib,
        iso = options.iso.display(),
        log = run_dir.join("bochs.log").display(),
    );
    let rc = run_dir.join("bochsrc");
    fs::write(&rc, config).map_err(|e| format!("{}: {e}", rc.display()))?;
    let commands = run_dir.join("cmds");
    fs::write(&commands, "c\n").map_err(|e| format!("{}: {e}", commands.display()))?;
    let out = fs::File::create(run_dir.join("bochs.out")).map_err(|e| e.to_string())?;
    let mut child = Command::new("bochs")
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
    let start = Instant::now();
    let stream = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(e) => {
                let exited = child.try_wait().ok().flatten();
                if exited.is_some() || start.elapsed() > Duration::from_secs(60) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "cannot reach Bochs's serial console at 127.0.0.1:{port}: {e} (see {})",
                        run_dir.join("bochs.out").display()
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let _ = stream.set_nodelay(true);
    let clone = || stream.try_clone().map_err(|e| e.to_string());
    let output = forward_output(clone()?);
    let mut console = Console {
        output,
        input: None,
        _terminal: None,
    };
    if options.script.is_some() {
        console.input = Some(Box::new(clone()?));
    } else if options.interactive {
        console._terminal = RawTerminal::enter();
        let mut to_guest = clone()?;
        std::thread::spawn(move || {
            let mut buffer = [0u8; 256];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buffer) {
                if n == 0 || to_guest.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        });
    }
    Ok((child, console))
}

fn start_qemu(options: &BootOptions) -> Result<(Child, Console), String> {
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
    // A script is written into a pipe; QEMU takes bytes from it only as
    // the UART has room, so none is lost. Interactively QEMU reads the
    // terminal itself (and sets its mode).
    command.stdin(if options.script.is_some() {
        Stdio::piped()
    } else if options.interactive {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start qemu: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let input = child
        .stdin
        .take()
        .map(|stdin| Box::new(stdin) as Box<dyn Write + Send>);
    let console = Console {
        output: forward_output(stdout),
        input,
        _terminal: None,
    };
    Ok((child, console))
}

fn watch(child: &mut Child, mut console: Console, options: &BootOptions) -> Result<Boot, String> {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut decided: Option<(Outcome, Instant)> = None;
    let mut typist = options.script.clone().map(Typist::new);
    let mut last_output = Instant::now();
    let stdout = std::io::stdout();
    // Takes what the guest wrote, waiting up to `wait` for the first chunk.
    let receive = |console: &Console, bytes: &mut Vec<u8>, wait: Duration| {
        match console.output.recv_timeout(wait) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                while let Ok(chunk) = console.output.try_recv() {
                    bytes.extend_from_slice(&chunk);
                }
            }
            // The reader is gone (the emulator closed the console).
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    };
    let show = |bytes: &[u8]| {
        if options.echo && !bytes.is_empty() {
            let fresh: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'\r').collect();
            let mut out = stdout.lock();
            let _ = out.write_all(&fresh);
            let _ = out.flush();
        }
    };
    loop {
        let before = bytes.len();
        receive(&console, &mut bytes, Duration::from_millis(10));
        show(&bytes[before..]);
        if bytes.len() > before {
            last_output = Instant::now();
        }
        let transcript = String::from_utf8_lossy(&bytes).replace('\r', "");
        if let (Some(typist), Some(input)) = (typist.as_mut(), console.input.as_mut()) {
            if let Some(keys) = typist.keys(&transcript, last_output.elapsed()) {
                // A guest that stopped reading is judged by its console.
                let _ = input.write_all(&keys).and_then(|()| input.flush());
            }
        }
        if decided.is_none() {
            if let Some(outcome) = judge(&transcript) {
                decided = Some((outcome, Instant::now()));
            }
        }
        let exited = child.try_wait().map_err(|e| e.to_string())?;
        if let Some(status) = exited {
            // Drain what the emulator wrote last.
            let before = bytes.len();
            receive(&console, &mut bytes, Duration::from_millis(100));
            show(&bytes[before..]);
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
    fn the_typist_types_one_line_per_new_prompt_then_end_of_file() {
        let busy = Duration::ZERO;
        let mut typist = Typist::new(vec!["echo hi".into(), String::new(), "date".into()]);
        let mut transcript = String::from("core: started /bin/rc as pid 1\n");
        assert_eq!(typist.keys(&transcript, busy), None);
        transcript.push_str("; ");
        assert_eq!(
            typist.keys(&transcript, busy).as_deref(),
            Some(&b"echo hi\n"[..])
        );
        // The same prompt, before the echo: nothing more.
        assert_eq!(typist.keys(&transcript, Typist::SETTLE), None);
        transcript.push_str("echo hi\n");
        assert_eq!(typist.keys(&transcript, busy), None);
        // Output that merely contains a prompt is not one.
        transcript.push_str("hi; \n");
        assert_eq!(typist.keys(&transcript, Typist::SETTLE), None);
        transcript.push_str("; ");
        assert_eq!(typist.keys(&transcript, busy).as_deref(), Some(&b"\n"[..]));
        transcript.push_str("\n; x");
        assert_eq!(typist.keys(&transcript, Typist::SETTLE), None);
        // The continuation prompt counts too.
        transcript.push_str("\n\t");
        assert_eq!(
            typist.keys(&transcript, busy).as_deref(),
            Some(&b"date\n"[..])
        );
        // A prompt after output without a newline counts once it settles.
        transcript.push_str("date\nThu Jan  1; ");
        assert_eq!(typist.keys(&transcript, busy), None);
        let keys = typist.keys(&transcript, Typist::SETTLE);
        assert_eq!(keys.as_deref(), Some(&[END_OF_FILE][..]));
        assert!(typist.is_done());
        transcript.push_str("\n; ");
        assert_eq!(typist.keys(&transcript, busy), None);
    }

    #[test]
    fn a_missing_script_is_a_clear_error() {
        let error = read_script(Path::new("/nonexistent/script")).unwrap_err();
        assert!(error.contains("/nonexistent/script"), "{error}");
    }

    #[test]
    fn emulator_names() {
        assert_eq!(Emulator::parse("bochs"), Ok(Emulator::Bochs));
        assert_eq!(Emulator::parse("qemu"), Ok(Emulator::Qemu));
        assert!(Emulator::parse("vmware").is_err());
        assert_eq!(Outcome::Timeout.exit_code(), 124);
    }
}
