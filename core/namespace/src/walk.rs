//! Path walks through a namespace: mount crossing, unions and a correct `..`.
//!
//! A [`Location`] is where a walk stands, with the record Plan 9 keeps in a
//! chan's Path: for every element, the chan the walk found there (`under`)
//! and, if something is mounted on it, the chan the walk went on from
//! (`over`, the first member of the union). Invariants:
//! - a walk crosses a mount point as soon as it reaches it, one level deep
//!   (findmount, not repeated on the mounted root), except in a tree named
//!   by `#x`, where nothing is crossed (intro(3): "the name space is not
//!   consulted");
//! - `..` is lexical, as in Plan 9 since "Getting Dot-Dot Right": it goes
//!   back to the element the walk came from, so `..` from the root of a
//!   mounted tree lands on the parent of the mount point, and `..` of `/`
//!   is `/` (intro(2)). The servant's own `..` is asked only above the
//!   first element of a walk that began at a device root or a bare chan;
//! - the element `..` lands on is crossed again, so a location made before
//!   a bind or an unmount sees the namespace as it is now.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::chans::{Chans, DirEntry, Walker};
use crate::clean::{cleanname, join};
use crate::table::Namespace;
use crate::Error;

/// Where a location's first element came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    /// The namespace's `/`.
    Root,
    /// The root of a device, `#` letter and spec (intro(3)).
    Device(String),
    /// A chan with no walk behind it, and its name.
    Chan(String),
}

#[derive(Debug)]
struct Step<C> {
    name: String,
    /// What the walk found here: the mount point itself if it is one.
    under: C,
    /// The first member of the union mounted on `under`, if any.
    over: Option<C>,
}

/// The result of a walk: a chan, and how the walk got there.
///
/// A location holds references to chans; give it back with
/// [`Location::close`] (or let `Drop` do it, for handles that count in
/// `Drop`).
#[derive(Debug)]
pub struct Location<C> {
    start: Start,
    /// Never empty: the first step is the start.
    steps: Vec<Step<C>>,
}

impl<C: Clone> Location<C> {
    /// A location at a chan that no walk led to, e.g. one opened by a file
    /// descriptor, called `name`. One reference is handed over. `..` above
    /// it asks the servant.
    pub fn from_chan(chan: C, name: &str) -> Self {
        Self {
            start: Start::Chan(cleanname(name)),
            steps: alloc::vec![Step {
                name: String::new(),
                under: chan,
                over: None,
            }],
        }
    }

    fn top(&self) -> &Step<C> {
        // The first step is never popped, so there is always a last one.
        &self.steps[self.steps.len() - 1]
    }

    fn top_mut(&mut self) -> &mut Step<C> {
        let last = self.steps.len() - 1;
        &mut self.steps[last]
    }

    /// The chan the location names, across any mount on it: what an open
    /// of the name opens.
    pub fn chan(&self) -> &C {
        let top = self.top();
        top.over.as_ref().unwrap_or(&top.under)
    }

    /// The chan before crossing: the mount point itself if something is
    /// mounted here (what bind(2) and mount(2) key `old` on).
    pub fn under(&self) -> &C {
        &self.top().under
    }

    /// The mount point, if the location crossed one at its last element.
    pub fn mount_point(&self) -> Option<&C> {
        let top = self.top();
        top.over.as_ref().map(|_| &top.under)
    }

    /// Whether the walk began at `#x` and so crosses no mounts.
    pub fn is_nomount(&self) -> bool {
        matches!(self.start, Start::Device(_))
    }

    /// How many elements below its start the location is.
    pub fn depth(&self) -> usize {
        self.steps.len() - 1
    }

    /// The cleaned name of the location, as Plan 9 keeps `c->path`:
    /// `/usr/glenda`, `#c/cons`, or a bare chan's name joined with what was
    /// walked from it.
    pub fn path(&self) -> String {
        let names: Vec<&str> = self.steps[1..].iter().map(|s| s.name.as_str()).collect();
        let tail = names.join("/");
        match &self.start {
            Start::Root => format!("/{tail}"),
            Start::Device(device) if tail.is_empty() => device.clone(),
            Start::Device(device) => format!("{device}/{tail}"),
            Start::Chan(base) if tail.is_empty() => base.clone(),
            Start::Chan(base) => join(base, &tail),
        }
    }

    /// A copy holding references of its own.
    pub fn fork<H: Chans<C>>(&self, chans: &mut H) -> Self {
        Self {
            start: self.start.clone(),
            steps: self
                .steps
                .iter()
                .map(|step| Step {
                    name: step.name.clone(),
                    under: chans.dup(&step.under),
                    over: step.over.as_ref().map(|over| chans.dup(over)),
                })
                .collect(),
        }
    }

    /// Gives back every reference the location holds (Plan 9's
    /// pathclose and cclose).
    pub fn close<H: Chans<C>>(self, chans: &mut H) {
        for step in self.steps {
            close_step(chans, step);
        }
    }
}

fn close_step<C: Clone, H: Chans<C>>(chans: &mut H, step: Step<C>) {
    if let Some(over) = step.over {
        chans.close(over);
    }
    chans.close(step.under);
}

/// intro(2): a name may hold any character but NUL, the control
/// characters and DEL (Plan 9's validname rejects them as "bad character
/// in file name").
fn check_characters(name: &str) -> Result<(), Error> {
    if name.chars().any(|c| c < ' ' || c == '\u{7f}') {
        return Err(Error::BAD_CHAR);
    }
    Ok(())
}

impl<C: Clone, I: Ord + Clone + core::fmt::Debug> Namespace<C, I> {
    /// The location of `/`, across anything mounted on it.
    pub fn root_location<H: Chans<C, Id = I>>(&self, chans: &mut H) -> Location<C> {
        let under = chans.dup(self.root());
        let over = self.cross(chans, &under);
        Location {
            start: Start::Root,
            steps: alloc::vec![Step {
                name: String::new(),
                under,
                over,
            }],
        }
    }

    /// Resolves a name as Plan 9's namec does: from `/` if it begins with
    /// `/`, from the root of a device if it begins with `#` (intro(3)),
    /// else from `dot`. Elements `.` and empty ones are skipped; `..` is
    /// described at the top of this file.
    pub fn resolve<W: Walker<C, Id = I>>(
        &self,
        walker: &mut W,
        dot: &Location<C>,
        name: &str,
    ) -> Result<Location<C>, Error> {
        if name.is_empty() {
            return Err(Error::EMPTY_NAME);
        }
        check_characters(name)?;
        let (mut location, rest) = if name.starts_with('/') {
            (self.root_location(walker), name)
        } else if let Some(device) = name.strip_prefix('#') {
            self.attach_device(walker, device)?
        } else {
            (dot.fork(walker), name)
        };
        match self.walk_elements(walker, &mut location, rest) {
            Ok(()) => Ok(location),
            Err(error) => {
                location.close(walker);
                Err(error)
            }
        }
    }

    /// Walks the `/`-separated `names` from `from` (whose own kind of
    /// start is kept: a leading `/` is just a separator here).
    pub fn walk<W: Walker<C, Id = I>>(
        &self,
        walker: &mut W,
        from: &Location<C>,
        names: &str,
    ) -> Result<Location<C>, Error> {
        check_characters(names)?;
        let mut location = from.fork(walker);
        match self.walk_elements(walker, &mut location, names) {
            Ok(()) => Ok(location),
            Err(error) => {
                location.close(walker);
                Err(error)
            }
        }
    }

    /// The entries of the directory at `location`. For a union, every
    /// member's entries in member order, the first member to have a name
    /// winning (bind(2): "the union ... is the union of the directories";
    /// Plan 9's unionread). A member that fails to read is skipped unless
    /// every one fails, so one hung server does not hide the rest.
    pub fn read_dir<W: Walker<C, Id = I>>(
        &self,
        walker: &mut W,
        location: &Location<C>,
    ) -> Result<Vec<W::Entry>, Error> {
        let Some(members) = self.union_at(walker, location) else {
            return walker.read_dir(location.chan());
        };
        let mut seen = BTreeSet::new();
        let mut entries = Vec::new();
        let mut first_error = None;
        let mut any_read = false;
        for member in members {
            match walker.read_dir(member.chan()) {
                Ok(list) => {
                    any_read = true;
                    for entry in list {
                        if seen.insert(String::from(entry.name())) {
                            entries.push(entry);
                        }
                    }
                }
                // A slow member is waited for, not skipped.
                Err(error) if error == Error::PENDING => return Err(error),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) if !any_read => Err(error),
            _ => Ok(entries),
        }
    }

    fn attach_device<'n, W: Walker<C, Id = I>>(
        &self,
        walker: &mut W,
        device: &'n str,
    ) -> Result<(Location<C>, &'n str), Error> {
        // `#` and one letter, then the spec up to the next `/` (intro(3));
        // the letter may itself be `/`, as in `#/`.
        let mut chars = device.chars();
        let letter = chars.next().ok_or(Error::BAD_SHARP)?;
        let after = chars.as_str();
        let (spec, rest) = match after.find('/') {
            Some(at) => (&after[..at], &after[at..]),
            None => (after, ""),
        };
        // intro(3): #M is reached only through mount(2).
        if letter == 'M' {
            return Err(Error::NO_ATTACH);
        }
        let root = walker.attach(letter, spec)?;
        let location = Location {
            start: Start::Device(format!("#{letter}{spec}")),
            steps: alloc::vec![Step {
                name: String::new(),
                under: root,
                over: None,
            }],
        };
        Ok((location, rest))
    }

    fn walk_elements<W: Walker<C, Id = I>>(
        &self,
        walker: &mut W,
        location: &mut Location<C>,
        names: &str,
    ) -> Result<(), Error> {
        for name in names.split('/') {
            match name {
                "" | "." => {}
                ".." => self.step_up(walker, location)?,
                _ => self.step(walker, location, name)?,
            }
        }
        Ok(())
    }

    /// One element down: try the union in member order, then cross what is
    /// mounted on the file found (Plan 9's walk and domount).
    fn step<W: Walker<C, Id = I>>(
        &self,
        walker: &mut W,
        location: &mut Location<C>,
        name: &str,
    ) -> Result<(), Error> {
        if !walker.is_dir(location.chan()) {
            return Err(Error::NOT_DIR);
        }
        let found = match self.union_at(walker, location) {
            Some(members) => {
                let mut last_error = Error::NOT_FOUND;
                let mut found = None;
                for member in members {
                    match walker.walk(member.chan(), name) {
                        Ok(chan) => {
                            found = Some(chan);
                            break;
                        }
                        // A member still to answer is not a missing one.
                        Err(error) if error == Error::PENDING => return Err(error),
                        // Like Plan 9, report the last member's failure.
                        Err(error) => last_error = error,
                    }
                }
                found.ok_or(last_error)?
            }
            None => walker.walk(location.chan(), name)?,
        };
        let over = if location.is_nomount() {
            None
        } else {
            self.cross(walker, &found)
        };
        location.steps.push(Step {
            name: String::from(name),
            under: found,
            over,
        });
        Ok(())
    }

    /// One element up (`..`).
    fn step_up<W: Walker<C, Id = I>>(
        &self,
        walker: &mut W,
        location: &mut Location<C>,
    ) -> Result<(), Error> {
        if location.steps.len() > 1 {
            if let Some(gone) = location.steps.pop() {
                close_step(walker, gone);
            }
        } else {
            match &location.start {
                // intro(2): `..` of the root is the root.
                Start::Root => {}
                Start::Device(_) | Start::Chan(_) => {
                    let parent = walker.parent(&location.top().under)?;
                    let old = core::mem::replace(&mut location.top_mut().under, parent);
                    walker.close(old);
                    if let Start::Chan(base) = &mut location.start {
                        *base = join(base, "..");
                    }
                }
            }
        }
        if !location.is_nomount() {
            let top = location.top_mut();
            if let Some(old) = top.over.take() {
                walker.close(old);
            }
            top.over = self.cross(walker, &top.under);
        }
        Ok(())
    }
}
