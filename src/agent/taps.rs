//! Workload taps as they appear. A VM or container plugged into a port made with `port
//! create --host` brings its own tap (libvirt, a container runtime), any time after the port
//! was made; the agent plugs it into its network's bridge when the kernel announces it, as
//! Neutron's linuxbridge agent does on its next poll of the host's taps.

use std::sync::mpsc;

use futures::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{AsyncSocket, SocketAddr};

/// Listen to the host's link events, on a thread of its own (the agent's loop blocks between
/// passes), and hand `appeared` the name of each `tap…` device that appears, or is set, on
/// no bridge, until it returns false. Devices qrouter makes are announced too: the receiver
/// ignores what is no workload's.
pub fn watch(appeared: impl Fn(String) -> bool + Send + 'static) -> anyhow::Result<()> {
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
                let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) =
                    message.payload
                else {
                    continue;
                };
                let mut name = None;
                let mut on_a_bridge = false;
                for attribute in &link.attributes {
                    match attribute {
                        LinkAttribute::IfName(n) => name = Some(n),
                        LinkAttribute::Controller(_) => on_a_bridge = true,
                        _ => {}
                    }
                }
                let Some(name) = name.filter(|n| n.starts_with("tap")) else {
                    continue;
                };
                if !on_a_bridge && !appeared(name.clone()) {
                    return;
                }
            }
        });
    });
    started
        .recv()
        .map_err(|_| anyhow::anyhow!("host: the link events' thread ended"))?
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
