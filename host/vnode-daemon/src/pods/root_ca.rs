//! A watch-backed cache of the `kube-root-ca.crt` ConfigMaps.
//!
//! Every pod with a projected service-account volume references its namespace's
//! `kube-root-ca.crt`, so reading it with a GET per pod cost the API server one request (and
//! the daemon one response to decode) for every pod created. One watcher over exactly that
//! name in all namespaces (field selector `metadata.name`) serves them instead, as the
//! kubelet's own watch-based ConfigMap manager does. A namespace the cache does not hold
//! (not listed yet, or created a moment ago) falls back to a GET, so a cache miss is never
//! taken for "missing".

use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio_util::sync::CancellationToken;

/// The ConfigMap every namespace gets with the cluster's CA bundle.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

/// The cache; cheap to share.
#[derive(Clone)]
pub struct RootCaCache {
    store: Store<ConfigMap>,
}

impl RootCaCache {
    /// Starts the watcher (until `token` is cancelled) and returns the cache.
    pub fn spawn(client: Client, token: CancellationToken) -> Arc<Self> {
        let (store, writer) = reflector::store();
        let api: Api<ConfigMap> = Api::all(client);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIGMAP}"));
        let stream = watcher(api, cfg)
            .default_backoff()
            .modify(|cm: &mut ConfigMap| cm.metadata.managed_fields = None)
            .reflect(writer)
            .applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                let next = tokio::select! {
                    biased;
                    () = token.cancelled() => break,
                    n = stream.next() => n,
                };
                match next {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "kube-root-ca.crt watch error; retrying with backoff (pods fall back to GETs)")
                    }
                    None => break,
                }
            }
        });
        Arc::new(Self { store })
    }

    /// The cached `kube-root-ca.crt` of `namespace`; `None` means "not known here" (ask the
    /// API server), never "does not exist".
    pub fn get(&self, namespace: &str) -> Option<Arc<ConfigMap>> {
        self.store
            .get(&ObjectRef::new(ROOT_CA_CONFIGMAP).within(namespace))
    }
}
