//! The network server as a server VM: `netfs` (Plan 9's `/net` over
//! smoltcp) on a virtio link under hvm.
//!
//! No NIC is assigned to server VMs yet (docs/net.md), so the stack runs on
//! smoltcp's loopback device with 127.0.0.1/8: programs in Kasane can
//! announce, dial and talk TCP and UDP to each other through `/net`, and
//! the NE2000 driver (`servers/ne2k`) takes the loopback's place once hvm
//! hands a VM the card's ports.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("net-vm is a Kasane server VM: build it with `cargo build -p runtime-vm --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod vm {
    use core::net::Ipv4Addr;

    use netfs::smoltcp::phy::{Loopback, Medium};
    use netfs::smoltcp::wire::Ipv4Cidr;
    use netfs::NetFs;

    fn main(_boot: &runtime_vm::Boot) -> ! {
        let seed = u64::from(runtime_vm::clock_seconds()).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut net = NetFs::new(Loopback::new(Medium::Ip), [0; 6], "loopback", seed, 0);
        net.configure(Ipv4Cidr::new(Ipv4Addr::LOCALHOST, 8), None);
        runtime_vm::print_line(format_args!(
            "net: /net on the loopback device, 127.0.0.1/8"
        ));
        runtime_vm::serve(&mut net)
    }

    runtime_vm::entry!(main);
}
