//! The network server as a microkernel task: `netfs` (Plan 9's `/net`
//! over smoltcp) on core's server link.
//!
//! This is the bare-mode placement of the `net` server (docs/net.md). With
//! the manifest's `ne2k` device, core finds the PCI NE2000 on the bus,
//! grants its 32 ports to this task alone and says where they start
//! (`runtime_task::device`); the stack then drives the card
//! (`servers/ne2k`, polled: no interrupt reaches a task) and asks DHCP for
//! an address. Without, it runs on smoltcp's loopback device with
//! 127.0.0.1/8. Either way the link multiplexes (`serve_multiplexed`): a
//! read that waits for data or a `listen` waits in the server while other
//! requests come and go, as on the VM placement (`net-vm`).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("net-task is a Kasane task: build it with `cargo build -p runtime-task --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod task {
    use microkernel_abi::ThreadId;
    use microkernel_rt::console::print;
    use netfs::{Mac, NetFs};
    use runtime_task::ports;

    /// How often the stack looks at the card, which raises no interrupt
    /// a task could take (as in the VM placement).
    const CARD_POLL_MS: u64 = 10;

    /// The NE2000's ports, from the I/O base core found.
    struct Card(u16);

    impl ne2k::Ports for Card {
        fn inb(&mut self, offset: u16) -> u8 {
            ports::inb(self.0.wrapping_add(offset))
        }
        fn outb(&mut self, offset: u16, value: u8) {
            ports::outb(self.0.wrapping_add(offset), value)
        }
        fn inw(&mut self, offset: u16) -> u16 {
            ports::inw(self.0.wrapping_add(offset))
        }
        fn outw(&mut self, offset: u16, value: u16) {
            ports::outw(self.0.wrapping_add(offset), value)
        }
    }

    fn main(core: ThreadId) -> ! {
        let seed = u64::from(runtime_task::clock_seconds()).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        // Core says which start this is (1, then one more per restart),
        // as hvm tells a server VM its link's generation.
        let start = runtime_task::start_number()
            .unwrap_or_else(|| u64::from(runtime_task::clock_seconds()));
        if let Some(base) = runtime_task::device("ne2k") {
            match ne2k::Ne2k::new(Card(base)) {
                Ok(nic) => {
                    let mac = nic.mac();
                    let mut net =
                        NetFs::on_polled_card(nic, mac, "ne2k", seed, start, CARD_POLL_MS);
                    print(format_args!(
                        "net: /net on the NE2000 at port {base:#x}, mac {}, dhcp\n",
                        Mac(mac)
                    ));
                    runtime_task::serve_multiplexed(core, &mut net)
                }
                Err(e) => print(format_args!(
                    "net: the device at port {base:#x}: {e}; using the loopback device\n"
                )),
            }
        }
        let mut net = NetFs::on_loopback(seed, start);
        print(format_args!(
            "net: /net on the loopback device, 127.0.0.1/8\n"
        ));
        runtime_task::serve_multiplexed(core, &mut net)
    }

    runtime_task::entry!(main);
}
