//! The servant table, and the bridge that lets a namespace walk servants.
//!
//! [`Devices`] is Plan 9's devtab: one servant per `#` letter. [`Host`]
//! lends a [`ChanTable`] and the devices to `kasane_namespace` as its
//! `Chans` and `Walker`, so walks, binds and union reads run over real
//! chans: every chan a walk makes is a table entry with its name, and every
//! reference the namespace drops is a decref that clunks the servant's file
//! when it is the last (Plan 9's cclose calling the device's close).

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;

use kasane_namespace::{join, ChanId, Chans, Walker};
use ninep::{QidType, Stat};

use crate::chan::{Chan, ChanHandle, ChanTable, Clunk};
use crate::servant::{Caller, Servant};
use crate::Error;

/// Every servant, by letter.
#[derive(Default)]
pub struct Devices {
    servants: Vec<Box<dyn Servant + Send>>,
    /// Each servant's letter, at its index: found without a call through
    /// the vtable per servant, since every servant operation looks one up.
    letters: Vec<char>,
}

impl core::fmt::Debug for Devices {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Devices")
            .field("letters", &self.letters)
            .finish()
    }
}

impl Devices {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a servant; its letter must be free.
    pub fn add(&mut self, servant: Box<dyn Servant + Send>) -> Result<(), Error> {
        let letter = servant.letter();
        if self.letters.contains(&letter) {
            return Err(Error::IN_USE);
        }
        self.letters.push(letter);
        self.servants.push(servant);
        Ok(())
    }

    /// The servant named by `letter`; an unknown letter is Plan 9's
    /// "unknown device in # filename".
    pub fn get_mut(&mut self, letter: char) -> Result<&mut (dyn Servant + Send), Error> {
        match self.letters.iter().position(|&l| l == letter) {
            Some(index) => Ok(self.servants[index].as_mut()),
            None => Err(Error::BAD_SHARP),
        }
    }
}

impl Clunk for Devices {
    fn clunk(&mut self, chan: Chan) {
        if let Ok(servant) = self.get_mut(chan.letter) {
            servant.close(&chan.file(), chan.mode);
        }
    }
}

/// A servant table a [`Host`] can lend the namespace: [`Devices`], or an
/// owner's table that keeps some servants as typed fields (core keeps
/// `#M`, `#s`, `#e`, `#p` and `#|` so, to reach their own methods).
pub trait ServantTable {
    /// The servant named by `letter`; an unknown letter is
    /// [`Error::BAD_SHARP`].
    fn servant(&mut self, letter: char) -> Result<&mut dyn Servant, Error>;
}

impl ServantTable for Devices {
    fn servant(&mut self, letter: char) -> Result<&mut dyn Servant, Error> {
        Ok(self.get_mut(letter)?)
    }
}

/// A [`ServantTable`] as the chan table's [`Clunk`].
struct TableClunk<'a, D>(&'a mut D);

impl<D: ServantTable> Clunk for TableClunk<'_, D> {
    fn clunk(&mut self, chan: Chan) {
        if let Ok(servant) = self.0.servant(chan.letter) {
            servant.close(&chan.file(), chan.mode);
        }
    }
}

/// A chan table, the servants and the caller, seen by the namespace.
pub struct Host<'a, 'c, D = Devices> {
    pub table: &'a mut ChanTable,
    pub devices: &'a mut D,
    pub caller: Caller<'c>,
}

impl<D> core::fmt::Debug for Host<'_, '_, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Host")
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

/// The identity of a handle that names no chan: matches no mount point.
const NO_CHAN: ChanId<char> = ChanId {
    kind: '\0',
    dev: u32::MAX,
    path: u64::MAX,
};

impl<D: ServantTable> Host<'_, '_, D> {
    /// Makes a chan on what `make` returns from the servant of `letter`.
    /// A new, unopened chan on the file of `chan`, with the same name
    /// (Plan 9's cclone before an open): opens must not share the offset
    /// and mode of a chan the namespace holds, such as a union member.
    pub fn clone_chan(&mut self, chan: &ChanHandle) -> Result<ChanHandle, Error> {
        let from = self.table.get(*chan)?;
        let (letter, file, name) = (from.letter, from.file(), from.name.clone());
        let link = from.link;
        let handle = self.make(letter, name, |servant, caller| {
            servant.clone_file(caller, &file)
        })?;
        self.table.get_mut(handle)?.link = link;
        Ok(handle)
    }

    fn make(
        &mut self,
        letter: char,
        name: alloc::string::String,
        make: impl FnOnce(&mut dyn Servant, &Caller<'_>) -> Result<crate::File, Error>,
    ) -> Result<ChanHandle, Error> {
        let caller = self.caller;
        let servant = self.devices.servant(letter)?;
        let file = make(servant, &caller)?;
        Ok(self.table.insert(Chan::new(letter, file, name)))
    }
}

impl<D: ServantTable> Chans<ChanHandle> for Host<'_, '_, D> {
    type Id = ChanId<char>;

    fn id(&self, chan: &ChanHandle) -> ChanId<char> {
        match self.table.get(*chan) {
            Ok(chan) => ChanId {
                kind: chan.letter,
                dev: chan.dev,
                path: chan.qid.path,
            },
            Err(_) => NO_CHAN,
        }
    }

    fn is_dir(&self, chan: &ChanHandle) -> bool {
        self.table
            .get(*chan)
            .is_ok_and(|chan| chan.qid.kind.contains(QidType::DIR))
    }

    fn dup(&mut self, chan: &ChanHandle) -> ChanHandle {
        // The namespace dups only chans it holds, which are live.
        let _ = self.table.incref(*chan);
        *chan
    }

    fn close(&mut self, chan: ChanHandle) {
        let _ = self.table.decref(chan, &mut TableClunk(&mut *self.devices));
    }
}

impl<D: ServantTable> Walker<ChanHandle> for Host<'_, '_, D> {
    type Entry = Stat;

    fn attach(&mut self, letter: char, spec: &str) -> Result<ChanHandle, Error> {
        let name = format!("#{letter}{spec}");
        self.make(letter, name, |servant, caller| servant.attach(caller, spec))
    }

    fn walk(&mut self, dir: &ChanHandle, name: &str) -> Result<ChanHandle, Error> {
        let from = self.table.get(*dir)?;
        let (letter, file, path) = (from.letter, from.file(), join(&from.name, name));
        self.make(letter, path, |servant, caller| {
            servant.walk(caller, &file, name)
        })
    }

    fn parent(&mut self, chan: &ChanHandle) -> Result<ChanHandle, Error> {
        let from = self.table.get(*chan)?;
        let (letter, file, path) = (from.letter, from.file(), join(&from.name, ".."));
        self.make(letter, path, |servant, caller| {
            servant.parent(caller, &file)
        })
    }

    fn read_dir(&mut self, dir: &ChanHandle) -> Result<Vec<Stat>, Error> {
        let from = self.table.get(*dir)?;
        let (letter, file) = (from.letter, from.file());
        let caller = self.caller;
        self.devices.servant(letter)?.read_dir(&caller, &file)
    }
}
