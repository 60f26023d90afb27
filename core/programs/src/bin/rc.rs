//! rc: the `kasane-rc` shell over core's system calls.
//!
//! `rc FILE [arg ...]` reads FILE and runs it, with `$0` FILE and `$*`
//! the args. `rc` with no file, or `rc -i`, is
//! interactive: it prints `$prompt` (`; `) on fd 2, reads a line from fd
//! 0, runs it, and repeats until end of input (^D on the console), then
//! exits with `$status`. fds 0, 1 and 2 are `/dev/cons` when the shell
//! was started without them (as core starts the first rc).
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::sys;
use core_user::SpawnRequest;
use kasane_rc::{
    FileStat, Flow, Host, HostFd, Interactive, Lines, MountFlags, OpenHow, Shell, Spawn,
};

struct CoreHost;

impl Host for CoreHost {
    type Process = u64;

    fn spawn(&mut self, command: &Spawn<'_>) -> Result<u64, String> {
        let request = SpawnRequest {
            path: command.path.to_string(),
            argv: command.argv.to_vec(),
            fds: command.fds.iter().map(|(c, f)| (*c, f.0)).collect(),
            // As Plan 9's rc: children share the shell's namespace;
            // a script that wants its own says `rfork n`.
            flags: 0,
        };
        sys::spawn(&request)
    }

    fn wait(&mut self, process: u64) -> String {
        match sys::wait(process) {
            Ok((_, status)) => status,
            Err(e) => e,
        }
    }

    fn detach(&mut self, process: u64) -> u64 {
        process
    }

    fn wait_pid(&mut self, pid: u64) -> Result<String, String> {
        sys::wait(pid).map(|(_, status)| status)
    }

    fn read_dir(&mut self, path: &str) -> Result<Vec<(String, bool)>, String> {
        let entries = sys::read_dir(path)?;
        Ok(entries
            .into_iter()
            .map(|e| (e.name, u64::from(e.mode) & core_abi::DMDIR != 0))
            .collect())
    }

    fn stat(&mut self, path: &str) -> Result<FileStat, String> {
        let info = sys::stat(path)?;
        Ok(FileStat {
            dir: u64::from(info.mode) & core_abi::DMDIR != 0,
            length: info.length,
        })
    }

    fn open(&mut self, path: &str, how: OpenHow) -> Result<HostFd, String> {
        let fd = match how {
            OpenHow::Read => sys::open(path, core_abi::OREAD)?,
            OpenHow::ReadWrite => sys::open(path, core_abi::ORDWR)?,
            OpenHow::Write => sys::create(path, core_abi::OWRITE, 0o666)?,
            // Plan 9's rc creates the file when the open fails for any
            // reason; a create of a file that exists truncates it, so an
            // open that failed for another reason (a server restarting
            // under it) would lose what the file held. Create only a file
            // that is not there.
            OpenHow::Append => match sys::open(path, core_abi::OWRITE) {
                Ok(fd) => {
                    sys::seek(fd, 0, core_abi::SEEK_END)?;
                    fd
                }
                Err(e) if e.contains("does not exist") => {
                    sys::create(path, core_abi::OWRITE, 0o666)?
                }
                Err(e) => return Err(e),
            },
        };
        Ok(HostFd(fd))
    }

    fn pipe(&mut self) -> Result<(HostFd, HostFd), String> {
        let (a, b) = sys::pipe()?;
        Ok((HostFd(a), HostFd(b)))
    }

    fn close(&mut self, fd: HostFd) {
        let _ = sys::close(fd.0);
    }

    fn read(&mut self, fd: HostFd, buffer: &mut [u8]) -> Result<usize, String> {
        sys::read(fd.0, buffer)
    }

    fn write(&mut self, fd: HostFd, data: &[u8]) -> Result<(), String> {
        sys::write(fd.0, data).map(|_| ())
    }

    fn chdir(&mut self, dir: &str) -> Result<(), String> {
        sys::chdir(dir)
    }

    fn bind(&mut self, new: &str, old: &str, flags: MountFlags) -> Result<(), String> {
        sys::bind(new, old, flags.bits())
    }

    fn mount(
        &mut self,
        fd: HostFd,
        old: &str,
        spec: &str,
        flags: MountFlags,
    ) -> Result<(), String> {
        sys::mount(fd.0, old, spec, flags.bits())
    }

    fn unmount(&mut self, new: Option<&str>, old: &str) -> Result<(), String> {
        sys::unmount(new, old)
    }

    fn rfork(&mut self, flags: u32) -> Result<(), String> {
        sys::rfork(u64::from(flags))
    }
}

fn main(argv: Vec<String>) -> Result<(), String> {
    if sys::fstat(1).is_err() {
        let fd = sys::open("/dev/cons", core_abi::ORDWR)?;
        for n in [0, 1, 2] {
            if n != fd {
                sys::dup(fd, Some(n))?;
            }
        }
    }
    let mut shell = Shell::with_stdio(HostFd(0), HostFd(1), HostFd(2));
    let status = match argv.get(1).map(String::as_str) {
        None | Some("-i") if argv.len() <= 2 => {
            shell.set_var("0", argv.first().cloned().into_iter().collect());
            interactive(&mut shell)
        }
        Some(script) if !script.starts_with('-') => {
            shell.set_var("0", vec![script.to_string()]);
            shell.set_var("*", argv[2..].to_vec());
            let source = sys::read_file(script).map_err(|e| format!("rc: {script}: {e}"))?;
            let source = String::from_utf8(source).map_err(|_| "rc: script is not UTF-8")?;
            match shell.run(&mut CoreHost, &source) {
                Flow::Exit(status) => status,
                Flow::Continue => shell.status(),
            }
        }
        _ => return Err("usage: rc [-i | file [arg ...]]".to_string()),
    };
    let succeeded = status.chars().all(|c| c == '|' || c == '0');
    if succeeded {
        Ok(())
    } else {
        Err(status)
    }
}

/// Prompts, reads a line from fd 0, runs it, until end of input or
/// `exit`; returns the status to exit with.
fn interactive(shell: &mut Shell) -> String {
    let mut session = Interactive::new(shell);
    let mut lines = Lines::new();
    let mut buffer = vec![0u8; 8192];
    loop {
        let prompt = session.prompt(shell);
        if !prompt.is_empty() {
            let _ = sys::write(2, prompt.as_bytes());
        }
        let mut at_end = false;
        let line = loop {
            if let Some(line) = lines.next_line() {
                break Some(line);
            }
            match sys::read(0, &mut buffer) {
                Ok(n) if n > 0 => lines.push(&buffer[..n]),
                result => {
                    if let Err(e) = result {
                        let _ = sys::write(2, format!("rc: read: {e}\n").as_bytes());
                    }
                    at_end = true;
                    break lines.rest();
                }
            }
        };
        let Some(line) = line else {
            // End of input at a prompt: end the prompt's line.
            let _ = sys::write(2, b"\n");
            break;
        };
        if let Flow::Exit(status) = session.line(shell, &mut CoreHost, &line) {
            return status;
        }
        if at_end {
            break;
        }
    }
    session.end(shell, &mut CoreHost)
}
