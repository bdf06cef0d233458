//! The in-memory object store: JSON objects keyed by resource, namespace and name, one
//! global monotonically increasing resourceVersion, a bounded window of recent changes for
//! watch resumption (older versions get 410 Gone), and a broadcast fan-out to watchers.
//!
//! Objects are kept as `Arc<serde_json::Value>`: a list or watch shares them instead of
//! copying, and a change event in the window points at the same allocation as the live
//! object, so the window costs little beyond the objects themselves.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use parking_lot::RwLock;
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
    pub object: Arc<Value>,
    /// The object before a modification (so selector watches can turn it into ADDED/DELETED).
    pub previous: Option<Arc<Value>>,
    /// `object` serialised as JSON, made by the first watcher that needs it and shared by
    /// all the others (a change is encoded once, not once per watcher).
    encoded: std::sync::OnceLock<bytes::Bytes>,
}

impl WatchEvent {
    /// `object` as JSON bytes, serialised once per change.
    pub fn object_json(&self) -> &bytes::Bytes {
        self.encoded.get_or_init(|| {
            // Serialising a `Value` cannot fail (its keys are strings).
            bytes::Bytes::from(serde_json::to_vec(&*self.object).unwrap_or_default())
        })
    }
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

type Key = (String, String);

/// Changes still in the window plus a subscription for later ones.
pub type Backlog = (Vec<Arc<WatchEvent>>, broadcast::Receiver<Arc<WatchEvent>>);

/// Read access to the store's contents under its lock.
pub struct Inner {
    rv: u64,
    objects: Vec<BTreeMap<Key, Arc<Value>>>,
    window: VecDeque<Arc<WatchEvent>>,
    window_cap: usize,
    evicted_up_to: u64,
}

impl Inner {
    /// Looks one object up.
    pub fn get(&self, res: ResourceId, ns: &str, name: &str) -> Option<&Arc<Value>> {
        self.objects[res].get(&(ns.to_string(), name.to_string()))
    }

    /// All objects of a resource (in one namespace, or all).
    pub fn iter<'a>(
        &'a self,
        res: ResourceId,
        ns: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = &'a Arc<Value>> + 'a> {
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
    tx: broadcast::Sender<Arc<WatchEvent>>,
}

/// Timestamp in the RFC 3339 second precision Kubernetes uses for `metav1.Time`.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Timestamp with microseconds, for `metav1.MicroTime` fields (`eventTime`).
pub fn now_micro() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
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

impl Store {
    /// An empty store whose watch window keeps `window_cap` changes.
    pub fn new(window_cap: usize) -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            inner: RwLock::new(Inner {
                rv: 1,
                objects: RESOURCES.iter().map(|_| BTreeMap::new()).collect(),
                window: VecDeque::new(),
                window_cap: window_cap.max(1),
                evicted_up_to: 0,
            }),
            tx,
        }
    }

    /// Runs `f` with read access.
    pub fn read<T>(&self, f: impl FnOnce(&Inner) -> T) -> T {
        f(&self.inner.read())
    }

    /// One object.
    pub fn get(&self, res: ResourceId, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.inner.read().get(res, ns, name).cloned()
    }

    /// Objects matching `keep`, and the resourceVersion of the snapshot.
    pub fn list(
        &self,
        res: ResourceId,
        ns: Option<&str>,
        keep: impl Fn(&Value) -> bool,
    ) -> (Vec<Arc<Value>>, u64) {
        let inner = self.inner.read();
        let items = inner.iter(res, ns).filter(|o| keep(o)).cloned().collect();
        (items, inner.rv)
    }

    /// Number of stored objects of one resource.
    pub fn count(&self, res: ResourceId) -> usize {
        self.inner.read().objects[res].len()
    }

    /// A snapshot of matching objects plus a subscription that sees every later change.
    pub fn snapshot_and_subscribe(
        &self,
        res: ResourceId,
        ns: Option<&str>,
        keep: impl Fn(&Value) -> bool,
    ) -> (Vec<Arc<Value>>, u64, broadcast::Receiver<Arc<WatchEvent>>) {
        let inner = self.inner.read();
        let rx = self.tx.subscribe();
        let items = inner.iter(res, ns).filter(|o| keep(o)).cloned().collect();
        (items, inner.rv, rx)
    }

    /// Changes after `from` still in the window, plus a subscription for later ones;
    /// 410 Gone when `from` has already left the window.
    pub fn subscribe_from(&self, from: u64) -> Result<Backlog, ApiError> {
        let inner = self.inner.read();
        let backlog = inner.events_after(from)?;
        Ok((backlog, self.tx.subscribe()))
    }

    /// Changes after `from` still in the window (for a watcher that fell behind).
    pub fn events_after(&self, from: u64) -> Result<Vec<Arc<WatchEvent>>, ApiError> {
        self.inner.read().events_after(from)
    }

    /// A subscription to all future changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.tx.subscribe()
    }

    fn record(
        &self,
        inner: &mut Inner,
        kind: EventKind,
        res: ResourceId,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        let ev = Arc::new(WatchEvent {
            rv: inner.rv,
            kind,
            resource: res,
            object,
            previous,
            encoded: std::sync::OnceLock::new(),
        });
        if inner.window.len() >= inner.window_cap
            && let Some(old) = inner.window.pop_front()
        {
            inner.evicted_up_to = old.rv;
        }
        inner.window.push_back(ev.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(ev);
    }

    /// Creates an object. `obj` must carry `metadata.name` (or `generateName`) and, for
    /// namespaced resources, `metadata.namespace`. Sets uid, creationTimestamp,
    /// resourceVersion and generation. With `dry_run` nothing is stored.
    pub fn create(
        &self,
        res: ResourceId,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let info = &RESOURCES[res];
        let mut inner = self.inner.write();
        let ns = if info.namespaced {
            meta_str(&obj, "namespace").to_string()
        } else {
            String::new()
        };
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
        if inner.objects[res].contains_key(&(ns.clone(), name.clone())) {
            return Err(ApiError::already_exists(info.group, info.plural, &name));
        }
        let rv = inner.rv + 1;
        let meta = obj
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("object must be a JSON object"))?
            .entry("metadata")
            .or_insert_with(|| json!({}));
        if !meta.is_object() {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
        meta["name"] = json!(name);
        if info.namespaced {
            meta["namespace"] = json!(ns);
        } else if let Some(m) = meta.as_object_mut() {
            m.remove("namespace");
        }
        meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
        meta["resourceVersion"] = json!(rv.to_string());
        meta["creationTimestamp"] = json!(now_rfc3339());
        meta["generation"] = json!(1);
        if let Some(m) = meta.as_object_mut() {
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("selfLink");
        }
        let obj = Arc::new(obj);
        if dry_run {
            return Ok(obj);
        }
        inner.rv = rv;
        inner.objects[res].insert((ns, name), obj.clone());
        self.record(&mut inner, EventKind::Added, res, obj.clone(), None);
        Ok(obj)
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
        let info = &RESOURCES[res];
        let mut inner = self.inner.write();
        let key = (ns.to_string(), name.to_string());
        let cur = inner.objects[res]
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
        let change = f(&cur, &inner)?;
        let change = match change {
            Change::Put(new) if Self::finished_deleting(res, &new) => Change::Delete,
            other => other,
        };
        match change {
            Change::Unchanged => Ok(Outcome::Stored(cur)),
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
                    return Ok(Outcome::Stored(cur));
                }
                if spec_changed(&cur, &new) {
                    let g = cur["metadata"]["generation"].as_i64().unwrap_or(1);
                    new["metadata"]["generation"] = json!(g + 1);
                }
                let rv = inner.rv + 1;
                new["metadata"]["resourceVersion"] = json!(rv.to_string());
                let new = Arc::new(new);
                if dry_run {
                    return Ok(Outcome::Stored(new));
                }
                inner.rv = rv;
                inner.objects[res].insert(key, new.clone());
                self.record(&mut inner, EventKind::Modified, res, new.clone(), Some(cur));
                Ok(Outcome::Stored(new))
            }
            Change::Delete => {
                let rv = inner.rv + 1;
                let mut last = (*cur).clone();
                last["metadata"]["resourceVersion"] = json!(rv.to_string());
                let last = Arc::new(last);
                if dry_run {
                    return Ok(Outcome::Deleted(last));
                }
                inner.rv = rv;
                inner.objects[res].remove(&key);
                self.record(&mut inner, EventKind::Deleted, res, last.clone(), Some(cur));
                Ok(Outcome::Deleted(last))
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
        let keys: Vec<Key> = inner
            .iter(res, Some(ns))
            .filter(|o| pick(o))
            .map(|o| (ns.to_string(), meta_str(o, "name").to_string()))
            .collect();
        for key in &keys {
            if let Some(cur) = inner.objects[res].remove(key) {
                inner.rv += 1;
                let mut last = (*cur).clone();
                last["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
                self.record(
                    &mut inner,
                    EventKind::Deleted,
                    res,
                    Arc::new(last),
                    Some(cur),
                );
            }
        }
        keys.len()
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
}
