//! `qrouter trace SRC DST`: a packet's path hop by hop, from the store (and with `--live`,
//! checked against the kernel).

use super::Ctx;
use crate::bail_invalid;
use crate::ops::trace::{self, Protocol, Request};
use crate::output::Format;

#[derive(clap::Args)]
pub struct Args {
    /// Where the packet comes from: an instance, a port or a floating IP (name or id), or an
    /// address (one on an external network stands for the outside).
    pub src: String,
    /// Where it goes: an instance, a port, a floating IP, or an address.
    pub dst: String,
    /// The packet's protocol.
    #[arg(long, value_enum, default_value = "icmp")]
    pub protocol: ProtocolArg,
    /// Destination port (tcp, udp).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// The external network an outside SRC address arrives from, where it is ambiguous.
    #[arg(long, value_name = "NET")]
    pub from_network: Option<String>,
    /// Check the path against the kernel: routes, rule counters and a real probe, traced.
    #[arg(long)]
    pub live: bool,
}

/// `--protocol`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtocolArg {
    /// An echo request, as ping sends.
    Icmp,
    /// A connection to --port.
    Tcp,
    /// A datagram to --port.
    Udp,
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Protocol {
        match p {
            ProtocolArg::Icmp => Protocol::Icmp,
            ProtocolArg::Tcp => Protocol::Tcp,
            ProtocolArg::Udp => Protocol::Udp,
        }
    }
}

pub async fn run(ctx: &mut Ctx, args: Args) -> anyhow::Result<i32> {
    if args.port.is_some() && args.protocol == ProtocolArg::Icmp {
        bail_invalid!("--port needs --protocol tcp or udp");
    }
    let state = trace::load(
        &mut ctx.session,
        &args.src,
        &args.dst,
        args.from_network.as_deref(),
    )?;
    let from = args
        .from_network
        .as_deref()
        .map(|n| state.network(n))
        .transpose()?;
    let (src, dst) = trace::same_family(
        trace::resolve(&state, "SRC", &args.src, from)?,
        trace::resolve(&state, "DST", &args.dst, None)?,
    );
    let req = Request {
        src,
        dst,
        from_network: from,
        protocol: args.protocol.into(),
        port: args.port,
    };
    let traced = trace::trace(&state, &req)?;
    if args.live {
        let live = trace::live(&req, &traced)?;
        print(ctx.out.format, &live)?;
        return Ok(i32::from(!live.agrees));
    }
    print(ctx.out.format, &traced)?;
    Ok(0)
}

fn print<T: serde::Serialize + Render>(format: Format, what: &T) -> anyhow::Result<()> {
    let text = match format {
        Format::Table | Format::Text => what.text(),
        Format::Json => serde_json::to_string_pretty(what)? + "\n",
        _ => bail_invalid!("trace prints text (the default) or -f json"),
    };
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(())
}

/// The text form of a result.
pub trait Render {
    fn text(&self) -> String;
}

impl Render for trace::Trace {
    fn text(&self) -> String {
        trace::render_text(self)
    }
}

impl Render for trace::Live {
    fn text(&self) -> String {
        trace::render_live(self)
    }
}
