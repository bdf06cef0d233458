//! `vnode dev`: the offline sandbox in one process.
//!
//! Today it starts the embedded API server and the ECI emulator; the vnode daemon is not
//! wired in yet, so no virtual node registers. It writes `DIR/kubeconfig`
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
    /// Address of the ECI emulator (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9080")]
    pub eci_listen: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    let listener = tokio::net::TcpListener::bind(&args.apiserver_listen)
        .await
        .with_context(|| format!("binding the API server to {}", args.apiserver_listen))?;
    let apiserver = ApiServer::bind(listener, ApiServerConfig::new(&dir))
        .context("preparing the API server")?;
    let url = apiserver.url().to_string();
    let kubeconfig = apiserver.kubeconfig_path();

    let eci_listener = tokio::net::TcpListener::bind(&args.eci_listen)
        .await
        .with_context(|| format!("binding the ECI emulator to {}", args.eci_listen))?;
    let eci_url = format!("http://{}", eci_listener.local_addr()?);

    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    let mut apiserver_task =
        tokio::spawn(async move { apiserver.run(stop.cancelled_owned()).await });
    let stop = shutdown.clone();
    let mut eci_task = tokio::spawn(async move {
        vnode_eci_emulator::serve(
            eci_listener,
            vnode_eci_emulator::EmulatorConfig::default(),
            stop.cancelled_owned(),
        )
        .await
    });

    println!("apiserver listening on {url}");
    println!("eci-emulator listening on {eci_url}");
    println!();
    println!("vnode dev is running (Ctrl-C stops it). Started:");
    println!(
        "  API server    {url}   (cluster state in memory; CA, token and kubeconfig in {})",
        dir.display()
    );
    println!(
        "  ECI emulator  {eci_url}   (access key {} / {})",
        vnode_eci_emulator::DEFAULT_ACCESS_KEY_ID,
        vnode_eci_emulator::DEFAULT_ACCESS_KEY_SECRET
    );
    println!(
        "Not started yet: the vnode daemon, so no virtual node registers and pods stay Pending."
    );
    println!();
    println!("Next:");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get nodes");

    let failure = tokio::select! {
        () = crate::cmd::shutdown_signal() => None,
        joined = &mut apiserver_task => Some(match joined {
            Ok(Ok(())) => anyhow::anyhow!("the API server stopped unexpectedly"),
            Ok(Err(e)) => anyhow::Error::new(e).context("API server"),
            Err(e) => anyhow::Error::new(e).context("API server task"),
        }),
        joined = &mut eci_task => Some(match joined {
            Ok(Ok(())) => anyhow::anyhow!("the ECI emulator stopped unexpectedly"),
            Ok(Err(e)) => anyhow::Error::new(e).context("ECI emulator"),
            Err(e) => anyhow::Error::new(e).context("ECI emulator task"),
        }),
    };
    tracing::info!("stopping");
    shutdown.cancel();
    let grace = std::time::Duration::from_secs(10);
    // Wait for whatever is still running; a finished task's handle is not polled again.
    if !apiserver_task.is_finished() {
        match tokio::time::timeout(grace, &mut apiserver_task).await {
            Ok(joined) => joined.context("API server task")?.context("API server")?,
            Err(_) => anyhow::bail!("the API server did not stop within 10 s"),
        }
    }
    if !eci_task.is_finished() {
        match tokio::time::timeout(grace, &mut eci_task).await {
            Ok(joined) => joined
                .context("ECI emulator task")?
                .context("ECI emulator")?,
            Err(_) => anyhow::bail!("the ECI emulator did not stop within 10 s"),
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
