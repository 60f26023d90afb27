//! The mount table: mount points, their ordered unions, bind, mount, unmount.
//!
//! A [`Namespace`] is Plan 9's Pgrp: a root chan and a table from the
//! identity of a mount point to the union of chans mounted there, in the
//! order lookups try them. Invariants:
//! - every mount point has at least one member, and a mount point whose
//!   only member is the directory that was there before (what a union bind
//!   adds, see [`Source::Original`]) is removed, so an unmount restores
//!   exactly what was there;
//! - every chan the table holds is one reference of its own: [`fork`]
//!   takes new ones, [`clear`] and unmount give them back.
//!
//! [`fork`]: Namespace::fork
//! [`clear`]: Namespace::clear

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::chans::Chans;
use crate::flags::{MountFlags, Order};
use crate::walk::Location;
use crate::Error;

/// How a member came to be in a union; /proc/N/ns prints it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The directory the mount point was before the first bind that did not
    /// replace it. Plan 9's cmount adds it, with no flags, so that a union
    /// still shows what was there (bind(2)).
    Original,
    /// bind(1): the name the bound file was reached by.
    Bind { path: String },
    /// mount(1): the name of the server link (e.g. `/srv/ramfs`) and the
    /// attach specifier.
    Mount { link: String, spec: String },
}

/// The server link a mount(2) goes through, as mount(1) named it.
#[derive(Debug, Clone)]
pub struct MountLink<'a, I> {
    /// The identity of the link's chan, which unmount(2) may name.
    pub id: I,
    /// The name the link was opened by, e.g. `/srv/ramfs`.
    pub path: &'a str,
    /// The attach specifier (attach(5)'s aname); may be empty.
    pub spec: &'a str,
}

/// One member of a union.
#[derive(Debug)]
pub struct Member<C, I> {
    chan: C,
    flags: MountFlags,
    source: Source,
    /// For a mount, the identity of the link's chan, so that
    /// `unmount /srv/x /n/x` finds the member (Plan 9 compares `c->mchan`).
    link: Option<I>,
    /// The bind that put the member here; members copied from a union
    /// share the group of the member they came with.
    group: u64,
    /// For the member a bind named, how many members that bind added (it
    /// and the union it copied); `None` for a copied member.
    added: Option<usize>,
}

impl<C, I> Member<C, I> {
    /// The member's chan: for a mount, the root of the mounted tree.
    pub fn chan(&self) -> &C {
        &self.chan
    }

    pub fn flags(&self) -> MountFlags {
        self.flags
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn link(&self) -> Option<&I> {
        self.link.as_ref()
    }

    /// Whether a bind copied this member along with a union it named,
    /// rather than naming it itself.
    pub fn is_copied(&self) -> bool {
        self.added.is_none()
    }

    pub(crate) fn group(&self) -> u64 {
        self.group
    }

    pub(crate) fn added(&self) -> Option<usize> {
        self.added
    }
}

/// A mount point and its union (Plan 9's Mhead and its Mount list).
#[derive(Debug)]
pub struct MountPoint<C, I> {
    /// The mount point itself, as it was before anything was mounted.
    from: C,
    /// The cleaned name the mount point was reached by.
    path: String,
    members: Vec<Member<C, I>>,
    /// When the mount point was made; /proc/N/ns lists in this order so
    /// that replaying it binds in an order that resolves the same names.
    sequence: u64,
}

impl<C, I> MountPoint<C, I> {
    pub fn from(&self) -> &C {
        &self.from
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The union, in the order lookups try it.
    pub fn members(&self) -> &[Member<C, I>] {
        &self.members
    }
}

/// A per-process namespace (Plan 9's Pgrp): a root and a mount table.
///
/// Processes that share a namespace share one `Namespace` (the caller keeps
/// it behind whatever lock its threads need); `rfork(RFNAMEG)` is
/// [`Namespace::fork`], which copies.
#[derive(Debug)]
pub struct Namespace<C, I> {
    root: C,
    mounts: BTreeMap<I, MountPoint<C, I>>,
    next_sequence: u64,
}

impl<C: Clone, I: Ord + Clone + core::fmt::Debug> Namespace<C, I> {
    /// A namespace with nothing mounted, whose `/` is `root` (one reference
    /// handed over).
    pub fn new(root: C) -> Self {
        Self {
            root,
            mounts: BTreeMap::new(),
            next_sequence: 0,
        }
    }

    /// The root chan, before anything mounted on `/` is crossed.
    pub fn root(&self) -> &C {
        &self.root
    }

    /// The mount point with identity `id`, if something is mounted there.
    pub fn mount_point(&self, id: &I) -> Option<&MountPoint<C, I>> {
        self.mounts.get(id)
    }

    /// Every mount point, oldest first.
    pub fn mount_points(&self) -> Vec<&MountPoint<C, I>> {
        let mut all: Vec<&MountPoint<C, I>> = self.mounts.values().collect();
        all.sort_by_key(|point| point.sequence);
        all
    }

    /// An independent copy, as `rfork(RFNAMEG)` makes (fork(2)): later
    /// binds in either do not show in the other. Takes a reference to every
    /// chan the copy holds.
    pub fn fork<H: Chans<C, Id = I>>(&self, chans: &mut H) -> Self {
        let mounts = self
            .mounts
            .iter()
            .map(|(id, point)| {
                let copy = MountPoint {
                    from: chans.dup(&point.from),
                    path: point.path.clone(),
                    members: point
                        .members
                        .iter()
                        .map(|member| Member {
                            chan: chans.dup(&member.chan),
                            flags: member.flags,
                            source: member.source.clone(),
                            link: member.link.clone(),
                            group: member.group,
                            added: member.added,
                        })
                        .collect(),
                    sequence: point.sequence,
                };
                (id.clone(), copy)
            })
            .collect();
        Self {
            root: chans.dup(&self.root),
            mounts,
            next_sequence: self.next_sequence,
        }
    }

    /// Gives back every reference the namespace holds (Plan 9's closepgrp),
    /// for when its last process is gone.
    pub fn clear<H: Chans<C, Id = I>>(self, chans: &mut H) {
        for (_, point) in self.mounts {
            close_point(chans, point);
        }
        chans.close(self.root);
    }

    /// What a walk that reaches `chan` goes on from: the first member of the
    /// union mounted on it, as a new reference, or `None` if nothing is
    /// mounted there (Plan 9's findmount).
    pub fn cross<H: Chans<C, Id = I>>(&self, chans: &mut H, chan: &C) -> Option<C> {
        let point = self.mounts.get(&chans.id(chan))?;
        let first = point.members.first()?;
        Some(chans.dup(&first.chan))
    }

    /// bind(2): makes the file `new` names visible at `old`.
    ///
    /// `new` is taken as walked, across mounts, so binding a union copies
    /// the union (Plan 9's cmount: "copy a union when binding it onto a
    /// directory"). `old` is keyed as the mount point itself, before any
    /// crossing. `new` and `old` must both be directories or both files,
    /// and a file can only be replaced, never be a union ("inconsistent
    /// mount"). MCREATE on a union of more than one member, or of one
    /// without MCREATE, is inconsistent too.
    pub fn bind<H: Chans<C, Id = I>>(
        &mut self,
        chans: &mut H,
        new: &Location<C>,
        old: &Location<C>,
        flags: MountFlags,
    ) -> Result<(), Error> {
        let new_dir = chans.is_dir(new.chan());
        let group = self.take_sequence();
        let copied = match new.mount_point() {
            Some(point) => self.mounts.get(&chans.id(point)),
            None => None,
        };
        // bind(2): the source must agree with MCREATE if it is a union.
        if flags.create() {
            if let Some(union) = copied {
                let single_create = union.members.len() == 1 && union.members[0].flags.create();
                if !single_create {
                    return Err(Error::INCONSISTENT_MOUNT);
                }
            }
        }
        self.check_kinds(chans, new_dir, old.under(), flags)?;
        let mut members = Vec::new();
        members.push(Member {
            chan: chans.dup(new.chan()),
            flags,
            source: Source::Bind { path: new.path() },
            link: None,
            group,
            added: Some(1),
        });
        if let Some(union) = copied {
            // cmount copies the rest of the union in order, as MAFTER
            // members (MREPL becomes MAFTER), without their MCREATE.
            let order = match flags.order() {
                Order::Replace => Order::After,
                other => other,
            };
            let copy_flags = MountFlags::REPLACE.with_order(order);
            for member in union.members.iter().skip(1) {
                // A copied original directory is not this union's own: it
                // is named by the mount point it was the original of.
                let source = match &member.source {
                    Source::Original => Source::Bind {
                        path: union.path.clone(),
                    },
                    other => other.clone(),
                };
                members.push(Member {
                    chan: chans.dup(&member.chan),
                    flags: copy_flags,
                    source,
                    link: member.link.clone(),
                    group,
                    added: None,
                });
            }
            members[0].added = Some(members.len());
        }
        self.attach(chans, old, members, flags.order());
        Ok(())
    }

    /// mount(2): makes the tree a server serves through a link visible at
    /// `old`. `root` is the root of that tree as a mount-driver chan (one
    /// reference handed over, given back on error).
    pub fn mount<H: Chans<C, Id = I>>(
        &mut self,
        chans: &mut H,
        root: C,
        old: &Location<C>,
        flags: MountFlags,
        link: MountLink<'_, I>,
    ) -> Result<(), Error> {
        let new_dir = chans.is_dir(&root);
        if let Err(error) = self.check_kinds(chans, new_dir, old.under(), flags) {
            chans.close(root);
            return Err(error);
        }
        let member = Member {
            chan: root,
            flags,
            source: Source::Mount {
                link: String::from(link.path),
                spec: String::from(link.spec),
            },
            link: Some(link.id),
            group: self.take_sequence(),
            added: Some(1),
        };
        self.attach(chans, old, alloc::vec![member], flags.order());
        Ok(())
    }

    /// unmount(2): with `member`, takes the member with that identity (or
    /// mounted through the link with that identity) out of the union at
    /// `old`; without, takes everything off `old`. Errors "not mounted"
    /// when nothing is mounted at `old`, "not in union" when `member` is
    /// not there.
    pub fn unmount<H: Chans<C, Id = I>>(
        &mut self,
        chans: &mut H,
        old: &Location<C>,
        member: Option<&I>,
    ) -> Result<(), Error> {
        let key = chans.id(old.under());
        let Some(point) = self.mounts.get_mut(&key) else {
            return Err(Error::NOT_MOUNTED);
        };
        let Some(which) = member else {
            if let Some(point) = self.mounts.remove(&key) {
                close_point(chans, point);
            }
            return Ok(());
        };
        let Some(index) = point
            .members
            .iter()
            .position(|m| chans.id(&m.chan) == *which || m.link.as_ref() == Some(which))
        else {
            return Err(Error::NOT_IN_UNION);
        };
        let gone = point.members.remove(index);
        chans.close(gone.chan);
        // Plan 9 keeps a mount point whose union is down to the original
        // directory, which then refuses creates; dropping it instead makes
        // unmount the inverse of bind.
        let only_original = point
            .members
            .iter()
            .all(|m| matches!(m.source, Source::Original));
        if only_original {
            if let Some(point) = self.mounts.remove(&key) {
                close_point(chans, point);
            }
        }
        Ok(())
    }

    /// The directory a create in the directory `dir` goes to (bind(2)):
    /// `dir` itself unless it is a mount point, else the first member bound
    /// with MCREATE, else "mounted directory forbids creation". One new
    /// reference is returned.
    pub fn create_target<H: Chans<C, Id = I>>(
        &self,
        chans: &mut H,
        dir: &Location<C>,
    ) -> Result<C, Error> {
        let point = match dir.mount_point() {
            Some(point) if !dir.is_nomount() => self.mounts.get(&chans.id(point)),
            _ => None,
        };
        let Some(point) = point else {
            return Ok(chans.dup(dir.chan()));
        };
        match point.members.iter().find(|m| m.flags.create()) {
            Some(member) => Ok(chans.dup(&member.chan)),
            None => Err(Error::NO_CREATE),
        }
    }

    /// The union that `location` shows, if it is a mount point still
    /// mounted (a location made before an unmount shows none).
    pub fn union_at<H: Chans<C, Id = I>>(
        &self,
        chans: &H,
        location: &Location<C>,
    ) -> Option<&[Member<C, I>]> {
        if location.is_nomount() {
            return None;
        }
        let point = location.mount_point()?;
        self.mounts
            .get(&chans.id(point))
            .map(|point| point.members.as_slice())
    }

    fn take_sequence(&mut self) -> u64 {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        sequence
    }

    /// bind(2)'s kind rules, shared by bind and mount.
    fn check_kinds<H: Chans<C, Id = I>>(
        &self,
        chans: &H,
        new_dir: bool,
        old: &C,
        flags: MountFlags,
    ) -> Result<(), Error> {
        let old_dir = chans.is_dir(old);
        if new_dir != old_dir || (!old_dir && flags.order() != Order::Replace) {
            return Err(Error::INCONSISTENT_MOUNT);
        }
        Ok(())
    }

    /// Puts `members` into the union at `old` in `order` (Plan 9's cmount).
    fn attach<H: Chans<C, Id = I>>(
        &mut self,
        chans: &mut H,
        old: &Location<C>,
        members: Vec<Member<C, I>>,
        order: Order,
    ) {
        let key = chans.id(old.under());
        if !self.mounts.contains_key(&key) {
            let mut first = Vec::new();
            if order != Order::Replace {
                // A union keeps showing what was there (bind(2)).
                first.push(Member {
                    chan: chans.dup(old.under()),
                    flags: MountFlags::REPLACE,
                    source: Source::Original,
                    link: None,
                    group: self.next_sequence,
                    added: Some(1),
                });
            }
            let point = MountPoint {
                from: chans.dup(old.under()),
                path: old.path(),
                members: first,
                sequence: self.take_sequence(),
            };
            self.mounts.insert(key.clone(), point);
        }
        let Some(point) = self.mounts.get_mut(&key) else {
            return;
        };
        match order {
            Order::Replace => {
                for gone in core::mem::replace(&mut point.members, members) {
                    chans.close(gone.chan);
                }
            }
            Order::Before => {
                let rest = core::mem::replace(&mut point.members, members);
                point.members.extend(rest);
            }
            Order::After => point.members.extend(members),
        }
    }
}

fn close_point<C: Clone, H: Chans<C>>(chans: &mut H, point: MountPoint<C, H::Id>) {
    for member in point.members {
        chans.close(member.chan);
    }
    chans.close(point.from);
}
