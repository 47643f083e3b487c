//! `slokit loadgen`: not built yet; see the open issue for this capability.

/// Arguments of `slokit loadgen`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`slokit loadgen` is not built yet")
}
