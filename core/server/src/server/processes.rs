//! Processes: paging, ending them, rfork, /proc's snapshot, and making a
//! process from a program file read through the namespace.

use super::*;

impl Core {
    pub(super) fn page_fault(&mut self, thread: ThreadId, pid: u32, address: u64, ip: u64) {
        let Some(process) = self.processes.get_mut(&pid) else {
            return;
        };
        match process.memory.resolve(address, &mut self.frames) {
            Some(item) => {
                self.memory_changed = true;
                let Ok(tag) = MessageTag::new(0, 0, 2) else {
                    return;
                };
                let [first, second] = TypedItem::Map(item).encode();
                self.utcb.clear_receive_targets();
                self.utcb.message_registers[0] = tag.raw();
                self.utcb.message_registers[1] = first;
                self.utcb.message_registers[2] = second;
                let timeouts = Timeouts {
                    send: Timeout::Zero,
                    receive: Timeout::Zero,
                };
                // SAFETY: the item maps a page core lends to this process
                // alone (or shared read-only text); core's own UTCB.
                let _ =
                    unsafe { ipc_with_items(self.utcb, thread, FromSpecifier::Nobody, timeouts) };
            }
            None => {
                let status = format!("sys: trap: fault read addr={address:#x} pc={ip:#x}");
                print(format_args!("core: {}: {status}\n", process.name));
                self.kill(pid, status);
            }
        }
    }

    /// Ends a process: its task, memory, descriptors and namespace.
    pub(super) fn kill(&mut self, pid: u32, status: String) {
        let Some(process) = self.processes.remove(&pid) else {
            return;
        };
        if let Some(thread) = self.threads.remove(&pid) {
            self.by_thread.remove(&thread.raw());
        }
        let _ = space_destroy(process.task);
        process.memory.release(&mut self.frames);
        if let Some(mounts) = self.mounts() {
            mounts.forget(pid);
        }
        let mut host = host!(self, pid, process.env_group);
        for fd in process.fds.into_iter().flatten() {
            host.close(fd.chan);
        }
        process.dot.close(&mut host);
        self.release_namespace(pid, process.ns, process.env_group);
        self.release_env_group(process.env_group);
        self.woken = true;
        self.zombies.push(Zombie {
            pid,
            parent: process.parent,
            status,
        });
        self.update_snapshot();
    }

    /// Drops a process's reference to namespace `ns`; the last one clears
    /// it (its chans are closed).
    pub(super) fn release_namespace(&mut self, pid: u32, ns: u32, group: u32) {
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

    pub(super) fn environment(&mut self) -> Option<&mut Environment> {
        self.devices
            .get_mut('e')
            .ok()?
            .as_any_mut()?
            .downcast_mut::<Environment>()
    }

    /// Drops a process's reference to environment group `group`; the last
    /// one forgets its variables. The boot group 0 stays: the /env of the
    /// boot namespace is its directory.
    pub(super) fn release_env_group(&mut self, group: u32) {
        let refs = self.env_refs.entry(group).or_insert(1);
        *refs = refs.saturating_sub(1);
        if *refs == 0 && group != 0 {
            self.env_refs.remove(&group);
            if let Some(environment) = self.environment() {
                environment.drop_group(group);
            }
        }
    }

    /// rfork(2) without RFPROC: a copy or a clean namespace, a copy or a
    /// clean environment group, for the calling process alone.
    pub(super) fn rfork(&mut self, pid: u32, flags: u64) -> Result<(), Error> {
        use core_abi::{RFCENVG, RFCNAMEG, RFENVG, RFNAMEG};
        check_rfork(flags)?;
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
            let environment = self.environment().ok_or(Error::BAD_ARG)?;
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

    pub(super) fn update_snapshot(&mut self) {
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
                memory_kb: process.memory.kilobytes(),
                ns,
                ..ProcessInfo::default()
            });
        }
        *SNAPSHOT.lock() = list;
    }

    /// Starts the program of `request` as a child of `parent` (0 for the
    /// first process, in namespace `ns`), sharing the parent's namespace
    /// and environment group unless the request's rfork flags say
    /// otherwise.
    pub(super) fn create_process(
        &mut self,
        parent: u32,
        ns: u32,
        request: &SpawnRequest,
    ) -> Result<u32, String> {
        check_rfork(request.flags).map_err(|e| e.as_str().to_string())?;
        let (bytes, identity) = self.read_program(parent, &request.path)?;
        let pid = self.next_pid;
        let mut memory = Memory::default();
        let entry = memory.load(
            &bytes,
            identity,
            &mut self.frames,
            &mut self.arena,
            &mut self.text,
        )?;
        memory.set_arguments(
            &mut self.frames,
            self.me.raw(),
            u64::from(pid),
            &request.argv,
        )?;
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
                None => return Err("no namespace".into()),
            },
        };
        let mut fds: Vec<Option<Fd>> = Vec::new();
        for (child, from) in &request.fds {
            let Some(Some(source)) = self
                .processes
                .get(&parent)
                .and_then(|p| p.fds.get(*from as usize))
            else {
                continue;
            };
            let chan = host.dup(&source.chan);
            let child = *child as usize;
            if fds.len() <= child {
                fds.resize_with(child + 1, || None);
            }
            fds[child] = Some(Fd {
                chan,
                listing: source.listing.clone(),
            });
        }
        let task = space_create().map_err(|e| format!("space_create: {e:?}"))?;
        // SAFETY: the task is new and not core's own.
        let thread = unsafe { thread_create(task, self.me, UTCB) }
            .map_err(|e| format!("thread_create: {e:?}"))?;
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
                task,
                memory,
                fds,
                ns: ns_id,
                dot,
                errstr: String::new(),
                env_group,
            },
        );
        *self.env_refs.entry(env_group).or_insert(0) += 1;
        self.by_thread.insert(thread.raw(), pid);
        self.threads.insert(pid, thread);
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
        let control = ExchangeControl::SET_INSTRUCTION_POINTER
            | ExchangeControl::SET_STACK_POINTER
            | ExchangeControl::RESUME;
        // SAFETY: a new thread of another task, started at its ELF entry
        // on the stack the layout gives it.
        unsafe { exchange_registers(thread, control, entry, STACK_TOP, ThreadId::NIL) }
            .map_err(|e| format!("exchange_registers: {e:?}"))?;
        Ok(pid)
    }

    /// The bytes of a program file and its identity for the text cache.
    pub(super) fn read_program(
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
            let servant = host.devices.get_mut(entry.letter)?;
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
