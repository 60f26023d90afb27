//! Core's own servants: `#b` (the boot modules as files) and `#c` with
//! `/dev/cons` added to `kasane_servant`'s pure console files.
//!
//! `#b` is one flat, read-only directory: a file per boot module, named
//! as in the manifest, qid path = index + 1. `#c`'s `cons` writes go to
//! the kernel console (`debug_write`). Its reads are cooked console input
//! (`kasane_servant::servants::line`): bytes are polled from
//! `kernel_info(ConsoleInput)` only while a read waits, echoed, and a read
//! takes at most one line; with no complete line it would block, and core
//! parks the reader and polls again on every pass of its loop.

use alloc::string::String;
use alloc::vec::Vec;

use kasane_servant::dir::{self, EVE};
use kasane_servant::servants::cons::{Clock, Console};
use kasane_servant::servants::line::LineDiscipline;
use kasane_servant::{Caller, Error, File, Io, Opened, Servant, WaitKey};
use microkernel_abi::{KernelInfoSelector, NO_CONSOLE_INPUT};
use microkernel_rt::user::kernel_info;
use ninep::{OpenMode, Stat};

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

    fn entry(&self, path: u64) -> Result<Stat, Error> {
        if path == 0 {
            return Ok(dir::stat('b', 0, dir::dir_qid(0), "#b", 0o555, 0, EVE));
        }
        let (name, bytes) = self.module(path)?;
        Ok(dir::stat(
            'b',
            0,
            dir::file_qid(path),
            name,
            0o555,
            bytes.len() as u64,
            EVE,
        ))
    }
}

impl Servant for BootFiles {
    fn letter(&self) -> char {
        'b'
    }

    fn attach(&mut self, _caller: &Caller<'_>, _spec: &str) -> Result<File, Error> {
        Ok(File {
            dev: 0,
            qid: dir::dir_qid(0),
        })
    }

    fn walk(&mut self, _caller: &Caller<'_>, dir: &File, name: &str) -> Result<File, Error> {
        if dir.qid.path != 0 {
            return Err(Error::NOT_FOUND);
        }
        let index = self
            .modules
            .iter()
            .position(|(n, _)| n == name)
            .ok_or(Error::NOT_FOUND)?;
        Ok(File {
            dev: 0,
            qid: dir::file_qid(index as u64 + 1),
        })
    }

    fn parent(&mut self, _caller: &Caller<'_>, _file: &File) -> Result<File, Error> {
        Ok(File {
            dev: 0,
            qid: dir::dir_qid(0),
        })
    }

    fn stat(&mut self, _caller: &Caller<'_>, file: &File) -> Result<Stat, Error> {
        self.entry(file.qid.path)
    }

    fn open(&mut self, _caller: &Caller<'_>, file: &File, mode: OpenMode) -> Result<Opened, Error> {
        if file.qid.path != 0 {
            self.module(file.qid.path)?;
        }
        dir::check_open(file.qid.path == 0, mode, true, false)?;
        Ok(Opened::File(file.qid))
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

    fn read_dir(&mut self, _caller: &Caller<'_>, dir: &File) -> Result<Vec<Stat>, Error> {
        if dir.qid.path != 0 {
            return Err(Error::NOT_DIR);
        }
        (1..=self.modules.len() as u64)
            .map(|p| self.entry(p))
            .collect()
    }
}

/// The qid path of `cons`, clear of `Console`'s own (0..=4).
pub const CONS: u64 = 100;

/// What a `cons` read waits on.
pub const CONS_INPUT: WaitKey = WaitKey {
    letter: 'c',
    key: CONS,
};

/// The next byte typed on the console, if one is waiting (never blocks).
fn kernel_console_input() -> Option<u8> {
    match kernel_info(KernelInfoSelector::ConsoleInput) {
        Ok(value) if value < NO_CONSOLE_INPUT => Some(value as u8),
        _ => None,
    }
}

/// `#c`: `Console`'s files plus `cons`, which writes to `out` and reads
/// lines typed on the console.
pub struct ConsoleDevice<K: Clock> {
    inner: Console<K>,
    out: fn(&[u8]),
    input: fn() -> Option<u8>,
    discipline: LineDiscipline,
}

impl<K: Clock> ConsoleDevice<K> {
    pub fn new(inner: Console<K>, out: fn(&[u8])) -> Self {
        ConsoleDevice {
            inner,
            out,
            input: kernel_console_input,
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

/// What `#p` shows; core replaces it before every call that may read it.
pub static SNAPSHOT: spin::Mutex<Vec<kasane_servant::servants::proc::ProcessInfo>> =
    spin::Mutex::new(Vec::new());

/// Control requests written to /proc/N/ctl, for core to carry out after
/// the call that wrote them.
pub static REQUESTS: spin::Mutex<Vec<kasane_servant::servants::proc::Control>> =
    spin::Mutex::new(Vec::new());

/// `#p` over [`SNAPSHOT`].
pub struct ProcDevice {
    pub inner: kasane_servant::servants::proc::Processes,
}

impl ProcDevice {
    fn refresh(&mut self) {
        self.inner.set_snapshot(SNAPSHOT.lock().clone());
    }
}

impl Servant for ProcDevice {
    fn letter(&self) -> char {
        'p'
    }
    fn attach(&mut self, caller: &Caller<'_>, spec: &str) -> Result<File, Error> {
        self.refresh();
        self.inner.attach(caller, spec)
    }
    fn walk(&mut self, caller: &Caller<'_>, dir: &File, name: &str) -> Result<File, Error> {
        self.refresh();
        self.inner.walk(caller, dir, name)
    }
    fn parent(&mut self, caller: &Caller<'_>, file: &File) -> Result<File, Error> {
        self.inner.parent(caller, file)
    }
    fn stat(&mut self, caller: &Caller<'_>, file: &File) -> Result<Stat, Error> {
        self.inner.stat(caller, file)
    }
    fn open(&mut self, caller: &Caller<'_>, file: &File, mode: OpenMode) -> Result<Opened, Error> {
        self.refresh();
        self.inner.open(caller, file, mode)
    }
    fn read(
        &mut self,
        caller: &Caller<'_>,
        file: &File,
        offset: u64,
        count: u32,
    ) -> Result<Io<Vec<u8>>, Error> {
        self.refresh();
        self.inner.read(caller, file, offset, count)
    }
    fn read_dir(&mut self, caller: &Caller<'_>, dir: &File) -> Result<Vec<Stat>, Error> {
        self.refresh();
        self.inner.read_dir(caller, dir)
    }
    fn write(
        &mut self,
        caller: &Caller<'_>,
        file: &File,
        offset: u64,
        data: &[u8],
    ) -> Result<Io<u32>, Error> {
        let written = self.inner.write(caller, file, offset, data);
        REQUESTS.lock().extend(self.inner.take_requests());
        written
    }
    fn close(&mut self, file: &File, opened: Option<OpenMode>) {
        self.inner.close(file, opened)
    }
}
