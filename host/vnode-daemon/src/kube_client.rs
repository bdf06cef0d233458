//! The Kubernetes client and the start-up preflight.
//!
//! The client comes from the in-cluster service account or `KUBECONFIG`/`~/.kube/config`
//! (`kube::Config::infer`). Unlike client-go, kube-rs has no client-side rate limiter, so
//! there is no 5 qps / burst 10 ceiling on status writes (the bottleneck Virtual Kubelet
//! inherits, reference e.1); throughput is bounded by our own worker counts instead.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};

/// Failure to reach or use the Kubernetes API at start-up. `Display` is one actionable line.
#[derive(Debug, thiserror::Error)]
pub enum KubeSetupError {
    /// Neither in-cluster config nor a kubeconfig was usable.
    #[error(
        "no Kubernetes API configuration: {0} (run in a pod with a service account, or set KUBECONFIG)"
    )]
    NoConfig(String),
    /// The API server could not be reached or answered with an unexpected error.
    #[error("Kubernetes API {action} failed: {message}")]
    Unreachable {
        /// What was being tried.
        action: String,
        /// The error, one line.
        message: String,
    },
    /// The identity lacks permissions the daemon needs.
    #[error(
        "the daemon's Kubernetes identity may not {missing}; grant these in its ClusterRole (the full list is in host/vnode-daemon/README.md, section Permissions)"
    )]
    Forbidden {
        /// e.g. "create nodes, update leases in kube-node-lease".
        missing: String,
    },
}

/// Builds a client from the in-cluster environment or the kubeconfig.
pub async fn client() -> Result<Client, KubeSetupError> {
    client_from(None).await
}

/// Builds a client from `kubeconfig` when given (`--kubeconfig`; `vnode dev` passes the
/// embedded API server's), else like [`client`].
pub async fn client_from(kubeconfig: Option<&std::path::Path>) -> Result<Client, KubeSetupError> {
    let no_config = |e: &dyn std::fmt::Display| KubeSetupError::NoConfig(one_line(&e.to_string()));
    let mut config = match kubeconfig {
        None => kube::Config::infer().await.map_err(|e| no_config(&e))?,
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| no_config(&format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| no_config(&format!("{}: {e}", path.display())))?
        }
    };
    // Watches are long polls; the read timeout must not cut them (kube's default already
    // allows 295 s). Keep connects snappy so an unreachable API server is reported quickly.
    config.connect_timeout = Some(std::time::Duration::from_secs(10));
    Client::try_from(config).map_err(|e| KubeSetupError::NoConfig(one_line(&e.to_string())))
}

/// One permission the daemon needs.
#[derive(Debug, Clone, Copy)]
struct Need {
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    subresource: &'static str,
    namespace: Option<&'static str>,
}

const NEEDS: &[Need] = &[
    Need {
        verb: "get",
        group: "",
        resource: "nodes",
        subresource: "",
        namespace: None,
    },
    Need {
        verb: "create",
        group: "",
        resource: "nodes",
        subresource: "",
        namespace: None,
    },
    Need {
        verb: "update",
        group: "",
        resource: "nodes",
        subresource: "status",
        namespace: None,
    },
    Need {
        verb: "get",
        group: "coordination.k8s.io",
        resource: "leases",
        subresource: "",
        namespace: Some("kube-node-lease"),
    },
    Need {
        verb: "create",
        group: "coordination.k8s.io",
        resource: "leases",
        subresource: "",
        namespace: Some("kube-node-lease"),
    },
    Need {
        verb: "update",
        group: "coordination.k8s.io",
        resource: "leases",
        subresource: "",
        namespace: Some("kube-node-lease"),
    },
    Need {
        verb: "list",
        group: "",
        resource: "pods",
        subresource: "",
        namespace: None,
    },
    Need {
        verb: "watch",
        group: "",
        resource: "pods",
        subresource: "",
        namespace: None,
    },
];

impl Need {
    fn describe(&self) -> String {
        let res = if self.subresource.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        match self.namespace {
            Some(ns) => format!("{} {res} in {ns}", self.verb),
            None => format!("{} {res}", self.verb),
        }
    }
}

/// Checks, before any loop starts, that the API server answers and that this identity may
/// get/create/update Nodes and node Leases and list/watch Pods. Uses SelfSubjectAccessReview
/// for the write permissions (no side effects) and real reads for the rest; if the API server
/// does not serve the authorization API, the reads alone decide.
pub async fn preflight(client: &Client, node_name: &str) -> Result<(), KubeSetupError> {
    // Real reads first: they prove connectivity and the read permissions.
    let nodes: Api<Node> = Api::all(client.clone());
    check_read(nodes.get_opt(node_name).await.map(|_| ()), "get nodes")?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    check_read(
        leases.get_opt(node_name).await.map(|_| ()),
        "get leases in kube-node-lease",
    )?;
    let pods: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default()
        .fields(&format!("spec.nodeName={node_name}"))
        .limit(1);
    check_read(pods.list_metadata(&lp).await.map(|_| ()), "list pods")?;

    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut missing = Vec::new();
    for need in NEEDS {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(need.verb.to_string()),
                    group: Some(need.group.to_string()),
                    resource: Some(need.resource.to_string()),
                    subresource: (!need.subresource.is_empty())
                        .then(|| need.subresource.to_string()),
                    namespace: need.namespace.map(str::to_string),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match reviews.create(&PostParams::default(), &review).await {
            Ok(answer) => {
                if !answer.status.map(|s| s.allowed).unwrap_or(false) {
                    missing.push(need.describe());
                }
            }
            // No authorization API (404) or no right to ask (403): the reads above passed,
            // so carry on; a missing write permission will surface as an error on first use.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 403 => {
                tracing::info!(
                    code = s.code,
                    "SelfSubjectAccessReview unavailable; preflight checked reads only"
                );
                return Ok(());
            }
            Err(e) => {
                return Err(KubeSetupError::Unreachable {
                    action: "SelfSubjectAccessReview".into(),
                    message: one_line(&e.to_string()),
                });
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(KubeSetupError::Forbidden {
            missing: missing.join(", "),
        })
    }
}

fn check_read(result: Result<(), kube::Error>, what: &str) -> Result<(), KubeSetupError> {
    match result {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 403 || s.code == 401 => {
            Err(KubeSetupError::Forbidden {
                missing: what.to_string(),
            })
        }
        Err(e) => Err(KubeSetupError::Unreachable {
            action: what.to_string(),
            message: one_line(&e.to_string()),
        }),
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', "; ")
}

/// Writes whose answer the daemon does not read.
///
/// `Api::patch`, `Api::delete` and `Api::create` decode the object the API server echoes
/// back (`Api::delete` even twice: as a JSON value to look for a `Status`, then as the
/// type). For the daemon's per-pod writes — the decision annotations, the status patch, the
/// deletion that finishes a pod, every event — nothing reads that answer, and decoding a
/// whole pod per write was a measurable part of the daemon's CPU per pod in `bench pods`.
/// These send the same requests and read the answer only as bytes (so the connection is
/// reused); failures are the same [`kube::Error::Api`] with the server's `Status`.
pub mod writes {
    use k8s_openapi::api::core::v1::Pod;
    use kube::Client;
    use kube::Resource as _;
    use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
    use kube::core::Request;

    fn pods(namespace: &str) -> Request {
        Request::new(Pod::url_path(&(), Some(namespace)))
    }

    async fn send(
        client: &Client,
        request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
    ) -> Result<(), kube::Error> {
        let request = request.map_err(kube::Error::BuildRequest)?;
        client.request_text(request).await.map(drop)
    }

    /// A JSON merge patch of pod `namespace/name`.
    pub async fn merge_patch_pod(
        client: &Client,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<(), kube::Error> {
        let request = pods(namespace).patch(name, &PatchParams::default(), &Patch::Merge(patch));
        send(client, request).await
    }

    /// A JSON merge patch of pod `namespace/name`'s status subresource.
    pub async fn merge_patch_pod_status(
        client: &Client,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<(), kube::Error> {
        let request = pods(namespace).patch_subresource(
            "status",
            name,
            &PatchParams::default(),
            &Patch::Merge(patch),
        );
        send(client, request).await
    }

    /// Deletes pod `namespace/name` with `params`.
    pub async fn delete_pod(
        client: &Client,
        namespace: &str,
        name: &str,
        params: &DeleteParams,
    ) -> Result<(), kube::Error> {
        send(client, pods(namespace).delete(name, params)).await
    }

    /// Creates an `events.k8s.io/v1` Event in `namespace` from its JSON `body`.
    pub async fn create_event(
        client: &Client,
        namespace: &str,
        body: Vec<u8>,
    ) -> Result<(), kube::Error> {
        let request = Request::new(k8s_openapi::api::events::v1::Event::url_path(
            &(),
            Some(namespace),
        ))
        .create(&PostParams::default(), body);
        send(client, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeApi, status};
    use serde_json::json;

    fn review(allowed: bool) -> Option<(u16, serde_json::Value)> {
        Some((
            201,
            json!({"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{},"status":{"allowed":allowed}}),
        ))
    }

    #[tokio::test]
    async fn preflight_passes_when_everything_is_allowed() {
        let fake = FakeApi::new();
        fake.set_handler(|req| {
            req.path
                .ends_with("selfsubjectaccessreviews")
                .then(|| review(true))
                .flatten()
        });
        preflight(&fake.client(), "virtual-kubelet")
            .await
            .expect("preflight passes");
    }

    #[tokio::test]
    async fn preflight_names_missing_permissions() {
        let fake = FakeApi::new();
        fake.set_handler(|req| {
            if !req.path.ends_with("selfsubjectaccessreviews") {
                return None;
            }
            let a = &req.body["spec"]["resourceAttributes"];
            review(!(a["verb"] == "update" && a["resource"] == "leases"))
        });
        let e = preflight(&fake.client(), "virtual-kubelet")
            .await
            .expect_err("must fail")
            .to_string();
        assert!(
            e.contains("may not update leases in kube-node-lease"),
            "{e}"
        );
        assert!(!e.contains("create nodes"), "{e}");
    }

    #[tokio::test]
    async fn preflight_reports_forbidden_reads() {
        let fake = FakeApi::new();
        fake.set_handler(|req| req.path.contains("/pods").then(|| status(403, "Forbidden")));
        let e = preflight(&fake.client(), "virtual-kubelet")
            .await
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("may not list pods"), "{e}");
    }

    #[tokio::test]
    async fn preflight_without_review_api_relies_on_reads() {
        let fake = FakeApi::new();
        fake.set_handler(|req| {
            req.path
                .ends_with("selfsubjectaccessreviews")
                .then(|| status(404, "NotFound"))
        });
        preflight(&fake.client(), "virtual-kubelet")
            .await
            .expect("reads passed");
    }
}
