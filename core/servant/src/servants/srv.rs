//! #s, the server registry: links posted under names in /srv.
//!
//! srv(3): a process posts a chan by creating a file in /srv and writing
//! the decimal number of a file descriptor into it; an open of the file
//! then yields the posted chan itself, and a remove drops it. In Kasane
//! what is posted is a server link ([`LinkId`]); core turns descriptors
//! into links through the caller's [`FdLinks`](crate::FdLinks).
//!
//! Invariants: names are unique ("file already exists"); an entry holds at
//! most one link, posted once ("inappropriate use of fd" after that); a
//! link dropped by remove is handed back through
//! [`Registry::take_released`] so core can release it.

use alloc::string::String;
use alloc::vec::Vec;

use ninep::{FileMode, OpenMode};

use crate::dev::{Devgen, Dirtab};
use crate::dir::{self, EVE};
use crate::servant::{Caller, File, Io, LinkId, Opened, Servant};
use crate::Error;

const LETTER: char = 's';
const ROOT: u64 = crate::dev::ROOT;
/// Longest fd number text srv(3) accepts (Plan 9's 32-byte buffer).
const FD_TEXT_MAX: usize = 31;

#[derive(Debug)]
struct Entry {
    name: String,
    owner: String,
    perm: u32,
    link: Option<LinkId>,
    path: u64,
    /// Why an open fails: an entry that says a server cannot be there.
    absent: Option<&'static str>,
}

#[derive(Debug)]
pub struct Registry {
    entries: Vec<Entry>,
    next_path: u64,
    released: Vec<LinkId>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
            next_path: ROOT + 1,
            released: Vec::new(),
        }
    }

    /// Posts `link` as `name` directly, as core does for the servers the
    /// manifest starts.
    pub fn post(&mut self, name: &str, link: LinkId, owner: &str) -> Result<(), Error> {
        self.add(name, owner, 0o666, Some(link)).map(|_| ())
    }

    /// Posts `name` as a server that is not there: every open of it fails
    /// with `why` (core posts `/srv/linux` so when there is no Linux cell,
    /// so that a mount says why and not "file does not exist").
    pub fn post_absent(&mut self, name: &str, owner: &str, why: &'static str) -> Result<(), Error> {
        self.add(name, owner, 0o444, None)?;
        if let Some(entry) = self.entries.iter_mut().find(|e| e.name == name) {
            entry.absent = Some(why);
        }
        Ok(())
    }

    /// Posts `link` as `name` in place of whatever `name` held (a
    /// restarted server's new link), or as a new entry. The old link is
    /// not listed by [`take_released`](Self::take_released): its owner
    /// replaced it and knows.
    pub fn repost(&mut self, name: &str, link: LinkId, owner: &str) -> Result<(), Error> {
        match self.entries.iter_mut().find(|e| e.name == name) {
            Some(entry) => {
                entry.link = Some(link);
                entry.absent = None;
                Ok(())
            }
            None => self.post(name, link, owner),
        }
    }

    /// The link posted as `name`.
    pub fn lookup(&self, name: &str) -> Option<LinkId> {
        self.entries.iter().find(|e| e.name == name)?.link
    }

    /// Links dropped by remove since the last call, for core to release.
    pub fn take_released(&mut self) -> Vec<LinkId> {
        core::mem::take(&mut self.released)
    }

    fn add(
        &mut self,
        name: &str,
        owner: &str,
        perm: u32,
        link: Option<LinkId>,
    ) -> Result<u64, Error> {
        if self.entries.iter().any(|e| e.name == name) {
            return Err(Error::EXISTS);
        }
        let path = self.next_path;
        self.next_path += 1;
        self.entries.push(Entry {
            name: String::from(name),
            owner: String::from(owner),
            perm: perm & FileMode::PERMISSIONS,
            link,
            path,
            absent: None,
        });
        Ok(path)
    }

    fn entry(&self, file: &File) -> Result<&Entry, Error> {
        self.entries
            .iter()
            .find(|e| e.path == file.qid.path)
            .ok_or(Error::NOT_FOUND)
    }
}

impl Devgen for Registry {
    /// srv(3): one directory of posted names, in posting order.
    fn gen<'a>(
        &'a self,
        _caller: &Caller<'a>,
        dir: &File,
        index: usize,
    ) -> Result<Option<Dirtab<'a>>, Error> {
        if dir.qid.path != ROOT {
            return Ok(None);
        }
        if index == 0 {
            return Ok(Some(Dirtab::dir("#s", ROOT, 0o777)));
        }
        Ok(self.entries.get(index - 1).map(|entry| {
            Dirtab::file(&entry.name, entry.path, entry.perm).with_owner(&entry.owner)
        }))
    }
}

impl Servant for Registry {
    fn letter(&self) -> char {
        LETTER
    }

    fn devgen(&self) -> Option<&dyn Devgen> {
        Some(self)
    }

    /// srv(3): an open of an entry is an open of the chan posted there.
    fn open(&mut self, _caller: &Caller<'_>, file: &File, mode: OpenMode) -> Result<Opened, Error> {
        if file.qid.path == ROOT {
            dir::check_open(true, mode, true, false)?;
            return Ok(Opened::File(file.qid));
        }
        let entry = self.entry(file).map_err(|_| Error::SHUTDOWN)?;
        if let Some(why) = entry.absent {
            return Err(Error::new(why));
        }
        let link = entry.link.ok_or(Error::SHUTDOWN)?;
        if mode.contains(OpenMode::OTRUNC) {
            return Err(Error::new("srv file already exists"));
        }
        Ok(Opened::Link(link))
    }

    /// srv(3): creating a file makes an empty entry, opened for the write
    /// that posts into it.
    fn create(
        &mut self,
        caller: &Caller<'_>,
        dir: &File,
        name: &str,
        perm: FileMode,
        mode: OpenMode,
    ) -> Result<File, Error> {
        if dir.qid.path != ROOT || perm.is_dir() {
            return Err(Error::PERMISSION_DENIED);
        }
        dir::check_open(false, mode, true, true)?;
        let path = self.add(name, caller.uname, perm.bits(), None)?;
        Ok(File {
            dev: 0,
            qid: dir::file_qid(path),
        })
    }

    fn read(
        &mut self,
        _caller: &Caller<'_>,
        file: &File,
        _offset: u64,
        _count: u32,
    ) -> Result<Io<Vec<u8>>, Error> {
        if file.qid.path == ROOT {
            return Err(Error::IS_DIR);
        }
        // An entry is read through the chan its open yields, never itself.
        Err(Error::BAD_USE_FD)
    }

    /// srv(3): writing the decimal number of a descriptor posts its chan.
    fn write(
        &mut self,
        caller: &Caller<'_>,
        file: &File,
        _offset: u64,
        data: &[u8],
    ) -> Result<Io<u32>, Error> {
        if file.qid.path == ROOT {
            return Err(Error::IS_DIR);
        }
        if data.len() > FD_TEXT_MAX {
            return Err(Error::TOO_BIG);
        }
        let text = core::str::from_utf8(data).map_err(|_| Error::BAD_ARG)?;
        let fd: u32 = text.trim().parse().map_err(|_| Error::BAD_FD)?;
        let link = caller.fds.link(fd)?;
        let path = file.qid.path;
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.path == path)
            .ok_or(Error::NOT_FOUND)?;
        if entry.link.is_some() || entry.absent.is_some() {
            return Err(Error::BAD_USE_FD);
        }
        entry.link = Some(link);
        Ok(Io::Ready(data.len() as u32))
    }

    /// srv(3): remove drops the posted chan. Only its owner may.
    fn remove(&mut self, caller: &Caller<'_>, file: &File) -> Result<(), Error> {
        if file.qid.path == ROOT {
            return Err(Error::PERMISSION_DENIED);
        }
        let at = self
            .entries
            .iter()
            .position(|e| e.path == file.qid.path)
            .ok_or(Error::NOT_FOUND)?;
        if self.entries[at].owner != caller.uname && caller.uname != EVE {
            return Err(Error::PERMISSION_DENIED);
        }
        let entry = self.entries.remove(at);
        if let Some(link) = entry.link {
            self.released.push(link);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FdLinks;

    /// Descriptor n holds link 100 + n for n below 10.
    struct Fds;

    impl FdLinks for Fds {
        fn link(&self, fd: u32) -> Result<LinkId, Error> {
            if fd < 10 {
                Ok(LinkId(100 + u64::from(fd)))
            } else {
                Err(Error::BAD_FD)
            }
        }
    }

    fn perm() -> FileMode {
        FileMode::from_bits_retain(0o600)
    }

    #[test]
    fn post_by_create_and_write_then_open_yields_the_link() {
        let caller = Caller::new(1, "glenda").with_fds(&Fds);
        let mut srv = Registry::new();
        let top = srv.attach(&caller, "").unwrap();
        let file = srv
            .create(&caller, &top, "ramfs", perm(), OpenMode::OWRITE)
            .unwrap();
        assert_eq!(
            srv.open(&caller, &file, OpenMode::ORDWR),
            Err(Error::SHUTDOWN)
        );
        assert_eq!(srv.write(&caller, &file, 0, b"3"), Ok(Io::Ready(1)));
        assert_eq!(srv.write(&caller, &file, 0, b"4"), Err(Error::BAD_USE_FD));
        let found = srv.walk(&caller, &top, "ramfs").unwrap();
        assert_eq!(
            srv.open(&caller, &found, OpenMode::ORDWR),
            Ok(Opened::Link(LinkId(103)))
        );
        assert_eq!(srv.lookup("ramfs"), Some(LinkId(103)));
        let names: Vec<String> = srv
            .read_dir(&caller, &top)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["ramfs"]);
    }

    #[test]
    fn repost_replaces_the_link_of_a_name_and_keeps_its_file() {
        let caller = Caller::new(1, "glenda");
        let mut srv = Registry::new();
        srv.post("ramfs", LinkId(1), "eve").unwrap();
        let top = srv.attach(&caller, "").unwrap();
        let before = srv.walk(&caller, &top, "ramfs").unwrap();
        srv.repost("ramfs", LinkId(7), "eve").unwrap();
        assert_eq!(srv.lookup("ramfs"), Some(LinkId(7)));
        assert_eq!(srv.walk(&caller, &top, "ramfs"), Ok(before));
        assert_eq!(
            srv.open(&caller, &before, OpenMode::ORDWR),
            Ok(Opened::Link(LinkId(7)))
        );
        assert!(srv.take_released().is_empty());
        // A name that was removed is posted anew.
        srv.repost("dos", LinkId(8), "eve").unwrap();
        assert_eq!(srv.lookup("dos"), Some(LinkId(8)));
    }

    #[test]
    fn an_absent_server_says_why_until_it_is_posted() {
        let caller = Caller::new(1, "eve").with_fds(&Fds);
        let mut srv = Registry::new();
        srv.post_absent("linux", "eve", "no linux cell").unwrap();
        let top = srv.attach(&caller, "").unwrap();
        let file = srv.walk(&caller, &top, "linux").unwrap();
        assert_eq!(
            srv.open(&caller, &file, OpenMode::ORDWR),
            Err(Error::new("no linux cell"))
        );
        assert_eq!(srv.write(&caller, &file, 0, b"3"), Err(Error::BAD_USE_FD));
        assert_eq!(srv.lookup("linux"), None);
        srv.repost("linux", LinkId(9), "eve").unwrap();
        assert_eq!(
            srv.open(&caller, &file, OpenMode::ORDWR),
            Ok(Opened::Link(LinkId(9)))
        );
    }

    #[test]
    fn a_name_in_use_is_refused() {
        let caller = Caller::new(1, "glenda");
        let mut srv = Registry::new();
        srv.post("dos", LinkId(1), "glenda").unwrap();
        let top = srv.attach(&caller, "").unwrap();
        assert_eq!(
            srv.create(&caller, &top, "dos", perm(), OpenMode::OWRITE),
            Err(Error::EXISTS)
        );
        assert_eq!(Error::EXISTS.as_str(), "file already exists");
        assert_eq!(srv.post("dos", LinkId(2), "glenda"), Err(Error::EXISTS));
    }

    #[test]
    fn bad_descriptors_are_refused() {
        let caller = Caller::new(1, "glenda").with_fds(&Fds);
        let mut srv = Registry::new();
        let top = srv.attach(&caller, "").unwrap();
        let file = srv
            .create(&caller, &top, "x", perm(), OpenMode::OWRITE)
            .unwrap();
        assert_eq!(srv.write(&caller, &file, 0, b"12"), Err(Error::BAD_FD));
        assert_eq!(srv.write(&caller, &file, 0, b"three"), Err(Error::BAD_FD));
        assert_eq!(
            srv.write(&caller, &file, 0, &[b'1'; 40]),
            Err(Error::TOO_BIG)
        );
        assert_eq!(srv.write(&caller, &file, 0, b"2\n"), Ok(Io::Ready(2)));
    }

    #[test]
    fn remove_drops_the_link_for_release() {
        let caller = Caller::new(1, "glenda");
        let other = Caller::new(2, "bootes");
        let mut srv = Registry::new();
        srv.post("ramfs", LinkId(9), "glenda").unwrap();
        let top = srv.attach(&caller, "").unwrap();
        let file = srv.walk(&caller, &top, "ramfs").unwrap();
        assert_eq!(srv.remove(&other, &file), Err(Error::PERMISSION_DENIED));
        srv.remove(&caller, &file).unwrap();
        assert_eq!(srv.take_released(), [LinkId(9)]);
        assert_eq!(srv.walk(&caller, &top, "ramfs"), Err(Error::NOT_FOUND));
        assert_eq!(
            srv.open(&caller, &file, OpenMode::OREAD),
            Err(Error::SHUTDOWN)
        );
        assert!(srv.take_released().is_empty());
    }

    #[test]
    fn truncating_opens_are_refused_as_plan9_does() {
        let caller = Caller::new(1, "glenda");
        let mut srv = Registry::new();
        srv.post("x", LinkId(1), "glenda").unwrap();
        let top = srv.attach(&caller, "").unwrap();
        let file = srv.walk(&caller, &top, "x").unwrap();
        assert_eq!(
            srv.open(&caller, &file, OpenMode::OWRITE | OpenMode::OTRUNC),
            Err(Error::new("srv file already exists"))
        );
    }
}
