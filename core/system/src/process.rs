//! Processes: the table's entries, paging, ending them, rfork, /proc's
//! snapshot, and making a process from a program file read through the
//! namespace.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use core_abi::SpawnRequest;
use kasane_namespace::Chans;
use kasane_servant::servants::proc::ProcessInfo;
use kasane_servant::{Error, Io, ServantTable};
use ninep::OpenMode;

use crate::system::{host, Loc, Ns};
use crate::{Fd, Fds, Kernel, System, Thread, MAX_FD, USER};

/// A living process.
pub(crate) struct Process<T> {
    pub(crate) parent: u32,
    pub(crate) name: String,
    pub(crate) thread: Thread,
    pub(crate) task: T,
    pub(crate) fds: Fds,
    /// Its namespace's id.
    pub(crate) ns: u32,
    pub(crate) dot: Loc,
    pub(crate) errstr: String,
    pub(crate) env_group: u32,
    /// Dissociated from its parent (`RFNOWAIT`): no wait record.
    pub(crate) nowait: bool,
}

/// A process that ended and was not yet waited for.
pub(crate) struct Zombie {
    pub(crate) pid: u32,
    pub(crate) parent: u32,
    pub(crate) status: String,
}

/// Refuses rfork flags core does not serve, and both forms of one.
pub(crate) fn check_rfork(flags: u64) -> Result<(), Error> {
    use core_abi::{RFCENVG, RFCNAMEG, RFENVG, RFNAMEG, RFNOWAIT};
    let known = RFNAMEG | RFENVG | RFCNAMEG | RFCENVG | RFNOWAIT;
    if flags & !known != 0
        || flags & (RFNAMEG | RFCNAMEG) == RFNAMEG | RFCNAMEG
        || flags & (RFENVG | RFCENVG) == RFENVG | RFCENVG
    {
        return Err(Error::BAD_ARG);
    }
    Ok(())
}

impl<K: Kernel> System<K> {
    /// A page fault of process `pid`: the kernel maps a page, or the
    /// process ends with a trap status.
    pub(crate) fn page_fault(&mut self, pid: u32, address: u64, ip: u64) {
        let Some(process) = self.processes.get_mut(&pid) else {
            return;
        };
        if self.kernel.fault(&mut process.task, address) {
            self.memory_changed = true;
            return;
        }
        let status = format!("sys: trap: fault read addr={address:#x} pc={ip:#x}");
        self.kernel
            .log(format_args!("core: {}: {status}\n", process.name));
        self.kill(pid, status);
    }

    /// Ends a process: its task, memory, descriptors and namespace.
    pub(crate) fn kill(&mut self, pid: u32, status: String) {
        let Some(mut process) = self.processes.remove(&pid) else {
            return;
        };
        self.by_thread.remove(&process.thread);
        self.kernel.destroy(process.task);
        self.servants.mount.forget(pid);
        let mut host = host!(self, pid, process.env_group);
        for fd in process.fds.drain() {
            host.close(fd.chan);
        }
        process.dot.close(&mut host);
        self.release_namespace(pid, process.ns, process.env_group);
        self.release_env_group(process.env_group);
        self.woken = true;
        // Its children's records go with it: nobody is left to wait.
        self.zombies.retain(|z| z.parent != pid);
        // A record only for a parent that can take it (init's parent, 0,
        // is core, which reads init's record: `exit_status`).
        let parent = process.parent;
        if !process.nowait && (parent == 0 || self.processes.contains_key(&parent)) {
            self.zombies.push(Zombie {
                pid,
                parent,
                status,
            });
        }
        self.update_snapshot();
    }

    /// Drops a process's reference to namespace `ns`; the last one clears
    /// it (its chans are closed).
    pub(crate) fn release_namespace(&mut self, pid: u32, ns: u32, group: u32) {
        if let Some((_, refs)) = self.namespaces.get_mut(&ns) {
            *refs -= 1;
            if *refs == 0 {
                if let Some((namespace, _)) = self.namespaces.remove(&ns) {
                    let mut host = host!(self, pid, group);
                    namespace.clear(&mut host);
                }
            }
        }
    }

    /// Drops a process's reference to environment group `group`; the last
    /// one forgets its variables. The boot group 0 stays: the /env of the
    /// boot namespace is its directory.
    pub(crate) fn release_env_group(&mut self, group: u32) {
        let refs = self.env_refs.entry(group).or_insert(1);
        *refs = refs.saturating_sub(1);
        if *refs == 0 && group != 0 {
            self.env_refs.remove(&group);
            self.servants.env.drop_group(group);
        }
    }

    /// rfork(2) without RFPROC: a copy or a clean namespace, a copy or a
    /// clean environment group, for the calling process alone.
    pub(crate) fn rfork(&mut self, pid: u32, flags: u64) -> Result<(), Error> {
        use core_abi::{RFCENVG, RFCNAMEG, RFENVG, RFNAMEG, RFNOWAIT};
        check_rfork(flags)?;
        if flags & RFNOWAIT != 0 {
            let process = self.processes.get_mut(&pid).ok_or(Error::BAD_FD)?;
            process.nowait = true;
        }
        let process = self.processes.get(&pid).ok_or(Error::BAD_FD)?;
        let (old_ns, group) = (process.ns, process.env_group);
        if flags & (RFNAMEG | RFCNAMEG) != 0 {
            let mut host = host!(self, pid, group);
            let namespace = if flags & RFNAMEG != 0 {
                let (ns, _) = self.namespaces.get(&old_ns).ok_or(Error::BAD_FD)?;
                ns.fork(&mut host)
            } else {
                let root = kasane_namespace::Walker::attach(&mut host, 'R', "")?;
                Ns::new(root)
            };
            // A clean namespace starts at its root; a copy keeps dot.
            let dot = (flags & RFCNAMEG != 0).then(|| namespace.root_location(&mut host));
            let id = self.next_ns;
            self.next_ns += 1;
            self.namespaces.insert(id, (namespace, 1));
            let process = self.processes.get_mut(&pid).ok_or(Error::BAD_FD)?;
            process.ns = id;
            if let Some(dot) = dot {
                let old = core::mem::replace(&mut process.dot, dot);
                let mut host = host!(self, pid, group);
                old.close(&mut host);
            }
            self.release_namespace(pid, old_ns, group);
        }
        if flags & (RFENVG | RFCENVG) != 0 {
            let new = self.next_env_group;
            self.next_env_group += 1;
            let environment = &mut self.servants.env;
            if flags & RFENVG != 0 {
                environment.fork_group(group, new);
            } else {
                environment.create_group(new);
            }
            self.env_refs.insert(new, 1);
            if let Some(process) = self.processes.get_mut(&pid) {
                process.env_group = new;
            }
            self.release_env_group(group);
        }
        self.update_snapshot();
        Ok(())
    }

    pub(crate) fn update_snapshot(&mut self) {
        let mut list = Vec::new();
        for (pid, process) in &self.processes {
            let ns = self
                .namespaces
                .get(&process.ns)
                .map(|(ns, _)| ns.ns_text(Some(&process.dot.path())))
                .unwrap_or_default();
            list.push(ProcessInfo {
                pid: *pid,
                name: process.name.clone(),
                user: USER.into(),
                state: "Ready".into(),
                memory_kb: self.kernel.kilobytes(&process.task),
                ns,
                ..ProcessInfo::default()
            });
        }
        list.extend(self.server_entries());
        self.servants.proc.set_snapshot(list);
    }

    /// Starts the program of `request` as a child of `parent` (0 for the
    /// first process, in namespace `ns`), sharing the parent's namespace
    /// and environment group unless the request's rfork flags say
    /// otherwise.
    pub(crate) fn create_process(
        &mut self,
        parent: u32,
        ns: u32,
        request: &SpawnRequest,
    ) -> Result<u32, String> {
        check_rfork(request.flags).map_err(|e| e.as_str().to_string())?;
        let (bytes, identity) = self.read_program(parent, &request.path)?;
        let pid = self.next_pid;
        let (task, thread) = self.kernel.create(pid, &bytes, identity, &request.argv)?;
        drop(bytes);
        let (env_group, parent_ns) = match self.processes.get(&parent) {
            Some(p) => (p.env_group, p.ns),
            None => (0, ns),
        };
        // The parent's namespace, shared; the flags change it below.
        let ns_id = parent_ns;
        if let Some((_, refs)) = self.namespaces.get_mut(&parent_ns) {
            *refs += 1;
        }
        let mut host = host!(self, pid, env_group);
        let dot = match self.processes.get(&parent) {
            Some(p) => p.dot.fork(&mut host),
            None => match self.namespaces.get(&ns_id) {
                Some((ns, _)) => ns.root_location(&mut host),
                None => {
                    self.kernel.destroy(task);
                    return Err("no namespace".into());
                }
            },
        };
        let mut fds = Fds::new();
        for (child, from) in &request.fds {
            let Some(source) = self
                .processes
                .get(&parent)
                .and_then(|p| p.fds.get(u64::from(*from)))
            else {
                continue;
            };
            // A descriptor number past dup's limit is not passed.
            if *child as usize > MAX_FD {
                continue;
            }
            let fd = Fd {
                chan: host.dup(&source.chan),
                listing: source.listing.clone(),
            };
            if let Ok(Some(old)) = fds.put(u64::from(*child), fd) {
                host.close(old.chan);
            }
        }
        let name = request
            .argv
            .first()
            .cloned()
            .unwrap_or_else(|| request.path.clone());
        self.processes.insert(
            pid,
            Process {
                parent,
                name,
                thread,
                task,
                fds,
                ns: ns_id,
                dot,
                errstr: String::new(),
                env_group,
                nowait: false,
            },
        );
        *self.env_refs.entry(env_group).or_insert(0) += 1;
        self.by_thread.insert(thread, pid);
        self.next_pid += 1;
        // The child's own namespace or environment, before it runs.
        if request.flags != 0 {
            if let Err(e) = self.rfork(pid, request.flags) {
                self.kill(pid, String::from(e.as_str()));
                self.zombies.retain(|z| z.pid != pid);
                return Err(String::from(e.as_str()));
            }
        }
        self.update_snapshot();
        if let Some(process) = self.processes.get(&pid) {
            self.kernel.start(&process.task)?;
        }
        Ok(pid)
    }

    /// The bytes of a program file and its identity for the text cache.
    pub(crate) fn read_program(
        &mut self,
        pid: u32,
        path: &str,
    ) -> Result<(Vec<u8>, (char, u64)), String> {
        let location = self
            .resolve(pid, path)
            .map_err(|e| e.for_name(path).to_string())?;
        let group = self.processes.get(&pid).map_or(0, |p| p.env_group);
        let mut host = host!(self, pid, group);
        let chan = host.clone_chan(location.chan());
        location.close(&mut host);
        let chan = chan.map_err(|e| e.to_string())?;
        let result = (|| {
            let entry = host.table.get(chan)?.clone();
            let file = entry.file();
            let caller = host.caller;
            let servant = host.devices.servant(entry.letter)?;
            servant.open(&caller, &file, OpenMode::OREAD)?;
            // Sized from stat: programs carry debug information, and a
            // doubling Vec would need twice their size of heap.
            let length = servant.stat(&caller, &file)?.length as usize;
            let mut bytes = Vec::with_capacity(length);
            loop {
                match servant.read(&caller, &file, bytes.len() as u64, 1 << 20)? {
                    Io::Ready(data) if data.is_empty() => break,
                    Io::Ready(data) => bytes.extend_from_slice(&data),
                    Io::WouldBlock(_) => return Err(Error::new("program file would block")),
                }
            }
            if let Ok(chan) = host.table.get_mut(chan) {
                chan.mode = Some(OpenMode::OREAD);
            }
            Ok((bytes, (entry.letter, entry.qid.path)))
        })();
        host.close(chan);
        result.map_err(|e: Error| e.to_string())
    }
}
