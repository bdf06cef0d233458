//! The in-memory object store: objects keyed by resource, namespace and name, one global
//! monotonically increasing resourceVersion, a bounded window of recent changes for watch
//! resumption (older versions get 410 Gone), and a broadcast fan-out to watchers.
//!
//! Each stored version is an [`Object`]: its JSON serialisation (made once, when the
//! version is written) plus the few fields the store and selectors need (namespace, name,
//! uid, labels, the selectable fields of its resource, whether it is being deleted). Get,
//! list and watch write the stored bytes as they are and filter on the indexed fields, so
//! serving an object never re-serialises it; a `serde_json::Value` is parsed only where a
//! request needs the whole object (updates, patches, admission, tables). The window's
//! events share the same `Arc<Object>` as the live objects, so it costs little beyond them.
//!
//! Invariants: `Object::json` is exactly `serde_json::to_vec` of the stored `Value`
//! (`serde_json` maps are sorted, so equal values give equal bytes, which is how a no-op
//! update is recognised); its `metadata.resourceVersion` is the rv of the change that
//! wrote it; events are recorded and broadcast under the write lock, in rv order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::resources::{RESOURCES, ResourceId};
use crate::status::ApiError;

/// The kind of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventKind {
    /// The wire name (`ADDED`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One stored version of an object: its JSON bytes and the fields that are read without
/// parsing them.
#[derive(Debug)]
pub struct Object {
    /// The watch line of the change that wrote this version
    /// (`{"type":"<line_kind>","object":<json>}` and a newline); `json` is a slice of it,
    /// so the line every watcher sends costs no copy and ~30 bytes of memory.
    line: Bytes,
    line_kind: EventKind,
    json: Bytes,
    namespace: Box<str>,
    name: Box<str>,
    uid: Box<str>,
    labels: Box<[(Box<str>, Box<str>)]>,
    /// `(path, value)` for every field selector path of the resource, with the value as
    /// [`crate::selectors::field_value`] renders it.
    fields: Box<[(&'static str, Box<str>)]>,
    deleting: bool,
}

impl Object {
    /// Indexes `value` (already serialised as `json`, a slice of `line`, the watch line of
    /// a `line_kind` change).
    fn new(res: ResourceId, value: &Value, line: Bytes, line_kind: EventKind, json: Bytes) -> Self {
        let meta = &value["metadata"];
        let s = |v: &Value| Box::<str>::from(v.as_str().unwrap_or(""));
        let labels = meta["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str().into(), v.into())))
                    .collect()
            })
            .unwrap_or_default();
        let fields = crate::selectors::supported_fields(res)
            .iter()
            .map(|p| (*p, crate::selectors::field_value(value, p).into()))
            .collect();
        Self {
            line,
            line_kind,
            json,
            namespace: s(&meta["namespace"]),
            name: s(&meta["name"]),
            uid: s(&meta["uid"]),
            labels,
            fields,
            deleting: meta.get("deletionTimestamp").is_some_and(|d| !d.is_null()),
        }
    }

    /// Serialises and indexes `value`, written by a `kind` change: the bytes are that
    /// change's watch line, with the object's JSON inside it.
    fn from_value(res: ResourceId, value: &Value, kind: EventKind) -> Self {
        let mut line = line_prefix(kind.as_str());
        let start = line.len();
        // Serialising a `Value` cannot fail (its keys are strings).
        if serde_json::to_writer(&mut line, value).is_err() {
            line.truncate(start);
        }
        let end = line.len();
        line.extend_from_slice(LINE_SUFFIX);
        // Stored versions live as long as the object: keep no spare capacity (shrinking
        // is done in place by the allocator).
        line.shrink_to_fit();
        let line = Bytes::from(line);
        let json = line.slice(start..end);
        Self::new(res, value, line, kind, json)
    }

    /// The object as JSON (what get, list and watch send).
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The object parsed (for the code that needs all of it).
    pub fn value(&self) -> Value {
        // The bytes were serialised from a `Value`, so they parse.
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// `metadata.namespace` (empty for cluster-scoped objects).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// One label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }

    /// A field selector path's value (`metadata.name`, `metadata.namespace` or one of the
    /// resource's selectable fields; `None` for any other path).
    pub fn field(&self, path: &str) -> Option<&str> {
        match path {
            "metadata.name" => Some(&self.name),
            "metadata.namespace" => Some(&self.namespace),
            _ => self
                .fields
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, v)| &**v),
        }
    }

    /// Whether `metadata.deletionTimestamp` is set.
    pub fn is_deleting(&self) -> bool {
        self.deleting
    }
}

/// One change, as kept in the window and sent to watchers.
#[derive(Debug)]
pub struct WatchEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    /// What happened.
    pub kind: EventKind,
    /// Storage resource of the object.
    pub resource: ResourceId,
    /// The object after the change (for deletes: its last state, with the deletion's rv).
    pub object: Arc<Object>,
    /// The object before a modification (so selector watches can turn it into ADDED/DELETED).
    pub previous: Option<Arc<Object>>,
}

impl WatchEvent {
    /// `object` as JSON bytes (serialised once, when the version was written).
    pub fn object_json(&self) -> &Bytes {
        self.object.json()
    }

    /// The watch-stream line for this change sent as `self.kind` with the stored object's
    /// bytes: the object was serialised inside it when it was written, so every watcher
    /// shares the same bytes.
    pub fn line(&self) -> Bytes {
        if self.object.line_kind == self.kind {
            self.object.line.clone()
        } else {
            watch_line(self.kind.as_str(), self.object.json())
        }
    }
}

const LINE_SUFFIX: &[u8] = b"}\n";

fn line_prefix(ty: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(2048);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(ty.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line
}

/// One watch-stream line: `{"type":"<ty>","object":<object>}` and a newline.
pub fn watch_line(ty: &str, object: &[u8]) -> Bytes {
    let mut line = line_prefix(ty);
    line.reserve(object.len() + LINE_SUFFIX.len());
    line.extend_from_slice(object);
    line.extend_from_slice(LINE_SUFFIX);
    Bytes::from(line)
}

/// What a mutation closure decided.
pub enum Change {
    /// Store this new version.
    Put(Value),
    /// Remove the object.
    Delete,
    /// Leave it alone.
    Unchanged,
}

/// The result of a mutation.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Written (or a no-op update), with the stored object.
    Stored(Arc<Value>),
    /// Removed; the last state.
    Deleted(Arc<Value>),
}

/// The result of a mutation as stored versions (see [`Store::mutate_object`]).
#[derive(Debug, Clone)]
pub enum ObjectOutcome {
    /// Written (or a no-op update), with the stored version.
    Stored(Arc<Object>),
    /// Removed; the last state.
    Deleted(Arc<Object>),
}

impl ObjectOutcome {
    /// The stored or last version, whichever it is.
    pub fn object(&self) -> &Arc<Object> {
        match self {
            ObjectOutcome::Stored(o) | ObjectOutcome::Deleted(o) => o,
        }
    }
}

type Key = (String, String);

/// Changes still in the window plus a subscription for later ones.
pub type Backlog = (Vec<Arc<WatchEvent>>, broadcast::Receiver<Arc<WatchEvent>>);

/// Read access to the store's contents under its lock.
pub struct Inner {
    rv: u64,
    objects: Vec<BTreeMap<Key, Arc<Object>>>,
    window: VecDeque<Arc<WatchEvent>>,
    window_cap: usize,
    evicted_up_to: u64,
}

impl Inner {
    /// Looks one object up.
    pub fn get(&self, res: ResourceId, ns: &str, name: &str) -> Option<&Arc<Object>> {
        // `BTreeMap<(String, String), _>` cannot be searched by `(&str, &str)`; building
        // the key costs two short allocations.
        self.objects[res].get(&(ns.to_string(), name.to_string()))
    }

    /// All objects of a resource (in one namespace, or all), in key order.
    pub fn iter<'a>(
        &'a self,
        res: ResourceId,
        ns: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = &'a Arc<Object>> + 'a> {
        match ns {
            Some(ns) => Box::new(
                self.objects[res]
                    .range((ns.to_string(), String::new())..)
                    .take_while(move |((n, _), _)| n == ns)
                    .map(|(_, v)| v),
            ),
            None => Box::new(self.objects[res].values()),
        }
    }

    /// The current resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    fn events_after(&self, from: u64) -> Result<Vec<Arc<WatchEvent>>, ApiError> {
        if from < self.evicted_up_to {
            return Err(ApiError::gone(from, self.evicted_up_to + 1));
        }
        let start = self.window.partition_point(|e| e.rv <= from);
        Ok(self.window.range(start..).cloned().collect())
    }
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    inner: RwLock<Inner>,
    /// Every change (the built-in controllers).
    tx: broadcast::Sender<Arc<WatchEvent>>,
    /// The changes of one storage resource, for watches of it: a watch is woken only by
    /// its own resource's changes, not by every event object the daemon writes. Created
    /// on the first watch of a resource; taken under the store's read lock and fed under
    /// its write lock, so a subscription sees exactly the changes after its snapshot.
    by_resource: Mutex<HashMap<ResourceId, broadcast::Sender<Arc<WatchEvent>>>>,
    /// Parsed values of recently written versions. Taken after the store's lock (read or
    /// write), never before it.
    parsed: Mutex<ParsedCache>,
}

/// Capacity of each broadcast channel (a watcher further behind catches up from the
/// window).
const FANOUT_CAPACITY: usize = 4096;

/// How many recently written versions keep their parsed `Value` (see [`ParsedCache`]).
/// A pod is written ~5 times within seconds of its creation (the daemon's patches, the
/// graceful and the final delete); 2 s of pods at 500/s fit. Memory: a pod's `Value` is
/// ~15 KiB (2,048 entries added ~30 MiB to `vnode bench apiserver`'s RSS at 10,000 pods).
const PARSED_CACHE_CAPACITY: usize = 1024;

/// The parsed `Value`s of the most recently written versions, keyed by the identity of
/// their [`Object`] (an entry holds the `Arc<Object>`, so its address cannot be reused
/// while the entry exists). An update, patch or delete of a version still here starts
/// from its `Value` instead of parsing the stored bytes (the parse was ~8% of the API
/// server's CPU under `vnode bench pods`). The `Value` is the one the bytes were
/// serialised from, so it is what parsing them gives. Events are not kept: they are
/// written in bulk and almost never updated.
#[derive(Default)]
struct ParsedCache {
    entries: HashMap<usize, (Arc<Object>, Arc<Value>)>,
    /// Insertion order for eviction (may name entries already taken).
    order: VecDeque<usize>,
}

impl ParsedCache {
    fn key(obj: &Arc<Object>) -> usize {
        Arc::as_ptr(obj) as usize
    }

    fn insert(&mut self, res: ResourceId, obj: &Arc<Object>, value: Arc<Value>) {
        if res == crate::resources::ids::EVENTS {
            return;
        }
        let key = Self::key(obj);
        if self.entries.insert(key, (obj.clone(), value)).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > PARSED_CACHE_CAPACITY {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&old);
        }
        if self.order.len() > 2 * PARSED_CACHE_CAPACITY {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }

    /// Removes and returns `obj`'s parsed value (the version is about to be replaced).
    fn take(&mut self, obj: &Arc<Object>) -> Option<Arc<Value>> {
        self.entries.remove(&Self::key(obj)).map(|(_, v)| v)
    }

    /// `obj`'s parsed value, left in place.
    fn peek(&self, obj: &Arc<Object>) -> Option<Arc<Value>> {
        self.entries.get(&Self::key(obj)).map(|(_, v)| v.clone())
    }
}

// Timestamps are written on every write and audit record. jiff's RFC 3339 printer with a
// fixed precision writes the same text as `strftime("%Y-%m-%dT%H:%M:%S[.%6f]Z")` without
// interpreting a format string each time.
const SECONDS_PRINTER: jiff::fmt::temporal::DateTimePrinter =
    jiff::fmt::temporal::DateTimePrinter::new().precision(Some(0));
const MICROS_PRINTER: jiff::fmt::temporal::DateTimePrinter =
    jiff::fmt::temporal::DateTimePrinter::new().precision(Some(6));

fn print_timestamp(printer: &jiff::fmt::temporal::DateTimePrinter, t: jiff::Timestamp) -> String {
    let mut out = String::with_capacity(32);
    // Printing into a `String` cannot fail.
    let _ = printer.print_timestamp(&t, &mut out);
    out
}

/// Timestamp in the RFC 3339 second precision Kubernetes uses for `metav1.Time`.
pub fn now_rfc3339() -> String {
    print_timestamp(&SECONDS_PRINTER, jiff::Timestamp::now())
}

/// Timestamp with microseconds, for `metav1.MicroTime` fields (`eventTime`).
pub fn now_micro() -> String {
    micro_time(jiff::Timestamp::now())
}

/// `t` as a Kubernetes `MicroTime` (UTC, microseconds, fixed width).
pub fn micro_time(t: jiff::Timestamp) -> String {
    print_timestamp(&MICROS_PRINTER, t)
}

/// A random (version 4) UUID for `metadata.uid`, from the thread-local generator rather
/// than one `getrandom` system call per object as `Uuid::new_v4` makes.
pub fn random_uid() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The suffix alphabet upstream uses for `generateName` (no vowels, no look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Five random characters as upstream appends to `generateName`.
pub fn random_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..5)
        .map(|_| NAME_ALPHABET[rng.random_range(0..NAME_ALPHABET.len())] as char)
        .collect()
}

fn meta_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v["metadata"][field].as_str().unwrap_or("")
}

/// Whether two objects differ outside `metadata` and `status` (i.e. a new generation).
fn spec_changed(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a != b;
    };
    let skip = |k: &String| k == "metadata" || k == "status";
    let ka = a.iter().filter(|(k, _)| !skip(k));
    let kb = b.iter().filter(|(k, _)| !skip(k));
    !ka.eq(kb)
}

/// Sets `metadata.resourceVersion` of an object to `rv`.
fn set_rv(v: &mut Value, rv: u64) {
    v["metadata"]["resourceVersion"] = Value::String(rv.to_string());
}

impl Store {
    /// An empty store whose watch window keeps `window_cap` changes.
    pub fn new(window_cap: usize) -> Self {
        let (tx, _) = broadcast::channel(FANOUT_CAPACITY);
        Self {
            inner: RwLock::new(Inner {
                rv: 1,
                objects: RESOURCES.iter().map(|_| BTreeMap::new()).collect(),
                window: VecDeque::new(),
                window_cap: window_cap.max(1),
                evicted_up_to: 0,
            }),
            tx,
            by_resource: Mutex::new(HashMap::new()),
            parsed: Mutex::new(ParsedCache::default()),
        }
    }

    /// A subscription to `res`'s changes (see [`Store::by_resource`]).
    fn subscribe_resource(&self, res: ResourceId) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.by_resource
            .lock()
            .entry(res)
            .or_insert_with(|| broadcast::channel(FANOUT_CAPACITY).0)
            .subscribe()
    }

    /// Runs `f` with read access.
    pub fn read<T>(&self, f: impl FnOnce(&Inner) -> T) -> T {
        f(&self.inner.read())
    }

    /// One object, parsed.
    pub fn get(&self, res: ResourceId, ns: &str, name: &str) -> Option<Arc<Value>> {
        let obj = self.get_object(res, ns, name)?;
        let cached = self.parsed.lock().peek(&obj);
        Some(cached.unwrap_or_else(|| Arc::new(obj.value())))
    }

    /// One object's stored version.
    pub fn get_object(&self, res: ResourceId, ns: &str, name: &str) -> Option<Arc<Object>> {
        self.inner.read().get(res, ns, name).cloned()
    }

    /// Objects matching `keep`, parsed, and the resourceVersion of the snapshot. Every
    /// object of the resource is parsed: hot paths use [`Store::list_objects`].
    pub fn list(
        &self,
        res: ResourceId,
        ns: Option<&str>,
        keep: impl Fn(&Value) -> bool,
    ) -> (Vec<Arc<Value>>, u64) {
        let (objects, rv) = self.list_objects(res, ns, |_| true);
        let items = objects
            .iter()
            .map(|o| o.value())
            .filter(|v| keep(v))
            .map(Arc::new)
            .collect();
        (items, rv)
    }

    /// Stored versions matching `keep` (judged on the indexed fields), and the
    /// resourceVersion of the snapshot.
    pub fn list_objects(
        &self,
        res: ResourceId,
        ns: Option<&str>,
        keep: impl Fn(&Object) -> bool,
    ) -> (Vec<Arc<Object>>, u64) {
        let inner = self.inner.read();
        let items = inner.iter(res, ns).filter(|o| keep(o)).cloned().collect();
        (items, inner.rv)
    }

    /// Number of stored objects of one resource.
    pub fn count(&self, res: ResourceId) -> usize {
        self.inner.read().objects[res].len()
    }

    /// A snapshot of matching objects plus a subscription that sees every later change of
    /// `res`.
    pub fn snapshot_and_subscribe(
        &self,
        res: ResourceId,
        ns: Option<&str>,
        keep: impl Fn(&Object) -> bool,
    ) -> (Vec<Arc<Object>>, u64, broadcast::Receiver<Arc<WatchEvent>>) {
        let inner = self.inner.read();
        let rx = self.subscribe_resource(res);
        let items = inner.iter(res, ns).filter(|o| keep(o)).cloned().collect();
        (items, inner.rv, rx)
    }

    /// Changes after `from` still in the window (of every resource), plus a subscription
    /// for later changes of `res`; 410 Gone when `from` has already left the window.
    pub fn subscribe_from(&self, res: ResourceId, from: u64) -> Result<Backlog, ApiError> {
        let inner = self.inner.read();
        let backlog = inner.events_after(from)?;
        Ok((backlog, self.subscribe_resource(res)))
    }

    /// Changes after `from` still in the window (for a watcher that fell behind).
    pub fn events_after(&self, from: u64) -> Result<Vec<Arc<WatchEvent>>, ApiError> {
        self.inner.read().events_after(from)
    }

    /// A subscription to all future changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.tx.subscribe()
    }

    /// The store's resourceVersion if `rx` (a subscription to one resource) has received
    /// every change sent to it: then nothing up to that version is left for its watcher,
    /// and a bookmark may carry it although the resource itself did not change (the
    /// other resources' writes move the version on, and a resume from an older one could
    /// find it gone from the window). `None` while changes are still queued.
    pub fn progress(&self, rx: &broadcast::Receiver<Arc<WatchEvent>>) -> Option<u64> {
        // Changes are sent under the write lock: under the read lock the queue and the
        // version agree.
        let inner = self.inner.read();
        rx.is_empty().then_some(inner.rv)
    }

    /// The resourceVersion now plus a subscription to `res`'s later changes.
    pub fn subscribe_now(&self, res: ResourceId) -> (u64, broadcast::Receiver<Arc<WatchEvent>>) {
        let inner = self.inner.read();
        (inner.rv, self.subscribe_resource(res))
    }

    fn record(
        &self,
        inner: &mut Inner,
        kind: EventKind,
        res: ResourceId,
        object: Arc<Object>,
        previous: Option<Arc<Object>>,
    ) {
        let ev = Arc::new(WatchEvent {
            rv: inner.rv,
            kind,
            resource: res,
            object,
            previous,
        });
        if inner.window.len() >= inner.window_cap
            && let Some(old) = inner.window.pop_front()
        {
            inner.evicted_up_to = old.rv;
        }
        inner.window.push_back(ev.clone());
        // No receivers is fine: nobody is watching.
        if let Some(tx) = self.by_resource.lock().get(&res) {
            let _ = tx.send(ev.clone());
        }
        let _ = self.tx.send(ev);
    }

    /// Creates an object. `obj` must carry `metadata.name` (or `generateName`) and, for
    /// namespaced resources, `metadata.namespace`. Sets uid, creationTimestamp,
    /// resourceVersion and generation. With `dry_run` nothing is stored.
    pub fn create(
        &self,
        res: ResourceId,
        obj: Value,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        self.create_inner(res, obj, dry_run).map(|(v, _)| v)
    }

    /// [`Store::create`], returning the stored version.
    pub fn create_object(
        &self,
        res: ResourceId,
        obj: Value,
        dry_run: bool,
    ) -> Result<Arc<Object>, ApiError> {
        self.create_inner(res, obj, dry_run).map(|(_, o)| o)
    }

    fn create_inner(
        &self,
        res: ResourceId,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<(Arc<Value>, Arc<Object>), ApiError> {
        let info = &RESOURCES[res];
        let ns = if info.namespaced {
            meta_str(&obj, "namespace").to_string()
        } else {
            String::new()
        };
        // Everything that does not depend on the store is done before taking the lock.
        {
            let meta = obj
                .as_object_mut()
                .ok_or_else(|| ApiError::bad_request("object must be a JSON object"))?
                .entry("metadata")
                .or_insert_with(|| json!({}));
            let Some(m) = meta.as_object_mut() else {
                return Err(ApiError::bad_request("metadata must be an object"));
            };
            if info.namespaced {
                m.insert("namespace".into(), Value::String(ns.clone()));
            } else {
                m.remove("namespace");
            }
            m.insert("uid".into(), Value::String(random_uid()));
            m.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
            m.insert("generation".into(), json!(1));
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("selfLink");
        }
        let mut inner = self.inner.write();
        let mut name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            let prefix = meta_str(&obj, "generateName").to_string();
            // Retry a few times on the (unlikely) collision, as upstream does.
            for _ in 0..8 {
                let candidate = format!("{prefix}{}", random_suffix());
                if !inner.objects[res].contains_key(&(ns.clone(), candidate.clone())) {
                    name = candidate;
                    break;
                }
            }
        }
        let key = (ns, name);
        if inner.objects[res].contains_key(&key) {
            return Err(ApiError::already_exists(info.group, info.plural, &key.1));
        }
        let rv = inner.rv + 1;
        obj["metadata"]["name"] = Value::String(key.1.clone());
        set_rv(&mut obj, rv);
        let stored = Arc::new(Object::from_value(res, &obj, EventKind::Added));
        let obj = Arc::new(obj);
        if dry_run {
            return Ok((obj, stored));
        }
        inner.rv = rv;
        inner.objects[res].insert(key, stored.clone());
        self.parsed.lock().insert(res, &stored, obj.clone());
        self.record(&mut inner, EventKind::Added, res, stored.clone(), None);
        Ok((obj, stored))
    }

    /// Atomically reads, decides and writes one object. `f` sees the current object and
    /// the whole store (for cross-object checks) and returns the change. A `Put` equal to
    /// the current object is a no-op (no new resourceVersion, no event), as upstream. A
    /// `Put` of an object that is being deleted and has no finalizers left completes the
    /// deletion unless it is a pod still in its grace period.
    pub fn mutate(
        &self,
        res: ResourceId,
        ns: &str,
        name: &str,
        dry_run: bool,
        f: impl FnOnce(&Arc<Value>, &Inner) -> Result<Change, ApiError>,
    ) -> Result<Outcome, ApiError> {
        self.mutate_inner(res, ns, name, dry_run, f).map(|(o, _)| o)
    }

    /// [`Store::mutate`], returning the stored version (what a response sends).
    pub fn mutate_object(
        &self,
        res: ResourceId,
        ns: &str,
        name: &str,
        dry_run: bool,
        f: impl FnOnce(&Arc<Value>, &Inner) -> Result<Change, ApiError>,
    ) -> Result<ObjectOutcome, ApiError> {
        self.mutate_inner(res, ns, name, dry_run, f).map(|(_, o)| o)
    }

    fn mutate_inner(
        &self,
        res: ResourceId,
        ns: &str,
        name: &str,
        dry_run: bool,
        f: impl FnOnce(&Arc<Value>, &Inner) -> Result<Change, ApiError>,
    ) -> Result<(Outcome, ObjectOutcome), ApiError> {
        let info = &RESOURCES[res];
        let mut inner = self.inner.write();
        let key = (ns.to_string(), name.to_string());
        let cur_obj = inner.objects[res]
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
        let cached = self.parsed.lock().take(&cur_obj);
        let cur = cached.unwrap_or_else(|| Arc::new(cur_obj.value()));
        // The version stays current unless the change below replaces it.
        let keep_parsed = |cur: &Arc<Value>| self.parsed.lock().insert(res, &cur_obj, cur.clone());
        let change = match f(&cur, &inner) {
            Ok(change) => change,
            Err(e) => {
                keep_parsed(&cur);
                return Err(e);
            }
        };
        let change = match change {
            Change::Put(new) if Self::finished_deleting(res, &new) => Change::Delete,
            other => other,
        };
        match change {
            Change::Unchanged => {
                keep_parsed(&cur);
                Ok((Outcome::Stored(cur), ObjectOutcome::Stored(cur_obj)))
            }
            Change::Put(mut new) => {
                // Identity fields never change through an update.
                for f in ["uid", "creationTimestamp", "name", "namespace"] {
                    new["metadata"][f] = cur["metadata"][f].clone();
                }
                if cur["metadata"].get("deletionTimestamp").is_some() {
                    new["metadata"]["deletionTimestamp"] =
                        cur["metadata"]["deletionTimestamp"].clone();
                }
                if !info.namespaced
                    && let Some(m) = new["metadata"].as_object_mut()
                {
                    m.remove("namespace");
                }
                new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
                new["metadata"]["generation"] = cur["metadata"]["generation"].clone();
                if new == *cur {
                    keep_parsed(&cur);
                    return Ok((Outcome::Stored(cur), ObjectOutcome::Stored(cur_obj)));
                }
                if spec_changed(&cur, &new) {
                    let g = cur["metadata"]["generation"].as_i64().unwrap_or(1);
                    new["metadata"]["generation"] = json!(g + 1);
                }
                let rv = inner.rv + 1;
                set_rv(&mut new, rv);
                let stored = Arc::new(Object::from_value(res, &new, EventKind::Modified));
                let new = Arc::new(new);
                if dry_run {
                    keep_parsed(&cur);
                    return Ok((Outcome::Stored(new), ObjectOutcome::Stored(stored)));
                }
                inner.rv = rv;
                inner.objects[res].insert(key, stored.clone());
                self.parsed.lock().insert(res, &stored, new.clone());
                self.record(
                    &mut inner,
                    EventKind::Modified,
                    res,
                    stored.clone(),
                    Some(cur_obj),
                );
                Ok((Outcome::Stored(new), ObjectOutcome::Stored(stored)))
            }
            Change::Delete => {
                let rv = inner.rv + 1;
                let mut last = Arc::unwrap_or_clone(cur);
                set_rv(&mut last, rv);
                let stored = Arc::new(Object::from_value(res, &last, EventKind::Deleted));
                let last = Arc::new(last);
                if dry_run {
                    return Ok((Outcome::Deleted(last), ObjectOutcome::Deleted(stored)));
                }
                inner.rv = rv;
                inner.objects[res].remove(&key);
                self.record(
                    &mut inner,
                    EventKind::Deleted,
                    res,
                    stored.clone(),
                    Some(cur_obj),
                );
                Ok((Outcome::Deleted(last), ObjectOutcome::Deleted(stored)))
            }
        }
    }

    fn finished_deleting(res: ResourceId, new: &Value) -> bool {
        let meta = &new["metadata"];
        if meta.get("deletionTimestamp").is_none_or(Value::is_null) {
            return false;
        }
        let no_finalizers = meta["finalizers"].as_array().is_none_or(|f| f.is_empty());
        let grace = meta["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
        no_finalizers && (res != crate::resources::ids::PODS || grace == 0)
    }

    /// Removes every object of `res` in namespace `ns` for which `pick` says so (namespace
    /// deletion). Returns how many were removed.
    pub fn remove_where(&self, res: ResourceId, ns: &str, pick: impl Fn(&Value) -> bool) -> usize {
        let mut inner = self.inner.write();
        let picked: Vec<(Key, Value)> = inner
            .iter(res, Some(ns))
            .map(|o| (o, o.value()))
            .filter(|(_, v)| pick(v))
            .map(|(o, v)| ((ns.to_string(), o.name().to_string()), v))
            .collect();
        let removed = picked.len();
        for (key, mut last) in picked {
            if let Some(cur) = inner.objects[res].remove(&key) {
                inner.rv += 1;
                set_rv(&mut last, inner.rv);
                let last = Arc::new(Object::from_value(res, &last, EventKind::Deleted));
                self.record(&mut inner, EventKind::Deleted, res, last, Some(cur));
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ids;

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": {"a": "1"}})
    }

    #[test]
    fn resource_versions_increase_and_noop_updates_keep_them() {
        let s = Store::new(100);
        let a = s.create(ids::CONFIGMAPS, cm("a"), false).expect("create");
        let rv_a: u64 = a["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("rv");
        let out = s
            .mutate(ids::CONFIGMAPS, "default", "a", false, |cur, _| {
                Ok(Change::Put((**cur).clone()))
            })
            .expect("noop");
        let Outcome::Stored(o) = out else {
            panic!("stored")
        };
        assert_eq!(
            o["metadata"]["resourceVersion"],
            a["metadata"]["resourceVersion"]
        );
        let out = s
            .mutate(ids::CONFIGMAPS, "default", "a", false, |cur, _| {
                let mut n = (**cur).clone();
                n["data"]["a"] = json!("2");
                Ok(Change::Put(n))
            })
            .expect("update");
        let Outcome::Stored(o) = out else {
            panic!("stored")
        };
        let rv2: u64 = o["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("rv");
        assert!(rv2 > rv_a);
        assert_eq!(o["metadata"]["generation"], 2);
        assert_eq!(
            s.create(ids::CONFIGMAPS, cm("a"), false)
                .expect_err("dup")
                .code,
            409
        );
    }

    #[test]
    fn window_evicts_and_reports_gone() {
        let s = Store::new(3);
        for i in 0..5 {
            s.create(ids::CONFIGMAPS, cm(&format!("c{i}")), false)
                .expect("create");
        }
        // rv 2..=6 were written; the window keeps 4,5,6.
        assert_eq!(s.events_after(1).expect_err("gone").code, 410);
        let evs = s.events_after(3).expect("in window");
        assert_eq!(evs.iter().map(|e| e.rv).collect::<Vec<_>>(), vec![4, 5, 6]);
    }

    #[test]
    fn stored_bytes_are_the_object_and_the_index_follows_it() {
        let s = Store::new(10);
        let mut o = cm("idx");
        o["metadata"]["labels"] = json!({"app": "web"});
        let v = s.create(ids::CONFIGMAPS, o, false).expect("create");
        let stored = s
            .get_object(ids::CONFIGMAPS, "default", "idx")
            .expect("stored");
        assert_eq!(
            stored.json().as_ref(),
            serde_json::to_vec(&*v).expect("json").as_slice()
        );
        assert_eq!(stored.value(), *v);
        assert_eq!((stored.namespace(), stored.name()), ("default", "idx"));
        assert_eq!(stored.label("app"), Some("web"));
        assert_eq!(stored.field("metadata.name"), Some("idx"));
        assert!(!stored.is_deleting());
        // A pod's selectable fields are indexed as field selectors read them.
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"nodeName": "n1", "hostNetwork": true}});
        let p = s.create_object(ids::PODS, pod, false).expect("pod");
        assert_eq!(p.field("spec.nodeName"), Some("n1"));
        assert_eq!(p.field("spec.hostNetwork"), Some("true"));
        assert_eq!(p.field("status.phase"), Some(""));
        assert!(!p.is_deleting(), "create clears deletionTimestamp");
        // The window's event carries the same stored version the store serves.
        let evs = s.events_after(0).expect("window");
        let last = evs.last().expect("event");
        assert!(Arc::ptr_eq(&last.object, &p));
        let (only_n1, _) =
            s.list_objects(ids::PODS, None, |o| o.field("spec.nodeName") == Some("n1"));
        assert_eq!(only_n1.len(), 1);
    }

    #[test]
    fn a_resource_subscription_gets_only_that_resource_and_one_shared_line() {
        let s = Store::new(10);
        let (rv0, mut pods) = s.subscribe_now(ids::PODS);
        let mut all = s.subscribe();
        s.create(ids::CONFIGMAPS, cm("not-a-pod"), false)
            .expect("configmap");
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": {}});
        let p = s.create_object(ids::PODS, pod, false).expect("pod");
        // The pod channel skips the config map; the all-changes channel has both.
        let ev = pods.try_recv().expect("the pod's change");
        assert_eq!((ev.resource, ev.kind), (ids::PODS, EventKind::Added));
        assert!(ev.rv > rv0 + 1, "after the config map's change");
        assert!(pods.try_recv().is_err(), "nothing else on the pod channel");
        assert_eq!(all.try_recv().expect("configmap").resource, ids::CONFIGMAPS);
        assert_eq!(all.try_recv().expect("pod").resource, ids::PODS);
        // The shared line is the upstream watch event of the stored bytes, made once.
        let line = ev.line();
        let parsed: Value = serde_json::from_slice(&line).expect("line is JSON");
        assert_eq!(parsed["type"], "ADDED");
        assert_eq!(parsed["object"], p.value());
        assert!(line.ends_with(b"}\n"));
        assert_eq!(ev.line().as_ptr(), line.as_ptr(), "built once");
        assert_eq!(
            p.json().as_ref(),
            serde_json::to_vec(&p.value()).expect("json")
        );
        // A version written by a modification carries its MODIFIED line.
        s.mutate(ids::PODS, "default", "p", false, |cur, _| {
            let mut n = (**cur).clone();
            n["spec"]["nodeName"] = json!("n1");
            Ok(Change::Put(n))
        })
        .expect("update");
        let ev = pods.try_recv().expect("modified");
        let parsed: Value = serde_json::from_slice(&ev.line()).expect("line is JSON");
        assert_eq!(parsed["type"], "MODIFIED");
        assert_eq!(parsed["object"]["spec"]["nodeName"], "n1");
        // A resumed subscription replays the window and then follows its resource.
        let (backlog, mut cms) = s.subscribe_from(ids::CONFIGMAPS, rv0).expect("window");
        assert_eq!(backlog.len(), 3, "config map, pod added, pod modified");
        s.create(ids::CONFIGMAPS, cm("second"), false).expect("cm");
        assert_eq!(cms.try_recv().expect("cm").object.name(), "second");
        // Progress: the pod subscription has seen everything for pods, so a bookmark may
        // carry the store's version, which the config maps moved on.
        assert_eq!(s.progress(&pods), Some(s.read(Inner::rv)));
        s.create(ids::CONFIGMAPS, cm("third"), false).expect("cm");
        assert_eq!(s.progress(&cms), None, "a change is still queued");
        assert!(cms.try_recv().is_ok());
        assert_eq!(s.progress(&cms), Some(s.read(Inner::rv)));
    }

    #[test]
    fn a_cached_parse_is_what_the_stored_bytes_parse_to_through_every_write() {
        let s = Store::new(100);
        let created = s
            .create_object(ids::CONFIGMAPS, cm("c"), false)
            .expect("create");
        let parsed = |o: &Arc<Object>| serde_json::from_slice::<Value>(o.json()).expect("json");
        assert_eq!(
            *s.get(ids::CONFIGMAPS, "default", "c").expect("get"),
            parsed(&created)
        );
        // A patch starts from the cached version and its result is cached in turn.
        let mut seen = None;
        let out = s
            .mutate_object(ids::CONFIGMAPS, "default", "c", false, |cur, _| {
                seen = Some((**cur).clone());
                let mut new = (**cur).clone();
                new["data"]["b"] = json!("2");
                Ok(Change::Put(new))
            })
            .expect("patch");
        assert_eq!(seen, Some(parsed(&created)));
        let stored = out.object().clone();
        assert_eq!(
            *s.get(ids::CONFIGMAPS, "default", "c").expect("get"),
            parsed(&stored)
        );
        // A failed or unchanged mutation keeps the entry; the next one still sees it.
        let failed = s.mutate(ids::CONFIGMAPS, "default", "c", false, |_, _| {
            Err(ApiError::bad_request("no"))
        });
        assert!(failed.is_err());
        s.mutate(ids::CONFIGMAPS, "default", "c", false, |_, _| {
            Ok(Change::Unchanged)
        })
        .expect("unchanged");
        assert!(s.parsed.lock().peek(&stored).is_some());
        let deleted = s
            .mutate_object(ids::CONFIGMAPS, "default", "c", false, |_, _| {
                Ok(Change::Delete)
            })
            .expect("delete");
        assert_eq!(parsed(deleted.object())["data"]["b"], "2");
        assert!(s.parsed.lock().peek(&stored).is_none());
        // Events are never cached.
        let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"}});
        let ev = s.create_object(ids::EVENTS, ev, false).expect("event");
        assert!(s.parsed.lock().peek(&ev).is_none());
    }

    #[test]
    fn the_parsed_cache_is_bounded_and_evicts_the_oldest() {
        let s = Store::new(10);
        let n = PARSED_CACHE_CAPACITY + 10;
        let objects: Vec<Arc<Object>> = (0..n)
            .map(|i| {
                s.create_object(ids::CONFIGMAPS, cm(&format!("c{i}")), false)
                    .expect("create")
            })
            .collect();
        let cache = s.parsed.lock();
        assert_eq!(cache.entries.len(), PARSED_CACHE_CAPACITY);
        assert!(cache.order.len() <= 2 * PARSED_CACHE_CAPACITY);
        assert!(cache.peek(&objects[0]).is_none());
        assert!(cache.peek(&objects[n - 1]).is_some());
        drop(cache);
        // An evicted version is parsed from its bytes.
        let v = s.get(ids::CONFIGMAPS, "default", "c0").expect("get");
        assert_eq!(v["metadata"]["name"], "c0");
        s.mutate(ids::CONFIGMAPS, "default", "c0", false, |cur, _| {
            let mut new = (**cur).clone();
            new["data"]["a"] = json!("3");
            Ok(Change::Put(new))
        })
        .expect("update");
        assert_eq!(
            s.get(ids::CONFIGMAPS, "default", "c0").expect("get")["data"]["a"],
            "3"
        );
    }

    #[test]
    fn uids_are_random_version_4_uuids() {
        let a = random_uid();
        let b = random_uid();
        assert_ne!(a, b);
        let u = uuid::Uuid::parse_str(&a).expect("uuid");
        assert_eq!(u.get_version_num(), 4);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn generate_name_and_namespace_listing() {
        let s = Store::new(10);
        let mut o = cm("");
        o["metadata"]["generateName"] = json!("x-");
        let c = s.create(ids::CONFIGMAPS, o, false).expect("create");
        assert!(
            c["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("x-") && n.len() == 7)
        );
        let mut other = cm("b");
        other["metadata"]["namespace"] = json!("other");
        s.create(ids::CONFIGMAPS, other, false).expect("create");
        assert_eq!(
            s.list(ids::CONFIGMAPS, Some("default"), |_| true).0.len(),
            1
        );
        assert_eq!(s.list(ids::CONFIGMAPS, None, |_| true).0.len(), 2);
    }

    #[test]
    fn timestamps_print_as_kubernetes_times() {
        for us in [
            0_i64,
            1,
            999_999,
            1_000_000,
            1_795_737_600_000_000,
            1_795_737_600_123_456,
            1_795_737_659_999_999,
            4_102_444_799_999_999,
        ] {
            let t = jiff::Timestamp::from_microsecond(us).expect("in range");
            assert_eq!(
                micro_time(t),
                t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string(),
                "{us}"
            );
            assert_eq!(
                print_timestamp(&SECONDS_PRINTER, t),
                t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "{us}"
            );
        }
        assert_eq!(now_micro().len(), 27);
        assert_eq!(now_rfc3339().len(), 20);
    }
}
