//! [`EciPodBackend`]: the kubelet API's data from the pod store and ECI.
//!
//! - `/pods`: every pod in the store (the reflector watches only this node's pods).
//! - `/runningpods/`: pods that have a container group (in the [`GroupIndex`], or recorded in
//!   the pod's `vnode.io/container-group-id` annotation) and are not finished.
//! - logs: `DescribeContainerLog`, always with `Timestamps=true` and ECI's maximum `Tail`, the
//!   kubelet options applied here exactly ([`super::logs`]); `follow` polls ECI every
//!   [`EciBackendOptions::log_poll_interval`] and emits each new line once.
//! - exec: `ExecContainerCommand`, then its `WebSocketUri` (ECI's framing: binary messages
//!   whose first byte is the stream, 0 stdin, 1 stdout, 2 stderr, 3 exit code).
//! - stats: `DescribeContainerGroupMetric` per group, cached (see [`EciBackendOptions`]).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use vnode_eci::model::{
    ContainerGroupStatus, DescribeContainerGroupMetricRequest, DescribeContainerLogRequest,
    ExecContainerCommandRequest, MetricRecord,
};
use vnode_eci::{EciClient, EciError};

use super::exec::{ExecInput, ExecOutput, ExecRequest, ExecSession};
use super::logs::{self, ByteBudget, FollowCursor, LogLine};
use super::stats::{
    ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats, Summary,
};
use super::{BackendError, LogOptions, LogStream, PodBackend};
use crate::groups::{GroupIndex, annotations};
use crate::pods::store::PodStore;

/// Tunables of [`EciPodBackend`]. The defaults are sized against ECI's documented
/// per-account quotas (see each field).
#[derive(Debug, Clone)]
pub struct EciBackendOptions {
    /// How often a `follow` stream polls `DescribeContainerLog`. The action's quota is 500
    /// calls/minute per account; at 5 s one follower costs 12 calls/minute.
    pub log_poll_interval: Duration,
    /// Concurrent `follow` streams; more are refused with 503 instead of throttling the
    /// account. 32 followers × 12 calls/minute = 384 of the 500, leaving room for one-shot
    /// `kubectl logs`.
    pub max_log_followers: usize,
    /// A `follow` stream ends with an error after this many consecutive failed polls.
    pub follow_failure_limit: u32,
    /// Shortest time a group's metric sample is reused. metrics-server scrapes every 60 s
    /// by default (15 s at the finest) and ECI samples at 15 s periods, so 30 s keeps every
    /// scrape's sample newer than the last one at least every other scrape while halving calls.
    pub stats_min_ttl: Duration,
    /// Share of `DescribeContainerGroupMetric`'s quota (2000 calls/minute per account) the
    /// summary may use; the TTL grows with the number of groups so that
    /// `groups × 60 s / ttl ≤ this`. Half the quota leaves the rest to other consumers.
    pub stats_calls_per_minute: u32,
    /// Metric calls in flight at once during one refresh.
    pub stats_concurrency: usize,
}

impl Default for EciBackendOptions {
    fn default() -> Self {
        Self {
            log_poll_interval: Duration::from_secs(5),
            max_log_followers: 32,
            follow_failure_limit: 5,
            stats_min_ttl: Duration::from_secs(30),
            stats_calls_per_minute: 1000,
            stats_concurrency: 8,
        }
    }
}

impl EciBackendOptions {
    /// The metric cache TTL for `groups` container groups.
    pub fn stats_ttl(&self, groups: usize) -> Duration {
        let per_minute = u64::from(self.stats_calls_per_minute.max(1));
        let needed = Duration::from_millis((groups as u64).saturating_mul(60_000) / per_minute);
        self.stats_min_ttl.max(needed)
    }
}

/// One group's last metric answer.
#[derive(Debug, Clone)]
struct CachedMetric {
    fetched: Instant,
    /// The newest sample (`None`: the group has none yet), or why the call failed.
    sample: Result<Option<MetricRecord>, String>,
}

struct Inner {
    store: PodStore,
    index: Arc<GroupIndex>,
    eci: Arc<EciClient>,
    node_name: String,
    options: EciBackendOptions,
    started: Timestamp,
    followers: Arc<Semaphore>,
    /// Serialises refreshes so concurrent scrapes share one round of calls.
    metrics: tokio::sync::Mutex<HashMap<String, CachedMetric>>,
}

/// The kubelet API backend over the pod store, the [`GroupIndex`] and ECI. Cheap to clone.
#[derive(Clone)]
pub struct EciPodBackend {
    inner: Arc<Inner>,
}

impl EciPodBackend {
    /// A backend for node `node_name`.
    pub fn new(
        store: PodStore,
        index: Arc<GroupIndex>,
        eci: Arc<EciClient>,
        node_name: String,
        options: EciBackendOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                index,
                eci,
                node_name,
                followers: Arc::new(Semaphore::new(options.max_log_followers)),
                options,
                started: Timestamp::now(),
                metrics: tokio::sync::Mutex::new(HashMap::new()),
            }),
        }
    }
}

#[cfg(test)]
impl EciPodBackend {
    /// Follow permits not in use.
    pub(crate) fn followers_available(&self) -> usize {
        self.inner.followers.available_permits()
    }
}

fn pod_uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn container_status<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|c| c.name == container)
}

fn eci_error(group: &str, e: EciError) -> BackendError {
    match e {
        EciError::NotFound { .. } => {
            BackendError::NotFound(format!("container group {group} does not exist in ECI"))
        }
        EciError::Throttled { .. } | EciError::Server { .. } | EciError::Transport { .. } => {
            BackendError::Unavailable(format!("ECI: {e}"))
        }
        EciError::InvalidParameter { .. } | EciError::Conflict { .. } => {
            BackendError::InvalidInput(format!("ECI refused: {e}"))
        }
        other => BackendError::Internal(format!("ECI: {other}")),
    }
}

impl Inner {
    fn pod(&self, namespace: &str, name: &str) -> Result<Arc<Pod>, BackendError> {
        self.store
            .pod(namespace, name)
            .map(Arc::new)
            .ok_or_else(|| {
                BackendError::NotFound(format!(
                    "pod {namespace}/{name} is not on node {}",
                    self.node_name
                ))
            })
    }

    /// The pod's container group: the index first (it knows groups before the annotation
    /// is written), the annotation otherwise.
    fn group_of(&self, pod: &Pod) -> Option<String> {
        let uid = pod.metadata.uid.as_deref()?;
        self.index.get(uid).map(|e| e.id).or_else(|| {
            pod.annotations()
                .get(annotations::GROUP_ID)
                .filter(|id| !id.is_empty())
                .cloned()
        })
    }

    fn group_is_terminal(&self, uid: &str) -> bool {
        self.index
            .get(uid)
            .and_then(|e| e.status)
            .is_some_and(|s| ContainerGroupStatus::parse(&s).is_terminal())
    }

    /// Pod, container and group of a request, or the error the kubelet would give.
    fn target(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        init_allowed: bool,
    ) -> Result<(Arc<Pod>, String), BackendError> {
        let pod = self.pod(namespace, name)?;
        let spec = pod.spec.as_ref();
        let known = spec.is_some_and(|s| {
            s.containers.iter().any(|c| c.name == container)
                || (init_allowed
                    && s.init_containers
                        .iter()
                        .flatten()
                        .any(|c| c.name == container))
        });
        if !known {
            return Err(BackendError::NotFound(format!(
                "container {container:?} is not valid for pod {namespace}/{name}"
            )));
        }
        let Some(group) = self.group_of(&pod) else {
            return Err(BackendError::InvalidInput(format!(
                "container {container:?} in pod {namespace}/{name} is waiting to start: its ECI container group is not created yet"
            )));
        };
        Ok((pod, group))
    }

    async fn fetch_log(
        &self,
        group: &str,
        container: &str,
        start: Option<Timestamp>,
        previous: bool,
    ) -> Result<Vec<LogLine>, BackendError> {
        let request = DescribeContainerLogRequest {
            container_group_id: group.to_string(),
            container_name: container.to_string(),
            tail: Some(logs::ECI_MAX_TAIL),
            start_time: start.map(logs::eci_start_time),
            timestamps: Some(true),
            last_time: previous.then_some(true),
            ..DescribeContainerLogRequest::default()
        };
        let response = self
            .eci
            .describe_container_log(&request)
            .await
            .map_err(|e| eci_error(group, e))?;
        let lines = logs::parse_content(&response.content, start.unwrap_or(Timestamp::UNIX_EPOCH));
        if lines.len() >= logs::ECI_MAX_TAIL as usize {
            tracing::debug!(
                group,
                container,
                "DescribeContainerLog answered with its maximum number of lines; older lines are not retrievable"
            );
        }
        Ok(lines)
    }
}

/// The state of one `follow` stream between polls.
struct Follow {
    inner: Arc<Inner>,
    namespace: String,
    name: String,
    uid: String,
    container: String,
    group: String,
    restarts: i32,
    cursor: FollowCursor,
    budget: ByteBudget,
    timestamps: bool,
    failures: u32,
    done: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Follow {
    /// False once the container instance we follow has ended or its pod/group went away;
    /// the stream then polls one last time (for the final lines) and ends.
    fn still_running(&self) -> bool {
        let Ok(pod) = self.inner.pod(&self.namespace, &self.name) else {
            return false;
        };
        if pod_uid(&pod) != self.uid || pod.metadata.deletion_timestamp.is_some() {
            return false;
        }
        if self.inner.group_of(&pod).as_deref() != Some(self.group.as_str())
            || self.inner.group_is_terminal(&self.uid)
        {
            return false;
        }
        container_status(&pod, &self.container).is_none_or(|s| {
            s.restart_count == self.restarts
                && s.state.as_ref().is_none_or(|st| st.terminated.is_none())
        })
    }

    /// Waits for and returns the next chunk of output, or `None` at the end.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, BackendError>> {
        while !self.done {
            tokio::time::sleep(self.inner.options.log_poll_interval).await;
            let last = !self.still_running();
            match self
                .inner
                .fetch_log(
                    &self.group,
                    &self.container,
                    self.cursor.next_start(),
                    false,
                )
                .await
            {
                Ok(lines) => {
                    self.failures = 0;
                    let advance = self.cursor.advance(lines);
                    if advance.realigned {
                        tracing::debug!(group = %self.group, container = %self.container, "log follow realigned with ECI's answer");
                    }
                    self.done = last;
                    if !advance.new_lines.is_empty() {
                        let chunk = self
                            .budget
                            .take(logs::render(&advance.new_lines, self.timestamps));
                        if self.budget.exhausted() {
                            self.done = true;
                        }
                        if !chunk.is_empty() {
                            return Some(Ok(chunk));
                        }
                    }
                }
                Err(BackendError::NotFound(_)) => self.done = true,
                Err(e) => {
                    self.failures += 1;
                    tracing::warn!(group = %self.group, container = %self.container, failures = self.failures, error = %e, "log follow poll failed");
                    if last || self.failures >= self.inner.options.follow_failure_limit {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
        }
        None
    }
}

impl PodBackend for EciPodBackend {
    async fn pods(&self) -> Result<Vec<Pod>, BackendError> {
        Ok(self.inner.store.pods())
    }

    async fn running_pods(&self) -> Result<Vec<Pod>, BackendError> {
        Ok(self
            .inner
            .store
            .pods()
            .into_iter()
            .filter(|p| {
                self.inner.group_of(p).is_some()
                    && !is_finished(p)
                    && !self.inner.group_is_terminal(&pod_uid(p))
            })
            .collect())
    }

    async fn container_logs(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        options: LogOptions,
    ) -> Result<LogStream, BackendError> {
        let inner = &self.inner;
        let (pod, group) = inner.target(namespace, name, container, true)?;
        let status = container_status(&pod, container);
        if !options.previous
            && let Some(waiting) = status
                .and_then(|s| s.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
            && status.is_some_and(|s| s.last_state.as_ref().is_none_or(|l| l.terminated.is_none()))
        {
            return Err(BackendError::InvalidInput(format!(
                "container {container:?} in pod {namespace}/{name} is waiting to start: {}",
                waiting.reason.as_deref().unwrap_or("ContainerCreating")
            )));
        }
        let since = logs::since_bound(&options, Timestamp::now());
        let lines = inner
            .fetch_log(&group, container, since, options.previous)
            .await?;
        let mut budget = ByteBudget::new(options.limit_bytes);
        let first = budget.take(logs::render(
            logs::select(&lines, since, options.tail_lines),
            options.timestamps,
        ));
        let finished = status
            .and_then(|s| s.state.as_ref())
            .is_some_and(|s| s.terminated.is_some())
            || is_finished(&pod)
            || inner.group_is_terminal(&pod_uid(&pod));
        let head = futures::stream::iter((!first.is_empty()).then_some(Ok(first)));
        if !options.follow || options.previous || budget.exhausted() || finished {
            return Ok(Box::pin(head));
        }
        let permit = inner.followers.clone().try_acquire_owned().map_err(|_| {
            BackendError::Unavailable(format!(
                "too many log streams are being followed on this node (limit {}); try again later",
                inner.options.max_log_followers
            ))
        })?;
        let follow = Follow {
            inner: inner.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: pod_uid(&pod),
            container: container.to_string(),
            group,
            restarts: status.map_or(0, |s| s.restart_count),
            cursor: FollowCursor::new(&lines, since),
            budget,
            timestamps: options.timestamps,
            failures: 0,
            done: false,
            _permit: permit,
        };
        // Polling happens only while the body is being read: when the client goes away,
        // hyper drops the stream and with it the state, so nothing keeps polling.
        let tail = futures::stream::unfold(follow, |mut f| async move {
            let chunk = f.next_chunk().await?;
            Some((chunk, f))
        });
        Ok(Box::pin(head.chain(tail)))
    }

    async fn stats_summary(&self) -> Result<Summary, BackendError> {
        let inner = &self.inner;
        let pods: Vec<(Arc<Pod>, String)> = inner
            .store
            .pods()
            .into_iter()
            .filter(|p| !is_finished(p))
            .filter_map(|p| inner.group_of(&p).map(|g| (Arc::new(p), g)))
            .collect();
        let ttl = inner.options.stats_ttl(pods.len());
        let mut cache = inner.metrics.lock().await;
        cache.retain(|id, _| pods.iter().any(|(_, g)| g == id));
        let now = Instant::now();
        let stale: Vec<String> = pods
            .iter()
            .map(|(_, g)| g)
            .filter(|g| {
                cache
                    .get(*g)
                    .is_none_or(|c| now.duration_since(c.fetched) >= ttl)
            })
            .cloned()
            .collect();
        let start = logs::eci_start_time(
            Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(120))
                .unwrap_or(Timestamp::UNIX_EPOCH),
        );
        let fetched: Vec<(String, CachedMetric)> = futures::stream::iter(stale)
            .map(|group| {
                let request = DescribeContainerGroupMetricRequest {
                    container_group_id: group.clone(),
                    start_time: Some(start.clone()),
                    end_time: None,
                    period: Some("15".into()),
                };
                async move {
                    let sample = match inner.eci.describe_container_group_metric(&request).await
                    {
                        Ok(r) => Ok(newest(r.records)),
                        Err(e) => {
                            tracing::warn!(group = %group, error = %e, "DescribeContainerGroupMetric failed; the pod is left out of the summary");
                            Err(e.to_string())
                        }
                    };
                    (
                        group,
                        CachedMetric {
                            fetched: Instant::now(),
                            sample,
                        },
                    )
                }
            })
            .buffer_unordered(inner.options.stats_concurrency.max(1))
            .collect()
            .await;
        cache.extend(fetched);
        let summary = build_summary(&inner.node_name, inner.started, &pods, &cache);
        Ok(summary)
    }

    async fn exec(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        container: &str,
        request: ExecRequest,
    ) -> Result<ExecSession, BackendError> {
        let (pod, group) = self.inner.target(namespace, name, container, false)?;
        if let Some(uid) = uid
            && pod_uid(&pod) != uid
        {
            return Err(BackendError::NotFound(format!(
                "pod {namespace}/{name} with UID {uid} is not on node {}",
                self.inner.node_name
            )));
        }
        // ECI's documented limits; refusing here gives a clearer message than ECI's.
        if request.command.len() > 20 || request.command.iter().any(|c| c.len() > 256) {
            return Err(BackendError::InvalidInput(
                "ECI runs commands of at most 20 arguments of at most 256 characters each".into(),
            ));
        }
        let response = self
            .inner
            .eci
            .exec_container_command(&ExecContainerCommandRequest {
                container_group_id: group.clone(),
                container_name: container.to_string(),
                command: request.command.clone(),
                tty: Some(request.tty),
                stdin: Some(request.stdin),
                sync: None,
            })
            .await
            .map_err(|e| eci_error(&group, e))?;
        if response.web_socket_uri.is_empty() {
            return Err(BackendError::Internal(
                "ExecContainerCommand returned no WebSocketUri".into(),
            ));
        }
        let socket = tokio::time::timeout(
            Duration::from_secs(30),
            connect_exec_socket(&response.web_socket_uri),
        )
        .await
        .map_err(|_| {
            BackendError::Unavailable("connecting to ECI's exec stream timed out".into())
        })??;
        Ok(eci_exec_session(socket))
    }
}

/// The newest record of an answer.
fn newest(records: Vec<MetricRecord>) -> Option<MetricRecord> {
    records
        .into_iter()
        .max_by_key(|r| r.timestamp.parse::<Timestamp>().ok())
}

fn non_negative(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

fn build_summary(
    node_name: &str,
    started: Timestamp,
    pods: &[(Arc<Pod>, String)],
    cache: &HashMap<String, CachedMetric>,
) -> Summary {
    let mut out = Vec::new();
    let (mut nano, mut core_ns, mut ws, mut usage) = (0u64, 0u64, 0u64, 0u64);
    let mut newest_sample: Option<Timestamp> = None;
    for (pod, group) in pods {
        // A failed call (or a group not fetched) leaves the pod out; the failure was logged.
        let Some(Ok(sample)) = cache.get(group).map(|c| &c.sample) else {
            continue;
        };
        let status = pod.status.as_ref();
        let pod_ref = PodReference {
            name: pod.name_any(),
            namespace: pod.namespace().unwrap_or_default(),
            uid: pod_uid(pod),
        };
        let start_time = status.and_then(|s| s.start_time.as_ref()).map(|t| t.0);
        let container_start = |name: &str| {
            container_status(pod, name)
                .and_then(|s| s.state.as_ref())
                .and_then(|s| s.running.as_ref())
                .and_then(|r| r.started_at.as_ref())
                .map(|t| t.0)
        };
        let Some(record) = sample else {
            // Running but not sampled yet: the pod and its containers, without usage.
            out.push(PodStats {
                pod_ref,
                start_time,
                containers: pod
                    .spec
                    .iter()
                    .flat_map(|s| s.containers.iter())
                    .map(|c| ContainerStats {
                        name: c.name.clone(),
                        start_time: container_start(&c.name),
                        cpu: None,
                        memory: None,
                    })
                    .collect(),
                cpu: None,
                memory: None,
            });
            continue;
        };
        let time = record
            .timestamp
            .parse::<Timestamp>()
            .unwrap_or_else(|_| Timestamp::now());
        newest_sample = Some(newest_sample.map_or(time, |t| t.max(time)));
        let cpu = |c: &vnode_eci::model::CpuMetric| CpuStats {
            time,
            usage_nano_cores: non_negative(c.usage_nano_cores),
            usage_core_nano_seconds: non_negative(c.usage_core_nano_seconds),
        };
        let memory = |m: &vnode_eci::model::MemoryMetric| MemoryStats {
            time,
            working_set_bytes: non_negative(m.working_set),
            usage_bytes: non_negative(m.usage_bytes),
        };
        nano += non_negative(record.cpu.usage_nano_cores).unwrap_or(0);
        core_ns += non_negative(record.cpu.usage_core_nano_seconds).unwrap_or(0);
        ws += non_negative(record.memory.working_set).unwrap_or(0);
        usage += non_negative(record.memory.usage_bytes).unwrap_or(0);
        out.push(PodStats {
            pod_ref,
            start_time,
            containers: record
                .containers
                .iter()
                .map(|c| ContainerStats {
                    name: c.name.clone(),
                    start_time: container_start(&c.name),
                    cpu: Some(cpu(&c.cpu)),
                    memory: Some(memory(&c.memory)),
                })
                .collect(),
            cpu: Some(cpu(&record.cpu)),
            memory: Some(memory(&record.memory)),
        });
    }
    // The node's usage is the sum of its pods' (a virtual node has nothing else); with no
    // samples it is zero now, which is true and lets `kubectl top node` show the node.
    let time = newest_sample.unwrap_or_else(Timestamp::now);
    Summary {
        node: NodeStats {
            node_name: node_name.to_string(),
            start_time: Some(started),
            cpu: Some(CpuStats {
                time,
                usage_nano_cores: Some(nano),
                usage_core_nano_seconds: Some(core_ns),
            }),
            memory: Some(MemoryStats {
                time,
                working_set_bytes: Some(ws),
                usage_bytes: Some(usage),
            }),
        },
        pods: out,
    }
}

// ------------------------------------------------------------------------------------------
// ECI's exec WebSocket
// ------------------------------------------------------------------------------------------

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type EciSocket = tokio_tungstenite::WebSocketStream<Box<dyn Io>>;

/// TLS for `wss://` exec URLs: the system's roots (ECI's endpoints have public certificates).
fn tls_config() -> Result<Arc<rustls::ClientConfig>, BackendError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no system root certificates found for ECI's exec stream".into());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(BackendError::Internal)
}

async fn connect_exec_socket(uri: &str) -> Result<EciSocket, BackendError> {
    let unavailable = |e: String| BackendError::Unavailable(format!("ECI exec stream: {e}"));
    let url = url::Url::parse(uri).map_err(|e| unavailable(format!("bad WebSocketUri: {e}")))?;
    let secure = match url.scheme() {
        "ws" => false,
        "wss" => true,
        other => return Err(unavailable(format!("unsupported scheme {other:?}"))),
    };
    let host = url
        .host_str()
        .ok_or_else(|| unavailable("WebSocketUri has no host".into()))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| unavailable("WebSocketUri has no port".into()))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if secure {
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| unavailable(e.to_string()))?;
        Box::new(
            tokio_rustls::TlsConnector::from(tls_config()?)
                .connect(name, tcp)
                .await
                .map_err(|e| unavailable(e.to_string()))?,
        )
    } else {
        Box::new(tcp)
    };
    let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    config.max_message_size = Some(super::exec::MAX_MESSAGE_BYTES);
    config.max_frame_size = Some(super::exec::MAX_MESSAGE_BYTES);
    let (socket, _) = tokio_tungstenite::client_async_with_config(uri, io, Some(config))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    Ok(socket)
}

/// Parses ECI's exit frame: decimal text, or a Kubernetes `Status` (in case the service
/// speaks the Kubernetes channel protocol there).
fn parse_exit(data: &[u8]) -> Option<i32> {
    let text = std::str::from_utf8(data).ok()?.trim();
    if let Ok(code) = text.parse::<i32>() {
        return Some(code);
    }
    let status: serde_json::Value = serde_json::from_str(text).ok()?;
    if status["status"] == "Success" {
        return Some(0);
    }
    status["details"]["causes"]
        .as_array()?
        .iter()
        .find(|c| c["reason"] == "ExitCode")
        .and_then(|c| c["message"].as_str())
        .and_then(|m| m.parse().ok())
}

fn eci_exec_session(socket: EciSocket) -> ExecSession {
    let (sink, stream) = socket.split();
    let output = futures::stream::unfold((stream, false), |(mut stream, ended)| async move {
        if ended {
            return None;
        }
        loop {
            let item = match stream.next().await? {
                Ok(Message::Binary(b)) => match b.split_first() {
                    Some((1, rest)) => Ok(ExecOutput::Stdout(Bytes::copy_from_slice(rest))),
                    Some((2, rest)) => Ok(ExecOutput::Stderr(Bytes::copy_from_slice(rest))),
                    Some((3, rest)) => match parse_exit(rest) {
                        Some(code) => return Some((Ok(ExecOutput::Exited(code)), (stream, true))),
                        None => Err(BackendError::Internal(format!(
                            "ECI sent an unreadable exit status {:?}",
                            String::from_utf8_lossy(rest)
                        ))),
                    },
                    _ => continue,
                },
                Ok(Message::Text(t)) => {
                    Ok(ExecOutput::Stdout(Bytes::copy_from_slice(t.as_bytes())))
                }
                Ok(Message::Close(_)) => return None,
                Ok(_) => continue,
                Err(e) => Err(BackendError::Unavailable(format!("ECI exec stream: {e}"))),
            };
            let ended = item.is_err();
            return Some((item, (stream, ended)));
        }
    });
    let input = futures::sink::unfold(sink, |mut sink, event: ExecInput| async move {
        let message = match event {
            ExecInput::Stdin(data) => {
                let mut v = Vec::with_capacity(data.len() + 1);
                v.push(0u8);
                v.extend_from_slice(&data);
                Some(Message::Binary(v.into()))
            }
            // ECI's exec stream documents no resize message; the size stays as created.
            ExecInput::Resize { .. } => None,
            // A WebSocket cannot half-close: ending stdin ends the stream to ECI.
            ExecInput::CloseStdin => Some(Message::Close(None)),
        };
        if let Some(m) = message {
            sink.send(m)
                .await
                .map_err(|e| BackendError::Unavailable(format!("ECI exec stream: {e}")))?;
        }
        Ok::<_, BackendError>(sink)
    });
    ExecSession {
        output: Box::pin(output),
        input: Box::pin(input)
            as Pin<Box<dyn futures::Sink<ExecInput, Error = BackendError> + Send>>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_ttl_keeps_metric_calls_within_the_budget() {
        let o = EciBackendOptions::default();
        assert_eq!(o.stats_ttl(0), Duration::from_secs(30));
        assert_eq!(o.stats_ttl(400), Duration::from_secs(30));
        // 1000 groups at 1000 calls/minute: one call per group per minute.
        assert_eq!(o.stats_ttl(1000), Duration::from_secs(60));
        for groups in [1usize, 10, 600, 1000, 5000] {
            let ttl = o.stats_ttl(groups).as_secs_f64();
            let calls_per_minute = groups as f64 * 60.0 / ttl;
            assert!(
                calls_per_minute <= 1000.0 + 1e-6,
                "{groups}: {calls_per_minute}"
            );
        }
    }

    #[test]
    fn exit_frames_as_text_or_status() {
        assert_eq!(parse_exit(b"0"), Some(0));
        assert_eq!(parse_exit(b" 127\n"), Some(127));
        assert_eq!(
            parse_exit(br#"{"metadata":{},"status":"Success"}"#),
            Some(0)
        );
        assert_eq!(
            parse_exit(
                br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
            ),
            Some(3)
        );
        assert_eq!(parse_exit(b"nope"), None);
    }
}
