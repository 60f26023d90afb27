//! A mock host: files, pipes and a few programs in memory, and a log.
//!
//! A spawned program runs when it is waited for, reading its fd 0 and
//! writing its fds 1 and 2 then. The shell waits left to right after its
//! builtins ran, so data flows through a pipeline in order.
#![allow(dead_code)]

use std::collections::BTreeMap;

use kasane_rc::{FileStat, Flow, Host, HostFd, MountFlags, OpenHow, Shell, Spawn};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Console(u32),
    File { path: String, readable: bool },
    PipeRead(u32),
    PipeWrite(u32),
}

type Program = fn(&[String], &[u8], &BTreeMap<String, Vec<u8>>) -> (Vec<u8>, Vec<u8>, String);

pub struct Child {
    pid: u64,
    argv: Vec<String>,
    fds: BTreeMap<u32, Object>,
    program: Program,
}

pub struct Mock {
    pub files: BTreeMap<String, Vec<u8>>,
    /// The shell's open fds.
    pub fds: BTreeMap<u32, Object>,
    next_fd: u32,
    pipes: BTreeMap<u32, Vec<u8>>,
    next_pipe: u32,
    /// What the console's fds 1 and 2 got.
    pub stdout: String,
    pub stderr: String,
    pub log: Vec<String>,
    pub cwd: String,
    programs: BTreeMap<String, Program>,
    /// Refuse the next n opens / pipes, to test failures.
    pub fail_pipe: bool,
    pub last_env: Vec<(String, Vec<String>)>,
    /// Read offsets of open files.
    offsets: BTreeMap<u32, usize>,
    next_pid: u64,
    /// Commands left running by `&`, by pid.
    pub jobs: BTreeMap<u64, Child>,
}

fn cat(
    args: &[String],
    stdin: &[u8],
    files: &BTreeMap<String, Vec<u8>>,
) -> (Vec<u8>, Vec<u8>, String) {
    if args.len() < 2 {
        return (stdin.to_vec(), vec![], String::new());
    }
    let mut out = Vec::new();
    for name in &args[1..] {
        match files.get(name) {
            Some(data) => out.extend_from_slice(data),
            None => {
                let err = format!("cat: can't open {name}: file does not exist\n");
                return (out, err.into_bytes(), format!("cat: can't open {name}"));
            }
        }
    }
    (out, vec![], String::new())
}

fn wc(_: &[String], stdin: &[u8], _: &BTreeMap<String, Vec<u8>>) -> (Vec<u8>, Vec<u8>, String) {
    let lines = stdin.iter().filter(|&&b| b == b'\n').count();
    (
        format!("{lines} {}\n", stdin.len()).into_bytes(),
        vec![],
        String::new(),
    )
}

fn fail(args: &[String], _: &[u8], _: &BTreeMap<String, Vec<u8>>) -> (Vec<u8>, Vec<u8>, String) {
    let msg = args.get(1).cloned().unwrap_or_else(|| "failed".into());
    (
        vec![],
        format!("fail: {msg}\n").into_bytes(),
        format!("fail: {msg}"),
    )
}

fn args(a: &[String], _: &[u8], _: &BTreeMap<String, Vec<u8>>) -> (Vec<u8>, Vec<u8>, String) {
    let mut out = String::new();
    for arg in &a[1..] {
        out.push_str(&format!("[{arg}]"));
    }
    out.push('\n');
    (out.into_bytes(), vec![], String::new())
}

impl Mock {
    pub fn new() -> Self {
        let mut programs: BTreeMap<String, Program> = BTreeMap::new();
        programs.insert("/bin/cat".into(), cat);
        programs.insert("/bin/wc".into(), wc);
        programs.insert("/bin/fail".into(), fail);
        programs.insert("/bin/args".into(), args);
        programs.insert("/usr/bin/args2".into(), args);
        let mut fds = BTreeMap::new();
        for n in 0..3 {
            fds.insert(n, Object::Console(n));
        }
        Self {
            files: BTreeMap::new(),
            fds,
            next_fd: 3,
            pipes: BTreeMap::new(),
            next_pipe: 0,
            stdout: String::new(),
            stderr: String::new(),
            log: Vec::new(),
            cwd: "/".into(),
            programs,
            fail_pipe: false,
            last_env: Vec::new(),
            offsets: BTreeMap::new(),
            next_pid: 100,
            jobs: BTreeMap::new(),
        }
    }

    fn new_fd(&mut self, object: Object) -> HostFd {
        let fd = self.next_fd;
        self.next_fd += 1;
        self.fds.insert(fd, object);
        HostFd(fd)
    }

    fn put(&mut self, object: &Object, data: &[u8]) -> Result<(), String> {
        match object {
            Object::Console(1) => self.stdout.push_str(&String::from_utf8_lossy(data)),
            Object::Console(2) => self.stderr.push_str(&String::from_utf8_lossy(data)),
            Object::Console(_) => return Err("console input is not writable".into()),
            Object::File { path, .. } => self
                .files
                .entry(path.clone())
                .or_default()
                .extend_from_slice(data),
            Object::PipeWrite(id) => self.pipes.entry(*id).or_default().extend_from_slice(data),
            Object::PipeRead(_) => return Err("write to the read end of a pipe".into()),
        }
        Ok(())
    }

    fn get(&mut self, object: Option<&Object>) -> Vec<u8> {
        match object {
            Some(Object::File {
                path,
                readable: true,
            }) => self.files.get(path).cloned().unwrap_or_default(),
            Some(Object::PipeRead(id)) => self.pipes.remove(id).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Only the console fds are open: the shell closed all it opened.
    pub fn no_leaks(&self) -> bool {
        self.fds.keys().copied().collect::<Vec<_>>() == [0, 1, 2]
    }
}

impl Host for Mock {
    type Process = Child;

    fn spawn(&mut self, command: &Spawn<'_>) -> Result<Child, String> {
        self.log.push(format!("try {}", command.path));
        let program = *self
            .programs
            .get(command.path)
            .ok_or_else(|| format!("'{}' file does not exist", command.path))?;
        let mut fds = BTreeMap::new();
        for (child, shell) in command.fds {
            let object = self
                .fds
                .get(&shell.0)
                .cloned()
                .expect("spawn with a closed fd");
            fds.insert(*child, object);
        }
        self.last_env = command.env.to_vec();
        self.next_pid += 1;
        Ok(Child {
            pid: self.next_pid,
            argv: command.argv.to_vec(),
            fds,
            program,
        })
    }

    fn wait(&mut self, child: Child) -> String {
        let stdin = self.get(child.fds.get(&0));
        let (out, err, status) = (child.program)(&child.argv, &stdin, &self.files);
        if let Some(object) = child.fds.get(&1) {
            let _ = self.put(object, &out);
        }
        if let Some(object) = child.fds.get(&2) {
            let _ = self.put(object, &err);
        }
        status
    }

    fn detach(&mut self, child: Child) -> u64 {
        let pid = child.pid;
        self.jobs.insert(pid, child);
        pid
    }

    fn wait_pid(&mut self, pid: u64) -> Result<String, String> {
        let child = self.jobs.remove(&pid).ok_or("no such child process")?;
        Ok(self.wait(child))
    }

    fn read_dir(&mut self, path: &str) -> Result<Vec<(String, bool)>, String> {
        self.log.push(format!("read_dir {path}"));
        let dir = match path {
            "." => self.cwd.clone(),
            p if p.starts_with('/') => p.to_string(),
            p => format!("{}/{p}", self.cwd.trim_end_matches('/')),
        };
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let mut entries: BTreeMap<String, bool> = BTreeMap::new();
        for file in self.files.keys() {
            if let Some(rest) = file.strip_prefix(&prefix) {
                match rest.split_once('/') {
                    Some((name, _)) => entries.insert(name.to_string(), true),
                    None => entries.insert(rest.to_string(), false),
                };
            }
        }
        if entries.is_empty() {
            return Err(format!("'{path}' file does not exist"));
        }
        // Not sorted, as a server's order need not be.
        Ok(entries.into_iter().rev().collect())
    }

    fn stat(&mut self, path: &str) -> Result<FileStat, String> {
        if let Some(data) = self.files.get(path) {
            return Ok(FileStat {
                dir: false,
                length: data.len() as u64,
            });
        }
        let prefix = format!("{}/", path.trim_end_matches('/'));
        if self.files.keys().any(|f| f.starts_with(&prefix)) {
            return Ok(FileStat {
                dir: true,
                length: 0,
            });
        }
        Err(format!("'{path}' file does not exist"))
    }

    fn open(&mut self, path: &str, how: OpenHow) -> Result<HostFd, String> {
        self.log.push(format!("open {path} {how:?}"));
        if path.starts_with("/forbidden") {
            return Err("permission denied".into());
        }
        match how {
            OpenHow::Read | OpenHow::ReadWrite => {
                if !self.files.contains_key(path) {
                    return Err(format!("'{path}' file does not exist"));
                }
            }
            OpenHow::Write => {
                self.files.insert(path.into(), Vec::new());
            }
            OpenHow::Append => {
                self.files.entry(path.into()).or_default();
            }
        }
        let readable = matches!(how, OpenHow::Read | OpenHow::ReadWrite);
        Ok(self.new_fd(Object::File {
            path: path.into(),
            readable,
        }))
    }

    fn pipe(&mut self) -> Result<(HostFd, HostFd), String> {
        if self.fail_pipe {
            return Err("no more pipes".into());
        }
        let id = self.next_pipe;
        self.next_pipe += 1;
        let read = self.new_fd(Object::PipeRead(id));
        let write = self.new_fd(Object::PipeWrite(id));
        Ok((read, write))
    }

    fn close(&mut self, fd: HostFd) {
        assert!(fd.0 > 2, "the shell closed its console fd {}", fd.0);
        assert!(self.fds.remove(&fd.0).is_some(), "double close of {}", fd.0);
        self.offsets.remove(&fd.0);
    }

    fn read(&mut self, fd: HostFd, buffer: &mut [u8]) -> Result<usize, String> {
        let object = self.fds.get(&fd.0).cloned().ok_or("fd not open")?;
        let data = match &object {
            Object::File {
                path,
                readable: true,
            } => {
                let at = self.offsets.get(&fd.0).copied().unwrap_or(0);
                self.files.get(path).map(|d| d[at.min(d.len())..].to_vec())
            }
            Object::PipeRead(id) => self.pipes.get(id).cloned(),
            _ => return Err("not open for reading".into()),
        }
        .unwrap_or_default();
        let n = data.len().min(buffer.len());
        buffer[..n].copy_from_slice(&data[..n]);
        match object {
            Object::PipeRead(id) => {
                self.pipes.entry(id).or_default().drain(..n);
            }
            _ => *self.offsets.entry(fd.0).or_default() += n,
        }
        Ok(n)
    }

    fn write(&mut self, fd: HostFd, data: &[u8]) -> Result<(), String> {
        let object = self.fds.get(&fd.0).cloned().ok_or("fd not open")?;
        self.put(&object, data)
    }

    fn chdir(&mut self, dir: &str) -> Result<(), String> {
        if dir.starts_with("/nonexistent") {
            return Err(format!("'{dir}' file does not exist"));
        }
        self.cwd = dir.into();
        Ok(())
    }

    fn bind(&mut self, new: &str, old: &str, flags: MountFlags) -> Result<(), String> {
        self.log.push(format!("bind {new} {old} {}", flags.bits()));
        if old.starts_with("/nonexistent") {
            return Err(format!("'{old}' file does not exist"));
        }
        Ok(())
    }

    fn mount(
        &mut self,
        fd: HostFd,
        old: &str,
        spec: &str,
        flags: MountFlags,
    ) -> Result<(), String> {
        let object = self.fds.get(&fd.0).cloned();
        let Some(Object::File { path, .. }) = object else {
            panic!("mount on a fd that is not an open file");
        };
        self.log
            .push(format!("mount {path} {old} '{spec}' {}", flags.bits()));
        if old.starts_with("/nonexistent") {
            return Err(format!("'{old}' file does not exist"));
        }
        Ok(())
    }

    fn unmount(&mut self, new: Option<&str>, old: &str) -> Result<(), String> {
        self.log.push(format!("unmount {new:?} {old}"));
        if old == "/notmounted" {
            return Err("not mounted".into());
        }
        Ok(())
    }

    fn rfork(&mut self, flags: u32) -> Result<(), String> {
        self.log.push(format!("rfork {flags:#x}"));
        if flags & kasane_rc::RFCENVG != 0 {
            return Err("bad arg in system call".into());
        }
        Ok(())
    }
}

/// Runs `source` in a fresh shell and mock; returns both and the flow.
pub fn run(source: &str) -> (Shell, Mock, Flow) {
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    mock.files.insert("/srv/ram".into(), Vec::new());
    let flow = shell.run(&mut mock, source);
    (shell, mock, flow)
}
