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
    /// Chaos switch for tests: end every watch after a random time up to DURATION (e.g.
    /// `2s`, `500ms`), the way watch timeouts, server restarts and load balancers end them:
    /// a third end cleanly, a third have their stream reset, a third lose their TCP
    /// connection (RST).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, env = "VNODE_APISERVER_DROP_WATCHES_EVERY")]
    pub drop_watches_every: Option<Duration>,
}

/// Parses a human duration (`2s`, `500ms`, `1m30s`) into a positive `Duration`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 2s or 500ms: {e}"))?;
    let d = Duration::try_from(d).map_err(|_| format!("{s:?} must not be negative"))?;
    if d.is_zero() {
        return Err(format!("{s:?} must be longer than zero"));
    }
    Ok(d)
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
        c.drop_watches_every = self.drop_watches_every;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_humantime() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-2s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
