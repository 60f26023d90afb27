//! The network server as a server VM: `netfs` (Plan 9's `/net` over
//! smoltcp) on a virtio link under hvm.
//!
//! With the manifest's `ne2k` device (a PCI NE2000, whose ports hvm opens
//! to this VM alone) the stack drives the card (`servers/ne2k`) and asks
//! DHCP for its address; without, it runs on smoltcp's loopback device
//! with 127.0.0.1/8, so programs in Kasane can still announce, dial and
//! talk TCP and UDP to each other through `/net`. The card is polled
//! (its interrupt is not routed to the VM), every 10 ms while the server
//! runs.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("net-vm is a Kasane server VM: build it with `cargo build -p runtime-vm --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod vm {
    use hvm_abi::Hypercall;
    use netfs::{Mac, NetFs};
    use runtime_vm::ports::Card;

    /// How often the stack looks at a card that raises no interrupt.
    const CARD_POLL_MS: u64 = 10;

    fn main(_boot: &runtime_vm::Boot) -> ! {
        let seed = u64::from(runtime_vm::clock_seconds()).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        // hvm answers a server VM's LinkStatus of its own link (link 0 of
        // its view) with the link's generation: 1 at the first start, one
        // more at each restart. netfs numbers each start's conversations
        // apart by it.
        // (docs/hypercalls.md: status 0 in RAX is success.) Without it,
        // the clock tells starts apart, as in the task placement.
        let start = match runtime_vm::hypercall(Hypercall::LinkStatus, 0, 0) {
            (0, generation) => generation,
            _ => u64::from(runtime_vm::clock_seconds()),
        };
        if let Some(card) = Card::find() {
            let base = card.0;
            match ne2k::Ne2k::new(card) {
                Ok(nic) => {
                    let mac = nic.mac();
                    let mut net =
                        NetFs::on_polled_card(nic, mac, "ne2k", seed, start, CARD_POLL_MS);
                    runtime_vm::print_line(format_args!(
                        "net: /net on the NE2000 at port {base:#x}, mac {}, dhcp",
                        Mac(mac)
                    ));
                    runtime_vm::serve(&mut net)
                }
                Err(e) => runtime_vm::print_line(format_args!(
                    "net: the device at port {base:#x}: {e}; using the loopback device"
                )),
            }
        }
        let mut net = NetFs::on_loopback(seed, start);
        runtime_vm::print_line(format_args!(
            "net: /net on the loopback device, 127.0.0.1/8"
        ));
        runtime_vm::serve(&mut net)
    }

    runtime_vm::entry!(main);
}
