//! A wire-faithful emulator of the Alibaba Cloud ECI OpenAPI (2018-08-08).
//!
//! It speaks the real protocol: `GET` and `POST /`, parameters in the query or an
//! urlencoded form body, both signature schemes verified (`ACS3-HMAC-SHA256` and
//! `HMAC-SHA1`) with the real error codes for an unknown key (`InvalidAccessKeyId.NotFound`),
//! a bad signature (`SignatureDoesNotMatch`), an expired timestamp
//! (`InvalidTimeStamp.Expired`) and a reused nonce (`SignatureNonceUsed`); the real JSON
//! envelopes with `RequestId` on everything (also in `x-acs-request-id`), and
//! `Throttling.User` + `x-acs-retry-after` when a per-minute quota is exceeded.
//!
//! Actions: `CreateContainerGroup`, `DescribeContainerGroups` (ids, name, status, tags,
//! network filters; `NextToken` paging), `DescribeContainerGroupStatus` (`SinceSecond`),
//! `DeleteContainerGroup`, `RestartContainerGroup`, `UpdateContainerGroup`,
//! `DescribeContainerLog` (`Tail`, `SinceSeconds`, `StartTime`, `Timestamps`, `LimitBytes`,
//! `LastTime`), `ExecContainerCommand` (a WebSocket served here; see [`exec`] for the
//! command set and framing), `DescribeContainerGroupMetric`, `DescribeContainerGroupPrice`.
//! Anything else is `InvalidAction.NotFound`.
//!
//! Semantics: lifecycle `Scheduling → Pending → Running → Succeeded/Failed`, `Restarting`,
//! `Updating`, `Terminating` (groups with preStop hooks), `Expired` (spot reclaim),
//! `ScheduleFailed` (asynchronous no-stock); container states and restart counts per
//! restart policy; events; tags; `ClientToken` idempotency incl.
//! `IdempotentParameterMismatch`; per-instance limits (64 vCPU, 20 containers, 20 volumes,
//! 20 tags) and spec round-up. Time is wall-clock and evaluated lazily (see [`sim`]).
//!
//! The world is shaped by a [`Profile`] (YAML; documented in `PROFILE.md`): delays,
//! workloads (which image/command exits with which code after how long, what it logs),
//! sold-out zones/specs, spot reclamation, fault injection, quota overrides.
//!
//! Use [`serve`] in-process (tests, `vnode dev`, benchmarks) or `vnode eci-emulator`.

mod api;
mod auth;
pub mod exec;
pub mod profile;
pub mod record;
pub mod sim;
pub mod spec;
mod world;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use vnode_eci::Action;
use vnode_eci::wire;

pub use api::ApiError;
pub use profile::{Behaviour, FaultKind, FaultRule, Profile, Stock, Timing, WorkloadRule};
pub use record::{
    CALLS_PATH, CallCount, CallStats, CallTiming, CallTimings, GroupRecord, STATS_PATH,
};

use crate::auth::{Authenticator, Incoming};
use crate::world::{Ctx, World};

/// Default access key id accepted by the emulator.
pub const DEFAULT_ACCESS_KEY_ID: &str = "vnode-emulator-access-key-id";
/// Default access key secret accepted by the emulator.
pub const DEFAULT_ACCESS_KEY_SECRET: &str = "vnode-emulator-access-key-secret";

/// Errors starting or running the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The profile could not be read or parsed.
    #[error("profile: {0}")]
    Profile(String),
    /// The state file could not be read or written.
    #[error("state file: {0}")]
    State(String),
    /// The HTTP server failed.
    #[error("server: {0}")]
    Server(#[from] std::io::Error),
}

/// Emulator settings. `Default` is a believable world: region `cn-hangzhou`, three zones,
/// quotas **on** with the documented per-minute numbers, groups running within ~1.2 s,
/// nginx-like images logging every 2 s, jobs finishing; key pair
/// [`DEFAULT_ACCESS_KEY_ID`] / [`DEFAULT_ACCESS_KEY_SECRET`].
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Accepted access key id.
    pub access_key_id: String,
    /// Its secret.
    pub access_key_secret: String,
    /// Enforce per-minute quotas (documented numbers, overridable in the profile).
    pub quotas_enabled: bool,
    /// How the world behaves.
    pub profile: Profile,
    /// Persist state here (loaded at start, written on changes and at shutdown).
    pub state_file: Option<PathBuf>,
    /// Record calls by action/outcome and each group's life, served at [`STATS_PATH`],
    /// and each call's timing, served at [`CALLS_PATH`] (benchmarks; off by default so a
    /// long session does not grow a log).
    pub record_calls: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            access_key_id: DEFAULT_ACCESS_KEY_ID.into(),
            access_key_secret: DEFAULT_ACCESS_KEY_SECRET.into(),
            quotas_enabled: true,
            profile: Profile::default(),
            state_file: None,
            record_calls: false,
        }
    }
}

impl EmulatorConfig {
    /// Lifts every per-minute quota (benchmarks, large tests).
    pub fn lift_quotas(mut self) -> Self {
        self.quotas_enabled = false;
        self
    }

    /// Uses the profile in a YAML file.
    pub fn with_profile_file(mut self, path: &Path) -> Result<Self, EmulatorError> {
        self.profile = Profile::from_file(path)?;
        Ok(self)
    }
}

/// Loads a profile from a YAML file (same as [`Profile::from_file`]).
pub fn load_profile(path: &Path) -> Result<Profile, EmulatorError> {
    Profile::from_file(path)
}

struct ExecSession {
    group: sim::Group,
    container: String,
    command: Vec<String>,
    expires: tokio::time::Instant,
}

struct Emulator {
    profile: Profile,
    auth: Authenticator,
    world: Mutex<World>,
    limiters: HashMap<String, DefaultDirectRateLimiter>,
    fault_counts: Vec<AtomicU64>,
    exec_sessions: Mutex<HashMap<String, ExecSession>>,
    dirty: AtomicBool,
    recorder: Option<record::Recorder>,
}

/// Serves the emulator on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: EmulatorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), EmulatorError> {
    let world = match &config.state_file {
        Some(path) if path.exists() => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| EmulatorError::State(format!("{}: {e}", path.display())))?;
            if text.trim().is_empty() {
                World::default()
            } else {
                serde_json::from_str(&text)
                    .map_err(|e| EmulatorError::State(format!("{}: {e}", path.display())))?
            }
        }
        _ => World::default(),
    };
    let mut limiters = HashMap::new();
    if config.quotas_enabled {
        for action in Action::ALL {
            let n = config
                .profile
                .quotas
                .get(action.as_str())
                .copied()
                .unwrap_or(action.documented_quota_per_minute());
            if let Some(n) = NonZeroU32::new(n) {
                limiters.insert(
                    action.as_str().to_string(),
                    RateLimiter::direct(Quota::per_minute(n)),
                );
            }
        }
    }
    let emulator = Arc::new(Emulator {
        auth: Authenticator::new([(
            config.access_key_id.clone(),
            config.access_key_secret.clone(),
        )]),
        fault_counts: config
            .profile
            .faults
            .iter()
            .map(|_| AtomicU64::new(0))
            .collect(),
        profile: config.profile.clone(),
        world: Mutex::new(world),
        limiters,
        exec_sessions: Mutex::new(HashMap::new()),
        dirty: AtomicBool::new(false),
        recorder: config.record_calls.then(record::Recorder::default),
    });
    let router = axum::Router::new()
        .route("/", axum::routing::any(rpc))
        .route("/exec/", axum::routing::get(exec_ws))
        .route(STATS_PATH, axum::routing::get(stats))
        .route(CALLS_PATH, axum::routing::get(call_timings))
        .with_state(Arc::clone(&emulator));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let persister = config.state_file.clone().map(|path| {
        let emulator = Arc::clone(&emulator);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.changed() => break,
                }
                if emulator.dirty.swap(false, Ordering::AcqRel)
                    && let Err(e) = persist(&emulator, &path)
                {
                    tracing::warn!(error = %e, "writing emulator state");
                }
            }
        })
    });
    tracing::info!(region = %config.profile.region_id, quotas = config.quotas_enabled, "ECI emulator serving");
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    if let Some(task) = persister {
        let _ = task.await;
    }
    if let Some(path) = &config.state_file {
        persist(&emulator, path)?;
    }
    result.map_err(EmulatorError::Server)
}

fn persist(emulator: &Emulator, path: &Path) -> Result<(), EmulatorError> {
    let json = {
        let world = emulator.world.lock();
        serde_json::to_vec(&*world).map_err(|e| EmulatorError::State(e.to_string()))?
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)
        .map_err(|e| EmulatorError::State(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| EmulatorError::State(format!("{}: {e}", path.display())))
}

async fn rpc(
    State(emulator): State<Arc<Emulator>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = jiff::Timestamp::now();
    let request_id = api::request_id();
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let mut action = None;
    let result = handle(
        &emulator,
        &method,
        &uri,
        &headers,
        &body,
        &host,
        &mut action,
    )
    .await;
    let name = action.map_or("unknown", Action::as_str);
    let error = result.as_ref().err().map(|(err, _)| err.code.clone());
    if let Some(recorder) = &emulator.recorder {
        recorder.count(name, error.as_deref().unwrap_or(record::OUTCOME_OK));
    }
    let response = match result {
        Ok(reply) => api::ok_json(&request_id, reply.into_body(&request_id)),
        Err((err, delay)) => {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            tracing::debug!(code = %err.code, status = err.status, "ECI emulator error");
            api::error_response(&err, &request_id, &host)
        }
    };
    if let Some(recorder) = &emulator.recorder {
        recorder.timed(name, error.as_deref(), received, jiff::Timestamp::now());
    }
    response
}

type Failure = (ApiError, Option<Duration>);

/// `GET` [`STATS_PATH`]: the recording as JSON, 404 when recording is off.
async fn stats(State(emulator): State<Arc<Emulator>>) -> Response {
    match &emulator.recorder {
        Some(recorder) => axum::Json(recorder.snapshot()).into_response(),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            "call recording is off (--record-calls)",
        )
            .into_response(),
    }
}

/// `GET` [`CALLS_PATH`]: every call's timing as JSON, 404 when recording is off.
async fn call_timings(State(emulator): State<Arc<Emulator>>) -> Response {
    match &emulator.recorder {
        Some(recorder) => axum::Json(recorder.timings()).into_response(),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            "call recording is off (--record-calls)",
        )
            .into_response(),
    }
}

async fn handle(
    emulator: &Emulator,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    host: &str,
    seen_action: &mut Option<Action>,
) -> Result<world::Reply, Failure> {
    if method != Method::GET && method != Method::POST {
        return Err((
            ApiError::new(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            ),
            None,
        ));
    }
    let query = wire::decode_query(uri.query().unwrap_or_default());
    let is_form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let form = if is_form {
        wire::decode_query(&String::from_utf8_lossy(body))
    } else {
        Vec::new()
    };
    let header_pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    let incoming = Incoming {
        method: method.as_str(),
        path: uri.path(),
        query: &query,
        form: &form,
        headers: &header_pairs,
        body,
    };
    let scheme = emulator.auth.verify(&incoming).map_err(|e| (e, None))?;
    let param = |name: &str| {
        query
            .iter()
            .chain(form.iter())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let header = |name: &str| {
        header_pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (action_name, version) = match scheme {
        auth::Scheme::V3 => (
            header("x-acs-action").or_else(|| param("Action")),
            header("x-acs-version").or_else(|| param("Version")),
        ),
        auth::Scheme::V1 => (param("Action"), param("Version")),
    };
    let action_name = action_name.ok_or_else(|| (ApiError::missing("Action"), None))?;
    let version = version.ok_or_else(|| (ApiError::missing("Version"), None))?;
    if version != wire::API_VERSION {
        return Err((
            ApiError::new(
                400,
                "InvalidVersion",
                format!("Specified parameter Version \"{version}\" is not valid."),
            ),
            None,
        ));
    }
    let Some(action) = Action::from_name(&action_name) else {
        return Err((
            ApiError::new(
                404,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            ),
            None,
        ));
    };
    *seen_action = Some(action);
    if let Some(limiter) = emulator.limiters.get(action.as_str())
        && let Err(not_until) = limiter.check()
    {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let mut err = ApiError::new(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        );
        err.retry_after_ms = Some(wait.as_millis().max(1) as u64);
        return Err((err, None));
    }
    // Fault injection.
    let mut post_delay = None;
    for (i, rule) in emulator.profile.faults.iter().enumerate() {
        if !rule.actions.is_empty() && !rule.actions.iter().any(|a| a == action.as_str()) {
            continue;
        }
        let n = emulator.fault_counts[i].fetch_add(1, Ordering::Relaxed);
        let hit = match rule.first {
            Some(first) => n < first,
            None => rule.rate > 0.0 && rand::random::<f64>() < rule.rate,
        };
        if !hit {
            continue;
        }
        let delay = Duration::from_millis(rule.delay_ms.unwrap_or(3000));
        match rule.kind {
            FaultKind::Error => {
                let code = rule.code.clone().unwrap_or_else(|| "InternalError".into());
                let status = rule.status.unwrap_or(500);
                let message = if code == "InternalError" {
                    "The request processing has failed due to some unknown error.".to_string()
                } else if code == "ServiceUnavailable" {
                    "The request has failed due to a temporary failure of the server.".to_string()
                } else {
                    format!("Injected fault {code}.")
                };
                return Err((ApiError::new(status, code, message), None));
            }
            FaultKind::Latency => tokio::time::sleep(delay).await,
            FaultKind::Timeout => post_delay = Some(delay),
        }
    }
    let params: Vec<(String, String)> = query.iter().chain(form.iter()).cloned().collect();
    let ctx = Ctx {
        params: &params,
        host,
        scheme: "http",
    };
    let result = match action {
        Action::ExecContainerCommand => exec_command(emulator, &ctx).await.map(world::Reply::Value),
        _ => {
            // Parsing and validation of creates happen before taking the lock.
            let prepared = match action {
                Action::CreateContainerGroup => {
                    Some(world::prepare_create(&ctx, &emulator.profile))
                }
                _ => None,
            };
            let mut world = emulator.world.lock();
            let r = match action {
                Action::CreateContainerGroup => match prepared {
                    Some(Ok(p)) => world
                        .commit_create(p, &emulator.profile)
                        .map(world::Reply::Value),
                    Some(Err(e)) => Err(e),
                    None => Err(ApiError::new(
                        500,
                        "InternalError",
                        "create was not prepared",
                    )),
                },
                Action::DescribeContainerGroups => world
                    .describe(&ctx, &emulator.profile)
                    .map(world::Reply::Groups),
                Action::DescribeContainerGroupStatus => world
                    .status(&ctx, &emulator.profile)
                    .map(world::Reply::Status),
                Action::DeleteContainerGroup => world
                    .delete(&ctx, &emulator.profile)
                    .map(world::Reply::Value),
                Action::RestartContainerGroup => world
                    .restart(&ctx, &emulator.profile)
                    .map(world::Reply::Value),
                Action::UpdateContainerGroup => world
                    .update(&ctx, &emulator.profile)
                    .map(world::Reply::Value),
                Action::DescribeContainerLog => {
                    world.logs(&ctx, &emulator.profile).map(world::Reply::Value)
                }
                Action::DescribeContainerGroupMetric => world
                    .metric(&ctx, &emulator.profile)
                    .map(world::Reply::Value),
                Action::DescribeContainerGroupPrice => world
                    .price(&ctx, &emulator.profile)
                    .map(world::Reply::Value),
                Action::ExecContainerCommand => {
                    Err(ApiError::new(500, "InternalError", "exec is served above"))
                }
            };
            if let (Some(recorder), Ok(world::Reply::Value(v))) = (&emulator.recorder, &r) {
                match action {
                    Action::CreateContainerGroup => {
                        if let Some(g) = v
                            .get("ContainerGroupId")
                            .and_then(|id| id.as_str())
                            .and_then(|id| world.group_by_id(id))
                        {
                            recorder.created(g);
                        }
                    }
                    Action::DeleteContainerGroup => {
                        if let Some((_, id)) = params.iter().find(|(k, _)| k == "ContainerGroupId")
                        {
                            recorder.deleted(id, jiff::Timestamp::now());
                        }
                    }
                    _ => {}
                }
            }
            if r.is_ok()
                && matches!(
                    action,
                    Action::CreateContainerGroup
                        | Action::DeleteContainerGroup
                        | Action::RestartContainerGroup
                        | Action::UpdateContainerGroup
                )
            {
                emulator.dirty.store(true, Ordering::Release);
            }
            r
        }
    };
    if let Some(d) = post_delay {
        // The action happened; the caller just does not hear back in time.
        tokio::time::sleep(d).await;
    }
    result.map_err(|e| (e, None))
}

async fn exec_command(emulator: &Emulator, ctx: &Ctx<'_>) -> Result<serde_json::Value, ApiError> {
    let (req, group) = emulator.world.lock().exec_target(ctx, &emulator.profile)?;
    let container = group
        .spec
        .containers
        .iter()
        .find(|c| c.name == req.container_name)
        .cloned()
        .ok_or_else(|| ApiError::invalid("ContainerName", "unknown container"))?;
    if req.sync == Some(true) {
        let exec_ctx = exec::ExecContext::new(&group, &container);
        let (out, _) = exec::run(&req.command, &exec_ctx).await;
        return Ok(serde_json::json!({
            "WebSocketUri": "",
            "HttpUrl": "",
            "SyncResponse": format!("{}{}", out.stdout, out.stderr),
        }));
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let now = tokio::time::Instant::now();
    {
        let mut sessions = emulator.exec_sessions.lock();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            token.clone(),
            ExecSession {
                group,
                container: container.name.clone(),
                command: req.command.clone(),
                expires: now + Duration::from_secs(60),
            },
        );
    }
    Ok(serde_json::json!({
        "WebSocketUri": format!("ws://{}/exec/?s={token}", ctx.host),
        "HttpUrl": format!("{}://{}/exec/?s={token}", ctx.scheme, ctx.host),
        "SyncResponse": "",
    }))
}

async fn exec_ws(
    State(emulator): State<Arc<Emulator>>,
    Query(q): Query<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let session = q
        .get("s")
        .and_then(|s| emulator.exec_sessions.lock().remove(s));
    let Some(session) = session.filter(|s| s.expires > tokio::time::Instant::now()) else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            "unknown or expired exec session",
        )
            .into_response();
    };
    let Ok(ws) = ws else {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "expected a WebSocket upgrade",
        )
            .into_response();
    };
    ws.on_upgrade(move |socket| run_exec_session(socket, session))
}

fn frame(stream: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(stream);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

async fn run_exec_session(mut socket: WebSocket, session: ExecSession) {
    let Some(container) = session
        .group
        .spec
        .containers
        .iter()
        .find(|c| c.name == session.container)
    else {
        let _ = socket.send(frame(3, b"126")).await;
        return;
    };
    let ctx = exec::ExecContext::new(&session.group, container);
    let mut exit_code = 0;
    if exec::is_interactive_shell(&session.command) {
        let mut pending = String::new();
        'session: while let Some(Ok(msg)) = socket.recv().await {
            let data: Vec<u8> = match msg {
                Message::Binary(b) if b.first() == Some(&0) => b[1..].to_vec(),
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            pending.push_str(&String::from_utf8_lossy(&data));
            while let Some(pos) = pending.find('\n') {
                let line: String = pending.drain(..=pos).collect();
                let (out, exited) = exec::run_script(line.trim_end(), &ctx).await;
                exit_code = out.exit_code;
                if !out.stdout.is_empty()
                    && socket.send(frame(1, out.stdout.as_bytes())).await.is_err()
                {
                    return;
                }
                if !out.stderr.is_empty()
                    && socket.send(frame(2, out.stderr.as_bytes())).await.is_err()
                {
                    return;
                }
                if exited {
                    break 'session;
                }
            }
        }
    } else {
        let (out, _) = exec::run(&session.command, &ctx).await;
        exit_code = out.exit_code;
        if !out.stdout.is_empty() {
            let _ = socket.send(frame(1, out.stdout.as_bytes())).await;
        }
        if !out.stderr.is_empty() {
            let _ = socket.send(frame(2, out.stderr.as_bytes())).await;
        }
    }
    let _ = socket
        .send(frame(3, exit_code.to_string().as_bytes()))
        .await;
    let _ = socket.send(Message::Close(None)).await;
}
