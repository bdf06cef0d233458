//! `vnode apiserver`: the embedded Kubernetes API server on its own.
//!
//! It writes `DIR/kubeconfig` (plus the CA, certificates and token it reuses on the next
//! start) and then prints `apiserver listening on https://ADDR`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use vnode_apiserver::{ApiServer, ApiServerConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:6443", env = "VNODE_APISERVER_LISTEN")]
    pub listen: String,
    /// Directory for the CA, certificates, token and kubeconfig (created if missing).
    #[arg(long, default_value = ".vnode-apiserver", env = "VNODE_APISERVER_DIR")]
    pub dir: PathBuf,
    /// How many changes the watch window keeps (older watch resumptions get 410 Gone).
    #[arg(long, default_value_t = 10_000)]
    pub watch_window: usize,
    /// Seconds between watch bookmarks for clients that ask for them.
    #[arg(long, default_value_t = 5)]
    pub bookmark_interval_secs: u64,
    /// Do not run the built-in scheduler (pods stay unbound unless bound via pods/binding).
    #[arg(long)]
    pub no_scheduler: bool,
    /// Extra DNS names or IPs for the serving certificate.
    #[arg(long = "san")]
    pub extra_sans: Vec<String>,
    /// Append one JSON line per request to FILE (user, groups, verb, apiGroup, resource,
    /// subresource, namespace, name, code): shows exactly what a client did, e.g. to check
    /// a ClusterRole against what the daemon really uses.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
}

impl Args {
    /// The library configuration these flags describe.
    pub fn config(&self) -> ApiServerConfig {
        let mut c = ApiServerConfig::new(&self.dir);
        c.watch_window = self.watch_window;
        c.bookmark_interval = Duration::from_secs(self.bookmark_interval_secs.max(1));
        c.scheduler = !self.no_scheduler;
        c.extra_sans = self.extra_sans.clone();
        c.audit_log = self.audit_log.clone();
        c
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let server = ApiServer::bind(listener, args.config()).context("preparing the API server")?;
    println!("apiserver listening on {}", server.url());
    tracing::info!(kubeconfig = %server.kubeconfig_path().display(), "kubeconfig written");
    server
        .run(crate::cmd::shutdown_signal())
        .await
        .context("API server")?;
    Ok(())
}
