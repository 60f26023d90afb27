//! The system calls: resolving names, descriptors, and one arm per
//! `core-abi` call.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use core_abi::{decode_spawn, Call, FileInfo};
use kasane_mount::{attach_spec, ReadTarget};
use kasane_namespace::{join, ChanId, Chans, MountFlags, MountLink};
use kasane_servant::{Caller, Chan, ChanHandle, Error, Io, Opened, Servant, ServantTable};
use ninep::{FileMode, OpenMode, Stat};

use crate::park::{Outcome, Request};
use crate::system::{host, Loc};
use crate::userlink::PostedFd;
use crate::{Fd, Kernel, System, MAX_FD, USER};

/// A descriptor's chan as I/O sees it (see `fd_file`).
pub(crate) struct FdFile {
    pub(crate) handle: ChanHandle,
    pub(crate) letter: char,
    pub(crate) file: kasane_servant::File,
    pub(crate) offset: u64,
}

pub(crate) fn error(e: Error) -> Outcome {
    Outcome::Fail(e.as_str().to_string())
}

/// A directory entry as `core-abi` packs it.
pub(crate) fn info_of(stat: &Stat) -> FileInfo {
    FileInfo {
        name: stat.name.clone(),
        length: stat.length,
        mode: stat.mode.bits(),
        qid_path: stat.qid.path,
        uid: stat.uid.clone(),
        kind: char::from_u32(u32::from(stat.kind)).unwrap_or('?'),
    }
}

impl<K: Kernel> System<K> {
    pub(crate) fn resolve(&mut self, pid: u32, path: &str) -> Result<Loc, Error> {
        let Some(process) = self.processes.get(&pid) else {
            // Core itself (pid 0), starting the first process.
            let (ns, _) = self.namespaces.get(&self.boot_ns).ok_or(Error::BAD_FD)?;
            let mut host = host!(self, 0, 0);
            let dot = ns.root_location(&mut host);
            let result = ns.resolve(&mut host, &dot, path);
            dot.close(&mut host);
            return result;
        };
        let (ns, _) = self.namespaces.get(&process.ns).ok_or(Error::BAD_FD)?;
        let mut host = host!(self, pid, process.env_group);
        ns.resolve(&mut host, &process.dot, path)
    }

    pub(crate) fn new_fd(&mut self, pid: u32, fd: Fd) -> u64 {
        match self.processes.get_mut(&pid) {
            Some(process) => process.fds.insert(fd),
            None => u64::MAX,
        }
    }

    /// Opens the file at `location` (which is consumed).
    pub(crate) fn open_location(
        &mut self,
        pid: u32,
        location: Loc,
        mode: OpenMode,
    ) -> Result<Fd, Error> {
        let group = self.processes.get(&pid).map_or(0, |p| p.env_group);
        let ns_id = self.processes.get(&pid).map_or(0, |p| p.ns);
        let mut host = host!(self, pid, group);
        // An open gets a chan of its own (cclone): the location's may be a
        // union member the namespace holds, whose offset is not this fd's.
        let chan = match host.clone_chan(location.chan()) {
            Ok(chan) => chan,
            Err(e) => {
                location.close(&mut host);
                return Err(e);
            }
        };
        let result = (|| {
            let entry = host.table.get(chan)?.clone();
            let caller = host.caller;
            let opened = host
                .devices
                .servant(entry.letter)?
                .open(&caller, &entry.file(), mode)?;
            let qid = match opened {
                Opened::File(qid) => qid,
                // srv(3): the descriptor holds the posted link, for mount.
                Opened::Link(link) => {
                    let chan_entry = host.table.get_mut(chan)?;
                    chan_entry.mode = Some(mode);
                    chan_entry.link = Some(link);
                    return Ok(None);
                }
            };
            let chan_entry = host.table.get_mut(chan)?;
            chan_entry.mode = Some(mode);
            chan_entry.qid = qid;
            let listing = if qid.kind.contains(ninep::QidType::DIR) {
                let (ns, _) = self.namespaces.get(&ns_id).ok_or(Error::BAD_FD)?;
                let entries = ns.read_dir(&mut host, &location)?;
                let mut bytes = Vec::new();
                for stat in &entries {
                    info_of(stat).encode_into(&mut bytes);
                }
                Some(bytes)
            } else {
                None
            };
            Ok(listing)
        })();
        location.close(&mut host);
        match result {
            Ok(listing) => Ok(Fd { chan, listing }),
            Err(e) => {
                host.close(chan);
                Err(e)
            }
        }
    }

    /// The chan handle of a process's descriptor.
    pub(crate) fn fd_handle(&self, pid: u32, fd: u64) -> Option<ChanHandle> {
        Some(self.processes.get(&pid)?.fds.get(fd)?.chan)
    }

    /// What a read, write or seek needs of a descriptor's chan, without
    /// copying the chan (its name is a string).
    pub(crate) fn fd_file(&self, pid: u32, fd: u64) -> Result<FdFile, Error> {
        let handle = self.fd_handle(pid, fd).ok_or(Error::BAD_FD)?;
        let chan = self.table.get(handle)?;
        Ok(FdFile {
            handle,
            letter: chan.letter,
            file: chan.file(),
            offset: chan.offset,
        })
    }

    /// mount(2) once its arguments are read: attaches `spec` on the link
    /// of `link_chan` (an opened /srv file) through `#M` and mounts that
    /// root on `old` in `pid`'s namespace (pid 0: the boot namespace).
    pub(crate) fn mount(
        &mut self,
        pid: u32,
        group: u32,
        link_chan: &Chan,
        old: &str,
        flags: MountFlags,
        spec: &str,
    ) -> Result<(), Error> {
        let link = link_chan.link.ok_or(Error::BAD_USE_FD)?;
        let old_location = self.resolve(pid, old).map_err(|e| e.for_name(old))?;
        let caller = Caller::new(pid, USER).with_env_group(group);
        let root = self
            .servants
            .mount
            .attach(&caller, &attach_spec(link, spec));
        let root = match root {
            Ok(file) => {
                let mut chan = Chan::new('M', file, old);
                chan.link = Some(link);
                self.table.insert(chan)
            }
            Err(e) => {
                let mut host = host!(self, pid, group);
                old_location.close(&mut host);
                return Err(e);
            }
        };
        let id = ChanId {
            kind: link_chan.letter,
            dev: link_chan.dev,
            path: link_chan.qid.path,
        };
        let ns_id = match self.processes.get(&pid) {
            Some(process) => process.ns,
            None => self.boot_ns,
        };
        let (ns, _) = self.namespaces.get_mut(&ns_id).ok_or(Error::BAD_FD)?;
        let mut host = host!(self, pid, group);
        let mount_link = MountLink {
            id,
            path: &link_chan.name,
            spec,
        };
        let result = ns.mount(&mut host, root, &old_location, flags, mount_link);
        old_location.close(&mut host);
        result
    }

    pub(crate) fn fd_chan(&self, pid: u32, fd: u64) -> Result<(ChanHandle, Chan), Error> {
        let process = self.processes.get(&pid).ok_or(Error::BAD_FD)?;
        let entry = process.fds.get(fd).ok_or(Error::BAD_FD)?;
        Ok((entry.chan, self.table.get(entry.chan)?.clone()))
    }

    pub(crate) fn dispatch(&mut self, request: &Request) -> Outcome {
        match self.dispatch_inner(request) {
            Ok(outcome) => outcome,
            Err(e) => error(e),
        }
    }

    pub(crate) fn item(request: &Request, index: usize) -> Result<String, Error> {
        let bytes = request.items.get(index).ok_or(Error::BAD_ARG)?;
        String::from_utf8(bytes.clone()).map_err(|_| Error::BAD_CHAR)
    }

    pub(crate) fn dispatch_inner(&mut self, request: &Request) -> Result<Outcome, Error> {
        let pid = request.pid;
        let [w1, w2, w3, w4] = request.words;
        let group = self.processes.get(&pid).map_or(0, |p| p.env_group);
        match request.call {
            Call::Open => {
                let path = Self::item(request, 0)?;
                let mode = OpenMode::from_bits_retain(w1 as u8);
                let location = self.resolve(pid, &path).map_err(|e| e.for_name(&path))?;
                let fd = self.open_location(pid, location, mode)?;
                // A link keeps the name it was opened by, for ns (mount(2)
                // records it as Plan 9 records c->path).
                let name = match self.processes.get(&pid) {
                    Some(p) if !path.starts_with('/') => join(&p.dot.path(), &path),
                    _ => kasane_namespace::cleanname(&path),
                };
                if let Ok(chan) = self.table.get_mut(fd.chan) {
                    if chan.link.is_some() {
                        chan.name = name;
                    }
                }
                Ok(Outcome::Reply([self.new_fd(pid, fd), 0], None))
            }
            Call::Create => {
                let path = Self::item(request, 0)?;
                let mode = OpenMode::from_bits_retain(w1 as u8);
                let (dir, name) = match path.rsplit_once('/') {
                    Some(("", name)) => ("/".to_string(), name.to_string()),
                    Some((dir, name)) => (dir.to_string(), name.to_string()),
                    None => (".".to_string(), path.clone()),
                };
                // Plan 9's create of an existing file truncates it.
                match self.resolve(pid, &path) {
                    Ok(location) => {
                        let fd = self.open_location(pid, location, mode | OpenMode::OTRUNC)?;
                        return Ok(Outcome::Reply([self.new_fd(pid, fd), 0], None));
                    }
                    // A server still to answer is not a missing file.
                    Err(e) if e == Error::PENDING => return Err(e),
                    Err(_) => {}
                }
                let location = self.resolve(pid, &dir).map_err(|e| e.for_name(&dir))?;
                let process = self.processes.get(&pid).ok_or(Error::BAD_FD)?;
                let (ns, _) = self.namespaces.get(&process.ns).ok_or(Error::BAD_FD)?;
                let mut host = host!(self, pid, group);
                let target = ns.create_target(&mut host, &location);
                location.close(&mut host);
                let target = target?;
                let result = (|| {
                    let entry = host.table.get(target)?.clone();
                    let caller = host.caller;
                    let file = host.devices.servant(entry.letter)?.create(
                        &caller,
                        &entry.file(),
                        &name,
                        FileMode::from_bits_retain(w2 as u32),
                        mode,
                    )?;
                    let mut chan = Chan::new(entry.letter, file, join(&entry.name, &name));
                    chan.mode = Some(mode);
                    Ok(host.table.insert(chan))
                })();
                host.close(target);
                let chan = result?;
                let fd = self.new_fd(
                    pid,
                    Fd {
                        chan,
                        listing: None,
                    },
                );
                Ok(Outcome::Reply([fd, 0], None))
            }
            Call::Read | Call::Pread => {
                let chan = self.fd_file(pid, w1)?;
                let handle = chan.handle;
                // /proc shows the memory processes have touched since.
                if chan.letter == 'p' && core::mem::take(&mut self.memory_changed) {
                    self.update_snapshot();
                }
                let count = (w2 as usize).min(core_abi::MAX_IO);
                let offset = if request.call == Call::Pread {
                    w3
                } else {
                    chan.offset
                };
                let listing = self
                    .processes
                    .get(&pid)
                    .and_then(|p| p.fds.get(w1))
                    .and_then(|fd| fd.listing.clone());
                let (data, aimed) = match listing {
                    Some(bytes) => {
                        // Whole entries only: find how many fit.
                        let start = (offset as usize).min(bytes.len());
                        let mut rest = &bytes[start..];
                        let mut end = start;
                        while FileInfo::decode_from(&mut rest).is_some() {
                            let next = bytes.len() - rest.len();
                            if next - start > count {
                                break;
                            }
                            end = next;
                        }
                        (bytes[start..end].to_vec(), None)
                    }
                    None => {
                        let caller = Caller::new(pid, USER).with_env_group(group);
                        // The zero-copy read (docs/performance.md): a mounted
                        // file's data may go straight into the reader's
                        // buffer (w4), if core finds it the reader's own
                        // writable memory; the reply then carries only the
                        // count.
                        let aim = match self.processes.get(&pid) {
                            Some(p) if chan.letter == 'M' && count > 0 => self
                                .kernel
                                .buffer_alias(&p.task, w4, count)
                                .map(|address| ReadTarget {
                                    address,
                                    length: count,
                                }),
                            _ => None,
                        };
                        self.servants.mount.aim_read(aim);
                        let read = self.servants.servant(chan.letter).and_then(|servant| {
                            servant.read(&caller, &chan.file, offset, count as u32)
                        });
                        let aimed = aim.and_then(|_| self.servants.mount.take_aimed());
                        self.servants.mount.aim_read(None);
                        match read? {
                            Io::Ready(data) => (data, aimed),
                            Io::WouldBlock(_) => return Ok(Outcome::Park),
                        }
                    }
                };
                let length = aimed.unwrap_or(data.len());
                if request.call == Call::Read {
                    self.table.get_mut(handle)?.offset += length as u64;
                }
                Ok(Outcome::Reply([length as u64, 0], Some(data)))
            }
            Call::Write | Call::Pwrite => {
                let chan = self.fd_file(pid, w1)?;
                let handle = chan.handle;
                let empty = Vec::new();
                let data = request.items.first().unwrap_or(&empty);
                let offset = if request.call == Call::Pwrite {
                    w2
                } else {
                    chan.offset
                };
                // srv(3): a write to a /srv file names a descriptor,
                // whose link (a pipe end's made now) the write posts.
                let posted = if chan.letter == 's' {
                    self.posted_fd(pid, w1, data)
                } else {
                    PostedFd {
                        fd: None,
                        link: Err(Error::BAD_FD),
                    }
                };
                let caller = Caller::new(pid, USER)
                    .with_env_group(group)
                    .with_fds(&posted);
                let written = match self
                    .servants
                    .servant(chan.letter)?
                    .write(&caller, &chan.file, offset, data)?
                {
                    Io::Ready(n) => n,
                    Io::WouldBlock(_) => return Ok(Outcome::Park),
                };
                if request.call == Call::Write {
                    self.table.get_mut(handle)?.offset += u64::from(written);
                }
                Ok(Outcome::Reply([u64::from(written), 0], None))
            }
            Call::Seek => {
                let chan = self.fd_file(pid, w1)?;
                let handle = chan.handle;
                let base = match w3 {
                    core_abi::SEEK_SET => 0,
                    core_abi::SEEK_CUR => chan.offset as i64,
                    _ => {
                        let caller = Caller::new(pid, USER).with_env_group(group);
                        self.servants
                            .servant(chan.letter)?
                            .stat(&caller, &chan.file)?
                            .length as i64
                    }
                };
                let offset = base.checked_add(w2 as i64).filter(|o| *o >= 0);
                let offset = offset.ok_or(Error::BAD_ARG)? as u64;
                self.table.get_mut(handle)?.offset = offset;
                Ok(Outcome::Reply([offset, 0], None))
            }
            Call::Close => {
                let process = self.processes.get_mut(&pid).ok_or(Error::BAD_FD)?;
                let fd = process.fds.take(w1)?;
                let mut host = host!(self, pid, group);
                host.close(fd.chan);
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Stat | Call::Fstat => {
                let stat = if request.call == Call::Stat {
                    let path = Self::item(request, 0)?;
                    let location = self.resolve(pid, &path).map_err(|e| e.for_name(&path))?;
                    let chan = self.table.get(*location.chan())?.clone();
                    let caller = Caller::new(pid, USER).with_env_group(group);
                    // The location goes after the stat: its chan may be
                    // the last one on a mounted file's fid.
                    let stat = self
                        .servants
                        .servant(chan.letter)
                        .and_then(|s| s.stat(&caller, &chan.file()));
                    let mut host = host!(self, pid, group);
                    location.close(&mut host);
                    stat?
                } else {
                    let (_, chan) = self.fd_chan(pid, w1)?;
                    let caller = Caller::new(pid, USER).with_env_group(group);
                    self.servants
                        .servant(chan.letter)?
                        .stat(&caller, &chan.file())?
                };
                let mut bytes = Vec::new();
                info_of(&stat).encode_into(&mut bytes);
                Ok(Outcome::Reply([0, 0], Some(bytes)))
            }
            Call::Remove => {
                let path = Self::item(request, 0)?;
                let location = self.resolve(pid, &path).map_err(|e| e.for_name(&path))?;
                let chan = self.table.get(*location.chan())?.clone();
                let caller = Caller::new(pid, USER).with_env_group(group);
                let result = self
                    .servants
                    .servant(chan.letter)
                    .and_then(|s| s.remove(&caller, &chan.file()));
                let mut host = host!(self, pid, group);
                location.close(&mut host);
                result?;
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Chdir => {
                let path = Self::item(request, 0)?;
                let location = self.resolve(pid, &path).map_err(|e| e.for_name(&path))?;
                let mut host = host!(self, pid, group);
                if !host.is_dir(location.chan()) {
                    location.close(&mut host);
                    return Err(Error::NOT_DIR);
                }
                let process = self.processes.get_mut(&pid).ok_or(Error::BAD_FD)?;
                let old = core::mem::replace(&mut process.dot, location);
                old.close(&mut host);
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Bind => {
                let new = Self::item(request, 0)?;
                let old = Self::item(request, 1)?;
                let flags = MountFlags::new(w1 as u32)?;
                let new_location = self.resolve(pid, &new).map_err(|e| e.for_name(&new))?;
                let old_location = match self.resolve(pid, &old) {
                    Ok(location) => location,
                    Err(e) => {
                        let mut host = host!(self, pid, group);
                        new_location.close(&mut host);
                        return Err(e.for_name(&old));
                    }
                };
                let ns_id = self.processes.get(&pid).ok_or(Error::BAD_FD)?.ns;
                let (ns, _) = self.namespaces.get_mut(&ns_id).ok_or(Error::BAD_FD)?;
                let mut host = host!(self, pid, group);
                let result = ns.bind(&mut host, &new_location, &old_location, flags);
                new_location.close(&mut host);
                old_location.close(&mut host);
                result?;
                self.update_snapshot();
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Unmount => {
                let (new, old) = if w1 != 0 {
                    (Some(Self::item(request, 0)?), Self::item(request, 1)?)
                } else {
                    (None, Self::item(request, 0)?)
                };
                let member = match &new {
                    Some(new) => {
                        let location = self.resolve(pid, new).map_err(|e| e.for_name(new))?;
                        let mut host = host!(self, pid, group);
                        let id = host.id(location.chan());
                        location.close(&mut host);
                        Some(id)
                    }
                    None => None,
                };
                let old_location = self.resolve(pid, &old).map_err(|e| e.for_name(&old))?;
                let ns_id = self.processes.get(&pid).ok_or(Error::BAD_FD)?.ns;
                let (ns, _) = self.namespaces.get_mut(&ns_id).ok_or(Error::BAD_FD)?;
                let mut host = host!(self, pid, group);
                let result = ns.unmount(&mut host, &old_location, member.as_ref());
                old_location.close(&mut host);
                result?;
                self.update_snapshot();
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Mount => {
                // mount(2) of a pipe end makes it a user-level link.
                self.link_of_fd(pid, w1, "pipe")?;
                let (_, link_chan) = self.fd_chan(pid, w1)?;
                let flags = MountFlags::new(w2 as u32)?;
                let old = Self::item(request, 0)?;
                let spec = Self::item(request, 1).unwrap_or_default();
                self.mount(pid, group, &link_chan, &old, flags, &spec)?;
                self.update_snapshot();
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Wstat => {
                // Renaming within the directory: the one change served.
                let path = Self::item(request, 0)?;
                let name = Self::item(request, 1)?;
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    return Err(Error::FILE_NAME);
                }
                let location = self.resolve(pid, &path).map_err(|e| e.for_name(&path))?;
                let chan = self.table.get(*location.chan())?.clone();
                let caller = Caller::new(pid, USER).with_env_group(group);
                // stat(5): every field but the name says "don't touch".
                let mut stat = Stat::dont_touch();
                stat.name = name;
                let result = self
                    .servants
                    .servant(chan.letter)
                    .and_then(|s| s.wstat(&caller, &chan.file(), &stat));
                let mut host = host!(self, pid, group);
                location.close(&mut host);
                result?;
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Rfork => {
                self.rfork(pid, w1)?;
                Ok(Outcome::Reply([0, 0], None))
            }
            Call::Pipe => {
                let directory = self.resolve(pid, "#|")?;
                let process = self.processes.get(&pid).ok_or(Error::BAD_FD)?;
                let (ns, _) = self.namespaces.get(&process.ns).ok_or(Error::BAD_FD)?;
                let mut host = host!(self, pid, group);
                let ends = [
                    ns.walk(&mut host, &directory, "data"),
                    ns.walk(&mut host, &directory, "data1"),
                ];
                directory.close(&mut host);
                let [Ok(first), Ok(second)] = ends else {
                    return Err(Error::new("can't make a pipe"));
                };
                let first = self.open_location(pid, first, OpenMode::ORDWR)?;
                let second = self.open_location(pid, second, OpenMode::ORDWR)?;
                let (a, b) = (self.new_fd(pid, first), self.new_fd(pid, second));
                Ok(Outcome::Reply([a, b], None))
            }
            Call::Dup => {
                let process = self.processes.get(&pid).ok_or(Error::BAD_FD)?;
                let source = process.fds.get(w1).ok_or(Error::BAD_FD)?;
                let (chan, listing) = (source.chan, source.listing.clone());
                // The target is checked before the chan gains a reference.
                if w2 != u64::MAX && w2 > MAX_FD as u64 {
                    return Err(Error::BAD_FD);
                }
                self.table.incref(chan)?;
                let fd = Fd { chan, listing };
                if w2 == u64::MAX {
                    return Ok(Outcome::Reply([self.new_fd(pid, fd), 0], None));
                }
                let process = self.processes.get_mut(&pid).ok_or(Error::BAD_FD)?;
                let old = process.fds.put(w2, fd)?;
                if let Some(old) = old {
                    let mut host = host!(self, pid, group);
                    host.close(old.chan);
                }
                Ok(Outcome::Reply([w2, 0], None))
            }
            Call::Spawn => {
                let block = request.items.first().ok_or(Error::BAD_ARG)?;
                let spawn = decode_spawn(block).ok_or(Error::BAD_ARG)?;
                let ns = self.processes.get(&pid).ok_or(Error::BAD_FD)?.ns;
                let child = self.create_process(pid, ns, &spawn).map_err(Error::new)?;
                Ok(Outcome::Reply([u64::from(child), 0], None))
            }
            Call::Exits => {
                let status = request
                    .items
                    .first()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                self.kill(pid, status);
                Ok(Outcome::Silent)
            }
            Call::Wait => {
                let wanted = w1 as u32;
                if let Some(index) = self
                    .zombies
                    .iter()
                    .position(|z| z.parent == pid && (wanted == 0 || z.pid == wanted))
                {
                    let zombie = self.zombies.remove(index);
                    return Ok(Outcome::Reply(
                        [u64::from(zombie.pid), 0],
                        Some(zombie.status.into_bytes()),
                    ));
                }
                // A dissociated child (RFNOWAIT) leaves no record to wait for.
                let living = self.processes.iter().any(|(child, p)| {
                    p.parent == pid && !p.nowait && (wanted == 0 || *child == wanted)
                });
                if living {
                    Ok(Outcome::Park)
                } else {
                    Err(Error::new("no living children"))
                }
            }
            Call::Sleep => {
                let now = self.kernel.now();
                Ok(Outcome::Sleep(now + w1.saturating_mul(1000)))
            }
            Call::Getpid => Ok(Outcome::Reply([u64::from(pid), 0], None)),
            Call::Errstr => {
                let text = self
                    .processes
                    .get(&pid)
                    .map(|p| p.errstr.clone())
                    .unwrap_or_default();
                Ok(Outcome::Reply([0, 0], Some(text.into_bytes())))
            }
        }
    }
}
