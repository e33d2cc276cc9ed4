//! `qrouter topology`: Horizon's Network Topology for a terminal, from the store, with what
//! the kernel lacks marked.

use super::Ctx;
use crate::bail_invalid;
use crate::ops::topology::{self, Drift, Filter};
use crate::output::Format;

#[derive(clap::Args)]
pub struct Args {
    /// Only this network and what is attached to it.
    #[arg(long, value_name = "NET", conflicts_with = "router")]
    pub network: Option<String>,
    /// Only this router, its networks and what is on them.
    #[arg(long, value_name = "ROUTER")]
    pub router: Option<String>,
}

pub async fn run(ctx: &mut Ctx, args: Args) -> anyhow::Result<i32> {
    let state = ctx.session.load()?;
    let filter = Filter {
        network: args
            .network
            .as_deref()
            .map(|n| state.network(n).map(|n| n.id.clone()))
            .transpose()?,
        router: args
            .router
            .as_deref()
            .map(|r| state.router(r).map(|r| r.id.clone()))
            .transpose()?,
    };
    let wanted = topology::build(&state, &filter, &Drift::default());
    let drift = ctx.session.topology_drift(&wanted).await?;
    let t = topology::build(&state, &filter, &drift);
    let text = match ctx.out.format {
        Format::Table | Format::Text => {
            let unicode = topology::utf8_locale(|k| std::env::var(k).ok());
            topology::text(&t, unicode)
        }
        Format::Dot => topology::dot(&t),
        Format::Svg => topology::svg(&t),
        Format::Json => serde_json::to_string_pretty(&t)? + "\n",
        _ => bail_invalid!("topology draws -f text (the default), dot, svg or json"),
    };
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(0)
}
