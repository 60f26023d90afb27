//! The `/net` tree (ip(3)) as a [`FileServer`] over a smoltcp stack.
//!
//! ```text
//! /net/cs                       dial string -> "clone-file address"
//! /net/tcp/clone                open: a new conversation's ctl
//! /net/tcp/N/{ctl,data,listen,local,remote,status}
//! /net/udp/...                  the same for UDP
//! /net/ipifc/0/{ctl,status}     the interface: add, remove, gateway, dhcp
//! ```
//!
//! Requests that must wait (a read with nothing received, a `connect`, a
//! `listen` with no call yet, a write into a full window) answer
//! [`Reply::Later`]; [`NetFs::poll`] runs the stack and finishes them, and
//! the runtime hands [`NetFs::completions`] to its `Session`.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use ninep::{FileMode, OpenMode, Qid, QidType, Stat};
use ninep_server::{Caller, Completion, Error, FileServer, Reply, RequestId};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, Medium};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint, Ipv4Cidr,
};

use crate::dial::{self, Address, Host, Names, Proto};

/// Conversations per transport.
pub const MAX_CONVERSATIONS: usize = 64;
/// Conversation numbers each start of the server has to itself: start
/// `k` numbers its conversations from `k * NUMBERS_PER_START` (modulo
/// [`STARTS`]), so a number from before a restart names none of the new
/// server's conversations.
pub const NUMBERS_PER_START: u32 = 100;
/// Starts before the numbers come round again.
pub const STARTS: u64 = 1000;
/// The longest write a ctl file, `cs` or `ipifc/0/ctl` takes, in bytes.
/// Plan 9's ctl messages and dial strings are short lines; 256 bytes is
/// room for any of them (an address, a port, a verb).
pub const MAX_CONTROL: usize = 256;
/// What a walk into a conversation of an earlier start of the server
/// answers: core's recovery fails that conversation's chans with it.
pub const RESET: &str = "connection reset: network restarted";
/// Bytes of each TCP socket's receive and send windows.
const TCP_BUFFER: usize = 16 * 1024;
/// UDP datagrams and bytes each UDP socket queues each way.
const UDP_PACKETS: usize = 16;
const UDP_BUFFER: usize = 16 * 1024;
/// A `connect` that has not completed after this long fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a connection waits for the peer to acknowledge what it sent
/// (data, or a `keepalive` probe) before it gives the peer up and ends:
/// RFC 1122 §4.2.3.5's R2, "at least 100 seconds" for data. Then a read
/// waiting on it ends, so a peer that vanished (a node powered off, a
/// cable cut) does not hold its callers for ever.
const GIVE_UP: Duration = Duration::from_secs(100);
/// Plan 9's UDP header in `headers` mode (ip(3)): raddr[16] laddr[16]
/// ifcaddr[16] rport[2] lport[2], addresses in IPv6 form.
pub const UDP_HEADER: usize = 52;
/// The first port `connect` picks when none is named (RFC 6335's dynamic
/// range).
const EPHEMERAL_FIRST: u16 = 49152;

/// A file of a conversation directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConvFile {
    Ctl,
    Data,
    Listen,
    Local,
    Remote,
    Status,
}

impl ConvFile {
    const ALL: [ConvFile; 6] = [
        ConvFile::Ctl,
        ConvFile::Data,
        ConvFile::Listen,
        ConvFile::Local,
        ConvFile::Remote,
        ConvFile::Status,
    ];

    fn name(self) -> &'static str {
        match self {
            ConvFile::Ctl => "ctl",
            ConvFile::Data => "data",
            ConvFile::Listen => "listen",
            ConvFile::Local => "local",
            ConvFile::Remote => "remote",
            ConvFile::Status => "status",
        }
    }

    fn mode(self) -> u32 {
        match self {
            ConvFile::Ctl | ConvFile::Data | ConvFile::Listen => 0o660,
            ConvFile::Local | ConvFile::Remote | ConvFile::Status => 0o444,
        }
    }
}

/// A file of `/net/ipifc/0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IfcFile {
    Ctl,
    Status,
}

/// What a fid names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Root,
    /// `/net/cs` before it is opened; an open one is [`Node::CsOpen`].
    Cs,
    CsOpen(u32),
    ProtoDir(Proto),
    Clone(Proto),
    ConvDir(Proto, u32),
    File(Proto, u32, ConvFile),
    IpifcDir,
    Ifc0Dir,
    Ifc(IfcFile),
}

impl Node {
    /// Qid paths: kind in bits 56.., transport in 48.., conversation in
    /// 8.., file in 0..
    fn path(self) -> u64 {
        let proto = |p: Proto| (p as u64 + 1) << 48;
        match self {
            Node::Root => 0,
            Node::Cs | Node::CsOpen(_) => 1 << 56,
            Node::ProtoDir(p) => (2 << 56) | proto(p),
            Node::Clone(p) => (3 << 56) | proto(p),
            Node::ConvDir(p, n) => (4 << 56) | proto(p) | (u64::from(n) << 8),
            Node::File(p, n, f) => (5 << 56) | proto(p) | (u64::from(n) << 8) | (f as u64 + 1),
            Node::IpifcDir => 6 << 56,
            Node::Ifc0Dir => 7 << 56,
            Node::Ifc(f) => (8 << 56) | (f as u64 + 1),
        }
    }

    fn is_dir(self) -> bool {
        matches!(
            self,
            Node::Root | Node::ProtoDir(_) | Node::ConvDir(..) | Node::IpifcDir | Node::Ifc0Dir
        )
    }

    fn qid(self) -> Qid {
        Qid {
            kind: if self.is_dir() {
                QidType::DIR
            } else {
                QidType::FILE
            },
            version: 0,
            path: self.path(),
        }
    }
}

/// Where a conversation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ConvState {
    /// Allocated by `clone`, nothing asked yet.
    Idle,
    Connecting {
        since: Instant,
    },
    Connected,
    Announced,
    /// Hung up, by either side or by `hangup`; reads see end of file and
    /// writes fail with the reason.
    Closed(String),
}

#[derive(Debug)]
struct Conv {
    state: ConvState,
    socket: Option<SocketHandle>,
    /// Files of this conversation open now.
    opens: u32,
    /// False while a call accepted on an announced conversation waits
    /// for its first open; it is not reclaimed before that.
    claimed: bool,
    owner: String,
    local: Option<IpEndpoint>,
    remote: Option<IpEndpoint>,
    /// UDP `headers` mode: every datagram carries [`UDP_HEADER`] bytes.
    headers: bool,
    /// Accepted calls (conversation numbers) not yet taken by a `listen`.
    incoming: VecDeque<u32>,
}

impl Conv {
    fn new(owner: &str) -> Self {
        Self {
            state: ConvState::Idle,
            socket: None,
            opens: 0,
            claimed: true,
            owner: owner.to_string(),
            local: None,
            remote: None,
            headers: false,
            incoming: VecDeque::new(),
        }
    }
}

#[derive(Debug)]
enum WaitKind {
    Read { count: u32 },
    Write { data: Vec<u8>, sent: usize },
    Connect { len: u32 },
    Listen,
}

#[derive(Debug)]
struct Wait {
    id: RequestId,
    proto: Proto,
    conv: u32,
    kind: WaitKind,
}

/// The interface's configuration, as `ipifc/0/status` shows it.
#[derive(Debug, Clone, Default)]
struct Ifc {
    address: Option<Ipv4Cidr>,
    gateway: Option<Ipv4Addr>,
    dhcp: bool,
}

/// The `/net` file server. `D` is the network device (the NE2000 driver,
/// virtio-net, or a test wire).
pub struct NetFs<D: Device> {
    device: D,
    iface: Interface,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    convs: [Vec<Option<Conv>>; 2],
    /// Sockets of released conversations, left to finish their close.
    closing: Vec<SocketHandle>,
    waits: Vec<Wait>,
    done: Vec<(RequestId, Completion)>,
    /// Answers of open `/net/cs` fids.
    cs: Vec<Option<String>>,
    ifc: Ifc,
    device_name: &'static str,
    now: Instant,
    next_port: u16,
    poll_period: Option<u64>,
    /// The number of each transport's conversation slot 0 in this start
    /// ([`NetFs::set_start`]).
    first: u32,
}

impl<D: Device> core::fmt::Debug for NetFs<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NetFs")
            .field("device", &self.device_name)
            .field("waits", &self.waits.len())
            .finish()
    }
}

fn proto_index(p: Proto) -> usize {
    p as usize
}

/// smoltcp's TCP states in Plan 9's spelling (tcp(3) status).
fn tcp_state_name(state: tcp::State) -> &'static str {
    match state {
        tcp::State::Closed => "Closed",
        tcp::State::Listen => "Listen",
        tcp::State::SynSent => "Syn_sent",
        tcp::State::SynReceived => "Syn_received",
        tcp::State::Established => "Established",
        tcp::State::FinWait1 => "Finwait1",
        tcp::State::FinWait2 => "Finwait2",
        tcp::State::CloseWait => "Close_wait",
        tcp::State::Closing => "Closing",
        tcp::State::LastAck => "Last_ack",
        tcp::State::TimeWait => "Time_wait",
    }
}

fn endpoint_text(endpoint: Option<IpEndpoint>) -> String {
    match endpoint {
        Some(e) => format!("{}!{}\n", e.addr, e.port),
        None => String::from("::!0\n"),
    }
}

fn ipv4(address: Ipv4Addr) -> IpAddress {
    IpAddress::Ipv4(address)
}

impl NetFs<smoltcp::phy::Loopback> {
    /// A server on smoltcp's loopback device with 127.0.0.1/8, the start
    /// `start` of its placement ([`set_start`](NetFs::set_start)): what
    /// either placement runs without a card, so programs can still talk
    /// TCP and UDP to each other through `/net`.
    pub fn on_loopback(seed: u64, start: u64) -> Self {
        let device = smoltcp::phy::Loopback::new(Medium::Ip);
        let mut net = NetFs::new(device, [0; 6], "loopback", seed, 0);
        net.set_start(start);
        net.configure(Ipv4Cidr::new(Ipv4Addr::LOCALHOST, 8), None);
        net
    }
}

impl<D: Device> NetFs<D> {
    /// A server on a card that raises no interrupt its runtime takes:
    /// polled every `poll_ms`, addressed by DHCP, the start `start` of its
    /// placement ([`set_start`](NetFs::set_start)). Both placements of
    /// the network server drive the NE2000 this way.
    pub fn on_polled_card(
        device: D,
        mac: [u8; 6],
        name: &'static str,
        seed: u64,
        start: u64,
        poll_ms: u64,
    ) -> Self {
        let mut net = NetFs::new(device, mac, name, seed, 0);
        net.set_start(start);
        net.set_poll_period(Some(poll_ms));
        net.start_dhcp();
        net
    }

    /// A server on `device`, unconfigured: the interface gets an address
    /// by `ipifc/0/ctl` (`add`, or `dhcp`) or [`NetFs::configure`].
    /// `seed` seeds smoltcp's initial sequence numbers and ports.
    pub fn new(
        mut device: D,
        mac: [u8; 6],
        device_name: &'static str,
        seed: u64,
        now_ms: i64,
    ) -> Self {
        let now = Instant::from_millis(now_ms);
        let hardware = match device.capabilities().medium {
            Medium::Ethernet => HardwareAddress::Ethernet(EthernetAddress(mac)),
            _ => HardwareAddress::Ip,
        };
        let mut config = Config::new(hardware);
        config.random_seed = seed;
        let iface = Interface::new(config, &mut device, now);
        Self {
            device,
            iface,
            sockets: SocketSet::new(vec![]),
            dhcp: None,
            convs: [Vec::new(), Vec::new()],
            closing: Vec::new(),
            waits: Vec::new(),
            done: Vec::new(),
            cs: Vec::new(),
            ifc: Ifc::default(),
            device_name,
            now,
            next_port: EPHEMERAL_FIRST + (seed % 1000) as u16,
            poll_period: None,
            first: 0,
        }
    }

    /// Says which start of the server this is (a server VM's link
    /// generation), before any conversation exists: each start numbers
    /// its conversations apart, so a client's chan on a conversation of
    /// an earlier start finds no conversation of this one, and a walk to
    /// it fails with [`RESET`] rather than reach another conversation.
    pub fn set_start(&mut self, start: u64) {
        // Cannot truncate: below STARTS * NUMBERS_PER_START.
        self.first = (start % STARTS) as u32 * NUMBERS_PER_START;
    }

    /// The slot of conversation number `n` in this start, if it is one of
    /// this start's numbers.
    fn slot(&self, n: u32) -> Option<usize> {
        let slot = n.checked_sub(self.first)? as usize;
        (slot < MAX_CONVERSATIONS).then_some(slot)
    }

    /// Sets a static address and, optionally, the default route.
    pub fn configure(&mut self, address: Ipv4Cidr, gateway: Option<Ipv4Addr>) {
        self.stop_dhcp();
        self.set_address(Some(address), gateway);
    }

    /// Starts DHCP (RFC 2131); the address arrives in a later [`poll`](Self::poll).
    pub fn start_dhcp(&mut self) {
        if self.dhcp.is_none() {
            self.dhcp = Some(self.sockets.add(dhcpv4::Socket::new()));
        }
        self.ifc.dhcp = true;
    }

    fn stop_dhcp(&mut self) {
        if let Some(handle) = self.dhcp.take() {
            self.sockets.remove(handle);
        }
        self.ifc.dhcp = false;
    }

    fn set_address(&mut self, address: Option<Ipv4Cidr>, gateway: Option<Ipv4Addr>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some(a) = address {
                // One address fits the vector's capacity.
                let _ = addrs.push(IpCidr::Ipv4(a));
            }
        });
        let routes = self.iface.routes_mut();
        routes.remove_default_ipv4_route();
        if let Some(g) = gateway {
            let _ = routes.add_default_ipv4_route(g);
        }
        self.ifc.address = address;
        self.ifc.gateway = gateway;
    }

    /// The interface's address, once it has one.
    pub fn address(&self) -> Option<Ipv4Cidr> {
        self.ifc.address
    }

    /// The device, for the runtime (interrupt acknowledgement, counters).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    fn names(&self) -> Names {
        Names {
            gateway: self.ifc.gateway,
        }
    }

    /// Runs the stack at `now_ms` and finishes every waiting request that
    /// can be finished; their answers wait in [`completions`](Self::completions).
    /// Returns whether anything changed.
    pub fn run(&mut self, now_ms: i64) -> bool {
        self.now = Instant::from_millis(now_ms);
        let mut changed = false;
        // A few rounds, so an answer produced by one round (an ACK, a
        // SYN-ACK) is sent before we sleep.
        for _ in 0..4 {
            let result = self
                .iface
                .poll(self.now, &mut self.device, &mut self.sockets);
            let active = !matches!(result, smoltcp::iface::PollResult::None);
            self.poll_dhcp();
            self.promote_calls();
            let finished = self.service_waits();
            self.reap_closing();
            changed |= active || finished;
            if !active && !finished {
                break;
            }
        }
        changed
    }

    /// Milliseconds until the stack next needs [`run`](Self::run): its
    /// own timers, a connect's deadline, and, for a device that raises no
    /// interrupt, the period set by [`set_poll_period`](Self::set_poll_period).
    pub fn delay(&mut self) -> Option<u64> {
        let mut delay = self
            .iface
            .poll_delay(self.now, &self.sockets)
            .map(|d| d.total_millis());
        let mut cap = |ms: u64| delay = Some(delay.map_or(ms, |d| d.min(ms)));
        if self
            .waits
            .iter()
            .any(|w| matches!(w.kind, WaitKind::Connect { .. }))
        {
            cap(1000);
        }
        if let Some(period) = self.poll_period {
            cap(period);
        }
        delay
    }

    /// Runs the stack every `ms` milliseconds even when nothing else is
    /// due: for a NIC whose driver takes no interrupts.
    pub fn set_poll_period(&mut self, ms: Option<u64>) {
        self.poll_period = ms;
    }

    /// The late answers [`run`](Self::run) (or a hang-up) produced.
    pub fn completions(&mut self) -> Vec<(RequestId, Completion)> {
        core::mem::take(&mut self.done)
    }

    fn poll_dhcp(&mut self) {
        let Some(handle) = self.dhcp else { return };
        let event = self.sockets.get_mut::<dhcpv4::Socket>(handle).poll();
        match event {
            Some(dhcpv4::Event::Configured(config)) => {
                let (address, router) = (config.address, config.router);
                self.set_address(Some(address), router);
            }
            Some(dhcpv4::Event::Deconfigured) => self.set_address(None, None),
            None => {}
        }
    }

    fn conv(&self, p: Proto, n: u32) -> Result<&Conv, Error> {
        let slot = self.slot(n).ok_or(Error::NOT_FOUND)?;
        self.convs[proto_index(p)]
            .get(slot)
            .and_then(Option::as_ref)
            .ok_or(Error::NOT_FOUND)
    }

    fn conv_mut(&mut self, p: Proto, n: u32) -> Result<&mut Conv, Error> {
        let slot = self.slot(n).ok_or(Error::NOT_FOUND)?;
        self.convs[proto_index(p)]
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(Error::NOT_FOUND)
    }

    /// A free conversation number, or a new one.
    fn allocate(&mut self, p: Proto, owner: &str) -> Result<u32, Error> {
        let table = &mut self.convs[proto_index(p)];
        let n = match table.iter().position(Option::is_none) {
            Some(n) => n,
            None if table.len() < MAX_CONVERSATIONS => {
                table.push(None);
                table.len() - 1
            }
            None => return Err(Error::new(format!("no free {} conversations", p.name()))),
        };
        table[n] = Some(Conv::new(owner));
        // Cannot truncate: n < MAX_CONVERSATIONS.
        Ok(self.first + n as u32)
    }

    fn tcp_socket() -> tcp::Socket<'static> {
        let rx = tcp::SocketBuffer::new(vec![0; TCP_BUFFER]);
        let tx = tcp::SocketBuffer::new(vec![0; TCP_BUFFER]);
        let mut socket = tcp::Socket::new(rx, tx);
        socket.set_nagle_enabled(false);
        // smoltcp aborts the connection when what it sent, or a keep-alive
        // probe, stays unacknowledged this long.
        socket.set_timeout(Some(GIVE_UP));
        socket
    }

    fn udp_socket() -> udp::Socket<'static> {
        let buffer = || {
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
                vec![0; UDP_BUFFER],
            )
        };
        udp::Socket::new(buffer(), buffer())
    }

    /// A local port no conversation of `p` uses.
    fn ephemeral_port(&mut self, p: Proto) -> u16 {
        loop {
            let port = self.next_port;
            self.next_port = if port == u16::MAX {
                EPHEMERAL_FIRST
            } else {
                port + 1
            };
            let used = self.convs[proto_index(p)]
                .iter()
                .flatten()
                .any(|c| c.local.is_some_and(|l| l.port == port));
            if !used {
                return port;
            }
        }
    }

    fn local_address(&self) -> Result<Ipv4Addr, Error> {
        self.ifc
            .address
            .map(|a| a.address())
            .ok_or_else(|| Error::new("network unconfigured: no address on ipifc/0"))
    }

    // ---- ctl requests ----

    fn ctl(
        &mut self,
        caller: &Caller<'_>,
        p: Proto,
        n: u32,
        text: &str,
    ) -> Result<Reply<u32>, Error> {
        let len = text.len() as u32;
        let line = text.trim_end_matches(['\n', '\0']).trim();
        let (verb, arg) = line
            .split_once(' ')
            .map_or((line, ""), |(v, a)| (v, a.trim()));
        match verb {
            "connect" => self.connect(caller, p, n, arg, len),
            "announce" => {
                self.announce(p, n, arg)?;
                Ok(Reply::Now(len))
            }
            "hangup" => {
                self.hangup(p, n, "hangup");
                Ok(Reply::Now(len))
            }
            "headers" if p == Proto::Udp => {
                self.conv_mut(p, n)?.headers = true;
                Ok(Reply::Now(len))
            }
            "keepalive" if p == Proto::Tcp => {
                let handle = self.conv(p, n)?.socket;
                if let Some(h) = handle {
                    let ms = arg.parse::<u64>().unwrap_or(30_000);
                    self.sockets
                        .get_mut::<tcp::Socket>(h)
                        .set_keep_alive(Some(Duration::from_millis(ms)));
                }
                Ok(Reply::Now(len))
            }
            "" => Err(Error::new("empty control request")),
            other => Err(Error::new(format!("unknown control request '{other}'"))),
        }
    }

    fn connect(
        &mut self,
        caller: &Caller<'_>,
        p: Proto,
        n: u32,
        arg: &str,
        len: u32,
    ) -> Result<Reply<u32>, Error> {
        let (remote, lport) = dial::connect_args(arg, &self.names()).map_err(Error::new)?;
        let Host::Addr(raddr) = remote.host else {
            return Err(Error::new("cannot connect to '*'"));
        };
        if self.conv(p, n)?.state != ConvState::Idle {
            return Err(Error::new(
                "conversation in use: connect needs a fresh clone",
            ));
        }
        let laddr = if raddr.is_loopback() {
            Ipv4Addr::LOCALHOST
        } else {
            self.local_address()?
        };
        let lport = match lport {
            Some(port) => port,
            None => self.ephemeral_port(p),
        };
        let remote_ep = IpEndpoint::new(ipv4(raddr), remote.port);
        let local_ep = IpEndpoint::new(ipv4(laddr), lport);
        match p {
            Proto::Tcp => {
                let mut socket = Self::tcp_socket();
                socket
                    .connect(self.iface.context(), remote_ep, lport)
                    .map_err(|e| Error::new(format!("connect {remote}: {e}")))?;
                let handle = self.sockets.add(socket);
                let since = self.now;
                let conv = self.conv_mut(p, n)?;
                conv.socket = Some(handle);
                conv.state = ConvState::Connecting { since };
                conv.local = Some(local_ep);
                conv.remote = Some(remote_ep);
                self.waits.push(Wait {
                    id: caller.request,
                    proto: p,
                    conv: n,
                    kind: WaitKind::Connect { len },
                });
                Ok(Reply::Later)
            }
            Proto::Udp => {
                let mut socket = Self::udp_socket();
                socket
                    .bind(lport)
                    .map_err(|e| Error::new(format!("bind udp port {lport}: {e}")))?;
                let handle = self.sockets.add(socket);
                let conv = self.conv_mut(p, n)?;
                conv.socket = Some(handle);
                conv.state = ConvState::Connected;
                conv.local = Some(local_ep);
                conv.remote = Some(remote_ep);
                Ok(Reply::Now(len))
            }
        }
    }

    fn announce(&mut self, p: Proto, n: u32, arg: &str) -> Result<(), Error> {
        let address = dial::announce_args(arg, &self.names()).map_err(Error::new)?;
        if self.conv(p, n)?.state != ConvState::Idle {
            return Err(Error::new(
                "conversation in use: announce needs a fresh clone",
            ));
        }
        let in_use = self.convs[proto_index(p)].iter().flatten().any(|c| {
            c.state == ConvState::Announced && c.local.is_some_and(|l| l.port == address.port)
        });
        if in_use || address.port == 0 {
            return Err(Error::new(format!(
                "port {} in use or invalid",
                address.port
            )));
        }
        let (listen, local) = self.listen_endpoint(address)?;
        let handle = match p {
            Proto::Tcp => {
                let mut socket = Self::tcp_socket();
                socket
                    .listen(listen)
                    .map_err(|e| Error::new(format!("announce {address}: {e}")))?;
                self.sockets.add(socket)
            }
            Proto::Udp => {
                let mut socket = Self::udp_socket();
                socket
                    .bind(listen)
                    .map_err(|e| Error::new(format!("announce {address}: {e}")))?;
                self.sockets.add(socket)
            }
        };
        let conv = self.conv_mut(p, n)?;
        conv.socket = Some(handle);
        conv.state = ConvState::Announced;
        conv.local = Some(local);
        Ok(())
    }

    fn listen_endpoint(&self, address: Address) -> Result<(IpListenEndpoint, IpEndpoint), Error> {
        match address.host {
            Host::Any => Ok((
                IpListenEndpoint {
                    addr: None,
                    port: address.port,
                },
                IpEndpoint::new(ipv4(Ipv4Addr::UNSPECIFIED), address.port),
            )),
            Host::Addr(a) => Ok((
                IpListenEndpoint {
                    addr: Some(ipv4(a)),
                    port: address.port,
                },
                IpEndpoint::new(ipv4(a), address.port),
            )),
        }
    }

    /// Ends a conversation's connection; waiting requests fail with `why`.
    fn hangup(&mut self, p: Proto, n: u32, why: &str) {
        let Ok(conv) = self.conv_mut(p, n) else {
            return;
        };
        let socket = conv.socket.take();
        let incoming: Vec<u32> = conv.incoming.drain(..).collect();
        conv.state = ConvState::Closed(why.to_string());
        if let Some(h) = socket {
            match p {
                Proto::Tcp => {
                    self.sockets.get_mut::<tcp::Socket>(h).close();
                    self.closing.push(h);
                }
                Proto::Udp => {
                    self.sockets.remove(h);
                }
            }
        }
        for m in incoming {
            self.hangup(p, m, "listener hung up");
            self.release_if_unused(p, m);
        }
        self.fail_waits(p, n, why);
    }

    fn fail_waits(&mut self, p: Proto, n: u32, why: &str) {
        let mut i = 0;
        while i < self.waits.len() {
            let w = &self.waits[i];
            if w.proto == p && w.conv == n {
                let w = self.waits.remove(i);
                let completion = match w.kind {
                    WaitKind::Read { .. } => Completion::Read(Ok(Vec::new())),
                    WaitKind::Listen => Completion::Read(Err(Error::new(why))),
                    WaitKind::Write { .. } | WaitKind::Connect { .. } => {
                        Completion::Write(Err(Error::new(why)))
                    }
                };
                self.done.push((w.id, completion));
            } else {
                i += 1;
            }
        }
    }

    /// Frees a conversation nobody has open and nobody is about to claim.
    fn release_if_unused(&mut self, p: Proto, n: u32) {
        let unused = self
            .conv(p, n)
            .map(|c| c.opens == 0 && c.claimed)
            .unwrap_or(false);
        if !unused {
            return;
        }
        if !matches!(self.conv(p, n).map(|c| &c.state), Ok(ConvState::Closed(_))) {
            self.hangup(p, n, "hangup");
        }
        if let Some(slot) = self.slot(n) {
            self.convs[proto_index(p)][slot] = None;
        }
    }

    /// An announced TCP conversation's listening socket that got a call
    /// becomes a new conversation, and a fresh socket listens in its place
    /// (smoltcp has no accept queue; a SYN in between is refused).
    fn promote_calls(&mut self) {
        let announced: Vec<u32> = self.convs[proto_index(Proto::Tcp)]
            .iter()
            .enumerate()
            .filter_map(|(n, c)| {
                c.as_ref()
                    .filter(|c| c.state == ConvState::Announced)
                    .map(|_| self.first + n as u32)
            })
            .collect();
        for n in announced {
            let Ok(conv) = self.conv(Proto::Tcp, n) else {
                continue;
            };
            let (Some(handle), Some(local)) = (conv.socket, conv.local) else {
                continue;
            };
            let owner = conv.owner.clone();
            let listen = IpListenEndpoint {
                addr: (!local.addr.is_unspecified()).then_some(local.addr),
                port: local.port,
            };
            let socket = self.sockets.get::<tcp::Socket>(handle);
            if matches!(socket.state(), tcp::State::Listen) {
                continue;
            }
            if !socket.is_active() {
                // A call that reset before it completed: listen again.
                let socket = self.sockets.get_mut::<tcp::Socket>(handle);
                let _ = socket.listen(listen);
                continue;
            }
            let (l, r) = (socket.local_endpoint(), socket.remote_endpoint());
            let mut fresh = Self::tcp_socket();
            if fresh.listen(listen).is_err() {
                continue;
            }
            let Ok(m) = self.allocate(Proto::Tcp, &owner) else {
                // No room for the call: refuse it and listen again.
                self.sockets.get_mut::<tcp::Socket>(handle).abort();
                continue;
            };
            let fresh = self.sockets.add(fresh);
            if let Ok(call) = self.conv_mut(Proto::Tcp, m) {
                call.socket = Some(handle);
                call.state = ConvState::Connected;
                call.local = l;
                call.remote = r;
                call.claimed = false;
            }
            if let Ok(conv) = self.conv_mut(Proto::Tcp, n) {
                conv.socket = Some(fresh);
                conv.incoming.push_back(m);
            }
        }
    }

    /// Finishes every waiting request the stack can now answer; true if
    /// any was finished.
    fn service_waits(&mut self) -> bool {
        let mut finished = false;
        for mut wait in core::mem::take(&mut self.waits) {
            match self.try_finish(&mut wait) {
                Some(completion) => {
                    self.done.push((wait.id, completion));
                    finished = true;
                }
                None => self.waits.push(wait),
            }
        }
        finished
    }

    /// The answer to `w` if it can be given now. `w` is not in
    /// `self.waits` while this runs.
    fn try_finish(&mut self, w: &mut Wait) -> Option<Completion> {
        let (p, n) = (w.proto, w.conv);
        let Ok(conv) = self.conv(p, n) else {
            let gone = Error::new("conversation gone");
            return Some(match w.kind {
                WaitKind::Read { .. } | WaitKind::Listen => Completion::Read(Err(gone)),
                _ => Completion::Write(Err(gone)),
            });
        };
        let state = conv.state.clone();
        let headers = conv.headers;
        let socket = conv.socket;
        if let ConvState::Closed(why) = &state {
            return Some(match w.kind {
                WaitKind::Read { .. } => Completion::Read(Ok(Vec::new())),
                WaitKind::Listen => Completion::Read(Err(Error::new(why.clone()))),
                _ => Completion::Write(Err(Error::new(why.clone()))),
            });
        }
        match &mut w.kind {
            WaitKind::Listen => {
                let conv = self.conv_mut(p, n).ok()?;
                let m = conv.incoming.pop_front()?;
                Some(Completion::Read(Ok(format!("{m}").into_bytes())))
            }
            WaitKind::Connect { len } => {
                let len = *len;
                let ConvState::Connecting { since } = state else {
                    return Some(Completion::Write(Err(Error::new("connection closed"))));
                };
                let h = socket?;
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                match s.state() {
                    tcp::State::Established => {
                        let local = s.local_endpoint();
                        if let Ok(conv) = self.conv_mut(p, n) {
                            conv.state = ConvState::Connected;
                            conv.local = local.or(conv.local);
                        }
                        Some(Completion::Write(Ok(len)))
                    }
                    tcp::State::Closed => {
                        self.hangup(p, n, "connection refused");
                        Some(Completion::Write(Err(Error::new("connection refused"))))
                    }
                    _ if self.now - since >= CONNECT_TIMEOUT => {
                        s.abort();
                        self.hangup(p, n, "connection timed out");
                        Some(Completion::Write(Err(Error::new("connection timed out"))))
                    }
                    _ => None,
                }
            }
            WaitKind::Read { count } => {
                let count = *count as usize;
                let h = socket?;
                match p {
                    Proto::Tcp => {
                        let s = self.sockets.get_mut::<tcp::Socket>(h);
                        if s.can_recv() {
                            let mut buf = vec![0; count];
                            let got = s.recv_slice(&mut buf).unwrap_or(0);
                            buf.truncate(got);
                            Some(Completion::Read(Ok(buf)))
                        } else if !s.may_recv() && !tcp_opening(s.state()) {
                            // The peer sent FIN or the connection is gone:
                            // end of file.
                            Some(Completion::Read(Ok(Vec::new())))
                        } else {
                            None
                        }
                    }
                    Proto::Udp => {
                        udp_receive(self.sockets.get_mut::<udp::Socket>(h), count, headers)
                            .map(|r| Completion::Read(r.map_err(Error::new)))
                    }
                }
            }
            WaitKind::Write { data, sent } => {
                let h = socket?;
                let s = self.sockets.get_mut::<tcp::Socket>(h);
                if tcp_opening(s.state()) {
                    return None;
                }
                if !s.may_send() {
                    return Some(Completion::Write(Err(Error::new("connection closed"))));
                }
                let more = s.send_slice(&data[*sent..]).unwrap_or(0);
                *sent += more;
                (*sent == data.len()).then_some(Completion::Write(Ok(data.len() as u32)))
            }
        }
    }

    /// Answers `w` now if it can be, or files it to wait.
    fn now_or_later(&mut self, mut w: Wait) -> Option<Completion> {
        match self.try_finish(&mut w) {
            Some(completion) => Some(completion),
            None => {
                self.waits.push(w);
                None
            }
        }
    }

    /// Drops the sockets of released conversations that finished closing.
    fn reap_closing(&mut self) {
        let sockets = &mut self.sockets;
        self.closing.retain(|&h| {
            let open = sockets.get::<tcp::Socket>(h).is_open();
            if !open {
                sockets.remove(h);
            }
            open
        });
    }

    fn data_read(
        &mut self,
        caller: &Caller<'_>,
        p: Proto,
        n: u32,
        count: u32,
    ) -> Result<Reply<Vec<u8>>, Error> {
        let wait = Wait {
            id: caller.request,
            proto: p,
            conv: n,
            kind: WaitKind::Read { count },
        };
        read_reply(self.now_or_later(wait))
    }

    fn data_write(
        &mut self,
        caller: &Caller<'_>,
        p: Proto,
        n: u32,
        data: &[u8],
    ) -> Result<Reply<u32>, Error> {
        let conv = self.conv(p, n)?;
        match &conv.state {
            ConvState::Closed(why) => return Err(Error::new(why.clone())),
            ConvState::Idle | ConvState::Connecting { .. } => {
                return Err(Error::new("not connected"));
            }
            ConvState::Announced if p == Proto::Tcp => {
                return Err(Error::new("an announced conversation carries no data"));
            }
            _ => {}
        }
        let (remote, headers, socket) = (conv.remote, conv.headers, conv.socket);
        let h = socket.ok_or_else(|| Error::new("not connected"))?;
        match p {
            Proto::Tcp => {
                let wait = Wait {
                    id: caller.request,
                    proto: p,
                    conv: n,
                    kind: WaitKind::Write {
                        data: data.to_vec(),
                        sent: 0,
                    },
                };
                match self.now_or_later(wait) {
                    Some(Completion::Write(result)) => result.map(Reply::Now),
                    Some(Completion::Read(_)) => {
                        Err(Error::new("internal: a write finished as a read"))
                    }
                    None => Ok(Reply::Later),
                }
            }
            Proto::Udp => {
                let (to, payload) = if headers {
                    let (to, payload) = parse_udp_header(data)?;
                    (to, payload)
                } else {
                    (
                        remote.ok_or_else(|| Error::new("not connected: no remote address"))?,
                        data,
                    )
                };
                let s = self.sockets.get_mut::<udp::Socket>(h);
                s.send_slice(payload, to)
                    .map_err(|e| Error::new(format!("udp send: {e}")))?;
                Ok(Reply::Now(data.len() as u32))
            }
        }
    }

    fn conv_text(&self, p: Proto, n: u32, file: ConvFile) -> Result<String, Error> {
        let conv = self.conv(p, n)?;
        Ok(match file {
            ConvFile::Ctl => format!("{n}"),
            ConvFile::Local => endpoint_text(conv.local),
            ConvFile::Remote => endpoint_text(conv.remote),
            ConvFile::Status => {
                let state = match (&conv.state, p, conv.socket) {
                    (ConvState::Closed(_), _, _) => "Closed",
                    (ConvState::Idle, _, _) => "Closed",
                    (_, Proto::Tcp, Some(h)) => {
                        tcp_state_name(self.sockets.get::<tcp::Socket>(h).state())
                    }
                    (ConvState::Announced, Proto::Udp, _) => "Announced",
                    (_, Proto::Udp, _) => "Open",
                    _ => "Closed",
                };
                format!("{}/{n} {} {state}\n", p.name(), conv.opens)
            }
            ConvFile::Data | ConvFile::Listen => String::new(),
        })
    }

    fn ifc_status(&self) -> String {
        let addr = self.ifc.address.map_or(String::from("none"), |a| {
            format!("{} {}", a.address(), a.netmask())
        });
        let gateway = self
            .ifc
            .gateway
            .map_or(String::from("none"), |g| g.to_string());
        // smoltcp's hardware_addr() asserts an Ethernet medium.
        let mac = match self.device.capabilities().medium {
            Medium::Ethernet => match self.iface.hardware_addr() {
                HardwareAddress::Ethernet(e) => e.to_string(),
                _ => String::from("none"),
            },
            _ => String::from("none"),
        };
        let how = if self.ifc.dhcp { "dhcp" } else { "static" };
        format!(
            "device {} mtu {} addr {addr} gateway {gateway} mac {mac} config {how}\n",
            self.device_name,
            self.device.capabilities().max_transmission_unit
        )
    }

    fn ifc_ctl(&mut self, text: &str) -> Result<(), Error> {
        let line = text.trim_end_matches(['\n', '\0']).trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        let parse = |s: &str| {
            s.parse::<Ipv4Addr>()
                .map_err(|_| Error::new(format!("bad address '{s}'")))
        };
        match words.as_slice() {
            ["add", addr, mask] | ["add", addr, mask, _] => {
                let addr = parse(addr)?;
                let mask = parse(mask)?;
                let prefix = u32::from(mask).leading_ones() as u8;
                if u32::from(mask).count_ones() != u32::from(prefix) {
                    return Err(Error::new(format!("bad mask '{mask}'")));
                }
                let cidr = Ipv4Cidr::new(addr, prefix);
                // Without a gateway named, the one the interface had
                // (DHCP's, say) stays only if the new network reaches it:
                // a router must be on the link (RFC 1122 §3.3.1.1).
                let gateway = match words.get(3) {
                    Some(g) => Some(parse(g)?),
                    None => self.ifc.gateway.filter(|g| cidr.contains_addr(g)),
                };
                self.configure(cidr, gateway);
                Ok(())
            }
            ["remove"] => {
                self.stop_dhcp();
                self.set_address(None, None);
                Ok(())
            }
            ["gateway", g] => {
                let g = parse(g)?;
                let address = self.ifc.address;
                self.set_address(address, Some(g));
                Ok(())
            }
            ["dhcp"] => {
                self.start_dhcp();
                Ok(())
            }
            [] => Err(Error::new("empty control request")),
            _ => Err(Error::new(format!(
                "unknown ipifc request '{line}' (add ADDR MASK [GATEWAY], remove, gateway ADDR, dhcp)"
            ))),
        }
    }

    fn stat_of(&self, node: Node) -> Result<Stat, Error> {
        let (name, mode, owner) = match node {
            Node::Root => (String::from("net"), 0o555, String::from("network")),
            Node::Cs | Node::CsOpen(_) => (String::from("cs"), 0o666, String::from("network")),
            Node::ProtoDir(p) => (String::from(p.name()), 0o555, String::from("network")),
            Node::Clone(_) => (String::from("clone"), 0o666, String::from("network")),
            Node::ConvDir(p, n) => (format!("{n}"), 0o555, self.conv(p, n)?.owner.clone()),
            Node::File(p, n, f) => (
                String::from(f.name()),
                f.mode(),
                self.conv(p, n)?.owner.clone(),
            ),
            Node::IpifcDir => (String::from("ipifc"), 0o555, String::from("network")),
            Node::Ifc0Dir => (String::from("0"), 0o555, String::from("network")),
            Node::Ifc(IfcFile::Ctl) => (String::from("ctl"), 0o664, String::from("network")),
            Node::Ifc(IfcFile::Status) => (String::from("status"), 0o444, String::from("network")),
        };
        let dir = if node.is_dir() {
            FileMode::DMDIR.bits()
        } else {
            0
        };
        Ok(Stat {
            kind: 0,
            dev: 0,
            qid: node.qid(),
            mode: FileMode::from_bits_retain(dir | mode),
            atime: 0,
            mtime: 0,
            length: 0,
            name,
            uid: owner.clone(),
            gid: owner,
            muid: String::new(),
        })
    }

    fn children(&self, node: Node) -> Vec<Node> {
        match node {
            Node::Root => vec![
                Node::Cs,
                Node::ProtoDir(Proto::Tcp),
                Node::ProtoDir(Proto::Udp),
                Node::IpifcDir,
            ],
            Node::ProtoDir(p) => {
                let mut v = vec![Node::Clone(p)];
                for (n, c) in self.convs[proto_index(p)].iter().enumerate() {
                    if c.is_some() {
                        v.push(Node::ConvDir(p, self.first + n as u32));
                    }
                }
                v
            }
            Node::ConvDir(p, n) => ConvFile::ALL.iter().map(|&f| Node::File(p, n, f)).collect(),
            Node::IpifcDir => vec![Node::Ifc0Dir],
            Node::Ifc0Dir => vec![Node::Ifc(IfcFile::Ctl), Node::Ifc(IfcFile::Status)],
            _ => Vec::new(),
        }
    }

    fn name_of(&self, node: Node) -> String {
        self.stat_of(node).map(|s| s.name).unwrap_or_default()
    }
}

/// States in which a TCP connection is still being set up: nothing can be
/// sent or received yet, but it may be soon.
fn tcp_opening(state: tcp::State) -> bool {
    matches!(
        state,
        tcp::State::SynSent | tcp::State::SynReceived | tcp::State::Listen
    )
}

/// A read's answer from what [`NetFs::now_or_later`] said.
fn read_reply(done: Option<Completion>) -> Result<Reply<Vec<u8>>, Error> {
    match done {
        Some(Completion::Read(result)) => result.map(Reply::Now),
        Some(Completion::Write(_)) => Err(Error::new("internal: a read finished as a write")),
        None => Ok(Reply::Later),
    }
}

/// One received datagram, as ip(3) reads it: the payload, preceded in
/// `headers` mode by the 52-byte header. `None` if none is queued.
fn udp_receive(
    s: &mut udp::Socket<'_>,
    count: usize,
    headers: bool,
) -> Option<Result<Vec<u8>, String>> {
    if !s.can_recv() {
        return None;
    }
    let (payload, meta) = match s.recv() {
        Ok((payload, meta)) => (payload.to_vec(), meta),
        Err(e) => return Some(Err(format!("udp receive: {e}"))),
    };
    let mut out = Vec::with_capacity(payload.len() + UDP_HEADER);
    if headers {
        let v6 = |a: Option<IpAddress>| -> [u8; 16] {
            match a {
                Some(IpAddress::Ipv4(v4)) => v4.to_ipv6_mapped().octets(),
                _ => [0; 16],
            }
        };
        out.extend_from_slice(&v6(Some(meta.endpoint.addr)));
        out.extend_from_slice(&v6(meta.local_address));
        out.extend_from_slice(&v6(meta.local_address));
        out.extend_from_slice(&meta.endpoint.port.to_be_bytes());
        out.extend_from_slice(&s.endpoint().port.to_be_bytes());
    }
    out.extend_from_slice(&payload);
    out.truncate(count);
    Some(Ok(out))
}

/// The destination of a `headers`-mode UDP write (ip(3)), and its payload.
fn parse_udp_header(data: &[u8]) -> Result<(IpEndpoint, &[u8]), Error> {
    if data.len() < UDP_HEADER {
        return Err(Error::new(format!(
            "udp write in headers mode needs a {UDP_HEADER}-byte header, got {} bytes",
            data.len()
        )));
    }
    let mut raddr = [0u8; 16];
    raddr.copy_from_slice(&data[..16]);
    let v6 = core::net::Ipv6Addr::from(raddr);
    let v4 = v6
        .to_ipv4_mapped()
        .ok_or_else(|| Error::new("udp header: remote address is not IPv4"))?;
    let port = u16::from_be_bytes([data[48], data[49]]);
    Ok((IpEndpoint::new(ipv4(v4), port), &data[UDP_HEADER..]))
}

impl<D: Device> FileServer for NetFs<D> {
    type Node = Node;

    fn attach(&mut self, _uname: &str, aname: &str) -> Result<(Node, Qid), Error> {
        if !aname.is_empty() {
            return Err(Error::new(format!("no attach name '{aname}' (use '')")));
        }
        Ok((Node::Root, Node::Root.qid()))
    }

    fn walk(&mut self, _caller: &Caller<'_>, dir: &Node, name: &str) -> Result<(Node, Qid), Error> {
        let up = match *dir {
            Node::ProtoDir(_) | Node::IpifcDir => Some(Node::Root),
            Node::ConvDir(p, _) => Some(Node::ProtoDir(p)),
            Node::Ifc0Dir => Some(Node::IpifcDir),
            _ => None,
        };
        if name == ".." {
            let node = up.unwrap_or(*dir);
            return Ok((node, node.qid()));
        }
        if let Node::ProtoDir(p) = *dir {
            if let Ok(n) = name.parse::<u32>() {
                if self.slot(n).is_none() {
                    // No number of this start: a conversation of an
                    // earlier one, which ended with it.
                    return Err(Error::new(RESET));
                }
                self.conv(p, n)?;
                let node = Node::ConvDir(p, n);
                return Ok((node, node.qid()));
            }
        }
        self.children(*dir)
            .into_iter()
            .find(|&child| self.name_of(child) == name)
            .map(|node| (node, node.qid()))
            .ok_or(Error::NOT_FOUND)
    }

    fn stat(&mut self, node: &Node) -> Result<Stat, Error> {
        self.stat_of(*node)
    }

    fn open_as(
        &mut self,
        caller: &Caller<'_>,
        node: &Node,
        _mode: OpenMode,
    ) -> Result<(Node, Qid), Error> {
        match *node {
            Node::Clone(p) => {
                let n = self.allocate(p, caller.uname)?;
                let conv = self.conv_mut(p, n)?;
                conv.opens = 1;
                let ctl = Node::File(p, n, ConvFile::Ctl);
                Ok((ctl, ctl.qid()))
            }
            Node::Cs => {
                let slot = match self.cs.iter().position(Option::is_none) {
                    Some(slot) => slot,
                    None => {
                        self.cs.push(None);
                        self.cs.len() - 1
                    }
                };
                self.cs[slot] = Some(String::new());
                let node = Node::CsOpen(slot as u32);
                Ok((node, node.qid()))
            }
            Node::File(p, n, _) => {
                let conv = self.conv_mut(p, n)?;
                if let ConvState::Closed(why) = &conv.state {
                    if conv.opens == 0 {
                        return Err(Error::new(why.clone()));
                    }
                }
                conv.opens += 1;
                conv.claimed = true;
                Ok((*node, node.qid()))
            }
            other => Ok((other, other.qid())),
        }
    }

    fn read(
        &mut self,
        caller: &Caller<'_>,
        node: &Node,
        offset: u64,
        count: u32,
    ) -> Result<Reply<Vec<u8>>, Error> {
        let text = |s: String| {
            let bytes = s.into_bytes();
            let start = (offset as usize).min(bytes.len());
            let end = start.saturating_add(count as usize).min(bytes.len());
            Ok(Reply::Now(bytes[start..end].to_vec()))
        };
        match *node {
            Node::CsOpen(slot) => {
                // As ndb/cs: a read takes the answer, whatever the offset
                // (the write moved it); the next read is the end of file.
                let answer = self
                    .cs
                    .get_mut(slot as usize)
                    .and_then(|entry| entry.as_mut().map(core::mem::take))
                    .unwrap_or_default();
                let mut bytes = answer.into_bytes();
                bytes.truncate(count as usize);
                Ok(Reply::Now(bytes))
            }
            Node::File(p, n, ConvFile::Data) => self.data_read(caller, p, n, count),
            Node::File(p, n, ConvFile::Listen) => {
                if p != Proto::Tcp || self.conv(p, n)?.state != ConvState::Announced {
                    return Err(Error::new("listen: conversation not announced"));
                }
                let wait = Wait {
                    id: caller.request,
                    proto: p,
                    conv: n,
                    kind: WaitKind::Listen,
                };
                read_reply(self.now_or_later(wait))
            }
            Node::File(p, n, f) => text(self.conv_text(p, n, f)?),
            Node::Ifc(IfcFile::Status) => text(self.ifc_status()),
            Node::Ifc(IfcFile::Ctl) => text(String::from("0")),
            _ => Err(Error::PERMISSION_DENIED),
        }
    }

    fn read_dir(&mut self, _caller: &Caller<'_>, dir: &Node) -> Result<Vec<Stat>, Error> {
        self.children(*dir)
            .into_iter()
            .map(|child| self.stat_of(child))
            .collect()
    }

    fn write(
        &mut self,
        caller: &Caller<'_>,
        node: &Node,
        _offset: u64,
        data: &[u8],
    ) -> Result<Reply<u32>, Error> {
        // A control request or dial string is a line; a longer write is
        // refused before it is parsed, so no reply quotes it back whole.
        let as_text = || {
            if data.len() > MAX_CONTROL {
                return Err(Error::new(format!(
                    "control request too long ({} bytes; at most {MAX_CONTROL})",
                    data.len()
                )));
            }
            core::str::from_utf8(data).map_err(|_| Error::new("control request is not UTF-8"))
        };
        match *node {
            Node::CsOpen(slot) => {
                let names = self.names();
                let dial = dial::resolve(as_text()?, &names).map_err(Error::new)?;
                let answer = format!("/net/{}/clone {}\n", dial.proto.name(), dial.address);
                if let Some(entry) = self.cs.get_mut(slot as usize) {
                    *entry = Some(answer);
                }
                Ok(Reply::Now(data.len() as u32))
            }
            Node::File(p, n, ConvFile::Ctl) => {
                let text = as_text()?;
                self.ctl(caller, p, n, text)
            }
            Node::File(p, n, ConvFile::Data) => self.data_write(caller, p, n, data),
            Node::Ifc(IfcFile::Ctl) => {
                self.ifc_ctl(as_text()?)?;
                Ok(Reply::Now(data.len() as u32))
            }
            _ => Err(Error::PERMISSION_DENIED),
        }
    }

    fn clunk(&mut self, node: &Node, opened: Option<OpenMode>) {
        if opened.is_none() {
            return;
        }
        match *node {
            Node::CsOpen(slot) => {
                if let Some(entry) = self.cs.get_mut(slot as usize) {
                    *entry = None;
                }
            }
            Node::File(p, n, _) => {
                if let Ok(conv) = self.conv_mut(p, n) {
                    conv.opens = conv.opens.saturating_sub(1);
                }
                self.release_if_unused(p, n);
            }
            _ => {}
        }
    }

    fn flush(&mut self, request: RequestId) {
        self.waits.retain(|w| w.id != request);
    }

    fn poll(&mut self, now_ms: u64) -> Vec<(RequestId, Completion)> {
        self.run(i64::try_from(now_ms).unwrap_or(i64::MAX));
        self.completions()
    }

    fn poll_delay_ms(&mut self) -> Option<u64> {
        self.delay()
    }

    /// Everyone may use the network; conversation files are checked by
    /// their owner's name as usual.
    fn is_member(&self, uname: &str, group: &str) -> bool {
        uname == group || group == "network"
    }
}
