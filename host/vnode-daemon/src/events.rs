//! Pod events, published off the critical path.
//!
//! Every decision gets an event (`Placed`, `Created`, failures, ECI's own events), but a pod
//! worker or the status poller must never wait for an event write. [`EventSink::publish`]
//! only queues; a background task writes `events.k8s.io/v1` Events with a bounded number in
//! flight and retries transient failures.
//!
//! Each sink has two bounded queues ("lanes"), and each holds an event as its variable
//! fields packed into one string (~0.25 KiB; the constant parts and the reporter are added
//! when it is written) rather than as an `Event` object (several KiB of heap in many small
//! allocations) or its JSON body (~0.65 KiB): a burst of 10,000 pods publishes ~70,000
//! events faster than one API server takes them, ~25,000 wait at once, and the unbounded
//! queue of `Event`s was ~54 MB of the daemon's heap.
//! - The decision lane ([`EventSink::publish`]: `Placed`, `Created`, refusals, failures),
//!   [`DECISION_QUEUE_CAPACITY`] events: a whole 10,000-pod burst's decisions (two per pod)
//!   fit in it even if none were written meanwhile. Mirrored events never take its room.
//! - The mirrored lane ([`EventSink::publish_once`]: ECI's events, what a kubelet would
//!   report), [`QUEUE_CAPACITY`] events; its Normal events are not queued once it is three
//!   quarters full, so its warnings keep the last quarter.
//!
//! Decisions are written first, across sinks: a writer takes a decision whenever one is
//! queued, and no sink sharing the process's [`DecisionsFirst`] starts writing a mirrored
//! event while a decision waits for a writer anywhere (the pod controller and the status
//! observer have a sink each, both writing to the same API server). Under a burst the API
//! server's time goes to the decisions, and what sheds is mirrored Normal events.
//!
//! A full lane drops the event, counted in `vnode_events_dropped_total` (and decisions also
//! in `vnode_decision_events_dropped_total`) and logged at debug; a publisher never waits.
//! client-go's event broadcaster makes the same choice (it drops once 1,000 events are
//! queued).
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

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::sync::{Notify, mpsc};

use crate::groups::status::truncate;

/// How many event writes are in flight at once, per sink.
const IN_FLIGHT: usize = 8;
/// Mirrored events queued per sink before new ones are dropped: ~4 MiB at most, and more
/// than a minute of events at the rate one pod worker pool produces them.
pub const QUEUE_CAPACITY: usize = 16_384;
/// Decision events queued per sink before new ones are dropped: two per pod (`Placed`,
/// `Created`) for a 10,000-pod burst with nothing written meanwhile, and room for
/// refusals; ~8 MiB at most, and held only while the API server is behind.
pub const DECISION_QUEUE_CAPACITY: usize = 32_768;
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

/// Events dropped because a sink's queue was full, across the process's sinks (registered
/// by [`crate::metrics::Metrics`] as `vnode_events_dropped_total`).
static DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Of [`DROPPED`], the events of the daemon's own decisions ([`EventSink::publish`]), so
/// a report can tell whether anything but mirrored ECI events was lost (registered as
/// `vnode_decision_events_dropped_total`).
static DECISIONS_DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// The process-wide count of dropped events (see [`QUEUE_CAPACITY`]).
pub fn dropped_total() -> Counter {
    DROPPED.clone()
}

/// The process-wide count of dropped decision events ([`EventSink::publish`]'s).
pub fn decisions_dropped_total() -> Counter {
    DECISIONS_DROPPED.clone()
}

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

/// One queued event, compact: the fields that differ between events packed into one
/// string (see the module docs); [`Queued::body`] is what is sent.
struct Queued {
    /// The [`Field`]s, one after another.
    text: Box<str>,
    /// Where each [`Field`] ends in `text`.
    ends: [u32; FIELDS],
    /// Which of the optional [`Field`]s (the pod's own) were present, one bit each.
    present: u8,
    time: k8s_openapi::jiff::Timestamp,
    kind: EventKind,
}

/// The packed fields of a [`Queued`] event, in order.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// The Event's name.
    Name,
    /// The pod's namespace (also the Event's).
    Namespace,
    /// The pod's name.
    PodName,
    /// The pod's UID.
    PodUid,
    Reason,
    Note,
    Action,
}

const FIELDS: usize = 7;

impl Queued {
    /// Packs an event on `pod` named `name` (`reason`, `note` and `action` cut as
    /// [`EventSink::publish`] says). `None` only if the fields exceed 4 GiB together.
    #[allow(clippy::too_many_arguments)] // the Event's fields, each named at the call
    fn new(
        pod: &Pod,
        name: &str,
        time: k8s_openapi::jiff::Timestamp,
        kind: EventKind,
        reason: &str,
        note: &str,
        action: &str,
    ) -> Option<Self> {
        let meta = &pod.metadata;
        let fields = [
            Some(name),
            meta.namespace.as_deref(),
            meta.name.as_deref(),
            meta.uid.as_deref(),
            Some(truncate(reason, 128)),
            Some(truncate(note, 1024)),
            Some(truncate(action, 128)),
        ];
        let mut text = String::with_capacity(fields.iter().flatten().map(|f| f.len()).sum());
        let mut ends = [0u32; FIELDS];
        let mut present = 0u8;
        for (i, field) in fields.iter().enumerate() {
            if let Some(field) = field {
                text.push_str(field);
                present |= 1 << i;
            }
            ends[i] = u32::try_from(text.len()).ok()?;
        }
        Some(Self {
            text: text.into_boxed_str(),
            ends,
            present,
            time,
            kind,
        })
    }

    fn get(&self, field: Field) -> &str {
        let i = field as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    /// The field, if the pod had it.
    fn opt(&self, field: Field) -> Option<&str> {
        (self.present & (1 << field as usize) != 0).then(|| self.get(field))
    }

    /// The namespace the Event is created in.
    fn namespace(&self) -> &str {
        self.opt(Field::Namespace).unwrap_or("default")
    }

    /// The Event as sent.
    fn body<'a>(&'a self, reporter: &'a Reporter) -> EventBody<'a> {
        EventBody {
            api_version: "events.k8s.io/v1",
            kind: "Event",
            metadata: EventMeta {
                name: self.get(Field::Name),
                namespace: self.opt(Field::Namespace),
            },
            event_time: MicroTime(self.time),
            type_: self.kind.as_str(),
            reason: self.get(Field::Reason),
            note: self.get(Field::Note),
            action: self.get(Field::Action),
            reporting_controller: &reporter.controller,
            reporting_instance: &reporter.instance,
            regarding: Regarding {
                api_version: "v1",
                kind: "Pod",
                name: self.opt(Field::PodName),
                namespace: self.opt(Field::Namespace),
                uid: self.opt(Field::PodUid),
            },
        }
    }
}

/// The queueing half: cheap to clone, never blocks.
#[derive(Clone)]
pub struct EventSink {
    /// The decision lane ([`EventSink::publish`]).
    decisions: mpsc::Sender<Queued>,
    /// The mirrored lane ([`EventSink::publish_once`]).
    mirrored: mpsc::Sender<Queued>,
    seq: Arc<AtomicU64>,
    backlog: Arc<Backlog>,
    first: Arc<DecisionsFirst>,
    dropped: Counter,
    /// Of `dropped`, those published with [`EventSink::publish`].
    decisions_dropped: Counter,
    /// Mirrored lane length from which mirrored Normal events are dropped (see the module
    /// docs).
    mirror_limit: usize,
}

/// Which lane an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Decision,
    Mirrored,
}

/// Decision events waiting for a writer (queued, not yet in flight) in every sink that
/// shares this, and a wake-up for writers holding mirrored events back until there are none
/// (see the module docs). The sinks of [`EventSink::spawn`] share the process's.
#[derive(Debug, Default)]
pub struct DecisionsFirst {
    waiting: AtomicUsize,
    none_waiting: Notify,
}

impl DecisionsFirst {
    /// The one the sinks of [`EventSink::spawn`] share.
    fn process() -> Arc<Self> {
        static PROCESS: LazyLock<Arc<DecisionsFirst>> = LazyLock::new(Arc::default);
        PROCESS.clone()
    }

    fn queued(&self) {
        self.waiting.fetch_add(1, Ordering::AcqRel);
    }

    /// A queued decision was taken by a writer (or given up: dropped, never to be written).
    fn taken(&self) {
        if self.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.none_waiting.notify_waiters();
        }
    }

    /// Returns once no decision is waiting for a writer.
    async fn none_waiting(&self) {
        loop {
            let notified = self.none_waiting.notified();
            tokio::pin!(notified);
            // Registered before the check, so a `taken` in between is not missed.
            notified.as_mut().enable();
            if self.waiting.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// The receiving end of a sink's decision lane. Decisions still queued when it is dropped
/// (the runtime shutting down with the writer task) are no longer waiting, so they stop
/// holding other sinks' mirrored events back.
struct DecisionLane {
    rx: mpsc::Receiver<Queued>,
    first: Arc<DecisionsFirst>,
}

impl DecisionLane {
    async fn recv(&mut self) -> Option<Queued> {
        let event = self.rx.recv().await;
        if event.is_some() {
            self.first.taken();
        }
        event
    }
}

impl Drop for DecisionLane {
    fn drop(&mut self) {
        self.rx.close();
        while self.rx.try_recv().is_ok() {
            self.first.taken();
        }
    }
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

/// An `events.k8s.io/v1` Event as sent, borrowing its fields (serialised once, at publish).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventBody<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: EventMeta<'a>,
    event_time: MicroTime,
    #[serde(rename = "type")]
    type_: &'static str,
    reason: &'a str,
    note: &'a str,
    action: &'a str,
    reporting_controller: &'a str,
    reporting_instance: &'a str,
    regarding: Regarding<'a>,
}

#[derive(Serialize)]
struct EventMeta<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
}

/// The `ObjectReference` to the pod.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Regarding<'a> {
    api_version: &'static str,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
}

impl EventSink {
    /// A sink whose events are written through `client` by a background task (spawned on the
    /// current tokio runtime), dropping (and counting in [`dropped_total`]) events beyond
    /// [`QUEUE_CAPACITY`]. The task ends once every clone of the sink is dropped and the
    /// queue is drained.
    pub fn spawn(client: Client, reporter: Reporter) -> Self {
        Self::spawn_with(
            client,
            reporter,
            (DECISION_QUEUE_CAPACITY, QUEUE_CAPACITY),
            dropped_total(),
            DecisionsFirst::process(),
        )
        .counting_decisions_in(decisions_dropped_total())
    }

    /// The same sink, counting its dropped [`EventSink::publish`] events in `counter` too.
    pub fn counting_decisions_in(mut self, counter: Counter) -> Self {
        self.decisions_dropped = counter;
        self
    }

    /// Like [`EventSink::spawn`], with `capacity` events per lane, its own drop counter, and
    /// decisions first only within this sink and those given `first`.
    pub fn spawn_bounded(
        client: Client,
        reporter: Reporter,
        capacity: usize,
        dropped: Counter,
        first: Arc<DecisionsFirst>,
    ) -> Self {
        Self::spawn_with(client, reporter, (capacity, capacity), dropped, first)
    }

    fn spawn_with(
        client: Client,
        reporter: Reporter,
        (decision_capacity, mirrored_capacity): (usize, usize),
        dropped: Counter,
        first: Arc<DecisionsFirst>,
    ) -> Self {
        let mirrored_capacity = mirrored_capacity.max(1);
        let (decisions, decisions_rx) = mpsc::channel(decision_capacity.max(1));
        let (mirrored, mirrored_rx) = mpsc::channel(mirrored_capacity);
        let backlog = Arc::new(Backlog::default());
        let lane = DecisionLane {
            rx: decisions_rx,
            first: first.clone(),
        };
        let reporter = Arc::new(reporter);
        tokio::spawn(write_all(
            client,
            reporter.clone(),
            lane,
            mirrored_rx,
            backlog.clone(),
        ));
        Self {
            decisions,
            mirrored,
            seq: Arc::new(AtomicU64::new(0)),
            backlog,
            first,
            dropped,
            decisions_dropped: Counter::default(),
            mirror_limit: mirrored_capacity - mirrored_capacity / 4,
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
        let now = k8s_openapi::jiff::Timestamp::now();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        // client-go's `<object>.<unix nanos hex>`, plus a per-process counter so two events
        // in the same nanosecond never collide.
        let name = event_name(
            pod.metadata.name.as_deref(),
            &format!("{:x}{:x}", now.as_nanosecond(), seq & 0xfff),
        );
        if !self.queue(Lane::Decision, pod, &name, now, kind, reason, note, action) {
            self.decisions_dropped.inc();
        }
    }

    /// Like [`EventSink::publish`], but written at most once per pod UID, `kind`, `reason`
    /// and `note`, also across restarts and leader changes: the object name is derived from
    /// them, so the API server refuses a repeat with `409 AlreadyExists`, which counts as
    /// written. For events that are observed again and again (ECI's, on every status poll).
    /// A Normal one is dropped (and counted) once the mirrored lane is three quarters full.
    pub fn publish_once(&self, pod: &Pod, kind: EventKind, reason: &str, note: &str, action: &str) {
        if kind == EventKind::Normal && self.mirrored_queued() >= self.mirror_limit {
            self.dropped.inc();
            tracing::debug!(namespace = ?pod.metadata.namespace, pod = ?pod.metadata.name, %reason, "mirrored event lane three quarters full; mirrored event dropped");
            return;
        }
        let name = event_name(
            pod.metadata.name.as_deref(),
            &identity_suffix(pod.metadata.uid.as_deref(), kind, reason, note),
        );
        let now = k8s_openapi::jiff::Timestamp::now();
        self.queue(Lane::Mirrored, pod, &name, now, kind, reason, note, action);
    }

    /// Mirrored events queued (not yet taken by the writer).
    fn mirrored_queued(&self) -> usize {
        self.mirrored.max_capacity() - self.mirrored.capacity()
    }

    /// Queues the event on `lane`; false when it was dropped because the lane was full.
    #[allow(clippy::too_many_arguments)] // the Event's fields, each named at the call
    fn queue(
        &self,
        lane: Lane,
        pod: &Pod,
        name: &str,
        now: k8s_openapi::jiff::Timestamp,
        kind: EventKind,
        reason: &str,
        note: &str,
        action: &str,
    ) -> bool {
        let namespace = pod.metadata.namespace.as_deref();
        let Some(queued) = Queued::new(pod, name, now, kind, reason, note, action) else {
            tracing::warn!(namespace = ?namespace, %reason, "an event's fields exceed 4 GiB; not published");
            return true;
        };
        self.backlog.pending.fetch_add(1, Ordering::AcqRel);
        let sent = match lane {
            Lane::Decision => {
                // Counted before it can be taken, so the count never goes below zero.
                self.first.queued();
                let sent = self.decisions.try_send(queued);
                if sent.is_err() {
                    self.first.taken();
                }
                sent
            }
            Lane::Mirrored => self.mirrored.try_send(queued),
        };
        match sent {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.backlog.done();
                self.dropped.inc();
                tracing::debug!(namespace = ?namespace, pod = ?pod.metadata.name, %reason, ?lane, "event lane full; event dropped");
                false
            }
            // The receiver lives until every sender is gone: this means shutdown.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.backlog.done();
                true
            }
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

/// Writes a sink's events, [`IN_FLIGHT`] at a time: a queued decision whenever there is
/// one, a mirrored event only while no decision waits in any sink sharing `decisions.first`.
/// Ends once both lanes are closed (every sender dropped) and drained.
async fn write_all(
    client: Client,
    reporter: Arc<Reporter>,
    mut decisions: DecisionLane,
    mut mirrored: mpsc::Receiver<Queued>,
    backlog: Arc<Backlog>,
) {
    let first = decisions.first.clone();
    let mut in_flight = FuturesUnordered::new();
    let (mut decisions_open, mut mirrored_open) = (true, true);
    while decisions_open || mirrored_open || !in_flight.is_empty() {
        let room = in_flight.len() < IN_FLIGHT;
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            event = decisions.recv(), if room && decisions_open => match event {
                Some(event) => in_flight.push(write_one(client.clone(), reporter.clone(), event, backlog.clone())),
                None => decisions_open = false,
            },
            // Both steps are cancel-safe: a decision arriving meanwhile wins the next turn.
            event = async {
                first.none_waiting().await;
                mirrored.recv().await
            }, if room && mirrored_open => match event {
                Some(event) => in_flight.push(write_one(client.clone(), reporter.clone(), event, backlog.clone())),
                None => mirrored_open = false,
            },
        }
    }
}

async fn write_one(client: Client, reporter: Arc<Reporter>, event: Queued, backlog: Arc<Backlog>) {
    let namespace = event.namespace();
    let body = match serde_json::to_vec(&event.body(&reporter)) {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(%namespace, reason = %event.get(Field::Reason), error = %e, "encoding an event failed");
            backlog.done();
            return;
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(FIRST_RETRY_DELAY)
        .with_max_times(RETRIES);
    // The stored Event the API server answers with is not read (see `kube_client::writes`).
    let written = (|| crate::kube_client::writes::create_event(&client, namespace, body.clone()))
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
            tracing::warn!(namespace = %namespace, event = %String::from_utf8_lossy(&body), error = %e, "publishing an event failed");
        }
    }
    backlog.done();
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
    use k8s_openapi::api::events::v1::Event;

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

    /// A sink with its own queue capacity and drop counter.
    fn bounded_sink(fake: &FakeApi, capacity: usize, dropped: &Counter) -> EventSink {
        let reporter = Reporter {
            controller: "vnode".into(),
            instance: "r-1".into(),
        };
        EventSink::spawn_bounded(
            fake.client(),
            reporter,
            capacity,
            dropped.clone(),
            Arc::default(),
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

    /// A full queue drops (and counts) new events instead of making the publisher wait;
    /// what was queued is still written, and the queue takes events again once drained.
    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let fake = FakeApi::new();
        // A current-thread runtime: the writer task cannot run until this test awaits, so
        // the queue fills deterministically.
        let dropped = Counter::default();
        let sink = bounded_sink(&fake, 4, &dropped);
        for i in 0..10 {
            sink.publish(
                &pod(),
                EventKind::Normal,
                "Placed",
                &format!("n{i}"),
                "placing",
            );
        }
        assert_eq!(dropped.get(), 6);
        assert_eq!(sink.pending(), 4);
        flush(&sink).await;
        assert_eq!(fake.count(&http::Method::POST, EVENTS), 4);
        sink.publish(&pod(), EventKind::Normal, "Placed", "later", "placing");
        flush(&sink).await;
        assert_eq!(fake.count(&http::Method::POST, EVENTS), 5);
        assert_eq!(dropped.get(), 6);
    }

    /// The decision lane is the daemon's own: with the mirrored lane full (its Normal events
    /// shed from three quarters, its warnings taking the last quarter), every decision up to
    /// the decision lane's capacity is still queued.
    #[tokio::test]
    async fn mirrored_events_never_take_the_room_of_decisions() {
        let fake = FakeApi::new();
        let dropped = Counter::default();
        let decisions_dropped = Counter::default();
        // A current-thread runtime: the writer takes nothing until this test awaits.
        let sink =
            bounded_sink(&fake, 8, &dropped).counting_decisions_in(decisions_dropped.clone());
        let mirror = |kind, note: &str| {
            sink.publish_once(&pod(), kind, "Pulled", note, "ContainerGroupEvent");
        };
        for i in 0..10 {
            mirror(EventKind::Normal, &format!("pulled {i}"));
        }
        assert_eq!(
            (sink.pending(), dropped.get()),
            (6, 4),
            "mirrored Normal events stop at 6 of 8"
        );
        mirror(EventKind::Warning, "back-off 1");
        mirror(EventKind::Warning, "back-off 2");
        assert_eq!(
            (sink.pending(), dropped.get()),
            (8, 4),
            "mirrored warnings take the last quarter"
        );
        mirror(EventKind::Warning, "back-off 3");
        assert_eq!(dropped.get(), 5, "a full mirrored lane drops warnings too");
        for i in 0..8 {
            sink.publish(
                &pod(),
                EventKind::Normal,
                "Placed",
                &format!("zone {i}"),
                "placing",
            );
        }
        assert_eq!(
            (sink.pending(), dropped.get(), decisions_dropped.get()),
            (16, 5, 0),
            "every decision is queued beside the full mirrored lane"
        );
        sink.publish(&pod(), EventKind::Normal, "Created", "eci-1", "creating");
        assert_eq!(
            (dropped.get(), decisions_dropped.get()),
            (6, 1),
            "a full decision lane drops decisions, counted as such"
        );
        flush(&sink).await;
        assert_eq!(fake.count(&http::Method::POST, EVENTS), 16);
    }

    /// An API server that answers an event write only with a permit from
    /// [`GatedApi::answer`] (none at first), and records each write's `reason` as it
    /// arrives, so a test sees which events the writer took, in order.
    #[derive(Clone)]
    struct GatedApi {
        arrived: Arc<parking_lot::Mutex<Vec<String>>>,
        permits: Arc<tokio::sync::Semaphore>,
    }

    impl GatedApi {
        fn new() -> Self {
            Self {
                arrived: Arc::default(),
                permits: Arc::new(tokio::sync::Semaphore::new(0)),
            }
        }

        fn client(&self) -> Client {
            let api = self.clone();
            let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
                let api = api.clone();
                async move {
                    let body = req.into_body().collect_bytes().await.unwrap_or_default();
                    let event: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    let reason = event["reason"].as_str().unwrap_or("").to_string();
                    api.arrived.lock().push(reason);
                    if let Ok(permit) = api.permits.acquire().await {
                        permit.forget();
                    }
                    let resp = http::Response::builder()
                        .status(201)
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(body.to_vec()))
                        .expect("valid response");
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            Client::new(svc, "default")
        }

        /// Lets `n` more writes be answered.
        fn answer(&self, n: usize) {
            self.permits.add_permits(n);
        }

        /// Answers every write from now on.
        fn open(&self) {
            self.answer(1 << 20);
        }

        fn arrived(&self) -> Vec<String> {
            self.arrived.lock().clone()
        }
    }

    /// Runs every other task until all of them wait (the runtime's clock is paused, so this
    /// sleep ends only once nothing else can run: no timing involved).
    async fn settle() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    fn reporter() -> Reporter {
        Reporter {
            controller: "vnode".into(),
            instance: "r-1".into(),
        }
    }

    /// An API server that does not answer (a burst it is far behind on): the writer's
    /// in-flight writes are decisions even though mirrored events were queued first, later
    /// decisions keep being queued while mirrored events are shed, and as it answers one
    /// write at a time, the writer takes every decision before any mirrored event.
    #[tokio::test(start_paused = true)]
    async fn a_blocked_writer_keeps_every_decision_and_sheds_mirrored_events() {
        let api = GatedApi::new();
        let dropped = Counter::default();
        let decisions_dropped = Counter::default();
        let sink = EventSink::spawn_bounded(
            api.client(),
            reporter(),
            16,
            dropped.clone(),
            Arc::default(),
        )
        .counting_decisions_in(decisions_dropped.clone());
        let mirror = |i: usize| {
            sink.publish_once(
                &pod(),
                EventKind::Normal,
                "Pulled",
                &format!("pulled {i}"),
                "ContainerGroupEvent",
            );
        };
        let decide = |i: usize| {
            sink.publish(
                &pod(),
                EventKind::Normal,
                "Placed",
                &format!("zone {i}"),
                "placing",
            );
        };
        (0..40).for_each(mirror);
        (0..16).for_each(decide);
        assert_eq!((dropped.get(), decisions_dropped.get()), (28, 0));
        settle().await;
        assert_eq!(
            api.arrived(),
            vec!["Placed"; IN_FLIGHT],
            "the writes in flight are decisions"
        );
        // Still no answer: the decision lane has room again, the mirrored lane does not.
        (16..24).for_each(decide);
        (40..50).for_each(mirror);
        settle().await;
        assert_eq!((dropped.get(), decisions_dropped.get()), (38, 0));
        assert_eq!(api.arrived().len(), IN_FLIGHT, "nothing more taken");
        // One answer frees one slot, and the writer takes one event into it: the arrivals
        // are the order in which it takes them.
        for taken in IN_FLIGHT + 1..=36 {
            api.answer(1);
            settle().await;
            assert_eq!(api.arrived().len(), taken);
        }
        api.open();
        flush(&sink).await;
        let mut expected = vec!["Placed"; 24];
        expected.extend(["Pulled"; 12]);
        assert_eq!(
            api.arrived(),
            expected,
            "every decision, then the mirrored events kept"
        );
    }

    /// Decisions first across sinks (the pod controller's and the status observer's): while
    /// one sink has a decision waiting for a writer, another sharing its [`DecisionsFirst`]
    /// starts no mirrored write.
    #[tokio::test(start_paused = true)]
    async fn mirrored_events_wait_while_another_sink_has_decisions_waiting() {
        let first = Arc::new(DecisionsFirst::default());
        let api = GatedApi::new();
        let decisions = EventSink::spawn_bounded(
            api.client(),
            reporter(),
            16,
            Counter::default(),
            first.clone(),
        );
        let fake = FakeApi::new();
        let observer = EventSink::spawn_bounded(
            fake.client(),
            reporter(),
            16,
            Counter::default(),
            first.clone(),
        );
        for i in 0..=IN_FLIGHT {
            decisions.publish(
                &pod(),
                EventKind::Normal,
                "Placed",
                &format!("zone {i}"),
                "placing",
            );
        }
        for i in 0..5 {
            observer.publish_once(
                &pod(),
                EventKind::Normal,
                "Pulled",
                &format!("pulled {i}"),
                "ContainerGroupEvent",
            );
        }
        settle().await;
        assert_eq!(api.arrived().len(), IN_FLIGHT, "one decision still waits");
        assert_eq!(
            fake.count(&http::Method::POST, EVENTS),
            0,
            "no mirrored write while it waits"
        );
        api.open();
        flush(&decisions).await;
        flush(&observer).await;
        assert_eq!(fake.count(&http::Method::POST, EVENTS), 5);
        assert_eq!(first.waiting.load(Ordering::Acquire), 0);
    }

    /// A sink whose runtime ends with decisions still queued stops holding other sinks'
    /// mirrored events back.
    #[test]
    fn decisions_left_behind_by_a_dropped_writer_no_longer_wait() {
        let first = Arc::new(DecisionsFirst::default());
        {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let _guard = rt.enter();
            let sink = EventSink::spawn_bounded(
                GatedApi::new().client(),
                reporter(),
                16,
                Counter::default(),
                first.clone(),
            );
            for i in 0..3 {
                sink.publish(&pod(), EventKind::Normal, "Placed", &format!("{i}"), "p");
            }
            assert_eq!(first.waiting.load(Ordering::Acquire), 3);
        }
        assert_eq!(first.waiting.load(Ordering::Acquire), 0);
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

    /// A queued event keeps each field as given, and a field the pod lacks stays absent
    /// (not empty) in the body; such an Event goes to the `default` namespace.
    #[test]
    fn a_packed_event_gives_back_every_field_and_keeps_absent_ones_absent() {
        let reporter = Reporter {
            controller: "vnode".into(),
            instance: "r-1".into(),
        };
        let now = k8s_openapi::jiff::Timestamp::now();
        let json = |q: &Queued| serde_json::to_value(q.body(&reporter)).expect("encodes");
        let full =
            Queued::new(&pod(), "p.1", now, EventKind::Normal, "R", "nöte", "act").expect("packs");
        let body = json(&full);
        assert_eq!(
            body["metadata"],
            serde_json::json!({"name": "p.1", "namespace": "ns"})
        );
        assert_eq!(
            (
                &body["reason"],
                &body["note"],
                &body["action"],
                &body["type"]
            ),
            (&"R".into(), &"nöte".into(), &"act".into(), &"Normal".into())
        );
        assert_eq!(
            body["regarding"],
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "ns", "uid": "u-1"})
        );
        let mut bare = pod();
        bare.metadata.namespace = None;
        bare.metadata.uid = None;
        let bare = Queued::new(&bare, "p.2", now, EventKind::Normal, "", "", "").expect("packs");
        assert_eq!(bare.namespace(), "default");
        let body = json(&bare);
        assert_eq!(body["metadata"], serde_json::json!({"name": "p.2"}));
        assert_eq!(
            body["regarding"],
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "name": "p"})
        );
        assert_eq!(body["note"], "");
    }

    #[test]
    fn events_carry_the_pod_reference_and_valid_unique_or_stable_names() {
        let now = k8s_openapi::jiff::Timestamp::now();
        let long = "é".repeat(800);
        let pod = pod();
        let reporter = Reporter {
            controller: "vnode".into(),
            instance: "r-1".into(),
        };
        let queued =
            Queued::new(&pod, "a", now, EventKind::Warning, "X", &long, "a").expect("packs");
        assert_eq!(queued.namespace(), "ns");
        let body = serde_json::to_vec(&queued.body(&reporter)).expect("encodes");
        // The body is a valid events.k8s.io/v1 Event.
        let a: Event = serde_json::from_slice(&body).expect("an Event");
        assert_eq!(a.metadata.name.as_deref(), Some("a"));
        assert_eq!(a.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(a.type_.as_deref(), Some("Warning"));
        assert_eq!(a.reason.as_deref(), Some("X"));
        assert_eq!(a.action.as_deref(), Some("a"));
        let regarding = a.regarding.as_ref().expect("regarding");
        assert_eq!(regarding.uid.as_deref(), Some("u-1"));
        assert_eq!(regarding.name.as_deref(), Some("p"));
        assert_eq!(regarding.namespace.as_deref(), Some("ns"));
        assert_eq!(regarding.kind.as_deref(), Some("Pod"));
        assert_eq!(regarding.api_version.as_deref(), Some("v1"));
        assert!(a.note.as_deref().is_some_and(|n| n.len() <= 1024));
        assert_eq!(a.reporting_controller.as_deref(), Some("vnode"));
        assert_eq!(a.reporting_instance.as_deref(), Some("r-1"));
        // eventTime is a MicroTime: microsecond precision on the wire.
        assert_eq!(
            a.event_time.map(|t| t.0.as_microsecond()),
            Some(now.as_microsecond())
        );

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
