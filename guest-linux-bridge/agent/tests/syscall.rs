//! The delegated call table, as logic and as real calls through a proxy.
//!
//! The first half checks `syscall::Call` alone: each entry's marshalling,
//! every refusal, and random numbers and blobs that must never panic. The
//! second half starts real proxies (the `kasane-agent` binary) through
//! `dispatch::Services` and runs every call in the table against a temp
//! directory, checking that state persists per Kasane process.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use bridge_agent::dispatch::Services;
use bridge_agent::syscall::{
    entry, join_buffers, split_buffers, Argument, Call, Refusal, AT_FDCWD, OUT_LIMIT, STAT_SIZE,
    TABLE, TIMESPEC_SIZE, UTSNAME_SIZE,
};
use bridge_protocol::{ErrorCode, Frame, Message};
use common::{outbox, Got, Inbox};

/// Input that fits `number`'s table entry, with `fill` bytes per buffer.
fn fitting_input(number: u32, arguments: &mut [u64; 6], fill: usize) -> Vec<u8> {
    let entry = entry(number).unwrap();
    let mut buffers: Vec<Vec<u8>> = Vec::new();
    for (index, argument) in entry.arguments.iter().enumerate() {
        match *argument {
            Argument::In(length) => {
                arguments[length] = fill as u64;
                buffers.push(vec![b'x'; fill]);
            }
            Argument::Path => buffers.push(b"/tmp".to_vec()),
            Argument::Descriptor => arguments[index] = 3,
            _ => {}
        }
    }
    let views: Vec<&[u8]> = buffers.iter().map(Vec::as_slice).collect();
    join_buffers(&views)
}

#[test]
fn every_entry_marshals_its_buffers() {
    for table_entry in TABLE {
        let mut arguments = [0u64; 6];
        let input = fitting_input(table_entry.number, &mut arguments, 10);
        for argument in table_entry.arguments {
            if let Argument::Out(length) = *argument {
                arguments[length] = 100;
            }
        }
        let mut call = Call::prepare(table_entry.number, arguments, &input)
            .unwrap_or_else(|refusal| panic!("{}: {refusal}", table_entry.name));
        let words = call.words();
        let mut outputs = Vec::new();
        for (index, argument) in table_entry.arguments.iter().enumerate() {
            match *argument {
                Argument::In(_) | Argument::Path | Argument::Out(_) | Argument::OutFixed(_) => {
                    assert_ne!(words[index], 0, "{} argument {index}", table_entry.name)
                }
                _ => {}
            }
            match *argument {
                Argument::Out(_) => outputs.push(7usize),
                Argument::OutFixed(size) => outputs.push(size),
                _ => {}
            }
        }
        for word in &words[table_entry.arguments.len()..] {
            assert_eq!(*word, 0, "{}: unused words are zero", table_entry.name);
        }
        // A result of 7: Out buffers carry 7 bytes, fixed ones all theirs.
        let output = call.output(7);
        let buffers = split_buffers(&output).unwrap();
        let lengths: Vec<usize> = buffers.iter().map(|buffer| buffer.len()).collect();
        assert_eq!(lengths, outputs, "{}", table_entry.name);
        // A failure carries empty buffers.
        let failed_output = call.output(-2);
        let failed = split_buffers(&failed_output).unwrap();
        assert!(failed.iter().all(|buffer| buffer.is_empty()));
    }
}

#[test]
fn the_table_has_the_calls_the_issue_names() {
    for name in [
        "getpid",
        "uname",
        "openat",
        "read",
        "write",
        "pread64",
        "close",
        "lseek",
        "fstat",
        "newfstatat",
        "getdents64",
        "mkdirat",
        "unlinkat",
        "clock_gettime",
    ] {
        assert!(TABLE.iter().any(|entry| entry.name == name), "{name}");
    }
    assert_eq!(STAT_SIZE, std::mem::size_of::<libc::stat>());
    assert_eq!(UTSNAME_SIZE, std::mem::size_of::<libc::utsname>());
    assert_eq!(TIMESPEC_SIZE, std::mem::size_of::<libc::timespec>());
    for entry in TABLE {
        assert_eq!(
            entry.number,
            match entry.name {
                "read" => libc::SYS_read,
                "write" => libc::SYS_write,
                "close" => libc::SYS_close,
                "fstat" => libc::SYS_fstat,
                "lseek" => libc::SYS_lseek,
                "pread64" => libc::SYS_pread64,
                "pwrite64" => libc::SYS_pwrite64,
                "getpid" => libc::SYS_getpid,
                "uname" => libc::SYS_uname,
                "getcwd" => libc::SYS_getcwd,
                "chdir" => libc::SYS_chdir,
                "getuid" => libc::SYS_getuid,
                "getgid" => libc::SYS_getgid,
                "getdents64" => libc::SYS_getdents64,
                "clock_gettime" => libc::SYS_clock_gettime,
                "openat" => libc::SYS_openat,
                "mkdirat" => libc::SYS_mkdirat,
                "newfstatat" => libc::SYS_newfstatat,
                "unlinkat" => libc::SYS_unlinkat,
                other => panic!("{other} has no check"),
            } as u32
        );
    }
}

#[test]
fn refusals_say_why() {
    // fork, execve, mmap, kill: not in the table, never run.
    for number in [57, 59, 9, 62, 9999, u32::MAX] {
        let refusal = Call::prepare(number, [0; 6], &[]).unwrap_err();
        assert_eq!(refusal, Refusal::NotDelegated(number));
        assert!(refusal.to_string().contains("not delegated"));
    }
    // The proxy's own descriptors.
    for fd in [0u64, 1, 2, 0xFFFF_FFFF_0000_0001] {
        let refusal = Call::prepare(3, [fd, 0, 0, 0, 0, 0], &[]).unwrap_err();
        assert!(
            refusal.to_string().contains("belongs to the proxy"),
            "{refusal}"
        );
    }
    // A write whose count disagrees with its buffer.
    let input = join_buffers(&[b"abc"]);
    let refusal = Call::prepare(1, [5, 0, 4, 0, 0, 0], &input).unwrap_err();
    assert!(
        refusal.to_string().contains("says 4 bytes but 3 came"),
        "{refusal}"
    );
    // Missing, short and left-over input.
    assert!(Call::prepare(1, [5, 0, 0, 0, 0, 0], &[]).is_err());
    assert!(Call::prepare(1, [5, 0, 9, 0, 0, 0], &[9, 0, 0, 0, 1]).is_err());
    let extra = join_buffers(&[b"", b"more"]);
    assert!(Call::prepare(1, [5, 0, 0, 0, 0, 0], &extra).is_err());
    // A path with a NUL inside.
    let input = join_buffers(&[b"/tmp\0/etc"]);
    let refusal = Call::prepare(257, [AT_FDCWD as u64, 0, 0, 0, 0, 0], &input).unwrap_err();
    assert!(refusal.to_string().contains("without NUL"));
}

#[test]
fn output_buffers_are_clamped_to_what_a_frame_holds() {
    let mut call = Call::prepare(0, [3, 0, u64::MAX, 0, 0, 0], &[]).unwrap();
    let words = call.words();
    assert_eq!(words[2], OUT_LIMIT as u64);
    let output = call.output(i64::MAX);
    assert_eq!(split_buffers(&output).unwrap()[0].len(), OUT_LIMIT);
    assert!(output.len() <= bridge_protocol::MAX_PAYLOAD_LEN - 10);
}

#[test]
fn random_numbers_and_blobs_never_panic() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..20_000 {
        let number = if round % 2 == 0 {
            (next() % 300) as u32
        } else {
            TABLE[(next() % TABLE.len() as u64) as usize].number
        };
        let mut arguments = [0u64; 6];
        for word in &mut arguments {
            *word = match next() % 4 {
                0 => next() % 16,
                1 => u64::MAX - next() % 4,
                _ => next(),
            };
        }
        let blob: Vec<u8> = if round % 3 == 0 && entry(number).is_some() {
            fitting_input(number, &mut arguments, (next() % 40) as usize)
        } else {
            (0..next() % 64).map(|_| next() as u8).collect()
        };
        if let Ok(mut call) = Call::prepare(number, arguments, &blob) {
            let _ = call.words();
            let result = next() as i64;
            let output = call.output(result);
            assert!(split_buffers(&output).is_some());
            assert!(output.len() <= OUT_LIMIT + 4 * 6);
        }
        let _ = split_buffers(&blob);
    }
}

struct Fixture {
    services: Services,
    inbox: Inbox,
    next_id: u32,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.services.reset();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn path_bytes(path: &Path) -> Vec<u8> {
    path.to_str().unwrap().as_bytes().to_vec()
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("kasane-sys-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let (outbox, inbox) = outbox();
        let program = PathBuf::from(env!("CARGO_BIN_EXE_kasane-agent"));
        Fixture {
            services: Services::new(&dir, program, outbox),
            inbox,
            next_id: 100,
            dir,
        }
    }

    fn send(&mut self, message: Message<'_>) -> (u32, Got) {
        self.next_id += 1;
        let frame = Frame {
            request_id: self.next_id,
            message,
        };
        self.services.handle(&frame).unwrap();
        let (id, got) = self.inbox.next();
        assert_eq!(id, self.next_id, "{got:?}");
        (id, got)
    }

    /// Runs a call for `process`: the result and the output buffers.
    fn call(
        &mut self,
        process: u64,
        number: u32,
        arguments: [u64; 6],
        inputs: &[&[u8]],
    ) -> (i64, Vec<Vec<u8>>) {
        let input = join_buffers(inputs);
        let (_, got) = self.send(Message::Syscall {
            process,
            number,
            arguments,
            input: &input,
        });
        let Got::Result(result, output) = got else {
            panic!("call {number}: {got:?}")
        };
        let buffers = split_buffers(&output).unwrap();
        (result, buffers.into_iter().map(<[u8]>::to_vec).collect())
    }
}

const CWD: u64 = AT_FDCWD as u64;

#[test]
fn every_call_runs_in_a_proxy_that_keeps_its_state() {
    let mut fixture = Fixture::new("calls");
    let dir = fixture.dir.clone();
    // getpid: a proxy of its own, the same one on the next call.
    let (pid, _) = fixture.call(1, 39, [0; 6], &[]);
    assert!(pid > 1);
    assert_ne!(pid, i64::from(std::process::id()));
    assert_eq!(fixture.call(1, 39, [0; 6], &[]).0, pid);
    let (other, _) = fixture.call(2, 39, [0; 6], &[]);
    assert_ne!(other, pid);
    // uname
    let (result, out) = fixture.call(1, 63, [0; 6], &[]);
    assert_eq!(result, 0);
    assert_eq!(out[0].len(), UTSNAME_SIZE);
    assert!(out[0].starts_with(b"Linux\0"));
    // clock_gettime(CLOCK_MONOTONIC)
    let (result, out) = fixture.call(1, 228, [1, 0, 0, 0, 0, 0], &[]);
    assert_eq!(result, 0);
    assert_eq!(out[0].len(), TIMESPEC_SIZE);
    // mkdirat, openat(O_CREAT|O_RDWR), write, lseek, read, pread64
    let sub = dir.join("sub");
    let (result, _) = fixture.call(1, 258, [CWD, 0, 0o755, 0, 0, 0], &[&path_bytes(&sub)]);
    assert_eq!(result, 0);
    assert!(sub.is_dir());
    let file = sub.join("file");
    let flags = (libc::O_CREAT | libc::O_RDWR) as u64;
    let (fd, _) = fixture.call(1, 257, [CWD, 0, flags, 0o644, 0, 0], &[&path_bytes(&file)]);
    assert!(fd >= 3, "openat gave {fd}");
    let fd = fd as u64;
    let text = b"hello delegation";
    let (written, _) = fixture.call(1, 1, [fd, 0, 16, 0, 0, 0], &[text]);
    assert_eq!(written, 16);
    assert_eq!(fs::read(&file).unwrap(), text);
    assert_eq!(fixture.call(1, 8, [fd, 0, 0, 0, 0, 0], &[]).0, 0);
    let (read, out) = fixture.call(1, 0, [fd, 0, 100, 0, 0, 0], &[]);
    assert_eq!(read, 16);
    assert_eq!(out[0], text);
    let (read, out) = fixture.call(1, 17, [fd, 0, 5, 6, 0, 0], &[]);
    assert_eq!(read, 5);
    assert_eq!(out[0], b"deleg");
    let (written, _) = fixture.call(1, 18, [fd, 0, 5, 0, 0, 0], &[b"HELLO"]);
    assert_eq!(written, 5);
    // The descriptor is the proxy's: another process does not have it.
    let (result, _) = fixture.call(2, 0, [fd, 0, 10, 0, 0, 0], &[]);
    assert_eq!(result, -i64::from(libc::EBADF));
    // fstat and newfstatat: st_size is at offset 48 of struct stat.
    let size_of = |stat: &[u8]| u64::from_le_bytes(stat[48..56].try_into().unwrap());
    let (result, out) = fixture.call(1, 5, [fd, 0, 0, 0, 0, 0], &[]);
    assert_eq!(result, 0);
    assert_eq!(size_of(&out[0]), 16);
    let (result, out) = fixture.call(1, 262, [CWD, 0, 0, 0, 0, 0], &[&path_bytes(&file)]);
    assert_eq!(result, 0);
    assert_eq!(size_of(&out[0]), 16);
    // close, twice.
    assert_eq!(fixture.call(1, 3, [fd, 0, 0, 0, 0, 0], &[]).0, 0);
    let again = fixture.call(1, 3, [fd, 0, 0, 0, 0, 0], &[]).0;
    assert_eq!(again, -i64::from(libc::EBADF));
    // getdents64 lists the directory.
    let flags = (libc::O_RDONLY | libc::O_DIRECTORY) as u64;
    let (dirfd, _) = fixture.call(1, 257, [CWD, 0, flags, 0, 0, 0], &[&path_bytes(&sub)]);
    assert!(dirfd >= 3);
    let (length, out) = fixture.call(1, 217, [dirfd as u64, 0, 4000, 0, 0, 0], &[]);
    assert!(length > 0);
    let names = dirent_names(&out[0]);
    assert!(names.contains(&"file".to_string()), "{names:?}");
    fixture.call(1, 3, [dirfd as u64, 0, 0, 0, 0, 0], &[]);
    // chdir persists: getcwd and a relative openat see it.
    assert_eq!(fixture.call(1, 80, [0; 6], &[&path_bytes(&sub)]).0, 0);
    let (length, out) = fixture.call(1, 79, [0, 200, 0, 0, 0, 0], &[]);
    assert!(length > 0);
    let real = fs::canonicalize(&sub).unwrap();
    assert_eq!(&out[0][..out[0].len() - 1], path_bytes(&real).as_slice());
    let (result, _) = fixture.call(1, 263, [CWD, 0, 0, 0, 0, 0], &[b"file"]);
    assert_eq!(result, 0);
    assert!(!file.exists());
    let rmdir = libc::AT_REMOVEDIR as u64;
    let (result, _) = fixture.call(1, 263, [CWD, 0, rmdir, 0, 0, 0], &[&path_bytes(&sub)]);
    assert_eq!(result, 0);
    assert!(!sub.exists());
    // Credentials are the agent's.
    assert!(fixture.call(1, 102, [0; 6], &[]).0 >= 0);
    assert!(fixture.call(1, 104, [0; 6], &[]).0 >= 0);
}

fn dirent_names(bytes: &[u8]) -> Vec<String> {
    // struct linux_dirent64: ino[8] off[8] reclen[2] type[1] name...
    let mut names = Vec::new();
    let mut at = 0;
    while at + 19 <= bytes.len() {
        let length = usize::from(u16::from_le_bytes([bytes[at + 16], bytes[at + 17]]));
        if length == 0 || at + length > bytes.len() {
            break;
        }
        let name = &bytes[at + 19..at + length];
        let end = name
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(name.len());
        names.push(String::from_utf8_lossy(&name[..end]).into_owned());
        at += length;
    }
    names
}

#[test]
fn refused_calls_are_answered_and_start_no_proxy() {
    let mut fixture = Fixture::new("refused");
    let (_, got) = fixture.send(Message::Syscall {
        process: 5,
        number: 57,
        arguments: [0; 6],
        input: &[],
    });
    let Got::Error(code, detail) = got else {
        panic!("{got:?}")
    };
    assert_eq!(code, ErrorCode::Unsupported.as_u16());
    assert!(detail.contains("57 is not delegated"), "{detail}");
    let (_, got) = fixture.send(Message::Syscall {
        process: 5,
        number: 3,
        arguments: [1, 0, 0, 0, 0, 0],
        input: &[],
    });
    assert!(matches!(got, Got::Error(3, _)), "{got:?}");
}

#[test]
fn a_process_exit_ends_its_proxy() {
    let mut fixture = Fixture::new("exit");
    let (first, _) = fixture.call(9, 39, [0; 6], &[]);
    let (_, got) = fixture.send(Message::ProcessExited { process: 9 });
    assert_eq!(got, Got::Done);
    // Unknown processes are fine too.
    let (_, got) = fixture.send(Message::ProcessExited { process: 12345 });
    assert_eq!(got, Got::Done);
    let (second, _) = fixture.call(9, 39, [0; 6], &[]);
    assert_ne!(first, second, "a new proxy after the exit");
}

#[test]
fn a_dead_proxy_fails_its_calls_until_the_process_exits() {
    let mut fixture = Fixture::new("dead");
    let (pid, _) = fixture.call(4, 39, [0; 6], &[]);
    // Let the proxy report the answer it wrote (else its watcher answers
    // the call again, as the module's note says).
    std::thread::sleep(std::time::Duration::from_millis(100));
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    for _ in 0..2 {
        let (_, got) = fixture.send(Message::Syscall {
            process: 4,
            number: 39,
            arguments: [0; 6],
            input: &[],
        });
        let Got::Error(code, detail) = got else {
            panic!("{got:?}")
        };
        assert_eq!(code, ErrorCode::Internal.as_u16());
        assert!(detail.contains("proxy of process 4 ended"), "{detail}");
    }
    assert_eq!(
        fixture.send(Message::ProcessExited { process: 4 }).1,
        Got::Done
    );
    assert!(fixture.call(4, 39, [0; 6], &[]).0 > 1);
}

#[test]
fn a_proxy_killed_in_a_call_answers_that_call_with_an_error_once() {
    let mut fixture = Fixture::new("killed");
    let (pid, _) = fixture.call(7, 39, [0; 6], &[]);
    let fifo = fixture.dir.join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // openat(O_RDONLY) of a FIFO without a writer blocks the proxy.
    fixture.next_id += 1;
    let id = fixture.next_id;
    let input = join_buffers(&[&path_bytes(&fifo)]);
    let call = Frame {
        request_id: id,
        message: Message::Syscall {
            process: 7,
            number: 257,
            arguments: [CWD, 0, libc::O_RDONLY as u64, 0, 0, 0],
            input: &input,
        },
    };
    fixture.services.handle(&call).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    let (got_id, got) = fixture.inbox.next();
    assert_eq!(got_id, id, "{got:?}");
    let Got::Error(code, detail) = got else {
        panic!("{got:?}")
    };
    assert_eq!(code, ErrorCode::Internal.as_u16());
    assert!(detail.contains("proxy of process 7 ended"), "{detail}");
    // Once: the next frame is the answer to the next request.
    assert_eq!(
        fixture.send(Message::ProcessExited { process: 7 }).1,
        Got::Done
    );
}
