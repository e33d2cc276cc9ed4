//! What the live trace asks a namespace (`explain/live.rs`): the route the kernel picks for
//! a packet (`ip route get`, asked over netlink), whether a device passes traffic, a probe
//! sent from it (ping, a TCP connect, a UDP datagram), the conntrack entries of a flow, and
//! netfilter's trace of the probe (`xtables-monitor --trace`, run in the namespace until
//! stopped).

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{find_program, netns, rawlink};

/// What the kernel of a namespace decides for one packet.
pub struct RouteLookup {
    /// The question and the answer as `ip` would print them: `ip route get DST from SRC [iif
    /// DEV]: DST via GW dev DEV` (or the kernel's refusal).
    pub line: String,
    /// `local` for a packet to the namespace itself; None when there is no route.
    pub device: Option<String>,
    pub via: Option<IpAddr>,
}

/// `ip route get DST from SRC [iif DEV]` in namespace `ns`: the same RTM_GETROUTE request,
/// from a thread in the namespace.
pub fn route_get(
    ns: &str,
    dst: IpAddr,
    src: IpAddr,
    iif: Option<&str>,
) -> anyhow::Result<RouteLookup> {
    let mut question = format!("ip route get {dst} from {src}");
    if let Some(dev) = iif {
        question += &format!(" iif {dev}");
    }
    let iif = iif.map(str::to_string);
    let answer = netns::run_in(ns, move || lookup_here(dst, src, iif.as_deref()))?;
    Ok(match answer {
        Err(refused) => RouteLookup {
            line: format!("{question}: {refused}"),
            device: None,
            via: None,
        },
        Ok((kind, device, via)) => {
            let said = match (kind, &device) {
                (RouteType::Local, _) => format!("local {dst} dev lo"),
                (RouteType::Unicast, Some(dev)) => match via {
                    Some(gw) => format!("{dst} via {gw} dev {dev}"),
                    None => format!("{dst} dev {dev}"),
                },
                (other, _) => format!("{} {dst}", format!("{other:?}").to_lowercase()),
            };
            let device = match kind {
                RouteType::Local => Some("local".to_string()),
                RouteType::Unicast => device,
                _ => None,
            };
            RouteLookup {
                line: format!("{question}: {said}"),
                device,
                via,
            }
        }
    })
}

/// The route lookup, in the calling thread's namespace: the route's type, its output device
/// and gateway; Err with the kernel's reason when it refuses (no route, unreachable).
fn lookup_here(
    dst: IpAddr,
    src: IpAddr,
    iif: Option<&str>,
) -> Result<(RouteType, Option<String>, Option<IpAddr>), String> {
    let mut m = RouteMessage::default();
    let (family, len) = match dst {
        IpAddr::V4(_) => (AddressFamily::Inet, 32),
        IpAddr::V6(_) => (AddressFamily::Inet6, 128),
    };
    m.header.address_family = family;
    m.header.destination_prefix_length = len;
    m.header.source_prefix_length = len;
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(dst)));
    m.attributes
        .push(RouteAttribute::Source(RouteAddress::from(src)));
    if let Some(dev) = iif {
        let index = nix::net::if_::if_nametoindex(dev).map_err(|e| format!("{dev}: {e}"))?;
        m.attributes.push(RouteAttribute::Iif(index));
    }
    let reply = rawlink::request_here(RouteNetlinkMessage::GetRoute(m), false)
        .map_err(|e| format!("{:#}", e.root_cause()))?;
    let Some(RouteNetlinkMessage::NewRoute(r)) = reply else {
        return Err("the kernel gave no route".into());
    };
    let (mut device, mut via) = (None, None);
    for a in &r.attributes {
        match a {
            RouteAttribute::Oif(index) => device = index_name(*index),
            RouteAttribute::Gateway(RouteAddress::Inet(gw)) => via = Some(IpAddr::V4(*gw)),
            RouteAttribute::Gateway(RouteAddress::Inet6(gw)) => via = Some(IpAddr::V6(*gw)),
            _ => {}
        }
    }
    Ok((r.header.kind, device, via))
}

/// Whether link `device` of namespace `ns` passes traffic: its operational state is UP (one
/// set down is DOWN, one whose veth peer is down LOWERLAYERDOWN). A missing one passes nothing.
pub fn link_passes(ns: &str, device: &str) -> anyhow::Result<bool> {
    use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage, State};
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(device.to_string()));
    let reply = netns::run_in(ns, move || {
        rawlink::request_here(RouteNetlinkMessage::GetLink(m), false)
    })?;
    match reply {
        Ok(Some(RouteNetlinkMessage::NewLink(link))) => Ok(link
            .attributes
            .iter()
            .any(|a| matches!(a, LinkAttribute::OperState(State::Up)))),
        Ok(_) => Ok(false),
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .and_then(|e| e.raw_os_error())
                == Some(libc::ENODEV) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.context(format!("{ns}: cannot read link {device}"))),
    }
}

/// The name of link `index` in the calling thread's namespace.
fn index_name(index: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires.
    let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr().cast()) };
    if name.is_null() {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// One probe from namespace `ns`: what was sent, and what came of it (`answered`,
/// `refused`, `no answer`, `sent`).
pub fn ping(ns: &str, dst: IpAddr) -> anyhow::Result<(String, String)> {
    let args = ["-c", "1", "-W", "1", &dst.to_string()].map(String::from);
    let (ok, _) = output(ns, "ping", &args)?;
    let said = if ok { "answered" } else { "no answer" };
    Ok((format!("ping {}", args.join(" ")), said.into()))
}

pub fn tcp_connect(ns: &str, to: SocketAddr) -> anyhow::Result<(String, String)> {
    let result = netns::run_in(ns, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(1))
    })?;
    let said = match result {
        Ok(_) => "answered",
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused",
        Err(_) => "no answer",
    };
    Ok((format!("tcp connect {to}"), said.into()))
}

pub fn udp_send(ns: &str, to: SocketAddr) -> anyhow::Result<(String, String)> {
    netns::run_in(ns, move || {
        UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"qrouter trace", to))
    })??;
    Ok((format!("udp datagram to {to}"), "sent".into()))
}

/// The conntrack entries from `src` to `dst` in namespace `ns`, one line each as `conntrack
/// -L` prints them (none where conntrack is not installed).
pub fn conntrack_entries(ns: &str, src: IpAddr, dst: IpAddr) -> Vec<String> {
    if find_program("conntrack").is_none() {
        return vec![];
    }
    // conntrack lists IPv4 entries unless told the family.
    let family = if src.is_ipv6() { "ipv6" } else { "ipv4" };
    let args = [
        "-L",
        "-f",
        family,
        "-s",
        &src.to_string(),
        "-d",
        &dst.to_string(),
    ]
    .map(String::from);
    output(ns, "conntrack", &args)
        .map(|(_, out)| out.lines().map(|l| l.trim().to_string()).collect())
        .unwrap_or_default()
}

/// Run `program` in namespace `ns` (its own process group: a Ctrl-C at the terminal waits
/// for the trace to clean up): whether it succeeded, and its output.
fn output(ns: &str, program: &str, args: &[String]) -> anyhow::Result<(bool, String)> {
    let path = find_program(program).unwrap_or_else(|| program.into());
    let mut cmd = Command::new(path);
    cmd.args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let out = netns::spawn_in(ns, cmd)?.wait_with_output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// `xtables-monitor --trace` in a namespace, until `finish` (or drop) stops it.
pub struct TraceMonitor(Child);

impl TraceMonitor {
    pub fn start(ns: &str) -> anyhow::Result<TraceMonitor> {
        let program = find_program("xtables-monitor")
            .context("xtables-monitor not found in PATH: install the Debian package 'iptables'")?;
        let mut cmd = Command::new(program);
        cmd.arg("--trace")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        Ok(TraceMonitor(netns::spawn_in(ns, cmd)?))
    }

    /// Stop it; what it printed.
    pub fn finish(mut self) -> String {
        let _ = self.0.kill();
        let mut text = String::new();
        if let Some(mut out) = self.0.stdout.take() {
            let _ = out.read_to_string(&mut text);
        }
        let _ = self.0.wait();
        text
    }
}

impl Drop for TraceMonitor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
