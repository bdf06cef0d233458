//! Placeholder until its issue lands.

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("this benchmark is not implemented yet")
}
