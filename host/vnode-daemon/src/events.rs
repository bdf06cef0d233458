//! Pod events, published off the critical path.
//!
//! Every decision gets an event (`Placed`, `Created`, failures, ECI's own events), but a pod
//! worker or the status poller must never wait for an event write. [`EventSink::publish`]
//! only queues; a background task writes `events.k8s.io/v1` Events with a bounded number in
//! flight and retries transient failures.
//!
//! Why not `kube::runtime::events::Recorder`: it keeps every event of the last hour in one
//! map behind one lock and walks the whole map on *every* publish (its cache expiry), which
//! is O(events) per event. At 10,000 pods × ~7 events that map is the daemon's largest
//! allocation and the lock serialises all publishers. Its only use of the map is aggregating
//! repeats into a series; the callers here already publish each (reason, message) once per
//! pod, so a repeat is rare and a new object is fine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::{Notify, mpsc};

use crate::groups::status::truncate;

/// How many event writes are in flight at once.
const IN_FLIGHT: usize = 8;
/// Attempts per event (transient failures only; a 4xx is final).
const ATTEMPTS: u32 = 3;

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

impl EventKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// Who reports the events (`reportingController`, `reportingInstance`).
#[derive(Debug, Clone)]
pub struct Reporter {
    /// e.g. `vnode`.
    pub controller: String,
    /// e.g. the replica's identity.
    pub instance: String,
}

/// The queueing half: cheap to clone, never blocks.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<Event>,
    reporter: Arc<Reporter>,
    seq: Arc<AtomicU64>,
    backlog: Arc<Backlog>,
}

/// Events queued or being written, and a wake-up for [`EventSink::flushed`].
#[derive(Default)]
struct Backlog {
    pending: AtomicUsize,
    drained: Notify,
}

impl Backlog {
    fn done(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.notify_waiters();
        }
    }
}

impl EventSink {
    /// A sink whose events are written through `client` by a background task (spawned on the
    /// current tokio runtime). The task ends once every clone of the sink is dropped and the
    /// queue is drained.
    pub fn spawn(client: Client, reporter: Reporter) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog::default());
        tokio::spawn(write_all(client, rx, backlog.clone()));
        Self {
            tx,
            reporter: Arc::new(reporter),
            seq: Arc::new(AtomicU64::new(0)),
            backlog,
        }
    }

    /// Events queued or in flight.
    pub fn pending(&self) -> usize {
        self.backlog.pending.load(Ordering::Acquire)
    }

    /// Waits until every event queued so far has been written (or given up on).
    pub async fn flushed(&self) {
        loop {
            let drained = self.backlog.drained.notified();
            if self.pending() == 0 {
                return;
            }
            drained.await;
        }
    }

    /// Queues an event on `pod`. `reason` is CamelCase (at most 128 bytes), `note` at most
    /// 1 KiB (longer text is cut on a character boundary), `action` what was being done.
    pub fn publish(&self, pod: &Pod, kind: EventKind, reason: &str, note: &str, action: &str) {
        let event = self.event(object_ref(pod), kind, reason, note, action);
        self.backlog.pending.fetch_add(1, Ordering::AcqRel);
        // The receiver lives until every sender is gone: a send error means shutdown.
        if self.tx.send(event).is_err() {
            self.backlog.done();
        }
    }

    fn event(
        &self,
        regarding: ObjectReference,
        kind: EventKind,
        reason: &str,
        note: &str,
        action: &str,
    ) -> Event {
        let now = k8s_openapi::jiff::Timestamp::now();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        // client-go's `<object>.<unix nanos hex>`, plus a per-process counter so two events
        // in the same nanosecond never collide.
        let name = format!(
            "{}.{:x}{:x}",
            regarding.name.as_deref().unwrap_or("pod"),
            now.as_nanosecond(),
            seq & 0xfff
        );
        Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(kind.as_str().into()),
            reason: Some(truncate(reason, 128).into()),
            note: Some(truncate(note, 1024).into()),
            action: Some(truncate(action, 128).into()),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(self.reporter.instance.clone()),
            regarding: Some(regarding),
            ..Event::default()
        }
    }
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

async fn write_all(client: Client, rx: mpsc::UnboundedReceiver<Event>, backlog: Arc<Backlog>) {
    tokio_stream_of(rx)
        .for_each_concurrent(IN_FLIGHT, |event| {
            let (client, backlog) = (client.clone(), backlog.clone());
            async move {
                write_one(client, event).await;
                backlog.done();
            }
        })
        .await;
}

fn tokio_stream_of(
    mut rx: mpsc::UnboundedReceiver<Event>,
) -> impl futures::Stream<Item = Event> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn write_one(client: Client, event: Event) {
    let ns = event
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let api: Api<Event> = Api::namespaced(client, &ns);
    for attempt in 1..=ATTEMPTS {
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => return,
            // The same name already exists (a retry whose first answer was lost): done.
            Err(kube::Error::Api(s)) if s.code == 409 => return,
            // Invalid, forbidden, namespace gone: retrying does not help.
            Err(kube::Error::Api(s)) if (400..500).contains(&s.code) && s.code != 429 => {
                tracing::warn!(namespace = %ns, reason = ?event.reason, code = s.code, error = %s.message, "event refused");
                return;
            }
            Err(e) if attempt == ATTEMPTS => {
                tracing::warn!(namespace = %ns, reason = ?event.reason, error = %e, "publishing an event failed");
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeApi;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
            "spec": {"containers": []}
        }))
        .expect("pod")
    }

    #[tokio::test]
    async fn publish_queues_and_the_task_writes_every_event() {
        let fake = FakeApi::new();
        let sink = EventSink::spawn(
            fake.client(),
            Reporter {
                controller: "vnode".into(),
                instance: "r-1".into(),
            },
        );
        for i in 0..20 {
            sink.publish(
                &pod(),
                EventKind::Normal,
                "Placed",
                &format!("n{i}"),
                "placing",
            );
        }
        tokio::time::timeout(Duration::from_secs(5), sink.flushed())
            .await
            .expect("all events written");
        assert_eq!(sink.pending(), 0);
        let path = "/apis/events.k8s.io/v1/namespaces/ns/events";
        assert_eq!(fake.count(&http::Method::POST, path), 20);
    }

    #[test]
    fn events_carry_the_pod_reference_and_unique_names() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let fake = FakeApi::new();
        let sink = EventSink::spawn(
            fake.client(),
            Reporter {
                controller: "vnode".into(),
                instance: "r-1".into(),
            },
        );
        let long = "é".repeat(800);
        let a = sink.event(object_ref(&pod()), EventKind::Warning, "X", &long, "a");
        let b = sink.event(object_ref(&pod()), EventKind::Warning, "X", "m", "a");
        assert_ne!(a.metadata.name, b.metadata.name);
        assert_eq!(a.type_.as_deref(), Some("Warning"));
        assert_eq!(
            a.regarding.as_ref().and_then(|r| r.uid.as_deref()),
            Some("u-1")
        );
        assert!(a.note.as_deref().is_some_and(|n| n.len() <= 1024));
        assert_eq!(a.reporting_instance.as_deref(), Some("r-1"));
    }
}
