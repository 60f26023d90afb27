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
//!
//! The parts: `build` (the bare-metal components), `image` (the ISO),
//! `emulator` (the choice of emulator), `bochs` and `qemu` (starting each
//! with its console), `typist` (scripts typed at prompts), `terminal`
//! (the terminal's mode, put back after a boot) and `signals` (SIGTERM,
//! SIGINT and SIGHUP end the emulator). This file boots and judges.
//!
//! Once [`catch_terminating`] is called (`run/up` does, just before it
//! boots), a terminating signal ends the emulator and what it started
//! (an emulator that does not read the terminal runs as the leader of a
//! process group of its own, and the whole group is killed), puts the
//! terminal back, and the boot answers [`Outcome::Signalled`]: `run/up`
//! exits with 128 + the signal's number.

mod bochs;
mod build;
mod emulator;
mod image;
mod qemu;
mod signals;
mod terminal;
mod typist;

pub use build::{build_components, BARE_METAL_PACKAGES};
pub use emulator::{lists_vmx, Emulator, Host};
pub use image::{add_linux_components, make_image, memory_needed, nic_needed};
pub use signals::{catch_terminating, caught, name as signal_name};
pub use typist::{read_script, Typist};

use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use terminal::Terminal;

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
    /// The launcher caught this terminating signal ([`catch_terminating`])
    /// and ended the emulator.
    Signalled(i32),
}

impl Outcome {
    /// The exit status `run/up` returns.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Clean => 0,
            Self::Failed(_) => 1,
            Self::Timeout => 124,
            Self::EmulatorExited(_) => 2,
            Self::Signalled(signal) => signals::exit_status(*signal),
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
    /// A raw disk image attached as the secondary channel's master (the
    /// manifest's `ata1`): Bochs `ata1-master`, QEMU `if=ide,index=2`.
    pub disk: Option<PathBuf>,
    /// A PCI NE2000 (RTL8029) for the manifest's `ne2k`, on the
    /// emulator's slirp (guest 10.0.2.15, host 10.0.2.2, DHCP) or on a
    /// hub ([`hub`](Self::hub)): Bochs's `ne2k`, QEMU's `ne2k_pci`. QEMU
    /// adds it under TCG too, where Kasane runs bare and its net task is
    /// given no PCI device, so nothing drives it.
    pub nic: bool,
    /// TCP ports of the host's loopback that slirp forwards into the
    /// guest, `(host, guest)`: a `hostfwd` each, in Bochs's slirp config
    /// (at most 5, PLATFORM.md) or on QEMU's `-netdev user`. Empty for no
    /// forwarding; ignored without [`nic`](Self::nic).
    pub forwards: Vec<(u16, u16)>,
    /// Instead of slirp, the NE2000 on UDP ports of the loopback (Bochs's
    /// `socket` module, QEMU's `-netdev socket` in UDP mode): the
    /// emulator receives frames on this port and sends them to the next
    /// one, where a hub passes them to other nodes (the layout of Bochs's
    /// `bxhub`; `tests/tests/twonode.rs` has its own). Each node gets its
    /// own MAC, [`hub_mac`] of the port, so two Kasanes on one hub can
    /// talk. Ignored without [`nic`](Self::nic).
    pub hub: Option<u16>,
}

/// The NE2000's MAC on hub port `port`: the locally administered
/// 52:54:00 prefix QEMU uses, then `0x4b` ('K') and the port.
pub fn hub_mac(port: u16) -> String {
    let [high, low] = port.to_be_bytes();
    format!("52:54:00:4b:{high:02x}:{low:02x}")
}

/// The geometry Bochs derives from a flat image: 16 heads of 63 sectors,
/// so an image is a whole number of 516 096-byte cylinders.
pub const DISK_CYLINDER_BYTES: u64 = 16 * 63 * 512;

/// Checks a disk image before it is attached: it exists and is a whole
/// number of cylinders (Bochs refuses anything else for a flat image).
pub fn check_disk(path: &Path) -> Result<u64, String> {
    let length = fs::metadata(path)
        .map_err(|e| format!("disk image {}: {e}", path.display()))?
        .len();
    if length == 0 || length % DISK_CYLINDER_BYTES != 0 {
        return Err(format!(
            "disk image {} is {length} bytes; it must be a non-zero multiple of {DISK_CYLINDER_BYTES} (16 heads x 63 sectors x 512 bytes)",
            path.display()
        ));
    }
    Ok(length)
}

/// Makes a blank disk image of `cylinders` cylinders (zeros).
pub fn create_blank_disk(path: &Path, cylinders: u64) -> Result<(), String> {
    let file = fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.set_len(cylinders * DISK_CYLINDER_BYTES)
        .map_err(|e| format!("{}: {e}", path.display()))
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
    if let Some(disk) = &options.disk {
        check_disk(disk)?;
    }
    let started = match options.emulator {
        Emulator::Bochs => bochs::start_bochs_retrying(options, &run_dir),
        Emulator::Qemu | Emulator::Kvm => qemu::start_qemu(options),
    };
    let mut result = match started {
        Ok((mut machine, mut console)) => {
            let result = watch(&mut machine, &mut console, options);
            // The emulator goes first, then the terminal is put back.
            machine.end();
            drop(console);
            result
        }
        Err(e) => Err(e),
    };
    // However far the boot came, a signal decides how it ended.
    if let Some(signal) = signals::caught() {
        let transcript = result.map(|b| b.transcript).unwrap_or_default();
        result = Ok(Boot {
            transcript,
            outcome: Outcome::Signalled(signal),
        });
    }
    if result.as_ref().is_ok_and(|b| b.outcome == Outcome::Clean) {
        let _ = fs::remove_dir_all(&run_dir);
    }
    result
}

/// A running emulator. Ended on drop too, so that no path out of a boot
/// (a panic included) leaves it running.
struct Machine {
    child: Child,
    /// The emulator leads a process group of its own: ending it kills
    /// the group, with whatever the emulator started.
    group: bool,
    /// It has been waited for: its pid (and so its group's id) may be
    /// another process's now.
    reaped: bool,
}

impl Machine {
    /// Starts `command`. An emulator that does not read the terminal is
    /// put in a process group of its own when terminating signals are
    /// caught: then the launcher ends it and what it started. (One that
    /// reads the terminal must stay in the terminal's foreground group.)
    fn spawn(command: &mut Command, reads_terminal: bool) -> std::io::Result<Self> {
        let group = signals::catching() && !reads_terminal;
        if group {
            command.process_group(0);
        }
        Ok(Machine {
            child: command.spawn()?,
            group,
            reaped: false,
        })
    }

    /// [`Child::try_wait`].
    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        self.reaped |= status.is_some();
        Ok(status)
    }

    /// Kills the emulator (and its group) and waits for it.
    fn end(&mut self) {
        if self.reaped {
            return;
        }
        if self.group {
            signals::kill_group(self.child.id());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.end();
    }
}

/// The guest's serial console as the launcher sees it.
struct Console {
    /// What the guest writes, in chunks (a thread reads the emulator).
    output: mpsc::Receiver<Vec<u8>>,
    /// Where typed bytes go, when anything is typed.
    input: Option<Box<dyn Write + Send>>,
    /// The terminal's mode, put back when the boot ends.
    _terminal: Option<Terminal>,
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

fn watch(
    machine: &mut Machine,
    console: &mut Console,
    options: &BootOptions,
) -> Result<Boot, String> {
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
        if let Some(signal) = signals::caught() {
            return Ok(Boot {
                transcript: String::from_utf8_lossy(&bytes).replace('\r', ""),
                outcome: Outcome::Signalled(signal),
            });
        }
        let before = bytes.len();
        receive(console, &mut bytes, Duration::from_millis(10));
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
        let exited = machine.try_wait().map_err(|e| e.to_string())?;
        if let Some(status) = exited {
            // Drain what the emulator wrote last.
            let before = bytes.len();
            receive(console, &mut bytes, Duration::from_millis(100));
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
}
