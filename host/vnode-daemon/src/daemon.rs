//! Wiring: everything the daemon runs, under one [`CancellationToken`] and one
//! [`TaskTracker`].
//!
//! Order: Kubernetes client → preflight → bind the operations and kubelet listeners → serve
//! them (both replicas serve; only the leader's address is on the Node) → leader election →
//! on winning: the node controller and the pod controller. Losing leadership stops the
//! process with an error, so it restarts as a clean standby (what controller-runtime does);
//! a second leader can never be acting at the same time.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::groups::GroupIndex;
use crate::groups::observer::{Observer, ObserverSettings};
use crate::kube_client::{self, KubeSetupError};
use crate::kubelet_api::{self, Authenticator, KubeAuthApi, TlsError};
use crate::leader::LeaderElector;
use crate::metrics::{self, Metrics, Readiness};
use crate::node::{NodeController, PluginHealth};
use crate::plugins::{Plugins, PluginsError};
use crate::pods::{self, eci_path};

/// Why the daemon stopped with an error. `Display` is one line.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Client or preflight.
    #[error(transparent)]
    Kube(#[from] KubeSetupError),
    /// A listener could not bind.
    #[error("cannot listen on {addr} for the {what}: {message}")]
    Bind {
        /// Which server.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        message: String,
    },
    /// Kubelet TLS setup.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A configured plugin (or a built-in one) could not be loaded.
    #[error(transparent)]
    Plugins(#[from] PluginsError),
    /// The ECI client could not be built from the configuration.
    #[error("ECI client (ECI_ENDPOINT / ECI_REGION): {0}")]
    Eci(String),
    /// Another replica took the leader lease.
    #[error("lost leadership of lease {0}; exiting so the replica restarts as a standby")]
    LostLeadership(String),
}

/// Addresses the daemon bound, reported once both servers accept connections.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    /// `/metrics`, `/healthz`, `/readyz`.
    pub metrics: SocketAddr,
    /// The kubelet API (TLS).
    pub kubelet: SocketAddr,
}

/// Handles other parts of the program use to talk to the running daemon.
pub struct Handles {
    /// The plugin host publishes plugin health here; the node shows it.
    pub plugin_health: watch::Sender<PluginHealth>,
}

/// Runs the daemon until `shutdown` resolves (then stops gracefully within
/// `config.shutdown_grace`) or a fatal error occurs. `on_listening` is called once both
/// servers are bound and serving.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
    on_listening: impl FnOnce(Listening, &Handles),
) -> Result<(), DaemonError> {
    let client = kube_client::client_from(config.kubeconfig.as_deref()).await?;
    kube_client::preflight(&client, &config.node.name).await?;

    let metrics = Arc::new(Metrics::new());
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();

    let ops_listener =
        metrics::bind(config.metrics_listen)
            .await
            .map_err(|e| DaemonError::Bind {
                what: "metrics server (--listen)",
                addr: config.metrics_listen,
                message: e.to_string(),
            })?;
    let kubelet_listener = tokio::net::TcpListener::bind(config.kubelet.listen)
        .await
        .map_err(|e| DaemonError::Bind {
            what: "kubelet API (KUBELET_PORT / --kubelet-listen)",
            addr: config.kubelet.listen,
            message: e.to_string(),
        })?;
    let listening = Listening {
        metrics: ops_listener.local_addr().map_err(|e| DaemonError::Bind {
            what: "metrics server",
            addr: config.metrics_listen,
            message: e.to_string(),
        })?,
        kubelet: kubelet_listener
            .local_addr()
            .map_err(|e| DaemonError::Bind {
                what: "kubelet API",
                addr: config.kubelet.listen,
                message: e.to_string(),
            })?,
    };
    let tls = kubelet_api::server_config(
        &config.kubelet,
        vec![config.node.name.clone(), config.node.pod_ip.to_string()],
    )?;

    let (health_tx, health_rx) = watch::channel(PluginHealth::default());
    let (ready_tx, ready_rx) = watch::channel(false);

    // Plugins (the shipped defaults when none is configured) and the ECI client, before
    // anything serves: a plugin that does not load stops start-up with one line.
    let plugins = Plugins::start(&config.plugins).await?;
    let eci = eci_client(&config)?;
    let index = Arc::new(GroupIndex::new());
    let pod_path = eci_path::EciPodPath::new(
        client.clone(),
        eci.clone(),
        plugins.placement.clone(),
        plugins.translator.clone(),
        index.clone(),
        metrics.clone(),
        eci_path::NodeSettings::from_config(&config),
    )
    .with_shadow(plugins.shadow.clone())
    .with_root_ca_cache(pods::root_ca::RootCaCache::spawn(
        client.clone(),
        token.child_token(),
    ));
    let (pod_ctl, pod_writer) = pods::controller(
        client.clone(),
        config.node.name.clone(),
        config.leader_election.identity.clone(),
        pod_path,
        metrics.clone(),
    );
    let auth = Authenticator::new(
        KubeAuthApi::new(client.clone()),
        config.kubelet.anonymous_auth,
        config.kubelet.authorization,
    );
    // Logs, exec and stats from ECI; pods from the controller's store. A standby serves it
    // too, but its store and index stay empty and its address is not on the Node.
    let kubelet_backend = kubelet_api::EciPodBackend::new(
        pod_ctl.store().clone(),
        index.clone(),
        Arc::new(eci.clone()),
        config.node.name.clone(),
        kubelet_api::EciBackendOptions::default(),
    );
    let kubelet_router = kubelet_api::router(
        kubelet_backend,
        auth,
        config.node.name.clone(),
        metrics.clone(),
    );
    tracker.spawn(kubelet_api::serve(
        kubelet_listener,
        tls,
        kubelet_router,
        token.child_token(),
    ));
    {
        let (metrics, ready, token) = (metrics.clone(), Readiness(ready_rx), token.child_token());
        tracker.spawn(async move {
            if let Err(e) = metrics::serve(ops_listener, metrics, ready, token).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
    }
    tracing::info!(metrics = %listening.metrics, kubelet = %listening.kubelet, node = %config.node.name, "vnode daemon serving");
    // Both replicas show their plugin health; only the leader's node controller writes it.
    tracker.spawn(plugins.forward_health(health_tx.clone(), token.child_token()));
    // The config file's `plugins` section is applied live (shadow rollout, promotion).
    if let Some(path) = &config.config_file {
        tracker.spawn(plugins.watch_config_file(
            path.clone(),
            metrics.clone(),
            token.child_token(),
        ));
    }
    let handles = Handles {
        plugin_health: health_tx,
    };
    on_listening(listening, &handles);

    // Leader election (or always-leader for a single replica).
    let (leading_tx, mut leading_rx) = watch::channel(!config.leader_election.enabled);
    if config.leader_election.enabled {
        ready_tx.send_replace(true); // a standby is ready: it serves and waits
        let elector = LeaderElector::new(client.clone(), &config.leader_election);
        tracker.spawn(elector.run(leading_tx, token.child_token()));
    }

    let mut shutdown = std::pin::pin!(shutdown);
    let became_leader = tokio::select! {
        biased;
        () = &mut shutdown => false,
        // Err: the elector dropped its sender, which it only does when it stops.
        r = leading_rx.wait_for(|l| *l) => r.is_ok(),
    };
    let mut result = Ok(());
    if became_leader {
        tracing::info!(identity = %config.leader_election.identity, "acting as the virtual node");
        metrics.leader.set(1);
        ready_tx.send_replace(false);
        let (registered_tx, mut registered_rx) = watch::channel(false);
        let acting = token.child_token();
        let node = NodeController::new(
            client.clone(),
            config.node.clone(),
            listening.kubelet.port(),
            &config.intervals,
            health_rx,
            metrics.clone(),
            registered_tx,
        );
        // Ready once the node is registered and the pod store has its first full listing.
        let store = pod_ctl.store().clone();
        let ready_token = acting.clone();
        tracker.spawn(async move {
            tokio::select! {
                biased;
                () = ready_token.cancelled() => {}
                (registered, listed) = async { tokio::join!(async { registered_rx.wait_for(|r| *r).await.is_ok() }, async { store.wait_until_ready().await.is_ok() }) } => {
                    if registered && listed {
                        ready_tx.send_replace(true);
                    }
                }
            }
        });
        tracker.spawn(node.run(acting.clone()));
        // The observer: this node's groups listed at once and every `reconcile` (the create
        // path waits for that first complete listing), the reconcile sweep, status polling
        // and ECI events.
        let observer = Observer::new(
            client.clone(),
            Arc::new(eci.clone()),
            pod_ctl.store().clone(),
            index.clone(),
            ObserverSettings {
                cluster: config.eci.cluster_name.clone(),
                node: config.node.name.clone(),
                poll_interval: config.intervals.pod_status_poll,
                resync_interval: config.intervals.pod_status_resync,
                reconcile_interval: config.intervals.reconcile,
                orphan_min_age: config.intervals.orphan_min_age,
            },
            metrics.clone(),
            kube::runtime::events::Reporter {
                controller: "vnode".into(),
                instance: Some(config.leader_election.identity.clone()),
            },
        )
        .yielding_to_creates(pod_ctl.create_activity());
        tracker.spawn(observer.run(acting.clone()));
        tracker.spawn(pods::run(
            pod_ctl,
            pod_writer,
            config.pod_workers,
            acting.clone(),
        ));
        let lost = tokio::select! {
            biased;
            () = &mut shutdown => false,
            r = leading_rx.wait_for(|l| !*l) => r.is_ok(),
        };
        if lost {
            metrics.leader.set(0);
            result = Err(DaemonError::LostLeadership(
                config.leader_election.lease_name.clone(),
            ));
        }
    }

    tracing::info!("shutting down");
    // The watchers stop with the plugin side.
    drop(plugins);
    token.cancel();
    tracker.close();
    if tokio::time::timeout(config.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?config.shutdown_grace, "tasks still running after the shutdown grace period");
    }
    result
}

/// The ECI client from `config.eci`: endpoint, region, credentials, client-side pacing
/// (documented per-minute quotas unless `eci.rateLimits: unlimited`), default retries.
fn eci_client(config: &Config) -> Result<vnode_eci::EciClient, DaemonError> {
    use secrecy::ExposeSecret;
    let credentials = vnode_eci::Credentials::new(
        config.eci.credentials.access_key_id.expose_secret(),
        config.eci.credentials.access_key_secret.expose_secret(),
    );
    let mut eci_config = vnode_eci::EciClientConfig::new(config.eci.region.clone(), credentials);
    eci_config.endpoint = Some(config.eci.endpoint.as_str().to_string());
    eci_config.rate_limits = match config.eci.rate_limits {
        crate::config::EciRateLimits::Documented => vnode_eci::RateLimits::documented(),
        crate::config::EciRateLimits::Unlimited => vnode_eci::RateLimits::unlimited(),
    };
    vnode_eci::EciClient::new(eci_config).map_err(|e| DaemonError::Eci(e.to_string()))
}
