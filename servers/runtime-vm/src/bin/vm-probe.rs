//! vm-probe: a cell-0 test image that talks 9P to a server VM over a link.
//!
//! Until core drives server links itself (`#M`), this proves the other
//! half on its own: hvm boots it as cell 0 (kind `microkernel`, which only
//! means "cell 0" to hvm) beside a `ramfs-vm` server VM. It finds its link
//! devices on PCI, drives link 0 with the same `runtime-vm` link code the
//! server uses, and runs a real 9P conversation through hvm's link switch:
//! Tversion, Tattach, Twalk, Tcreate, Twrite, Tclunk, Twalk, Topen, Tread.
//! Then it injects each failure verb with `CellControl`, watches hvm
//! restart that VM alone (the link's generation changes, `CellInfo` says
//! why), and checks the new server answers 9P from its pristine image (the
//! file is gone). It waits for answers in HLT, woken by the link vector
//! hvm injects into cell 0 (0x50 + link), and for restarts by yielding the
//! CPU to hvm. It ends with a tally line and powers off.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("vm-probe is a cell-0 test image: build it with `cargo build -p runtime-vm --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod probe {
    use alloc::string::{String, ToString};
    use alloc::vec;
    use alloc::vec::Vec;

    use hvm_abi::{CellControl, CellInfo, Hypercall};
    use ninep::{FileMode, Frame, Message, OpenMode, NOFID, NOTAG};
    use runtime_vm::alloc;
    use runtime_vm::link::{self, Link};
    use runtime_vm::stream::Reassembler;
    use runtime_vm::{hypercall, println, Boot};
    use virtio_drivers::transport::pci::bus::DeviceFunction;

    const MSIZE: u32 = 8192 + 24;
    /// Give up waiting for one answer after this many TSC ticks (about
    /// 25 s of guest time at hvm's 200 MHz).
    const PATIENCE: u64 = 5_000_000_000;

    fn rdtsc() -> u64 {
        // SAFETY: RDTSC has no side effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    struct Client {
        link: Link,
        /// Cell 0's number for this link.
        number: u64,
        stream: Reassembler,
        tag: u16,
        generation: u64,
        passed: u32,
        failed: u32,
    }

    impl Client {
        fn check(&mut self, ok: bool, what: &str) {
            if ok {
                self.passed += 1;
                println!("vm-probe: ok: {what}");
            } else {
                self.failed += 1;
                println!("vm-probe: FAILED: {what}");
            }
        }

        /// Sends one request and waits for its answer (or a broken stream).
        fn call(&mut self, message: Message) -> Result<Message, String> {
            self.tag = self.tag.wrapping_add(1) % 0xFFFE;
            let tag = if matches!(message, Message::Tversion { .. }) {
                NOTAG
            } else {
                self.tag
            };
            let bytes = Frame::new(tag, message)
                .to_bytes()
                .map_err(|e| alloc::format!("encode: {e:?}"))?;
            self.link.send(&bytes).map_err(|e| e.to_string())?;
            let start = rdtsc();
            loop {
                let stream = &mut self.stream;
                self.link
                    .receive(&mut |b| stream.push(b))
                    .map_err(|e| e.to_string())?;
                self.link.flush().map_err(|e| e.to_string())?;
                match self.stream.next_frame(MSIZE) {
                    Ok(Some(frame)) => {
                        let frame = Frame::decode(frame, MSIZE)
                            .map_err(|e| alloc::format!("decode: {e:?}"))?;
                        if frame.tag != tag {
                            return Err(alloc::format!(
                                "answer with tag {} for {}",
                                frame.tag,
                                tag
                            ));
                        }
                        return Ok(frame.message);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        self.stream.clear();
                        return Err(alloc::format!("the stream is not 9P ({error:?})"));
                    }
                }
                if rdtsc() - start > PATIENCE {
                    return Err("no answer".into());
                }
                // The answer comes with vector 0x50 + link (hvm raises it
                // in cell 0 when the device uses a buffer): halt until then.
                let link = &self.link;
                runtime_vm::wait_for_interrupt(|| link.has_used());
            }
        }

        /// Tversion + Tattach; fid 0 is the root.
        fn session(&mut self) -> Result<(), String> {
            self.stream.clear();
            match self.call(Message::Tversion {
                msize: MSIZE,
                version: "9P2000".into(),
            })? {
                Message::Rversion { version, .. } if version == "9P2000" => {}
                other => return Err(alloc::format!("Tversion: {other:?}")),
            }
            match self.call(Message::Tattach {
                fid: 0,
                afid: NOFID,
                uname: "eve".into(),
                aname: String::new(),
            })? {
                Message::Rattach { .. } => Ok(()),
                other => Err(alloc::format!("Tattach: {other:?}")),
            }
        }

        fn write_file(&mut self, name: &str, data: &[u8]) -> Result<(), String> {
            match self.call(Message::Twalk {
                fid: 0,
                newfid: 1,
                wnames: vec![],
            })? {
                Message::Rwalk { .. } => {}
                other => return Err(alloc::format!("Twalk: {other:?}")),
            }
            match self.call(Message::Tcreate {
                fid: 1,
                name: name.into(),
                perm: FileMode::from_bits_retain(0o644),
                mode: OpenMode::ORDWR,
            })? {
                Message::Rcreate { .. } => {}
                other => return Err(alloc::format!("Tcreate: {other:?}")),
            }
            match self.call(Message::Twrite {
                fid: 1,
                offset: 0,
                data: data.to_vec(),
            })? {
                Message::Rwrite { count } if count as usize == data.len() => {}
                other => return Err(alloc::format!("Twrite: {other:?}")),
            }
            match self.call(Message::Tclunk { fid: 1 })? {
                Message::Rclunk => Ok(()),
                other => Err(alloc::format!("Tclunk: {other:?}")),
            }
        }

        /// Reads `name` back: its bytes, or the server's error.
        fn read_file(&mut self, name: &str) -> Result<Result<Vec<u8>, String>, String> {
            match self.call(Message::Twalk {
                fid: 0,
                newfid: 2,
                wnames: vec![name.into()],
            })? {
                Message::Rwalk { wqids } if wqids.len() == 1 => {}
                Message::Rerror { ename } => return Ok(Err(ename)),
                other => return Err(alloc::format!("Twalk: {other:?}")),
            }
            match self.call(Message::Topen {
                fid: 2,
                mode: OpenMode::empty(), // OREAD
            })? {
                Message::Ropen { .. } => {}
                other => return Err(alloc::format!("Topen: {other:?}")),
            }
            let data = match self.call(Message::Tread {
                fid: 2,
                offset: 0,
                count: 4096,
            })? {
                Message::Rread { data } => data,
                other => return Err(alloc::format!("Tread: {other:?}")),
            };
            self.call(Message::Tclunk { fid: 2 })?;
            Ok(Ok(data))
        }

        fn link_generation(&self) -> u64 {
            hypercall(Hypercall::LinkStatus, self.number, 0).1
        }

        /// Waits until the link's generation moves past `self.generation`.
        fn wait_for_new_peer(&mut self) -> bool {
            let start = rdtsc();
            while rdtsc() - start < 4 * PATIENCE {
                let generation = self.link_generation();
                if generation != self.generation {
                    println!(
                        "vm-probe: link {} generation {} -> {}: the peer is new",
                        self.number, self.generation, generation
                    );
                    self.generation = generation;
                    return true;
                }
                hypercall(Hypercall::Yield, 0, 0);
            }
            false
        }
    }

    fn cell_info(cell: u64) -> Option<CellInfo> {
        let mut info = CellInfo::empty();
        let address = link::physical(&mut info as *mut CellInfo as u64);
        let (status, _) = hypercall(Hypercall::CellInfo, cell, address);
        (status == 0).then_some(info)
    }

    fn finish(client: &Client) -> ! {
        println!(
            "vm-probe: link interrupts taken: {} on vector 0x50, {} on vector 0x51",
            runtime_vm::interrupts_taken(1),
            runtime_vm::interrupts_taken(2)
        );
        println!(
            "vm-probe: {} passed, {} failed",
            client.passed, client.failed
        );
        stop(u64::from(client.failed != 0))
    }

    fn stop(status: u64) -> ! {
        hypercall(Hypercall::PowerOff, status, 0);
        loop {
            hypercall(Hypercall::Yield, 0, 0);
        }
    }

    fn main(boot: &Boot) -> ! {
        if boot.info.args().contains("hostile") {
            hostile()
        }
        if boot.info.args().contains("linux") {
            linux()
        }
        let functions = link::consoles();
        println!("vm-probe: {} link device(s) on PCI bus 0", functions.len());
        let Some(&function) = functions.first() else {
            println!("vm-probe: FAILED: no link device");
            stop(1)
        };
        for &f in &functions {
            runtime_vm::map_device(link::bar_of(f));
        }
        let link = match Link::open(function) {
            Ok(link) => link,
            Err(why) => {
                println!("vm-probe: FAILED: link 0: {why}");
                stop(1)
            }
        };
        println!(
            "vm-probe: link 0 up at 00:{:02x}.0, BAR {:#x}",
            function.device, link.bar
        );
        let mut client = Client {
            link,
            number: 0,
            stream: Reassembler::new(),
            tag: 0,
            generation: 0,
            passed: 0,
            failed: 0,
        };
        let server = 1u64;
        if let Some(info) = cell_info(server) {
            println!(
                "vm-probe: cell {} `{}`: kind {} state {} link {} restarts {}/{}",
                server,
                CellInfo::text(&info.name),
                info.kind,
                info.state,
                info.link,
                info.restarts,
                info.restart_limit
            );
            client.check(
                info.kind == 3 && info.link == 0,
                "CellInfo names a server VM on link 0",
            );
        }
        client.generation = client.link_generation();
        let result = client.session().and_then(|()| {
            client.write_file("hello", b"hello from cell 0\n")?;
            client.read_file("hello")
        });
        let ok = matches!(&result, Ok(Ok(data)) if data == b"hello from cell 0\n");
        if let Err(why) = &result {
            println!("vm-probe: 9P: {why}");
        }
        client.check(
            ok,
            "9P through link 0: Tversion Tattach Twalk Tcreate Twrite Tclunk Topen Tread",
        );
        let exits = hypercall(Hypercall::ExitCount, server, 0).1;
        println!("bench vm_probe_server_exits {exits}");

        for verb in [
            CellControl::Crash,
            CellControl::TripleFault,
            CellControl::WildWrite,
            CellControl::Hang,
            CellControl::Garbage,
        ] {
            println!("vm-probe: injecting `{}` into cell {}", verb.verb(), server);
            let (status, _) = hypercall(Hypercall::CellControl, server, verb as u64);
            client.check(status == 0, "CellControl accepted the injection");
            let injected = rdtsc();
            if verb == CellControl::Garbage {
                // Garbage does not stop the VM: cell 0 must notice the
                // broken stream, cut the link and ask for the restart.
                let answer = client.call(Message::Tversion {
                    msize: MSIZE,
                    version: "9P2000".into(),
                });
                let noticed = matches!(&answer, Err(why) if why.contains("not 9P"));
                client.check(noticed, "cell 0 saw bytes that are not 9P on the link");
                let (status, _) =
                    hypercall(Hypercall::CellControl, server, CellControl::Restart as u64);
                client.check(status == 0, "cell 0 asked hvm to restart the server");
            }
            let restarted = client.wait_for_new_peer();
            let seen = rdtsc();
            client.check(restarted, "hvm restarted the server VM alone");
            let serving = client.session();
            let served = rdtsc();
            if let Err(why) = &serving {
                println!("vm-probe: after `{}`: {why}", verb.verb());
            }
            client.check(
                serving.is_ok(),
                "the new server answers Tversion and Tattach",
            );
            let gone = matches!(client.read_file("hello"), Ok(Err(_)));
            client.check(
                gone,
                "it started from its pristine image (the file is gone)",
            );
            let _ = client.write_file("hello", b"hello from cell 0\n");
            if let Some(info) = cell_info(server) {
                println!(
                    "vm-probe: cell {}: restarts {}/{}, last failure: {}",
                    server,
                    info.restarts,
                    info.restart_limit,
                    CellInfo::text(&info.last_failure)
                );
            }
            let name = verb.verb().replace('-', "_");
            if verb == CellControl::TripleFault {
                // Failure detected -> first answered 9P request, from above:
                // the triple fault follows the injection within microseconds.
                println!(
                    "bench vm_restart_to_serving_cycles {} cycles",
                    served - injected
                );
            }
            println!(
                "bench vm_inject_to_new_peer_cycles_{name} {} cycles",
                seen - injected
            );
            println!(
                "bench vm_new_peer_to_serving_cycles_{name} {} cycles",
                served - seen
            );
        }
        // Stop and start through CellControl: the VM is gone, then a new
        // one from its pristine image answers on a new link generation.
        let (status, _) = hypercall(Hypercall::CellControl, server, CellControl::Stop as u64);
        client.check(status == 0, "CellControl stop accepted");
        let mut stopped = false;
        for _ in 0..1000 {
            hypercall(Hypercall::Yield, 0, 0);
            let (status, state) = hypercall(Hypercall::CellStatus, server, 0);
            if status == 0 && state == hvm_abi::CellState::Stopped as u64 {
                stopped = true;
                break;
            }
        }
        client.check(stopped, "the server VM is stopped");
        let (status, _) = hypercall(Hypercall::CellControl, server, CellControl::Start as u64);
        client.check(status == 0, "CellControl start accepted");
        let started = client.wait_for_new_peer() && client.session().is_ok();
        client.check(started, "the started server VM answers 9P");
        finish(&client)
    }

    /// Opens cell 0's link to `cell` (found through `CellInfo`).
    fn open(functions: &[DeviceFunction], cell: u64) -> Result<Client, String> {
        let info = cell_info(cell).ok_or("no CellInfo")?;
        let function = *functions
            .get(info.link as usize)
            .ok_or("no device for its link")?;
        let link = Link::open(function).map_err(|e| e.to_string())?;
        println!(
            "vm-probe: link {} to cell {} `{}` up at 00:{:02x}.0, BAR {:#x}",
            info.link,
            cell,
            CellInfo::text(&info.name),
            function.device,
            link.bar
        );
        Ok(Client {
            link,
            number: u64::from(info.link),
            stream: Reassembler::new(),
            tag: 0,
            generation: 0,
            passed: 0,
            failed: 0,
        })
    }

    /// `args = "hostile"`: cell 1 is a good ramfs-vm, cell 2 hostile-vm.
    /// Both must serve 9P, and cell 1 throughout.
    fn hostile() -> ! {
        let functions = link::consoles();
        println!("vm-probe: {} link device(s) on PCI bus 0", functions.len());
        for &f in &functions {
            runtime_vm::map_device(link::bar_of(f));
        }
        let (mut good, mut bad) = match (open(&functions, 1), open(&functions, 2)) {
            (Ok(good), Ok(bad)) => (good, bad),
            (Err(why), _) | (_, Err(why)) => {
                println!("vm-probe: FAILED: {why}");
                stop(1)
            }
        };
        let round = |client: &mut Client, name: &str, what: &str| {
            let result = client.session().and_then(|()| {
                client.write_file(name, what.as_bytes())?;
                client.read_file(name)
            });
            let ok = matches!(&result, Ok(Ok(data)) if data == what.as_bytes());
            if let Err(why) = &result {
                println!("vm-probe: 9P: {why}");
            }
            ok
        };
        let ok = round(&mut good, "before", "good before");
        good.check(ok, "9P to the good server VM (link 0)");
        let ok = round(&mut bad, "after", "hostile after its acts");
        good.check(ok, "9P to the hostile server VM after its acts (link 1)");
        let ok = round(&mut good, "after", "good after");
        good.check(ok, "9P to the good server VM again");
        for cell in [1, 2] {
            let (status, state) = hypercall(Hypercall::CellStatus, cell, 0);
            good.check(
                status == 0 && state == hvm_abi::CellState::Running as u64,
                if cell == 1 {
                    "cell 1 is still running"
                } else {
                    "cell 2 is still running"
                },
            );
        }
        finish(&good)
    }

    /// Waits (yielding) until bytes arrive on the client's link.
    fn wait_for_bytes(client: &mut Client, patience: u64) -> usize {
        let start = rdtsc();
        let mut total = 0;
        while total == 0 && rdtsc() - start < patience {
            let _ = client.link.receive(&mut |b| total += b.len());
            hypercall(Hypercall::Yield, 0, 0);
        }
        total
    }

    /// `args = "linux"`: cell 1 is a Linux cell with the bridge agent.
    /// CellControl stops it and starts it again; each start is a new link
    /// generation and a new agent speaking on the link.
    fn linux() -> ! {
        let functions = link::consoles();
        for &f in &functions {
            runtime_vm::map_device(link::bar_of(f));
        }
        let mut client = match open(&functions, 1) {
            Ok(client) => client,
            Err(why) => {
                println!("vm-probe: FAILED: {why}");
                stop(1)
            }
        };
        let linux_boot = 40 * PATIENCE;
        client.generation = client.link_generation();
        let bytes = wait_for_bytes(&mut client, linux_boot);
        client.check(bytes > 0, "the Linux cell's agent speaks on link 0");
        let (status, _) = hypercall(Hypercall::CellControl, 1, CellControl::Stop as u64);
        client.check(status == 0, "CellControl stop accepted");
        let mut stopped = false;
        for _ in 0..1000 {
            hypercall(Hypercall::Yield, 0, 0);
            let (status, state) = hypercall(Hypercall::CellStatus, 1, 0);
            if status == 0 && state == hvm_abi::CellState::Stopped as u64 {
                stopped = true;
                break;
            }
        }
        client.check(stopped, "the Linux cell is stopped");
        let (status, _) = hypercall(Hypercall::CellControl, 1, CellControl::Start as u64);
        client.check(status == 0, "CellControl start accepted");
        let new_peer = client.wait_for_new_peer();
        client.check(new_peer, "a new link generation");
        let bytes = wait_for_bytes(&mut client, linux_boot);
        client.check(bytes > 0, "the started Linux cell's agent speaks on link 0");
        let (status, _) = hypercall(Hypercall::CellControl, 1, CellControl::Crash as u64);
        client.check(
            status == hvm_abi::HypercallError::BadArgument as u64,
            "an injection into a Linux cell is refused",
        );
        finish(&client)
    }

    runtime_vm::entry!(main);
}
