//! What the interpreter needs from the system: the [`Host`] trait.
//!
//! The interpreter never touches a file, a process or a namespace itself;
//! it asks its host, which on Kasane is the shell's user library talking to
//! core, and in tests is a mock. Errors come back as the system's error
//! string (Plan 9's errstr), which the interpreter prints after the
//! command's name.

use alloc::string::String;
use alloc::vec::Vec;

/// A file descriptor of the shell process itself. The interpreter keeps,
/// for each command, a table from the command's fd numbers to these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostFd(pub u32);

/// How a redirection or `mount` opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenHow {
    /// `<`: open(2) with OREAD.
    Read,
    /// `>`: create(2) with OWRITE, truncating an existing file (rc(1)).
    Write,
    /// `>>`: open with OWRITE at the end, creating the file if need be.
    Append,
    /// ORDWR, for the srvfile of `mount` (mount(1)).
    ReadWrite,
}

/// The flags of bind(2) and mount(2), with Plan 9's values (libc.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MountFlags(u32);

impl MountFlags {
    /// Replace `old` by `new` (the default; MREPL).
    pub const REPLACE: Self = Self(0x0000);
    /// `-b`: add `new` before the union at `old` (MBEFORE).
    pub const BEFORE: Self = Self(0x0001);
    /// `-a`: add `new` after the union at `old` (MAFTER).
    pub const AFTER: Self = Self(0x0002);
    /// `-c`: files may be created in this element of the union (MCREATE).
    pub const CREATE: Self = Self(0x0004);
    /// `-C`: the mount may be cached (MCACHE).
    pub const CACHE: Self = Self(0x0010);

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// What `test` asks of a file (stat(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// A directory (DMDIR).
    pub dir: bool,
    /// Its length in bytes.
    pub length: u64,
}

/// One command to start: what [`Host::spawn`] is given.
#[derive(Debug, Clone, Copy)]
pub struct Spawn<'a> {
    /// The file to run, found through `$path`.
    pub path: &'a str,
    /// The arguments, `argv[0]` as the user wrote it.
    pub argv: &'a [String],
    /// The child's fds: child fd number and the shell fd it is a copy of.
    /// Fds not listed are closed in the child.
    pub fds: &'a [(u32, HostFd)],
    /// Every shell variable, with the command's own `name=value`
    /// assignments in force (rc(1): variables are the environment).
    pub env: &'a [(String, Vec<String>)],
}

/// The system under the interpreter.
pub trait Host {
    /// A started command, to wait for.
    type Process;

    /// Starts a command. The child gets its own copies of the listed fds;
    /// the shell closes its copies of redirected files afterwards.
    fn spawn(&mut self, command: &Spawn<'_>) -> Result<Self::Process, String>;

    /// Waits for a command to end: its exit status, empty for success
    /// (Plan 9's exits(2) string).
    fn wait(&mut self, process: Self::Process) -> String;

    /// Leaves a started command running (`cmd &`): the host keeps it to
    /// be waited for by [`Host::wait_pid`]. Returns its process id.
    fn detach(&mut self, process: Self::Process) -> u64;

    /// Waits for a command left running (the `wait` builtin): its exit
    /// status, or why it cannot be waited for.
    fn wait_pid(&mut self, pid: u64) -> Result<String, String>;

    /// The entries of a directory, for globbing: each name, and whether
    /// it is a directory itself.
    fn read_dir(&mut self, path: &str) -> Result<Vec<(String, bool)>, String>;

    /// stat(2), for the `test` builtin.
    fn stat(&mut self, path: &str) -> Result<FileStat, String>;

    /// Opens a file for a redirection or for `mount`.
    fn open(&mut self, path: &str, how: OpenHow) -> Result<HostFd, String>;

    /// A pipe (pipe(2)): the end to read from, the end to write to.
    fn pipe(&mut self) -> Result<(HostFd, HostFd), String>;

    /// Closes an fd the interpreter got from `open` or `pipe`.
    fn close(&mut self, fd: HostFd);

    /// Reads up to `buffer.len()` bytes (read(2)); 0 at end of file.
    /// For `` `{cmd} `` (from a pipe) and `.` (from a file).
    fn read(&mut self, fd: HostFd, buffer: &mut [u8]) -> Result<usize, String>;

    /// Writes all of `data` (a builtin's output or an error message).
    fn write(&mut self, fd: HostFd, data: &[u8]) -> Result<(), String>;

    /// chdir(2).
    fn chdir(&mut self, dir: &str) -> Result<(), String>;

    /// bind(2): `new` appears at `old`.
    fn bind(&mut self, new: &str, old: &str, flags: MountFlags) -> Result<(), String>;

    /// mount(2): the 9P server on the open `fd` appears at `old`; `spec`
    /// selects its tree (the aname of attach(5)).
    fn mount(&mut self, fd: HostFd, old: &str, spec: &str, flags: MountFlags)
        -> Result<(), String>;

    /// unmount(2): undo the bind or mount of `new` at `old`, or all of
    /// them at `old` if `new` is None.
    fn unmount(&mut self, new: Option<&str>, old: &str) -> Result<(), String>;

    /// rfork(2) without RFPROC, for the shell itself: `flags` is a union
    /// of [`RFNAMEG`], [`RFCNAMEG`], [`RFENVG`] and [`RFCENVG`].
    fn rfork(&mut self, flags: u32) -> Result<(), String>;
}

/// rfork(2)'s flags the `rfork` builtin passes on (Plan 9's values).
/// `n`: a copy of the namespace.
pub const RFNAMEG: u32 = 1 << 0;
/// `e`: a copy of the environment.
pub const RFENVG: u32 = 1 << 1;
/// `N`: a clean namespace.
pub const RFCNAMEG: u32 = 1 << 10;
/// `E`: a clean environment.
pub const RFCENVG: u32 = 1 << 11;
