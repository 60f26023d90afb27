//! Bochs: VT-x emulated, its COM1 a TCP server the launcher connects to.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::terminal::Terminal;
use crate::{forward_output, signals, which, BootOptions, Console, Machine};

/// [`start_bochs`], again (up to three times) when Bochs gave up at once
/// because its headless display found no free port: Bochs instances
/// started together (parallel tests) race for the ports 5900-5949.
pub(crate) fn start_bochs_retrying(
    options: &BootOptions,
    run_dir: &Path,
) -> Result<(Machine, Console), String> {
    let mut attempt = 1;
    loop {
        match start_bochs(options, run_dir) {
            Err(e) if attempt < 3 && display_port_taken(run_dir) && signals::caught().is_none() => {
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

/// Bochs's slirp config: its marker line, then one `hostfwd` line per
/// forwarded port (host loopback port to guest port, TCP). Bochs 2.7
/// takes at most 5.
fn slirp_config(forwards: &[(u16, u16)]) -> Result<String, String> {
    if forwards.len() > 5 {
        return Err(format!(
            "{} ports to forward; Bochs's slirp takes at most 5",
            forwards.len()
        ));
    }
    let mut config = String::from("# slirp config\n");
    for (host, guest) in forwards {
        config.push_str(&format!("hostfwd = tcp:127.0.0.1:{host}-:{guest}\n"));
    }
    Ok(config)
}

/// Bochs offers COM1 as a TCP server and waits for one client before it
/// starts the machine; the launcher connects as soon as it listens.
fn start_bochs(options: &BootOptions, run_dir: &Path) -> Result<(Machine, Console), String> {
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
         plugin_ctrl: speaker=0, sb16=0, es1370=0, e1000=0, ne2k={ne2k}, parallel=0, gameport=0, extfpuirq=0\n\
         com1: enabled=1, mode=socket-server, dev=127.0.0.1:{port}\n\
         port_e9_hack: enabled=1\n\
         log: {log}\n{disk}{nic}",
        ne2k = u8::from(options.nic),
        // PLATFORM.md: the PCI NE2000 on Bochs's slirp, whose config file
        // must start with its marker line.
        nic = if let (true, Some(port)) = (options.nic, options.hub) {
            // Bochs's eth_socket: receives on `port`, sends to `port + 1`
            // (bxhub's side of the pair); it passes on only frames for
            // its own MAC or broadcast.
            format!(
                "pci: enabled=1, chipset=i440fx, slot1=ne2k\nne2k: enabled=1, mac={}, ethmod=socket, ethdev={port}\n",
                crate::hub_mac(port)
            )
        } else if options.nic {
            let conf = run_dir.join("slirp.conf");
            fs::write(&conf, slirp_config(&options.forwards)?)
                .map_err(|e| format!("{}: {e}", conf.display()))?;
            format!(
                "pci: enabled=1, chipset=i440fx, slot1=ne2k\nne2k: enabled=1, mac=52:54:00:12:34:56, ethmod=slirp, script={}\n",
                conf.display()
            )
        } else {
            String::new()
        },
        disk = match &options.disk {
            // The secondary channel's master: the ports the manifest's
            // `ata1` names (0x170-0x177, 0x376).
            Some(path) => format!(
                "ata1: enabled=1, ioaddr1=0x170, ioaddr2=0x370, irq=15\nata1-master: type=disk, path={}, mode=flat\n",
                path.display()
            ),
            None => String::new(),
        },
        megs = options.memory_mib,
        iso = options.iso.display(),
        log = run_dir.join("bochs.log").display(),
    );
    let rc = run_dir.join("bochsrc");
    fs::write(&rc, config).map_err(|e| format!("{}: {e}", rc.display()))?;
    let commands = run_dir.join("cmds");
    fs::write(&commands, "c\n").map_err(|e| format!("{}: {e}", commands.display()))?;
    let out = fs::File::create(run_dir.join("bochs.out")).map_err(|e| e.to_string())?;
    let mut command = Command::new("bochs");
    command
        .current_dir(run_dir)
        .arg("-f")
        .arg(&rc)
        .arg("-q")
        .arg("-rc")
        .arg(&commands)
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(|e| e.to_string())?)
        .stderr(out);
    // Bochs never reads the terminal: the launcher forwards keys to COM1.
    let mut machine =
        Machine::spawn(&mut command, false).map_err(|e| format!("cannot start bochs: {e}"))?;
    let start = Instant::now();
    let stream = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(e) => {
                let exited = machine.try_wait().ok().flatten();
                if let Some(signal) = signals::caught() {
                    machine.end();
                    return Err(format!("stopped by {}", signals::name(signal)));
                }
                if exited.is_some() || start.elapsed() > Duration::from_secs(60) {
                    machine.end();
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
        console._terminal = Terminal::raw();
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
    Ok((machine, console))
}

#[cfg(test)]
mod tests {
    use super::slirp_config;

    #[test]
    fn slirp_config_has_its_marker_and_one_hostfwd_line_per_port() {
        assert_eq!(slirp_config(&[]).unwrap(), "# slirp config\n");
        assert_eq!(
            slirp_config(&[(40000, 564), (40001, 7001)]).unwrap(),
            "# slirp config\nhostfwd = tcp:127.0.0.1:40000-:564\nhostfwd = tcp:127.0.0.1:40001-:7001\n"
        );
        let six: Vec<(u16, u16)> = (0..6).map(|i| (40000 + i, 7000 + i)).collect();
        assert!(slirp_config(&six).unwrap_err().contains("at most 5"));
    }
}
