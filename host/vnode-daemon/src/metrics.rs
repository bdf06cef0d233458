//! Prometheus metrics (prefix `vnode_`) and the operations server: `/metrics`, `/healthz`,
//! `/readyz` on their own port, separate from the kubelet API.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Label set with one `step` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The failing step, e.g. `renew lease`.
    pub step: String,
}

/// Label set of kubelet API requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route family: `pods`, `containerLogs`, `stats`, …
    pub route: String,
    /// HTTP status code.
    pub code: u16,
}

/// Label set of pod state-machine steps.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PodStepLabels {
    /// Lifecycle state the step ran in.
    pub state: String,
    /// `ok`, `retry`, `blocked` or `failed`.
    pub outcome: String,
}

/// Label set with a pod phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// Lifecycle state.
    pub state: String,
}

/// Label set of plugin decisions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// `placement` or `translator`.
    pub kind: String,
    /// `name@version` of the plugin version that decided.
    pub plugin: String,
    /// `accept`, `refuse`, `defer`, `ok`, `reject` or `error`.
    pub outcome: String,
}

/// Label set of shadow placement comparisons.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    /// `name@version` of the active placement that decided.
    pub active: String,
    /// `name@version` of the shadow candidate.
    pub shadow: String,
    /// `agree`, `disagree`, `shadow_error` or `dropped`.
    pub result: String,
}

/// Label set of plugin decision latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLatencyLabels {
    /// `placement` or `translator`.
    pub kind: String,
    /// `name@version`.
    pub plugin: String,
}

/// Label set of ECI calls made by the pod path.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EciCallLabels {
    /// ECI action, e.g. `CreateContainerGroup`.
    pub action: String,
    /// `ok`, `no_stock`, `rejected`, `not_found`, `throttled`, `error`.
    pub outcome: String,
}

/// Label set of ECI call latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EciActionLabels {
    /// ECI action.
    pub action: String,
}

/// Plugin decisions take tens to hundreds of microseconds, ECI calls milliseconds to
/// seconds: fine steps below 5 ms so a p99 is not just "under 0.5 ms".
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.000025, 0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075, 0.001, 0.0015,
        0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// Label set with one `result` label (reconcile results, listings, status writes).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// What happened, e.g. `adopted`, `orphan_deleted`, `ok`.
    pub result: String,
}

/// Label set of the observer's status polls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PollLabels {
    /// `incremental` (tag filter + SinceSecond) or `resync` (every group by ID).
    pub kind: String,
}

/// Label set with a Kubernetes pod phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PodPhaseLabels {
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`.
    pub phase: String,
}

fn poll_histogram() -> Histogram {
    Histogram::new([
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

/// All metrics of the daemon. Cheap to share (`Arc`); registered once.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Node creations (first registration and re-creations).
    pub node_registrations: Counter,
    /// Node Lease renewals.
    pub lease_renewals: Counter,
    node_errors: Family<StepLabels, Counter>,
    /// 1 while this replica is the leader.
    pub leader: Gauge,
    kubelet_requests: Family<RouteLabels, Counter>,
    pod_steps: Family<PodStepLabels, Counter>,
    /// Pods tracked per lifecycle state.
    pub pods_by_state: Family<PhaseLabels, Gauge>,
    /// Pod keys waiting for a worker.
    pub pod_queue_depth: Gauge,
    plugin_decisions: Family<PluginLabels, Counter>,
    plugin_latency: Family<PluginLatencyLabels, Histogram, fn() -> Histogram>,
    eci_calls: Family<EciCallLabels, Counter>,
    eci_latency: Family<EciActionLabels, Histogram, fn() -> Histogram>,
    reconcile_results: Family<ResultLabels, Counter>,
    group_listings: Family<ResultLabels, Counter>,
    status_writes: Family<ResultLabels, Counter>,
    status_poll_seconds: Family<PollLabels, Histogram, fn() -> Histogram>,
    pods_by_phase: Family<PodPhaseLabels, Gauge>,
    shadow_decisions: Family<ShadowLabels, Counter>,
    plugin_config_reloads: Family<ResultLabels, Counter>,
    /// Container groups in the index (this node's groups in ECI).
    pub groups_known: Gauge,
    /// ECI events published as pod events.
    pub eci_events_mirrored: Counter,
    /// Events dropped because an event queue was full (`events::dropped_total`).
    pub events_dropped: Counter,
    /// Of those, the daemon's own decisions (`events::decisions_dropped_total`).
    pub decision_events_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vnode");
        let m = Self {
            registry: Mutex::new(Registry::default()),
            node_registrations: Counter::default(),
            lease_renewals: Counter::default(),
            node_errors: Family::default(),
            leader: Gauge::default(),
            kubelet_requests: Family::default(),
            pod_steps: Family::default(),
            pods_by_state: Family::default(),
            pod_queue_depth: Gauge::default(),
            plugin_decisions: Family::default(),
            plugin_latency: Family::new_with_constructor(latency_histogram),
            eci_calls: Family::default(),
            eci_latency: Family::new_with_constructor(latency_histogram),
            reconcile_results: Family::default(),
            group_listings: Family::default(),
            status_writes: Family::default(),
            status_poll_seconds: Family::new_with_constructor(poll_histogram),
            pods_by_phase: Family::default(),
            shadow_decisions: Family::default(),
            plugin_config_reloads: Family::default(),
            groups_known: Gauge::default(),
            eci_events_mirrored: Counter::default(),
            events_dropped: crate::events::dropped_total(),
            decision_events_dropped: crate::events::decisions_dropped_total(),
        };
        registry.register(
            "node_registrations",
            "Node objects created (first registration and re-creations)",
            m.node_registrations.clone(),
        );
        registry.register(
            "node_lease_renewals",
            "Node heartbeat Lease renewals",
            m.lease_renewals.clone(),
        );
        registry.register(
            "node_errors",
            "Failed node heartbeat steps by step",
            m.node_errors.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader-election Lease",
            m.leader.clone(),
        );
        registry.register(
            "kubelet_api_requests",
            "Kubelet API requests by route and status code",
            m.kubelet_requests.clone(),
        );
        registry.register(
            "pod_steps",
            "Pod lifecycle steps by state and outcome",
            m.pod_steps.clone(),
        );
        registry.register(
            "pods",
            "Pods tracked by lifecycle state",
            m.pods_by_state.clone(),
        );
        registry.register(
            "pod_queue_depth",
            "Pod keys waiting for a worker",
            m.pod_queue_depth.clone(),
        );
        registry.register(
            "plugin_decisions",
            "Plugin decisions by kind, plugin name@version and outcome",
            m.plugin_decisions.clone(),
        );
        registry.register(
            "plugin_decision_seconds",
            "Plugin decision latency (including waiting for a slot) by kind and plugin name@version",
            m.plugin_latency.clone(),
        );
        registry.register(
            "eci_pod_calls",
            "ECI create/delete calls made by the pod path, by action and outcome",
            m.eci_calls.clone(),
        );
        registry.register(
            "eci_pod_call_seconds",
            "Latency of the pod path's ECI calls (client retries included) by action",
            m.eci_latency.clone(),
        );
        registry.register(
            "reconcile_results",
            "Reconcile sweep results by result (adopted, orphan_deleted, duplicate_deleted, vanished, young, kept_unconfirmed, untagged, status_repaired, delete_failed)",
            m.reconcile_results.clone(),
        );
        registry.register(
            "group_listings",
            "Listings of this node's container groups by result (complete, failed)",
            m.group_listings.clone(),
        );
        registry.register(
            "pod_status_writes",
            "Pod status writes by result (ok, conflict, gone, error)",
            m.status_writes.clone(),
        );
        registry.register(
            "status_poll_seconds",
            "Duration of the observer's ECI status polls by kind (incremental, resync)",
            m.status_poll_seconds.clone(),
        );
        registry.register(
            "pods_by_phase",
            "Pods bound to this node by Kubernetes phase",
            m.pods_by_phase.clone(),
        );
        registry.register(
            "container_groups",
            "Container groups this node knows in ECI",
            m.groups_known.clone(),
        );
        registry.register(
            "eci_events_mirrored",
            "ECI container-group events published as pod events",
            m.eci_events_mirrored.clone(),
        );
        registry.register(
            "events_dropped",
            "Pod events dropped because the event queue was full (the writer could not keep up)",
            m.events_dropped.clone(),
        );
        registry.register(
            "decision_events_dropped",
            "Of the dropped pod events, those of the daemon's own decisions (Placed, Created, refusals, failures); the rest were mirrored from ECI",
            m.decision_events_dropped.clone(),
        );
        registry.register(
            "plugin_shadow_decisions",
            "Shadow placement runs by active and shadow name@version and result (agree, disagree, shadow_error, dropped)",
            m.shadow_decisions.clone(),
        );
        registry.register(
            "plugin_config_reloads",
            "Re-reads of the config file's plugins section by result (applied, unchanged, refused, restart_needed)",
            m.plugin_config_reloads.clone(),
        );
        *m.registry.lock() = registry;
        m
    }

    /// Counts a failed node step.
    pub fn node_errors(&self, step: &str) {
        self.node_errors
            .get_or_create(&StepLabels {
                step: step.to_string(),
            })
            .inc();
    }

    /// Counts one shadow placement run (or a dropped one).
    pub fn shadow_decision(&self, active: &str, shadow: &str, result: &str) {
        self.shadow_decisions
            .get_or_create(&ShadowLabels {
                active: active.to_string(),
                shadow: shadow.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts one re-read of the config file's plugins section.
    pub fn plugin_config_reload(&self, result: &str) {
        self.plugin_config_reloads
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts a kubelet API request.
    pub fn kubelet_request(&self, route: &str, code: u16) {
        self.kubelet_requests
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                code,
            })
            .inc();
    }

    /// Counts a pod step.
    pub fn pod_step(&self, state: &str, outcome: &str) {
        self.pod_steps
            .get_or_create(&PodStepLabels {
                state: state.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts one plugin decision and observes its latency.
    pub fn plugin_decision(&self, kind: &str, plugin: &str, outcome: &str, seconds: f64) {
        self.plugin_decisions
            .get_or_create(&PluginLabels {
                kind: kind.to_string(),
                plugin: plugin.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.plugin_latency
            .get_or_create(&PluginLatencyLabels {
                kind: kind.to_string(),
                plugin: plugin.to_string(),
            })
            .observe(seconds);
    }

    /// Counts one ECI call of the pod path and observes its latency.
    pub fn eci_call(&self, action: &str, outcome: &str, seconds: f64) {
        self.eci_calls
            .get_or_create(&EciCallLabels {
                action: action.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.eci_latency
            .get_or_create(&EciActionLabels {
                action: action.to_string(),
            })
            .observe(seconds);
    }

    /// Counts a reconcile result.
    pub fn reconcile(&self, result: &str) {
        self.reconcile_results
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts a listing of this node's container groups.
    pub fn group_listing(&self, result: &str) {
        self.group_listings
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts a pod status write.
    pub fn status_write(&self, result: &str) {
        self.status_writes
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// Observes one status poll.
    pub fn status_poll(&self, kind: &str, seconds: f64) {
        self.status_poll_seconds
            .get_or_create(&PollLabels {
                kind: kind.to_string(),
            })
            .observe(seconds);
    }

    /// Sets the number of pods in `phase`.
    pub fn pods_in_phase(&self, phase: &str, n: i64) {
        self.pods_by_phase
            .get_or_create(&PodPhaseLabels {
                phase: phase.to_string(),
            })
            .set(n);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry.lock()) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// What `/readyz` reports: ready once this replica is either a standby waiting for
/// leadership or the leader with its node registered.
#[derive(Clone)]
pub struct Readiness(pub watch::Receiver<bool>);

#[derive(Clone)]
struct OpsState {
    metrics: Arc<Metrics>,
    ready: Readiness,
}

/// The operations router.
pub fn router(metrics: Arc<Metrics>, ready: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(OpsState { metrics, ready })
}

async fn metrics_handler(State(s): State<OpsState>) -> impl IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn readyz(State(s): State<OpsState>) -> impl IntoResponse {
    if *s.ready.0.borrow() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Serves the operations router on `listener` until `token` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    ready: Readiness,
    token: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, ready))
        .with_graceful_shutdown(token.cancelled_owned())
        .await
}

/// Binds the operations listener (separate so the caller can print the bound address).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        crate::testing::install_crypto();
        let metrics = Arc::new(Metrics::new());
        metrics.lease_renewals.inc();
        metrics.node_errors("renew lease");
        let (ready_tx, ready_rx) = watch::channel(false);
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let token = CancellationToken::new();
        let server = tokio::spawn(serve(listener, metrics, Readiness(ready_rx), token.clone()));
        let http = reqwest::Client::new();
        let body = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        assert!(body.contains("vnode_node_lease_renewals_total 1"), "{body}");
        assert!(
            body.contains("vnode_node_errors_total{step=\"renew lease\"} 1"),
            "{body}"
        );
        assert_eq!(
            http.get(format!("http://{addr}/healthz"))
                .send()
                .await
                .expect("get")
                .status(),
            200
        );
        assert_eq!(
            http.get(format!("http://{addr}/readyz"))
                .send()
                .await
                .expect("get")
                .status(),
            503
        );
        ready_tx.send_replace(true);
        assert_eq!(
            http.get(format!("http://{addr}/readyz"))
                .send()
                .await
                .expect("get")
                .status(),
            200
        );
        token.cancel();
        server.await.expect("join").expect("clean stop");
    }
}
