//! `slokit sched`: not built yet; see the open issue for this capability.

/// Arguments of `slokit sched`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`slokit sched` is not built yet")
}
