//! linuxcalls dir: check system-call delegation to the Linux cell.
//!
//! Through `core_user::linux` (docs/linux-bridge.md, "System-call
//! delegation") it asks uname, opens `dir/kasane.txt` with openat and
//! reads it, writes `dir/tmp/delegated` and reads the bytes back through
//! a second descriptor (the proxy keeps descriptors between calls), lists
//! `dir` with getdents64, checks that getpid names the same proxy twice,
//! and that an unknown call number is refused. It prints one line per
//! check and exits with an error at the first that fails.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::linux::{linux, Arg, AT_FDCWD};
use core_user::prelude::*;
use core_user::println;

const READ: u32 = 0;
const WRITE: u32 = 1;
const CLOSE: u32 = 3;
const GETPID: u32 = 39;
const UNAME: u32 = 63;
const GETDENTS64: u32 = 217;
const OPENAT: u32 = 257;
const O_WRONLY: u64 = 0o1;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const O_DIRECTORY: u64 = 0o200000;

/// A call whose negative result is an error.
fn call(number: u32, args: &mut [Arg<'_>]) -> Result<u64, String> {
    let result = linux(number, args)?;
    u64::try_from(result).map_err(|_| format!("linux call {number}: errno {}", -result))
}

fn open(path: &str, flags: u64) -> Result<u64, String> {
    call(
        OPENAT,
        &mut [
            Arg::Value(AT_FDCWD),
            Arg::Path(path),
            Arg::Value(flags),
            Arg::Value(0o644),
        ],
    )
}

fn read(fd: u64) -> Result<Vec<u8>, String> {
    let mut buffer = vec![0u8; 512];
    let n = call(
        READ,
        &mut [Arg::Value(fd), Arg::Out(&mut buffer), Arg::Value(512)],
    )?;
    buffer.truncate(n as usize);
    Ok(buffer)
}

/// The NUL-ended field at `at` of a utsname (65 bytes each).
fn field(uts: &[u8], index: usize) -> String {
    let bytes = &uts[index * 65..(index + 1) * 65];
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn main(argv: Vec<String>) -> Result<(), String> {
    let dir = argv.get(1).ok_or("usage: linuxcalls dir")?;
    let dir = dir.trim_end_matches('/');
    let mut uts = [0u8; 390];
    call(UNAME, &mut [Arg::Out(&mut uts)])?;
    println!(
        "linuxcalls: uname {} {} {}",
        field(&uts, 0),
        field(&uts, 2),
        field(&uts, 4)
    );

    let fd = open(&format!("{dir}/kasane.txt"), 0)?;
    let bytes = read(fd)?;
    call(CLOSE, &mut [Arg::Value(fd)])?;
    println!(
        "linuxcalls: openat+read {dir}/kasane.txt: {}",
        String::from_utf8_lossy(&bytes).trim_end()
    );

    let text = b"written by linux() from kasane\n";
    let path = format!("{dir}/tmp/delegated");
    let out = open(&path, O_WRONLY | O_CREAT | O_TRUNC)?;
    let n = call(
        WRITE,
        &mut [
            Arg::Value(out),
            Arg::In(text),
            Arg::Value(text.len() as u64),
        ],
    )?;
    let back = open(&path, 0)?;
    let again = read(back)?;
    call(CLOSE, &mut [Arg::Value(out)])?;
    call(CLOSE, &mut [Arg::Value(back)])?;
    if n as usize != text.len() || again != text {
        return Err(String::from("linuxcalls: the bytes read back differ"));
    }
    println!("linuxcalls: write+read {path}: {n} bytes, the same");

    let fd = open(if dir.is_empty() { "/" } else { dir }, O_DIRECTORY)?;
    let mut entries = vec![0u8; 4000];
    let n = call(
        GETDENTS64,
        &mut [Arg::Value(fd), Arg::Out(&mut entries), Arg::Value(4000)],
    )? as usize;
    call(CLOSE, &mut [Arg::Value(fd)])?;
    // linux_dirent64: ino[8] off[8] reclen[2] type[1] name (NUL-ended).
    let mut names = Vec::new();
    let mut at = 0;
    while at + 19 <= n {
        let length = u16::from_le_bytes([entries[at + 16], entries[at + 17]]) as usize;
        if length < 19 || at + length > n {
            return Err(String::from("linuxcalls: a bad directory entry"));
        }
        let name = &entries[at + 19..at + length];
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        let name = String::from_utf8_lossy(&name[..end]).into_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
        at += length;
    }
    names.sort();
    println!("linuxcalls: getdents64 {dir}/: {}", names.join(" "));

    let first = call(GETPID, &mut [])?;
    let second = call(GETPID, &mut [])?;
    if first != second {
        return Err(String::from("linuxcalls: getpid named two proxies"));
    }
    println!("linuxcalls: getpid: one proxy for this process");

    match linux(999, &mut []) {
        Err(e) => println!("linuxcalls: call 999 refused: {e}"),
        Ok(result) => return Err(format!("linuxcalls: call 999 ran ({result})")),
    }
    Ok(())
}
