//! #e, environment variables as files, one store per environment group.
//!
//! env(3): "the environment device serves a one-level directory containing
//! files with arbitrary names ... each a process-group-wide environment
//! variable". Processes share a group unless they fork with RFENVG (a copy,
//! [`Environment::fork_group`]) or RFCENVG (an empty one,
//! [`Environment::create_group`]). A chan's `dev` is its group, so a chan
//! keeps naming the group it was attached in. Invariants: names are unique
//! within a group, and every variable has a qid path no other variable of
//! any group has had.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use ninep::{FileMode, OpenMode, Qid, QidType, Stat};

use crate::dev::{Devgen, Dirtab};
use crate::dir;
use crate::servant::{Caller, File, Io, Opened, Servant};
use crate::Error;

const LETTER: char = 'e';
const ROOT: u64 = crate::dev::ROOT;
/// Largest value kept: environment variables are small, and a bound keeps
/// one process from taking core's memory through /env.
pub const VALUE_MAX: usize = 64 * 1024;

#[derive(Debug, Clone)]
struct Variable {
    name: String,
    value: Vec<u8>,
    path: u64,
    version: u32,
    owner: String,
}

#[derive(Debug, Clone, Default)]
struct Group {
    /// In creation order, which is the order a directory read lists.
    variables: Vec<Variable>,
}

#[derive(Debug, Default)]
pub struct Environment {
    groups: BTreeMap<u32, Group>,
    next_path: u64,
}

impl Environment {
    pub fn new() -> Self {
        Self {
            groups: BTreeMap::new(),
            next_path: ROOT + 1,
        }
    }

    /// An empty group (RFCENVG, fork(2)); an existing one is emptied.
    pub fn create_group(&mut self, group: u32) {
        self.groups.insert(group, Group::default());
    }

    /// A copy of `from` as the group `to` (RFENVG, fork(2)). The copies get
    /// qid paths of their own.
    pub fn fork_group(&mut self, from: u32, to: u32) {
        let mut copy = self.groups.get(&from).cloned().unwrap_or_default();
        for variable in &mut copy.variables {
            variable.path = self.take_path();
            variable.version = 0;
        }
        self.groups.insert(to, copy);
    }

    /// Forgets a group whose last process has gone.
    pub fn drop_group(&mut self, group: u32) {
        self.groups.remove(&group);
    }

    pub fn get(&self, group: u32, name: &str) -> Option<&[u8]> {
        let found = self
            .groups
            .get(&group)?
            .variables
            .iter()
            .find(|v| v.name == name)?;
        Some(&found.value)
    }

    /// Sets a variable directly, as core does when it starts a process.
    pub fn set(&mut self, group: u32, name: &str, value: &[u8], owner: &str) -> Result<(), Error> {
        if value.len() > VALUE_MAX {
            return Err(Error::TOO_BIG);
        }
        let path = self.next_path;
        let group = self.groups.entry(group).or_default();
        if let Some(variable) = group.variables.iter_mut().find(|v| v.name == name) {
            variable.value = value.to_vec();
            variable.version = variable.version.wrapping_add(1);
            return Ok(());
        }
        group.variables.push(Variable {
            name: String::from(name),
            value: value.to_vec(),
            path,
            version: 0,
            owner: String::from(owner),
        });
        self.next_path += 1;
        Ok(())
    }

    fn take_path(&mut self) -> u64 {
        let path = self.next_path;
        self.next_path += 1;
        path
    }

    fn variable(&self, file: &File) -> Result<&Variable, Error> {
        let group = self.groups.get(&file.dev).ok_or(Error::NOT_FOUND)?;
        group
            .variables
            .iter()
            .find(|v| v.path == file.qid.path)
            .ok_or(Error::NOT_FOUND)
    }

    fn variable_mut(&mut self, file: &File) -> Result<&mut Variable, Error> {
        let group = self.groups.get_mut(&file.dev).ok_or(Error::NOT_FOUND)?;
        group
            .variables
            .iter_mut()
            .find(|v| v.path == file.qid.path)
            .ok_or(Error::NOT_FOUND)
    }
}

impl Devgen for Environment {
    /// env(3): one directory, the variables of the chan's group (its
    /// `dev`), in creation order; it belongs to whoever looks.
    fn gen<'a>(
        &'a self,
        caller: &Caller<'a>,
        dir: &File,
        index: usize,
    ) -> Result<Option<Dirtab<'a>>, Error> {
        if dir.qid.path != ROOT {
            return Ok(None);
        }
        if index == 0 {
            return Ok(Some(
                Dirtab::dir("#e", ROOT, 0o775).with_owner(caller.uname),
            ));
        }
        let group = self.groups.get(&dir.dev).ok_or(Error::NOT_FOUND)?;
        Ok(group.variables.get(index - 1).map(|variable| Dirtab {
            name: variable.name.as_str().into(),
            qid: qid_of(variable),
            length: variable.value.len() as u64,
            perm: 0o666,
            owner: &variable.owner,
        }))
    }
}

fn qid_of(variable: &Variable) -> Qid {
    Qid {
        kind: QidType::FILE,
        version: variable.version,
        path: variable.path,
    }
}

fn root(group: u32) -> File {
    File {
        dev: group,
        qid: dir::dir_qid(ROOT),
    }
}

impl Servant for Environment {
    fn letter(&self) -> char {
        LETTER
    }

    fn devgen(&self) -> Option<&dyn Devgen> {
        Some(self)
    }

    fn attach(&mut self, caller: &Caller<'_>, _spec: &str) -> Result<File, Error> {
        self.groups.entry(caller.env_group).or_default();
        Ok(root(caller.env_group))
    }

    fn open(&mut self, _caller: &Caller<'_>, file: &File, mode: OpenMode) -> Result<Opened, Error> {
        if file.qid.path == ROOT {
            dir::check_open(true, mode, true, false)?;
            return Ok(Opened::File(file.qid));
        }
        dir::check_open(false, mode, true, true)?;
        let variable = self.variable_mut(file)?;
        if mode.contains(OpenMode::OTRUNC) {
            variable.value.clear();
            variable.version = variable.version.wrapping_add(1);
        }
        Ok(Opened::File(qid_of(variable)))
    }

    fn create(
        &mut self,
        caller: &Caller<'_>,
        dir: &File,
        name: &str,
        perm: FileMode,
        mode: OpenMode,
    ) -> Result<File, Error> {
        // env(3): the directory is one level; no directories in it.
        if dir.qid.path != ROOT || perm.is_dir() {
            return Err(Error::PERMISSION_DENIED);
        }
        dir::check_open(false, mode, true, true)?;
        let path = self.next_path;
        let group = self.groups.get_mut(&dir.dev).ok_or(Error::NOT_FOUND)?;
        if group.variables.iter().any(|v| v.name == name) {
            return Err(Error::EXISTS);
        }
        let variable = Variable {
            name: String::from(name),
            value: Vec::new(),
            path,
            version: 0,
            owner: String::from(caller.uname),
        };
        let qid = qid_of(&variable);
        group.variables.push(variable);
        self.next_path += 1;
        Ok(File { dev: dir.dev, qid })
    }

    fn read(
        &mut self,
        _caller: &Caller<'_>,
        file: &File,
        offset: u64,
        count: u32,
    ) -> Result<Io<Vec<u8>>, Error> {
        if file.qid.path == ROOT {
            return Err(Error::IS_DIR);
        }
        Ok(Io::Ready(dir::read_at(
            &self.variable(file)?.value,
            offset,
            count,
        )))
    }

    fn write(
        &mut self,
        _caller: &Caller<'_>,
        file: &File,
        offset: u64,
        data: &[u8],
    ) -> Result<Io<u32>, Error> {
        if file.qid.path == ROOT {
            return Err(Error::IS_DIR);
        }
        let variable = self.variable_mut(file)?;
        let taken = dir::write_at(&mut variable.value, offset, data, VALUE_MAX)?;
        variable.version = variable.version.wrapping_add(1);
        Ok(Io::Ready(taken))
    }

    fn remove(&mut self, _caller: &Caller<'_>, file: &File) -> Result<(), Error> {
        if file.qid.path == ROOT {
            return Err(Error::PERMISSION_DENIED);
        }
        let group = self.groups.get_mut(&file.dev).ok_or(Error::NOT_FOUND)?;
        let before = group.variables.len();
        group.variables.retain(|v| v.path != file.qid.path);
        if group.variables.len() == before {
            return Err(Error::NOT_FOUND);
        }
        Ok(())
    }

    /// Renames a variable (stat(5)'s wstat with a new name; an empty name
    /// leaves it). Nothing else about a variable can be changed.
    fn wstat(&mut self, _caller: &Caller<'_>, file: &File, stat: &Stat) -> Result<(), Error> {
        let keep = Stat::dont_touch();
        let others_kept = stat.mode == keep.mode
            && stat.length == keep.length
            && stat.mtime == keep.mtime
            && stat.uid.is_empty()
            && stat.gid.is_empty();
        if file.qid.path == ROOT || !others_kept {
            return Err(Error::PERMISSION_DENIED);
        }
        if stat.name.is_empty() {
            return Ok(());
        }
        let group = self.groups.get(&file.dev).ok_or(Error::NOT_FOUND)?;
        if group
            .variables
            .iter()
            .any(|v| v.name == stat.name && v.path != file.qid.path)
        {
            return Err(Error::EXISTS);
        }
        let variable = self.variable_mut(file)?;
        variable.name.clone_from(&stat.name);
        variable.version = variable.version.wrapping_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wstat_renames_a_variable_and_nothing_else() {
        let caller = Caller::new(1, "glenda");
        let mut env = Environment::new();
        let top = env.attach(&caller, "").unwrap();
        let a = env
            .create(
                &caller,
                &top,
                "a",
                FileMode::from_bits_retain(0o644),
                OpenMode::OWRITE,
            )
            .unwrap();
        env.create(
            &caller,
            &top,
            "b",
            FileMode::from_bits_retain(0o644),
            OpenMode::OWRITE,
        )
        .unwrap();
        let mut rename = Stat::dont_touch();
        rename.name = String::from("b");
        assert_eq!(env.wstat(&caller, &a, &rename), Err(Error::EXISTS));
        rename.name = String::from("c");
        assert_eq!(env.wstat(&caller, &a, &rename), Ok(()));
        assert_eq!(
            env.walk(&caller, &top, "c").map(|f| f.qid.path),
            Ok(a.qid.path)
        );
        assert_eq!(env.walk(&caller, &top, "a"), Err(Error::NOT_FOUND));
        let mut chmod = Stat::dont_touch();
        chmod.mode = FileMode::from_bits_retain(0o600);
        assert_eq!(
            env.wstat(&caller, &a, &chmod),
            Err(Error::PERMISSION_DENIED)
        );
        assert_eq!(
            env.wstat(&caller, &top, &rename),
            Err(Error::PERMISSION_DENIED)
        );
    }

    fn ready<T>(io: Io<T>) -> T {
        match io {
            Io::Ready(value) => value,
            Io::WouldBlock(key) => panic!("blocked on {key:?}"),
        }
    }

    fn rw() -> OpenMode {
        OpenMode::ORDWR
    }

    #[test]
    fn variables_are_files() {
        let caller = Caller::new(1, "glenda").with_env_group(7);
        let mut env = Environment::new();
        let top = env.attach(&caller, "").unwrap();
        let home = env
            .create(
                &caller,
                &top,
                "home",
                FileMode::from_bits_retain(0o666),
                rw(),
            )
            .unwrap();
        assert_eq!(
            ready(env.write(&caller, &home, 0, b"/usr/glenda").unwrap()),
            11
        );
        let found = env.walk(&caller, &top, "home").unwrap();
        assert_eq!(found.qid.path, home.qid.path);
        assert_eq!(ready(env.read(&caller, &found, 5, 100).unwrap()), b"glenda");
        let stat = env.stat(&caller, &found).unwrap();
        assert_eq!(
            (stat.name.as_str(), stat.length, stat.uid.as_str()),
            ("home", 11, "glenda")
        );
        assert_eq!(env.get(7, "home"), Some(&b"/usr/glenda"[..]));
        let names: Vec<String> = env
            .read_dir(&caller, &top)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["home"]);
        assert_eq!(env.parent(&caller, &found).unwrap(), top);
    }

    #[test]
    fn names_are_unique_and_removal_forgets() {
        let caller = Caller::new(1, "glenda");
        let mut env = Environment::new();
        let top = env.attach(&caller, "").unwrap();
        let perm = FileMode::from_bits_retain(0o666);
        let x = env.create(&caller, &top, "x", perm, rw()).unwrap();
        assert_eq!(
            env.create(&caller, &top, "x", perm, rw()),
            Err(Error::EXISTS)
        );
        assert_eq!(
            env.create(&caller, &top, "d", perm | FileMode::DMDIR, rw()),
            Err(Error::PERMISSION_DENIED)
        );
        env.remove(&caller, &x).unwrap();
        assert_eq!(env.walk(&caller, &top, "x"), Err(Error::NOT_FOUND));
        assert_eq!(env.read(&caller, &x, 0, 1), Err(Error::NOT_FOUND));
        assert_eq!(env.remove(&caller, &top), Err(Error::PERMISSION_DENIED));
    }

    #[test]
    fn truncating_open_empties_and_versions_move() {
        let caller = Caller::new(1, "glenda");
        let mut env = Environment::new();
        env.set(0, "path", b"/bin", "glenda").unwrap();
        let top = env.attach(&caller, "").unwrap();
        let path = env.walk(&caller, &top, "path").unwrap();
        let Opened::File(qid) = env
            .open(&caller, &path, OpenMode::OWRITE | OpenMode::OTRUNC)
            .unwrap()
        else {
            panic!("env opens files");
        };
        assert!(qid.version > path.qid.version);
        assert!(ready(env.read(&caller, &path, 0, 10).unwrap()).is_empty());
        assert_eq!(
            env.open(&caller, &top, OpenMode::OWRITE),
            Err(Error::IS_DIR)
        );
        let big = alloc::vec![b'x'; VALUE_MAX + 1];
        assert_eq!(env.write(&caller, &path, 0, &big), Err(Error::TOO_BIG));
    }

    #[test]
    fn groups_are_separate_and_fork_copies() {
        let mut env = Environment::new();
        env.set(1, "user", b"glenda", "glenda").unwrap();
        env.fork_group(1, 2);
        env.create_group(3);
        env.set(2, "user", b"bootes", "glenda").unwrap();
        assert_eq!(env.get(1, "user"), Some(&b"glenda"[..]));
        assert_eq!(env.get(2, "user"), Some(&b"bootes"[..]));
        assert_eq!(env.get(3, "user"), None);
        // The copy's files are not the original's.
        let one = Caller::new(1, "glenda").with_env_group(1);
        let two = Caller::new(2, "glenda").with_env_group(2);
        let top1 = env.attach(&one, "").unwrap();
        let top2 = env.attach(&two, "").unwrap();
        let a = env.walk(&one, &top1, "user").unwrap();
        let b = env.walk(&two, &top2, "user").unwrap();
        assert_ne!(a.qid.path, b.qid.path);
        env.drop_group(2);
        assert_eq!(env.read(&two, &b, 0, 10), Err(Error::NOT_FOUND));
    }
}
