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
