//! Placeholder until its issue lands: the subcommand exists so the CLI shape is fixed.

#[derive(clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("this subcommand is not implemented yet")
}
