//! Links: bridges, veth pairs with one end in another namespace, state and deletion.

use std::os::fd::{AsRawFd, RawFd};

use anyhow::Context;
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoVeth, LinkAttribute, LinkExtentMask,
    LinkFlags, LinkInfo, LinkMessage, State,
};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth};

use super::{announcer, sysctl};

#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: String,
    pub up: bool,
    pub oper_state: String,
    pub controller: Option<u32>,
    pub mtu: u32,
    /// The interface alias: qrouter's mark on what it made (see `naming::mark`).
    pub alias: Option<String>,
    /// What the kernel says it is: "bridge", "veth", "loopback", ...
    pub kind: String,
    /// A veth whose other end is in another namespace: where that end is.
    pub peer: Option<Peer>,
}

/// The other end of a veth, in another namespace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peer {
    /// The id this namespace gives the other end's namespace (IFLA_LINK_NETNSID): negative
    /// when it has none, as for a namespace being destroyed.
    pub netnsid: i32,
    /// The other end's index in its namespace (IFLA_LINK).
    pub index: u32,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Link {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            mac: String::new(),
            up: msg.header.flags.contains(LinkFlags::Up),
            oper_state: String::new(),
            controller: None,
            mtu: 0,
            alias: None,
            kind: kind(msg),
            peer: None,
        };
        let (mut netnsid, mut peer_index) = (None, None);
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::LinkNetNsId(id) => netnsid = Some(*id),
                LinkAttribute::Link(index) => peer_index = Some(*index),
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Address(a) => link.mac = format_mac(a),
                LinkAttribute::Controller(c) => link.controller = Some(*c),
                LinkAttribute::Mtu(m) => link.mtu = *m,
                LinkAttribute::IfAlias(a) => link.alias = Some(a.clone()),
                LinkAttribute::OperState(s) => link.oper_state = oper_state(s).to_string(),
                _ => {}
            }
        }
        if let (Some(netnsid), Some(index)) = (netnsid, peer_index) {
            link.peer = Some(Peer { netnsid, index });
        }
        link
    }
}

fn oper_state(s: &State) -> &'static str {
    match s {
        State::Up => "UP",
        State::Down => "DOWN",
        State::LowerLayerDown => "LOWERLAYERDOWN",
        State::Dormant => "DORMANT",
        State::NotPresent => "NOTPRESENT",
        State::Testing => "TESTING",
        _ => "UNKNOWN",
    }
}

fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(mac: &str) -> anyhow::Result<Vec<u8>> {
    mac.split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<Vec<u8>, _>>()
        .ok()
        .filter(|b| b.len() == 6)
        .with_context(|| format!("'{mac}' is not a MAC address"))
}

/// Every link of the namespace behind `h`, each kept as the few fields qrouter reads, and
/// asked for without the statistics it never reads.
pub async fn list(h: &Handle) -> anyhow::Result<Vec<Link>> {
    let mut req = h.link().get();
    req.message_mut()
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    req.execute()
        .map_ok(|m| Link::from_message(&m))
        .try_collect()
        .await
        .context("netlink: cannot list links")
}

/// Names of the links of qrouter's own namespace, the host's: one line each from
/// /proc/self/net/dev, not a parsed netlink dump (kilobytes per link on a host with
/// thousands). /proc/self/net follows the main thread's namespace, which is the host's.
pub fn host_names() -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string("/proc/self/net/dev").context("cannot read /proc/self/net/dev")?;
    Ok(parse_net_dev(&text))
}

fn parse_net_dev(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect()
}

/// One link by name: a single request, not a dump of every link (hosts have thousands).
pub async fn get(h: &Handle, name: &str) -> anyhow::Result<Option<Link>> {
    Ok(get_with_kind(h, name).await?.map(|(link, _)| link))
}

/// Whether `link` is a veth whose other end's namespace is being destroyed: the kernel
/// tears a deleted namespace down lazily, and until it has, the host end lingers and holds
/// its name. The other end is looked up through the id this namespace gives its namespace
/// (IFLA_TARGET_NETNSID); the kernel refuses the id of a namespace nothing holds any more
/// (EINVAL, seen here right after `ip netns del`), and a namespace already unhashed has none.
pub async fn peer_namespace_gone(h: &Handle, link: &Link) -> anyhow::Result<bool> {
    let Some(peer) = link.peer else {
        return Ok(false);
    };
    if peer.netnsid < 0 {
        return Ok(true);
    }
    let mut req = h.link().get().match_index(peer.index);
    req.message_mut()
        .attributes
        .push(LinkAttribute::IfNetnsId(peer.netnsid));
    match req.execute().try_next().await {
        Ok(_) => Ok(false),
        Err(rtnetlink::Error::NetlinkError(e))
            if [-libc::EINVAL, -libc::ENODEV].contains(&e.raw_code()) =>
        {
            Ok(true)
        }
        Err(e) => {
            Err(e).with_context(|| format!("netlink: cannot look up the peer of {}", link.name))
        }
    }
}

/// Wait until the kernel has removed link `name` of the calling thread's namespace, told by
/// its link events (subscribed before looking, so a removal in between is not missed), for
/// at most `within`.
pub async fn await_removal(name: &str, within: std::time::Duration) -> anyhow::Result<()> {
    use futures::StreamExt;
    use rtnetlink::packet_core::NetlinkPayload;
    use rtnetlink::packet_route::RouteNetlinkMessage;
    let (conn, h, mut events) =
        rtnetlink::new_multicast_connection(&[rtnetlink::MulticastGroup::Link])
            .with_context(|| format!("link {name}: cannot listen to link events"))?;
    let driver = tokio::spawn(conn);
    let removed = async {
        if get(&h, name).await?.is_none() {
            return Ok(());
        }
        while let Some((message, _)) = events.next().await {
            if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) = message.payload {
                if Link::from_message(&m).name == name {
                    return Ok(());
                }
            }
        }
        anyhow::bail!("link {name}: the link events ended")
    };
    let waited = tokio::time::timeout(within, removed).await;
    driver.abort();
    waited.unwrap_or_else(|_| {
        anyhow::bail!(
            "link {name}: the kernel has not removed it after {} s",
            within.as_secs()
        )
    })
}

/// One link by name with its kind, as `ip -d link` names it: IFLA_INFO_KIND ("bridge",
/// "veth", "macvlan", ...), "loopback" for lo, "device" for a link without one (a NIC).
pub async fn get_with_kind(h: &Handle, name: &str) -> anyhow::Result<Option<(Link, String)>> {
    let found = h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await;
    match found {
        Ok(msg) => Ok(msg.map(|m| (Link::from_message(&m), kind(&m)))),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e).with_context(|| format!("netlink: cannot look up link {name}")),
    }
}

/// One link by index (a controller's, say).
pub async fn get_by_index(h: &Handle, index: u32) -> anyhow::Result<Option<Link>> {
    let found = h.link().get().match_index(index).execute().try_next().await;
    match found {
        Ok(msg) => Ok(msg.as_ref().map(Link::from_message)),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e).with_context(|| format!("netlink: cannot look up link {index}")),
    }
}

fn kind(msg: &LinkMessage) -> String {
    let info_kind = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k.to_string()),
            _ => None,
        }),
        _ => None,
    });
    match info_kind {
        Some(k) => k,
        None if msg.header.flags.contains(LinkFlags::Loopback) => "loopback".into(),
        None => "device".into(),
    }
}

/// IPv6 off on qrouter's host-side links (its routers are IPv4; tenants' IPv6 is bridged
/// all the same). With it on, each link adds a multicast route to the host's IPv6 table,
/// which the kernel walks whole on every link change: a cost per change that grew with the
/// number of routers. Bridges would also send router solicitations.
fn no_ipv6(name: &str) -> anyhow::Result<()> {
    match sysctl::host_ipv6_set(name, "disable_ipv6", "1") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()), // IPv6 is not built in
        done => done.with_context(|| format!("link {name}: cannot turn IPv6 off")),
    }
}

/// A bridge without multicast snooping: nothing on qrouter's segments answers IGMP queries,
/// so snooping would only make the bridge itself join the all-snoopers group and send its own
/// membership reports, each routed by the host (which, with no IPv4 address of its own, looks
/// through every one of its links for a source address).
pub async fn add_bridge(
    h: &Handle,
    name: &str,
    mtu: Option<u32>,
    mark: &str,
) -> anyhow::Result<()> {
    let mut msg = LinkBridge::new(name).mcast_snooping(false);
    if let Some(mtu) = mtu {
        msg = msg.mtu(mtu);
    }
    h.link()
        .add(msg.build())
        .execute()
        .await
        .with_context(|| format!("bridge {name}: cannot create it"))?;
    // Only an existing link has these: set them before the bridge comes up.
    set_alias(h, name, mark).await?;
    no_ipv6(name)?;
    h.link()
        .set(LinkUnspec::new_with_name(name).up().build())
        .execute()
        .await
        .with_context(|| format!("bridge {name}: cannot set it up"))
}

/// The veth of one port, created in one request: `tap` on the host, enslaved to the bridge
/// and up; its peer already named and with its MAC inside the namespace behind `ns`.
pub struct Veth<'a> {
    pub tap: &'a str,
    pub bridge_index: u32,
    pub peer: &'a str,
    pub peer_mac: &'a str,
    pub mtu: Option<u32>,
    /// qrouter's mark, put on the host end.
    pub mark: &'a str,
}

pub async fn add_veth(h: &Handle, veth: &Veth<'_>, ns: &impl AsRawFd) -> anyhow::Result<()> {
    let fd: RawFd = ns.as_raw_fd();
    let mut peer = LinkUnspec::new_with_name(veth.peer)
        .setns_by_fd(fd)
        .address(parse_mac(veth.peer_mac)?);
    let mut msg = LinkVeth::new(veth.tap, veth.peer)
        .controller(veth.bridge_index)
        .up();
    if let Some(mtu) = veth.mtu {
        peer = peer.mtu(mtu);
        msg = msg.mtu(mtu);
    }
    let msg = msg
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
        .build();
    h.link()
        .add(msg)
        .execute()
        .await
        .with_context(|| format!("veth {}/{}: cannot create it", veth.tap, veth.peer))?;
    set_alias(h, veth.tap, veth.mark).await?;
    // Its peer is still down, so the tap has no carrier and IPv6 has not started on it.
    no_ipv6(veth.tap)
}

/// No IPv6 link-local address on `link` when it comes up (addr_gen_mode none). The kernel
/// takes the setting only from an existing link, not in the request that makes it.
pub async fn no_link_local(h: &Handle, link: &Link) -> anyhow::Result<()> {
    let none = AfSpecInet6::AddrGenMode(In6AddrGenMode::None);
    let msg = LinkUnspec::new_with_index(link.index).append_extra_attribute(
        LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![none])]),
    );
    h.link()
        .set(msg.build())
        .execute()
        .await
        .with_context(|| format!("link {}: cannot turn IPv6 link-local off", link.name))
}

/// Put qrouter's mark on a link (the kernel ignores an alias in the request that makes one).
pub async fn set_alias(h: &Handle, name: &str, alias: &str) -> anyhow::Result<()> {
    h.link()
        .set(LinkUnspec::new_with_name(name).alias(alias).build())
        .execute()
        .await
        .with_context(|| format!("link {name}: cannot mark it as qrouter's"))
}

pub async fn set_up(h: &Handle, index: u32) -> anyhow::Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .context("netlink: cannot set link up")
}

pub async fn set_down(h: &Handle, index: u32) -> anyhow::Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).down().build())
        .execute()
        .await
        .context("netlink: cannot set link down")
}

pub async fn set_controller(h: &Handle, index: u32, controller: u32) -> anyhow::Result<()> {
    let msg = LinkUnspec::new_with_index(index)
        .controller(controller)
        .build();
    let Err(e) = h.link().set(msg).execute().await else {
        return Ok(());
    };
    // Named only on failure: the caller has indices, the operator wants names.
    let name = |index: u32| async move {
        match get_by_index(h, index).await {
            Ok(Some(l)) => l.name,
            _ => format!("with index {index}"),
        }
    };
    let (link, bridge) = (name(index).await, name(controller).await);
    Err(e).with_context(|| format!("link {link}: cannot enslave it to {bridge}"))
}

/// Take a device off its bridge and set it down in one request: what Neutron's agent does
/// to the device of a deleted port, which belongs to the software that made it.
pub async fn unplug(h: &Handle, index: u32) -> anyhow::Result<()> {
    h.link()
        .set(
            LinkUnspec::new_with_index(index)
                .nocontroller()
                .down()
                .build(),
        )
        .execute()
        .await
        .context("netlink: cannot take the link off its bridge and set it down")
}

/// The device group qrouter puts links in just before deleting them together.
const DOOMED_GROUP: u32 = 0x7172_6f75;

/// Delete `links` of namespace `ns` (None: this process's own), which `h` talks to, without
/// waiting here for the grace period: the kernel unlists a device at once, then the call
/// that deleted it waits (`rcu_barrier` in `netdev_run_todo`, 15-35 ms here). The group's
/// deletion is sent by the announcer, and this returns once the kernel lists none of
/// `links` (a veth's peer goes in the same step), 1-3 ms later here. An announcer that
/// cannot take it, or has not done it within `HANDED_WAIT` (another deletion's grace period
/// before it), leaves it to be done here.
pub async fn delete_soon(h: &Handle, ns: Option<&str>, links: &[Link]) -> anyhow::Result<()> {
    if !mark_doomed(h, links.iter()).await? {
        return Ok(());
    }
    match hand_over_doomed(ns) {
        Ok(()) if unlisted(h, links, HANDED_WAIT).await? => return Ok(()),
        Ok(()) => log::debug!("the announcer has not deleted {} links yet", links.len()),
        Err(e) => log::debug!("{e:#}"),
    }
    delete_doomed(h).await
}

/// How long a deletion handed to the announcer is awaited before it is done here.
const HANDED_WAIT: std::time::Duration = std::time::Duration::from_millis(300);

/// Put `links` in the doomed group; false if none is left to delete.
async fn mark_doomed(h: &Handle, links: impl Iterator<Item = &Link>) -> anyhow::Result<bool> {
    let mut any = false;
    for l in links {
        let msg = LinkUnspec::new_with_index(l.index)
            .link_group(DOOMED_GROUP)
            .build();
        match h.link().set(msg).execute().await {
            Ok(()) => any = true,
            // Gone meanwhile: a namespace's teardown takes its veths' peers with it a moment
            // later (the kernel cleans namespaces up asynchronously).
            Err(e) if is_no_device(&e) => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("link {}: cannot mark it for deletion", l.name))
            }
        }
    }
    Ok(any)
}

/// The request that deletes the doomed group.
fn doomed_request() -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::Group(DOOMED_GROUP));
    msg
}

/// Delete the doomed group in one kernel operation: each unregistration waits for an RCU
/// grace period (about 20 ms here), and a group is unregistered under one.
async fn delete_doomed(h: &Handle) -> anyhow::Result<()> {
    match h.link().del_with_message(doomed_request()).execute().await {
        Err(e) if is_no_device(&e) => Ok(()),
        done => done.context("netlink: cannot delete links"),
    }
}

/// Have the announcer delete the doomed group of namespace `ns` (None: its own).
fn hand_over_doomed(ns: Option<&str>) -> anyhow::Result<()> {
    use rtnetlink::packet_core::{NetlinkMessage, NLM_F_REQUEST};
    use rtnetlink::packet_route::RouteNetlinkMessage;
    let mut r = announcer::Request::EMPTY;
    if let Some(ns) = ns {
        r.path = announcer::path_of(ns)?;
    }
    let mut msg = NetlinkMessage::from(RouteNetlinkMessage::DelLink(doomed_request()));
    msg.header.flags = NLM_F_REQUEST;
    msg.finalize();
    let len = msg.buffer_len();
    anyhow::ensure!(len <= r.bytes.len(), "a deletion of {len} bytes");
    msg.serialize(&mut r.bytes[..len]);
    r.len = len as u32;
    announcer::request(&r)
}

/// Whether the kernel stops listing every one of `links` within `within`.
async fn unlisted(h: &Handle, links: &[Link], within: std::time::Duration) -> anyhow::Result<bool> {
    let start = std::time::Instant::now();
    let mut left: Vec<&Link> = links.iter().collect();
    while let Some(l) = left.last() {
        if get_by_index(h, l.index).await?.is_none() {
            left.pop();
        } else if start.elapsed() > within {
            return Ok(false);
        } else {
            // Not the runtime's timer, which counts whole milliseconds: the wait is about one.
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
    Ok(true)
}

fn is_no_device(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::ENODEV)
}

/// Delete one link; one already gone (a veth's peer goes with it) is not an error.
pub async fn delete(h: &Handle, link: &Link) -> anyhow::Result<()> {
    match h.link().del(link.index).execute().await {
        Err(e) if is_no_device(&e) => Ok(()),
        done => done.with_context(|| format!("link {}: cannot delete it", link.name)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn net_dev_lists_names() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n    lo:    3293 31 0\n\
                    tapb8b32a88-03: 0 0 0\n  br-ex: 10 1 0\n";
        assert_eq!(
            super::parse_net_dev(text),
            ["lo", "tapb8b32a88-03", "br-ex"]
        );
    }
}
