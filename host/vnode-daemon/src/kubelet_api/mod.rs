//! The kubelet API on KUBELET_PORT: what the API server (and metrics-server, and Virtual
//! Kubelet's e2e suite) call on a node. Served with axum over rustls.
//!
//! Routes: `/healthz`, `/pods`, `/runningpods/`, `/containerLogs/{ns}/{pod}/{container}`,
//! `/stats/summary`, `/metrics/resource`, `/exec/{ns}/{pod}[/{uid}]/{container}`. The data
//! comes from a [`PodBackend`]; the daemon uses [`EciPodBackend`] (pods from the pod store,
//! logs by polling DescribeContainerLog, exec through ExecContainerCommand's WebSocket,
//! stats from DescribeContainerGroupMetric).
//!
//! Every request is authenticated ([`auth`]: client certificate verified against the
//! configured client CA during the TLS handshake, or a bearer token checked with a
//! TokenReview) and authorised (SubjectAccessReview on `nodes/<subresource>`, as the real
//! kubelet does). Anonymous requests are refused unless `kubelet.anonymousAuth` is on.

pub mod auth;
mod eci_backend;
pub mod exec;
pub mod logs;
pub mod stats;
mod tls;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::{AuthApi, Authenticator, KubeAuthApi, PeerIdentity, UserInfo};
pub use eci_backend::{EciBackendOptions, EciPodBackend};
pub use exec::{ExecInput, ExecOutput, ExecRequest, ExecSession};
pub use stats::Summary;
pub use tls::{TlsError, server_config};

use crate::metrics::Metrics;

/// Why the backend could not answer. Mapped to HTTP like Virtual Kubelet does.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The pod or container does not exist (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is malformed for this backend (400).
    #[error("invalid request: {0}")]
    InvalidInput(String),
    /// Not implemented by this backend yet (501).
    #[error("not implemented: {0}")]
    NotImplemented(String),
    /// The backend is temporarily unable to answer (503), e.g. ECI throttling.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

impl BackendError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::InvalidInput(_) => StatusCode::BAD_REQUEST,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for BackendError {
    fn into_response(self) -> Response {
        (self.status(), self.to_string()).into_response()
    }
}

/// Options of `/containerLogs` (the kubelet's `PodLogOptions` query).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only the last N lines.
    pub tail_lines: Option<u64>,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<u64>,
    /// Only lines at or after this time. Exclusive with `since_seconds`.
    pub since_time: Option<jiff::Timestamp>,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
    /// Keep streaming new lines until the container ends or the client disconnects.
    pub follow: bool,
    /// Logs of the previous (restarted) container instance.
    pub previous: bool,
}

/// The raw query, validated into [`LogOptions`].
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    tail_lines: Option<String>,
    since_seconds: Option<String>,
    since_time: Option<String>,
    timestamps: Option<String>,
    limit_bytes: Option<String>,
    follow: Option<String>,
    previous: Option<String>,
}

impl LogQuery {
    fn validate(self) -> Result<LogOptions, BackendError> {
        let positive = |name: &str,
                        v: Option<String>,
                        allow_zero: bool|
         -> Result<Option<u64>, BackendError> {
            match v {
                None => Ok(None),
                Some(s) => match s.parse::<u64>() {
                    Ok(n) if n > 0 || allow_zero => Ok(Some(n)),
                    _ => Err(BackendError::InvalidInput(format!(
                        "{name}={s:?} must be a positive integer"
                    ))),
                },
            }
        };
        let flag = |name: &str, v: Option<String>| -> Result<bool, BackendError> {
            match v.as_deref() {
                None | Some("false") | Some("0") => Ok(false),
                Some("" | "true" | "1") => Ok(true),
                Some(other) => Err(BackendError::InvalidInput(format!(
                    "{name}={other:?} must be true or false"
                ))),
            }
        };
        let since_time = match self.since_time {
            None => None,
            Some(s) => Some(s.parse::<jiff::Timestamp>().map_err(|_| {
                BackendError::InvalidInput(format!("sinceTime={s:?} must be an RFC 3339 time"))
            })?),
        };
        let opts = LogOptions {
            tail_lines: positive("tailLines", self.tail_lines, true)?,
            since_seconds: positive("sinceSeconds", self.since_seconds, false)?,
            since_time,
            timestamps: flag("timestamps", self.timestamps)?,
            limit_bytes: positive("limitBytes", self.limit_bytes, false)?,
            follow: flag("follow", self.follow)?,
            previous: flag("previous", self.previous)?,
        };
        if opts.since_seconds.is_some() && opts.since_time.is_some() {
            return Err(BackendError::InvalidInput(
                "at most one of sinceSeconds and sinceTime".into(),
            ));
        }
        Ok(opts)
    }
}

/// A stream of log bytes (already filtered and limited per [`LogOptions`]).
pub type LogStream = BoxStream<'static, Result<Bytes, BackendError>>;

/// What the kubelet API needs from the pod side. The pod controller implements it over its
/// pod store and ECI; tests implement it in memory.
pub trait PodBackend: Send + Sync + 'static {
    /// Pods bound to this node as the API server has them (`/pods`).
    fn pods(&self) -> impl Future<Output = Result<Vec<Pod>, BackendError>> + Send;
    /// Pods as the backend runs them (`/runningpods/`, used by the VK e2e suite).
    fn running_pods(&self) -> impl Future<Output = Result<Vec<Pod>, BackendError>> + Send;
    /// Logs of one container. With `follow`, the stream stays open and yields new lines
    /// exactly once each until the container ends.
    fn container_logs(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        options: LogOptions,
    ) -> impl Future<Output = Result<LogStream, BackendError>> + Send;
    /// Resource usage of the node and its pods (`/stats/summary`; `/metrics/resource` is
    /// rendered from it).
    fn stats_summary(&self) -> impl Future<Output = Result<Summary, BackendError>> + Send;
    /// Starts `request` in a container (`/exec`). `uid`, when the route carries one, must
    /// match the pod's. Errors here become the HTTP answer (before the upgrade); the
    /// returned session is bridged to the client's WebSocket.
    fn exec(
        &self,
        namespace: &str,
        pod: &str,
        uid: Option<&str>,
        container: &str,
        request: ExecRequest,
    ) -> impl Future<Output = Result<ExecSession, BackendError>> + Send {
        let _ = (namespace, pod, uid, container, request);
        async {
            Err(BackendError::NotImplemented(
                "exec is not supported by this backend".into(),
            ))
        }
    }
}

/// A backend with no pods and no ECI behind it: what the kubelet API serves until the pod
/// controller is wired. Every answer is true for a node that runs nothing: empty pod lists,
/// a summary with only the node, and 404 for any container's logs.
pub struct EmptyBackend {
    /// The node name reported in the summary.
    pub node_name: String,
}

impl PodBackend for EmptyBackend {
    async fn pods(&self) -> Result<Vec<Pod>, BackendError> {
        Ok(Vec::new())
    }
    async fn running_pods(&self) -> Result<Vec<Pod>, BackendError> {
        Ok(Vec::new())
    }
    async fn container_logs(
        &self,
        ns: &str,
        pod: &str,
        _c: &str,
        _o: LogOptions,
    ) -> Result<LogStream, BackendError> {
        Err(BackendError::NotFound(format!(
            "pod {ns}/{pod} is not running on this node"
        )))
    }
    async fn stats_summary(&self) -> Result<Summary, BackendError> {
        Ok(Summary::empty(&self.node_name))
    }
}

struct ApiState<B, A> {
    backend: B,
    auth: Authenticator<A>,
    node_name: String,
    metrics: Arc<Metrics>,
}

/// Builds the kubelet API router (authentication and authorisation included).
pub fn router<B: PodBackend, A: AuthApi>(
    backend: B,
    auth: Authenticator<A>,
    node_name: String,
    metrics: Arc<Metrics>,
) -> Router {
    let state = Arc::new(ApiState {
        backend,
        auth,
        node_name,
        metrics,
    });
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods::<B, A>))
        .route("/pods/", get(pods::<B, A>))
        .route("/runningpods/", get(running_pods::<B, A>))
        .route("/runningpods", get(running_pods::<B, A>))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs::<B, A>),
        )
        .route("/stats/summary", get(stats_summary::<B, A>))
        .route("/stats/summary/", get(stats_summary::<B, A>))
        .route("/metrics/resource", get(metrics_resource::<B, A>))
        .route("/exec/{namespace}/{pod}/{container}", any(exec::<B, A>))
        .route(
            "/exec/{namespace}/{pod}/{uid}/{container}",
            any(exec_with_uid::<B, A>),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize::<B, A>,
        ))
        .with_state(state)
}

async fn authorize<B: PodBackend, A: AuthApi>(
    State(s): State<Arc<ApiState<B, A>>>,
    req: Request,
    next: Next,
) -> Response {
    let route = route_label(req.uri().path());
    let facts = auth::RequestFacts::from_request(&req);
    let response = match s.auth.check(&facts, &s.node_name).await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    s.metrics.kubelet_request(route, response.status().as_u16());
    response
}

fn route_label(path: &str) -> &'static str {
    let first = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    match first {
        "healthz" => "healthz",
        "pods" => "pods",
        "runningpods" => "runningpods",
        "containerLogs" => "containerLogs",
        "stats" => "stats",
        "metrics" => "metrics",
        "exec" => "exec",
        _ => "other",
    }
}

fn pod_list(pods: Vec<Pod>) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods})
}

async fn pods<B: PodBackend, A: AuthApi>(
    State(s): State<Arc<ApiState<B, A>>>,
) -> Result<Response, BackendError> {
    Ok(axum::Json(pod_list(s.backend.pods().await?)).into_response())
}

async fn running_pods<B: PodBackend, A: AuthApi>(
    State(s): State<Arc<ApiState<B, A>>>,
) -> Result<Response, BackendError> {
    Ok(axum::Json(pod_list(s.backend.running_pods().await?)).into_response())
}

async fn container_logs<B: PodBackend, A: AuthApi>(
    State(s): State<Arc<ApiState<B, A>>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, BackendError> {
    let Query(query) = query.map_err(|e| BackendError::InvalidInput(e.body_text()))?;
    let options = query.validate()?;
    let stream = s
        .backend
        .container_logs(&namespace, &pod, &container, options)
        .await?;
    let body = Body::from_stream(futures::StreamExt::map(stream, |r| {
        r.map_err(std::io::Error::other)
    }));
    Ok(([(http::header::CONTENT_TYPE, "text/plain")], body).into_response())
}

async fn stats_summary<B: PodBackend, A: AuthApi>(
    State(s): State<Arc<ApiState<B, A>>>,
) -> Result<Response, BackendError> {
    Ok(axum::Json(s.backend.stats_summary().await?).into_response())
}

async fn metrics_resource<B: PodBackend, A: AuthApi>(
    State(s): State<Arc<ApiState<B, A>>>,
) -> Result<Response, BackendError> {
    let summary = s.backend.stats_summary().await?;
    Ok((
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        stats::render_resource_metrics(&summary),
    )
        .into_response())
}

type Upgrade = Result<
    axum::extract::ws::WebSocketUpgrade,
    axum::extract::ws::rejection::WebSocketUpgradeRejection,
>;

async fn exec<B: PodBackend, A: AuthApi>(
    State(s): State<Arc<ApiState<B, A>>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    headers: http::HeaderMap,
    uri: http::Uri,
    ws: Upgrade,
) -> Result<Response, BackendError> {
    start_exec(
        &s.backend, &namespace, &pod, None, &container, &headers, &uri, ws,
    )
    .await
}

async fn exec_with_uid<B: PodBackend, A: AuthApi>(
    State(s): State<Arc<ApiState<B, A>>>,
    Path((namespace, pod, uid, container)): Path<(String, String, String, String)>,
    headers: http::HeaderMap,
    uri: http::Uri,
    ws: Upgrade,
) -> Result<Response, BackendError> {
    start_exec(
        &s.backend,
        &namespace,
        &pod,
        Some(&uid),
        &container,
        &headers,
        &uri,
        ws,
    )
    .await
}

/// Validates the request, starts the command through the backend (so a refusal is a plain
/// HTTP error the API server passes on), then upgrades and bridges.
#[allow(clippy::too_many_arguments)] // the two route shapes share this body
async fn start_exec<B: PodBackend>(
    backend: &B,
    namespace: &str,
    pod: &str,
    uid: Option<&str>,
    container: &str,
    headers: &http::HeaderMap,
    uri: &http::Uri,
    ws: Upgrade,
) -> Result<Response, BackendError> {
    let request = ExecRequest::from_query(uri.query().unwrap_or(""))?;
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => {
            let spdy = headers
                .get(http::header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().starts_with("spdy"));
            return Err(BackendError::InvalidInput(if spdy {
                "exec over SPDY is not supported by this node; use a client that speaks the \
                 WebSocket protocol v5.channel.k8s.io/v4.channel.k8s.io (kubectl 1.30 or newer)"
                    .into()
            } else {
                "exec needs a WebSocket upgrade (v5.channel.k8s.io or v4.channel.k8s.io)".into()
            }));
        }
    };
    let session = backend
        .exec(namespace, pod, uid, container, request.clone())
        .await?;
    Ok(ws
        .protocols(exec::PROTOCOLS)
        .max_message_size(exec::MAX_MESSAGE_BYTES)
        .max_frame_size(exec::MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| exec::bridge(socket, request, session)))
}

/// Serves `router` over TLS on `listener` until `token` is cancelled. Each connection's
/// verified client certificate (if any) is attached to its requests as [`PeerIdentity`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    token: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let connections = TaskTracker::new();
    loop {
        let (stream, remote) = tokio::select! {
            biased;
            () = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet API accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let token = token.clone();
        connections.spawn(async move {
            let tls = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "kubelet API TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let peer = PeerIdentity::from_certificates(tls.get_ref().1.peer_certificates());
            let service = tower::ServiceExt::map_request(router, move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer.clone());
                req
            });
            let service = hyper_util::service::TowerToHyperService::new(service);
            let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r { tracing::debug!(%remote, error = %e, "kubelet API connection ended with an error"); }
                }
                () = token.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

#[cfg(test)]
mod tests;
