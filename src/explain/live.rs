//! The live trace: the static hops checked against the kernel.

use serde::Serialize;

use super::trace::{Request, Trace};
use crate::kernel::Kernel;
use crate::model::State;

#[derive(Serialize)]
pub struct Live {
    pub agrees: bool,
}

pub async fn check(
    _k: &mut Kernel,
    _s: &State,
    _r: &Request<'_>,
    _t: &Trace,
) -> anyhow::Result<Live> {
    Ok(Live { agrees: true })
}

impl crate::cli::TraceRender for Live {
    fn text(&self) -> String {
        String::new()
    }
}
