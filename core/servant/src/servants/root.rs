//! #R, the root skeleton: the empty directories a namespace is built on.
//!
//! LP49's root servant: `/` and the directories Plan 9's root(3) offers as
//! mount points, /bin /dev /env /srv /proc /mnt /n /tmp /boot /net. They
//! are read-only and empty; everything in them is bound or mounted there.

use crate::dev::{Devgen, Dirtab, ROOT};
use crate::servant::{Caller, File, Servant};
use crate::Error;

/// The directories under `/`, in listing order. A directory's qid path is
/// its index plus one; `/` is zero.
pub const SKELETON: [&str; 10] = [
    "bin", "dev", "env", "srv", "proc", "mnt", "n", "tmp", "boot", "net",
];

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
        // Each directory is its own entry 0; only `/` has children.
        let path = match (dir.qid.path, index) {
            (path, 0) => path,
            (ROOT, index) => index as u64,
            _ => return Ok(None),
        };
        Ok(name_of(path).map(|name| Dirtab::dir(name, path, 0o555)))
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
}
