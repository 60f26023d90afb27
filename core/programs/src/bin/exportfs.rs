//! exportfs [-r root] [file]: serve this process's namespace as 9P2000.
//!
//! As Plan 9's exportfs(4): T-messages are read from one descriptor and
//! R-messages written to another, and every request is carried out in the
//! namespace exportfs runs in (the 9P logic is `core_programs::exportfs`).
//! With `file` (e.g. `/dev/linux/export`, the Linux cell's mount of
//! Kasane) the file is opened read-write and is both; without, fd 0 and
//! fd 1, so the same program serves a pipe or a network conversation:
//! `listen1 'tcp!*!564' exportfs -r /tmp` serves /tmp to each TCP caller
//! in a process of its own (docs/net.md). `-r root` serves the tree under
//! `root` (default `/`); a client's attach name picks a directory below
//! it.
//!
//! A read that fails with `linux cell restarted` means a new client on
//! the same file: the session is dropped (every fid clunked) and exportfs
//! serves on. On fds 0 and 1 the peer is whoever called, so a stream whose
//! 9P framing breaks (a size below 7 or above msize) cannot be trusted to
//! resynchronise: exportfs says why and ends, which hangs the call up.
//! End of file or another error ends it.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_programs::exportfs::{Exporter, Fd, Info, Namespace};
use core_user::prelude::*;
use core_user::{eprintln, sys, FileInfo};

/// The namespace of this process, through core's system calls.
struct Own;

fn info(file: FileInfo) -> Info {
    Info {
        name: file.name,
        length: file.length,
        mode: file.mode,
        qid_path: file.qid_path,
        uid: file.uid,
    }
}

impl Namespace for Own {
    fn stat(&mut self, path: &str) -> Result<Info, String> {
        sys::stat(path).map(info)
    }

    fn read_dir(&mut self, path: &str) -> Result<Vec<Info>, String> {
        Ok(sys::read_dir(path)?.into_iter().map(info).collect())
    }

    fn open(&mut self, path: &str, mode: u8) -> Result<Fd, String> {
        sys::open(path, u64::from(mode))
    }

    fn create(&mut self, path: &str, mode: u8, perm: u32) -> Result<Fd, String> {
        sys::create(path, u64::from(mode), u64::from(perm))
    }

    fn pread(&mut self, fd: Fd, offset: u64, count: u32) -> Result<Vec<u8>, String> {
        let mut buffer = vec![0u8; (count as usize).min(core_abi::MAX_IO)];
        let n = sys::pread(fd, &mut buffer, offset)?;
        buffer.truncate(n);
        Ok(buffer)
    }

    fn pwrite(&mut self, fd: Fd, offset: u64, data: &[u8]) -> Result<u32, String> {
        sys::pwrite(fd, data, offset).map(|n| n as u32)
    }

    fn close(&mut self, fd: Fd) {
        let _ = sys::close(fd);
    }

    fn remove(&mut self, path: &str) -> Result<(), String> {
        sys::remove(path)
    }

    fn rename(&mut self, path: &str, name: &str) -> Result<(), String> {
        sys::rename(path, name)
    }
}

/// The error a link file's read gives when its far end was replaced.
const RESTARTED: &str = "linux cell restarted";

/// Serves 9P read from `input` with replies to `output`. `stream` says the
/// two are a caller's byte stream (fds 0 and 1) rather than a link file.
fn serve(input: u32, output: u32, root: &str, stream: bool) -> Result<(), String> {
    let mut exporter = Exporter::new(Own, root);
    let mut buffer = vec![0u8; core_abi::MAX_IO];
    loop {
        let n = match sys::read(input, &mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e == RESTARTED => {
                eprintln!("exportfs: {e}: a new session");
                exporter.reset();
                continue;
            }
            Err(e) => return Err(e),
        };
        match exporter.feed(&buffer[..n]) {
            Ok(replies) if replies.is_empty() => {}
            Ok(replies) => {
                sys::write(output, &replies)?;
            }
            Err(why) if stream => {
                // A caller that breaks the framing is hung up on; its
                // fids are clunked as it goes.
                exporter.reset();
                return Err(format!(
                    "{}; hanging up",
                    why.trim_start_matches("exportfs: ")
                ));
            }
            Err(why) => {
                // The link cannot be resynchronised: wait for the next
                // client's Tversion.
                eprintln!("{why}");
                exporter.reset();
            }
        }
    }
}

fn main(argv: Vec<String>) -> Result<(), String> {
    let usage = || String::from("usage: exportfs [-r root] [file]");
    let (root, rest) = match argv.get(1).map(String::as_str) {
        Some("-r") => (argv.get(2).ok_or_else(usage)?.as_str(), &argv[3..]),
        _ => ("/", &argv[1..]),
    };
    let result = match rest {
        [] => serve(0, 1, root, true),
        [file] => {
            let fd = sys::open(file, core_abi::ORDWR)?;
            serve(fd, fd, root, false)
        }
        _ => return Err(usage()),
    };
    result.map_err(|e| {
        eprintln!("exportfs: {e}");
        format!("exportfs: {e}")
    })
}
