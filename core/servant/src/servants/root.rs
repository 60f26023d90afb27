//! #R, the root skeleton: the empty directories a namespace is built on.
//!
//! LP49's root servant: `/` and the directories Plan 9's root(3) offers as
//! mount points, /bin /dev /env /srv /proc /mnt /n /tmp /boot /net, and
//! /n/c, where LP49 mounted a DOS disk (`mount -c /srv/fat /n/c`). They
//! are read-only and empty; everything in them is bound or mounted there.

use crate::dev::{Devgen, Dirtab, ROOT};
use crate::dir;
use crate::servant::{Caller, File, Servant};
use crate::Error;
use ninep::Qid;

/// The directories under `/`, in listing order. A directory's qid path is
/// its index plus one; `/` is zero.
pub const SKELETON: [&str; 10] = [
    "bin", "dev", "env", "srv", "proc", "mnt", "n", "tmp", "boot", "net",
];

/// `/n`'s qid path, and `/n/c`'s (the one directory below the top).
const N: u64 = 7;
const N_C: u64 = SKELETON.len() as u64 + 1;

const LETTER: char = 'R';

#[derive(Debug, Default)]
pub struct Root;

impl Root {
    pub fn new() -> Self {
        Self
    }
}

/// The directory with qid path `path`, by name.
fn name_of(path: u64) -> Option<&'static str> {
    match path {
        ROOT => Some("/"),
        N_C => Some("c"),
        n => SKELETON.get(usize::try_from(n - 1).ok()?).copied(),
    }
}

impl Devgen for Root {
    fn gen<'a>(
        &'a self,
        _caller: &Caller<'a>,
        dir: &File,
        index: usize,
    ) -> Result<Option<Dirtab<'a>>, Error> {
        // Each directory is its own entry 0; `/` has the skeleton, `/n`
        // has `c`.
        let path = match (dir.qid.path, index) {
            (path, 0) => path,
            (ROOT, index) if index <= SKELETON.len() => index as u64,
            (N, 1) => N_C,
            _ => return Ok(None),
        };
        Ok(name_of(path).map(|name| Dirtab::dir(name, path, 0o555)))
    }

    fn dotdot(&self, file: &File) -> Qid {
        match file.qid.path {
            N_C => dir::dir_qid(N),
            _ => dir::dir_qid(ROOT),
        }
    }
}

impl Servant for Root {
    fn letter(&self) -> char {
        LETTER
    }

    fn devgen(&self) -> Option<&dyn Devgen> {
        Some(self)
    }

    fn attach(&mut self, _caller: &Caller<'_>, spec: &str) -> Result<File, Error> {
        if !spec.is_empty() {
            return Err(Error::BAD_SPEC);
        }
        Ok(crate::dev::attach())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use ninep::OpenMode;

    #[test]
    fn the_skeleton_is_there_and_read_only() {
        let caller = Caller::new(1, "glenda");
        let mut root = Root::new();
        let top = root.attach(&caller, "").unwrap();
        let names: Vec<_> = root
            .read_dir(&caller, &top)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, SKELETON);
        let tmp = root.walk(&caller, &top, "tmp").unwrap();
        assert!(root.stat(&caller, &tmp).unwrap().mode.is_dir());
        assert_eq!(root.parent(&caller, &tmp).unwrap(), top);
        assert_eq!(root.walk(&caller, &top, "usr"), Err(Error::NOT_FOUND));
        assert_eq!(root.walk(&caller, &tmp, "x"), Err(Error::NOT_FOUND));
        assert_eq!(
            root.open(&caller, &tmp, OpenMode::OWRITE),
            Err(Error::IS_DIR)
        );
        assert!(root.open(&caller, &tmp, OpenMode::OREAD).is_ok());
        let perm = ninep::FileMode::OWNER_READ;
        assert_eq!(
            root.create(&caller, &tmp, "x", perm, OpenMode::OREAD),
            Err(Error::PERMISSION_DENIED)
        );
        assert_eq!(root.remove(&caller, &tmp), Err(Error::PERMISSION_DENIED));
        assert_eq!(root.attach(&caller, "x"), Err(Error::BAD_SPEC));
    }

    #[test]
    fn n_holds_c_for_a_dos_disk() {
        let caller = Caller::new(1, "glenda");
        let mut root = Root::new();
        let top = root.attach(&caller, "").unwrap();
        let n = root.walk(&caller, &top, "n").unwrap();
        let names: Vec<_> = root
            .read_dir(&caller, &n)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["c"]);
        let c = root.walk(&caller, &n, "c").unwrap();
        assert!(root.stat(&caller, &c).unwrap().mode.is_dir());
        assert_eq!(root.stat(&caller, &c).unwrap().name, "c");
        assert_eq!(root.parent(&caller, &c).unwrap(), n);
        assert_eq!(root.parent(&caller, &n).unwrap(), top);
        assert_eq!(root.walk(&caller, &top, "c"), Err(Error::NOT_FOUND));
        let tmp = root.walk(&caller, &top, "tmp").unwrap();
        assert_eq!(root.walk(&caller, &tmp, "c"), Err(Error::NOT_FOUND));
        assert!(root.read_dir(&caller, &c).unwrap().is_empty());
    }
}
