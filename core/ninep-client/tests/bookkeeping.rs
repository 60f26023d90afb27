//! Proptest: tags and fids stay consistent under any mix of operations.
//!
//! Random operations, interrupts, deferred reads and interleavings of the
//! two ends run against the real ramfs session. The link panics if a tag
//! is reused while the server might still answer it (flush(5)); at every
//! quiet moment the client and the server agree on how many fids exist;
//! and after clunking everything nothing is left on either side.

mod common;

use common::Link;
use ninep::{FileMode, OpenMode};
use ninep_client::{Fid, OpId, Outcome};
use proptest::prelude::*;

const NAMES: [&str; 5] = ["a", "slow", "d", "..", "nope"];

#[derive(Debug, Clone)]
enum Command {
    Walk(usize, Vec<usize>),
    Create(usize, usize, bool),
    Open(usize),
    Read(usize, u16),
    Write(usize, u16),
    Stat(usize),
    Clunk(usize),
    Remove(usize),
    Flush(usize),
    ServerStep,
    ClientStep,
    CompleteSlow,
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (any::<usize>(), prop::collection::vec(0..NAMES.len(), 0..40))
            .prop_map(|(f, n)| Command::Walk(f, n)),
        (any::<usize>(), 0..3usize, any::<bool>()).prop_map(|(f, n, d)| Command::Create(f, n, d)),
        any::<usize>().prop_map(Command::Open),
        (any::<usize>(), 0..20_000u16).prop_map(|(f, c)| Command::Read(f, c)),
        (any::<usize>(), 0..20_000u16).prop_map(|(f, c)| Command::Write(f, c)),
        any::<usize>().prop_map(Command::Stat),
        any::<usize>().prop_map(Command::Clunk),
        any::<usize>().prop_map(Command::Remove),
        any::<usize>().prop_map(Command::Flush),
        Just(Command::ServerStep),
        Just(Command::ServerStep),
        Just(Command::ClientStep),
        Just(Command::ClientStep),
        Just(Command::CompleteSlow),
    ]
}

struct Model {
    link: Link,
    fids: Vec<Fid>,
    ops: Vec<OpId>,
}

impl Model {
    fn pick(&self, i: usize) -> Option<Fid> {
        (!self.fids.is_empty()).then(|| self.fids[i % self.fids.len()])
    }

    fn start(
        &mut self,
        start: impl FnOnce(&mut ninep_client::Client, &mut Vec<u8>) -> Result<OpId, ninep_client::Error>,
    ) {
        let mut out = Vec::new();
        if let Ok(op) = start(&mut self.link.client, &mut out) {
            self.ops.push(op);
        }
        self.link.record(out);
    }

    /// Learns new fids from completions.
    fn harvest(&mut self) {
        for done in self.link.done.drain(..) {
            self.ops.retain(|op| *op != done.op);
            match done.result {
                Ok(Outcome::Attached { fid, .. }) | Ok(Outcome::Walked { fid, .. }) => {
                    self.fids.push(fid)
                }
                _ => {}
            }
        }
    }

    fn run(&mut self, command: Command) {
        use Command::*;
        match command {
            Walk(f, names) => {
                if let Some(fid) = self.pick(f) {
                    let names: Vec<&str> = names.iter().map(|&i| NAMES[i]).collect();
                    self.start(|c, out| c.walk(fid, &names, out));
                }
            }
            Create(f, n, dir) => {
                if let Some(fid) = self.pick(f) {
                    let perm = if dir { 0x8000_0000 | 0o775 } else { 0o664 };
                    let perm = FileMode::from_bits_retain(perm);
                    let mode = if dir {
                        OpenMode::OREAD
                    } else {
                        OpenMode::ORDWR
                    };
                    self.start(|c, out| c.create(fid, NAMES[n], perm, mode, out));
                }
            }
            Open(f) => {
                if let Some(fid) = self.pick(f) {
                    self.start(|c, out| c.open(fid, OpenMode::ORDWR, out));
                }
            }
            Read(f, count) => {
                if let Some(fid) = self.pick(f) {
                    self.start(|c, out| c.read(fid, 0, u32::from(count), out));
                }
            }
            Write(f, len) => {
                if let Some(fid) = self.pick(f) {
                    let data = vec![b'x'; usize::from(len)];
                    self.start(|c, out| c.write(fid, 0, &data, out));
                }
            }
            Stat(f) => {
                if let Some(fid) = self.pick(f) {
                    self.start(|c, out| c.stat(fid, out));
                }
            }
            Clunk(f) | Remove(f) => {
                if let Some(fid) = self.pick(f) {
                    self.fids.retain(|x| *x != fid);
                    let remove = matches!(command, Remove(_));
                    self.start(|c, out| {
                        if remove {
                            c.remove(fid, out)
                        } else {
                            c.clunk(fid, out)
                        }
                    });
                }
            }
            Flush(i) => {
                if !self.ops.is_empty() {
                    let op = self.ops[i % self.ops.len()];
                    let mut out = Vec::new();
                    let _ = self.link.client.flush(op, &mut out);
                    self.link.record(out);
                }
            }
            ServerStep => {
                self.link.server_step();
            }
            ClientStep => {
                self.link.client_step();
            }
            CompleteSlow => {
                self.link.complete_slow(b"late");
            }
        }
        self.harvest();
    }

    fn quiet(&self) -> bool {
        self.link.to_server.is_empty() && self.link.to_client.is_empty()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tags_and_fids_stay_consistent(commands in prop::collection::vec(command(), 1..80)) {
        let mut model = Model { link: Link::with_msize(4096, 4096), fids: Vec::new(), ops: Vec::new() };
        let root = model.link.attach();
        model.fids.push(root);
        for command in commands {
            model.run(command);
            if model.quiet() {
                prop_assert_eq!(model.link.client.fids_in_use(), model.link.session.fid_count());
            }
        }
        // Finish everything: answer every deferred read, then settle.
        loop {
            model.link.settle();
            model.harvest();
            if !model.link.complete_slow(b"end") {
                break;
            }
        }
        prop_assert!(model.ops.is_empty(), "unfinished: {:?}", model.ops);
        prop_assert_eq!(model.link.client.tags_in_use(), 0);
        prop_assert_eq!(model.link.client.fids_in_use(), model.link.session.fid_count());
        // Clunk whatever is left; both sides end empty.
        for fid in core::mem::take(&mut model.fids) {
            let result = model.link.call(|c, out| c.clunk(fid, out));
            prop_assert_eq!(result, Ok(Outcome::Clunked));
        }
        prop_assert_eq!(model.link.client.fids_in_use(), 0);
        prop_assert_eq!(model.link.session.fid_count(), 0);
        prop_assert_eq!(model.link.client.outstanding(), 0);
    }
}
