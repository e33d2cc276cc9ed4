//! One rtnetlink request on a socket of its own, in the namespace of the calling thread:
//! for a thread that entered a namespace (`netns::run_in`) without the async connection a
//! `Kernel` keeps per namespace.

use anyhow::Context;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket};

/// Send `msg` and read the answer: the kernel's message (a `Get…` request's), None for an
/// acknowledgement (`ack`: a request that changes something), or the kernel's error.
pub fn request_here(
    msg: RouteNetlinkMessage,
    ack: bool,
) -> anyhow::Result<Option<RouteNetlinkMessage>> {
    let mut msg = NetlinkMessage::from(msg);
    msg.header.flags = NLM_F_REQUEST | if ack { NLM_F_ACK } else { 0 };
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    let socket = Socket::new(NETLINK_ROUTE).context("netlink: no socket")?;
    socket.send(&buf, 0).context("netlink: cannot send")?;
    let mut reply = Vec::with_capacity(8192);
    socket.recv(&mut reply, 0).context("netlink: no answer")?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply)
        .context("netlink: an answer that does not parse")?;
    match reply.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => Err(e.to_io().into()),
        NetlinkPayload::InnerMessage(m) => Ok(Some(m)),
        _ => Ok(None),
    }
}
