//! The delegated system-call table: which calls run, and their buffers.
//!
//! A Kasane process asks for a Linux system call by number with six
//! argument words. Its pointers mean nothing in Linux, so every pointer
//! argument is described here: an input buffer (copied in from the
//! request), a path (copied in, NUL added) or an output buffer (allocated
//! here, copied back in the reply), with where its length comes from. The
//! proxy replaces each pointer word with the address of its own buffer.
//!
//! Invariants:
//! - A number not in [`TABLE`] is refused and never executed.
//! - Every pointer the kernel sees points into a buffer of [`Call`] at
//!   least as long as the table says the kernel may touch: for `Out`, the
//!   length argument is clamped to [`OUT_LIMIT`] and the buffer is that
//!   long; fixed structures are their x86_64 sizes.
//! - The proxy's own descriptors 0, 1 and 2 (its pipes to the agent) are
//!   refused as descriptor arguments, so a call cannot cut the proxy off.
//!
//! Wire layout of the buffers (`Syscall.input`, `SyscallResult.output`):
//! for each input (resp. output) argument in table order, a `u32` length
//! and that many bytes. An `Out` buffer comes back with as many bytes as
//! the call returned (read, pread64, getdents64, getcwd); a fixed one
//! whole; both empty when the call failed.

/// The most bytes all output buffers of one call may take, so that the
/// reply fits one frame (4096 less the result, the count and the lengths).
pub const OUT_LIMIT: usize = 4000;

/// The longest path a call takes (Linux's PATH_MAX less the NUL).
pub const PATH_LIMIT: usize = 4095;

/// `AT_FDCWD`: "relative to the working directory" for the *at calls.
pub const AT_FDCWD: i64 = -100;

/// What one argument word of a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Argument {
    /// A plain number.
    Value,
    /// A file descriptor (or AT_FDCWD): checked against the proxy's own.
    Descriptor,
    /// Points to bytes read by the kernel; their count is argument `n`.
    In(usize),
    /// Points to a NUL-terminated path read by the kernel.
    Path,
    /// Points to a buffer the kernel fills; its size is argument `n`, and
    /// the call returns how many bytes it filled.
    Out(usize),
    /// Points to a structure of this many bytes that the kernel fills.
    OutFixed(usize),
}

/// One delegated call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub number: u32,
    pub name: &'static str,
    pub arguments: &'static [Argument],
}

use Argument::{Descriptor as Fd, In, Out, OutFixed, Path, Value};

/// `struct stat` on x86_64.
pub const STAT_SIZE: usize = 144;
/// `struct utsname`: six fields of 65 bytes.
pub const UTSNAME_SIZE: usize = 390;
/// `struct timespec` on x86_64.
pub const TIMESPEC_SIZE: usize = 16;

/// Every call the agent delegates, by x86_64 number (the kernel's
/// `arch/x86/entry/syscalls/syscall_64.tbl`).
pub const TABLE: &[Entry] = &[
    Entry {
        number: 0,
        name: "read",
        arguments: &[Fd, Out(2), Value],
    },
    Entry {
        number: 1,
        name: "write",
        arguments: &[Fd, In(2), Value],
    },
    Entry {
        number: 3,
        name: "close",
        arguments: &[Fd],
    },
    Entry {
        number: 5,
        name: "fstat",
        arguments: &[Fd, OutFixed(STAT_SIZE)],
    },
    Entry {
        number: 8,
        name: "lseek",
        arguments: &[Fd, Value, Value],
    },
    Entry {
        number: 17,
        name: "pread64",
        arguments: &[Fd, Out(2), Value, Value],
    },
    Entry {
        number: 18,
        name: "pwrite64",
        arguments: &[Fd, In(2), Value, Value],
    },
    Entry {
        number: 39,
        name: "getpid",
        arguments: &[],
    },
    Entry {
        number: 63,
        name: "uname",
        arguments: &[OutFixed(UTSNAME_SIZE)],
    },
    Entry {
        number: 79,
        name: "getcwd",
        arguments: &[Out(1), Value],
    },
    Entry {
        number: 80,
        name: "chdir",
        arguments: &[Path],
    },
    Entry {
        number: 102,
        name: "getuid",
        arguments: &[],
    },
    Entry {
        number: 104,
        name: "getgid",
        arguments: &[],
    },
    Entry {
        number: 217,
        name: "getdents64",
        arguments: &[Fd, Out(2), Value],
    },
    Entry {
        number: 228,
        name: "clock_gettime",
        arguments: &[Value, OutFixed(TIMESPEC_SIZE)],
    },
    Entry {
        number: 257,
        name: "openat",
        arguments: &[Fd, Path, Value, Value],
    },
    Entry {
        number: 258,
        name: "mkdirat",
        arguments: &[Fd, Path, Value],
    },
    Entry {
        number: 262,
        name: "newfstatat",
        arguments: &[Fd, Path, OutFixed(STAT_SIZE), Value],
    },
    Entry {
        number: 263,
        name: "unlinkat",
        arguments: &[Fd, Path, Value],
    },
];

/// The table entry for `number`.
pub fn entry(number: u32) -> Option<&'static Entry> {
    TABLE.iter().find(|entry| entry.number == number)
}

/// Why a call was not run. The text is for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not in the table: never executed.
    NotDelegated(u32),
    /// The input buffers do not match the table.
    BadInput(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotDelegated(number) => write!(
                f,
                "linux system call {number} is not delegated (see docs/linux-bridge.md)"
            ),
            Refusal::BadInput(why) => f.write_str(why),
        }
    }
}

/// A call ready to run: its arguments and the buffers its pointers name.
#[derive(Debug)]
pub struct Call {
    pub entry: &'static Entry,
    arguments: [u64; 6],
    /// One buffer per pointer argument, in argument order.
    buffers: Vec<(usize, Vec<u8>)>,
}

fn bad(why: String) -> Refusal {
    Refusal::BadInput(why)
}

impl Call {
    /// Checks a request against the table and copies its input in.
    pub fn prepare(number: u32, arguments: [u64; 6], input: &[u8]) -> Result<Call, Refusal> {
        let entry = entry(number).ok_or(Refusal::NotDelegated(number))?;
        let mut arguments = arguments;
        let mut rest = input;
        let mut take = |index: usize| -> Result<&[u8], Refusal> {
            let length = rest
                .get(..4)
                .map(|bytes| u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
                .ok_or_else(|| {
                    bad(format!(
                        "{}: input for argument {index} missing",
                        entry.name
                    ))
                })?;
            let length = length as usize;
            let bytes = rest.get(4..4 + length).ok_or_else(|| {
                bad(format!(
                    "{}: input for argument {index} is cut short",
                    entry.name
                ))
            })?;
            rest = &rest[4 + length..];
            Ok(bytes)
        };
        let mut buffers = Vec::new();
        let mut out_total = 0usize;
        for (index, argument) in entry.arguments.iter().enumerate() {
            match *argument {
                Argument::Value => {}
                Argument::Descriptor => {
                    // Descriptors are C ints; the high half is ignored by
                    // the kernel, so judge the low half as it will.
                    let fd = i64::from(arguments[index] as u32 as i32);
                    if (0..=2).contains(&fd) {
                        return Err(bad(format!(
                            "{}: descriptor {fd} belongs to the proxy",
                            entry.name
                        )));
                    }
                }
                Argument::In(length_index) => {
                    let bytes = take(index)?;
                    if arguments[length_index] != bytes.len() as u64 {
                        return Err(bad(format!(
                            "{}: argument {length_index} says {} bytes but {} came",
                            entry.name,
                            arguments[length_index],
                            bytes.len()
                        )));
                    }
                    buffers.push((index, bytes.to_vec()));
                }
                Argument::Path => {
                    let bytes = take(index)?;
                    if bytes.len() > PATH_LIMIT || bytes.contains(&0) {
                        return Err(bad(format!(
                            "{}: a path must be at most {PATH_LIMIT} bytes without NUL",
                            entry.name
                        )));
                    }
                    let mut path = bytes.to_vec();
                    path.push(0);
                    buffers.push((index, path));
                }
                Argument::Out(length_index) => {
                    let room = OUT_LIMIT - out_total;
                    let wanted = arguments[length_index].min(room as u64) as usize;
                    arguments[length_index] = wanted as u64;
                    out_total += wanted;
                    buffers.push((index, vec![0; wanted]));
                }
                Argument::OutFixed(size) => {
                    out_total += size;
                    buffers.push((index, vec![0; size]));
                }
            }
        }
        if !rest.is_empty() {
            return Err(bad(format!(
                "{}: {} input bytes left over",
                entry.name,
                rest.len()
            )));
        }
        // Words past the call's arguments are passed as zero.
        for word in arguments.iter_mut().skip(entry.arguments.len()) {
            *word = 0;
        }
        Ok(Call {
            entry,
            arguments,
            buffers,
        })
    }

    /// The six words to hand the kernel: each pointer argument replaced by
    /// the address of its buffer. The addresses stay valid while `self`
    /// lives and is not changed.
    pub fn words(&mut self) -> [u64; 6] {
        let mut words = self.arguments;
        for (index, buffer) in &mut self.buffers {
            words[*index] = buffer.as_mut_ptr() as u64;
        }
        words
    }

    /// The reply's output bytes for the kernel's `result`.
    pub fn output(&self, result: i64) -> Vec<u8> {
        let mut output = Vec::new();
        for (index, buffer) in &self.buffers {
            let filled = match self.entry.arguments[*index] {
                Argument::Out(_) if result >= 0 => {
                    (result as u64).min(buffer.len() as u64) as usize
                }
                Argument::OutFixed(_) if result >= 0 => buffer.len(),
                Argument::Out(_) | Argument::OutFixed(_) => 0,
                _ => continue,
            };
            output.extend_from_slice(&(filled as u32).to_le_bytes());
            output.extend_from_slice(&buffer[..filled]);
        }
        output
    }
}

/// Splits a `u32`-length-prefixed buffer list (either direction).
pub fn split_buffers(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut buffers = Vec::new();
    while !bytes.is_empty() {
        let length = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        buffers.push(bytes.get(4..4 + length)?);
        bytes = &bytes[4 + length..];
    }
    Some(buffers)
}

/// Builds a buffer list, the inverse of [`split_buffers`].
pub fn join_buffers(buffers: &[&[u8]]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for buffer in buffers {
        bytes.extend_from_slice(&(buffer.len() as u32).to_le_bytes());
        bytes.extend_from_slice(buffer);
    }
    bytes
}
