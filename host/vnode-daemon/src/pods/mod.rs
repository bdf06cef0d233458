//! The pod controller: a kube-runtime watcher + reflector on the pods bound to this node
//! (`spec.nodeName=<node>`), a [`queue::KeyedQueue`] (per-pod serialised, bounded across
//! pods), and a worker that drives each pod through the pure [`state::step`] function,
//! executing each [`state::Action`] through a [`PodPath`].
//!
//! [`PodPath`] is the seam to the other crates: resolve references, run the placement and
//! translator plugins (`vnode-plugin-host`, inputs from `vnode-mapping`), create/delete the
//! container group (`vnode-eci`). Until those are wired, [`UnwiredPodPath`] stops every pod at
//! the first step with a Warning event saying so: no container group is ever faked.

pub mod queue;
pub mod state;

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::kubelet_api::{BackendError, LogOptions, LogStream, PodBackend, Summary};
use crate::metrics::Metrics;
use queue::KeyedQueue;
use state::{Action, FailureKind, Outcome, PodFacts, PodState};

/// Why a pod step failed, with the event it should produce.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct StepError {
    /// Retry policy.
    pub kind: FailureKind,
    /// Event reason (CamelCase), e.g. `MandatorySecretNotFound`, `PlacementRefused`.
    pub reason: String,
    /// Human message for the event.
    pub message: String,
}

impl StepError {
    /// A failure of `kind` with an event `reason` and `message`.
    pub fn new(kind: FailureKind, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// What was created for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    /// ECI container group ID.
    pub id: String,
    /// Zone it landed in.
    pub zone: Option<String>,
}

/// The pod path: everything a pod needs from the outside world, in order. Implementations
/// keep per-pod intermediate results (resolved pod, placement attempts, request) keyed by
/// pod UID between the calls; the controller only sequences them.
pub trait PodPath: Send + Sync + 'static {
    /// Fetch ConfigMaps/Secrets/env references (missing optional → event and continue).
    fn resolve(&self, pod: &Pod) -> impl Future<Output = Result<(), StepError>> + Send;
    /// Run the placement plugin.
    fn place(&self, pod: &Pod) -> impl Future<Output = Result<(), StepError>> + Send;
    /// Run the translator plugin.
    fn translate(&self, pod: &Pod) -> impl Future<Output = Result<(), StepError>> + Send;
    /// CreateContainerGroup with the UID-derived ClientToken, trying placement attempts in order.
    fn create(&self, pod: &Pod) -> impl Future<Output = Result<GroupRef, StepError>> + Send;
    /// DeleteContainerGroup.
    fn delete(
        &self,
        pod: &Pod,
        group: &GroupRef,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
}

/// The pod path of a build where plugins and ECI are not wired into the daemon yet: every
/// pod stops at the first step with a Warning event, and is re-checked every minute.
pub struct UnwiredPodPath;

const UNWIRED: &str = "this vnode build cannot create pods yet: the placement/translator plugins and the ECI client are not wired into the daemon";

impl PodPath for UnwiredPodPath {
    async fn resolve(&self, _pod: &Pod) -> Result<(), StepError> {
        Err(StepError::new(
            FailureKind::Unavailable,
            "PodPathUnavailable",
            UNWIRED,
        ))
    }
    async fn place(&self, _pod: &Pod) -> Result<(), StepError> {
        Err(StepError::new(
            FailureKind::Unavailable,
            "PodPathUnavailable",
            UNWIRED,
        ))
    }
    async fn translate(&self, _pod: &Pod) -> Result<(), StepError> {
        Err(StepError::new(
            FailureKind::Unavailable,
            "PodPathUnavailable",
            UNWIRED,
        ))
    }
    async fn create(&self, _pod: &Pod) -> Result<GroupRef, StepError> {
        Err(StepError::new(
            FailureKind::Unavailable,
            "PodPathUnavailable",
            UNWIRED,
        ))
    }
    async fn delete(&self, _pod: &Pod, _group: &GroupRef) -> Result<(), StepError> {
        Err(StepError::new(
            FailureKind::Unavailable,
            "PodPathUnavailable",
            UNWIRED,
        ))
    }
}

/// Our record of one pod.
#[derive(Debug, Clone)]
struct PodRecord {
    uid: String,
    state: PodState,
    group: Option<GroupRef>,
    attempts: u32,
    last_event: Option<String>,
}

/// Shared state of the controller (also the kubelet API's [`PodBackend`]).
pub struct PodController<P> {
    client: Client,
    node_name: String,
    path: P,
    store: Store<Pod>,
    records: Mutex<HashMap<String, PodRecord>>,
    recorder: Recorder,
    metrics: Arc<Metrics>,
}

/// Builds the controller and the writer half of its pod store (fed by [`run`]).
pub fn controller<P: PodPath>(
    client: Client,
    node_name: String,
    identity: String,
    path: P,
    metrics: Arc<Metrics>,
) -> (Arc<PodController<P>>, reflector::store::Writer<Pod>) {
    let (store, writer) = reflector::store();
    let reporter = Reporter {
        controller: "vnode".into(),
        instance: Some(identity),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let ctl = Arc::new(PodController {
        client,
        node_name,
        path,
        store,
        records: Mutex::new(HashMap::new()),
        recorder,
        metrics,
    });
    (ctl, writer)
}

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn object_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// Runs the watcher and the workers until `token` is cancelled. `ready` turns true once the
/// pod store has its first full listing.
pub async fn run<P: PodPath>(
    ctl: Arc<PodController<P>>,
    writer: reflector::store::Writer<Pod>,
    workers: usize,
    token: CancellationToken,
) {
    let (queue, rx) = KeyedQueue::new(ctl.metrics.pod_queue_depth.clone());
    let pods: Api<Pod> = Api::all(ctl.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctl.node_name));
    let stream = watcher(pods, cfg)
        .default_backoff()
        .modify(|pod: &mut Pod| {
            // Managed fields are large and never read here.
            pod.metadata.managed_fields = None;
        })
        .reflect(writer)
        .touched_objects();
    let feeder = {
        let queue = queue.clone();
        let token = token.clone();
        async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                let next = tokio::select! {
                    biased;
                    () = token.cancelled() => break,
                    n = stream.next() => n,
                };
                match next {
                    Some(Ok(pod)) => queue.enqueue(&key_of(&pod)),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "pod watch error; retrying with backoff")
                    }
                    None => break,
                }
            }
        }
    };
    let worker_ctl = ctl.clone();
    let worker_queue = queue.clone();
    let worker_token = token.clone();
    let workers_fut = queue.run(rx, workers, token.clone(), move |key| {
        let ctl = worker_ctl.clone();
        let queue = worker_queue.clone();
        let token = worker_token.clone();
        async move { ctl.work(&key, &queue, &token).await }
    });
    tokio::join!(feeder, workers_fut);
    tracing::info!("pod controller stopped");
}

impl<P: PodPath> PodController<P> {
    /// The pod store (for readiness: `store().wait_until_ready()`).
    pub fn store(&self) -> &Store<Pod> {
        &self.store
    }

    async fn finish_deletion(&self, pod: &Pod) {
        let (Some(ns), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => tracing::info!(pod = %key_of(pod), "pod deletion finished"),
            // Already gone, or a new pod with the same name (UID precondition): nothing to do.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %key_of(pod), error = %e, "finishing pod deletion failed; retried on the next event")
            }
        }
    }

    async fn event(&self, pod: &Pod, type_: EventType, reason: &str, note: &str, action: &str) {
        let ev = KubeEvent {
            type_,
            reason: reason.to_string(),
            note: Some(note.to_string()),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &object_ref(pod)).await {
            tracing::warn!(pod = %key_of(pod), error = %e, "publishing event failed");
        }
    }

    /// Drives one pod until its action needs to wait.
    async fn work(&self, key: &str, queue: &KeyedQueue, token: &CancellationToken) {
        let Some((namespace, name)) = key.split_once('/') else {
            return;
        };
        let pod = self.store.get(&ObjectRef::new(name).within(namespace));
        let Some(pod) = pod else {
            // Gone from the API (force-deleted). Its group, if any, is the reconcile
            // sweep's to delete once ECI is wired; here we only drop our record.
            self.records.lock().remove(key);
            return;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut record = {
            let mut records = self.records.lock();
            let r = records.entry(key.to_string()).or_insert_with(|| PodRecord {
                uid: uid.clone(),
                state: PodState::Pending,
                group: None,
                attempts: 0,
                last_event: None,
            });
            if r.uid != uid {
                // Same name, new pod (StatefulSet): start over; never act on the old UID's record.
                *r = PodRecord {
                    uid: uid.clone(),
                    state: PodState::Pending,
                    group: None,
                    attempts: 0,
                    last_event: None,
                };
            }
            r.clone()
        };
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        let mut last: Option<Outcome> = None;
        // Bounded: one pass through the whole happy path is at most 8 steps.
        for _ in 0..10 {
            let facts = PodFacts {
                deleting: pod.metadata.deletion_timestamp.is_some(),
                has_group: record.group.is_some(),
                terminal: matches!(phase, "Succeeded" | "Failed"),
                restart_never: pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref())
                    == Some("Never"),
                attempts: record.attempts,
            };
            let (next, action) = state::step(record.state, facts, last);
            record.state = next;
            let result = match action {
                Action::Resolve => Some(self.path.resolve(&pod).await.map(|_| None)),
                Action::Place => Some(self.path.place(&pod).await.map(|_| None)),
                Action::Translate => Some(self.path.translate(&pod).await.map(|_| None)),
                Action::Create => Some(self.path.create(&pod).await.map(Some)),
                Action::DeleteGroup => match record.group.clone() {
                    Some(g) => Some(self.path.delete(&pod, &g).await.map(|_| None)),
                    None => Some(Ok(None)),
                },
                Action::Watch => break,
                Action::RetryAfter(d) | Action::WaitForChange(d) => {
                    queue.enqueue_after(key.to_string(), d, token.clone());
                    break;
                }
                Action::FinishDeletion => {
                    // The kubelet's half of pod termination: nothing runs any more (the group
                    // is deleted or was never created), so remove the object now. The UID
                    // precondition keeps a same-name successor safe.
                    self.finish_deletion(&pod).await;
                    break;
                }
                Action::MarkFailed => {
                    tracing::warn!(pod = %key, "pod failed permanently (restartPolicy Never)");
                    break;
                }
                Action::Forget => {
                    self.records.lock().remove(key);
                    return;
                }
            };
            match result {
                Some(Ok(group)) => {
                    self.metrics.pod_step(record.state.label(), "ok");
                    if let Some(g) = group {
                        record.group = Some(g);
                    }
                    record.attempts = 0;
                    last = Some(Outcome::Done);
                }
                Some(Err(e)) => {
                    let outcome = match e.kind {
                        FailureKind::Transient => "retry",
                        FailureKind::Permanent => "failed",
                        FailureKind::Unavailable => "blocked",
                    };
                    self.metrics.pod_step(record.state.label(), outcome);
                    record.attempts = record.attempts.saturating_add(1);
                    // One event per distinct reason, not one per retry.
                    if record.last_event.as_deref() != Some(e.reason.as_str()) {
                        tracing::warn!(pod = %key, state = record.state.label(), reason = %e.reason, message = %e.message, "pod step failed");
                        self.event(
                            &pod,
                            EventType::Warning,
                            &e.reason,
                            &e.message,
                            record.state.label(),
                        )
                        .await;
                        record.last_event = Some(e.reason.clone());
                    }
                    last = Some(Outcome::Failed(e.kind));
                }
                None => {}
            }
        }
        self.records.lock().insert(key.to_string(), record);
    }
}

/// The kubelet API over the controller: pods from the store; the backend-side answers
/// (running pods, logs, stats) come from ECI once it is wired.
impl<P: PodPath> PodBackend for Arc<PodController<P>> {
    async fn pods(&self) -> Result<Vec<Pod>, BackendError> {
        Ok(self.store.state().iter().map(|p| (**p).clone()).collect())
    }
    async fn running_pods(&self) -> Result<Vec<Pod>, BackendError> {
        let running: Vec<String> = self
            .records
            .lock()
            .iter()
            .filter(|(_, r)| r.group.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        Ok(self
            .store
            .state()
            .iter()
            .filter(|p| running.contains(&key_of(p)))
            .map(|p| (**p).clone())
            .collect())
    }
    async fn container_logs(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        _o: LogOptions,
    ) -> Result<LogStream, BackendError> {
        let Some(p) = self.store.get(&ObjectRef::new(pod).within(ns)) else {
            return Err(BackendError::NotFound(format!(
                "pod {ns}/{pod} is not on node {}",
                self.node_name
            )));
        };
        let known = p
            .spec
            .as_ref()
            .is_some_and(|s| s.containers.iter().any(|c| c.name == container));
        if !known {
            return Err(BackendError::NotFound(format!(
                "container {container} is not in pod {ns}/{pod}"
            )));
        }
        Err(BackendError::NotImplemented(
            "container logs come from ECI DescribeContainerLog, not wired into this build".into(),
        ))
    }
    async fn stats_summary(&self) -> Result<Summary, BackendError> {
        Ok(Summary::empty(&self.node_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeApi;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Records calls; `create` fails transiently once, then succeeds.
    #[derive(Default)]
    struct ScriptedPath {
        calls: Mutex<Vec<&'static str>>,
        create_failures: AtomicUsize,
    }

    impl PodPath for Arc<ScriptedPath> {
        async fn resolve(&self, _pod: &Pod) -> Result<(), StepError> {
            self.calls.lock().push("resolve");
            Ok(())
        }
        async fn place(&self, _pod: &Pod) -> Result<(), StepError> {
            self.calls.lock().push("place");
            Ok(())
        }
        async fn translate(&self, _pod: &Pod) -> Result<(), StepError> {
            self.calls.lock().push("translate");
            Ok(())
        }
        async fn create(&self, _pod: &Pod) -> Result<GroupRef, StepError> {
            self.calls.lock().push("create");
            if self.create_failures.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(StepError::new(
                    FailureKind::Transient,
                    "Throttled",
                    "ECI throttled",
                ));
            }
            Ok(GroupRef {
                id: "eci-1".into(),
                zone: Some("cn-hangzhou-j".into()),
            })
        }
        async fn delete(&self, _pod: &Pod, _g: &GroupRef) -> Result<(), StepError> {
            self.calls.lock().push("delete");
            Ok(())
        }
    }

    fn pod(deleting: bool) -> Pod {
        let mut v = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "nginx", "namespace": "default", "uid": "u-1"},
            "spec": {"nodeName": "vk", "containers": [{"name": "nginx", "image": "nginx"}]}
        });
        if deleting {
            v["metadata"]["deletionTimestamp"] = serde_json::json!("2026-11-25T18:00:00Z");
        }
        serde_json::from_value(v).expect("pod")
    }

    fn put_in_store(writer: &mut reflector::store::Writer<Pod>, p: Pod) {
        writer.apply_watcher_event(&watcher::Event::Apply(p));
    }

    #[tokio::test]
    async fn worker_walks_the_path_retries_transients_and_deletes() {
        let fake = FakeApi::new();
        let path = Arc::new(ScriptedPath::default());
        let (ctl, mut writer) = controller(
            fake.client(),
            "vk".into(),
            "test".into(),
            path.clone(),
            Arc::new(Metrics::new()),
        );
        put_in_store(&mut writer, pod(false));
        let (queue, _rx) = KeyedQueue::new(Default::default());
        let token = CancellationToken::new();
        ctl.work("default/nginx", &queue, &token).await;
        assert_eq!(
            *path.calls.lock(),
            vec!["resolve", "place", "translate", "create"]
        );
        assert_eq!(
            ctl.records.lock()["default/nginx"].state,
            PodState::Creating
        );
        // The retry (idempotent create) succeeds.
        ctl.work("default/nginx", &queue, &token).await;
        assert_eq!(ctl.records.lock()["default/nginx"].state, PodState::Running);
        assert_eq!(ctl.running_pods().await.expect("list").len(), 1);
        put_in_store(&mut writer, pod(true));
        fake.put(
            "/api/v1/namespaces/default/pods/nginx",
            serde_json::to_value(pod(true)).expect("json"),
        );
        ctl.work("default/nginx", &queue, &token).await;
        assert_eq!(path.calls.lock().last(), Some(&"delete"));
        assert_eq!(ctl.records.lock()["default/nginx"].state, PodState::Gone);
        assert!(
            fake.get("/api/v1/namespaces/default/pods/nginx").is_none(),
            "pod object removed after the group"
        );
        token.cancel();
    }

    #[tokio::test]
    async fn unwired_path_stops_with_one_honest_event() {
        let fake = FakeApi::new();
        let (ctl, mut writer) = controller(
            fake.client(),
            "vk".into(),
            "test".into(),
            UnwiredPodPath,
            Arc::new(Metrics::new()),
        );
        put_in_store(&mut writer, pod(false));
        let (queue, _rx) = KeyedQueue::new(Default::default());
        let token = CancellationToken::new();
        ctl.work("default/nginx", &queue, &token).await;
        ctl.work("default/nginx", &queue, &token).await;
        let posts = fake.count(
            &http::Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events",
        );
        assert_eq!(posts, 1, "one event per distinct reason");
        assert_eq!(ctl.records.lock()["default/nginx"].state, PodState::Pending);
        assert!(ctl.records.lock()["default/nginx"].group.is_none());
        let logs = ctl
            .container_logs("default", "nginx", "nginx", LogOptions::default())
            .await;
        assert!(matches!(logs, Err(BackendError::NotImplemented(_))));
        assert!(matches!(
            ctl.container_logs("default", "nginx", "sidecar", LogOptions::default())
                .await,
            Err(BackendError::NotFound(_))
        ));
        token.cancel();
    }
}
