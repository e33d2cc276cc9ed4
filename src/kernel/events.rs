//! The host's link and namespace events, each on a thread of its own (the agent's loop
//! awaits other things): a `tap…` device that appears, or is set, on no bridge (a
//! workload's tap, which the agent plugs), every device that goes (a namespace deleted by
//! hand takes its veths' host ends with it, an operator deletes a bridge or a VXLAN
//! device), and every named namespace that goes (`ip netns delete`: the namespace itself
//! may live on unnamed, held by a socket or a process): the agent repairs what used it at
//! once rather than at its next full resync. One netlink socket, bound to the link group,
//! and one inotify watch of the namespaces' directory; qrouter's own changes are announced
//! too, and the receiver ignores what is not in its part.

use std::sync::mpsc;

use futures::StreamExt;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{AsyncSocket, SocketAddr};

use super::netns;

/// What happened to a link of the host.
pub enum LinkEvent {
    /// A `tap…` device appeared, or changed, on no bridge.
    TapUnplugged(String),
    /// A device was deleted.
    Gone(String),
}

/// Hand `seen` each event until it returns false.
pub fn watch_links(seen: impl Fn(LinkEvent) -> bool + Send + 'static) -> anyhow::Result<()> {
    // The socket is made on the thread whose runtime polls it.
    let (ready, started) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let runtime = match runtime {
            Ok(r) => r,
            Err(e) => return drop(ready.send(Err(anyhow::anyhow!("{e}")))),
        };
        runtime.block_on(async move {
            let mut events = match subscribe() {
                Ok(events) => events,
                Err(e) => return drop(ready.send(Err(e))),
            };
            let _ = ready.send(Ok(()));
            while let Some((message, _)) = events.next().await {
                let event = match message.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                        let (name, on_a_bridge) = described(&link);
                        match name.filter(|n| n.starts_with("tap") && !on_a_bridge) {
                            Some(name) => LinkEvent::TapUnplugged(name),
                            None => continue,
                        }
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                        match described(&link).0 {
                            Some(name) => LinkEvent::Gone(name),
                            None => continue,
                        }
                    }
                    _ => continue,
                };
                if !seen(event) {
                    return;
                }
            }
        });
    });
    started
        .recv()
        .map_err(|_| anyhow::anyhow!("host: the link events' thread ended"))?
}

/// Hand `gone` the name of each namespace deleted from the namespaces' directory, until it
/// returns false.
pub fn watch_namespaces(gone: impl Fn(String) -> bool + Send + 'static) -> anyhow::Result<()> {
    std::fs::create_dir_all(netns::NETNS_DIR)
        .map_err(|e| anyhow::anyhow!("host: cannot make {}: {e}", netns::NETNS_DIR))?;
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC)
        .map_err(|e| anyhow::anyhow!("host: cannot watch the namespaces: {e}"))?;
    let deleted = AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM;
    inotify
        .add_watch(netns::NETNS_DIR, deleted)
        .map_err(|e| anyhow::anyhow!("host: cannot watch {}: {e}", netns::NETNS_DIR))?;
    std::thread::spawn(move || loop {
        let Ok(events) = inotify.read_events() else {
            return;
        };
        for name in events
            .into_iter()
            .filter_map(|e| e.name?.into_string().ok())
        {
            if !gone(name) {
                return;
            }
        }
    });
    Ok(())
}

/// A link's name, and whether it is on a bridge.
fn described(link: &LinkMessage) -> (Option<String>, bool) {
    let mut name = None;
    let mut on_a_bridge = false;
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Controller(_) => on_a_bridge = true,
            _ => {}
        }
    }
    (name, on_a_bridge)
}

/// A netlink socket of the host's link events, its connection running on this runtime.
fn subscribe() -> anyhow::Result<
    futures::channel::mpsc::UnboundedReceiver<(
        rtnetlink::packet_core::NetlinkMessage<RouteNetlinkMessage>,
        SocketAddr,
    )>,
> {
    let (mut connection, _, events) = rtnetlink::new_connection()
        .map_err(|e| anyhow::anyhow!("host: cannot open a netlink socket for link events: {e}"))?;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, rtnetlink::constants::RTMGRP_LINK))
        .map_err(|e| anyhow::anyhow!("host: cannot listen to link events: {e}"))?;
    tokio::spawn(connection);
    Ok(events)
}
