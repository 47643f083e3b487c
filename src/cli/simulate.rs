//! `slokit simulate`: not built yet; see the open issue for this capability.

/// Arguments of `slokit simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`slokit simulate` is not built yet")
}
