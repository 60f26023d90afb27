//! A namespace built from the servants, walked over real chans.
//!
//! The boot namespace of a Kasane process, as core would make it: `#R` at
//! the root, the servants bound into its skeleton, then walks, union reads,
//! creates, /srv posting and /proc/N/ns through the servant interface. At
//! the end every chan must be released.

use kasane_namespace::{ChanId, Location, MountFlags, Namespace};
use kasane_servant::servants::cons::{Clock, Console, Time};
use kasane_servant::servants::env::Environment;
use kasane_servant::servants::pipe::Pipes;
use kasane_servant::servants::proc::{ProcessInfo, Processes};
use kasane_servant::servants::root::Root;
use kasane_servant::servants::srv::Registry;
use kasane_servant::{Caller, ChanHandle, ChanTable, Devices, Error, Host, Io, LinkId, Opened};
use ninep::{FileMode, OpenMode};

struct Epoch;

impl Clock for Epoch {
    fn now(&self) -> Time {
        Time::default()
    }
}

fn devices() -> Devices {
    let mut devices = Devices::new();
    devices.add(Box::new(Root::new())).unwrap();
    devices
        .add(Box::new(Console::new(Epoch, "kasane")))
        .unwrap();
    devices.add(Box::new(Environment::new())).unwrap();
    devices.add(Box::new(Pipes::default())).unwrap();
    devices.add(Box::new(Registry::new())).unwrap();
    devices.add(Box::new(Processes::new())).unwrap();
    devices
}

type Ns = Namespace<ChanHandle, ChanId<char>>;

fn bind(
    host: &mut Host<'_, '_>,
    ns: &mut Ns,
    dot: &Location<ChanHandle>,
    new: &str,
    old: &str,
    flags: u32,
) {
    let new = ns.resolve(host, dot, new).unwrap();
    let old = ns.resolve(host, dot, old).unwrap();
    ns.bind(host, &new, &old, MountFlags::new(flags).unwrap())
        .unwrap();
    new.close(host);
    old.close(host);
}

/// Opens `name` in the namespace and reads it whole.
fn cat(
    host: &mut Host<'_, '_>,
    ns: &Ns,
    dot: &Location<ChanHandle>,
    name: &str,
) -> Result<Vec<u8>, Error> {
    let location = ns.resolve(host, dot, name)?;
    let chan = host.table.get(*location.chan())?.clone();
    let caller = host.caller;
    let servant = host.devices.get_mut(chan.letter)?;
    let result = servant
        .open(&caller, &chan.file(), OpenMode::OREAD)
        .and_then(|_| match servant.read(&caller, &chan.file(), 0, 8192)? {
            Io::Ready(data) => Ok(data),
            Io::WouldBlock(_) => Err(Error::new("blocked")),
        });
    if result.is_ok() {
        servant.close(&chan.file(), Some(OpenMode::OREAD));
        // The namespace's reference is the walk's; the open added none.
    }
    location.close(host);
    result
}

#[test]
fn a_boot_namespace_over_the_servants() {
    let mut table = ChanTable::new();
    let mut devices = devices();
    let caller = Caller::new(1, "glenda").with_env_group(1);
    let mut host = Host {
        table: &mut table,
        devices: &mut devices,
        caller,
    };
    let root = kasane_namespace::Walker::attach(&mut host, 'R', "").unwrap();
    let mut ns: Ns = Namespace::new(root);
    let dot = ns.root_location(&mut host);

    bind(&mut host, &mut ns, &dot, "#c", "/dev", MountFlags::MAFTER);
    bind(
        &mut host,
        &mut ns,
        &dot,
        "#e",
        "/env",
        MountFlags::MREPL | MountFlags::MCREATE,
    );
    bind(
        &mut host,
        &mut ns,
        &dot,
        "#s",
        "/srv",
        MountFlags::MREPL | MountFlags::MCREATE,
    );
    bind(&mut host, &mut ns, &dot, "#p", "/proc", MountFlags::MREPL);

    // Walks cross into the servants and name what they reached.
    let null = ns.resolve(&mut host, &dot, "/dev/null").unwrap();
    let chan = host.table.get(*null.chan()).unwrap();
    assert_eq!((chan.letter, chan.name.as_str()), ('c', "#c/null"));
    assert_eq!(null.path(), "/dev/null");
    null.close(&mut host);
    assert_eq!(
        cat(&mut host, &ns, &dot, "/dev/sysname").unwrap(),
        b"kasane"
    );

    // /dev is a union of #R's empty dev and #c: its listing is #c's.
    let dev = ns.resolve(&mut host, &dot, "/dev").unwrap();
    let names: Vec<String> = ns
        .read_dir(&mut host, &dev)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["null", "zero", "sysname", "time"]);
    // #R's dev takes no creates, and the union has no MCREATE member.
    assert_eq!(ns.create_target(&mut host, &dev), Err(Error::NO_CREATE));
    dev.close(&mut host);

    // A create in /env goes to #e, and the variable reads back.
    let env = ns.resolve(&mut host, &dot, "/env").unwrap();
    let target = ns.create_target(&mut host, &env).unwrap();
    let dir = host.table.get(target).unwrap().clone();
    assert_eq!(dir.letter, 'e');
    let servant = host.devices.get_mut('e').unwrap();
    let home = servant
        .create(
            &caller,
            &dir.file(),
            "home",
            FileMode::from_bits_retain(0o666),
            OpenMode::ORDWR,
        )
        .unwrap();
    servant.write(&caller, &home, 0, b"/usr/glenda").unwrap();
    servant.close(&home, Some(OpenMode::ORDWR));
    kasane_namespace::Chans::close(&mut host, target);
    env.close(&mut host);
    assert_eq!(
        cat(&mut host, &ns, &dot, "/env/home").unwrap(),
        b"/usr/glenda"
    );

    // A pipe from #|, posted in /srv, opens as its link.
    let pipe = ns.resolve(&mut host, &dot, "#|/data1").unwrap();
    assert_eq!(pipe.path(), "#|/data1");
    pipe.close(&mut host);
    let srv = ns.resolve(&mut host, &dot, "/srv").unwrap();
    let target = ns.create_target(&mut host, &srv).unwrap();
    let dir = host.table.get(target).unwrap().clone();
    struct Fd3;
    impl kasane_servant::FdLinks for Fd3 {
        fn link(&self, fd: u32) -> Result<LinkId, Error> {
            if fd == 3 {
                Ok(LinkId(77))
            } else {
                Err(Error::BAD_FD)
            }
        }
    }
    let poster = Caller::new(1, "glenda").with_fds(&Fd3);
    let registry = host.devices.get_mut('s').unwrap();
    let entry = registry
        .create(
            &poster,
            &dir.file(),
            "ramfs",
            FileMode::from_bits_retain(0o600),
            OpenMode::OWRITE,
        )
        .unwrap();
    registry.write(&poster, &entry, 0, b"3").unwrap();
    registry.close(&entry, Some(OpenMode::OWRITE));
    kasane_namespace::Chans::close(&mut host, target);
    srv.close(&mut host);
    let posted = ns.resolve(&mut host, &dot, "/srv/ramfs").unwrap();
    let file = host.table.get(*posted.chan()).unwrap().file();
    let opened = host
        .devices
        .get_mut('s')
        .unwrap()
        .open(&caller, &file, OpenMode::ORDWR);
    assert_eq!(opened, Ok(Opened::Link(LinkId(77))));
    posted.close(&mut host);

    // /proc/1/ns is the namespace's own account of itself.
    let text = ns.ns_text(Some("/usr/glenda"));
    assert_eq!(
        text,
        "bind -a '#c' /dev\nbind -c '#e' /env\nbind -c '#s' /srv\nbind '#p' /proc\ncd /usr/glenda\n"
    );
    let info = ProcessInfo {
        pid: 1,
        name: "rc".into(),
        user: "glenda".into(),
        state: "Running".into(),
        ns: text.clone(),
        ..ProcessInfo::default()
    };
    // Devices holds trait objects, so the snapshot goes into a Processes
    // before it is registered (core will share it behind its own lock).
    let mut processes = Processes::new();
    processes.set_snapshot([info]);
    let mut extra = Devices::new();
    extra.add(Box::new(processes)).unwrap();
    let servant = extra.get_mut('p').unwrap();
    let top = servant.attach(&caller, "").unwrap();
    let one = servant.walk(&caller, &top, "1").unwrap();
    let ns_file = servant.walk(&caller, &one, "ns").unwrap();
    assert_eq!(
        servant.read(&caller, &ns_file, 0, 4096),
        Ok(Io::Ready(text.into_bytes()))
    );

    // `..` out of a servant's tree lands back in the root skeleton.
    let up = ns.resolve(&mut host, &dot, "/dev/../srv/..").unwrap();
    assert_eq!(host.table.get(*up.chan()).unwrap().name, "#R");
    up.close(&mut host);

    // Failed walks leave nothing behind.
    assert_eq!(
        ns.resolve(&mut host, &dot, "/dev/nonesuch").unwrap_err(),
        Error::NOT_FOUND
    );
    assert_eq!(
        ns.resolve(&mut host, &dot, "#x").unwrap_err(),
        Error::BAD_SHARP
    );

    dot.close(&mut host);
    ns.clear(&mut host);
    assert!(table.is_empty(), "chans left: {}", table.len());
}

#[test]
fn a_union_read_lists_every_member() {
    let mut table = ChanTable::new();
    let mut devices = devices();
    let caller = Caller::new(1, "eve");
    let mut host = Host {
        table: &mut table,
        devices: &mut devices,
        caller,
    };
    let root = kasane_namespace::Walker::attach(&mut host, 'R', "").unwrap();
    let mut ns: Ns = Namespace::new(root);
    let dot = ns.root_location(&mut host);
    bind(&mut host, &mut ns, &dot, "#c", "/dev", MountFlags::MREPL);
    bind(&mut host, &mut ns, &dot, "#e", "/env", MountFlags::MCREATE);
    bind(&mut host, &mut ns, &dot, "#e", "/tmp", MountFlags::MCREATE);
    let tmp = ns.resolve(&mut host, &dot, "/tmp").unwrap();
    let target = ns.create_target(&mut host, &tmp).unwrap();
    let dir = host.table.get(target).unwrap().clone();
    let servant = host.devices.get_mut('e').unwrap();
    let a = servant
        .create(
            &caller,
            &dir.file(),
            "a",
            FileMode::from_bits_retain(0o666),
            OpenMode::OWRITE,
        )
        .unwrap();
    servant.close(&a, Some(OpenMode::OWRITE));
    kasane_namespace::Chans::close(&mut host, target);
    tmp.close(&mut host);
    bind(&mut host, &mut ns, &dot, "#c", "/tmp", MountFlags::MAFTER);
    let child = ns.fork(&mut host);
    let child_dot = dot.fork(&mut host);
    let tmp = child.resolve(&mut host, &child_dot, "/tmp").unwrap();
    let names: Vec<String> = child
        .read_dir(&mut host, &tmp)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a", "null", "zero", "sysname", "time"]);

    // Core once opened /tmp on the namespace's own member chan, so a
    // listing's read offset stayed on #e's root and the next `ls /tmp`
    // skipped `a`. An open takes a clone: offset and mode are its own.
    let opened = host.clone_chan(tmp.chan()).unwrap();
    assert_ne!(opened, *tmp.chan());
    {
        let entry = host.table.get_mut(opened).unwrap();
        entry.offset = 40;
        entry.mode = Some(OpenMode::OREAD);
    }
    let member = host.table.get(*tmp.chan()).unwrap();
    assert_eq!((member.letter, member.offset, member.mode), ('e', 0, None));
    kasane_namespace::Chans::close(&mut host, opened);
    tmp.close(&mut host);
    child_dot.close(&mut host);
    child.clear(&mut host);
    dot.close(&mut host);
}

#[test]
fn a_cloned_pipe_end_keeps_the_pipe() {
    let mut table = ChanTable::new();
    let mut devices = devices();
    let mut host = Host {
        table: &mut table,
        devices: &mut devices,
        caller: Caller::new(1, "eve"),
    };
    let root = kasane_namespace::Walker::attach(&mut host, '|', "").unwrap();
    let data = kasane_namespace::Walker::walk(&mut host, &root, "data").unwrap();
    let copy = host.clone_chan(&data).unwrap();
    kasane_namespace::Chans::close(&mut host, data);
    kasane_namespace::Chans::close(&mut host, root);
    // The pipe counts the clone as a chan of its own: it is still there.
    let file = host.table.get(copy).unwrap().file();
    let caller = host.caller;
    assert!(host
        .devices
        .get_mut('|')
        .unwrap()
        .stat(&caller, &file)
        .is_ok());
    kasane_namespace::Chans::close(&mut host, copy);
    assert!(host
        .devices
        .get_mut('|')
        .unwrap()
        .stat(&caller, &file)
        .is_err());
    assert!(host.table.is_empty());
}
