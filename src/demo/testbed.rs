//! The seed scenario's test bed, shared by `qrouter demo` and the integration tests: the
//! operator's commands that build the seed topology (README.md, "The seed scenario, worked")
//! as data, a TCP probe between namespaces and a packet capture (docs/kernel.md, "Sandboxes").
//! Nothing here decides what passes: callers check what these return.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

// `qrouter::`, not `crate::`: the integration tests include this file as a module of their
// own (tests/common), where `crate` is the test.
use qrouter::kernel::netns;

/// The seed topology, as an operator types it: vlan100, vlan101 and ext_net (on the bridge
/// br-ex) with their subnets, router_100_101 on both tenant subnets, cirros-vm3 at
/// 172.16.101.3, and the physical switch upstream, 10.10.10.1, as an instance on br-ex too.
pub const SEED: &[&[&str]] = &[
    &["network", "create", "vlan100"],
    &["network", "create", "vlan101"],
    &[
        "network",
        "create",
        "ext_net",
        "--external",
        "--bridge",
        "br-ex",
    ],
    &[
        "subnet",
        "create",
        "vlan100",
        "--network",
        "vlan100",
        "--subnet-range",
        "172.16.100.0/24",
    ],
    &[
        "subnet",
        "create",
        "vlan101",
        "--network",
        "vlan101",
        "--subnet-range",
        "172.16.101.0/24",
    ],
    &[
        "subnet",
        "create",
        "ext",
        "--network",
        "ext_net",
        "--subnet-range",
        "10.10.10.0/24",
        "--gateway",
        "10.10.10.1",
    ],
    &["router", "create", "router_100_101"],
    &["router", "add", "interface", "router_100_101", "vlan100"],
    &["router", "add", "subnet", "router_100_101", "vlan101"],
    &[
        "instance",
        "create",
        "cirros-vm3",
        "--network",
        "vlan101",
        "--fixed-ip",
        "172.16.101.3",
    ],
    &[
        "instance",
        "create",
        "upstream",
        "--network",
        "ext_net",
        "--fixed-ip",
        "10.10.10.1",
    ],
];

/// cirros-vm3 as the article's VM gets it: 172.16.101.3 reserved on its port, then handed
/// out by the network's dnsmasq to the DHCP client run in its namespace.
pub const VM3_BY_DHCP: &[&str] = &[
    "instance",
    "create",
    "cirros-vm3",
    "--network",
    "vlan101",
    "--fixed-ip",
    "172.16.101.3",
    "--dhcp",
];

/// The seed with cirros-vm3 taking its address by DHCP (`VM3_BY_DHCP`): the demo's.
pub fn seed_with_dhcp() -> impl Iterator<Item = &'static [&'static str]> {
    SEED.iter().map(|step| match step.get(2) {
        Some(&"cirros-vm3") => VM3_BY_DHCP,
        _ => *step,
    })
}

/// The seed across hosts (`demo --hosts`, tests/multihost.rs): the same steps, with
/// cirros-vm3 on compute1, taking its address by DHCP from vlan101's dnsmasq on network1,
/// and the upstream switch on network1 (the router and the DHCP servers are scheduled to
/// the network host). The tenant networks are VXLAN segments by default with etcd.
pub fn seed_across_hosts() -> Vec<Vec<&'static str>> {
    seed_with_dhcp()
        .map(|step| {
            let mut step = step.to_vec();
            match step.as_slice() {
                ["instance", "create", "cirros-vm3", ..] => step.extend(["--host", "compute1"]),
                ["instance", "create", "upstream", ..] => step.extend(["--host", "network1"]),
                _ => {}
            }
            step
        })
        .collect()
}

/// Seed step 1: the router's gateway on ext_net.
pub const SET_GATEWAY: &[&str] = &[
    "router",
    "set",
    "router_100_101",
    "--external-gateway",
    "ext_net",
];

/// A second router beside the seed's (needs SEED): tenant network vlan200 (172.16.200.0/24)
/// with vm-b at 172.16.200.3 behind router_b, whose gateway is on ext_net. Only the tests
/// (tests/common) use it.
#[allow(dead_code)]
pub const SECOND_ROUTER: &[&[&str]] = &[
    &["network", "create", "vlan200"],
    &[
        "subnet",
        "create",
        "vlan200",
        "--network",
        "vlan200",
        "--subnet-range",
        "172.16.200.0/24",
    ],
    &["router", "create", "router_b"],
    &["router", "add", "interface", "router_b", "vlan200"],
    &["router", "set", "router_b", "--external-gateway", "ext_net"],
    &[
        "instance",
        "create",
        "vm-b",
        "--network",
        "vlan200",
        "--fixed-ip",
        "172.16.200.3",
    ],
];

/// `cirros-vm3` pings the upstream switch once: the traffic of the seed's captures.
pub const VM3_PINGS_UPSTREAM: &[&str] = &[
    "instance",
    "exec",
    "cirros-vm3",
    "--",
    "ping",
    "-c",
    "1",
    "-W",
    "1",
    "10.10.10.1",
];

/// Listen on `addr` in namespace `server_ns` and connect to it from `client_ns`: the peer
/// address the server saw, or None when no connection arrived within two seconds.
pub fn tcp_probe(
    server_ns: &str,
    addr: &str,
    client_ns: &str,
) -> anyhow::Result<Option<SocketAddr>> {
    tcp_probe_to(server_ns, addr, addr, client_ns)
}

/// Like `tcp_probe`, but the client connects to `target` (a floating IP in front of `listen`).
pub fn tcp_probe_to(
    server_ns: &str,
    listen: &str,
    target: &str,
    client_ns: &str,
) -> anyhow::Result<Option<SocketAddr>> {
    let listen: SocketAddr = listen.parse().context("listen address")?;
    let target: SocketAddr = target.parse().context("target address")?;
    let listener = netns::run_in(server_ns, move || TcpListener::bind(listen))?
        .with_context(|| format!("cannot listen on {listen} in {server_ns}"))?;
    listener.set_nonblocking(true)?;
    let connected = netns::run_in(client_ns, move || {
        TcpStream::connect_timeout(&target, Duration::from_secs(2)).map(|mut s| s.write_all(b"hi"))
    })?;
    if connected.is_err() {
        return Ok(None);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok((_, peer)) = listener.accept() {
            return Ok(Some(peer));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(None)
}

/// Which packets a capture waits for.
#[derive(Clone, Copy, Debug)]
pub enum Filter {
    /// Any ICMP packet (tcpdump's `icmp`).
    Icmp,
    /// An ARP packet for or from this address (tcpdump's `arp and host IP`); only the
    /// tests capture these.
    #[allow(dead_code)]
    ArpHost(Ipv4Addr),
}

impl Filter {
    fn expression(self) -> String {
        match self {
            Filter::Icmp => "icmp".to_string(),
            Filter::ArpHost(ip) => format!("arp and host {ip}"),
        }
    }
}

/// The first packet matching `filter` on `dev` in namespace `ns` while `traffic` runs, as
/// tcpdump prints it (timestamp, then the summary), or "" when none came within 5 seconds.
///
/// tcpdump does the capture. Where it cannot run because it cannot drop its privileges —
/// in a user namespace made by an ordinary user, where no uid but root is mapped and
/// setgroups is denied — a packet socket opened in the namespace does it instead, and the
/// packet is printed the way tcpdump prints it.
pub fn capture(
    ns: &str,
    dev: &str,
    filter: Filter,
    traffic: impl FnOnce(),
) -> anyhow::Result<String> {
    let file = netns::open(ns)?;
    let mut child = netns::command(&file, "tcpdump")
        .args(["-n", "-l", "-c", "1", "-i", dev, &filter.expression()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run tcpdump (Debian package 'tcpdump')")?;
    // Keep stderr open: tcpdump writes its statistics there as it exits.
    let mut stderr = child.stderr.take().expect("piped");
    let said = wait_listening(&mut stderr);
    if !said.contains("listening on") {
        child.wait()?;
        if said.contains("Couldn't change to") {
            return socket_capture(ns, dev, filter, traffic);
        }
        anyhow::bail!("tcpdump -i {dev} in {ns} failed: {}", said.trim());
    }
    traffic();
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)?;
    child.wait()?;
    Ok(out.trim().to_string())
}

/// tcpdump prints "listening on" once its capture is open; the lines before come earlier.
/// What it printed up to there (all of it, when it exited instead).
fn wait_listening(mut stderr: impl Read) -> String {
    let (mut seen, mut byte) = (Vec::new(), [0u8; 1]);
    while !String::from_utf8_lossy(&seen).contains("listening on")
        && matches!(stderr.read(&mut byte), Ok(1))
    {
        seen.push(byte[0]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

const ETH_P_ALL: u16 = 0x0003;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;

/// `capture` without tcpdump: a packet socket bound to `dev`, opened on a thread inside `ns`
/// before the traffic starts, so every frame of it is queued.
fn socket_capture(
    ns: &str,
    dev: &str,
    filter: Filter,
    traffic: impl FnOnce(),
) -> anyhow::Result<String> {
    let name = std::ffi::CString::new(dev)?;
    let sock = netns::run_in(ns, move || -> std::io::Result<OwnedFd> {
        // SAFETY: plain syscalls on a descriptor this closure owns from its creation on.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            );
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let sock = OwnedFd::from_raw_fd(fd);
            let index = libc::if_nametoindex(name.as_ptr());
            if index == 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = ETH_P_ALL.to_be();
            addr.sll_ifindex = index as i32;
            let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            if libc::bind(fd, std::ptr::from_ref(&addr).cast(), len) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let timeout = libc::timeval {
                tv_sec: 0,
                tv_usec: 100_000,
            };
            let size = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
            let opt = std::ptr::from_ref(&timeout).cast();
            if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, opt, size) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(sock)
        }
    })?
    .with_context(|| format!("cannot capture on {dev} in {ns}"))?;
    traffic();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut frame = [0u8; 2048];
    while Instant::now() < deadline {
        // SAFETY: reads into a buffer of the length given.
        let n = unsafe { libc::recv(sock.as_raw_fd(), frame.as_mut_ptr().cast(), frame.len(), 0) };
        let Ok(n) = usize::try_from(n) else { continue };
        if let Some(summary) = summarize(&frame[..n], filter) {
            return Ok(format!("{} {summary}", timestamp()));
        }
    }
    Ok(String::new())
}

/// tcpdump's one-line summary of an Ethernet frame, if it matches `filter`.
fn summarize(frame: &[u8], filter: Filter) -> Option<String> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let payload = frame.get(14..)?;
    match (filter, ethertype) {
        (Filter::Icmp, ETH_P_IP) => icmp_summary(payload),
        (Filter::ArpHost(ip), ETH_P_ARP) => arp_summary(payload, ip),
        _ => None,
    }
}

fn icmp_summary(ip: &[u8]) -> Option<String> {
    let header = usize::from(ip.first()? & 0x0f) * 4;
    if *ip.get(9)? != 1 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let addr = |at: usize| {
        Some(Ipv4Addr::new(
            *ip.get(at)?,
            ip[at + 1],
            ip[at + 2],
            ip[at + 3],
        ))
    };
    let (src, dst) = (addr(12)?, addr(16)?);
    let icmp = ip.get(header..total)?;
    let word = |at: usize| Some(u16::from_be_bytes([*icmp.get(at)?, *icmp.get(at + 1)?]));
    let what = match icmp.first()? {
        8 => format!("echo request, id {}, seq {}", word(4)?, word(6)?),
        0 => format!("echo reply, id {}, seq {}", word(4)?, word(6)?),
        kind => format!("type-#{kind}"),
    };
    Some(format!(
        "IP {src} > {dst}: ICMP {what}, length {}",
        icmp.len()
    ))
}

fn arp_summary(arp: &[u8], host: Ipv4Addr) -> Option<String> {
    let body = arp.get(..28)?;
    let ip = |at: usize| Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3]);
    let mac = |at: usize| {
        body[at..at + 6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let (sender, target) = (ip(14), ip(24));
    if sender != host && target != host {
        return None;
    }
    let what = match u16::from_be_bytes([body[6], body[7]]) {
        1 if body[18..24].iter().any(|&b| b != 0) => {
            format!("Request who-has {target} ({}) tell {sender}", mac(18))
        }
        1 => format!("Request who-has {target} tell {sender}"),
        2 => format!("Reply {sender} is-at {}", mac(8)),
        op => format!("op {op}"),
    };
    Some(format!("ARP, {what}, length {}", arp.len()))
}

/// The local time of day as tcpdump prints it: HH:MM:SS.micros.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = libc::time_t::try_from(now.as_secs()).unwrap_or_default();
    // SAFETY: localtime_r writes only into the struct it is given.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&secs, &mut tm);
        tm
    };
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_micros()
    )
}

/// What `ping -D -c N` printed, counted (the demo's HA act and tests/ha.rs count the pings
/// lost across a failover this way).
pub struct PingCount {
    pub sent: u32,
    pub lost: u32,
    /// The longest time between two replies, in seconds: a reply queued behind the router's
    /// ARP arrives late but counts as received, so this shows how long traffic stopped.
    pub gap: f64,
}

/// Count what `ping -D -c N` printed; None without its summary line.
pub fn count_pings(text: &str) -> Option<PingCount> {
    let summary = text.lines().find(|l| l.contains("packets transmitted"))?;
    let numbers: Vec<u32> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (sent, received) = (*numbers.first()?, *numbers.get(1)?);
    // -D: each reply's line starts with its time, "[1796675314.123456]".
    let stamps: Vec<f64> = (text.lines())
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    let gap = stamps.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    Some(PingCount {
        sent,
        lost: sent.saturating_sub(received),
        gap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend([2, 0, 0, 0, 0, 1]);
        f.extend(ethertype.to_be_bytes());
        f.extend(payload);
        f
    }

    #[test]
    fn an_echo_request_reads_as_tcpdump_prints_it() {
        let mut ip = vec![0x45, 0, 0, 84, 0, 0, 0x40, 0, 64, 1, 0, 0];
        ip.extend([172, 16, 101, 3, 10, 10, 10, 1]);
        ip.extend([8, 0, 0, 0, 0, 7, 0, 1]);
        ip.extend([0u8; 56]);
        let line = summarize(&ethernet(ETH_P_IP, &ip), Filter::Icmp).unwrap();
        assert_eq!(
            line,
            "IP 172.16.101.3 > 10.10.10.1: ICMP echo request, id 7, seq 1, length 64"
        );
        assert_eq!(
            summarize(
                &ethernet(ETH_P_IP, &ip),
                Filter::ArpHost(Ipv4Addr::LOCALHOST)
            ),
            None
        );
    }

    #[test]
    fn a_gratuitous_arp_reads_as_tcpdump_prints_it() {
        let ip = [10, 10, 10, 2];
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1];
        arp.extend(ip);
        arp.extend([0; 6]);
        arp.extend(ip);
        let host = Ipv4Addr::from(ip);
        let frame = ethernet(ETH_P_ARP, &arp);
        assert_eq!(
            summarize(&frame, Filter::ArpHost(host)).unwrap(),
            "ARP, Request who-has 10.10.10.2 tell 10.10.10.2, length 28"
        );
        assert_eq!(
            summarize(&frame, Filter::ArpHost(Ipv4Addr::LOCALHOST)),
            None
        );
        arp[7] = 2;
        assert_eq!(
            summarize(&ethernet(ETH_P_ARP, &arp), Filter::ArpHost(host)).unwrap(),
            "ARP, Reply 10.10.10.2 is-at 02:00:00:00:00:01, length 28"
        );
    }
}
