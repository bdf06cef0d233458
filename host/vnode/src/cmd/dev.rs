//! `vnode dev`: the offline sandbox in one process.
//!
//! Today it starts the embedded API server only: the ECI emulator and the vnode daemon are
//! added here as their crates expose a `serve` entry point. It writes `DIR/kubeconfig`
//! (default `.vnode-dev/` in the current directory, so the CA and token survive restarts
//! and an exported `KUBECONFIG` stays valid; cluster state itself is in memory and starts
//! empty each time), prints what to run next, and stops everything on Ctrl-C/SIGTERM.

use std::path::PathBuf;

use anyhow::Context as _;
use vnode_apiserver::{ApiServer, ApiServerConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Directory for the kubeconfig, CA, certificates and token.
    #[arg(long, default_value = ".vnode-dev", env = "VNODE_DEV_DIR")]
    pub dir: PathBuf,
    /// Address of the API server (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub apiserver_listen: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir).with_context(|| format!("resolving {}", args.dir.display()))?;
    let listener = tokio::net::TcpListener::bind(&args.apiserver_listen)
        .await
        .with_context(|| format!("binding the API server to {}", args.apiserver_listen))?;
    let apiserver = ApiServer::bind(listener, ApiServerConfig::new(&dir)).context("preparing the API server")?;
    let url = apiserver.url().to_string();
    let kubeconfig = apiserver.kubeconfig_path();

    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    let mut apiserver_task = tokio::spawn(async move { apiserver.run(stop.cancelled_owned()).await });

    println!("apiserver listening on {url}");
    println!();
    println!("vnode dev is running (Ctrl-C stops it). Started:");
    println!("  API server    {url}   (cluster state in memory; CA, token and kubeconfig in {})", dir.display());
    println!("Not started yet (not part of this build): the ECI emulator and the vnode daemon,");
    println!("so no virtual node registers and pods stay Pending.");
    println!();
    println!("Next:");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get nodes");

    tokio::select! {
        () = crate::cmd::shutdown_signal() => {
            tracing::info!("stopping");
            shutdown.cancel();
            match tokio::time::timeout(std::time::Duration::from_secs(10), &mut apiserver_task).await {
                Ok(joined) => joined.context("API server task")?.context("API server")?,
                Err(_) => anyhow::bail!("the API server did not stop within 10 s"),
            }
        }
        joined = &mut apiserver_task => {
            joined.context("API server task")?.context("API server")?;
            anyhow::bail!("the API server stopped unexpectedly");
        }
    }
    Ok(())
}
