//! Plan 9's device helpers: a servant writes its table, these serve it.
//!
//! In Plan 9 (`/sys/src/9/port/dev.c`) a device writes a `Dirtab` and a
//! `Devgen`, and `devwalk`, `devstat`, `devopen` and `devdirread` do the
//! walking, stat, opens and directory reads for it. Here a servant
//! implements [`Devgen`] and returns itself from
//! [`Servant::devgen`](crate::Servant::devgen); the `Servant` defaults of
//! attach, walk, parent, stat, open and read_dir then call the functions
//! below ([`attach`], [`walk`], [`parent`], [`stat`], [`open`],
//! [`entries`]), and the servant writes only its table and what its files
//! do (read, write, ...). [`dirread`] packs entries into 9P directory
//! reads at an offset, as `devdirread` does.
//!
//! The table's rules, Plan 9's devgen over a tree:
//! - entry 0 of a directory is the directory itself (dev.c: "the zeroth
//!   element of the table MUST be the directory itself"), entries 1.. are
//!   its children in listing order, and `None` ends the list;
//! - a file's own entry is found among its parent's children by qid path
//!   (devstat), its parent being [`Devgen::dotdot`], which for a flat
//!   table is the root (qid path 0), as Plan 9's devattach makes it;
//! - an error the table answers (a process gone, a group dropped) is the
//!   answer of the operation that asked.

use alloc::borrow::Cow;
use alloc::format;
use alloc::vec::Vec;

use ninep::{Qid, QidType, Stat};

use crate::dir::{self, EVE};
use crate::servant::{Caller, File};
use crate::Error;

/// The qid path of every table's root, as Plan 9's devattach makes it.
pub const ROOT: u64 = 0;

/// One entry of a device's directory: Plan 9's `Dirtab` (name, qid,
/// length, perm), with an owner, since the files of #e, #s and #p belong
/// to whoever made them (Plan 9's devgen says `eve` for all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirtab<'a> {
    /// Borrowed from the table, or made for the entry (a pid).
    pub name: Cow<'a, str>,
    pub qid: Qid,
    pub length: u64,
    /// The permission bits; a directory's DMDIR comes from its qid.
    pub perm: u32,
    pub owner: &'a str,
}

impl<'a> Dirtab<'a> {
    /// A directory owned by `eve`.
    pub const fn dir(name: &'a str, path: u64, perm: u32) -> Self {
        Self {
            name: Cow::Borrowed(name),
            qid: dir::dir_qid(path),
            length: 0,
            perm,
            owner: EVE,
        }
    }

    /// An empty file owned by `eve`.
    pub const fn file(name: &'a str, path: u64, perm: u32) -> Self {
        Self {
            name: Cow::Borrowed(name),
            qid: dir::file_qid(path),
            length: 0,
            perm,
            owner: EVE,
        }
    }

    pub fn with_length(self, length: u64) -> Self {
        Self { length, ..self }
    }

    pub fn with_owner(self, owner: &'a str) -> Self {
        Self { owner, ..self }
    }

    pub fn is_dir(&self) -> bool {
        self.qid.kind.contains(QidType::DIR)
    }

    /// The entry as a stat of servant `letter`, instance `dev` (devdir).
    pub fn stat(&self, letter: char, dev: u32) -> Stat {
        dir::stat(
            letter,
            dev,
            self.qid,
            &self.name,
            self.perm,
            self.length,
            self.owner,
        )
    }
}

/// A servant's tree as a table (Plan 9's Devgen).
pub trait Devgen {
    /// Entry `index` of directory `dir`: 0 is `dir` itself, 1.. are its
    /// children, `None` past the last (or for a directory the table does
    /// not have). `caller` is there for tables that depend on who asks
    /// (Plan 9's generators read `up`), e.g. #e's group.
    fn gen<'a>(
        &'a self,
        caller: &Caller<'a>,
        dir: &File,
        index: usize,
    ) -> Result<Option<Dirtab<'a>>, Error>;

    /// The directory `file` is in; the root's is the root. A flat table's
    /// is always the root.
    fn dotdot(&self, file: &File) -> Qid {
        let _ = file;
        dir::dir_qid(ROOT)
    }

    /// The child of `dir` called `name` (devgen given a name): by default
    /// a [`search`] of the children, which a table that can find a name
    /// faster replaces (Plan 9's procgen parses a pid).
    fn find<'a>(
        &'a self,
        caller: &Caller<'a>,
        dir: &File,
        name: &str,
    ) -> Result<Option<Dirtab<'a>>, Error> {
        search(self, caller, dir, name)
    }
}

/// The child of `dir` called `name`, by going through the children.
pub fn search<'a, G: Devgen + ?Sized>(
    gen: &'a G,
    caller: &Caller<'a>,
    dir: &File,
    name: &str,
) -> Result<Option<Dirtab<'a>>, Error> {
    let mut index = 1;
    while let Some(entry) = gen.gen(caller, dir, index)? {
        if entry.name == name {
            return Ok(Some(entry));
        }
        index += 1;
    }
    Ok(None)
}

fn is_dir(file: &File) -> bool {
    file.qid.kind.contains(QidType::DIR)
}

/// The root of a table (Plan 9's devattach): instance 0, qid path 0.
pub fn attach() -> File {
    File {
        dev: 0,
        qid: dir::dir_qid(ROOT),
    }
}

/// The `..` of `file` (devgen's DEVDOTDOT), in the same instance.
pub fn parent<G: Devgen + ?Sized>(gen: &G, file: &File) -> File {
    File {
        dev: file.dev,
        qid: gen.dotdot(file),
    }
}

/// One step of a walk (devwalk): `name` among the children of `dir`;
/// `.` and `..` as walk(5) has them.
pub fn walk<G: Devgen + ?Sized>(
    gen: &G,
    caller: &Caller<'_>,
    dir: &File,
    name: &str,
) -> Result<File, Error> {
    if !is_dir(dir) {
        return Err(Error::NOT_DIR);
    }
    match name {
        "." => return Ok(*dir),
        ".." => return Ok(parent(gen, dir)),
        _ => {}
    }
    match gen.find(caller, dir, name)? {
        Some(entry) => Ok(File {
            dev: dir.dev,
            qid: entry.qid,
        }),
        None => Err(Error::NOT_FOUND),
    }
}

/// The table's entry for `file`: a directory's own entry 0, or a file's
/// entry among its parent's children (devstat's search).
pub fn lookup<'a, G: Devgen + ?Sized>(
    gen: &'a G,
    caller: &Caller<'a>,
    file: &File,
) -> Result<Dirtab<'a>, Error> {
    if is_dir(file) {
        return gen.gen(caller, file, 0)?.ok_or(Error::NOT_FOUND);
    }
    let dir = parent(gen, file);
    for index in 1.. {
        match gen.gen(caller, &dir, index)? {
            Some(entry) if entry.qid.path == file.qid.path => return Ok(entry),
            Some(_) => {}
            None => break,
        }
    }
    Err(Error::NOT_FOUND)
}

/// stat(5) of `file` (devstat).
pub fn stat<G: Devgen + ?Sized>(
    letter: char,
    gen: &G,
    caller: &Caller<'_>,
    file: &File,
) -> Result<Stat, Error> {
    lookup(gen, caller, file).map(|entry| entry.stat(letter, file.dev))
}

/// Checks an open of `file` against its entry (devopen): the owner's
/// bits decide, as they do for Plan 9's host owner (devpermcheck); core's
/// servants do not tell users apart on open. Directories open only for
/// reading (open(5)).
pub fn open<G: Devgen + ?Sized>(
    gen: &G,
    caller: &Caller<'_>,
    file: &File,
    mode: ninep::OpenMode,
) -> Result<(), Error> {
    let entry = lookup(gen, caller, file)?;
    let readable = entry.perm & 0o400 != 0;
    let writable = entry.perm & 0o200 != 0;
    dir::check_open(entry.is_dir(), mode, readable, writable)
}

/// The entries of directory `dir` as stats, in table order: what
/// `Servant::read_dir` gives, and what `devdirread` generates.
pub fn entries<G: Devgen + ?Sized>(
    letter: char,
    gen: &G,
    caller: &Caller<'_>,
    dir: &File,
) -> Result<Vec<Stat>, Error> {
    if !is_dir(dir) {
        return Err(Error::NOT_DIR);
    }
    let mut stats = Vec::new();
    for index in 1.. {
        match gen.gen(caller, dir, index)? {
            Some(entry) => stats.push(entry.stat(letter, dir.dev)),
            None => break,
        }
    }
    Ok(stats)
}

/// A 9P directory read (devdirread, read(5)): the whole stat entries of
/// `entries`, packed back to back, that a read of `count` bytes at byte
/// `offset` of the listing gets. An entry that does not fit ends the read
/// (the next read starts with it); if the first does not, the read fails
/// with "i/o count too small", as Plan 9's does. An offset inside an
/// entry is refused; one past the end reads nothing.
pub fn dirread(entries: &[Stat], offset: u64, count: u32) -> Result<Vec<u8>, Error> {
    let mut at = 0u64;
    let mut next = 0;
    while at < offset {
        let Some(entry) = entries.get(next) else {
            return Ok(Vec::new());
        };
        at += entry.encoded_len() as u64;
        next += 1;
    }
    if at != offset {
        return Err(Error::BAD_DIR_OFFSET);
    }
    let mut data = Vec::new();
    for entry in &entries[next..] {
        if data.len() + entry.encoded_len() > count as usize {
            break;
        }
        entry
            .encode(&mut data)
            .map_err(|e| Error::new(format!("directory entry: {e}")))?;
    }
    if data.is_empty() && next < entries.len() {
        return Err(Error::SHORT);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ninep::OpenMode;

    /// `/` holds `a`, `ro` and the directory `sub`, which holds `b`.
    struct Table;

    const SUB: u64 = 10;
    const TOP: [Dirtab<'static>; 4] = [
        Dirtab::dir("#t", ROOT, 0o555),
        Dirtab::file("a", 1, 0o644),
        Dirtab::file("ro", 2, 0o444),
        Dirtab::dir("sub", SUB, 0o555),
    ];
    const IN_SUB: [Dirtab<'static>; 2] =
        [Dirtab::dir("sub", SUB, 0o555), Dirtab::file("b", 11, 0o600)];

    impl Devgen for Table {
        fn gen<'a>(
            &'a self,
            caller: &Caller<'a>,
            dir: &File,
            index: usize,
        ) -> Result<Option<Dirtab<'a>>, Error> {
            let table: &[Dirtab<'static>] = match dir.qid.path {
                ROOT => &TOP,
                SUB => &IN_SUB,
                _ => return Ok(None),
            };
            // `a` has a length and belongs to whoever asks.
            Ok(table.get(index).cloned().map(|entry| match entry.qid.path {
                1 => entry.with_length(3).with_owner(caller.uname),
                _ => entry,
            }))
        }

        fn dotdot(&self, file: &File) -> Qid {
            match file.qid.path {
                11 => dir::dir_qid(SUB),
                _ => dir::dir_qid(ROOT),
            }
        }
    }

    fn caller() -> Caller<'static> {
        Caller::new(1, "glenda")
    }

    fn names(stats: &[Stat]) -> Vec<&str> {
        stats.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn walks_find_names_and_dots_and_miss_the_rest() {
        let c = caller();
        let root = File { dev: 4, ..attach() };
        let a = walk(&Table, &c, &root, "a").unwrap();
        assert_eq!((a.dev, a.qid), (4, dir::file_qid(1)));
        let sub = walk(&Table, &c, &root, "sub").unwrap();
        assert!(sub.qid.kind.contains(QidType::DIR));
        let b = walk(&Table, &c, &sub, "b").unwrap();
        assert_eq!(b.qid.path, 11);
        assert_eq!(walk(&Table, &c, &sub, ".."), Ok(root));
        assert_eq!(walk(&Table, &c, &root, ".."), Ok(root));
        assert_eq!(walk(&Table, &c, &sub, "."), Ok(sub));
        assert_eq!(parent(&Table, &b), sub);
        // Entry 0 is the directory itself, never one of its children.
        assert_eq!(walk(&Table, &c, &root, "#t"), Err(Error::NOT_FOUND));
        assert_eq!(walk(&Table, &c, &root, "b"), Err(Error::NOT_FOUND));
        assert_eq!(walk(&Table, &c, &a, "x"), Err(Error::NOT_DIR));
    }

    #[test]
    fn stats_come_from_the_directory_or_its_parent() {
        let c = caller();
        let root = attach();
        let s = stat('t', &Table, &c, &root).unwrap();
        assert_eq!((s.name.as_str(), s.mode.is_dir()), ("#t", true));
        let a = walk(&Table, &c, &root, "a").unwrap();
        let s = stat('t', &Table, &c, &a).unwrap();
        assert_eq!(
            (s.name.as_str(), s.length, s.uid.as_str(), s.kind),
            ("a", 3, "glenda", u16::from(b't'))
        );
        let sub = walk(&Table, &c, &root, "sub").unwrap();
        let b = walk(&Table, &c, &sub, "b").unwrap();
        assert_eq!(stat('t', &Table, &c, &b).unwrap().name, "b");
        assert_eq!(stat('t', &Table, &c, &sub).unwrap().name, "sub");
        let gone = File {
            dev: 0,
            qid: dir::file_qid(99),
        };
        assert_eq!(stat('t', &Table, &c, &gone), Err(Error::NOT_FOUND));
        let no_dir = File {
            dev: 0,
            qid: dir::dir_qid(99),
        };
        assert_eq!(stat('t', &Table, &c, &no_dir), Err(Error::NOT_FOUND));
    }

    #[test]
    fn opens_follow_the_owner_bits() {
        let c = caller();
        let root = attach();
        let a = walk(&Table, &c, &root, "a").unwrap();
        let ro = walk(&Table, &c, &root, "ro").unwrap();
        assert_eq!(open(&Table, &c, &a, OpenMode::ORDWR), Ok(()));
        assert_eq!(open(&Table, &c, &ro, OpenMode::OREAD), Ok(()));
        assert_eq!(
            open(&Table, &c, &ro, OpenMode::OWRITE),
            Err(Error::PERMISSION_DENIED)
        );
        assert_eq!(open(&Table, &c, &root, OpenMode::OREAD), Ok(()));
        assert_eq!(
            open(&Table, &c, &root, OpenMode::OWRITE),
            Err(Error::IS_DIR)
        );
    }

    #[test]
    fn entries_list_children_in_table_order() {
        let c = caller();
        let root = attach();
        let listing = entries('t', &Table, &c, &root).unwrap();
        assert_eq!(names(&listing), ["a", "ro", "sub"]);
        let sub = walk(&Table, &c, &root, "sub").unwrap();
        assert_eq!(names(&entries('t', &Table, &c, &sub).unwrap()), ["b"]);
        let a = walk(&Table, &c, &root, "a").unwrap();
        assert_eq!(entries('t', &Table, &c, &a), Err(Error::NOT_DIR));
    }

    /// Errors a table answers are the operations' answers.
    struct Gone;

    impl Devgen for Gone {
        fn gen<'a>(
            &'a self,
            _caller: &Caller<'a>,
            _dir: &File,
            index: usize,
        ) -> Result<Option<Dirtab<'a>>, Error> {
            match index {
                0 => Ok(Some(Dirtab::dir("#g", ROOT, 0o555))),
                _ => Err(Error::PROC_DIED),
            }
        }
    }

    #[test]
    fn table_errors_pass_through() {
        let c = caller();
        let root = attach();
        let file = File {
            dev: 0,
            qid: dir::file_qid(1),
        };
        assert_eq!(walk(&Gone, &c, &root, "x"), Err(Error::PROC_DIED));
        assert_eq!(stat('g', &Gone, &c, &file), Err(Error::PROC_DIED));
        assert_eq!(entries('g', &Gone, &c, &root), Err(Error::PROC_DIED));
        assert_eq!(stat('g', &Gone, &c, &root).unwrap().name, "#g");
    }

    #[test]
    fn directory_reads_pack_whole_entries_at_an_offset() {
        let c = caller();
        let listing = entries('t', &Table, &c, &attach()).unwrap();
        let sizes: Vec<usize> = listing.iter().map(Stat::encoded_len).collect();
        let all = dirread(&listing, 0, u32::MAX).unwrap();
        assert_eq!(Stat::decode_directory(&all).unwrap(), listing);
        // Small buffers: one entry per read, each read where the last ended.
        let mut offset = 0;
        let mut got = Vec::new();
        loop {
            let count = *sizes.iter().max().unwrap() as u32;
            let data = dirread(&listing, offset, count).unwrap();
            if data.is_empty() {
                break;
            }
            let stats = Stat::decode_directory(&data).unwrap();
            assert_eq!(stats.len(), 1);
            got.extend(stats);
            offset += data.len() as u64;
        }
        assert_eq!(got, listing);
        // Two entries fit exactly; a third byte short of the second does not.
        let two = (sizes[0] + sizes[1]) as u32;
        assert_eq!(dirread(&listing, 0, two).unwrap().len(), two as usize);
        assert_eq!(dirread(&listing, 0, two - 1).unwrap().len(), sizes[0]);
        assert_eq!(dirread(&listing, 0, 10), Err(Error::SHORT));
        assert_eq!(dirread(&listing, 1, 1000), Err(Error::BAD_DIR_OFFSET));
        let end = all.len() as u64;
        assert!(dirread(&listing, end, 1000).unwrap().is_empty());
        assert!(dirread(&listing, end + 7, 1000).unwrap().is_empty());
        assert!(dirread(&[], 0, 0).unwrap().is_empty());
    }
}
