//! `linux(nr, args…)`: a Linux system call, delegated to the Linux cell.
//!
//! McKernel's proxy model (docs/linux-bridge.md, "System-call
//! delegation"): the call goes to core through `/dev/linux/syscall`, core
//! sends it on the Linux link, and the agent runs it in this process's
//! proxy, which keeps Linux descriptors, the working directory and the
//! credentials from one call to the next and ends when this process
//! exits. The caller says what each argument is ([`Arg`]); pointer
//! arguments travel as their contents (the agent's table checks them
//! against the call: an input's length must equal its length argument),
//! and the agent's own buffers stand in for the pointers. An unknown or
//! unsafe call number is refused by the agent, never run.
//!
//! ```ignore
//! let mut name = [0u8; 390];
//! linux(63, &mut [Arg::Out(&mut name)])?; // uname
//! let fd = linux(257, &mut [Arg::Value(AT_FDCWD), Arg::Path("/etc/passwd"), Arg::Value(0), Arg::Value(0)])?;
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::sys;

/// `AT_FDCWD` as an argument word.
pub const AT_FDCWD: u64 = -100i64 as u64;

/// One argument of a delegated call.
#[derive(Debug)]
pub enum Arg<'a> {
    /// A value or a descriptor, passed as is.
    Value(u64),
    /// An input buffer (its length is another argument).
    In(&'a [u8]),
    /// A path, without its NUL.
    Path(&'a str),
    /// An output buffer or structure: the agent's bytes are copied in.
    Out(&'a mut [u8]),
}

/// This process's open `/dev/linux/syscall` (`u32::MAX`: not yet).
static SYSCALL_FD: AtomicU32 = AtomicU32::new(u32::MAX);

fn syscall_fd() -> sys::Result<sys::Fd> {
    let fd = SYSCALL_FD.load(Ordering::Relaxed);
    if fd != u32::MAX {
        return Ok(fd);
    }
    let fd = sys::open("/dev/linux/syscall", core_abi::ORDWR)?;
    SYSCALL_FD.store(fd, Ordering::Relaxed);
    Ok(fd)
}

/// The request `/dev/linux/syscall` takes: number, six words, inputs.
fn request(number: u32, args: &[Arg<'_>]) -> sys::Result<Vec<u8>> {
    if args.len() > 6 {
        return Err(String::from(
            "a linux system call has at most six arguments",
        ));
    }
    let mut out = number.to_le_bytes().to_vec();
    for index in 0..6 {
        let word = match args.get(index) {
            Some(Arg::Value(value)) => *value,
            _ => 0,
        };
        out.extend_from_slice(&word.to_le_bytes());
    }
    for arg in args {
        let bytes = match arg {
            Arg::In(bytes) => *bytes,
            Arg::Path(path) => path.as_bytes(),
            _ => continue,
        };
        let length = u32::try_from(bytes.len()).map_err(|_| String::from("too long"))?;
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

/// Copies the answer's output bytes into the `Out` arguments; the result.
fn answer(reply: &[u8], args: &mut [Arg<'_>]) -> sys::Result<i64> {
    let bad = || String::from("a bad answer to a linux system call");
    let (result, mut rest) = reply.split_first_chunk::<8>().ok_or_else(bad)?;
    for arg in args.iter_mut() {
        let Arg::Out(buffer) = arg else {
            continue;
        };
        let (length, tail) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let length = u32::from_le_bytes(*length) as usize;
        let bytes = tail.get(..length).ok_or_else(bad)?;
        let n = length.min(buffer.len());
        buffer[..n].copy_from_slice(&bytes[..n]);
        rest = &tail[length..];
    }
    Ok(i64::from_le_bytes(*result))
}

/// Runs Linux system call `number` with `args` in this process's proxy;
/// the kernel's result (negative: `-errno`). An `Err` is a refusal (the
/// call is not delegated, or its buffers do not fit its table), `no linux
/// cell`, or `linux cell restarted`.
pub fn linux(number: u32, args: &mut [Arg<'_>]) -> sys::Result<i64> {
    let fd = syscall_fd()?;
    sys::write(fd, &request(number, args)?)?;
    // The result alone, or room for what output arguments may bring: a
    // call without them (getpid) clears 8 bytes, not MAX_IO.
    let outputs = args.iter().any(|arg| matches!(arg, Arg::Out(_)));
    let size = if outputs { core_abi::MAX_IO } else { 8 };
    let mut reply = alloc::vec![0u8; size];
    let n = sys::read(fd, &mut reply)?;
    answer(&reply[..n], args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_values_and_inputs_and_answers_fill_outputs() {
        let bytes = request(1, &[Arg::Value(5), Arg::In(b"hi"), Arg::Value(2)]).unwrap();
        assert_eq!(&bytes[..4], &1u32.to_le_bytes());
        assert_eq!(&bytes[4..12], &5u64.to_le_bytes());
        assert_eq!(&bytes[12..20], &0u64.to_le_bytes());
        assert_eq!(&bytes[20..28], &2u64.to_le_bytes());
        assert_eq!(&bytes[52..], &[2, 0, 0, 0, b'h', b'i']);
        let mut out = [0u8; 4];
        let mut reply = 3i64.to_le_bytes().to_vec();
        reply.extend_from_slice(&[3, 0, 0, 0, b'a', b'b', b'c']);
        let mut args = [Arg::Value(0), Arg::Out(&mut out), Arg::Value(4)];
        assert_eq!(answer(&reply, &mut args).unwrap(), 3);
        assert_eq!(&out, b"abc\0");
        assert!(answer(&reply[..9], &mut [Arg::Out(&mut [0u8; 4])]).is_err());
    }
}
