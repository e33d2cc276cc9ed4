//! `qrouter topology`: Horizon's Network Topology for a terminal.

use super::Ctx;

#[derive(clap::Args)]
pub struct Args {
    /// Only this network and what is attached to it.
    #[arg(long, value_name = "NET")]
    pub network: Option<String>,
    /// Only this router, its networks and what is on them.
    #[arg(long, value_name = "ROUTER")]
    pub router: Option<String>,
}

pub async fn run(_ctx: &mut Ctx, _args: Args) -> anyhow::Result<i32> {
    Ok(0)
}
