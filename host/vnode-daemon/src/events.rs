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
//!
//! Events mirrored from ECI ([`EventSink::publish_once`]) must survive a daemon restart
//! without being published again, and without a read per event: their object name is
//! derived from the pod UID and the event's identity, so a repeat is answered
//! `409 AlreadyExists` (by any API server) and counts as written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use tokio::sync::{Notify, mpsc};

use crate::groups::status::truncate;

/// How many event writes are in flight at once.
const IN_FLIGHT: usize = 8;
/// Retries per event after the first attempt (transient failures only; a 4xx is final).
const RETRIES: usize = 2;
/// The first retry's delay; each further one doubles it.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
/// Longest Event name: `metadata.name` of an `events.k8s.io/v1` Event must be a DNS
/// subdomain (core/v1 accepts any name, so this satisfies both).
const MAX_NAME: usize = 253;
/// Namespace of the name-based UUIDs that name [`EventSink::publish_once`] events.
const EVENT_NAME_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b1c_52e0_5f3a_4f0e_9d4e_8a61_0c2b_7e19);

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
        let regarding = object_ref(pod);
        let now = k8s_openapi::jiff::Timestamp::now();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        // client-go's `<object>.<unix nanos hex>`, plus a per-process counter so two events
        // in the same nanosecond never collide.
        let name = event_name(
            regarding.name.as_deref(),
            &format!("{:x}{:x}", now.as_nanosecond(), seq & 0xfff),
        );
        self.queue(self.event(name, regarding, now, kind, reason, note, action));
    }

    /// Like [`EventSink::publish`], but written at most once per pod UID, `kind`, `reason`
    /// and `note`, also across restarts and leader changes: the object name is derived from
    /// them, so the API server refuses a repeat with `409 AlreadyExists`, which counts as
    /// written. For events that are observed again and again (ECI's, on every status poll).
    pub fn publish_once(&self, pod: &Pod, kind: EventKind, reason: &str, note: &str, action: &str) {
        let regarding = object_ref(pod);
        let name = event_name(
            regarding.name.as_deref(),
            &identity_suffix(regarding.uid.as_deref(), kind, reason, note),
        );
        let now = k8s_openapi::jiff::Timestamp::now();
        self.queue(self.event(name, regarding, now, kind, reason, note, action));
    }

    fn queue(&self, event: Event) {
        self.backlog.pending.fetch_add(1, Ordering::AcqRel);
        // The receiver lives until every sender is gone: a send error means shutdown.
        if self.tx.send(event).is_err() {
            self.backlog.done();
        }
    }

    #[allow(clippy::too_many_arguments)] // the Event's fields, each named at the call
    fn event(
        &self,
        name: String,
        regarding: ObjectReference,
        now: k8s_openapi::jiff::Timestamp,
        kind: EventKind,
        reason: &str,
        note: &str,
        action: &str,
    ) -> Event {
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

/// `<object>.<suffix>`, the object's name cut so the whole stays a DNS subdomain of at most
/// [`MAX_NAME`] bytes (pod names are DNS subdomains; a cut never leaves a `-` or `.` before
/// the separator).
fn event_name(object: Option<&str>, suffix: &str) -> String {
    let object = object.filter(|o| !o.is_empty()).unwrap_or("pod");
    let room = MAX_NAME.saturating_sub(suffix.len() + 1);
    let object = truncate(object, room).trim_end_matches(['-', '.']);
    let object = if object.is_empty() { "pod" } else { object };
    format!("{object}.{suffix}")
}

/// 32 hex digits naming one (pod UID, type, reason, note): a name-based UUID (SHA-1), so
/// every process and version computes the same one. The fields are joined with NUL, which
/// none of them contains, so different tuples never share an input.
fn identity_suffix(uid: Option<&str>, kind: EventKind, reason: &str, note: &str) -> String {
    let input = [uid.unwrap_or(""), kind.as_str(), reason, note].join("\0");
    uuid::Uuid::new_v5(&EVENT_NAME_NAMESPACE, input.as_bytes())
        .simple()
        .to_string()
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
    let body = match serde_json::to_vec(&event) {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(namespace = %ns, reason = ?event.reason, error = %e, "encoding an event failed");
            return;
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(FIRST_RETRY_DELAY)
        .with_max_times(RETRIES);
    // The stored Event the API server answers with is not read (see `kube_client::writes`).
    let written = (|| crate::kube_client::writes::create_event(&client, &ns, body.clone()))
        .retry(backoff)
        .when(is_transient)
        .await;
    match written {
        Ok(_) => {}
        // The same name already exists: a retry whose first answer was lost, or an event
        // published once (`publish_once`) by an earlier process. Either way it is written.
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        // Invalid, forbidden, namespace gone (final), or transient failures to the last retry.
        Err(e) => {
            tracing::warn!(namespace = %ns, reason = ?event.reason, error = %e, "publishing an event failed");
        }
    }
}

/// Whether retrying a failed create may help: anything but a 4xx answer other than 429.
fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => !(400..500).contains(&s.code) || s.code == 429,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeApi;

    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
            "spec": {"containers": []}
        }))
        .expect("pod")
    }

    /// A sink writing to `fake` as replica `instance` (one per daemon process).
    fn sink(fake: &FakeApi, instance: &str) -> EventSink {
        EventSink::spawn(
            fake.client(),
            Reporter {
                controller: "vnode".into(),
                instance: instance.into(),
            },
        )
    }

    async fn flush(sink: &EventSink) {
        tokio::time::timeout(Duration::from_secs(10), sink.flushed())
            .await
            .expect("all events written");
        assert_eq!(sink.pending(), 0);
    }

    /// Whether `name` is a DNS subdomain (RFC 1123), as `events.k8s.io/v1` requires.
    fn is_dns_subdomain(name: &str) -> bool {
        name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    }

    #[tokio::test]
    async fn publish_queues_and_the_task_writes_every_event() {
        let fake = FakeApi::new();
        let sink = sink(&fake, "r-1");
        for i in 0..20 {
            sink.publish(
                &pod(),
                EventKind::Normal,
                "Placed",
                &format!("n{i}"),
                "placing",
            );
        }
        flush(&sink).await;
        assert_eq!(fake.count(&http::Method::POST, EVENTS), 20);
    }

    /// ECI's events, mirrored by one daemon and then again by its successor (a restart or a
    /// new leader, with an empty memory): every distinct event is stored once, the repeats
    /// are answered 409 and count as written, and nothing is read first.
    #[tokio::test]
    async fn publish_once_stores_each_event_once_across_restarts() {
        let fake = FakeApi::new();
        let eci_events = [
            (
                EventKind::Normal,
                "Scheduled",
                "Successfully assigned eci-1",
            ),
            (EventKind::Normal, "Pulling", "Pulling image \"nginx\""),
            (EventKind::Normal, "Started", "Started container nginx"),
            (EventKind::Warning, "Started", "Started container nginx"),
            (EventKind::Normal, "Started", "Started container sidecar"),
        ];
        for replica in ["r-1", "r-2", "r-2"] {
            let sink = sink(&fake, replica);
            for (kind, reason, note) in eci_events {
                sink.publish_once(&pod(), kind, reason, note, "ContainerGroupEvent");
            }
            flush(&sink).await;
        }
        let stored = fake.values_under(&format!("{EVENTS}/"));
        assert_eq!(stored.len(), eci_events.len(), "{stored:#?}");
        assert_eq!(
            fake.count(&http::Method::POST, EVENTS),
            3 * eci_events.len()
        );
        assert_eq!(
            fake.count(&http::Method::GET, EVENTS),
            0,
            "no read per event"
        );
        // The first writer's objects stay (the repeats changed nothing).
        assert!(
            stored.iter().all(|e| e["reportingInstance"] == "r-1"),
            "{stored:#?}"
        );
        // Another pod (UID) with the same events gets its own.
        let mut other = pod();
        other.metadata.uid = Some("u-2".into());
        let sink = sink(&fake, "r-3");
        sink.publish_once(
            &other,
            EventKind::Normal,
            "Scheduled",
            "Successfully assigned eci-1",
            "ContainerGroupEvent",
        );
        flush(&sink).await;
        assert_eq!(
            fake.values_under(&format!("{EVENTS}/")).len(),
            eci_events.len() + 1
        );
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_refusals_are_not() {
        let fake = FakeApi::new();
        let failures = Arc::new(AtomicUsize::new(0));
        let seen = failures.clone();
        // The first two creates of "Flaky" fail with 500; every "Bad" create is refused.
        fake.set_handler(move |req| {
            if req.method != http::Method::POST {
                return None;
            }
            match req.body["reason"].as_str() {
                Some("Flaky") if seen.fetch_add(1, Ordering::SeqCst) < 2 => Some((
                    500,
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "reason": "InternalError", "message": "boom"}),
                )),
                Some("Bad") => Some((
                    422,
                    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422, "reason": "Invalid", "message": "no"}),
                )),
                _ => None,
            }
        });
        let sink = sink(&fake, "r-1");
        sink.publish_once(&pod(), EventKind::Normal, "Flaky", "m", "a");
        sink.publish_once(&pod(), EventKind::Normal, "Bad", "m", "a");
        flush(&sink).await;
        let stored = fake.values_under(&format!("{EVENTS}/"));
        assert_eq!(stored.len(), 1, "{stored:#?}");
        assert_eq!(stored[0]["reason"], "Flaky");
        // Flaky: two failures and the success; Bad: one attempt.
        assert_eq!(fake.count(&http::Method::POST, EVENTS), 4);
    }

    #[test]
    fn events_carry_the_pod_reference_and_valid_unique_or_stable_names() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let sink = sink(&FakeApi::new(), "r-1");
        let now = k8s_openapi::jiff::Timestamp::now();
        let long = "é".repeat(800);
        let a = sink.event(
            "a".into(),
            object_ref(&pod()),
            now,
            EventKind::Warning,
            "X",
            &long,
            "a",
        );
        assert_eq!(a.type_.as_deref(), Some("Warning"));
        assert_eq!(
            a.regarding.as_ref().and_then(|r| r.uid.as_deref()),
            Some("u-1")
        );
        assert!(a.note.as_deref().is_some_and(|n| n.len() <= 1024));
        assert_eq!(a.reporting_instance.as_deref(), Some("r-1"));

        // Stable: the same identity gives the same suffix, any difference another one.
        let id = identity_suffix(Some("u-1"), EventKind::Normal, "Started", "m");
        assert_eq!(
            id,
            identity_suffix(Some("u-1"), EventKind::Normal, "Started", "m")
        );
        assert_eq!(id.len(), 32);
        for other in [
            identity_suffix(Some("u-2"), EventKind::Normal, "Started", "m"),
            identity_suffix(Some("u-1"), EventKind::Warning, "Started", "m"),
            identity_suffix(Some("u-1"), EventKind::Normal, "Pulled", "m"),
            identity_suffix(Some("u-1"), EventKind::Normal, "Started", "m2"),
            identity_suffix(Some("u-1"), EventKind::Normal, "Startedm", ""),
        ] {
            assert_ne!(id, other);
        }
        // Pinned: a new build must name an old build's events the same, or a rolling
        // upgrade would publish every mirrored event again. (Python agrees:
        // `uuid.uuid5(UUID("6b1c52e0-5f3a-4f0e-9d4e-8a610c2b7e19"), "u-1\0Normal\0Started\0m")`.)
        assert_eq!(
            event_name(Some("web"), &id),
            "web.d5600884ada357a79dbbbc59d070449e"
        );

        // Names stay DNS subdomains of at most 253 bytes, whatever the pod's name.
        let longest = format!("{}-{}", "a".repeat(200), "b".repeat(52));
        for object in [
            Some("p"),
            Some(longest.as_str()),
            Some("x.y-z"),
            Some("-"),
            None,
            Some(""),
        ] {
            let name = event_name(object, &id);
            assert!(is_dns_subdomain(&name), "{name:?} from {object:?}");
            assert!(name.ends_with(&format!(".{id}")), "{name}");
        }
    }
}
