//! #R, the root skeleton: the empty directories a namespace is built on.
//!
//! LP49's root servant: `/` and the directories Plan 9's root(3) offers as
//! mount points, /bin /dev /env /srv /proc /mnt /n /tmp /boot /net. They
//! are read-only and empty; everything in them is bound or mounted there.

use alloc::vec::Vec;

use ninep::{OpenMode, Stat};

use crate::dir::{self, EVE};
use crate::servant::{Caller, File, Opened, Servant};
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

fn name_of(path: u64) -> Option<&'static str> {
    match path {
        0 => Some("/"),
        n => SKELETON.get(usize::try_from(n - 1).ok()?).copied(),
    }
}

fn entry(path: u64) -> Result<Stat, Error> {
    let name = name_of(path).ok_or(Error::NOT_FOUND)?;
    Ok(dir::stat(
        LETTER,
        0,
        dir::dir_qid(path),
        name,
        0o555,
        0,
        EVE,
    ))
}

impl Servant for Root {
    fn letter(&self) -> char {
        LETTER
    }

    fn attach(&mut self, _caller: &Caller<'_>, spec: &str) -> Result<File, Error> {
        if !spec.is_empty() {
            return Err(Error::BAD_SPEC);
        }
        Ok(File {
            dev: 0,
            qid: dir::dir_qid(0),
        })
    }

    fn walk(&mut self, _caller: &Caller<'_>, dir: &File, name: &str) -> Result<File, Error> {
        if dir.qid.path != 0 {
            return Err(Error::NOT_FOUND);
        }
        let index = SKELETON
            .iter()
            .position(|n| *n == name)
            .ok_or(Error::NOT_FOUND)?;
        Ok(File {
            dev: 0,
            qid: dir::dir_qid(index as u64 + 1),
        })
    }

    fn parent(&mut self, _caller: &Caller<'_>, _file: &File) -> Result<File, Error> {
        Ok(File {
            dev: 0,
            qid: dir::dir_qid(0),
        })
    }

    fn stat(&mut self, _caller: &Caller<'_>, file: &File) -> Result<Stat, Error> {
        entry(file.qid.path)
    }

    fn open(&mut self, _caller: &Caller<'_>, file: &File, mode: OpenMode) -> Result<Opened, Error> {
        dir::check_open(true, mode, true, false)?;
        Ok(Opened::File(file.qid))
    }

    fn read_dir(&mut self, _caller: &Caller<'_>, dir: &File) -> Result<Vec<Stat>, Error> {
        if dir.qid.path != 0 {
            return Ok(Vec::new());
        }
        (1..=SKELETON.len() as u64).map(entry).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
