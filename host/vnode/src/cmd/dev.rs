//! `vnode dev`: the offline sandbox in one process.
//!
//! Starts the embedded API server, the ECI emulator and the vnode daemon (the same
//! `vnode_daemon::daemon::run` as `vnode run`), wired to each other:
//!
//! * the daemon talks to the API server through `DIR/kubeconfig` (passed explicitly, the
//!   process environment is not touched);
//! * its kubelet API serves a certificate issued by the API server's CA (SANs 127.0.0.1
//!   and the node name) and accepts the API server's kubelet client certificate, so
//!   `kubectl logs` and `kubectl exec` go API server → kubelet API over mutual TLS;
//! * its ECI endpoint and AccessKey are the emulator's, its region, vSwitches (one per
//!   emulated zone) and security group match the emulator's default world;
//! * the default plugins built into the binary, one replica (no leader election).
//!
//! State: `DIR` (default `.vnode-dev/`) keeps the CA, token, certificates and kubeconfig,
//! so an exported `KUBECONFIG` stays valid across restarts. Cluster objects and container
//! groups live in memory and start empty each time: keeping one without the other would
//! make the daemon's reconcile treat the survivors as orphans (or lost pods).
//!
//! Prints one `<service> listening on <url>` line per service and a `try:` hint, and stops
//! everything on Ctrl-C/SIGTERM (daemon first, so it can finish talking to the others).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use vnode_apiserver::{ApiServer, ApiServerConfig};

/// Region of the emulator's default world.
const DEV_REGION: &str = "cn-hangzhou";
/// One vSwitch per zone of the emulator's default world (`vsw-…-<letter>` lands in the
/// zone ending in that letter), each naming its zone so placement can spread over them.
const DEV_VSWITCHES: &str =
    "cn-hangzhou-h=vsw-dev-h,cn-hangzhou-i=vsw-dev-i,cn-hangzhou-k=vsw-dev-k";
/// Security group of the container groups (the emulator accepts any `sg-` ID).
const DEV_SECURITY_GROUP: &str = "sg-dev";
/// Files the daemon's kubelet API serves with, inside `DIR`.
const KUBELET_CERT: &str = "kubelet.crt";
const KUBELET_KEY: &str = "kubelet.key";

#[derive(clap::Args)]
pub struct Args {
    /// Directory for the kubeconfig, CA, certificates and token (reused across starts).
    #[arg(long, default_value = ".vnode-dev", env = "VNODE_DEV_DIR")]
    pub dir: PathBuf,
    /// Address of the API server (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub apiserver_listen: String,
    /// Address of the ECI emulator (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9080")]
    pub eci_listen: String,
    /// Address of the daemon's kubelet API (TLS; logs, exec, stats). Port 0 picks a free
    /// port, which the node then publishes.
    #[arg(long, default_value = "127.0.0.1:10250")]
    pub kubelet_listen: String,
    /// Address of the daemon's metrics and health server.
    #[arg(long, default_value = "127.0.0.1:10255")]
    pub metrics_listen: String,
    /// Name of the virtual node.
    #[arg(long, default_value = vnode_daemon::config::DEFAULT_NODE_NAME)]
    pub node_name: String,
    /// Placement plugin (`.wasm`) instead of the built-in `zone-spread`. The daemon watches
    /// the file: replace it and the new version is validated and swapped in.
    #[arg(long, value_name = "FILE", env = "VNODE_DEV_PLACEMENT")]
    pub placement: Option<PathBuf>,
    /// Configuration string for `--placement` (validated by the plugin's `init`).
    #[arg(long, requires = "placement", conflicts_with = "placement_config_file")]
    pub placement_config: Option<String>,
    /// File holding the configuration for `--placement`; editing it hot-reloads the plugin
    /// with the new configuration.
    #[arg(long, value_name = "FILE", requires = "placement")]
    pub placement_config_file: Option<PathBuf>,
    /// Chaos switch: the API server ends every watch after a random time up to DURATION
    /// (see `vnode apiserver --drop-watches-every`).
    #[arg(long, value_name = "DURATION", value_parser = crate::cmd::apiserver::parse_duration, env = "VNODE_APISERVER_DROP_WATCHES_EVERY")]
    pub drop_watches_every: Option<Duration>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    let listener = tokio::net::TcpListener::bind(&args.apiserver_listen)
        .await
        .with_context(|| format!("binding the API server to {}", args.apiserver_listen))?;
    let mut apiserver_config = ApiServerConfig::new(&dir);
    apiserver_config.drop_watches_every = args.drop_watches_every;
    let apiserver =
        ApiServer::bind(listener, apiserver_config).context("preparing the API server")?;
    let url = apiserver.url().to_string();
    let kubeconfig = apiserver.kubeconfig_path();
    let kubelet_sans = vec!["127.0.0.1".to_string(), args.node_name.clone()];
    let kubelet_cert = apiserver
        .pki()
        .issue_server_cert(&args.node_name, &kubelet_sans)
        .context("issuing the kubelet serving certificate")?;
    apiserver
        .pki()
        .write_pair(KUBELET_CERT, KUBELET_KEY, &kubelet_cert)
        .context("writing the kubelet serving certificate")?;

    let eci_listener = tokio::net::TcpListener::bind(&args.eci_listen)
        .await
        .with_context(|| format!("binding the ECI emulator to {}", args.eci_listen))?;
    let eci_url = format!("http://{}", eci_listener.local_addr()?);

    let daemon_config = daemon_config(&args, &dir, &kubeconfig, &eci_url)?;

    let shutdown = CancellationToken::new();
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

    // The daemon gets its own token: it is stopped first, while the API server still answers.
    let daemon_stop = CancellationToken::new();
    let hint_kubeconfig = kubeconfig.clone();
    let daemon = vnode_daemon::daemon::run(
        daemon_config,
        daemon_stop.clone().cancelled_owned(),
        move |listening, _handles| {
            println!("vnode listening on http://{}", listening.metrics);
            println!(
                "try: KUBECONFIG={} kubectl get nodes   (Ctrl-C stops everything)",
                hint_kubeconfig.display()
            );
        },
    );
    let mut daemon = std::pin::pin!(daemon);

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
        outcome = &mut daemon => Some(match outcome {
            Ok(()) => anyhow::anyhow!("the vnode daemon stopped unexpectedly"),
            Err(e) => anyhow::Error::new(e).context("vnode daemon"),
        }),
    };
    tracing::info!("stopping");
    let grace = Duration::from_secs(10);
    daemon_stop.cancel();
    if failure.is_none() {
        match tokio::time::timeout(grace, &mut daemon).await {
            Ok(outcome) => outcome.context("vnode daemon")?,
            Err(_) => anyhow::bail!("the vnode daemon did not stop within 10 s"),
        }
    }
    shutdown.cancel();
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

/// The daemon's configuration for the sandbox: the seed manifest's settings (as `vnode run`
/// would read them from flags, validated the same way) pointed at the emulator, plus the
/// structured settings a config file would carry.
fn daemon_config(
    args: &Args,
    dir: &Path,
    kubeconfig: &Path,
    eci_url: &str,
) -> anyhow::Result<vnode_daemon::config::Config> {
    use vnode_daemon::config::{Config, Flags, KubeletAuthorization};
    let flags = Flags {
        provider: Some(vnode_daemon::config::PROVIDER_ALIBABACLOUD.into()),
        node_name: Some(args.node_name.clone()),
        kubelet_listen: Some(args.kubelet_listen.clone()),
        pod_ip: Some("127.0.0.1".into()),
        eci_region: Some(DEV_REGION.into()),
        eci_vswitch: Some(DEV_VSWITCHES.into()),
        eci_security_group: Some(DEV_SECURITY_GROUP.into()),
        eci_access_key: Some(vnode_eci_emulator::DEFAULT_ACCESS_KEY_ID.into()),
        eci_secret_key: Some(vnode_eci_emulator::DEFAULT_ACCESS_KEY_SECRET.into()),
        eci_cluster_name: Some("vnode-dev".into()),
        eci_endpoint: Some(eci_url.into()),
        listen: Some(args.metrics_listen.clone()),
        namespace: Some("kube-system".into()),
        identity: Some("vnode-dev".into()),
        kubeconfig: Some(kubeconfig.to_path_buf()),
        ..Flags::default()
    };
    let mut config = Config::load(&flags).map_err(|e| anyhow::anyhow!("vnode dev: {e}"))?;
    config.kubelet.tls_cert_file = Some(dir.join(KUBELET_CERT));
    config.kubelet.tls_key_file = Some(dir.join(KUBELET_KEY));
    // The API server presents its kubelet client certificate, signed by this CA.
    config.kubelet.client_ca_file = Some(dir.join(vnode_apiserver::pki::files::CA_CERT));
    // Callers are authorised with SubjectAccessReview against the embedded API server, as
    // in a real cluster.
    config.kubelet.authorization = KubeletAuthorization::Webhook;
    // One replica: nobody to elect against.
    config.leader_election.enabled = false;
    if let Some(path) = &args.placement {
        let absolute =
            |p: &Path| std::path::absolute(p).with_context(|| format!("resolving {}", p.display()));
        config.plugins.placement = Some(vnode_daemon::config::PluginSpec {
            path: absolute(path)?,
            config: args
                .placement_config
                .clone()
                .map_or(serde_json::Value::Null, serde_json::Value::String),
            config_file: args
                .placement_config_file
                .as_deref()
                .map(absolute)
                .transpose()?,
            // The engine's limits (VNODE_PLUGIN_CALL_TIMEOUT_MS or 50 ms, 64 MiB).
            call_timeout_ms: None,
            memory_limit_mib: None,
        });
    }
    // Compiled plugins are kept next to the sandbox's state: a restart (or a large plugin,
    // e.g. a Python one) deserializes instead of compiling again.
    config.plugins.cache_dir = Some(dir.join("plugin-cache"));
    config.shutdown_grace = Duration::from_secs(5);
    Ok(config)
}
