//! Namespace behaviour through a fake world of small device trees.
//!
//! The fake counts every chan reference the namespace takes and gives back,
//! so each test also checks that nothing leaks and nothing is closed twice.

use std::collections::BTreeMap;

use kasane_namespace::{
    ChanId, Chans, DirEntry, Error, Location, MountFlags, MountLink, Namespace, Source, Walker,
};
use proptest::prelude::*;

/// A chan: which device and which node of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Ch {
    dev: char,
    node: usize,
}

#[derive(Debug)]
struct Node {
    name: String,
    parent: usize,
    dir: bool,
    children: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry(String);

impl DirEntry for Entry {
    fn name(&self) -> &str {
        &self.0
    }
}

/// Devices by letter, each a tree given as paths; `/`-ended names are
/// directories.
struct World {
    devices: BTreeMap<char, Vec<Node>>,
    refs: BTreeMap<Ch, i64>,
    unreadable: Vec<char>,
    /// Devices whose server has not answered yet (`Error::PENDING`).
    pending: Vec<char>,
}

impl World {
    fn new() -> Self {
        let mut world = Self {
            devices: BTreeMap::new(),
            refs: BTreeMap::new(),
            unreadable: Vec::new(),
            pending: Vec::new(),
        };
        world.device(
            'R',
            &[
                "bin/", "dev/", "env/", "mnt/", "n/", "srv/", "tmp/", "proc/", "boot/", "net/",
                "motd",
            ],
        );
        world.device('c', &["cons", "null", "zero", "time"]);
        world.device('a', &["x/", "x/deep", "common", "only-a"]);
        world.device('b', &["sub/", "common", "only-b"]);
        world.device('m', &["file1", "dir/"]);
        world.device('k', &["common", "only-k"]);
        world
    }

    fn device(&mut self, letter: char, paths: &[&str]) {
        let mut nodes = vec![Node {
            name: String::new(),
            parent: 0,
            dir: true,
            children: Vec::new(),
        }];
        for path in paths {
            let dir = path.ends_with('/');
            let mut at = 0;
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            for (index, part) in parts.iter().enumerate() {
                let existing = nodes[at]
                    .children
                    .iter()
                    .copied()
                    .find(|&c| nodes[c].name == *part);
                at = match existing {
                    Some(child) => child,
                    None => {
                        let id = nodes.len();
                        nodes.push(Node {
                            name: part.to_string(),
                            parent: at,
                            dir: dir || index + 1 < parts.len(),
                            children: Vec::new(),
                        });
                        nodes[at].children.push(id);
                        id
                    }
                };
            }
        }
        self.devices.insert(letter, nodes);
    }

    fn take(&mut self, chan: Ch) -> Ch {
        *self.refs.entry(chan).or_insert(0) += 1;
        chan
    }

    fn live(&self) -> i64 {
        self.refs.values().sum()
    }

    fn assert_balanced(&self) {
        assert!(
            self.refs.values().all(|&n| n >= 0),
            "double close: {:?}",
            self.refs
        );
        assert_eq!(self.live(), 0, "leaked references: {:?}", self.refs);
    }

    fn node(&self, chan: &Ch) -> &Node {
        &self.devices[&chan.dev][chan.node]
    }

    /// The root of a device as a fresh reference, as a test's own handle.
    fn root(&mut self, letter: char) -> Ch {
        self.take(Ch {
            dev: letter,
            node: 0,
        })
    }
}

impl Chans<Ch> for World {
    type Id = ChanId<char>;

    fn id(&self, chan: &Ch) -> ChanId<char> {
        ChanId {
            kind: chan.dev,
            dev: 0,
            path: chan.node as u64,
        }
    }

    fn is_dir(&self, chan: &Ch) -> bool {
        self.node(chan).dir
    }

    fn dup(&mut self, chan: &Ch) -> Ch {
        self.take(*chan)
    }

    fn close(&mut self, chan: Ch) {
        *self.refs.entry(chan).or_insert(0) -= 1;
    }
}

impl Walker<Ch> for World {
    type Entry = Entry;

    fn attach(&mut self, letter: char, spec: &str) -> Result<Ch, Error> {
        if !self.devices.contains_key(&letter) || !spec.is_empty() {
            return Err(Error::BAD_SHARP);
        }
        Ok(self.root(letter))
    }

    fn walk(&mut self, dir: &Ch, name: &str) -> Result<Ch, Error> {
        if self.pending.contains(&dir.dev) {
            return Err(Error::PENDING);
        }
        let node = self.node(dir);
        let found = node
            .children
            .iter()
            .copied()
            .find(|&c| self.devices[&dir.dev][c].name == name)
            .ok_or(Error::NOT_FOUND)?;
        Ok(self.take(Ch {
            dev: dir.dev,
            node: found,
        }))
    }

    fn parent(&mut self, chan: &Ch) -> Result<Ch, Error> {
        let parent = self.node(chan).parent;
        Ok(self.take(Ch {
            dev: chan.dev,
            node: parent,
        }))
    }

    fn read_dir(&mut self, dir: &Ch) -> Result<Vec<Entry>, Error> {
        if self.pending.contains(&dir.dev) {
            return Err(Error::PENDING);
        }
        if self.unreadable.contains(&dir.dev) {
            return Err(Error::new("i/o on hungup channel"));
        }
        let node = self.node(dir);
        Ok(node
            .children
            .iter()
            .map(|&c| Entry(self.devices[&dir.dev][c].name.clone()))
            .collect())
    }
}

/// A namespace on `#R`, and a location of `/` to resolve from.
fn setup() -> (World, Namespace<Ch, ChanId<char>>, Location<Ch>) {
    let mut world = World::new();
    let root = world.root('R');
    let ns = Namespace::new(root);
    let dot = ns.root_location(&mut world);
    (world, ns, dot)
}

fn finish(mut world: World, ns: Namespace<Ch, ChanId<char>>, dot: Location<Ch>) {
    dot.close(&mut world);
    ns.clear(&mut world);
    world.assert_balanced();
}

fn resolve(
    w: &mut World,
    ns: &Namespace<Ch, ChanId<char>>,
    dot: &Location<Ch>,
    name: &str,
) -> Result<Location<Ch>, Error> {
    ns.resolve(w, dot, name)
}

fn bind(
    w: &mut World,
    ns: &mut Namespace<Ch, ChanId<char>>,
    dot: &Location<Ch>,
    new: &str,
    old: &str,
    flags: u32,
) -> Result<(), Error> {
    let new = resolve(w, ns, dot, new)?;
    let old = match resolve(w, ns, dot, old) {
        Ok(old) => old,
        Err(e) => {
            new.close(w);
            return Err(e);
        }
    };
    let result = ns.bind(w, &new, &old, MountFlags::new(flags).unwrap());
    new.close(w);
    old.close(w);
    result
}

/// mount(1) of device `letter` as if served through the link `/srv/NAME`.
fn mount(
    w: &mut World,
    ns: &mut Namespace<Ch, ChanId<char>>,
    dot: &Location<Ch>,
    (letter, link, spec): (char, &str, &str),
    old: &str,
    flags: u32,
) -> Result<(), Error> {
    let old = resolve(w, ns, dot, old)?;
    let root = w.root(letter);
    let link = MountLink {
        id: link_identity(link),
        path: link,
        spec,
    };
    let result = ns.mount(w, root, &old, MountFlags::new(flags).unwrap(), link);
    old.close(w);
    result
}

fn link_identity(link: &str) -> ChanId<char> {
    ChanId {
        kind: 's',
        dev: 0,
        path: link.bytes().map(u64::from).sum(),
    }
}

fn chan_at(
    w: &mut World,
    ns: &Namespace<Ch, ChanId<char>>,
    dot: &Location<Ch>,
    name: &str,
) -> Result<(Ch, String), Error> {
    let location = resolve(w, ns, dot, name)?;
    let found = (*location.chan(), location.path());
    location.close(w);
    Ok(found)
}

fn listing(
    w: &mut World,
    ns: &Namespace<Ch, ChanId<char>>,
    dot: &Location<Ch>,
    name: &str,
) -> Result<Vec<String>, Error> {
    let location = resolve(w, ns, dot, name)?;
    let entries = ns.read_dir(w, &location);
    location.close(w);
    Ok(entries?.into_iter().map(|e| e.0).collect())
}

fn node_name(w: &World, chan: Ch) -> String {
    format!("#{}/{}", chan.dev, w.node(&chan).name)
}

const A: u32 = MountFlags::MAFTER;
const B: u32 = MountFlags::MBEFORE;
const C: u32 = MountFlags::MCREATE;

#[test]
fn a_plain_walk_names_what_it_finds() {
    let (mut w, ns, dot) = setup();
    let (chan, path) = chan_at(&mut w, &ns, &dot, "/dev").unwrap();
    assert_eq!(node_name(&w, chan), "#R/dev");
    assert_eq!(path, "/dev");
    let (_, path) = chan_at(&mut w, &ns, &dot, "//dev/./../tmp/").unwrap();
    assert_eq!(path, "/tmp");
    assert_eq!(
        chan_at(&mut w, &ns, &dot, "/nonesuch").unwrap_err(),
        Error::NOT_FOUND
    );
    assert_eq!(
        chan_at(&mut w, &ns, &dot, "/motd/x").unwrap_err(),
        Error::NOT_DIR
    );
    finish(w, ns, dot);
}

#[test]
fn names_are_checked_as_namec_does() {
    let (mut w, ns, dot) = setup();
    assert_eq!(
        chan_at(&mut w, &ns, &dot, "").unwrap_err(),
        Error::EMPTY_NAME
    );
    assert_eq!(
        chan_at(&mut w, &ns, &dot, "/a\u{1}b").unwrap_err(),
        Error::BAD_CHAR
    );
    assert_eq!(
        chan_at(&mut w, &ns, &dot, "/a\u{7f}").unwrap_err(),
        Error::BAD_CHAR
    );
    assert_eq!(
        chan_at(&mut w, &ns, &dot, "#M").unwrap_err(),
        Error::NO_ATTACH
    );
    assert_eq!(
        chan_at(&mut w, &ns, &dot, "#q/x").unwrap_err(),
        Error::BAD_SHARP
    );
    assert_eq!(
        chan_at(&mut w, &ns, &dot, "#").unwrap_err(),
        Error::BAD_SHARP
    );
    assert_eq!(
        Error::NOT_FOUND.for_name("/n/x").as_str(),
        "'/n/x' file does not exist"
    );
    finish(w, ns, dot);
}

#[test]
fn dotdot_of_root_is_root() {
    let (mut w, ns, dot) = setup();
    let (chan, path) = chan_at(&mut w, &ns, &dot, "/../../..").unwrap();
    assert_eq!(chan, Ch { dev: 'R', node: 0 });
    assert_eq!(path, "/");
    finish(w, ns, dot);
}

#[test]
fn bind_replace_shows_the_new_tree() {
    let (mut w, mut ns, dot) = setup();
    bind(&mut w, &mut ns, &dot, "#c", "/dev", 0).unwrap();
    let (chan, path) = chan_at(&mut w, &ns, &dot, "/dev/cons").unwrap();
    assert_eq!(node_name(&w, chan), "#c/cons");
    assert_eq!(path, "/dev/cons");
    assert_eq!(
        listing(&mut w, &ns, &dot, "/dev").unwrap(),
        ["cons", "null", "zero", "time"]
    );
    assert_eq!(ns.ns_text(None), "bind '#c' /dev\n");
    finish(w, ns, dot);
}

#[test]
fn union_lookups_go_in_member_order() {
    let (mut w, mut ns, dot) = setup();
    bind(&mut w, &mut ns, &dot, "#a", "/mnt", 0).unwrap();
    bind(&mut w, &mut ns, &dot, "#b", "/mnt", A).unwrap();
    bind(&mut w, &mut ns, &dot, "#k", "/mnt", B).unwrap();
    // k, a, b: `common` is k's, `only-a` a's, `only-b` b's.
    let (chan, _) = chan_at(&mut w, &ns, &dot, "/mnt/common").unwrap();
    assert_eq!(chan.dev, 'k');
    let (chan, _) = chan_at(&mut w, &ns, &dot, "/mnt/only-a").unwrap();
    assert_eq!(chan.dev, 'a');
    let (chan, _) = chan_at(&mut w, &ns, &dot, "/mnt/only-b").unwrap();
    assert_eq!(chan.dev, 'b');
    assert_eq!(
        chan_at(&mut w, &ns, &dot, "/mnt/none").unwrap_err(),
        Error::NOT_FOUND
    );
    assert_eq!(
        listing(&mut w, &ns, &dot, "/mnt").unwrap(),
        ["common", "only-k", "x", "only-a", "sub", "only-b"]
    );
    finish(w, ns, dot);
}

#[test]
fn a_union_bind_keeps_the_original_directory() {
    let (mut w, mut ns, dot) = setup();
    bind(&mut w, &mut ns, &dot, "#c", "/tmp", A).unwrap();
    bind(&mut w, &mut ns, &dot, "#a", "/tmp", B).unwrap();
    let location = resolve(&mut w, &ns, &dot, "/tmp").unwrap();
    let union: Vec<(char, bool)> = ns
        .union_at(&w, &location)
        .unwrap()
        .iter()
        .map(|m| (m.chan().dev, matches!(m.source(), Source::Original)))
        .collect();
    assert_eq!(union, [('a', false), ('R', true), ('c', false)]);
    location.close(&mut w);
    assert_eq!(ns.ns_text(None), "bind -b '#a' /tmp\nbind -a '#c' /tmp\n");
    finish(w, ns, dot);
}

#[test]
fn a_member_still_to_answer_is_waited_for_not_skipped() {
    let (mut w, mut ns, dot) = setup();
    bind(&mut w, &mut ns, &dot, "#a", "/mnt", 0).unwrap();
    bind(&mut w, &mut ns, &dot, "#k", "/mnt", B).unwrap();
    w.pending.push('k');
    // `only-a` is a's, but k comes first and has not answered: the walk
    // waits (core parks the call) rather than going on to a, which could
    // find a name k would have hidden.
    assert_eq!(
        chan_at(&mut w, &ns, &dot, "/mnt/only-a").unwrap_err(),
        Error::PENDING
    );
    assert_eq!(
        listing(&mut w, &ns, &dot, "/mnt").unwrap_err(),
        Error::PENDING
    );
    w.pending.clear();
    let (chan, _) = chan_at(&mut w, &ns, &dot, "/mnt/common").unwrap();
    assert_eq!(chan.dev, 'k');
    finish(w, ns, dot);
}

#[test]
fn union_reads_skip_a_failing_member_unless_all_fail() {
    let (mut w, mut ns, dot) = setup();
    bind(&mut w, &mut ns, &dot, "#a", "/mnt", 0).unwrap();
    bind(&mut w, &mut ns, &dot, "#b", "/mnt", A).unwrap();
    w.unreadable.push('a');
    assert_eq!(
        listing(&mut w, &ns, &dot, "/mnt").unwrap(),
        ["sub", "common", "only-b"]
    );
    w.unreadable.push('b');
    assert_eq!(
        listing(&mut w, &ns, &dot, "/mnt").unwrap_err().as_str(),
        "i/o on hungup channel"
    );
    finish(w, ns, dot);
}

#[test]
fn dotdot_from_a_mounted_root_goes_to_the_mount_points_parent() {
    let (mut w, mut ns, dot) = setup();
    bind(&mut w, &mut ns, &dot, "#a", "/n", 0).unwrap();
    let (chan, path) = chan_at(&mut w, &ns, &dot, "/n/x/..").unwrap();
    assert_eq!((chan, path.as_str()), (Ch { dev: 'a', node: 0 }, "/n"));
    // The servant's own `..` of its root is its root; the namespace's is
    // the parent of the mount point.
    let (chan, path) = chan_at(&mut w, &ns, &dot, "/n/..").unwrap();
    assert_eq!((chan, path.as_str()), (Ch { dev: 'R', node: 0 }, "/"));
    let (chan, _) = chan_at(&mut w, &ns, &dot, "/n/x/../../tmp").unwrap();
    assert_eq!(node_name(&w, chan), "#R/tmp");
    finish(w, ns, dot);
}

#[test]
fn dotdot_is_lexical_after_a_bind_of_a_subdirectory() {
    // bind /n/x /mnt; /mnt/.. is /, not the bound directory's own parent.
    let (mut w, mut ns, dot) = setup();
    bind(&mut w, &mut ns, &dot, "#a", "/n", 0).unwrap();
    bind(&mut w, &mut ns, &dot, "/n/x", "/mnt", 0).unwrap();
    let (chan, _) = chan_at(&mut w, &ns, &dot, "/mnt/deep").unwrap();
    assert_eq!(node_name(&w, chan), "#a/deep");
    let (chan, path) = chan_at(&mut w, &ns, &dot, "/mnt/..").unwrap();
    assert_eq!((chan, path.as_str()), (Ch { dev: 'R', node: 0 }, "/"));
    finish(w, ns, dot);
}

#[test]
fn relative_walks_start_at_dot_and_climb_out_of_mounts() {
    let (mut w, mut ns, root) = setup();
    bind(&mut w, &mut ns, &root, "#a", "/n", 0).unwrap();
    let dot = resolve(&mut w, &ns, &root, "/n/x").unwrap();
    let (chan, path) = chan_at(&mut w, &ns, &dot, "deep").unwrap();
    assert_eq!(
        (node_name(&w, chan), path.as_str()),
        ("#a/deep".into(), "/n/x/deep")
    );
    let (chan, path) = chan_at(&mut w, &ns, &dot, "../../tmp").unwrap();
    assert_eq!(
        (node_name(&w, chan), path.as_str()),
        ("#R/tmp".into(), "/tmp")
    );
    dot.close(&mut w);
    finish(w, ns, root);
}

#[test]
fn a_location_sees_the_namespace_as_it_is_when_it_climbs() {
    let (mut w, mut ns, root) = setup();
    bind(&mut w, &mut ns, &root, "#a", "/n", 0).unwrap();
    let dot = resolve(&mut w, &ns, &root, "/n/x").unwrap();
    let n = resolve(&mut w, &ns, &root, "/n").unwrap();
    ns.unmount(&mut w, &n, None).unwrap();
    n.close(&mut w);
    let (chan, _) = chan_at(&mut w, &ns, &dot, "..").unwrap();
    assert_eq!(node_name(&w, chan), "#R/n");
    dot.close(&mut w);
    finish(w, ns, root);
}

#[test]
fn device_names_cross_no_mounts_and_climb_through_the_servant() {
    let (mut w, mut ns, dot) = setup();
    bind(&mut w, &mut ns, &dot, "#c", "/dev", 0).unwrap();
    let (chan, path) = chan_at(&mut w, &ns, &dot, "#R/dev").unwrap();
    assert_eq!(
        (node_name(&w, chan), path.as_str()),
        ("#R/dev".into(), "#R/dev")
    );
    let (chan, path) = chan_at(&mut w, &ns, &dot, "#a/x/..").unwrap();
    assert_eq!((chan, path.as_str()), (Ch { dev: 'a', node: 0 }, "#a"));
    let (chan, _) = chan_at(&mut w, &ns, &dot, "#a/..").unwrap();
    assert_eq!(chan, Ch { dev: 'a', node: 0 });
    finish(w, ns, dot);
}

#[test]
fn a_bare_chan_climbs_through_the_servant() {
    let (mut w, ns, dot) = setup();
    let deep = Ch { dev: 'a', node: 2 };
    assert_eq!(node_name(&w, deep), "#a/deep");
    let chan = w.take(deep);
    let start = Location::from_chan(chan, "/n/x/deep");
    let (found, path) = chan_at(&mut w, &ns, &start, "../..").unwrap();
    assert_eq!((found, path.as_str()), (Ch { dev: 'a', node: 0 }, "/n"));
    start.close(&mut w);
    finish(w, ns, dot);
}

#[test]
fn creates_go_to_the_first_mcreate_member() {
    let (mut w, mut ns, dot) = setup();
    let target = |w: &mut World, ns: &Namespace<Ch, ChanId<char>>, name: &str| {
        let location = resolve(w, ns, &dot, name).unwrap();
        let target = ns.create_target(w, &location);
        location.close(w);
        target.map(|chan| {
            w.close(chan);
            chan.dev
        })
    };
    assert_eq!(target(&mut w, &ns, "/tmp"), Ok('R'));
    bind(&mut w, &mut ns, &dot, "#a", "/tmp", 0).unwrap();
    assert_eq!(target(&mut w, &ns, "/tmp"), Err(Error::NO_CREATE));
    assert_eq!(
        Error::NO_CREATE.as_str(),
        "mounted directory forbids creation"
    );
    bind(&mut w, &mut ns, &dot, "#b", "/tmp", A | C).unwrap();
    bind(&mut w, &mut ns, &dot, "#k", "/tmp", A | C).unwrap();
    assert_eq!(target(&mut w, &ns, "/tmp"), Ok('b'));
    // Below the mount point, creation is the directory's own business.
    assert_eq!(target(&mut w, &ns, "/tmp/x"), Ok('a'));
    finish(w, ns, dot);
}

#[test]
fn kinds_must_agree() {
    let (mut w, mut ns, dot) = setup();
    assert_eq!(
        bind(&mut w, &mut ns, &dot, "#c/cons", "/dev", 0),
        Err(Error::INCONSISTENT_MOUNT)
    );
    assert_eq!(
        bind(&mut w, &mut ns, &dot, "#c", "/motd", 0),
        Err(Error::INCONSISTENT_MOUNT)
    );
    assert_eq!(
        bind(&mut w, &mut ns, &dot, "#c/cons", "/motd", A),
        Err(Error::INCONSISTENT_MOUNT)
    );
    bind(&mut w, &mut ns, &dot, "#c/cons", "/motd", 0).unwrap();
    let (chan, _) = chan_at(&mut w, &ns, &dot, "/motd").unwrap();
    assert_eq!(node_name(&w, chan), "#c/cons");
    assert_eq!(ns.ns_text(None), "bind '#c/cons' /motd\n");
    let root = w.root('m');
    let old = resolve(&mut w, &ns, &dot, "/motd").unwrap();
    let link = MountLink {
        id: link_identity("/srv/m"),
        path: "/srv/m",
        spec: "",
    };
    let refused = ns.mount(&mut w, root, &old, MountFlags::REPLACE, link);
    assert_eq!(refused, Err(Error::INCONSISTENT_MOUNT));
    old.close(&mut w);
    finish(w, ns, dot);
}

#[test]
fn mcreate_on_a_copied_union_is_inconsistent() {
    let (mut w, mut ns, dot) = setup();
    bind(&mut w, &mut ns, &dot, "#a", "/mnt", 0).unwrap();
    bind(&mut w, &mut ns, &dot, "#b", "/mnt", A).unwrap();
    assert_eq!(
        bind(&mut w, &mut ns, &dot, "/mnt", "/tmp", C),
        Err(Error::INCONSISTENT_MOUNT)
    );
    // A single-member union bound with MCREATE is fine.
    bind(&mut w, &mut ns, &dot, "#k", "/n", C).unwrap();
    bind(&mut w, &mut ns, &dot, "/n", "/tmp", C).unwrap();
    finish(w, ns, dot);
}

#[test]
fn binding_a_union_copies_it() {
    let (mut w, mut ns, dot) = setup();
    bind(&mut w, &mut ns, &dot, "#a", "/mnt", A).unwrap();
    bind(&mut w, &mut ns, &dot, "#b", "/mnt", B).unwrap();
    bind(&mut w, &mut ns, &dot, "/mnt", "/tmp", 0).unwrap();
    let location = resolve(&mut w, &ns, &dot, "/tmp").unwrap();
    let union: Vec<String> = ns
        .union_at(&w, &location)
        .unwrap()
        .iter()
        .map(|m| node_name(&w, *m.chan()))
        .collect();
    assert_eq!(union, ["#b/", "#R/mnt", "#a/"]);
    location.close(&mut w);
    assert_eq!(
        listing(&mut w, &ns, &dot, "/tmp").unwrap(),
        ["sub", "common", "only-b", "x", "only-a"]
    );
    // The copy is written as the one bind that made it.
    assert_eq!(
        ns.ns_text(None),
        "bind -b '#b' /mnt\nbind -a '#a' /mnt\nbind /mnt /tmp\n"
    );
    // Once the bind's own member is gone, the copies are written alone. The
    // copied original directory of /mnt can only be named /mnt, which a
    // replay would read as the whole union: a limit Plan 9's ns shares.
    let tmp = resolve(&mut w, &ns, &dot, "/tmp").unwrap();
    ns.unmount(
        &mut w,
        &tmp,
        Some(&ChanId {
            kind: 'b',
            dev: 0,
            path: 0,
        }),
    )
    .unwrap();
    tmp.close(&mut w);
    assert_eq!(
        ns.ns_text(None),
        "bind -b '#b' /mnt\nbind -a '#a' /mnt\nbind /mnt /tmp\nbind -a '#a' /tmp\n"
    );
    finish(w, ns, dot);
}

#[test]
fn unmount_takes_one_member_or_all() {
    let (mut w, mut ns, dot) = setup();
    let mnt = resolve(&mut w, &ns, &dot, "/mnt").unwrap();
    assert_eq!(ns.unmount(&mut w, &mnt, None), Err(Error::NOT_MOUNTED));
    assert_eq!(Error::NOT_MOUNTED.as_str(), "not mounted");
    mnt.close(&mut w);
    bind(&mut w, &mut ns, &dot, "#a", "/mnt", A).unwrap();
    bind(&mut w, &mut ns, &dot, "#b", "/mnt", A).unwrap();
    let mnt = resolve(&mut w, &ns, &dot, "/mnt").unwrap();
    let c_root = ChanId {
        kind: 'c',
        dev: 0,
        path: 0,
    };
    assert_eq!(
        ns.unmount(&mut w, &mnt, Some(&c_root)),
        Err(Error::NOT_IN_UNION)
    );
    assert_eq!(Error::NOT_IN_UNION.as_str(), "not in union");
    ns.unmount(
        &mut w,
        &mnt,
        Some(&ChanId {
            kind: 'a',
            dev: 0,
            path: 0,
        }),
    )
    .unwrap();
    assert_eq!(ns.ns_text(None), "bind -a '#b' /mnt\n");
    ns.unmount(
        &mut w,
        &mnt,
        Some(&ChanId {
            kind: 'b',
            dev: 0,
            path: 0,
        }),
    )
    .unwrap();
    // Down to the original directory: nothing is mounted any more, and
    // creates work again.
    assert_eq!(ns.ns_text(None), "");
    assert!(ns.mount_points().is_empty());
    mnt.close(&mut w);
    bind(&mut w, &mut ns, &dot, "#a", "/mnt", A).unwrap();
    bind(&mut w, &mut ns, &dot, "#b", "/mnt", A).unwrap();
    let mnt = resolve(&mut w, &ns, &dot, "/mnt").unwrap();
    ns.unmount(&mut w, &mnt, None).unwrap();
    assert!(ns.mount_points().is_empty());
    mnt.close(&mut w);
    let (chan, _) = chan_at(&mut w, &ns, &dot, "/mnt").unwrap();
    assert_eq!(node_name(&w, chan), "#R/mnt");
    finish(w, ns, dot);
}

#[test]
fn mounts_print_as_mount_and_unmount_by_their_link() {
    let (mut w, mut ns, dot) = setup();
    bind(&mut w, &mut ns, &dot, "#c", "/dev", A).unwrap();
    mount(&mut w, &mut ns, &dot, ('m', "/srv/ramfs", ""), "/tmp", C).unwrap();
    mount(
        &mut w,
        &mut ns,
        &dot,
        ('k', "/srv/dos", "/dev/sdC0/dos"),
        "/n",
        A | C,
    )
    .unwrap();
    assert_eq!(
        ns.ns_text(Some("/usr/glenda")),
        "bind -a '#c' /dev\nmount -c /srv/ramfs /tmp\nmount -ac /srv/dos /n /dev/sdC0/dos\ncd /usr/glenda\n"
    );
    let (chan, _) = chan_at(&mut w, &ns, &dot, "/tmp/file1").unwrap();
    assert_eq!(node_name(&w, chan), "#m/file1");
    let tmp = resolve(&mut w, &ns, &dot, "/tmp").unwrap();
    let target = ns.create_target(&mut w, &tmp).unwrap();
    assert_eq!(target, Ch { dev: 'm', node: 0 });
    w.close(target);
    ns.unmount(&mut w, &tmp, Some(&link_identity("/srv/ramfs")))
        .unwrap();
    tmp.close(&mut w);
    let (chan, _) = chan_at(&mut w, &ns, &dot, "/tmp").unwrap();
    assert_eq!(node_name(&w, chan), "#R/tmp");
    finish(w, ns, dot);
}

#[test]
fn a_mount_on_root_is_crossed_at_the_start() {
    let (mut w, mut ns, dot) = setup();
    bind(&mut w, &mut ns, &dot, "#a", "/", B).unwrap();
    let root = ns.root_location(&mut w);
    let (chan, _) = chan_at(&mut w, &ns, &root, "/x/deep").unwrap();
    assert_eq!(node_name(&w, chan), "#a/deep");
    let (chan, _) = chan_at(&mut w, &ns, &root, "/tmp").unwrap();
    assert_eq!(node_name(&w, chan), "#R/tmp");
    assert_eq!(ns.ns_text(None), "bind -b '#a' /\n");
    root.close(&mut w);
    finish(w, ns, dot);
}

#[test]
fn fork_copies_and_the_copies_are_independent() {
    let (mut w, mut ns, dot) = setup();
    bind(&mut w, &mut ns, &dot, "#c", "/dev", A).unwrap();
    let mut child = ns.fork(&mut w);
    let child_dot = child.root_location(&mut w);
    bind(&mut w, &mut child, &child_dot, "#a", "/mnt", 0).unwrap();
    assert_eq!(ns.ns_text(None), "bind -a '#c' /dev\n");
    assert_eq!(child.ns_text(None), "bind -a '#c' /dev\nbind '#a' /mnt\n");
    let (chan, _) = chan_at(&mut w, &ns, &dot, "/mnt").unwrap();
    assert_eq!(node_name(&w, chan), "#R/mnt");
    child_dot.close(&mut w);
    child.clear(&mut w);
    let (chan, _) = chan_at(&mut w, &ns, &dot, "/dev/cons").unwrap();
    assert_eq!(node_name(&w, chan), "#c/cons");
    finish(w, ns, dot);
}

#[test]
fn flags_in_ns_output_keep_create_and_cache() {
    let (mut w, mut ns, dot) = setup();
    bind(
        &mut w,
        &mut ns,
        &dot,
        "#a",
        "/mnt",
        B | C | MountFlags::MCACHE,
    )
    .unwrap();
    bind(&mut w, &mut ns, &dot, "#b", "/mnt", C).unwrap();
    assert_eq!(ns.ns_text(None), "bind -c '#b' /mnt\n");
    bind(
        &mut w,
        &mut ns,
        &dot,
        "#a",
        "/tmp",
        B | C | MountFlags::MCACHE,
    )
    .unwrap();
    assert_eq!(ns.ns_text(None), "bind -c '#b' /mnt\nbind -bcC '#a' /tmp\n");
    finish(w, ns, dot);
}

// ---- the ns output rebuilds the namespace (property) ----

#[derive(Debug, Clone)]
enum Op {
    Bind {
        source: usize,
        point: usize,
        flags: u32,
    },
    Mount {
        server: usize,
        point: usize,
        flags: u32,
    },
    UnmountOne {
        point: usize,
        pick: usize,
    },
    UnmountAll {
        point: usize,
    },
}

const SOURCES: [&str; 4] = ["#a", "#b", "#k", "#c"];
const SERVERS: [(char, &str); 2] = [('m', "/srv/ramfs"), ('k', "/srv/it's")];
const POINTS: [&str; 4] = ["/mnt", "/n", "/tmp", "/"];

fn op() -> impl Strategy<Value = Op> {
    let flags = prop_oneof![Just(0), Just(1), Just(2)]
        .prop_flat_map(|order| prop_oneof![Just(order), Just(order | C)]);
    prop_oneof![
        (0..SOURCES.len(), 0..POINTS.len(), flags.clone()).prop_map(|(source, point, flags)| {
            Op::Bind {
                source,
                point,
                flags,
            }
        }),
        (0..SERVERS.len(), 0..POINTS.len(), flags).prop_map(|(server, point, flags)| Op::Mount {
            server,
            point,
            flags
        }),
        (0..POINTS.len(), 0..4usize).prop_map(|(point, pick)| Op::UnmountOne { point, pick }),
        (0..POINTS.len()).prop_map(|point| Op::UnmountAll { point }),
    ]
}

/// What a union is, in terms that survive a rebuild.
fn snapshot(ns: &Namespace<Ch, ChanId<char>>) -> Vec<(String, Vec<(Ch, bool)>)> {
    ns.mount_points()
        .into_iter()
        .map(|point| {
            let members = point
                .members()
                .iter()
                .map(|m| (*m.chan(), m.flags().create()))
                .collect();
            (point.path().to_string(), members)
        })
        .collect()
}

/// Splits one rc line into words, undoing quote().
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '\'' {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                        word.push('\'');
                    } else {
                        break;
                    }
                } else {
                    word.push(c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
    out
}

fn option_bits(option: &str) -> u32 {
    option.chars().skip(1).fold(0, |bits, c| {
        bits | match c {
            'a' => A,
            'b' => B,
            'c' => C,
            'C' => MountFlags::MCACHE,
            _ => panic!("unknown option {option}"),
        }
    })
}

fn replay(w: &mut World, text: &str) -> Namespace<Ch, ChanId<char>> {
    let root = w.root('R');
    let mut ns = Namespace::new(root);
    let dot = ns.root_location(w);
    for line in text.lines() {
        let mut words = words(line);
        let command = words.remove(0);
        let flags = if words[0].starts_with('-') {
            option_bits(&words.remove(0))
        } else {
            0
        };
        match command.as_str() {
            "bind" => bind(w, &mut ns, &dot, &words[0], &words[1], flags).unwrap(),
            "mount" => {
                let letter = SERVERS
                    .iter()
                    .find(|(_, link)| *link == words[0])
                    .unwrap()
                    .0;
                let spec = words.get(2).cloned().unwrap_or_default();
                mount(
                    w,
                    &mut ns,
                    &dot,
                    (letter, &words[0], &spec),
                    &words[1],
                    flags,
                )
                .unwrap();
            }
            other => panic!("unexpected command {other}"),
        }
    }
    dot.close(w);
    ns
}

/// A mount point hidden by a later bind cannot be named by a replay (nor by
/// Plan 9's ns): keep `/` a union that still shows `#R`, so every mount
/// point stays reachable by the name it was made with.
fn keep_root_reachable(point: usize, flags: u32) -> u32 {
    if POINTS[point] == "/" && flags & MountFlags::MORDER == 0 {
        flags | A
    } else {
        flags
    }
}

proptest! {
    #[test]
    fn ns_output_rebuilds_the_namespace(ops in proptest::collection::vec(op(), 0..14)) {
        let (mut w, mut ns, dot) = setup();
        for op in ops {
            match op {
                Op::Bind { source, point, flags } => {
                    let flags = keep_root_reachable(point, flags);
                    let _ = bind(&mut w, &mut ns, &dot, SOURCES[source], POINTS[point], flags);
                }
                Op::Mount { server, point, flags } => {
                    let (letter, link) = SERVERS[server];
                    let flags = keep_root_reachable(point, flags);
                    let _ = mount(&mut w, &mut ns, &dot, (letter, link, ""), POINTS[point], flags);
                }
                Op::UnmountOne { point, pick } => {
                    let Ok(old) = resolve(&mut w, &ns, &dot, POINTS[point]) else { continue };
                    let id = ns.union_at(&w, &old).and_then(|members| {
                        let named: Vec<_> = members
                            .iter()
                            .filter(|m| !matches!(m.source(), Source::Original))
                            .collect();
                        named.get(pick % named.len().max(1)).map(|m| w.id(m.chan()))
                    });
                    if let Some(id) = id {
                        ns.unmount(&mut w, &old, Some(&id)).unwrap();
                    }
                    old.close(&mut w);
                }
                Op::UnmountAll { point } => {
                    let Ok(old) = resolve(&mut w, &ns, &dot, POINTS[point]) else { continue };
                    let _ = ns.unmount(&mut w, &old, None);
                    old.close(&mut w);
                }
            }
            // Every mount point keeps at least one member that is not just
            // the original directory.
            for point in ns.mount_points() {
                prop_assert!(point.members().iter().any(|m| !matches!(m.source(), Source::Original)));
            }
        }
        let text = ns.ns_text(None);
        let rebuilt = replay(&mut w, &text);
        prop_assert_eq!(snapshot(&rebuilt), snapshot(&ns), "ns text:\n{}", text);
        rebuilt.clear(&mut w);
        finish(w, ns, dot);
    }
}
