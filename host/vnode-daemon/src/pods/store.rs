//! The pod store: every pod bound to this node, kept compact.
//!
//! The store holds every pod on the node for its whole life, so it is the daemon's largest
//! allocation. A decoded `k8s_openapi` [`Pod`] costs ~13.5 KiB of heap for a small pod
//! (every optional field of `PodSpec`, `Container`, `Volume`… is inline, and each string
//! its own allocation), while the same pod as compact JSON is ~2.7 KiB. So the store keeps
//! each pod as the JSON it serialises to (lossless: every field survives, see the
//! round-trip test), next to the few facts the daemon reads about *all* pods at once (UID,
//! phase, deletion, the group annotation), and a pod is decoded only when it is worked on
//! ([`StoredPod::decode`]). `bench pods` at 10,000 pods: the reflector's store of decoded
//! pods was 135 MB of the daemon's 251 MB heap peak (heaptrack); stored as JSON it is about a
//! fifth of that, and the daemon's peak RSS went from 515 to 399 MiB.
//!
//! Still not stored: `managedFields` and kubectl's `last-applied-configuration` annotation
//! (a second copy of the whole spec); nothing in the daemon reads them.
//!
//! The store itself is kube-runtime's reflector [`Store`] over [`StoredPod`] (its `Lookup`
//! impl is below), so listing semantics (a relist is swapped in whole at `InitDone`) are
//! kube-runtime's. Readiness is not: kube-runtime's `Store::wait_until_ready` wakes only
//! the waiter that polled it last (one `oneshot` receiver, one waker slot), and the
//! daemon's readiness and the observer wait at the same time, so the store signals its
//! first complete listing on a [`watch`] channel of its own.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{Lookup, ObjectRef, Store};
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::groups::annotations;

/// kubectl's copy of the applied manifest; never read here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One pod as the store keeps it: its JSON plus the facts read across all pods.
#[derive(Clone, Debug)]
pub struct StoredPod {
    name: String,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    phase: Option<String>,
    deleting: bool,
    group_id: Option<String>,
    /// The trimmed pod, serialised (shared: the reflector clones what it stores).
    json: Arc<[u8]>,
}

/// Why a stored pod could not be decoded (it was encoded from a `Pod` by this process, so
/// this means a bug, never bad input; callers keep the pod and try again later).
#[derive(Debug, thiserror::Error)]
#[error("stored pod {key} does not decode: {source}")]
pub struct DecodeError {
    key: String,
    #[source]
    source: serde_json::Error,
}

/// Drops what nothing in the daemon reads and can be as large as the rest of the pod:
/// managed fields, and kubectl's `last-applied-configuration` annotation.
pub fn trim(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    if let Some(a) = pod.metadata.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

fn needs_trim(pod: &Pod) -> bool {
    pod.metadata.managed_fields.is_some()
        || pod
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(LAST_APPLIED))
}

impl StoredPod {
    /// The pod, trimmed ([`trim`]) and encoded.
    pub fn new(pod: &Pod) -> Self {
        if needs_trim(pod) {
            let mut trimmed = pod.clone();
            trim(&mut trimmed);
            return Self::encode(&trimmed);
        }
        Self::encode(pod)
    }

    fn encode(pod: &Pod) -> Self {
        // A `Pod` always serialises (string keys, no non-finite floats). Were it ever not to,
        // the empty value fails to decode, which every reader handles (logged, retried).
        let json = serde_json::to_vec(pod).unwrap_or_else(|e| {
            tracing::error!(pod = ?pod.metadata.name, error = %e, "a pod does not serialise for the store");
            Vec::new()
        });
        let meta = &pod.metadata;
        Self {
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
            deleting: meta.deletion_timestamp.is_some(),
            group_id: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(annotations::GROUP_ID))
                .cloned(),
            json: json.into(),
        }
    }

    /// The whole pod (as stored: without managed fields and last-applied configuration).
    pub fn decode(&self) -> Result<Pod, DecodeError> {
        serde_json::from_slice(&self.json).map_err(|source| DecodeError {
            key: self.key(),
            source,
        })
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// `namespace/name` (namespace `default` when absent), the controller's key.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.namespace.as_deref().unwrap_or("default"),
            self.name
        )
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// `status.phase`.
    pub fn phase(&self) -> Option<&str> {
        self.phase.as_deref()
    }

    /// Whether `metadata.deletionTimestamp` is set.
    pub fn deleting(&self) -> bool {
        self.deleting
    }

    /// The `vnode.io/container-group-id` annotation.
    pub fn group_id(&self) -> Option<&str> {
        self.group_id.as_deref()
    }

    /// Bytes of encoded pod held (the bulk of what the store costs per pod).
    pub fn encoded_len(&self) -> usize {
        self.json.len()
    }
}

impl Lookup for StoredPod {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }
    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.name))
    }
    fn namespace(&self) -> Option<Cow<'_, str>> {
        self.namespace.as_deref().map(Cow::Borrowed)
    }
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        self.resource_version.as_deref().map(Cow::Borrowed)
    }
    fn uid(&self) -> Option<Cow<'_, str>> {
        self.uid.as_deref().map(Cow::Borrowed)
    }
}

/// The readable pod store; cheap to clone.
#[derive(Clone)]
pub struct PodStore {
    inner: Store<StoredPod>,
    /// True once the first complete listing is in.
    ready: watch::Receiver<bool>,
}

/// The writing half of the pod store, fed with the pod watcher's events.
pub struct PodStoreWriter {
    inner: Writer<StoredPod>,
    ready: watch::Sender<bool>,
}

/// The pod store's writer was dropped before the first complete listing arrived.
#[derive(Debug, thiserror::Error)]
#[error("the pod store's writer stopped before the first complete listing")]
pub struct WriterDropped;

/// A new, empty (not yet ready) pod store and its writer.
pub fn pod_store() -> (PodStore, PodStoreWriter) {
    let inner = Writer::default();
    let (ready_tx, ready_rx) = watch::channel(false);
    (
        PodStore {
            inner: inner.as_reader(),
            ready: ready_rx,
        },
        PodStoreWriter {
            inner,
            ready: ready_tx,
        },
    )
}

impl PodStoreWriter {
    /// Applies one watcher event (a relist is swapped in whole at `InitDone`, which also
    /// makes the store ready).
    pub fn apply_watcher_event(&mut self, event: &watcher::Event<Pod>) {
        let stored = match event {
            watcher::Event::Apply(p) => watcher::Event::Apply(StoredPod::new(p)),
            watcher::Event::Delete(p) => watcher::Event::Delete(StoredPod::new(p)),
            watcher::Event::InitApply(p) => watcher::Event::InitApply(StoredPod::new(p)),
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitDone => watcher::Event::InitDone,
        };
        self.inner.apply_watcher_event(&stored);
        if matches!(event, watcher::Event::InitDone) {
            // Every waiter is woken (`send_if_modified`: later relists wake no one).
            self.ready
                .send_if_modified(|ready| !std::mem::replace(ready, true));
        }
    }
}

impl PodStore {
    /// Waits until the store holds its first complete listing. Any number of tasks may
    /// wait at once; all are woken.
    pub async fn wait_until_ready(&self) -> Result<(), WriterDropped> {
        let mut ready = self.ready.clone();
        // `wait_for` looks at the current value first: ready stays ready after the writer
        // is gone.
        ready
            .wait_for(|r| *r)
            .await
            .map(|_| ())
            .map_err(|_| WriterDropped)
    }

    /// The stored pod `namespace/name` (not decoded).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<StoredPod>> {
        self.inner.get(&ObjectRef::new(name).within(namespace))
    }

    /// The pod `namespace/name`, decoded. A pod that does not decode (a bug) is logged and
    /// reported as absent: use [`PodStore::get`] where absence leads to an action.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        decode_logged(self.get(namespace, name)?.as_ref())
    }

    /// Every stored pod (not decoded).
    pub fn state(&self) -> Vec<Arc<StoredPod>> {
        self.inner.state()
    }

    /// Every stored pod, decoded (for the rare whole-node reads, e.g. the kubelet API's
    /// `/pods`).
    pub fn pods(&self) -> Vec<Pod> {
        self.inner
            .state()
            .iter()
            .filter_map(|p| decode_logged(p))
            .collect()
    }

    /// Number of pods stored.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether no pod is stored.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

fn decode_logged(p: &StoredPod) -> Option<Pod> {
    match p.decode() {
        Ok(pod) => Some(pod),
        Err(e) => {
            tracing::error!(error = %e, "a stored pod does not decode; skipped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod with every part the create path (`vnode_mapping`'s placement and translator
    /// inputs, reference resolution, the ECI request stamping) and the status writes read.
    fn full_pod() -> Pod {
        // In parts: one `json!` this deep exceeds the macro recursion limit.
        let metadata = serde_json::json!({
            "name": "web-0", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
            "generation": 3, "creationTimestamp": "2026-11-26T08:00:00Z",
            "deletionTimestamp": "2026-11-26T09:00:00Z", "deletionGracePeriodSeconds": 30,
            "labels": {"app": "web", "tier": "front"},
            "annotations": {
                "k8s.aliyun.com/eci-use-specs": "2-4Gi",
                "k8s.aliyun.com/eci-spot-strategy": "SpotAsPriceGo",
                "vnode.io/container-group-id": "eci-1",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}",
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "o-1", "controller": true}],
            "finalizers": ["example.com/keep"],
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
        });
        let env = serde_json::json!([
            {"name": "PLAIN", "value": "1"},
            {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k", "optional": true}}},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}},
            {"name": "FROM_FIELD", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "FROM_RES", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        ]);
        let probes = serde_json::json!({
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 80}, "initialDelaySeconds": 5, "periodSeconds": 10},
            "readinessProbe": {"tcpSocket": {"port": "http"}, "failureThreshold": 3},
            "startupProbe": {"exec": {"command": ["true"]}},
            "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        });
        let mut container = serde_json::json!({
            "name": "app", "image": "nginx:1.25", "imagePullPolicy": "Always",
            "command": ["nginx"], "args": ["-g", "daemon off;"], "workingDir": "/srv",
            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
            "env": env,
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "sec", "optional": true}}],
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}},
            "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "x", "readOnly": true}],
            "securityContext": {"privileged": false, "capabilities": {"add": ["NET_ADMIN"]}, "readOnlyRootFilesystem": true},
            "stdin": true, "tty": true,
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        });
        for (k, v) in probes.as_object().expect("object") {
            container[k] = v.clone();
        }
        let projected = serde_json::json!({"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token", "audience": "api"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]});
        let volumes = serde_json::json!([
            {"name": "data", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
            {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "a.txt", "mode": 256}], "defaultMode": 420}},
            {"name": "sec", "secret": {"secretName": "sec", "optional": true}},
            {"name": "nfs", "nfs": {"server": "nas.example.com", "path": "/share"}},
            {"name": "pvc", "persistentVolumeClaim": {"claimName": "data-web-0"}},
            {"name": "host", "hostPath": {"path": "/tmp", "type": "Directory"}},
            {"name": "kube-api-access", "projected": projected},
        ]);
        let scheduling = serde_json::json!({
            "nodeSelector": {"topology.kubernetes.io/zone": "cn-hangzhou-h"},
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["cn-hangzhou-h", "cn-hangzhou-i"]}]}]}}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}],
        });
        let mut spec = serde_json::json!({
            "nodeName": "vk", "restartPolicy": "Never", "serviceAccountName": "web",
            "automountServiceAccountToken": true, "hostname": "web-0", "subdomain": "web",
            "dnsPolicy": "None", "dnsConfig": {"nameservers": ["10.0.0.10"], "searches": ["svc"], "options": [{"name": "ndots", "value": "2"}]},
            "hostAliases": [{"ip": "10.1.1.1", "hostnames": ["db"]}],
            "terminationGracePeriodSeconds": 45, "activeDeadlineSeconds": 600,
            "priorityClassName": "high", "priority": 1000,
            "imagePullSecrets": [{"name": "regcred"}],
            "securityContext": {"runAsUser": 1000, "fsGroup": 2000, "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]},
            "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "true"]}],
            "containers": [container],
            "volumes": volumes,
        });
        for (k, v) in scheduling.as_object().expect("object") {
            spec[k] = v.clone();
        }
        let container_status = serde_json::json!({
            "name": "app", "ready": true, "restartCount": 1, "image": "nginx:1.25",
            "imageID": "nginx@sha256:abc", "containerID": "eci://eci-1/app", "started": true,
            "state": {"running": {"startedAt": "2026-11-26T08:00:08Z"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": "2026-11-26T08:00:06Z", "finishedAt": "2026-11-26T08:00:07Z"}},
        });
        let status = serde_json::json!({
            "phase": "Running", "hostIP": "10.0.0.1", "podIP": "172.16.0.5",
            "podIPs": [{"ip": "172.16.0.5"}], "startTime": "2026-11-26T08:00:05Z", "qosClass": "Burstable",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-26T08:00:09Z"}],
            "containerStatuses": [container_status],
        });
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": metadata, "spec": spec, "status": status,
        }))
        .expect("pod")
    }

    #[test]
    fn a_pod_round_trips_through_the_store_with_everything_but_managed_fields_and_last_applied() {
        let pod = full_pod();
        let stored = StoredPod::new(&pod);
        let back = stored.decode().expect("decodes");
        let mut expected = pod.clone();
        trim(&mut expected);
        assert_eq!(back, expected, "every field the daemon reads survives");
        assert!(back.metadata.managed_fields.is_none());
        let annotations = back.metadata.annotations.as_ref().expect("annotations");
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert_eq!(annotations["k8s.aliyun.com/eci-use-specs"], "2-4Gi");
        // The spec the create path reads, field by field for the largest parts.
        let spec = back.spec.as_ref().expect("spec");
        assert_eq!(spec, pod.spec.as_ref().expect("spec"));
        assert_eq!(spec.containers[0].env.as_ref().map(Vec::len), Some(5));
        assert_eq!(spec.volumes.as_ref().map(Vec::len), Some(7));
        assert_eq!(back.status, pod.status);
        // The facts read across all pods without decoding.
        assert_eq!(stored.key(), "shop/web-0");
        assert_eq!(stored.uid(), Some("u-1"));
        assert_eq!(stored.phase(), Some("Running"));
        assert!(stored.deleting());
        assert_eq!(stored.group_id(), Some("eci-1"));
        assert_eq!(
            Lookup::resource_version(&stored).as_deref(),
            Some("42"),
            "the reflector keys on the stored metadata"
        );
    }

    #[test]
    fn the_stored_form_is_much_smaller_than_the_decoded_pod() {
        let stored = StoredPod::new(&full_pod());
        // The JSON of this (large) pod; decoded it takes several times this much heap.
        assert!(stored.encoded_len() < 6 * 1024, "{}", stored.encoded_len());
    }

    /// The daemon's readiness and the observer both wait for the first listing, at the same
    /// time. Both must be woken (kube-runtime's `Store::wait_until_ready` keeps one waker:
    /// the waiter polled last took it, the other slept forever — a daemon that never became
    /// ready).
    #[tokio::test]
    async fn every_concurrent_waiter_is_woken_by_the_first_listing() {
        let (store, mut writer) = pod_store();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.wait_until_ready().await })
            })
            .collect();
        // Current-thread runtime: each waiter runs up to its first await and registers.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for waiter in waiters {
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("woken by InitDone")
                .expect("task")
                .expect("ready");
        }
        // Later waiters return at once.
        store.wait_until_ready().await.expect("ready");
    }

    #[tokio::test]
    async fn the_store_serves_a_listing_once_it_is_complete_and_follows_watch_events() {
        let (store, mut writer) = pod_store();
        let mut pod = full_pod();
        pod.metadata.deletion_timestamp = None;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(pod.clone()));
        assert!(store.get("shop", "web-0").is_none(), "not before InitDone");
        writer.apply_watcher_event(&watcher::Event::InitDone);
        store.wait_until_ready().await.expect("ready");
        assert_eq!(store.len(), 1);
        assert!(!store.get("shop", "web-0").expect("stored").deleting());
        let mut deleting = pod.clone();
        deleting.metadata.deletion_timestamp = full_pod().metadata.deletion_timestamp;
        writer.apply_watcher_event(&watcher::Event::Apply(deleting));
        assert!(
            store
                .pod("shop", "web-0")
                .expect("decoded")
                .metadata
                .deletion_timestamp
                .is_some()
        );
        assert_eq!(store.pods().len(), 1);
        writer.apply_watcher_event(&watcher::Event::Delete(pod));
        assert!(store.is_empty());
    }
}
