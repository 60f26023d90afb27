//! `/dev/vm`: hvm's cells as files (`#V`, bound after `/dev`).
//!
//! | file | what |
//! |---|---|
//! | `/dev/vm/N/status` | one line: name, kind, state, restarts (of the limit), last failure |
//! | `/dev/vm/N/ctl` | takes `stop`, `start`, `restart`, or a failure to inject: `crash`, `triple-fault`, `wild-write`, `hang`, `garbage` |
//!
//! N is hvm's cell index (0 is cell 0 itself). The servant asks hvm
//! through a [`Cells`] the shell implements (core: `hvm_call`'s
//! `CellInfo` and `CellControl`); in bare mode there is no hvm and the
//! directory is empty. A ctl write is refused, with hvm's reason, when hvm
//! refuses it; an unknown verb is refused before hvm is asked.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use kasane_servant::dev::{Devgen, Dirtab, ROOT};
use kasane_servant::dir::{self, dir_qid};
use kasane_servant::{Caller, Error, File, Io, Servant};
use ninep::Qid;

/// What hvm tells of one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellRecord {
    pub name: String,
    /// "microkernel", "linux", "server-vm" (or "kind N").
    pub kind: String,
    /// "created", "running", "stopped", "failed" (or "state N").
    pub state: String,
    pub restarts: u32,
    pub restart_limit: u32,
    /// VM exits of the cell so far (hvm's `ExitCount`): what a reader
    /// multiplies by an exit's cost on real VT-x.
    pub exits: u64,
    /// Empty if it never failed.
    pub last_failure: String,
}

/// What a ctl write asks of hvm: `CellControl`'s operation numbers
/// (docs/hypercalls.md; the injections are issue 12's 10..=14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
    Crash,
    TripleFault,
    WildWrite,
    Hang,
    Garbage,
}

impl Verb {
    const ALL: [(&'static str, Verb); 8] = [
        ("start", Verb::Start),
        ("stop", Verb::Stop),
        ("restart", Verb::Restart),
        ("crash", Verb::Crash),
        ("triple-fault", Verb::TripleFault),
        ("wild-write", Verb::WildWrite),
        ("hang", Verb::Hang),
        ("garbage", Verb::Garbage),
    ];

    /// The verb a ctl line names (surrounding blanks and a newline
    /// allowed).
    pub fn parse(text: &str) -> Option<Verb> {
        let word = text.trim();
        Verb::ALL
            .iter()
            .find(|(name, _)| *name == word)
            .map(|(_, verb)| *verb)
    }

    /// `CellControl`'s operation number.
    pub fn operation(self) -> u64 {
        match self {
            Verb::Start => 1,
            Verb::Stop => 2,
            Verb::Restart => 3,
            Verb::Crash => 10,
            Verb::TripleFault => 11,
            Verb::WildWrite => 12,
            Verb::Hang => 13,
            Verb::Garbage => 14,
        }
    }
}

/// hvm, as `/dev/vm` needs it.
pub trait Cells {
    /// Cell `index`, or `None` past the last (always, without hvm).
    fn cell(&self, index: u32) -> Option<CellRecord>;
    /// Asks hvm to do `verb` to cell `index`; the error is hvm's reason.
    fn control(&mut self, index: u32, verb: Verb) -> Result<(), String>;
}

/// The `vm` directory's qid path.
const VM: u64 = 1;
/// Cell N's directory is `CELL_BASE + 4 N`, its status `+ 1`, its ctl `+ 2`.
const CELL_BASE: u64 = 0x100;
/// Most cells listed.
const MAX_CELLS: u32 = 64;

fn cell_dir(index: u32) -> u64 {
    CELL_BASE + 4 * u64::from(index)
}

/// (cell, 0 directory / 1 status / 2 ctl) of a qid path under `vm`.
fn split(path: u64) -> Option<(u32, u64)> {
    let offset = path.checked_sub(CELL_BASE)?;
    let index = u32::try_from(offset / 4).ok().filter(|&i| i < MAX_CELLS)?;
    let part = offset % 4;
    (part <= 2).then_some((index, part))
}

/// `#V`.
pub struct VmDevice<C: Cells> {
    cells: C,
    /// Names of cell directories ("0", "1", ...), borrowed by entries.
    names: Vec<String>,
}

impl<C: Cells> VmDevice<C> {
    pub fn new(cells: C) -> Self {
        VmDevice {
            cells,
            names: (0..MAX_CELLS).map(|i| format!("{i}")).collect(),
        }
    }

    /// The status line of cell `index`.
    fn status(&self, index: u32) -> Result<String, Error> {
        let cell = self.cells.cell(index).ok_or(Error::NOT_FOUND)?;
        let failure = if cell.last_failure.is_empty() {
            "-"
        } else {
            cell.last_failure.as_str()
        };
        Ok(format!(
            "{} {} {} restarts {}/{} exits {} last-failure {}\n",
            cell.name,
            cell.kind,
            cell.state,
            cell.restarts,
            cell.restart_limit,
            cell.exits,
            failure
        ))
    }
}

impl<C: Cells> Devgen for VmDevice<C> {
    fn gen<'a>(
        &'a self,
        _caller: &Caller<'a>,
        dir: &File,
        index: usize,
    ) -> Result<Option<Dirtab<'a>>, Error> {
        match dir.qid.path {
            ROOT => Ok(match index {
                0 => Some(Dirtab::dir("#V", ROOT, 0o555)),
                1 => Some(Dirtab::dir("vm", VM, 0o555)),
                _ => None,
            }),
            VM => {
                if index == 0 {
                    return Ok(Some(Dirtab::dir("vm", VM, 0o555)));
                }
                let Ok(cell) = u32::try_from(index - 1) else {
                    return Ok(None);
                };
                if cell >= MAX_CELLS || self.cells.cell(cell).is_none() {
                    return Ok(None);
                }
                let name = self.names[cell as usize].as_str();
                Ok(Some(Dirtab::dir(name, cell_dir(cell), 0o555)))
            }
            path => {
                let Some((cell, 0)) = split(path) else {
                    return Ok(None);
                };
                if self.cells.cell(cell).is_none() {
                    return Ok(None);
                }
                let name = self.names[cell as usize].as_str();
                Ok(match index {
                    0 => Some(Dirtab::dir(name, path, 0o555)),
                    1 => Some(Dirtab::file("status", path + 1, 0o444)),
                    2 => Some(Dirtab::file("ctl", path + 2, 0o220)),
                    _ => None,
                })
            }
        }
    }

    fn dotdot(&self, file: &File) -> Qid {
        match file.qid.path {
            ROOT | VM => dir_qid(ROOT),
            path => match split(path) {
                Some((_, 0)) => dir_qid(VM),
                Some((cell, _)) => dir_qid(cell_dir(cell)),
                None => dir_qid(ROOT),
            },
        }
    }
}

impl<C: Cells> Servant for VmDevice<C> {
    fn letter(&self) -> char {
        'V'
    }

    fn devgen(&self) -> Option<&dyn Devgen> {
        Some(self)
    }

    fn read(
        &mut self,
        _caller: &Caller<'_>,
        file: &File,
        offset: u64,
        count: u32,
    ) -> Result<Io<Vec<u8>>, Error> {
        match split(file.qid.path) {
            Some((cell, 1)) => {
                let line = self.status(cell)?;
                Ok(Io::Ready(dir::read_at(line.as_bytes(), offset, count)))
            }
            _ => Err(Error::PERMISSION_DENIED),
        }
    }

    fn write(
        &mut self,
        _caller: &Caller<'_>,
        file: &File,
        _offset: u64,
        data: &[u8],
    ) -> Result<Io<u32>, Error> {
        let Some((cell, 2)) = split(file.qid.path) else {
            return Err(Error::PERMISSION_DENIED);
        };
        let text = core::str::from_utf8(data).map_err(|_| Error::new("bad ctl message"))?;
        let verb = Verb::parse(text).ok_or_else(|| {
            Error::new(format!(
                "unknown ctl message '{}': stop, start, restart, crash, triple-fault, wild-write, hang or garbage",
                text.trim()
            ))
        })?;
        self.cells
            .control(cell, verb)
            .map_err(|why| Error::new(format!("cell {cell}: {why}")))?;
        u32::try_from(data.len())
            .map(Io::Ready)
            .map_err(|_| Error::TOO_BIG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kasane_servant::dev;
    use ninep::OpenMode;
    use std::cell::RefCell;
    use std::vec;

    /// Two cells, and the controls asked for.
    struct FakeHvm {
        cells: Vec<CellRecord>,
        asked: RefCell<Vec<(u32, Verb)>>,
    }

    impl Cells for FakeHvm {
        fn cell(&self, index: u32) -> Option<CellRecord> {
            self.cells.get(index as usize).cloned()
        }
        fn control(&mut self, index: u32, verb: Verb) -> Result<(), String> {
            if index == 0 {
                return Err(String::from("no such cell"));
            }
            self.asked.borrow_mut().push((index, verb));
            Ok(())
        }
    }

    fn record(name: &str, kind: &str, failure: &str) -> CellRecord {
        CellRecord {
            name: String::from(name),
            kind: String::from(kind),
            state: String::from("running"),
            restarts: 1,
            restart_limit: 3,
            exits: 42,
            last_failure: String::from(failure),
        }
    }

    fn device() -> VmDevice<FakeHvm> {
        VmDevice::new(FakeHvm {
            cells: vec![
                record("cell0", "microkernel", ""),
                record("ramfs", "server-vm", "triple fault rip=0x1000"),
            ],
            asked: RefCell::new(Vec::new()),
        })
    }

    fn caller() -> Caller<'static> {
        Caller::new(1, "eve")
    }

    fn walk_to(device: &mut VmDevice<FakeHvm>, names: &[&str]) -> Result<File, Error> {
        let c = caller();
        let mut file = device.attach(&c, "")?;
        for name in names {
            file = device.walk(&c, &file, name)?;
        }
        Ok(file)
    }

    #[test]
    fn the_cells_are_listed_with_their_files() {
        let mut d = device();
        let c = caller();
        let vm = walk_to(&mut d, &["vm"]).unwrap();
        let names: Vec<String> = d
            .read_dir(&c, &vm)
            .unwrap()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(names, ["0", "1"]);
        let one = walk_to(&mut d, &["vm", "1"]).unwrap();
        let files: Vec<String> = d
            .read_dir(&c, &one)
            .unwrap()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(files, ["status", "ctl"]);
        assert_eq!(walk_to(&mut d, &["vm", "2"]), Err(Error::NOT_FOUND));
        let status = walk_to(&mut d, &["vm", "1", "status"]).unwrap();
        assert_eq!(dev::parent(&d, &status).qid.path, cell_dir(1));
    }

    #[test]
    fn status_says_name_kind_state_restarts_and_last_failure() {
        let mut d = device();
        let c = caller();
        let read = |d: &mut VmDevice<FakeHvm>, cell: &str| {
            let file = walk_to(d, &["vm", cell, "status"]).unwrap();
            d.open(&c, &file, OpenMode::OREAD).unwrap();
            match d.read(&c, &file, 0, 1000).unwrap() {
                Io::Ready(bytes) => String::from_utf8(bytes).unwrap(),
                _ => panic!("a status read does not block"),
            }
        };
        assert_eq!(
            read(&mut d, "0"),
            "cell0 microkernel running restarts 1/3 exits 42 last-failure -\n"
        );
        assert_eq!(
            read(&mut d, "1"),
            "ramfs server-vm running restarts 1/3 exits 42 last-failure triple fault rip=0x1000\n"
        );
    }

    #[test]
    fn ctl_takes_the_verbs_and_refuses_the_rest() {
        let mut d = device();
        let c = caller();
        let ctl = walk_to(&mut d, &["vm", "1", "ctl"]).unwrap();
        assert!(
            d.open(&c, &ctl, OpenMode::OREAD).is_err(),
            "ctl is write-only"
        );
        d.open(&c, &ctl, OpenMode::OWRITE).unwrap();
        for (text, _) in Verb::ALL {
            let line = format!("{text}\n");
            assert!(matches!(
                d.write(&c, &ctl, 0, line.as_bytes()),
                Ok(Io::Ready(_))
            ));
        }
        let asked: Vec<u64> = d
            .cells
            .asked
            .borrow()
            .iter()
            .map(|(cell, verb)| {
                assert_eq!(*cell, 1);
                verb.operation()
            })
            .collect();
        assert_eq!(asked, [1, 2, 3, 10, 11, 12, 13, 14]);
        let bad = d.write(&c, &ctl, 0, b"reboot");
        assert!(
            matches!(&bad, Err(e) if e.to_string().contains("unknown ctl message 'reboot'")),
            "{bad:?}"
        );
        // hvm's refusal comes back with the cell's number.
        let ctl0 = walk_to(&mut d, &["vm", "0", "ctl"]).unwrap();
        let refused = d.write(&c, &ctl0, 0, b"stop");
        assert!(
            matches!(&refused, Err(e) if e.to_string() == "cell 0: no such cell"),
            "{refused:?}"
        );
    }

    #[test]
    fn without_hvm_the_directory_is_empty() {
        struct Bare;
        impl Cells for Bare {
            fn cell(&self, _: u32) -> Option<CellRecord> {
                None
            }
            fn control(&mut self, _: u32, _: Verb) -> Result<(), String> {
                Err(String::from("not supported"))
            }
        }
        let mut d = VmDevice::new(Bare);
        let c = caller();
        let root = d.attach(&c, "").unwrap();
        let vm = d.walk(&c, &root, "vm").unwrap();
        assert_eq!(d.read_dir(&c, &vm).unwrap(), Vec::new());
        assert!(d.walk(&c, &vm, "0").is_err());
    }
}
