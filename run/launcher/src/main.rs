//! `kasane-run up`: build, make the image, boot it, and report the outcome.
//!
//! Called by `run/up`; see `kasane-run --help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kasane_run::{boot, build_components, make_image, root, BootOptions, Emulator, Host};

const USAGE: &str = "usage: run/up [--emulator auto|bochs|qemu|kvm] [--manifest FILE] [--timeout SECONDS] [--memory MIB] [--script FILE] [--iso FILE] [--disk FILE] [--blank-disk MIB] [--forward HOSTPORT:GUESTPORT] [--hub PORT]

Builds what changed, makes the ISO for the manifest (default
images/manifests/default.toml: core and an interactive rc), boots it and
streams the console. From a terminal, what you type goes to the console.
With --script, each line of FILE (blank and # lines too) is typed at the
next `; ` prompt, then ^D, so rc exits and the system powers off; for a
program that reads the console itself, a line `#! after TEXT` makes the
next line wait for TEXT on the console instead of a prompt, and a line
`#! eof` types ^D (neither is typed itself). With
--iso, FILE (an ISO made before) is booted as it is and nothing is built;
--manifest then only sizes the memory. With --disk, FILE (a raw image,
a multiple of 516096 bytes) is the secondary ATA channel's master, the
manifest's `ata1`; --blank-disk MIB first creates FILE blank, rounded up
to whole cylinders. A manifest that gives a server the NE2000
(devices = [\"ne2k\"]) gets a PCI NE2000 in every emulator, on the
emulator's slirp (guest 10.0.2.15 by DHCP, host 10.0.2.2). With
--forward (repeated for more ports; Bochs takes at most 5), slirp
forwards TCP port HOSTPORT of the host's loopback to the guest's
GUESTPORT, e.g. --forward 5640:564 for exportfs (docs/net.md). With
--hub, the NE2000 is on UDP ports of the loopback instead of slirp
(Bochs's socket module, QEMU's socket netdev): the emulator receives
frames on UDP PORT and sends them to PORT+1, where a hub passes them on
(tests/tests/twonode.rs has one; docs/net.md, 'Two nodes'). SIGTERM,
SIGINT or SIGHUP ends the emulator and puts the terminal back. Exits 0
when the system powers off cleanly, 1 on a failure, 2 when the emulator
ends without powering off or cannot run on this host (kvm without
/dev/kvm or VT-x), 124 on timeout, 128 + the signal's number when a
signal ended it (143 for SIGTERM).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("run/up: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Vec<String>) -> Result<u8, String> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        Some("up") => {}
        _ => return Err(USAGE.into()),
    }
    let root = root();
    let mut emulator = Emulator::auto();
    let mut manifest = root.join("images/manifests/default.toml");
    let mut timeout = 300u64;
    let mut memory = 256u32;
    let mut script = None;
    let mut iso = None;
    let mut disk: Option<PathBuf> = None;
    let mut blank_mib: Option<u64> = None;
    let mut forwards = Vec::new();
    let mut hub = None;
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            return Ok(0);
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--emulator" => emulator = Emulator::parse(&value)?,
            "--manifest" => manifest = from_caller(&value),
            "--timeout" => {
                timeout = value
                    .parse()
                    .map_err(|_| format!("--timeout wants seconds, got `{value}`"))?
            }
            "--script" => script = Some(kasane_run::read_script(&from_caller(&value))?),
            "--iso" => iso = Some(from_caller(&value)),
            "--disk" => disk = Some(from_caller(&value)),
            "--blank-disk" => {
                blank_mib = Some(
                    value
                        .parse()
                        .map_err(|_| format!("--blank-disk wants MiB, got `{value}`"))?,
                )
            }
            "--forward" => forwards.push(parse_forward(&value)?),
            "--hub" => {
                hub = Some(
                    value
                        .parse::<u16>()
                        .ok()
                        .filter(|&p| p > 0 && p < u16::MAX)
                        .ok_or_else(|| {
                            format!("--hub wants a UDP port (1-65534), got `{value}`")
                        })?,
                )
            }
            "--memory" => {
                memory = value
                    .parse()
                    .map_err(|_| format!("--memory wants MiB, got `{value}`"))?
            }
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
    }
    if let Some(reason) = emulator.refusal(&Host::probe()) {
        eprintln!("run/up: {reason}");
        return Ok(2);
    }
    let nic = kasane_run::nic_needed(&manifest)?;
    // Bochs, QEMU and KVM all give the manifest's `ne2k` a PCI NE2000 on
    // slirp or a hub; without the card there is nothing to forward to.
    if !forwards.is_empty() && !nic {
        return Err(format!(
            "--forward needs a manifest that gives a server the NE2000 (devices = [\"ne2k\"]); {} does not",
            manifest.display()
        ));
    }
    if hub.is_some() && !nic {
        return Err(format!(
            "--hub needs a manifest that gives a server the NE2000 (devices = [\"ne2k\"]); {} does not",
            manifest.display()
        ));
    }
    if hub.is_some() && !forwards.is_empty() {
        return Err(
            "--hub and --forward do not go together: slirp forwards, and a hub has no slirp".into(),
        );
    }
    if disk.is_none() && blank_mib.is_some() {
        return Err("--blank-disk needs --disk FILE".into());
    }
    if disk.is_none() {
        // The manifest's own disk (`[system] disk`), made blank first if it
        // is missing and the manifest says how big.
        if let Some((path, mib)) =
            kasane_mkimage::manifest_disk(&manifest).map_err(|e| e.to_string())?
        {
            if !path.exists() {
                let mib = mib.ok_or_else(|| {
                    format!(
                        "{}: its disk {} does not exist (`disk_blank_mib` would create it; or give --disk FILE)",
                        manifest.display(),
                        path.display()
                    )
                })?;
                blank_mib = Some(u64::from(mib));
            }
            eprintln!(
                "run: attaching {} as ata1 (the manifest's disk)",
                path.display()
            );
            disk = Some(path);
        }
    }
    if let Some(mib) = blank_mib {
        let path = disk.as_ref().ok_or("--blank-disk needs --disk FILE")?;
        let cylinders = (mib << 20).div_ceil(kasane_run::DISK_CYLINDER_BYTES);
        kasane_run::create_blank_disk(path, cylinders)?;
    }
    if let Some(path) = &disk {
        kasane_run::check_disk(path)?;
    }
    memory = memory.max(kasane_run::memory_needed(&manifest)?);
    let iso = match iso {
        Some(iso) => iso,
        None => {
            let (hvm, components) = build_components(&root)?;
            make_image(&root, &manifest, &hvm, components)?
        }
    };
    eprintln!(
        "run: booting {} in {emulator} (timeout {timeout} s)",
        iso.display()
    );
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let options = BootOptions {
        emulator,
        iso,
        timeout: Duration::from_secs(timeout),
        echo: true,
        interactive,
        script,
        memory_mib: memory,
        disk,
        nic,
        forwards,
        hub,
    };
    // From here a terminating signal ends the emulator before run/up exits.
    kasane_run::catch_terminating()?;
    let result = boot(&options)?;
    let code = result.outcome.exit_code();
    match &result.outcome {
        kasane_run::Outcome::Clean => eprintln!("run: clean power-off"),
        kasane_run::Outcome::Failed(line) => eprintln!("run: failed: {line}"),
        kasane_run::Outcome::Timeout => eprintln!("run: timed out after {timeout} s"),
        kasane_run::Outcome::EmulatorExited(why) => eprintln!("run: {why}"),
        kasane_run::Outcome::Signalled(signal) => eprintln!(
            "run: stopped by {}; the emulator is ended",
            kasane_run::signal_name(*signal)
        ),
    }
    Ok(code as u8)
}

/// `HOSTPORT:GUESTPORT`, two TCP port numbers.
fn parse_forward(value: &str) -> Result<(u16, u16), String> {
    let bad = || format!("--forward wants HOSTPORT:GUESTPORT (TCP ports), got `{value}`");
    let (host, guest) = value.split_once(':').ok_or_else(bad)?;
    let host: u16 = host.parse().map_err(|_| bad())?;
    let guest: u16 = guest.parse().map_err(|_| bad())?;
    if host == 0 || guest == 0 {
        return Err(bad());
    }
    Ok((host, guest))
}

/// A path the user typed, made absolute against the directory run/up was
/// started in (`KASANE_CALLER_DIR`: run/up itself moves to the
/// repository's root, and Bochs runs in a directory of its own, so a
/// relative `--disk` would otherwise name the wrong file).
fn from_caller(value: &str) -> PathBuf {
    let path = PathBuf::from(value);
    if path.is_absolute() {
        return path;
    }
    match std::env::var_os("KASANE_CALLER_DIR") {
        Some(dir) => PathBuf::from(dir).join(path),
        None => std::env::current_dir().map_or(path.clone(), |dir| dir.join(&path)),
    }
}
