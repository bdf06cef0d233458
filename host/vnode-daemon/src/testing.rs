//! Test support: a small in-memory Kubernetes API behind a real `kube::Client`.
//!
//! It stores objects by their REST path and implements what the daemon's loops use: get,
//! list, create (409 on existing), update and update-status with resourceVersion
//! preconditions (409 on a stale version), delete. Tests can override any request with a
//! handler (to inject errors or answer review APIs) and read the request log. The embedded API
//! server (`vnode-apiserver`) replaces this in the end-to-end tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{Method, Request, Response};
use kube::client::Body;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub method: Method,
    pub path: String,
    #[allow(dead_code)]
    pub query: String,
    pub body: Value,
}

type Handler = Arc<dyn Fn(&Req) -> Option<(u16, Value)> + Send + Sync>;

/// The in-memory API server.
#[derive(Clone, Default)]
pub(crate) struct FakeApi {
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
    log: Arc<Mutex<Vec<(Method, String)>>>,
    version: Arc<AtomicU64>,
    handler: Arc<Mutex<Option<Handler>>>,
}

impl FakeApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// A kube client whose requests this fake answers.
    pub fn client(&self) -> kube::Client {
        let fake = self.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let fake = fake.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let req = Req {
                    method: parts.method.clone(),
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or_default().to_string(),
                    body,
                };
                let (code, value) = fake.handle(&req);
                let resp = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&value).unwrap_or_default()))
                    .expect("valid response");
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        kube::Client::new(svc, "default")
    }

    /// Answers matching requests with the handler's response; `None` falls through to storage.
    pub fn set_handler(&self, h: impl Fn(&Req) -> Option<(u16, Value)> + Send + Sync + 'static) {
        *self.handler.lock() = Some(Arc::new(h));
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().get(path).cloned()
    }

    pub fn put(&self, path: &str, mut value: Value) {
        let rv = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        value["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.lock().insert(path.to_string(), value);
    }

    /// Every stored object whose path starts with `prefix` (e.g. a namespace's events).
    pub fn values_under(&self, prefix: &str) -> Vec<Value> {
        self.objects
            .lock()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn remove(&self, path: &str) -> Option<Value> {
        self.objects.lock().remove(path)
    }

    pub fn count(&self, method: &Method, path: &str) -> usize {
        self.log
            .lock()
            .iter()
            .filter(|(m, p)| m == method && p == path)
            .count()
    }

    fn handle(&self, req: &Req) -> (u16, Value) {
        self.log.lock().push((req.method.clone(), req.path.clone()));
        let custom = self.handler.lock().clone();
        if let Some(h) = custom
            && let Some(answer) = h(req)
        {
            return answer;
        }
        let (path, status_sub) = match req.path.strip_suffix("/status") {
            Some(p) => (p.to_string(), true),
            None => (req.path.clone(), false),
        };
        let mut objects = self.objects.lock();
        match req.method {
            Method::GET => {
                if let Some(v) = objects.get(&path) {
                    return (200, v.clone());
                }
                let prefix = format!("{path}/");
                let items: Vec<Value> = objects
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
                    .map(|(_, v)| v.clone())
                    .collect();
                if is_collection(&path) {
                    return (
                        200,
                        json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}),
                    );
                }
                status(404, "NotFound")
            }
            Method::POST => {
                let name = req.body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let key = format!("{path}/{name}");
                if objects.contains_key(&key) {
                    return status(409, "AlreadyExists");
                }
                let mut v = req.body.clone();
                let rv = self.version.fetch_add(1, Ordering::SeqCst) + 1;
                v["metadata"]["resourceVersion"] = json!(rv.to_string());
                v["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
                v["metadata"]["creationTimestamp"] = json!(jiff::Timestamp::now().to_string());
                objects.insert(key, v.clone());
                (201, v)
            }
            Method::PUT => {
                let Some(current) = objects.get(&path).cloned() else {
                    return status(404, "NotFound");
                };
                let sent_rv = req.body["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default();
                if !sent_rv.is_empty()
                    && sent_rv
                        != current["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap_or_default()
                {
                    return status(409, "Conflict");
                }
                let mut v = if status_sub {
                    let mut v = current.clone();
                    v["status"] = req.body["status"].clone();
                    v
                } else {
                    let mut v = req.body.clone();
                    if !current["status"].is_null() {
                        v["status"] = current["status"].clone();
                    }
                    v["metadata"]["uid"] = current["metadata"]["uid"].clone();
                    v
                };
                let rv = self.version.fetch_add(1, Ordering::SeqCst) + 1;
                v["metadata"]["resourceVersion"] = json!(rv.to_string());
                objects.insert(path, v.clone());
                (200, v)
            }
            Method::PATCH => {
                // JSON merge patch (RFC 7386), the only kind the daemon sends.
                let Some(mut current) = objects.get(&path).cloned() else {
                    return status(404, "NotFound");
                };
                let want_uid = &req.body["metadata"]["uid"];
                if !want_uid.is_null() && *want_uid != current["metadata"]["uid"] {
                    return status(409, "Conflict");
                }
                merge_patch(&mut current, &req.body);
                let rv = self.version.fetch_add(1, Ordering::SeqCst) + 1;
                current["metadata"]["resourceVersion"] = json!(rv.to_string());
                objects.insert(path, current.clone());
                (200, current)
            }
            Method::DELETE => match objects.remove(&path) {
                Some(v) => (200, v),
                None => status(404, "NotFound"),
            },
            _ => status(405, "MethodNotAllowed"),
        }
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Paths that name a collection (`/api/v1/nodes`, `/apis/g/v/namespaces/ns/leases`).
fn is_collection(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let after_version = if segs.first() == Some(&"api") { 2 } else { 3 };
    let rest = segs.len().saturating_sub(after_version);
    match segs.get(after_version) {
        Some(&"namespaces") => rest == 3 || rest == 1,
        _ => rest == 1,
    }
}

/// A Kubernetes `Status` error body.
pub(crate) fn status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "message": reason, "reason": reason, "code": code}),
    )
}

/// The API path of a node.
pub(crate) fn node_path(name: &str) -> String {
    format!("/api/v1/nodes/{name}")
}

/// The API path of a lease.
pub(crate) fn lease_path(ns: &str, name: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}")
}

/// reqwest is built without a bundled crypto provider; tests install ring once per process.
pub(crate) fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
