//! #p, processes as files: /proc/N/status, /proc/N/ctl and /proc/N/ns.
//!
//! proc(3) in the part core can serve from a snapshot of its process table:
//! core hands [`Processes::set_snapshot`] what it knows (the ns text made
//! with `kasane_namespace::Namespace::ns_text`), and collects what writes
//! to ctl asked for with [`Processes::take_requests`]. A file of a process
//! that has left the snapshot answers "process exited".

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use ninep::Qid;

use crate::dev::{self, Devgen, Dirtab};
use crate::dir::{self, EVE};
use crate::servant::{Caller, File, Io, Servant};
use crate::Error;

const LETTER: char = 'p';
const ROOT: u64 = crate::dev::ROOT;
const DIR: u64 = 0;
const STATUS: u64 = 1;
const CTL: u64 = 2;
const NS: u64 = 3;
/// A process's directory (its qid path is made per process), then its
/// files, whose qid paths are made from the kind here (proc(3)).
const FILES: [Dirtab<'static>; 4] = [
    Dirtab::dir("", DIR, 0o555),
    Dirtab::file("status", STATUS, 0o444),
    Dirtab::file("ctl", CTL, 0o200),
    Dirtab::file("ns", NS, 0o444),
];

/// What core knows of one process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessInfo {
    pub pid: u32,
    /// The program's name.
    pub name: String,
    pub user: String,
    /// The scheduling state, e.g. `Running`, `Ready`, `Pread`.
    pub state: String,
    /// User, system and real time, then the same for waited-for children,
    /// in milliseconds (proc(3)).
    pub times_ms: [u64; 6],
    pub memory_kb: u64,
    pub base_priority: u32,
    pub priority: u32,
    /// The namespace as /proc/N/ns shows it.
    pub ns: String,
    /// A task server's entry: reached by its pid, not listed (ps shows
    /// processes), and its ctl takes the failure verbs.
    pub server: bool,
}

impl ProcessInfo {
    /// The text of /proc/N/status, laid out as Plan 9's: name, user and
    /// state left-justified in 27, 27 and 11 columns, then the six times,
    /// the memory and the two priorities right-justified in 11, each field
    /// followed by a blank.
    pub fn status_text(&self) -> String {
        let mut text = format!(
            "{:<27} {:<27} {:<11} ",
            clip(&self.name, 27),
            clip(&self.user, 27),
            clip(&self.state, 11)
        );
        let numbers = self.times_ms.iter().copied().chain([
            self.memory_kb,
            u64::from(self.base_priority),
            u64::from(self.priority),
        ]);
        for number in numbers {
            text.push_str(&format!("{number:>11} "));
        }
        text
    }
}

/// `text` cut to at most `width` characters.
fn clip(text: &str, width: usize) -> &str {
    match text.char_indices().nth(width) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// What a write to /proc/N/ctl asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// proc(3): "kill: kill the process".
    Kill(u32),
    /// A failure for the task server of this pid to perform for real:
    /// `crash`, `triple-fault`, `wild-write`, `hang` or `garbage`.
    Inject(u32, &'static str),
}

/// The failure verbs a task server's ctl takes.
pub const FAILURE_VERBS: [&str; 5] = ["crash", "triple-fault", "wild-write", "hang", "garbage"];

#[derive(Debug, Default)]
pub struct Processes {
    table: BTreeMap<u32, ProcessInfo>,
    requests: Vec<Control>,
}

fn path(pid: u32, kind: u64) -> u64 {
    ((u64::from(pid) + 1) << 4) | kind
}

/// The process and kind of file a qid path names; `None` for the root.
fn split(path: u64) -> Option<(u32, u64)> {
    if path == ROOT {
        return None;
    }
    let pid = u32::try_from((path >> 4) - 1).ok()?;
    Some((pid, path & 0xf))
}

impl Processes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces what /proc shows.
    pub fn set_snapshot(&mut self, processes: impl IntoIterator<Item = ProcessInfo>) {
        self.table = processes.into_iter().map(|p| (p.pid, p)).collect();
    }

    /// Whether a control request waits ([`Processes::take_requests`]).
    pub fn has_requests(&self) -> bool {
        !self.requests.is_empty()
    }

    /// Control requests since the last call, oldest first.
    pub fn take_requests(&mut self) -> Vec<Control> {
        core::mem::take(&mut self.requests)
    }

    fn process(&self, pid: u32) -> Result<&ProcessInfo, Error> {
        self.table.get(&pid).ok_or(Error::PROC_DIED)
    }
}

impl Devgen for Processes {
    /// `/` lists the processes of the snapshot, each a directory of
    /// FILES; a file of a process that has left it answers "process
    /// exited".
    fn gen<'a>(
        &'a self,
        _caller: &Caller<'a>,
        dir: &File,
        index: usize,
    ) -> Result<Option<Dirtab<'a>>, Error> {
        match split(dir.qid.path) {
            None if index == 0 => Ok(Some(Dirtab::dir("#p", ROOT, 0o555))),
            None => Ok(self
                .table
                .values()
                .filter(|process| !process.server)
                .nth(index - 1)
                .map(|process| Self::entry(process, &FILES[0]))),
            Some((pid, DIR)) => {
                let process = self.process(pid)?;
                Ok(FILES.get(index).map(|file| Self::entry(process, file)))
            }
            Some(_) => Ok(None),
        }
    }

    /// A process's directory is found by its pid, whose name must be the
    /// canonical decimal (not `007`).
    fn find<'a>(
        &'a self,
        caller: &Caller<'a>,
        dir: &File,
        name: &str,
    ) -> Result<Option<Dirtab<'a>>, Error> {
        if split(dir.qid.path).is_some() {
            return dev::search(self, caller, dir, name);
        }
        let Ok(pid) = name.parse::<u32>() else {
            return Ok(None);
        };
        let process = self.table.get(&pid);
        Ok(process
            .map(|process| Self::entry(process, &FILES[0]))
            .filter(|entry| entry.name == name))
    }

    fn dotdot(&self, file: &File) -> Qid {
        match split(file.qid.path) {
            Some((pid, kind)) if kind != DIR => dir::dir_qid(path(pid, DIR)),
            _ => dir::dir_qid(ROOT),
        }
    }
}

impl Processes {
    /// The entry of `process`'s `file` of FILES (its directory for the
    /// first).
    fn entry<'a>(process: &'a ProcessInfo, file: &Dirtab<'static>) -> Dirtab<'a> {
        let kind = file.qid.path;
        let mut entry = file.clone().with_owner(&process.user);
        entry.qid.path = path(process.pid, kind);
        if kind == DIR {
            entry.name = format!("{}", process.pid).into();
        }
        entry
    }
}

impl Servant for Processes {
    fn letter(&self) -> char {
        LETTER
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
        let (pid, kind) = split(file.qid.path).ok_or(Error::IS_DIR)?;
        let process = self.process(pid)?;
        let text = match kind {
            STATUS => process.status_text(),
            NS => process.ns.clone(),
            DIR => return Err(Error::IS_DIR),
            _ => return Err(Error::PERMISSION_DENIED),
        };
        Ok(Io::Ready(dir::read_at(text.as_bytes(), offset, count)))
    }

    /// proc(3): ctl takes textual messages; `kill` is the one served.
    fn write(
        &mut self,
        caller: &Caller<'_>,
        file: &File,
        _offset: u64,
        data: &[u8],
    ) -> Result<Io<u32>, Error> {
        let (pid, kind) = split(file.qid.path).ok_or(Error::IS_DIR)?;
        let process = self.process(pid)?;
        if kind != CTL {
            return Err(Error::PERMISSION_DENIED);
        }
        if caller.uname != process.user && caller.uname != EVE {
            return Err(Error::PERMISSION_DENIED);
        }
        let message = core::str::from_utf8(data).map_err(|_| Error::BAD_CTL)?;
        match (message.trim(), process.server) {
            ("kill", false) => self.requests.push(Control::Kill(pid)),
            (verb, true) => {
                let verb = FAILURE_VERBS
                    .iter()
                    .find(|v| **v == verb)
                    .ok_or(Error::BAD_CTL)?;
                self.requests.push(Control::Inject(pid, verb));
            }
            _ => return Err(Error::BAD_CTL),
        }
        u32::try_from(data.len())
            .map(Io::Ready)
            .map_err(|_| Error::TOO_BIG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ninep::OpenMode;

    fn glenda(pid: u32) -> ProcessInfo {
        ProcessInfo {
            pid,
            name: String::from("rc"),
            user: String::from("glenda"),
            state: String::from("Pread"),
            times_ms: [10, 20, 3000, 0, 0, 0],
            memory_kb: 128,
            base_priority: 10,
            priority: 10,
            ns: String::from("bind -a '#c' /dev\ncd /usr/glenda\n"),
            server: false,
        }
    }

    fn ready<T>(io: Io<T>) -> T {
        match io {
            Io::Ready(value) => value,
            Io::WouldBlock(key) => panic!("blocked on {key:?}"),
        }
    }

    fn file(procs: &mut Processes, caller: &Caller<'_>, names: &[&str]) -> Result<File, Error> {
        let mut at = procs.attach(caller, "")?;
        for name in names {
            at = procs.walk(caller, &at, name)?;
        }
        Ok(at)
    }

    #[test]
    fn status_is_laid_out_as_plan9s() {
        let text = glenda(7).status_text();
        assert_eq!(text.len(), 28 + 28 + 12 + 9 * 12);
        assert!(text
            .starts_with("rc                          glenda                      Pread       "));
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(
            fields,
            ["rc", "glenda", "Pread", "10", "20", "3000", "0", "0", "0", "128", "10", "10"]
        );
        let mut long = glenda(1);
        long.name = "x".repeat(40);
        assert_eq!(long.status_text().len(), text.len());
    }

    #[test]
    fn the_tree_lists_processes_and_their_files() {
        let caller = Caller::new(1, "glenda");
        let mut procs = Processes::new();
        procs.set_snapshot([glenda(1), glenda(12)]);
        let top = procs.attach(&caller, "").unwrap();
        let names: Vec<String> = procs
            .read_dir(&caller, &top)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["1", "12"]);
        let twelve = file(&mut procs, &caller, &["12"]).unwrap();
        let names: Vec<String> = procs
            .read_dir(&caller, &twelve)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["status", "ctl", "ns"]);
        assert_eq!(file(&mut procs, &caller, &["012"]), Err(Error::NOT_FOUND));
        assert_eq!(file(&mut procs, &caller, &["3"]), Err(Error::NOT_FOUND));
        let ns = file(&mut procs, &caller, &["12", "ns"]).unwrap();
        assert_eq!(procs.parent(&caller, &ns).unwrap(), twelve);
        assert_eq!(procs.parent(&caller, &twelve).unwrap(), top);
    }

    #[test]
    fn ns_and_status_read_from_the_snapshot() {
        let caller = Caller::new(1, "glenda");
        let mut procs = Processes::new();
        procs.set_snapshot([glenda(5)]);
        let ns = file(&mut procs, &caller, &["5", "ns"]).unwrap();
        procs.open(&caller, &ns, OpenMode::OREAD).unwrap();
        assert_eq!(
            ready(procs.read(&caller, &ns, 0, 1000).unwrap()),
            b"bind -a '#c' /dev\ncd /usr/glenda\n"
        );
        assert_eq!(
            procs.open(&caller, &ns, OpenMode::OWRITE),
            Err(Error::PERMISSION_DENIED)
        );
        let status = file(&mut procs, &caller, &["5", "status"]).unwrap();
        assert_eq!(ready(procs.read(&caller, &status, 0, 2).unwrap()), b"rc");
        procs.set_snapshot([]);
        assert_eq!(procs.read(&caller, &status, 0, 2), Err(Error::PROC_DIED));
        assert_eq!(Error::PROC_DIED.as_str(), "process exited");
    }

    #[test]
    fn a_task_server_is_reached_not_listed_and_takes_failure_verbs() {
        let mut procs = Processes::new();
        let server = ProcessInfo {
            pid: 9001,
            name: String::from("ramfs"),
            user: String::from(EVE),
            state: String::from("Server"),
            server: true,
            ..ProcessInfo::default()
        };
        procs.set_snapshot([glenda(5), server]);
        let eve = Caller::new(1, EVE);
        let root = procs.attach(&eve, "").unwrap();
        let listed: Vec<String> = procs
            .read_dir(&eve, &root)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(listed, ["5"], "ps shows processes only");
        let dir = procs.walk(&eve, &root, "9001").unwrap();
        let ctl = procs.walk(&eve, &dir, "ctl").unwrap();
        for verb in FAILURE_VERBS {
            let text = alloc::format!("{verb}\n");
            assert_eq!(
                ready(procs.write(&eve, &ctl, 0, text.as_bytes()).unwrap()),
                text.len() as u32
            );
        }
        assert_eq!(procs.take_requests().len(), 5);
        assert_eq!(
            procs.write(&eve, &ctl, 0, b"kill").err(),
            Some(Error::BAD_CTL)
        );
        assert_eq!(
            procs.write(&eve, &ctl, 0, b"explode").err(),
            Some(Error::BAD_CTL)
        );
        // A process's ctl does not take the verbs.
        let dir = procs.walk(&eve, &root, "5").unwrap();
        let ctl = procs.walk(&eve, &dir, "ctl").unwrap();
        assert_eq!(
            procs.write(&eve, &ctl, 0, b"crash").err(),
            Some(Error::BAD_CTL)
        );
    }

    #[test]
    fn ctl_takes_kill_from_the_owner() {
        let caller = Caller::new(1, "glenda");
        let stranger = Caller::new(2, "bootes");
        let mut procs = Processes::new();
        procs.set_snapshot([glenda(5)]);
        let ctl = file(&mut procs, &caller, &["5", "ctl"]).unwrap();
        assert_eq!(
            procs.open(&caller, &ctl, OpenMode::OREAD),
            Err(Error::PERMISSION_DENIED)
        );
        procs.open(&caller, &ctl, OpenMode::OWRITE).unwrap();
        assert_eq!(
            procs.write(&stranger, &ctl, 0, b"kill"),
            Err(Error::PERMISSION_DENIED)
        );
        assert_eq!(procs.write(&caller, &ctl, 0, b"fly"), Err(Error::BAD_CTL));
        assert_eq!(ready(procs.write(&caller, &ctl, 0, b"kill\n").unwrap()), 5);
        assert_eq!(procs.take_requests(), [Control::Kill(5)]);
        assert!(procs.take_requests().is_empty());
    }

    #[test]
    fn stats_follow_the_snapshot() {
        let caller = Caller::new(1, "glenda");
        let mut procs = Processes::new();
        procs.set_snapshot([glenda(5)]);
        let five = file(&mut procs, &caller, &["5"]).unwrap();
        let ctl = file(&mut procs, &caller, &["5", "ctl"]).unwrap();
        let s = procs.stat(&caller, &five).unwrap();
        assert_eq!((s.name.as_str(), s.uid.as_str()), ("5", "glenda"));
        assert!(s.mode.is_dir());
        let s = procs.stat(&caller, &ctl).unwrap();
        assert_eq!((s.name.as_str(), s.mode.bits()), ("ctl", 0o200));
        let top = procs.attach(&caller, "").unwrap();
        assert_eq!(procs.stat(&caller, &top).unwrap().name, "#p");
        procs.set_snapshot([]);
        assert_eq!(procs.stat(&caller, &five), Err(Error::PROC_DIED));
        assert_eq!(procs.stat(&caller, &ctl), Err(Error::PROC_DIED));
        assert_eq!(procs.walk(&caller, &five, "ns"), Err(Error::PROC_DIED));
        assert_eq!(
            procs.open(&caller, &ctl, OpenMode::OWRITE),
            Err(Error::PROC_DIED)
        );
    }
}
