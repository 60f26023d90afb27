//! QEMU, with TCG (bare mode) or KVM (nested VT-x): COM1 on its stdio.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::terminal::Terminal;
use crate::{forward_output, which, BootOptions, Console, Emulator, Machine};

pub(crate) fn start_qemu(options: &BootOptions) -> Result<(Machine, Console), String> {
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
        ]);
    if let Some(disk) = &options.disk {
        // `-cdrom` is the secondary channel's master (index 2), which the
        // disk takes as the manifest's `ata1`: the CD moves to the
        // primary master, and still boots (`-boot d`).
        command.arg("-drive").arg(format!(
            "file={},media=cdrom,if=ide,index=0",
            options.iso.display()
        ));
        command
            .arg("-drive")
            .arg(format!("file={},format=raw,if=ide,index=2", disk.display()));
    } else {
        command.arg("-cdrom").arg(&options.iso);
    }
    if options.emulator == Emulator::Kvm {
        command.args(["-enable-kvm", "-cpu", "host,+vmx"]);
    } else {
        command.args(["-cpu", "max"]);
    }
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
