//! The FAT volumes of one disk served as 9P2000 through `ninep-server`.
//!
//! A fid's node is a number into this server's own table, never reused,
//! which also serves as the qid path. Each table entry holds one pin on the
//! `hadris-fat` node (so its id survives renames) and remembers its parent
//! and name, because FAT removes and renames by (directory, name).
//!
//! Durability rule (docs/storage.md): every reply to a change (Rwrite,
//! Rcreate, Rremove, Rwstat, and Ropen with OTRUNC) is returned only after
//! `sync` wrote the data, FAT and directory sectors, cleared the volume's
//! dirty mark and flushed the device, which for the ATA driver is FLUSH
//! CACHE. (`fsync` alone would leave the dirty mark a write set until the
//! next `sync`.) A change whose flush fails is answered with the error,
//! never with success.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use hadris_fat::sync::FatFs;
use hadris_fs::{
    Clock, DateTime, DirCursor, ErrorKind, FileType, Metadata, MountOptions, Name, NodeId,
    OpenMode as FsOpenMode, Permissions, RenameMode, SetAttr,
};
use hadris_storage::sync::BlockDevice;
use hadris_storage::{BlockIndex, Partition};
use ninep::{FileMode, OpenMode, Qid, QidType, Stat};
use ninep_server::{Caller, Error, FileServer, Reply, StatChanges};

use crate::disk::{self, Extent, Shared, SECTOR};

/// How many nodes the table may hold before walks are refused; each holds
/// a pin in `hadris-fat`'s node table.
pub const MAX_NODES: usize = 4096;

type Volume<D> = FatFs<Partition<Shared<D>>>;

struct Entry {
    volume: u8,
    id: NodeId,
    /// Table key of the parent; the root's is itself.
    parent: u64,
    name: String,
    dir: bool,
    /// Bumped by every change this server makes, for qid.vers.
    version: u32,
    removed: bool,
}

/// A FAT file server for every FAT volume of one disk. Attach names pick
/// the volume: `""` the first one, `"0"` a whole-disk (superfloppy) volume,
/// `"1"`–`"4"` an MBR primary partition.
pub struct FatServer<D: BlockDevice> {
    disk: Shared<D>,
    extents: Result<Vec<Extent>, String>,
    volumes: BTreeMap<u8, Volume<D>>,
    table: BTreeMap<u64, Entry>,
    next_key: u64,
    clock: &'static dyn Clock,
}

impl<D: BlockDevice> core::fmt::Debug for FatServer<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FatServer")
            .field("volumes", &self.volumes.keys().collect::<Vec<_>>())
            .field("nodes", &self.table.len())
            .finish()
    }
}

/// A `hadris` error as the 9P string a client can act on: the Plan 9 text
/// where one fits (Linux maps those to errno values), else a "fat: ..."
/// sentence with the library's message.
fn to_ninep<E: core::fmt::Display>(error: hadris_fs::Error<E>) -> Error {
    if let Some(device) = error.device_error() {
        return Error::new(format!("fat: disk i/o error: {device}"));
    }
    match error.kind() {
        ErrorKind::NotFound | ErrorKind::InvalidHandle => Error::NOT_FOUND,
        ErrorKind::AlreadyExists => Error::EXISTS,
        ErrorKind::NotADirectory => Error::NOT_DIR,
        ErrorKind::IsADirectory => Error::IS_DIR,
        ErrorKind::DirectoryNotEmpty => Error::NOT_EMPTY,
        ErrorKind::NoSpace => Error::FULL,
        ErrorKind::ReadOnly => Error::PERMISSION_DENIED,
        ErrorKind::FileTooLarge => Error::FILE_TOO_BIG,
        ErrorKind::NameTooLong | ErrorKind::InvalidInput => Error::ILLEGAL_NAME,
        ErrorKind::Busy => Error::IN_USE,
        ErrorKind::Corrupt => Error::new(format!("fat: corrupt volume: {error}")),
        ErrorKind::Io => Error::new(format!("fat: disk i/o error: {error}")),
        _ => Error::new(format!("fat: {error}")),
    }
}

fn unix_seconds(time: Option<DateTime>) -> u32 {
    let seconds = time.map_or(0, |time| time.unix_seconds());
    u32::try_from(seconds.max(0)).unwrap_or(u32::MAX)
}

impl<D: BlockDevice> FatServer<D> {
    /// A server for `device`. Sector 0 is read now; a disk that is neither
    /// a FAT volume nor an MBR with one is kept, and every attach answers
    /// why.
    pub fn new(device: D, clock: &'static dyn Clock) -> Self {
        let mut disk = Shared::new(device);
        let mut sector = [0u8; SECTOR];
        let extents = match disk.read_blocks(BlockIndex::new(0), &mut sector) {
            Err(error) => Err(match error.device_error() {
                Some(device) => format!("fat: cannot read sector 0: {device}"),
                None => format!("fat: cannot read sector 0: {error}"),
            }),
            Ok(()) => {
                let sectors = disk.block_count();
                disk::volumes(&sector, sectors).map_err(|error| format!("fat: {error}"))
            }
        };
        Self {
            disk,
            extents,
            volumes: BTreeMap::new(),
            table: BTreeMap::new(),
            next_key: 1,
            clock,
        }
    }

    /// A server whose device holds no disk it can use (the driver found no
    /// drive, or a drive that is not a disk): nothing is read, and every
    /// attach answers `fat: no disk: WHY`, so a boot mount of an empty
    /// channel fails in one clear line and the server stays to say so.
    pub fn without_disk(
        device: D,
        clock: &'static dyn Clock,
        why: core::fmt::Arguments<'_>,
    ) -> Self {
        Self {
            disk: Shared::new(device),
            extents: Err(format!("fat: no disk: {why}")),
            volumes: BTreeMap::new(),
            table: BTreeMap::new(),
            next_key: 1,
            clock,
        }
    }

    /// Runs `f` on the disk device (the runtime's statistics, tests).
    pub fn with_disk<R>(&self, f: impl FnOnce(&mut D) -> R) -> R {
        self.disk.with(f)
    }

    /// The volume numbers the disk offers, or why it offers none.
    pub fn extents(&self) -> Result<&[Extent], &str> {
        self.extents.as_deref().map_err(String::as_str)
    }

    fn mount(&mut self, aname: &str) -> Result<u8, Error> {
        let extents = self
            .extents
            .as_ref()
            .map_err(|why| Error::new(why.clone()))?;
        let extent = if aname.is_empty() {
            extents.first().copied()
        } else {
            let number: u8 = aname.parse().map_err(|_| Error::BAD_SPEC)?;
            extents
                .iter()
                .copied()
                .find(|extent| extent.number == number)
        }
        .ok_or_else(|| Error::new(format!("fat: no FAT volume \"{aname}\" on this disk")))?;
        if self.volumes.contains_key(&extent.number) {
            return Ok(extent.number);
        }
        let size = SECTOR as u64;
        let window = Partition::new(
            self.disk.clone(),
            extent.first_sector * size,
            extent.sectors * size,
        );
        let options = MountOptions::new().with_clock(self.clock);
        let volume = FatFs::mount(window, options).map_err(|error| {
            Error::new(format!(
                "fat: volume {} is not a usable FAT file system: {}",
                extent.number,
                error.error()
            ))
        })?;
        self.volumes.insert(extent.number, volume);
        Ok(extent.number)
    }

    fn volume(&mut self, number: u8) -> Result<&mut Volume<D>, Error> {
        self.volumes.get_mut(&number).ok_or(Error::GONE)
    }

    fn entry(&self, key: u64) -> Result<&Entry, Error> {
        let entry = self.table.get(&key).ok_or(Error::REMOVED)?;
        if entry.removed {
            return Err(Error::REMOVED);
        }
        Ok(entry)
    }

    fn qid(entry: &Entry, key: u64) -> Qid {
        Qid {
            kind: if entry.dir {
                QidType::DIR
            } else {
                QidType::FILE
            },
            version: entry.version,
            path: key,
        }
    }

    /// Puts a freshly pinned node into the table, or finds it there (one
    /// pin per table entry: the extra one is dropped).
    fn remember(
        &mut self,
        volume: u8,
        id: NodeId,
        parent: u64,
        name: &str,
        dir: bool,
    ) -> Result<(u64, Qid), Error> {
        if let Some((&key, entry)) = self
            .table
            .iter_mut()
            .find(|(_, entry)| entry.volume == volume && entry.id == id && !entry.removed)
        {
            entry.parent = parent;
            name.clone_into(&mut entry.name);
            let qid = Self::qid(entry, key);
            self.volume(volume)?.forget(id, 1);
            return Ok((key, qid));
        }
        if self.table.len() >= MAX_NODES {
            self.volume(volume)?.forget(id, 1);
            return Err(Error::new("fat: too many files in use"));
        }
        let key = self.next_key;
        self.next_key += 1;
        let entry = Entry {
            volume,
            id,
            parent,
            name: name.to_string(),
            dir,
            version: 0,
            removed: false,
        };
        let qid = Self::qid(&entry, key);
        self.table.insert(key, entry);
        Ok((key, qid))
    }

    fn to_stat(&self, key: u64, entry: &Entry, meta: &Metadata) -> Stat {
        let dir = meta.file_type() == FileType::Dir;
        // FAT keeps one read-only bit and no owners: everyone may read,
        // and write unless the bit is set.
        let writable = meta.permissions().bits() & 0o200 != 0;
        let mut mode = if writable { 0o777 } else { 0o555 };
        if dir {
            mode |= FileMode::DMDIR.bits();
        }
        let name = if entry.parent == key {
            String::from("/")
        } else {
            entry.name.clone()
        };
        Stat {
            kind: 0,
            dev: 0,
            qid: Self::qid(entry, key),
            mode: FileMode::from_bits_retain(mode),
            atime: unix_seconds(meta.accessed().or(meta.modified())),
            mtime: unix_seconds(meta.modified()),
            length: if dir { 0 } else { meta.len() },
            name,
            uid: String::from("fat"),
            gid: String::from("fat"),
            muid: String::from("fat"),
        }
    }

    fn bump(&mut self, key: u64) {
        if let Some(entry) = self.table.get_mut(&key) {
            entry.version = entry.version.wrapping_add(1);
        }
    }

    /// Writes all of `data` at `offset` and makes it durable.
    fn write_durably(&mut self, key: u64, offset: u64, data: &[u8]) -> Result<u32, Error> {
        let (volume, id) = {
            let entry = self.entry(key)?;
            (entry.volume, entry.id)
        };
        let count = u32::try_from(data.len()).map_err(|_| Error::TOO_BIG)?;
        let fs = self.volume(volume)?;
        fs.open(id, FsOpenMode::Write).map_err(to_ninep)?;
        let mut done = 0usize;
        let mut result = Ok(());
        while done < data.len() {
            match fs.write(id, offset + done as u64, &data[done..]) {
                Ok(0) => {
                    result = Err(Error::FULL);
                    break;
                }
                Ok(n) => done += n,
                Err(error) => {
                    result = Err(to_ninep(error));
                    break;
                }
            }
        }
        let closed = fs.close(id).map_err(to_ninep);
        result?;
        closed?;
        fs.sync().map_err(to_ninep)?;
        self.bump(key);
        Ok(count)
    }
}

impl<D: BlockDevice> FileServer for FatServer<D> {
    type Node = u64;

    fn attach(&mut self, _uname: &str, aname: &str) -> Result<(u64, Qid), Error> {
        let number = self.mount(aname)?;
        let root = self.volume(number)?.root();
        if let Some((&key, entry)) = self
            .table
            .iter()
            .find(|(_, entry)| entry.volume == number && entry.id == root)
        {
            return Ok((key, Self::qid(entry, key)));
        }
        let key = self.next_key;
        self.next_key += 1;
        let entry = Entry {
            volume: number,
            id: root,
            parent: key,
            name: String::from("/"),
            dir: true,
            version: 0,
            removed: false,
        };
        let qid = Self::qid(&entry, key);
        self.table.insert(key, entry);
        Ok((key, qid))
    }

    fn walk(&mut self, _caller: &Caller<'_>, dir: &u64, name: &str) -> Result<(u64, Qid), Error> {
        let (volume, id, parent) = {
            let entry = self.entry(*dir)?;
            (entry.volume, entry.id, entry.parent)
        };
        if name == ".." {
            let entry = self.entry(parent)?;
            return Ok((parent, Self::qid(entry, parent)));
        }
        let fs = self.volume(volume)?;
        let found = fs.lookup(id, Name::new(name)).map_err(to_ninep)?;
        let meta = match fs.stat(found) {
            Ok(meta) => meta,
            Err(error) => {
                fs.forget(found, 1);
                return Err(to_ninep(error));
            }
        };
        let is_dir = meta.file_type() == FileType::Dir;
        self.remember(volume, found, *dir, name, is_dir)
    }

    fn stat(&mut self, node: &u64) -> Result<Stat, Error> {
        let (volume, id) = {
            let entry = self.entry(*node)?;
            (entry.volume, entry.id)
        };
        let meta = self.volume(volume)?.stat(id).map_err(to_ninep)?;
        let entry = self.entry(*node)?;
        Ok(self.to_stat(*node, entry, &meta))
    }

    fn open(&mut self, _caller: &Caller<'_>, node: &u64, mode: OpenMode) -> Result<Qid, Error> {
        let (volume, id, dir) = {
            let entry = self.entry(*node)?;
            (entry.volume, entry.id, entry.dir)
        };
        if mode.contains(OpenMode::OTRUNC) && !dir {
            let fs = self.volume(volume)?;
            fs.truncate(id, 0).map_err(to_ninep)?;
            fs.sync().map_err(to_ninep)?;
            self.bump(*node);
        }
        let entry = self.entry(*node)?;
        Ok(Self::qid(entry, *node))
    }

    fn create(
        &mut self,
        _caller: &Caller<'_>,
        dir: &u64,
        name: &str,
        perm: FileMode,
        _mode: OpenMode,
    ) -> Result<(u64, Qid), Error> {
        let (volume, id) = {
            let entry = self.entry(*dir)?;
            (entry.volume, entry.id)
        };
        let is_dir = perm.is_dir();
        let mut attrs = SetAttr::new();
        if perm.bits() & 0o222 == 0 {
            attrs = attrs.with_permissions(Permissions::new(0o555));
        }
        let fs = self.volume(volume)?;
        let made = if is_dir {
            fs.mkdir(id, Name::new(name), &attrs)
        } else {
            fs.create(id, Name::new(name), &attrs)
        }
        .map_err(to_ninep)?;
        if let Err(error) = fs.sync() {
            fs.forget(made, 1);
            return Err(to_ninep(error));
        }
        self.bump(*dir);
        self.remember(volume, made, *dir, name, is_dir)
    }

    fn read(
        &mut self,
        caller: &Caller<'_>,
        node: &u64,
        offset: u64,
        count: u32,
    ) -> Result<Reply<Vec<u8>>, Error> {
        let mut out = Vec::new();
        self.read_into(caller, node, offset, count, &mut out)?;
        Ok(Reply::Now(out))
    }

    fn read_into(
        &mut self,
        _caller: &Caller<'_>,
        node: &u64,
        offset: u64,
        count: u32,
        out: &mut Vec<u8>,
    ) -> Result<Reply<()>, Error> {
        let (volume, id) = {
            let entry = self.entry(*node)?;
            (entry.volume, entry.id)
        };
        let fs = self.volume(volume)?;
        let start = out.len();
        out.resize(start + count as usize, 0);
        fs.open(id, FsOpenMode::Read).map_err(to_ninep)?;
        let mut done = 0usize;
        let mut result = Ok(());
        while done < count as usize {
            match fs.read(id, offset + done as u64, &mut out[start + done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(error) => {
                    result = Err(to_ninep(error));
                    break;
                }
            }
        }
        let closed = fs.close(id).map_err(to_ninep);
        out.truncate(start + done);
        result?;
        closed?;
        Ok(Reply::Now(()))
    }

    fn read_dir(&mut self, _caller: &Caller<'_>, dir: &u64) -> Result<Vec<Stat>, Error> {
        let (volume, id) = {
            let entry = self.entry(*dir)?;
            (entry.volume, entry.id)
        };
        let mut listed = Vec::new();
        let mut cursor = DirCursor::START;
        let fs = self.volume(volume)?;
        while let Some(found) = fs.readdir(id, cursor).map_err(to_ninep)? {
            cursor = found.next_cursor();
            let name = found
                .name()
                .to_str()
                .map_err(|_| Error::new("fat: name is not UTF-8"))?
                .to_string();
            listed.push((name, found.node(), *found.metadata()));
        }
        let mut stats = Vec::with_capacity(listed.len());
        for (name, node, meta) in listed {
            // Listed entries get a table key only when walked to; until
            // then their qid path is the library's id with the top bit set,
            // which no table key reaches.
            let key = self
                .table
                .iter()
                .find(|(_, entry)| entry.volume == volume && entry.id == node && !entry.removed)
                .map(|(&key, _)| key);
            let entry = Entry {
                volume,
                id: node,
                parent: *dir,
                name,
                dir: meta.file_type() == FileType::Dir,
                version: 0,
                removed: false,
            };
            let key = key.unwrap_or(node.get() | 1 << 63);
            stats.push(self.to_stat(key, &entry, &meta));
        }
        Ok(stats)
    }

    fn write(
        &mut self,
        _caller: &Caller<'_>,
        node: &u64,
        offset: u64,
        data: &[u8],
    ) -> Result<Reply<u32>, Error> {
        Ok(Reply::Now(self.write_durably(*node, offset, data)?))
    }

    fn remove(&mut self, _caller: &Caller<'_>, node: &u64) -> Result<(), Error> {
        let (volume, id, parent, name, dir) = {
            let entry = self.entry(*node)?;
            (
                entry.volume,
                entry.id,
                entry.parent,
                entry.name.clone(),
                entry.dir,
            )
        };
        if parent == *node {
            return Err(Error::CANNOT_REMOVE_ROOT);
        }
        let parent_id = self.entry(parent)?.id;
        let fs = self.volume(volume)?;
        if dir {
            fs.rmdir(parent_id, Name::new(&name))
        } else {
            fs.unlink(parent_id, Name::new(&name))
        }
        .map_err(to_ninep)?;
        let synced = fs.sync().map_err(to_ninep);
        fs.forget(id, 1);
        if let Some(entry) = self.table.get_mut(node) {
            entry.removed = true;
        }
        self.table.remove(node);
        self.bump(parent);
        synced
    }

    fn wstat(
        &mut self,
        _caller: &Caller<'_>,
        node: &u64,
        changes: &StatChanges,
    ) -> Result<(), Error> {
        let (volume, id, parent, old_name, dir) = {
            let entry = self.entry(*node)?;
            (
                entry.volume,
                entry.id,
                entry.parent,
                entry.name.clone(),
                entry.dir,
            )
        };
        // Check everything first, so the change is all or nothing as far as
        // arguments go (stat(5)).
        if changes.gid.is_some() {
            return Err(Error::new("fat: a FAT volume has no groups"));
        }
        if let Some(mode) = changes.mode {
            let bits = mode.bits() & FileMode::PERMISSIONS;
            if bits != 0o777 && bits != 0o555 && bits != 0o666 && bits != 0o444 {
                return Err(Error::new(
                    "fat: mode must be writable by all or by none (FAT keeps one read-only bit)",
                ));
            }
        }
        if changes.length.is_some() && dir {
            return Err(Error::IS_DIR);
        }
        if changes.name.is_some() && parent == *node {
            return Err(Error::new("fat: cannot rename the root"));
        }
        let parent_id = self.entry(parent)?.id;
        let mut attrs = SetAttr::new();
        if let Some(mtime) = changes.mtime {
            let time = DateTime::from_unix_seconds(i64::from(mtime)).map_err(|_| Error::BAD_ARG)?;
            attrs = attrs.with_modified(time);
        }
        if let Some(mode) = changes.mode {
            let writable = mode.bits() & 0o200 != 0;
            attrs = attrs.with_permissions(Permissions::new(if writable { 0o777 } else { 0o555 }));
        }
        let fs = self.volume(volume)?;
        if let Some(name) = &changes.name {
            fs.rename(
                parent_id,
                Name::new(&old_name),
                parent_id,
                Name::new(name),
                RenameMode::NoReplace,
            )
            .map_err(to_ninep)?;
        }
        if let Some(length) = changes.length {
            fs.truncate(id, length).map_err(to_ninep)?;
        }
        if !attrs.is_empty() {
            fs.setattr(id, &attrs).map_err(to_ninep)?;
        }
        fs.sync().map_err(to_ninep)?;
        if let Some(name) = &changes.name {
            if let Some(entry) = self.table.get_mut(node) {
                name.clone_into(&mut entry.name);
            }
        }
        self.bump(*node);
        Ok(())
    }
}
