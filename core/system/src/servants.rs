//! Core's servant table, with the servants it reaches concretely typed,
//! and core's own servants: `#b`, and `#c` with `/dev/cons`.
//!
//! [`Servants`] is Plan 9's devtab for core. `#M`, `#s`, `#e`, `#p` and
//! `#|` are fields of their own types, so core calls their own methods
//! (restart a task server's link, repost it in /srv, drop an environment
//! group, refresh /proc, take wakeups) without looking them up; the rest
//! are `kasane_servant::Devices`.
//!
//! `#b` is one flat, read-only directory: a file per boot module, named
//! as in the manifest, qid path = index + 1. `#c`'s `cons` writes go to
//! the console. Its reads are cooked console input
//! (`kasane_servant::servants::line`): bytes are polled only while a read
//! waits, echoed, and a read takes at most one line; with no complete line
//! it would block, and core parks the reader and polls again on every pass
//! of its loop.

use alloc::string::String;
use alloc::vec::Vec;

use crate::linux::LinuxRuns;
use kasane_mount::{MountDriver, Transport};
use kasane_servant::dir::{self, EVE};
use kasane_servant::servants::cons::{Clock, Console};
use kasane_servant::servants::env::Environment;
use kasane_servant::servants::line::LineDiscipline;
use kasane_servant::servants::pipe::Pipes;
use kasane_servant::servants::proc::Processes;
use kasane_servant::servants::srv::Registry;
use kasane_servant::{
    Caller, Devgen, Devices, Dirtab, Error, File, Io, Opened, Servant, ServantTable, WaitKey,
};
use ninep::{OpenMode, Stat};

/// Every servant core serves, by letter.
pub struct Servants<L> {
    /// `#M`, the mount driver: the task servers' links.
    pub mount: MountDriver<L>,
    /// `#s`, /srv.
    pub srv: Registry,
    /// `#e`, the environment groups.
    pub env: Environment,
    /// `#p`, /proc.
    pub proc: Processes,
    /// `#|`, pipes.
    pub pipes: Pipes,
    /// `#L`, Linux programs (/dev/linux), if the system has a Linux cell
    /// (or wants one: bare mode answers `no linux cell`).
    pub linux: Option<LinuxRuns>,
    /// The others (`#R`, `#c`, `#b`...); a letter above shadows one here.
    pub others: Devices,
}

impl<L: Transport> Servants<L> {
    /// The typed servants, empty (pipes of `pipe_capacity` bytes), and
    /// `others`.
    pub fn new(pipe_capacity: usize, others: Devices) -> Self {
        Servants {
            mount: MountDriver::new(),
            srv: Registry::new(),
            env: Environment::new(),
            proc: Processes::new(),
            pipes: Pipes::new(pipe_capacity),
            linux: None,
            others,
        }
    }
}

impl<L: Transport + 'static> ServantTable for Servants<L> {
    fn servant(&mut self, letter: char) -> Result<&mut dyn Servant, Error> {
        Ok(match letter {
            'M' => &mut self.mount,
            's' => &mut self.srv,
            'e' => &mut self.env,
            'p' => &mut self.proc,
            '|' => &mut self.pipes,
            'L' if self.linux.is_some() => self.linux.as_mut().ok_or(Error::NOT_FOUND)?,
            _ => self.others.get_mut(letter)?,
        })
    }
}

/// `#b`: the boot modules.
pub struct BootFiles {
    modules: Vec<(String, &'static [u8])>,
}

impl BootFiles {
    pub fn new(modules: Vec<(String, &'static [u8])>) -> Self {
        BootFiles { modules }
    }

    fn module(&self, path: u64) -> Result<&(String, &'static [u8]), Error> {
        usize::try_from(path)
            .ok()
            .and_then(|p| p.checked_sub(1))
            .and_then(|i| self.modules.get(i))
            .ok_or(Error::NOT_FOUND)
    }
}

impl Devgen for BootFiles {
    /// One directory: a module's qid path is its index plus one.
    fn gen<'a>(
        &'a self,
        _caller: &Caller<'a>,
        dir: &File,
        index: usize,
    ) -> Result<Option<Dirtab<'a>>, Error> {
        if dir.qid.path != 0 {
            return Ok(None);
        }
        if index == 0 {
            return Ok(Some(Dirtab::dir("#b", 0, 0o555)));
        }
        Ok(self.modules.get(index - 1).map(|(name, bytes)| {
            Dirtab::file(name, index as u64, 0o555).with_length(bytes.len() as u64)
        }))
    }
}

impl Servant for BootFiles {
    fn letter(&self) -> char {
        'b'
    }

    fn devgen(&self) -> Option<&dyn Devgen> {
        Some(self)
    }

    fn read(
        &mut self,
        _caller: &Caller<'_>,
        file: &File,
        offset: u64,
        count: u32,
    ) -> Result<Io<Vec<u8>>, Error> {
        let (_, bytes) = self.module(file.qid.path)?;
        Ok(Io::Ready(dir::read_at(bytes, offset, count)))
    }
}

/// The qid path of `cons`, clear of `Console`'s own (0..=4).
pub const CONS: u64 = 100;

/// What a `cons` read waits on.
pub const CONS_INPUT: WaitKey = WaitKey {
    letter: 'c',
    key: CONS,
};

/// `#c`: `Console`'s files plus `cons`, which writes to `out` and reads
/// lines typed on the console (`input`).
pub struct ConsoleDevice<K: Clock> {
    inner: Console<K>,
    out: fn(&[u8]),
    input: fn() -> Option<u8>,
    discipline: LineDiscipline,
}

impl<K: Clock> ConsoleDevice<K> {
    /// `out` writes to the console; `input` takes the next byte typed
    /// on it, if one is waiting, and never blocks.
    pub fn new(inner: Console<K>, out: fn(&[u8]), input: fn() -> Option<u8>) -> Self {
        ConsoleDevice {
            inner,
            out,
            input,
            discipline: LineDiscipline::new(),
        }
    }

    /// Takes typed bytes until a line is complete or none is waiting, and
    /// echoes them. Input past the first complete line stays where it is
    /// (the UART and the emulator hold it) until someone reads again.
    fn poll_input(&mut self) {
        let mut echo = Vec::new();
        while !self.discipline.has_line() {
            let Some(byte) = (self.input)() else { break };
            self.discipline.input(byte, &mut echo);
        }
        if !echo.is_empty() {
            (self.out)(&echo);
        }
    }

    fn cons_entry() -> Stat {
        dir::stat('c', 0, dir::file_qid(CONS), "cons", 0o660, 0, EVE)
    }
}

impl<K: Clock> Servant for ConsoleDevice<K> {
    fn letter(&self) -> char {
        'c'
    }

    fn attach(&mut self, caller: &Caller<'_>, spec: &str) -> Result<File, Error> {
        self.inner.attach(caller, spec)
    }

    fn walk(&mut self, caller: &Caller<'_>, dir: &File, name: &str) -> Result<File, Error> {
        if dir.qid.path == 0 && name == "cons" {
            return Ok(File {
                dev: 0,
                qid: dir::file_qid(CONS),
            });
        }
        self.inner.walk(caller, dir, name)
    }

    fn parent(&mut self, caller: &Caller<'_>, file: &File) -> Result<File, Error> {
        self.inner.parent(caller, file)
    }

    fn stat(&mut self, caller: &Caller<'_>, file: &File) -> Result<Stat, Error> {
        if file.qid.path == CONS {
            return Ok(Self::cons_entry());
        }
        self.inner.stat(caller, file)
    }

    fn open(&mut self, caller: &Caller<'_>, file: &File, mode: OpenMode) -> Result<Opened, Error> {
        if file.qid.path == CONS {
            dir::check_open(false, mode, true, true)?;
            return Ok(Opened::File(file.qid));
        }
        self.inner.open(caller, file, mode)
    }

    fn read(
        &mut self,
        caller: &Caller<'_>,
        file: &File,
        offset: u64,
        count: u32,
    ) -> Result<Io<Vec<u8>>, Error> {
        if file.qid.path == CONS {
            self.poll_input();
            return Ok(match self.discipline.read(count as usize) {
                Some(line) => Io::Ready(line),
                None => Io::WouldBlock(CONS_INPUT),
            });
        }
        self.inner.read(caller, file, offset, count)
    }

    fn read_dir(&mut self, caller: &Caller<'_>, dir: &File) -> Result<Vec<Stat>, Error> {
        let mut entries = self.inner.read_dir(caller, dir)?;
        entries.insert(0, Self::cons_entry());
        Ok(entries)
    }

    fn write(
        &mut self,
        caller: &Caller<'_>,
        file: &File,
        offset: u64,
        data: &[u8],
    ) -> Result<Io<u32>, Error> {
        if file.qid.path == CONS {
            (self.out)(data);
            return Ok(Io::Ready(
                u32::try_from(data.len()).map_err(|_| Error::TOO_BIG)?,
            ));
        }
        self.inner.write(caller, file, offset, data)
    }

    fn close(&mut self, file: &File, opened: Option<OpenMode>) {
        if file.qid.path != CONS {
            self.inner.close(file, opened);
        }
    }
}
