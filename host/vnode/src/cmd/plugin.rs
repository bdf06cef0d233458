//! `vnode plugin …` — placeholder until the plugin runtime lands.

#[derive(clap::Subcommand)]
pub enum PluginCommand {
    /// Validate a plugin component and print what it is.
    Check {
        /// The `.wasm` component.
        file: std::path::PathBuf,
    },
}

pub async fn run(_cmd: PluginCommand) -> anyhow::Result<()> {
    anyhow::bail!("`vnode plugin` is not implemented yet")
}
