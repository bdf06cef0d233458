//! The pod controller: a kube-runtime watcher on the pods bound to this node
//! (`spec.nodeName=<node>`) feeding the compact [`store::PodStore`], a [`queue::KeyedQueue`]
//! (per-pod serialised, bounded across pods), and a worker that drives each pod through the
//! pure [`state::step`] function, executing each [`state::Action`] through a [`PodPath`].
//!
//! [`PodPath`] is the seam to the other crates: resolve references, run the placement and
//! translator plugins (`vnode-plugin-host`, inputs from `vnode-mapping`), create/delete the
//! container group (`vnode-eci`). [`eci_path::EciPodPath`] is the production implementation.
//! The controller owns the Kubernetes side: events (one per distinct failure reason), the
//! one annotation patch after a create, `Failed` status for `restartPolicy: Never` pods that
//! are refused permanently, and finishing deletions. Running pods' status is the observer's.

pub mod activity;
pub mod eci_path;
pub mod queue;
pub mod resolve;
pub mod root_ca;
pub mod state;
pub mod store;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::events::{EventKind, EventSink, Reporter};
use crate::groups;
use crate::kube_client::writes;
use crate::metrics::Metrics;
use queue::KeyedQueue;
use state::{Action, FailureKind, Outcome, PodFacts, PodState};
use store::{PodStore, PodStoreWriter};

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
    /// Wait this long before the retry instead of the backoff (a placement deferral, ECI's
    /// `x-acs-retry-after`).
    pub retry_after: Option<Duration>,
}

impl StepError {
    /// A failure of `kind` with an event `reason` and `message`.
    pub fn new(kind: FailureKind, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same failure, retried after `delay` rather than the backoff.
    pub fn retry_after(mut self, delay: Option<Duration>) -> Self {
        self.retry_after = delay;
        self
    }
}

/// An event the pod path asks the controller to publish on the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Warning (else Normal).
    pub warning: bool,
    /// Event reason, e.g. `Placed`, `OptionalSecretNotFound`.
    pub reason: String,
    /// Event message.
    pub message: String,
}

impl Note {
    /// A Normal event.
    pub fn normal(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason: reason.into(),
            message: message.into(),
        }
    }
    /// A Warning event.
    pub fn warning(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// What was created (or adopted) for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    /// ECI container group ID.
    pub id: String,
    /// Zone it landed in.
    pub zone: Option<String>,
}

/// The result of a successful create (or of adopting a group that already existed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The group.
    pub group: GroupRef,
    /// Pod annotations recording the decision (`groups::annotations::*`), written in one
    /// merge patch.
    pub annotations: BTreeMap<String, String>,
    /// Events to publish (`Created`, `Adopted`).
    pub notes: Vec<Note>,
}

/// The pod path: everything a pod needs from the outside world, in order. Implementations
/// keep per-pod intermediate results (resolved pod, placement attempts, requests) keyed by
/// pod UID between the calls and drop them in [`PodPath::forget`]; the controller only
/// sequences them.
pub trait PodPath: Send + Sync + 'static {
    /// The group pod `uid` already has, once the group index holds a complete listing (so
    /// "none" is known, not guessed). A restart or a lost create response adopts through this.
    fn existing(&self, uid: &str) -> impl Future<Output = Option<GroupRef>> + Send;
    /// Fetch ConfigMaps/Secrets/env references (missing optional → note and continue).
    fn resolve(&self, pod: &Pod) -> impl Future<Output = Result<Vec<Note>, StepError>> + Send;
    /// Run the placement plugin.
    fn place(&self, pod: &Pod) -> impl Future<Output = Result<Vec<Note>, StepError>> + Send;
    /// Run the translator plugin (for the first attempt; later ones on demand in `create`).
    fn translate(&self, pod: &Pod) -> impl Future<Output = Result<Vec<Note>, StepError>> + Send;
    /// CreateContainerGroup with the UID-derived ClientToken, trying placement attempts in
    /// order on no-stock; adopts instead when the pod already has a group.
    fn create(&self, pod: &Pod) -> impl Future<Output = Result<Created, StepError>> + Send;
    /// DeleteContainerGroup (a group that is already gone is success).
    fn delete(
        &self,
        uid: &str,
        group: &GroupRef,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
    /// Drops what the path keeps for pod `uid`.
    fn forget(&self, uid: &str);
}

/// Our record of one pod.
#[derive(Debug, Clone)]
struct PodRecord {
    uid: String,
    state: PodState,
    group: Option<GroupRef>,
    attempts: u32,
    /// Reason of the last failure event (one event per distinct reason, not per retry).
    last_event: Option<String>,
    /// Notes already published, by [`note_identity`], so a re-check does not repeat them.
    /// Hashes rather than the texts: a record lives as long as its pod, and the texts were
    /// ~0.5 KiB of every record.
    published: HashSet<u64>,
    /// Annotations still to write (a failed patch is retried on the next pass).
    pending_annotations: Option<BTreeMap<String, String>>,
}

impl PodRecord {
    fn new(uid: String) -> Self {
        Self {
            uid,
            state: PodState::Pending,
            group: None,
            attempts: 0,
            last_event: None,
            published: HashSet::new(),
            pending_annotations: None,
        }
    }
}

/// Shared state of the controller.
pub struct PodController<P> {
    client: Client,
    node_name: String,
    path: P,
    store: PodStore,
    records: Mutex<HashMap<String, PodRecord>>,
    /// Wakes pods blocked on a missing ConfigMap/Secret when it appears.
    references: Arc<resolve::ReferenceWaiter>,
    events: EventSink,
    metrics: Arc<Metrics>,
    /// Marked whenever a pod is queued for its container group (the create lane).
    create_activity: activity::CreateActivity,
}

/// Builds the controller and the writer half of its pod store (fed by [`run`]).
pub fn controller<P: PodPath>(
    client: Client,
    node_name: String,
    identity: String,
    path: P,
    metrics: Arc<Metrics>,
) -> (Arc<PodController<P>>, PodStoreWriter) {
    let (store, writer) = store::pod_store();
    let events = EventSink::spawn(
        client.clone(),
        Reporter {
            controller: "vnode".into(),
            instance: identity,
        },
    );
    let references = resolve::ReferenceWaiter::new(client.clone());
    let ctl = Arc::new(PodController {
        client,
        node_name,
        path,
        store,
        records: Mutex::new(HashMap::new()),
        references,
        events,
        metrics,
        create_activity: activity::CreateActivity::default(),
    });
    (ctl, writer)
}

/// The identity of a published note: its reason and message (a 64-bit hash; two distinct
/// notes of one pod colliding would only leave the second unpublished).
fn note_identity(reason: &str, message: &str) -> u64 {
    groups::status::event_identity("", reason, message)
}

/// Whether a pod's watch event can change anything for it. A pod that is `Running` with its
/// group recorded, nothing left to annotate, the same UID and no deletion requested only
/// waits ([`state::step`] answers `Watch` for it whatever its phase), so the worker
/// neither decodes it nor touches its record.
fn needs_work(record: Option<&PodRecord>, stored: &store::StoredPod) -> bool {
    let Some(r) = record else {
        return true;
    };
    let idle = r.state == PodState::Running
        && r.group.is_some()
        && r.pending_annotations.is_none()
        && stored.uid() == Some(r.uid.as_str())
        && !stored.deleting();
    !idle
}

/// Whether a pod that needs work still waits for its container group: no record yet, or
/// a record without a group (or of an earlier pod by that name), and no deletion
/// requested. Its work is the create path, the latency-critical kind.
fn awaits_group(record: Option<&PodRecord>, stored: &store::StoredPod) -> bool {
    !stored.deleting()
        && record.is_none_or(|r| r.group.is_none() || stored.uid() != Some(r.uid.as_str()))
}

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// Which pods to work on after each watcher event.
///
/// A (re)list arrives as `Init`, pages of `InitApply`, then `InitDone`, and the reflector's
/// store only swaps in the new listing at `InitDone`. A key queued before that would be
/// looked up in a store that does not have the pod yet (a fresh daemon's store is empty) and
/// dropped — with a 500-pod list page, a daemon starting with 10,000 bound pods used to work
/// on only the last page. So the listing's keys are held back until `InitDone`; then, too,
/// every pod the controller knows that the new listing no longer has is worked on: it was
/// deleted (or unbound) while the watch was down, exactly as if a `Delete` had arrived.
#[derive(Default)]
struct Listing {
    /// Keys of the listing in progress; `None` outside a listing.
    keys: Option<Vec<String>>,
}

impl Listing {
    fn keys_to_work(
        &mut self,
        event: &watcher::Event<Pod>,
        known: impl FnOnce() -> Vec<String>,
    ) -> Vec<String> {
        match event {
            watcher::Event::Apply(pod) | watcher::Event::Delete(pod) => vec![key_of(pod)],
            watcher::Event::Init => {
                self.keys = Some(Vec::new());
                Vec::new()
            }
            watcher::Event::InitApply(pod) => {
                self.keys.get_or_insert_with(Vec::new).push(key_of(pod));
                Vec::new()
            }
            watcher::Event::InitDone => {
                let mut keys = self.keys.take().unwrap_or_default();
                let listed: HashSet<&str> = keys.iter().map(String::as_str).collect();
                let gone: Vec<String> = known()
                    .into_iter()
                    .filter(|k| !listed.contains(k.as_str()))
                    .collect();
                keys.extend(gone);
                keys
            }
        }
    }
}

/// Runs the watcher and the workers until `token` is cancelled. `ready` turns true once the
/// pod store has its first full listing.
pub async fn run<P: PodPath>(
    ctl: Arc<PodController<P>>,
    mut writer: PodStoreWriter,
    workers: usize,
    token: CancellationToken,
) {
    let (queue, rx) = KeyedQueue::new(ctl.metrics.pod_queue_depth.clone());
    let pods: Api<Pod> = Api::all(ctl.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctl.node_name));
    let stream = watcher(pods, cfg).default_backoff().modify(store::trim);
    let feeder = {
        let queue = queue.clone();
        let token = token.clone();
        let ctl = ctl.clone();
        async move {
            let mut stream = std::pin::pin!(stream);
            let mut listing = Listing::default();
            loop {
                let next = tokio::select! {
                    biased;
                    () = token.cancelled() => break,
                    n = stream.next() => n,
                };
                match next {
                    Some(Ok(event)) => {
                        writer.apply_watcher_event(&event);
                        let known = || ctl.records.lock().keys().cloned().collect::<Vec<_>>();
                        for key in listing.keys_to_work(&event, known) {
                            // Echoes of our own writes are dropped here, before they take
                            // a worker slot (and a task) only to find nothing to do.
                            if let Some(lane) = ctl.lane_for(&key) {
                                if lane == queue::Lane::Create {
                                    ctl.create_activity.mark();
                                }
                                queue.enqueue_in(&key, lane);
                            }
                        }
                    }
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
    let pruner = ctl
        .references
        .clone()
        .prune_until(ctl.store.clone(), token.clone());
    tokio::join!(feeder, workers_fut, pruner);
    tracing::info!("pod controller stopped");
}

impl<P: PodPath> PodController<P> {
    /// The pod store (for readiness: `store().wait_until_ready()`).
    pub fn store(&self) -> &PodStore {
        &self.store
    }

    /// When a pod was last queued for its container group (for the observer, which runs
    /// its status writes one chunk at a time while pods are being created).
    pub fn create_activity(&self) -> activity::CreateActivity {
        self.create_activity.clone()
    }

    /// The queue lane for a watch event of pod `key`, or `None` when the event cannot
    /// change anything ([`needs_work`] is false: the worker would return at once). A pod
    /// missing from the store is worked on (it vanished: its group is deleted).
    fn lane_for(&self, key: &str) -> Option<queue::Lane> {
        let Some((namespace, name)) = key.split_once('/') else {
            return Some(queue::Lane::Normal);
        };
        let Some(stored) = self.store.get(namespace, name) else {
            return Some(queue::Lane::Normal);
        };
        let records = self.records.lock();
        let record = records.get(key);
        if !needs_work(record, &stored) {
            return None;
        }
        Some(if awaits_group(record, &stored) {
            queue::Lane::Create
        } else {
            queue::Lane::Normal
        })
    }

    async fn finish_deletion(&self, pod: &Pod) {
        let (Some(ns), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            return;
        };
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        // The deleted pod the server answers with is not decoded (`kube_client::writes`).
        match writes::delete_pod(&self.client, ns, name, &params).await {
            // Debug, not info: one line per pod is a cost at thousands of pods a second.
            Ok(_) => tracing::debug!(pod = %key_of(pod), "pod deletion finished"),
            // Already gone, or a new pod with the same name (UID precondition): nothing to do.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %key_of(pod), error = %e, "finishing pod deletion failed; retried on the next event")
            }
        }
    }

    /// Queues the notes not published for this pod yet (written in the background: an
    /// event never delays the pod).
    fn publish(&self, pod: &Pod, record: &mut PodRecord, notes: Vec<Note>, action: &str) {
        for note in notes {
            if !record
                .published
                .insert(note_identity(&note.reason, &note.message))
            {
                continue;
            }
            let kind = if note.warning {
                EventKind::Warning
            } else {
                EventKind::Normal
            };
            self.events
                .publish(pod, kind, &note.reason, &note.message, action);
        }
    }

    /// One merge patch of the decision's annotations.
    async fn annotate(&self, pod: &Pod, annotations: &BTreeMap<String, String>) -> bool {
        let (Some(ns), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            return true;
        };
        let current = pod.metadata.annotations.as_ref();
        if annotations
            .iter()
            .all(|(k, v)| current.and_then(|c| c.get(k)) == Some(v))
        {
            return true;
        }
        let patch = serde_json::json!({
            "metadata": {
                "uid": pod.metadata.uid,
                "annotations": annotations,
            }
        });
        match writes::merge_patch_pod(&self.client, ns, name, &patch).await {
            Ok(_) => true,
            // Gone or replaced: nothing to annotate.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => true,
            Err(e) => {
                tracing::warn!(pod = %key_of(pod), error = %e, "annotating the pod failed; retried on the next pass");
                false
            }
        }
    }

    /// `restartPolicy: Never` and a permanent refusal: the pod will never run here.
    async fn mark_failed(&self, pod: &Pod, error: Option<&StepError>) {
        let (Some(ns), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            return;
        };
        let (reason, message) = match error {
            Some(e) => (e.reason.clone(), e.message.clone()),
            None => ("ProviderFailed".to_string(), String::new()),
        };
        let patch = serde_json::json!({
            "status": {"phase": "Failed", "reason": reason, "message": message}
        });
        match writes::merge_patch_pod_status(&self.client, ns, name, &patch).await {
            Ok(_) => {
                tracing::warn!(pod = %key_of(pod), %reason, %message, "pod failed permanently (restartPolicy Never)")
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::warn!(pod = %key_of(pod), error = %e, "marking the pod Failed failed; retried on the next event")
            }
        }
    }

    /// The pod vanished from the API (force-deleted, or deleted while we were not looking):
    /// delete the group we recorded for it right away; the observer's sweep is only the
    /// backstop.
    async fn vanished(&self, key: &str, queue: &KeyedQueue, token: &CancellationToken) {
        let Some(mut record) = self.records.lock().remove(key) else {
            return;
        };
        let group = match record.group.clone() {
            Some(g) => Some(g),
            None => tokio::select! {
                biased;
                () = token.cancelled() => return,
                g = self.path.existing(&record.uid) => g,
            },
        };
        let Some(group) = group else {
            self.path.forget(&record.uid);
            return;
        };
        match self.path.delete(&record.uid, &group).await {
            Ok(()) => {
                self.metrics.pod_step(PodState::Terminating.label(), "ok");
                tracing::info!(pod = %key, uid = %record.uid, group = %group.id, "pod vanished from the API; its container group is deleted");
                self.path.forget(&record.uid);
            }
            Err(e) => {
                self.metrics
                    .pod_step(PodState::Terminating.label(), "retry");
                tracing::warn!(pod = %key, uid = %record.uid, group = %group.id, error = %e, "deleting the group of a vanished pod failed; retrying");
                let delay = e
                    .retry_after
                    .unwrap_or_else(|| state::backoff(record.attempts));
                record.attempts = record.attempts.saturating_add(1);
                record.group = Some(group);
                record.state = PodState::Terminating;
                self.records.lock().insert(key.to_string(), record);
                queue.enqueue_after(key.to_string(), delay, token.clone());
            }
        }
    }

    /// Drives one pod until its action needs to wait.
    async fn work(&self, key: &str, queue: &KeyedQueue, token: &CancellationToken) {
        let Some((namespace, name)) = key.split_once('/') else {
            return;
        };
        let Some(stored) = self.store.get(namespace, name) else {
            self.vanished(key, queue, token).await;
            return;
        };
        // Most watch events of a pod come from writes after its create (the annotation
        // patch, the observer's status writes): nothing to do then, and decoding the whole
        // pod to find that out was ~3 of the ~14 decodes per pod in `bench pods`.
        if !needs_work(self.records.lock().get(key), &stored) {
            return;
        }
        // Present but not decodable (a bug, not input): never taken for "vanished".
        let pod = match stored.decode() {
            Ok(pod) => pod,
            Err(e) => {
                tracing::error!(pod = %key, error = %e, "cannot work on the pod; retrying later");
                queue.enqueue_after(key.to_string(), Duration::from_secs(30), token.clone());
                return;
            }
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let (mut record, replaced) = {
            let mut records = self.records.lock();
            let r = records
                .entry(key.to_string())
                .or_insert_with(|| PodRecord::new(uid.clone()));
            let mut replaced = None;
            if r.uid != uid {
                // Same name, new pod (StatefulSet): start over; never act on the old UID's
                // record, but do not leave the old pod's group running either.
                let old = std::mem::replace(r, PodRecord::new(uid.clone()));
                replaced = Some(old);
            }
            (r.clone(), replaced)
        };
        if let Some(old) = replaced {
            if let Some(g) = &old.group
                && let Err(e) = self.path.delete(&old.uid, g).await
            {
                tracing::warn!(pod = %key, uid = %old.uid, group = %g.id, error = %e, "deleting the replaced pod's group failed; the reconcile sweep will retry");
            }
            self.path.forget(&old.uid);
        }
        // Before anything else: does this pod already have a group (a restart, a lost create
        // response)? Then adopt it: never a second create, never a re-placement.
        if record.group.is_none() && record.state == PodState::Pending {
            let existing = tokio::select! {
                biased;
                () = token.cancelled() => return,
                g = self.path.existing(&uid) => g,
            };
            if let Some(g) = existing {
                tracing::info!(pod = %key, %uid, group = %g.id, "adopting the existing container group");
                let mut annotations = BTreeMap::new();
                annotations.insert(groups::annotations::GROUP_ID.to_string(), g.id.clone());
                if let Some(zone) = &g.zone {
                    annotations.insert(groups::annotations::ZONE.to_string(), zone.clone());
                }
                record.pending_annotations = Some(annotations);
                record.group = Some(g);
                record.state = PodState::Running;
            }
        }
        if let Some(annotations) = record.pending_annotations.clone()
            && pod.metadata.deletion_timestamp.is_none()
            && self.annotate(&pod, &annotations).await
        {
            record.pending_annotations = None;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        let mut last: Option<Outcome> = None;
        let mut last_error: Option<StepError> = None;
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
            let label = record.state.label();
            let result: Option<Result<Vec<Note>, StepError>> = match action {
                Action::Resolve => Some(self.path.resolve(&pod).await),
                Action::Place => Some(self.path.place(&pod).await),
                Action::Translate => Some(self.path.translate(&pod).await),
                Action::Create => Some(match self.path.create(&pod).await {
                    Ok(created) => {
                        record.group = Some(created.group);
                        if !created.annotations.is_empty() {
                            record.pending_annotations = Some(created.annotations);
                            if let Some(a) = record.pending_annotations.clone()
                                && self.annotate(&pod, &a).await
                            {
                                record.pending_annotations = None;
                            }
                        }
                        Ok(created.notes)
                    }
                    Err(e) => Err(e),
                }),
                Action::DeleteGroup => match record.group.clone() {
                    Some(g) => Some(self.path.delete(&uid, &g).await.map(|()| {
                        record.group = None;
                        Vec::new()
                    })),
                    None => Some(Ok(Vec::new())),
                },
                Action::Watch => break,
                Action::RetryAfter(d) => {
                    let max = Duration::from_secs(600);
                    let delay = last_error
                        .as_ref()
                        .and_then(|e| e.retry_after)
                        .map_or(d, |r| r.min(max));
                    queue.enqueue_after(key.to_string(), delay, token.clone());
                    break;
                }
                Action::WaitForChange(d) => {
                    // Blocked on a missing ConfigMap/Secret: start as soon as it appears
                    // (the slow re-check stays as a backstop).
                    if last_error
                        .as_ref()
                        .is_some_and(|e| resolve::is_missing_reference(&e.reason))
                    {
                        self.references
                            .wait(key, resolve::references_of(&pod), queue, token);
                    }
                    queue.enqueue_after(key.to_string(), d, token.clone());
                    break;
                }
                Action::FinishDeletion => {
                    // The kubelet's half of pod termination: nothing runs any more (the group
                    // is deleted or was never created), so remove the object now. The UID
                    // precondition keeps a same-name successor safe.
                    self.finish_deletion(&pod).await;
                    self.path.forget(&uid);
                    break;
                }
                Action::MarkFailed => {
                    self.mark_failed(&pod, last_error.as_ref()).await;
                    self.path.forget(&uid);
                    break;
                }
                Action::Forget => {
                    self.path.forget(&uid);
                    self.records.lock().remove(key);
                    return;
                }
            };
            match result {
                Some(Ok(notes)) => {
                    self.metrics.pod_step(label, "ok");
                    self.publish(&pod, &mut record, notes, label);
                    // The backoff restarts only once the pod got somewhere: a replan after
                    // "no stock anywhere" passes Place and Translate again, and must keep
                    // backing off.
                    if matches!(action, Action::Create | Action::DeleteGroup) {
                        record.attempts = 0;
                    }
                    last = Some(Outcome::Done);
                }
                Some(Err(e)) => {
                    let outcome = match e.kind {
                        FailureKind::Transient | FailureKind::Replan => "retry",
                        FailureKind::Permanent => "failed",
                        FailureKind::Unavailable => "blocked",
                    };
                    self.metrics.pod_step(label, outcome);
                    record.attempts = record.attempts.saturating_add(1);
                    // One event per distinct reason, not one per retry.
                    if record.last_event.as_deref() != Some(e.reason.as_str()) {
                        tracing::warn!(pod = %key, state = label, reason = %e.reason, message = %e.message, "pod step failed");
                        self.events
                            .publish(&pod, EventKind::Warning, &e.reason, &e.message, label);
                        record.last_event = Some(e.reason.clone());
                    }
                    last = Some(Outcome::Failed(e.kind));
                    last_error = Some(e);
                }
                None => {}
            }
        }
        self.records.lock().insert(key.to_string(), record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeApi;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn named(name: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = Some("default".into());
        p.metadata.name = Some(name.into());
        p
    }

    #[test]
    fn a_listing_is_worked_on_only_once_the_store_has_it_and_then_whole() {
        let mut listing = Listing::default();
        let none = || -> Vec<String> { panic!("known pods are only asked for at InitDone") };
        assert!(listing.keys_to_work(&watcher::Event::Init, none).is_empty());
        // Three pages' worth of pods: nothing is queued while the store lacks them.
        for i in 0..1200 {
            let ev = watcher::Event::InitApply(named(&format!("p{i}")));
            assert!(listing.keys_to_work(&ev, none).is_empty());
        }
        let known = || {
            vec![
                "default/p7".to_string(),
                "default/deleted-meanwhile".to_string(),
            ]
        };
        let keys = listing.keys_to_work(&watcher::Event::InitDone, known);
        assert_eq!(
            keys.len(),
            1201,
            "every listed pod plus the one that vanished"
        );
        assert!(keys.contains(&"default/p0".to_string()));
        assert!(keys.contains(&"default/p1199".to_string()));
        assert!(keys.contains(&"default/deleted-meanwhile".to_string()));
        // After the listing, watch events are worked on at once.
        let applied = listing.keys_to_work(&watcher::Event::Apply(named("new")), none);
        assert_eq!(applied, vec!["default/new".to_string()]);
        let deleted = listing.keys_to_work(&watcher::Event::Delete(named("p3")), none);
        assert_eq!(deleted, vec!["default/p3".to_string()]);
        // A relist starts over: the previous listing's keys are not carried into it.
        listing.keys_to_work(&watcher::Event::Init, none);
        listing.keys_to_work(&watcher::Event::InitApply(named("again")), none);
        let keys = listing.keys_to_work(&watcher::Event::InitDone, Vec::new);
        assert_eq!(keys, vec!["default/again".to_string()]);
    }

    /// Records calls; `create` fails transiently once, then succeeds.
    #[derive(Default)]
    struct ScriptedPath {
        calls: Mutex<Vec<&'static str>>,
        create_failures: AtomicUsize,
    }

    impl PodPath for Arc<ScriptedPath> {
        async fn existing(&self, _uid: &str) -> Option<GroupRef> {
            self.calls.lock().push("existing");
            None
        }
        async fn resolve(&self, _pod: &Pod) -> Result<Vec<Note>, StepError> {
            self.calls.lock().push("resolve");
            Ok(Vec::new())
        }
        async fn place(&self, _pod: &Pod) -> Result<Vec<Note>, StepError> {
            self.calls.lock().push("place");
            Ok(vec![Note::normal("Placed", "zone j")])
        }
        async fn translate(&self, _pod: &Pod) -> Result<Vec<Note>, StepError> {
            self.calls.lock().push("translate");
            Ok(Vec::new())
        }
        async fn create(&self, _pod: &Pod) -> Result<Created, StepError> {
            self.calls.lock().push("create");
            if self.create_failures.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(StepError::new(
                    FailureKind::Transient,
                    "Throttled",
                    "ECI throttled",
                ));
            }
            Ok(Created {
                group: GroupRef {
                    id: "eci-1".into(),
                    zone: Some("cn-hangzhou-j".into()),
                },
                annotations: BTreeMap::from([(
                    groups::annotations::GROUP_ID.to_string(),
                    "eci-1".to_string(),
                )]),
                notes: vec![Note::normal("Created", "eci-1")],
            })
        }
        async fn delete(&self, _uid: &str, _g: &GroupRef) -> Result<(), StepError> {
            self.calls.lock().push("delete");
            Ok(())
        }
        fn forget(&self, _uid: &str) {}
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

    #[test]
    fn only_a_running_pod_with_nothing_pending_needs_no_work() {
        let running = || PodRecord {
            state: PodState::Running,
            group: Some(GroupRef {
                id: "eci-1".into(),
                zone: None,
            }),
            ..PodRecord::new("u-1".into())
        };
        let live = store::StoredPod::new(&pod(false));
        let deleting = store::StoredPod::new(&pod(true));
        assert!(
            !needs_work(Some(&running()), &live),
            "an echo of our own write"
        );
        assert!(needs_work(None, &live), "a pod never worked on");
        assert!(
            needs_work(Some(&running()), &deleting),
            "deletion requested"
        );
        let mut other_uid = running();
        other_uid.uid = "u-2".into();
        assert!(needs_work(Some(&other_uid), &live), "same name, new pod");
        let mut unannotated = running();
        unannotated.pending_annotations = Some(BTreeMap::new());
        assert!(
            needs_work(Some(&unannotated), &live),
            "annotations to retry"
        );
        let mut no_group = running();
        no_group.group = None;
        assert!(needs_work(Some(&no_group), &live));
        for state in [PodState::Pending, PodState::Creating, PodState::Terminating] {
            let mut r = running();
            r.state = state;
            assert!(needs_work(Some(&r), &live), "{state:?}");
        }
    }

    #[test]
    fn a_pod_without_a_group_is_create_work_unless_it_is_being_deleted() {
        let live = store::StoredPod::new(&pod(false));
        let deleting = store::StoredPod::new(&pod(true));
        assert!(awaits_group(None, &live), "never worked on");
        assert!(!awaits_group(None, &deleting), "deleted before its create");
        let pending = PodRecord::new("u-1".into());
        assert!(awaits_group(Some(&pending), &live), "create being retried");
        let mut created = PodRecord::new("u-1".into());
        created.group = Some(GroupRef {
            id: "eci-1".into(),
            zone: None,
        });
        assert!(!awaits_group(Some(&created), &live), "has its group");
        created.uid = "u-0".into();
        assert!(awaits_group(Some(&created), &live), "same name, new pod");
    }

    #[tokio::test]
    async fn watch_events_are_queued_in_the_right_lane_and_echoes_not_at_all() {
        let fake = FakeApi::new();
        let path = Arc::new(ScriptedPath::default());
        let (ctl, mut writer) = controller(
            fake.client(),
            "vk".into(),
            "test".into(),
            path,
            Arc::new(Metrics::new()),
        );
        let key = "default/nginx";
        assert_eq!(ctl.lane_for(key), Some(queue::Lane::Normal), "vanished");
        put_in_store(&mut writer, pod(false));
        assert_eq!(ctl.lane_for(key), Some(queue::Lane::Create), "new pod");
        let running = PodRecord {
            state: PodState::Running,
            group: Some(GroupRef {
                id: "eci-1".into(),
                zone: None,
            }),
            ..PodRecord::new("u-1".into())
        };
        ctl.records.lock().insert(key.into(), running);
        assert_eq!(ctl.lane_for(key), None, "an echo of our own write");
        put_in_store(&mut writer, pod(true));
        assert_eq!(ctl.lane_for(key), Some(queue::Lane::Normal), "deletion");
    }

    fn put_in_store(writer: &mut PodStoreWriter, p: Pod) {
        writer.apply_watcher_event(&watcher::Event::Apply(p));
    }

    #[tokio::test]
    async fn worker_walks_the_path_retries_transients_and_deletes() {
        let fake = FakeApi::new();
        fake.put(
            "/api/v1/namespaces/default/pods/nginx",
            serde_json::to_value(pod(false)).expect("json"),
        );
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
            vec!["existing", "resolve", "place", "translate", "create"]
        );
        assert_eq!(
            ctl.records.lock()["default/nginx"].state,
            PodState::Creating
        );
        // The retry (idempotent create) succeeds.
        ctl.work("default/nginx", &queue, &token).await;
        assert_eq!(ctl.records.lock()["default/nginx"].state, PodState::Running);
        assert!(ctl.records.lock()["default/nginx"].group.is_some());
        let stored = fake
            .get("/api/v1/namespaces/default/pods/nginx")
            .expect("pod");
        assert_eq!(
            stored["metadata"]["annotations"][groups::annotations::GROUP_ID],
            "eci-1"
        );
        // Events are written in the background.
        ctl.events.flushed().await;
        let events = fake.count(
            &http::Method::POST,
            "/apis/events.k8s.io/v1/namespaces/default/events",
        );
        assert_eq!(events, 3, "Throttled once, Placed, Created");
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
}
