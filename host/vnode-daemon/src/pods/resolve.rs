//! Waking pods that wait for a ConfigMap or Secret.
//!
//! A pod whose mandatory ConfigMap/Secret (or a key in one) is missing waits with an event
//! and is re-checked slowly ([`super::state::RECHECK`]). [`ReferenceWaiter`] makes it start
//! promptly instead: while pods wait, it watches exactly the objects they reference — one
//! kube-runtime watcher per object, namespaced, with a `metadata.name` field selector, so
//! nothing else in the cluster is read — and re-queues the waiting pods as soon as one of
//! those objects appears or changes. Watches of objects nobody waits for any more are
//! stopped after [`LINGER`].
//!
//! A pod is only woken by a state of the object it has not seen: each waiting pod keeps the
//! state (absent, or the resourceVersion) the watch knew when the pod started waiting. So a
//! pod blocked on a missing key of an existing ConfigMap is not woken again and again by
//! that ConfigMap's unchanged existence; when the watch starts after the pod's check (its
//! first listing), an object the pod may not have seen wakes it once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use vnode_mapping::translator_input;

use super::queue::KeyedQueue;

/// How long a watch outlives the last pod waiting on it (a pod that is woken and still
/// blocked starts waiting again at once and must find the watch, and what it knew, there).
pub const LINGER: Duration = Duration::from_secs(30);

/// What a waiting pod is blocked on: one referenced object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// `ConfigMap` or `Secret`.
    pub kind: RefKind,
    /// Namespace (the pod's).
    pub namespace: String,
    /// Object name.
    pub name: String,
}

/// The kinds of object a pod can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefKind {
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
}

/// What a watch knows about its object.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// Not listed yet.
    Unknown,
    /// Does not exist.
    Absent,
    /// Exists at this resourceVersion.
    Version(String),
}

struct Watch {
    seen: Seen,
    /// Pod key → the state the pod was last checked against.
    pods: HashMap<String, Seen>,
    idle_since: Option<Instant>,
    stop: CancellationToken,
}

/// Wakes pods blocked on missing ConfigMaps/Secrets when those appear or change.
pub struct ReferenceWaiter {
    client: Client,
    watches: Mutex<HashMap<Reference, Watch>>,
}

/// Whether a step failure means "a mandatory ConfigMap/Secret (or one of its keys) is
/// missing" (the `Mandatory…NotFound` event reasons of `translator_input`).
pub fn is_missing_reference(reason: &str) -> bool {
    reason.starts_with("Mandatory") && reason.ends_with("NotFound")
}

/// Every ConfigMap and Secret `pod` references.
pub fn references_of(pod: &Pod) -> Vec<Reference> {
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let set = translator_input::references(pod);
    let cms = set.config_maps.into_iter().map(|name| Reference {
        kind: RefKind::ConfigMap,
        namespace: namespace.clone(),
        name,
    });
    let secrets = set.secrets.into_iter().map(|name| Reference {
        kind: RefKind::Secret,
        namespace: namespace.clone(),
        name,
    });
    cms.chain(secrets).collect()
}

impl ReferenceWaiter {
    /// A waiter reading through `client`.
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new(Self {
            client,
            watches: Mutex::new(HashMap::new()),
        })
    }

    /// Pod `key` waits for `refs`: it is enqueued on `queue` when one of them appears or
    /// changes. Watches run until `token` is cancelled (or nobody waits on them).
    pub fn wait(
        self: &Arc<Self>,
        key: &str,
        refs: Vec<Reference>,
        queue: &KeyedQueue,
        token: &CancellationToken,
    ) {
        let mut watches = self.watches.lock();
        for r in refs {
            let w = watches.entry(r.clone()).or_insert_with(|| {
                let stop = token.child_token();
                tokio::spawn(self.clone().watch(r.clone(), queue.clone(), stop.clone()));
                Watch {
                    seen: Seen::Unknown,
                    pods: HashMap::new(),
                    idle_since: None,
                    stop,
                }
            });
            w.pods.insert(key.to_string(), w.seen.clone());
            w.idle_since = None;
        }
    }

    /// Stops watches nobody has waited on for [`LINGER`], and forgets pods that are gone
    /// (`exists(key)` false).
    pub fn prune(&self, exists: impl Fn(&str) -> bool) {
        let now = Instant::now();
        self.watches.lock().retain(|_, w| {
            w.pods.retain(|k, _| exists(k));
            if w.pods.is_empty() && w.idle_since.is_none() {
                w.idle_since = Some(now);
            }
            let keep = w
                .idle_since
                .is_none_or(|since| now.duration_since(since) < LINGER);
            if !keep {
                w.stop.cancel();
            }
            keep
        });
    }

    /// Number of objects watched (for tests and metrics).
    pub fn watched(&self) -> usize {
        self.watches.lock().len()
    }

    /// Records the object's new state and returns the pods to wake: those that have not
    /// seen it. Absence does not wake a pod that never saw the object (it was missing then).
    fn observe(&self, r: &Reference, now: Seen) -> Vec<String> {
        let mut watches = self.watches.lock();
        let Some(w) = watches.get_mut(r) else {
            return Vec::new();
        };
        let wake: Vec<String> = w
            .pods
            .iter()
            .filter(|(_, seen)| **seen != now && !(**seen == Seen::Unknown && now == Seen::Absent))
            .map(|(k, _)| k.clone())
            .collect();
        w.seen = now;
        // A woken pod checks everything again (and waits again if still blocked): it no
        // longer waits on any watch.
        let now = Instant::now();
        for w in watches.values_mut() {
            for k in &wake {
                w.pods.remove(k);
            }
            if w.pods.is_empty() && w.idle_since.is_none() {
                w.idle_since = Some(now);
            }
        }
        wake
    }

    /// Prunes (see [`ReferenceWaiter::prune`]) every few seconds against the pod store,
    /// until `token` is cancelled.
    pub async fn prune_until(
        self: Arc<Self>,
        store: super::store::PodStore,
        token: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                biased;
                () = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.prune(|key| {
                key.split_once('/')
                    .is_some_and(|(ns, name)| store.get(ns, name).is_some())
            });
        }
    }

    async fn watch(self: Arc<Self>, r: Reference, queue: KeyedQueue, stop: CancellationToken) {
        match r.kind {
            RefKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &r.namespace);
                self.watch_object(api, r, queue, stop).await;
            }
            RefKind::Secret => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &r.namespace);
                self.watch_object(api, r, queue, stop).await;
            }
        }
    }

    async fn watch_object<K>(
        &self,
        api: Api<K>,
        r: Reference,
        queue: KeyedQueue,
        stop: CancellationToken,
    ) where
        K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    {
        let cfg = watcher::Config::default().fields(&format!("metadata.name={}", r.name));
        let stream = watcher(api, cfg).default_backoff();
        let mut stream = std::pin::pin!(stream);
        // During a (re)list: whether the object was in it.
        let mut listed: Option<Seen> = None;
        loop {
            let event = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                e = stream.next() => e,
            };
            let now = match event {
                None => return,
                Some(Err(e)) => {
                    tracing::debug!(kind = ?r.kind, namespace = %r.namespace, name = %r.name, error = %e, "reference watch error; retrying with backoff");
                    continue;
                }
                Some(Ok(watcher::Event::Init)) => {
                    listed = Some(Seen::Absent);
                    continue;
                }
                Some(Ok(watcher::Event::InitApply(o))) => {
                    listed = Some(version_of(&o));
                    continue;
                }
                Some(Ok(watcher::Event::InitDone)) => listed.take().unwrap_or(Seen::Absent),
                Some(Ok(watcher::Event::Apply(o))) => version_of(&o),
                Some(Ok(watcher::Event::Delete(_))) => Seen::Absent,
            };
            for key in self.observe(&r, now) {
                tracing::debug!(pod = %key, kind = ?r.kind, namespace = %r.namespace, name = %r.name, "a referenced object changed; re-checking the pod");
                queue.enqueue(&key);
            }
        }
    }
}

fn version_of<K: Resource>(o: &K) -> Seen {
    Seen::Version(o.meta().resource_version.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeApi;

    fn cm(name: &str) -> Reference {
        Reference {
            kind: RefKind::ConfigMap,
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn waiter_with(r: &Reference, seen: Seen, pods: &[(&str, Seen)]) -> Arc<ReferenceWaiter> {
        let w = ReferenceWaiter::new(FakeApi::new().client());
        w.watches.lock().insert(
            r.clone(),
            Watch {
                seen,
                pods: pods
                    .iter()
                    .map(|(k, s)| (k.to_string(), s.clone()))
                    .collect(),
                idle_since: None,
                stop: CancellationToken::new(),
            },
        );
        w
    }

    #[test]
    fn mandatory_not_found_reasons_are_missing_references() {
        for r in [
            "MandatoryConfigMapNotFound",
            "MandatorySecretNotFound",
            "MandatoryConfigMapKeyNotFound",
            "MandatorySecretKeyNotFound",
        ] {
            assert!(is_missing_reference(r), "{r}");
        }
        for r in ["OptionalSecretNotFound", "PlacementRefused", "InvalidPod"] {
            assert!(!is_missing_reference(r), "{r}");
        }
    }

    #[tokio::test]
    async fn an_appearing_object_wakes_its_pods_once() {
        let r = cm("app-config");
        let w = waiter_with(&r, Seen::Absent, &[("default/a", Seen::Absent)]);
        assert!(w.observe(&r, Seen::Absent).is_empty(), "still missing");
        assert_eq!(w.observe(&r, Seen::Version("7".into())), vec!["default/a"]);
        assert!(
            w.observe(&r, Seen::Version("8".into())).is_empty(),
            "woken pods are no longer waiting"
        );
    }

    #[tokio::test]
    async fn an_unchanged_existing_object_does_not_wake_a_pod_that_saw_it() {
        // Blocked on a missing key of an existing ConfigMap: only a change wakes the pod.
        let r = cm("app-config");
        let w = waiter_with(
            &r,
            Seen::Version("7".into()),
            &[("default/a", Seen::Version("7".into()))],
        );
        assert!(w.observe(&r, Seen::Version("7".into())).is_empty());
        assert_eq!(w.observe(&r, Seen::Version("9".into())), vec!["default/a"]);
    }

    #[tokio::test]
    async fn the_first_listing_wakes_a_pod_only_if_the_object_exists() {
        // The pod's check ran before the watch listed: an object in the first listing may
        // have been created in between, so it wakes the pod; a missing one does not.
        let r = cm("app-config");
        let w = waiter_with(&r, Seen::Unknown, &[("default/a", Seen::Unknown)]);
        assert!(w.observe(&r, Seen::Absent).is_empty());
        let w = waiter_with(&r, Seen::Unknown, &[("default/a", Seen::Unknown)]);
        assert_eq!(w.observe(&r, Seen::Version("3".into())), vec!["default/a"]);
    }

    #[tokio::test]
    async fn idle_watches_are_stopped_after_the_linger_and_gone_pods_forgotten() {
        let r = cm("app-config");
        let w = waiter_with(&r, Seen::Absent, &[("default/gone", Seen::Absent)]);
        let stop = w.watches.lock()[&r].stop.clone();
        w.prune(|_| false);
        assert_eq!(w.watched(), 1, "kept for the linger");
        w.watches.lock().get_mut(&r).expect("watch").idle_since =
            Some(Instant::now() - LINGER - Duration::from_secs(1));
        w.prune(|_| false);
        assert_eq!(w.watched(), 0);
        assert!(stop.is_cancelled());
    }

    #[test]
    fn references_cover_env_env_from_and_volumes() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "containers": [{
                    "name": "c", "image": "i",
                    "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "a"}}}],
                    "envFrom": [{"secretRef": {"name": "s-env"}}]
                }],
                "volumes": [{"name": "v", "configMap": {"name": "cm-vol"}}]
            }
        }))
        .expect("pod");
        let mut refs = references_of(&pod);
        refs.sort();
        let names: Vec<(RefKind, &str, &str)> = refs
            .iter()
            .map(|r| (r.kind, r.namespace.as_str(), r.name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                (RefKind::ConfigMap, "ns", "cm-env"),
                (RefKind::ConfigMap, "ns", "cm-vol"),
                (RefKind::Secret, "ns", "s-env"),
            ]
        );
    }
}
