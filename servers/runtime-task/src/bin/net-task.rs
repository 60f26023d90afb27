//! The network server as a microkernel task: `netfs` (Plan 9's `/net`
//! over smoltcp) on core's server link, on the loopback device.
//!
//! This is the bare-mode placement of the `net` server (docs/net.md). A
//! task link answers every request before the next, so a request that
//! must wait (a read with nothing received, a `listen`) fails with a clear
//! error; a connect to a listener on the same stack completes, because the
//! runtime runs the stack after each request. The VM placement (`net-vm`)
//! serves everything.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("net-task is a Kasane task: build it with `cargo build -p runtime-task --target x86_64-unknown-none`");
    std::process::exit(2);
}

#[cfg(target_os = "none")]
mod task {
    use core::net::Ipv4Addr;

    use microkernel_abi::ThreadId;
    use netfs::smoltcp::phy::{Loopback, Medium};
    use netfs::smoltcp::wire::Ipv4Cidr;
    use netfs::NetFs;

    fn main(core: ThreadId) -> ! {
        let seed = u64::from(runtime_task::clock_seconds()).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut net = NetFs::new(Loopback::new(Medium::Ip), [0; 6], "loopback", seed, 0);
        // A task knows no start count: the clock tells starts apart.
        net.set_start(u64::from(runtime_task::clock_seconds()));
        net.configure(Ipv4Cidr::new(Ipv4Addr::LOCALHOST, 8), None);
        runtime_task::serve(core, &mut net)
    }

    runtime_task::entry!(main);
}
