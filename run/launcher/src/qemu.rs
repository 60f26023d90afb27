//! QEMU, with TCG (bare mode) or KVM (nested VT-x): COM1 on its stdio.
//!
//! [`qemu_args`] builds the command line, so that it is tested on the host
//! without starting QEMU. For a manifest that gives a server the `ne2k`,
//! QEMU gets the PCI NE2000 (RTL8029, QEMU's `ne2k_pci`) that Bochs gets,
//! on QEMU's slirp (`-netdev user`, with `--forward`'s ports) or on UDP
//! ports of the loopback for a hub (`-netdev socket`, `--hub PORT`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::terminal::Terminal;
use crate::{forward_output, which, BootOptions, Console, Emulator, Machine};

/// The NE2000's MAC on slirp, the one Bochs's card has too.
const SLIRP_MAC: &str = "52:54:00:12:34:56";

/// QEMU's arguments for `options`, in order (the program name not
/// included). Fails for an ISO or disk path that is not UTF-8, and for a
/// hub on the last UDP port, which has no next port to send to.
pub(crate) fn qemu_args(options: &BootOptions) -> Result<Vec<String>, String> {
    let iso = utf8(&options.iso)?;
    let mut args: Vec<String> = [
        "-M",
        "pc",
        "-m",
        &format!("{}M", options.memory_mib),
        "-display",
        "none",
        "-no-reboot",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-boot",
        "d",
    ]
    .map(String::from)
    .to_vec();
    if let Some(disk) = &options.disk {
        // `-cdrom` is the secondary channel's master (index 2), which the
        // disk takes as the manifest's `ata1`: the CD moves to the
        // primary master, and still boots (`-boot d`).
        args.push("-drive".into());
        args.push(format!("file={iso},media=cdrom,if=ide,index=0"));
        args.push("-drive".into());
        args.push(format!("file={},format=raw,if=ide,index=2", utf8(disk)?));
    } else {
        args.push("-cdrom".into());
        args.push(iso.into());
    }
    if options.emulator == Emulator::Kvm {
        args.extend(["-enable-kvm", "-cpu", "host,+vmx"].map(String::from));
    } else {
        args.extend(["-cpu", "max"].map(String::from));
    }
    if options.nic {
        let (netdev, mac) = if let Some(port) = options.hub {
            // QEMU's `socket` netdev in UDP mode: each frame one datagram,
            // received on `localaddr` and sent to `udp`. The layout of
            // Bochs's `socket` module: receive on `port`, send to
            // `port + 1`, where the hub takes the frame. The card keeps
            // only frames for its own MAC and broadcasts, so each node on
            // the hub has its own, [`crate::hub_mac`] of the port.
            let next = port
                .checked_add(1)
                .ok_or_else(|| format!("hub port {port} has no next port to send to"))?;
            (
                format!("socket,id=n0,udp=127.0.0.1:{next},localaddr=127.0.0.1:{port}"),
                crate::hub_mac(port),
            )
        } else {
            // QEMU's slirp, as Bochs's: the guest is 10.0.2.15 by DHCP and
            // the host 10.0.2.2. Each forward is a `hostfwd` from TCP port
            // `host` of the host's loopback to port `guest` of the guest
            // (no limit of 5 here, unlike Bochs). A QEMU built without
            // slirp refuses `user` at start and says why.
            let mut netdev = String::from("user,id=n0");
            for (host, guest) in &options.forwards {
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
            }
            (netdev, SLIRP_MAC.to_owned())
        };
        // The PCI NE2000 (RTL8029, PCI 10ec:8029) the manifest's `ne2k`
        // names, on netdev `n0`. A `-netdev` also stops QEMU adding its
        // default NIC.
        args.push("-netdev".into());
        args.push(netdev);
        args.push("-device".into());
        args.push(format!("ne2k_pci,netdev=n0,mac={mac}"));
    }
    Ok(args)
}

/// `path` as text for QEMU's command line.
fn utf8(path: &Path) -> Result<&str, String> {
    path.to_str()
        .ok_or_else(|| format!("{}: QEMU is given only UTF-8 paths", path.display()))
}

pub(crate) fn start_qemu(options: &BootOptions) -> Result<(Machine, Console), String> {
    if !which("qemu-system-x86_64") {
        return Err(
            "qemu-system-x86_64 is not installed: run run/deps (apt-get install qemu-system-x86)"
                .into(),
        );
    }
    let mut command = Command::new("qemu-system-x86_64");
    command.args(qemu_args(options)?);
    // A script is written into a pipe; QEMU takes bytes from it only as
    // the UART has room, so none is lost. Interactively QEMU reads the
    // terminal itself (and sets its mode: the launcher notes it first, to
    // put it back if QEMU is killed).
    let reads_terminal = options.script.is_none() && options.interactive;
    command.stdin(if options.script.is_some() {
        Stdio::piped()
    } else if reads_terminal {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let terminal = if reads_terminal {
        Terminal::save()
    } else {
        None
    };
    let mut machine = Machine::spawn(&mut command, reads_terminal)
        .map_err(|e| format!("cannot start qemu: {e}"))?;
    let stdout = machine.child.stdout.take().expect("piped stdout");
    let input = machine
        .child
        .stdin
        .take()
        .map(|stdin| Box::new(stdin) as Box<dyn Write + Send>);
    let console = Console {
        output: forward_output(stdout),
        input,
        _terminal: terminal,
    };
    Ok((machine, console))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::qemu_args;
    use crate::{BootOptions, Emulator};

    fn options(emulator: Emulator) -> BootOptions {
        BootOptions {
            emulator,
            iso: PathBuf::from("/b/k.iso"),
            timeout: Duration::from_secs(1),
            echo: false,
            interactive: false,
            script: None,
            memory_mib: 256,
            disk: None,
            nic: false,
            forwards: Vec::new(),
            hub: None,
        }
    }

    /// The arguments after `-boot d` (the media, the CPU, the NIC).
    fn tail(options: &BootOptions) -> Vec<String> {
        let args = qemu_args(options).unwrap();
        let boot = args.iter().position(|a| a == "-boot").unwrap();
        args[boot + 2..].to_vec()
    }

    #[test]
    fn qemu_args_start_with_the_machine_and_the_console() {
        let args = qemu_args(&options(Emulator::Qemu)).unwrap();
        assert_eq!(
            args[..17],
            [
                "-M",
                "pc",
                "-m",
                "256M",
                "-display",
                "none",
                "-no-reboot",
                "-monitor",
                "none",
                "-serial",
                "stdio",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
                "-boot",
                "d",
                "-cdrom",
                "/b/k.iso",
            ]
        );
    }

    #[test]
    fn qemu_args_without_a_nic_name_no_netdev() {
        assert_eq!(
            tail(&options(Emulator::Qemu)),
            ["-cdrom", "/b/k.iso", "-cpu", "max"]
        );
        assert_eq!(
            tail(&options(Emulator::Kvm)),
            ["-cdrom", "/b/k.iso", "-enable-kvm", "-cpu", "host,+vmx"]
        );
        // Forwards and a hub mean nothing without the card.
        let mut no_card = options(Emulator::Qemu);
        no_card.forwards = vec![(5640, 564)];
        no_card.hub = Some(40000);
        assert!(!qemu_args(&no_card).unwrap().iter().any(|a| a == "-netdev"));
    }

    #[test]
    fn qemu_args_put_the_disk_on_the_secondary_master() {
        let mut with_disk = options(Emulator::Qemu);
        with_disk.disk = Some(PathBuf::from("/b/d.img"));
        assert_eq!(
            tail(&with_disk),
            [
                "-drive",
                "file=/b/k.iso,media=cdrom,if=ide,index=0",
                "-drive",
                "file=/b/d.img,format=raw,if=ide,index=2",
                "-cpu",
                "max",
            ]
        );
    }

    #[test]
    fn qemu_args_put_the_ne2000_on_slirp_with_one_hostfwd_per_port() {
        let mut slirp = options(Emulator::Kvm);
        slirp.nic = true;
        assert_eq!(
            tail(&slirp)[5..],
            [
                "-netdev",
                "user,id=n0",
                "-device",
                "ne2k_pci,netdev=n0,mac=52:54:00:12:34:56",
            ]
        );
        // More than Bochs's 5 forwards: QEMU takes them all.
        slirp.forwards = (0..6).map(|i| (40000 + i, 7000 + i)).collect();
        let args = tail(&slirp);
        assert_eq!(args[5], "-netdev");
        assert_eq!(
            args[6],
            "user,id=n0,hostfwd=tcp:127.0.0.1:40000-:7000,hostfwd=tcp:127.0.0.1:40001-:7001,\
             hostfwd=tcp:127.0.0.1:40002-:7002,hostfwd=tcp:127.0.0.1:40003-:7003,\
             hostfwd=tcp:127.0.0.1:40004-:7004,hostfwd=tcp:127.0.0.1:40005-:7005"
        );
    }

    #[test]
    fn qemu_args_put_the_ne2000_on_the_hub_port_and_send_to_the_next() {
        let mut hub = options(Emulator::Qemu);
        hub.nic = true;
        hub.hub = Some(40000);
        assert_eq!(
            tail(&hub)[4..],
            [
                "-netdev",
                "socket,id=n0,udp=127.0.0.1:40001,localaddr=127.0.0.1:40000",
                "-device",
                "ne2k_pci,netdev=n0,mac=52:54:00:4b:9c:40",
            ]
        );
        hub.hub = Some(u16::MAX);
        assert!(qemu_args(&hub).unwrap_err().contains("no next port"));
    }
}
