//! The system calls: each one IPC `call` to core (`core_abi::Call`).
//!
//! Strings go as string items; the reply's bytes land in receive buffer 0.
//! Before a call every page of an outgoing string is read and every page of
//! the receive buffer written, because the kernel's string copy does not
//! fault pages in (ABI §6.2): an untouched heap or stack page would make
//! the IPC fail with `StringFault` instead.
//!
//! Errors are Plan 9 strings: after a failed reply the library asks core
//! for the text with `Errstr`.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use core_abi::{Call, FileInfo, SpawnRequest, MAX_ERROR, MAX_IO, STATUS_OK};
use microkernel_abi::utcb::ReceiveBuffer;
use microkernel_abi::{MessageTag, StringItem, TypedItem, Utcb};

use microkernel_rt::utcb::ReceiveTargets;

#[cfg(target_os = "none")]
use crate::rt::core_thread;

/// A file descriptor.
pub type Fd = u32;

/// What a system call returns.
pub type Result<T> = core::result::Result<T, String>;

const PAGE: usize = 4096;

fn touch_for_reading(bytes: &[u8]) {
    let mut offset = 0;
    while offset < bytes.len() {
        // SAFETY: in bounds of the slice; a volatile read only makes the
        // page present.
        let _ = unsafe { core::ptr::read_volatile(bytes.as_ptr().add(offset)) };
        offset += PAGE - (bytes.as_ptr() as usize + offset) % PAGE;
    }
}

fn touch_for_writing(bytes: &mut [u8]) {
    let mut offset = 0;
    while offset < bytes.len() {
        let pointer = bytes.as_mut_ptr().wrapping_add(offset);
        // SAFETY: in bounds of the exclusively borrowed slice; writing back
        // the byte that was there makes the page present and writable.
        unsafe { pointer.write_volatile(pointer.read_volatile()) };
        offset += PAGE - (pointer as usize) % PAGE;
    }
}

/// The calling thread's UTCB. Programs are single-threaded and reach it
/// only in [`raw_call`], one call at a time, so this is the only reference.
#[cfg(target_os = "none")]
fn own_utcb() -> Result<&'static mut Utcb> {
    // SAFETY: see above: no other reference to the UTCB exists.
    Ok(unsafe { &mut *microkernel_rt::user::current_utcb() })
}

/// The `call` IPC to core with the message set up in `utcb`.
#[cfg(target_os = "none")]
fn call_core(utcb: &mut Utcb) -> Result<()> {
    use microkernel_abi::{FromSpecifier, Timeouts};
    let core = core_thread();
    // SAFETY: `utcb` is this thread's; `raw_call`, the only caller, sets
    // string items over bytes it borrows across the call and at most
    // receive buffer 0 over a buffer it borrows exclusively.
    let result = unsafe {
        microkernel_rt::user::ipc_with_items(
            utcb,
            core,
            FromSpecifier::Thread(core),
            Timeouts::NEVER,
        )
    };
    result
        .map(|_| ())
        .map_err(|error| alloc::format!("ipc to core failed: {error:?}"))
}

/// On the host there is no core: the library builds (so the programs'
/// code is type-checked and linted there too) but every call fails.
#[cfg(not(target_os = "none"))]
fn own_utcb() -> Result<&'static mut Utcb> {
    Err("no core to call on the host".to_string())
}

#[cfg(not(target_os = "none"))]
fn call_core(_utcb: &mut Utcb) -> Result<()> {
    Err("no core to call on the host".to_string())
}

struct Reply {
    words: [u64; 2],
    received: usize,
}

/// One call: `words` in MR1.., `items` as string items, the reply's bytes
/// into `receive`. Fails with the error string core recorded.
fn call(which: Call, words: &[u64], items: &[&[u8]], receive: Option<&mut [u8]>) -> Result<Reply> {
    let reply = raw_call(which, words, items, receive)?;
    if reply.0 == STATUS_OK {
        return Ok(reply.1);
    }
    Err(errstr())
}

fn raw_call(
    which: Call,
    words: &[u64],
    items: &[&[u8]],
    receive: Option<&mut [u8]>,
) -> Result<(u64, Reply)> {
    for item in items {
        touch_for_reading(item);
    }
    let utcb = own_utcb()?;
    // No receive target is set between calls (the UTCB starts zeroed and
    // every call takes back the one it set), so none is cleared here: core
    // sends a string item only into the buffer a call gives.
    let receives = receive.is_some();
    if let Some(buffer) = receive {
        touch_for_writing(buffer);
        // SAFETY: the buffer is exclusively borrowed for the whole call and
        // the slot is cleared before this function returns, so the kernel
        // writes it only during this IPC.
        unsafe {
            utcb.set_receive_buffer(
                0,
                ReceiveBuffer {
                    address: buffer.as_mut_ptr() as u64,
                    length: buffer.len() as u64,
                },
            )
        };
    }
    let tag = MessageTag::new(which.label(), words.len(), 2 * items.len())
        .map_err(|_| "too many arguments".to_string())?;
    utcb.message_registers[0] = tag.raw();
    utcb.message_registers[1..=words.len()].copy_from_slice(words);
    for (index, item) in items.iter().enumerate() {
        let encoded = TypedItem::String(StringItem {
            address: item.as_ptr() as u64,
            length: item.len() as u64,
        })
        .encode();
        let at = 1 + words.len() + 2 * index;
        utcb.message_registers[at..at + 2].copy_from_slice(&encoded);
    }
    // The UTCB is this thread's; the items are string items over borrowed
    // bytes that stay valid during the call; the only receive target is
    // the buffer above; no receive window is set.
    let result = call_core(utcb);
    if receives {
        // Only slot 0 was set.
        // SAFETY: an empty buffer lets the kernel write nothing.
        unsafe { utcb.set_receive_buffer(0, ReceiveBuffer::default()) };
    }
    result?;
    let tag = MessageTag::from_raw(utcb.message_registers[0]);
    let untyped = tag.untyped();
    let word = |n: usize| {
        if n <= untyped {
            utcb.message_registers[n]
        } else {
            0
        }
    };
    let mut received = 0;
    if tag.typed() >= 2 {
        let at = 1 + untyped;
        let pair = [utcb.message_registers[at], utcb.message_registers[at + 1]];
        if let Ok(TypedItem::String(item)) = TypedItem::decode(pair) {
            received = item.length as usize;
        }
    }
    Ok((
        word(1),
        Reply {
            words: [word(2), word(3)],
            received,
        },
    ))
}

/// rfork(2) without RFPROC: `flags` of `core_abi::RFNAMEG`, `RFCNAMEG`,
/// `RFENVG`, `RFCENVG` change this process's namespace or environment.
pub fn rfork(flags: u64) -> Result<()> {
    call(Call::Rfork, &[flags], &[], None).map(|_| ())
}

/// Renames `path` to `name` in its directory (wstat(2) of the name only).
pub fn rename(path: &str, name: &str) -> Result<()> {
    call(Call::Wstat, &[], &[path.as_bytes(), name.as_bytes()], None).map(|_| ())
}

/// The last error of this process (errstr(2)).
pub fn errstr() -> String {
    let mut buffer = vec![0u8; MAX_ERROR];
    match raw_call(Call::Errstr, &[], &[], Some(&mut buffer)) {
        Ok((_, reply)) => {
            buffer.truncate(reply.received.min(MAX_ERROR));
            String::from_utf8(buffer).unwrap_or_else(|_| "bad error string".to_string())
        }
        Err(error) => error,
    }
}

/// open(2).
pub fn open(path: &str, mode: u64) -> Result<Fd> {
    let reply = call(Call::Open, &[mode], &[path.as_bytes()], None)?;
    Ok(reply.words[0] as Fd)
}

/// create(2): `perm` with `core_abi::DMDIR` makes a directory.
pub fn create(path: &str, mode: u64, perm: u64) -> Result<Fd> {
    let reply = call(Call::Create, &[mode, perm], &[path.as_bytes()], None)?;
    Ok(reply.words[0] as Fd)
}

/// read(2): at most `buffer.len()` bytes (and at most `MAX_IO`); 0 at end.
pub fn read(fd: Fd, buffer: &mut [u8]) -> Result<usize> {
    read_call(Call::Read, fd, buffer, 0)
}

/// pread(2).
pub fn pread(fd: Fd, buffer: &mut [u8], offset: u64) -> Result<usize> {
    read_call(Call::Pread, fd, buffer, offset)
}

/// A read or pread: the words are the descriptor, the count, the offset
/// and the buffer's address. Core either sends the bytes as a string item
/// into the buffer or has a file server's answer put them there directly
/// (the zero-copy read, docs/performance.md); either way the count comes
/// back in the reply's first word.
fn read_call(which: Call, fd: Fd, buffer: &mut [u8], offset: u64) -> Result<usize> {
    let count = buffer.len().min(MAX_IO);
    let address = buffer.as_ptr() as u64;
    let words = [u64::from(fd), count as u64, offset, address];
    let reply = call(which, &words, &[], Some(&mut buffer[..count]))?;
    Ok((reply.words[0] as usize).min(count))
}

/// write(2) of all of `data` (in pieces of at most `MAX_IO`).
pub fn write(fd: Fd, data: &[u8]) -> Result<usize> {
    let mut done = 0;
    while done < data.len() || data.is_empty() {
        let piece = &data[done..(done + MAX_IO).min(data.len())];
        let items: &[&[u8]] = if piece.is_empty() { &[] } else { &[piece] };
        let reply = call(Call::Write, &[u64::from(fd)], items, None)?;
        if data.is_empty() {
            break;
        }
        if reply.words[0] == 0 {
            return Err("write made no progress".to_string());
        }
        done += reply.words[0] as usize;
    }
    Ok(done)
}

/// Copies fd `from` to fd `to` until `from` reaches its end, in reads of
/// 4 KB (what cat, cp, dial and lx do).
pub fn copy(from: Fd, to: Fd) -> Result<()> {
    let mut buffer = vec![0u8; 4096];
    loop {
        let n = read(from, &mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        write(to, &buffer[..n])?;
    }
}

/// pwrite(2) of one piece of at most `MAX_IO` bytes.
pub fn pwrite(fd: Fd, data: &[u8], offset: u64) -> Result<usize> {
    let piece = &data[..data.len().min(MAX_IO)];
    let reply = call(Call::Pwrite, &[u64::from(fd), offset], &[piece], None)?;
    Ok(reply.words[0] as usize)
}

/// seek(2).
pub fn seek(fd: Fd, offset: i64, whence: u64) -> Result<u64> {
    let reply = call(
        Call::Seek,
        &[u64::from(fd), offset as u64, whence],
        &[],
        None,
    )?;
    Ok(reply.words[0])
}

/// close(2).
pub fn close(fd: Fd) -> Result<()> {
    call(Call::Close, &[u64::from(fd)], &[], None).map(|_| ())
}

fn file_info(which: Call, words: &[u64], items: &[&[u8]]) -> Result<FileInfo> {
    let mut buffer = vec![0u8; 1024];
    let reply = call(which, words, items, Some(&mut buffer))?;
    let mut bytes = &buffer[..reply.received.min(buffer.len())];
    FileInfo::decode_from(&mut bytes).ok_or_else(|| "bad stat reply".to_string())
}

/// stat(2).
pub fn stat(path: &str) -> Result<FileInfo> {
    file_info(Call::Stat, &[], &[path.as_bytes()])
}

/// fstat(2).
pub fn fstat(fd: Fd) -> Result<FileInfo> {
    file_info(Call::Fstat, &[u64::from(fd)], &[])
}

/// Reads a directory: every entry (directory reads carry `FileInfo`s).
pub fn read_dir(path: &str) -> Result<Vec<FileInfo>> {
    let fd = open(path, core_abi::OREAD)?;
    let mut bytes = Vec::new();
    let mut buffer = vec![0u8; MAX_IO];
    loop {
        match read(fd, &mut buffer) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(error) => {
                let _ = close(fd);
                return Err(error);
            }
        }
    }
    let _ = close(fd);
    let mut rest = bytes.as_slice();
    let mut entries = Vec::new();
    while !rest.is_empty() {
        entries.push(FileInfo::decode_from(&mut rest).ok_or("bad directory entry")?);
    }
    Ok(entries)
}

/// remove(2).
pub fn remove(path: &str) -> Result<()> {
    call(Call::Remove, &[], &[path.as_bytes()], None).map(|_| ())
}

/// chdir(2).
pub fn chdir(path: &str) -> Result<()> {
    call(Call::Chdir, &[], &[path.as_bytes()], None).map(|_| ())
}

/// bind(2) with Plan 9's flag values.
pub fn bind(new: &str, old: &str, flags: u32) -> Result<()> {
    call(
        Call::Bind,
        &[u64::from(flags)],
        &[new.as_bytes(), old.as_bytes()],
        None,
    )
    .map(|_| ())
}

/// mount(2).
pub fn mount(fd: Fd, old: &str, spec: &str, flags: u32) -> Result<()> {
    call(
        Call::Mount,
        &[u64::from(fd), u64::from(flags)],
        &[old.as_bytes(), spec.as_bytes()],
        None,
    )
    .map(|_| ())
}

/// unmount(2).
pub fn unmount(new: Option<&str>, old: &str) -> Result<()> {
    match new {
        Some(new) => call(Call::Unmount, &[1], &[new.as_bytes(), old.as_bytes()], None),
        None => call(Call::Unmount, &[0], &[old.as_bytes()], None),
    }
    .map(|_| ())
}

/// pipe(2): (read end, write end); both ends can in fact do both.
pub fn pipe() -> Result<(Fd, Fd)> {
    let reply = call(Call::Pipe, &[], &[], None)?;
    Ok((reply.words[0] as Fd, reply.words[1] as Fd))
}

/// dup(2); `None` takes the lowest free descriptor.
pub fn dup(old: Fd, new: Option<Fd>) -> Result<Fd> {
    let new = new.map_or(u64::MAX, u64::from);
    let reply = call(Call::Dup, &[u64::from(old), new], &[], None)?;
    Ok(reply.words[0] as Fd)
}

/// Starts a program (rfork + exec in one): returns its pid.
pub fn spawn(request: &SpawnRequest) -> Result<u64> {
    let block = core_abi::encode_spawn(request);
    let reply = call(Call::Spawn, &[], &[&block], None)?;
    Ok(reply.words[0])
}

/// exits(2): ends the process with `status` (empty for success).
pub fn exits(status: &str) -> ! {
    let status = &status.as_bytes()[..status.len().min(MAX_ERROR)];
    let items: &[&[u8]] = if status.is_empty() { &[] } else { &[status] };
    let _ = raw_call(Call::Exits, &[], items, None);
    // Core destroys the task instead of answering; never go on.
    #[cfg(target_os = "none")]
    loop {
        microkernel_rt::user::yield_now();
    }
    #[cfg(not(target_os = "none"))]
    panic!("exits({status:?}) on the host, where there is no core")
}

/// wait(2) for `pid` (0: any child): (pid, exit string).
pub fn wait(pid: u64) -> Result<(u64, String)> {
    let mut buffer = vec![0u8; MAX_ERROR];
    let reply = call(Call::Wait, &[pid], &[], Some(&mut buffer))?;
    buffer.truncate(reply.received.min(MAX_ERROR));
    Ok((
        reply.words[0],
        String::from_utf8_lossy(&buffer).into_owned(),
    ))
}

/// sleep(2).
pub fn sleep(milliseconds: u64) -> Result<()> {
    call(Call::Sleep, &[milliseconds], &[], None).map(|_| ())
}

/// getpid(2), asked of core.
pub fn getpid() -> Result<u64> {
    Ok(call(Call::Getpid, &[], &[], None)?.words[0])
}

/// Reads a whole file.
pub fn read_file(path: &str) -> Result<Vec<u8>> {
    let fd = open(path, core_abi::OREAD)?;
    let mut out = Vec::new();
    let mut buffer = vec![0u8; MAX_IO];
    let result = loop {
        match read(fd, &mut buffer) {
            Ok(0) => break Ok(out),
            Ok(n) => out.extend_from_slice(&buffer[..n]),
            Err(error) => break Err(error),
        }
    };
    let _ = close(fd);
    result
}
