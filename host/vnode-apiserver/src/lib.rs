//! An embedded Kubernetes API server that kubectl and kube-rs talk to unchanged.
//!
//! It exists so that vnode can be run and tested with no cluster: `vnode apiserver`,
//! `vnode dev` and the end-to-end tests use it, and the daemon's own tests run it
//! in-process through [`serve`].
//!
//! What it implements, and where:
//!
//! * [`pki`]: a CA reused from the server directory, the serving certificate, the client
//!   certificate shown to kubelets, a bearer token, and `kubeconfig`. Anonymous requests
//!   get 401 (only `/healthz`, `/livez`, `/readyz` are public). Client certificates
//!   signed by the CA are accepted as well.
//! * [`auth`]: identities (admin token, CA-signed client certificates, service-account
//!   tokens from TokenRequest), RBAC from the stored Roles/ClusterRoles/bindings for
//!   everyone outside `system:masters`, TokenReview/SubjectAccessReview answers, and the
//!   optional audit log.
//! * [`store`]: all objects as JSON, one global resourceVersion, a bounded window of
//!   changes (older watch resumptions get 410 Gone), broadcast fan-out to watchers.
//! * [`resources`]: the served resources and discovery (`/api`, `/apis`, `/version`,
//!   `/openapi/v2` without schemas so kubectl leaves field validation to the server). Kinds
//!   without special semantics (Deployments, RBAC, …) are stored as they come.
//! * `api` (private): the REST verbs with upstream semantics: list/watch with label and field
//!   selectors, bookmarks and timeouts; create/update/patch (JSON, merge, strategic,
//!   apply); status subresources; optimistic concurrency; preconditions; graceful pod
//!   deletion; finalizers; namespace deletion; `pods/binding`; `pods/log` and
//!   `pods/exec|attach` (the WebSocket or SPDY upgrade relayed byte for byte) proxied to the
//!   node's kubelet endpoint over TLS with the kubelet client certificate.
//! * [`admission`]: decoding checks (`fieldValidation`), name rules, pod defaulting.
//! * `controllers` (private): the scheduler (nodeSelector, required node affinity,
//!   taints/tolerations, `FailedScheduling` events) and the namespace lifecycle.
//!
//! Not implemented: protobuf request bodies beyond the kinds [`protobuf`] lists (answered
//! with 415; `kubectl run` and `create ingress|cronjob` send them), schemas in `/openapi/v2`
//! (served without definitions, so validation happens on the server; `/openapi/v3` has
//! them, see [`openapi`]), aggregated discovery (clients fall back to the legacy
//! documents). Custom resources are served from CRDs ([`crd`]).

mod api;
mod controllers;
mod proxy;
mod server;

pub mod admission;
pub mod auth;
pub mod crd;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod protobuf;
pub mod resources;
pub mod selectors;
pub mod ssa;
pub mod status;
pub mod store;
pub mod tables;

use std::path::PathBuf;
use std::time::Duration;

pub use pki::{IssuedCert, KUBELET_CLIENT_CN, Pki};
pub use server::{ApiServer, serve};

/// Configuration of one server instance.
#[derive(Debug, Clone)]
pub struct ApiServerConfig {
    /// Directory for the CA, certificates, token and `kubeconfig` (created if missing;
    /// an existing CA and token are reused).
    pub dir: PathBuf,
    /// Extra subject alternative names for the serving certificate (beyond 127.0.0.1,
    /// ::1, localhost and the bound address).
    pub extra_sans: Vec<String>,
    /// How many changes the watch window keeps; a watch resuming from an older
    /// resourceVersion gets 410 Gone.
    pub watch_window: usize,
    /// How often an idle watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// Whether the built-in scheduler binds pending pods.
    pub scheduler: bool,
    /// Append one JSON line per request here (user, verb, resource, subresource,
    /// namespace, name, code); see [`auth::AuditLog`].
    pub audit_log: Option<PathBuf>,
    /// Chaos switch: end every watch after a random time up to this long, the way a real
    /// API server's watch timeouts, restarts and load balancers end them (some streams end
    /// cleanly, some are reset, some lose their whole TCP connection).
    pub drop_watches_every: Option<Duration>,
}

impl ApiServerConfig {
    /// Defaults for `dir`: a 10,000-change watch window, bookmarks every 5 s, scheduler on.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            extra_sans: Vec::new(),
            watch_window: 10_000,
            bookmark_interval: Duration::from_secs(5),
            scheduler: true,
            audit_log: None,
            drop_watches_every: None,
        }
    }

    /// Path of the kubeconfig the server writes.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join(pki::files::KUBECONFIG)
    }

    /// Paths of the client certificate and key the server presents to kubelets.
    pub fn kubelet_client_cert_paths(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.join(pki::files::KUBELET_CLIENT_CERT),
            self.dir.join(pki::files::KUBELET_CLIENT_KEY),
        )
    }

    /// Path of the CA certificate (PEM) a kubelet uses to verify the server's client
    /// certificate, and that clients use to verify the server.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join(pki::files::CA_CERT)
    }
}

/// Errors that stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    /// Reading or writing a file in the server directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Certificate generation or loading failed.
    #[error("pki: {0}")]
    Pki(String),
    /// The listener failed.
    #[error("listener: {0}")]
    Listener(#[source] std::io::Error),
    /// TLS configuration failed.
    #[error("tls: {0}")]
    Tls(String),
}
