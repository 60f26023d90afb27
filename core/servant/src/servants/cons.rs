//! #c, the console servant's pure files: null, zero, sysname and time.
//!
//! cons(3) describes them; /dev/cons itself needs the console hardware and
//! is served by core's shell around this crate. Files: `null` (reads are
//! empty, writes are discarded), `zero` (reads give zero bytes), `sysname`
//! (the system's name, settable), and `time` (the clock, read-only here
//! because core's clock is supplied, not set through a file).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::dev::{Devgen, Dirtab};
use crate::dir;
use crate::servant::{Caller, File, Io, Servant};
use crate::Error;

/// What /dev/time reports (cons(3)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Time {
    /// Nanoseconds since the epoch.
    pub nanoseconds: u64,
    /// Clock ticks since boot.
    pub ticks: u64,
    /// Ticks per second.
    pub frequency: u64,
}

/// The source of the time; core supplies the real one.
pub trait Clock {
    fn now(&self) -> Time;
}

const LETTER: char = 'c';
const ROOT: u64 = crate::dev::ROOT;
const NULL: u64 = 1;
const ZERO: u64 = 2;
const SYSNAME: u64 = 3;
const TIME: u64 = 4;
/// The directory, then its files (cons(3)).
const TABLE: [Dirtab<'static>; 5] = [
    Dirtab::dir("#c", ROOT, 0o555),
    Dirtab::file("null", NULL, 0o666),
    Dirtab::file("zero", ZERO, 0o444),
    Dirtab::file("sysname", SYSNAME, 0o664),
    Dirtab::file("time", TIME, 0o444),
];
/// Longest system name kept; Plan 9 keeps a name of KNAMELEN (28).
const SYSNAME_MAX: usize = 64;

pub struct Console<K: Clock> {
    clock: K,
    sysname: String,
}

impl<K: Clock> core::fmt::Debug for Console<K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Console")
            .field("sysname", &self.sysname)
            .finish_non_exhaustive()
    }
}

impl<K: Clock> Console<K> {
    pub fn new(clock: K, sysname: &str) -> Self {
        Self {
            clock,
            sysname: String::from(sysname),
        }
    }

    pub fn sysname(&self) -> &str {
        &self.sysname
    }

    /// The text of /dev/time: seconds and nanoseconds since the epoch,
    /// ticks since boot and ticks per second, each right-justified and
    /// followed by a blank, in Plan 9's widths (11, then 21).
    pub fn time_text(&self) -> String {
        let now = self.clock.now();
        format!(
            "{:>11} {:>21} {:>21} {:>21} ",
            now.nanoseconds / 1_000_000_000,
            now.nanoseconds,
            now.ticks,
            now.frequency
        )
    }
}

impl<K: Clock> Devgen for Console<K> {
    fn gen<'a>(
        &'a self,
        _caller: &Caller<'a>,
        dir: &File,
        index: usize,
    ) -> Result<Option<Dirtab<'a>>, Error> {
        if dir.qid.path != ROOT {
            return Ok(None);
        }
        Ok(TABLE.get(index).cloned().map(|entry| match entry.qid.path {
            SYSNAME => entry.with_length(self.sysname.len() as u64),
            _ => entry,
        }))
    }
}

impl<K: Clock> Servant for Console<K> {
    fn letter(&self) -> char {
        LETTER
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
        let data = match file.qid.path {
            // cons(3): reads of null return nothing.
            NULL => Vec::new(),
            // cons(3): zero is an endless source of zero bytes.
            ZERO => alloc::vec![0; count as usize],
            SYSNAME => dir::read_at(self.sysname.as_bytes(), offset, count),
            TIME => dir::read_at(self.time_text().as_bytes(), offset, count),
            ROOT => return Err(Error::IS_DIR),
            _ => return Err(Error::NOT_FOUND),
        };
        Ok(Io::Ready(data))
    }

    fn write(
        &mut self,
        _caller: &Caller<'_>,
        file: &File,
        _offset: u64,
        data: &[u8],
    ) -> Result<Io<u32>, Error> {
        let taken = u32::try_from(data.len()).map_err(|_| Error::TOO_BIG)?;
        match file.qid.path {
            // cons(3): writes to null are discarded.
            NULL => Ok(Io::Ready(taken)),
            SYSNAME => {
                // A write replaces the name, as Plan 9's conswrite does,
                // less a trailing newline that `echo` adds.
                let text = core::str::from_utf8(data).map_err(|_| Error::BAD_CHAR)?;
                let name = text.trim_end_matches('\n');
                if name.is_empty() || name.len() > SYSNAME_MAX {
                    return Err(Error::BAD_ARG);
                }
                self.sysname = String::from(name);
                Ok(Io::Ready(taken))
            }
            _ => Err(Error::PERMISSION_DENIED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ninep::OpenMode;

    struct Fixed;

    impl Clock for Fixed {
        fn now(&self) -> Time {
            Time {
                nanoseconds: 1_700_000_000_123_456_789,
                ticks: 42,
                frequency: 1_000_000_000,
            }
        }
    }

    fn ready<T>(io: Io<T>) -> T {
        match io {
            Io::Ready(value) => value,
            Io::WouldBlock(key) => panic!("blocked on {key:?}"),
        }
    }

    fn open(cons: &mut Console<Fixed>, name: &str, mode: OpenMode) -> Result<File, Error> {
        let caller = Caller::new(1, "glenda");
        let root = cons.attach(&caller, "")?;
        let file = cons.walk(&caller, &root, name)?;
        cons.open(&caller, &file, mode)?;
        Ok(file)
    }

    #[test]
    fn null_swallows_and_gives_nothing() {
        let caller = Caller::new(1, "glenda");
        let mut cons = Console::new(Fixed, "kasane");
        let null = open(&mut cons, "null", OpenMode::ORDWR).unwrap();
        assert_eq!(ready(cons.write(&caller, &null, 0, b"gone").unwrap()), 4);
        assert!(ready(cons.read(&caller, &null, 0, 100).unwrap()).is_empty());
    }

    #[test]
    fn zero_gives_zeros_and_takes_nothing() {
        let caller = Caller::new(1, "glenda");
        let mut cons = Console::new(Fixed, "kasane");
        let zero = open(&mut cons, "zero", OpenMode::OREAD).unwrap();
        assert_eq!(
            ready(cons.read(&caller, &zero, 1 << 40, 5).unwrap()),
            [0; 5]
        );
        assert_eq!(
            open(&mut cons, "zero", OpenMode::OWRITE),
            Err(Error::PERMISSION_DENIED)
        );
        assert_eq!(
            cons.write(&caller, &zero, 0, b"x"),
            Err(Error::PERMISSION_DENIED)
        );
    }

    #[test]
    fn sysname_reads_and_is_set_by_a_write() {
        let caller = Caller::new(1, "glenda");
        let mut cons = Console::new(Fixed, "kasane");
        let name = open(&mut cons, "sysname", OpenMode::ORDWR).unwrap();
        assert_eq!(ready(cons.read(&caller, &name, 0, 100).unwrap()), b"kasane");
        assert_eq!(ready(cons.write(&caller, &name, 0, b"gnot\n").unwrap()), 5);
        assert_eq!(cons.sysname(), "gnot");
        assert_eq!(cons.stat(&caller, &name).unwrap().length, 4);
        assert_eq!(cons.write(&caller, &name, 0, b"\n"), Err(Error::BAD_ARG));
    }

    #[test]
    fn time_has_plan9s_layout() {
        let caller = Caller::new(1, "glenda");
        let mut cons = Console::new(Fixed, "kasane");
        let time = open(&mut cons, "time", OpenMode::OREAD).unwrap();
        let text = String::from_utf8(ready(cons.read(&caller, &time, 0, 200).unwrap())).unwrap();
        assert_eq!(text.len(), 12 + 3 * 22);
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(
            fields,
            ["1700000000", "1700000000123456789", "42", "1000000000"]
        );
        assert_eq!(
            open(&mut cons, "time", OpenMode::OWRITE),
            Err(Error::PERMISSION_DENIED)
        );
    }

    #[test]
    fn the_directory_lists_every_file() {
        let caller = Caller::new(1, "glenda");
        let mut cons = Console::new(Fixed, "kasane");
        let root = cons.attach(&caller, "").unwrap();
        let names: Vec<String> = cons
            .read_dir(&caller, &root)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["null", "zero", "sysname", "time"]);
        assert_eq!(cons.walk(&caller, &root, "cons"), Err(Error::NOT_FOUND));
    }
}
