//! `vnode eci-emulator`: the ECI OpenAPI emulator as a standalone server.

use std::path::PathBuf;

use anyhow::Context as _;
use vnode_eci_emulator::{
    DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, EmulatorConfig, Profile,
};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Access key id the emulator accepts.
    #[arg(long, env = "ECI_ACCESS_KEY", default_value = DEFAULT_ACCESS_KEY_ID)]
    pub access_key_id: String,
    /// Access key secret the emulator accepts.
    #[arg(long, env = "ECI_SECRET_KEY", default_value = DEFAULT_ACCESS_KEY_SECRET, hide_env_values = true)]
    pub access_key_secret: String,
    /// Behaviour profile (YAML; see host/vnode-eci-emulator/PROFILE.md).
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Persist container groups in this file across restarts.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Lift the per-minute API quotas.
    #[arg(long)]
    pub no_quotas: bool,
    /// Record calls by action and outcome and each group's life (created, running,
    /// deleted), served as JSON at `/_emulator/stats` (for `vnode bench pods`).
    #[arg(long)]
    pub record_calls: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let profile = match &args.profile {
        Some(path) => Profile::from_file(path)
            .with_context(|| format!("loading profile {}", path.display()))?,
        None => Profile::default(),
    };
    let config = EmulatorConfig {
        access_key_id: args.access_key_id,
        access_key_secret: args.access_key_secret,
        quotas_enabled: !args.no_quotas,
        profile,
        state_file: args.state,
        record_calls: args.record_calls,
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Register for SIGTERM before announcing readiness, so a SIGTERM sent right after the
    // ready line still stops the server cleanly instead of killing the process.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            () = super::shutdown_signal() => {}
            _ = term.recv() => {}
        }
    };
    println!("eci-emulator listening on http://{addr}");
    vnode_eci_emulator::serve(listener, config, shutdown).await?;
    tracing::info!("eci-emulator stopped");
    Ok(())
}
