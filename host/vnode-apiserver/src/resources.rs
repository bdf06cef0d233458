//! The static resource table: every group/version/resource the server serves, and the
//! discovery and OpenAPI documents derived from it.
//!
//! Built-in kinds that vnode gives no special meaning (Deployments, RBAC objects, …) are
//! listed here too, so that `kubectl apply -f` can map their kinds to resources and the
//! store keeps them as plain JSON.

use serde_json::{Value, json};

/// Index of a resource in [`RESOURCES`].
pub type ResourceId = usize;

/// One served resource.
#[derive(Debug)]
pub struct ResourceInfo {
    /// API group (`""` for core).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Plural resource name (`pods`).
    pub plural: &'static str,
    /// Singular name (`pod`).
    pub singular: &'static str,
    /// Kind (`Pod`).
    pub kind: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: &'static [&'static str],
    /// Whether the resource belongs to the `all` category.
    pub in_all: bool,
    /// Served subresources (`status`, `binding`, `log`, `exec`).
    pub subresources: &'static [&'static str],
    /// For alternative views of the same objects (events.k8s.io/v1 events): the storage
    /// resource whose objects this view converts.
    pub view_of: Option<&'static str>,
}

impl ResourceInfo {
    /// `apiVersion` string (`v1`, `apps/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether this resource has a status subresource (status is ignored on main writes).
    pub fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }
}

macro_rules! res {
    ($g:literal, $v:literal, $p:literal, $s:literal, $k:literal, $ns:literal, [$($short:literal),*], $all:literal, [$($sub:literal),*]) => {
        ResourceInfo { group: $g, version: $v, plural: $p, singular: $s, kind: $k, namespaced: $ns,
            short_names: &[$($short),*], in_all: $all, subresources: &[$($sub),*], view_of: None }
    };
}

/// Every resource the server serves, core first (discovery keeps this order).
pub static RESOURCES: &[ResourceInfo] = &[
    res!(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        true,
        ["po"],
        true,
        ["status", "binding", "log", "exec", "attach"]
    ),
    res!(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        false,
        ["no"],
        false,
        ["status"]
    ),
    res!(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        false,
        ["ns"],
        false,
        ["status", "finalize"]
    ),
    res!(
        "",
        "v1",
        "events",
        "event",
        "Event",
        true,
        ["ev"],
        false,
        []
    ),
    res!(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        ["cm"],
        false,
        []
    ),
    res!("", "v1", "secrets", "secret", "Secret", true, [], false, []),
    res!(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        ["sa"],
        false,
        ["token"]
    ),
    res!(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        ["svc"],
        true,
        ["status"]
    ),
    res!(
        "",
        "v1",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        ["ep"],
        false,
        []
    ),
    res!(
        "",
        "v1",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        ["pvc"],
        false,
        ["status"]
    ),
    res!(
        "",
        "v1",
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        false,
        ["pv"],
        false,
        ["status"]
    ),
    res!(
        "",
        "v1",
        "limitranges",
        "limitrange",
        "LimitRange",
        true,
        ["limits"],
        false,
        []
    ),
    res!(
        "",
        "v1",
        "resourcequotas",
        "resourcequota",
        "ResourceQuota",
        true,
        ["quota"],
        false,
        ["status"]
    ),
    res!(
        "",
        "v1",
        "replicationcontrollers",
        "replicationcontroller",
        "ReplicationController",
        true,
        ["rc"],
        true,
        ["status"]
    ),
    res!(
        "",
        "v1",
        "podtemplates",
        "podtemplate",
        "PodTemplate",
        true,
        [],
        false,
        []
    ),
    res!(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        ["deploy"],
        true,
        ["status", "scale"]
    ),
    res!(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        ["rs"],
        true,
        ["status", "scale"]
    ),
    res!(
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        ["sts"],
        true,
        ["status", "scale"]
    ),
    res!(
        "apps",
        "v1",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        ["ds"],
        true,
        ["status"]
    ),
    res!(
        "apps",
        "v1",
        "controllerrevisions",
        "controllerrevision",
        "ControllerRevision",
        true,
        [],
        false,
        []
    ),
    res!(
        "batch",
        "v1",
        "jobs",
        "job",
        "Job",
        true,
        [],
        true,
        ["status"]
    ),
    res!(
        "batch",
        "v1",
        "cronjobs",
        "cronjob",
        "CronJob",
        true,
        ["cj"],
        true,
        ["status"]
    ),
    res!(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        [],
        false,
        []
    ),
    ResourceInfo {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        in_all: false,
        subresources: &[],
        view_of: Some("events"),
    },
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "role",
        "Role",
        true,
        [],
        false,
        []
    ),
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        [],
        false,
        []
    ),
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        [],
        false,
        []
    ),
    res!(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        [],
        false,
        []
    ),
    res!(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "ingress",
        "Ingress",
        true,
        ["ing"],
        false,
        ["status"]
    ),
    res!(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        true,
        ["netpol"],
        false,
        []
    ),
    res!(
        "networking.k8s.io",
        "v1",
        "ingressclasses",
        "ingressclass",
        "IngressClass",
        false,
        [],
        false,
        []
    ),
    res!(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        ["pdb"],
        false,
        ["status"]
    ),
    res!(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        true,
        ["hpa"],
        true,
        ["status"]
    ),
    res!(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "storageclass",
        "StorageClass",
        false,
        ["sc"],
        false,
        []
    ),
    res!(
        "storage.k8s.io",
        "v1",
        "csidrivers",
        "csidriver",
        "CSIDriver",
        false,
        [],
        false,
        []
    ),
    res!(
        "storage.k8s.io",
        "v1",
        "csinodes",
        "csinode",
        "CSINode",
        false,
        [],
        false,
        []
    ),
    res!(
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "priorityclass",
        "PriorityClass",
        false,
        ["pc"],
        false,
        []
    ),
    res!(
        "node.k8s.io",
        "v1",
        "runtimeclasses",
        "runtimeclass",
        "RuntimeClass",
        false,
        [],
        false,
        []
    ),
    res!(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        [],
        false,
        []
    ),
    res!(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        false,
        ["crd", "crds"],
        false,
        ["status"]
    ),
    res!(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "validatingwebhookconfiguration",
        "ValidatingWebhookConfiguration",
        false,
        [],
        false,
        []
    ),
    res!(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "mutatingwebhookconfiguration",
        "MutatingWebhookConfiguration",
        false,
        [],
        false,
        []
    ),
    res!(
        "certificates.k8s.io",
        "v1",
        "certificatesigningrequests",
        "certificatesigningrequest",
        "CertificateSigningRequest",
        false,
        ["csr"],
        false,
        ["status"]
    ),
    // Create-only reviews: answered, never stored (see `is_review`).
    res!(
        "authentication.k8s.io",
        "v1",
        "tokenreviews",
        "tokenreview",
        "TokenReview",
        false,
        [],
        false,
        []
    ),
    res!(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "subjectaccessreview",
        "SubjectAccessReview",
        false,
        [],
        false,
        []
    ),
    res!(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        "SelfSubjectAccessReview",
        false,
        [],
        false,
        []
    ),
];

/// Whether a resource is a create-only review (TokenReview, SubjectAccessReview, …).
pub fn is_review(id: ResourceId) -> bool {
    matches!(
        RESOURCES[id].group,
        "authentication.k8s.io" | "authorization.k8s.io"
    )
}

/// Well-known resource ids, so code does not search the table by name.
pub mod ids {
    use super::ResourceId;
    /// core/v1 pods
    pub const PODS: ResourceId = 0;
    /// core/v1 nodes
    pub const NODES: ResourceId = 1;
    /// core/v1 namespaces
    pub const NAMESPACES: ResourceId = 2;
    /// core/v1 events
    pub const EVENTS: ResourceId = 3;
    /// core/v1 configmaps
    pub const CONFIGMAPS: ResourceId = 4;
    /// core/v1 secrets
    pub const SECRETS: ResourceId = 5;
    /// core/v1 serviceaccounts
    pub const SERVICEACCOUNTS: ResourceId = 6;
    /// coordination.k8s.io/v1 leases
    pub const LEASES: ResourceId = 22;
    /// events.k8s.io/v1 events (a view of core events)
    pub const EVENTS_V1: ResourceId = 23;
}

/// Looks a resource up by group, version and plural name.
pub fn find(group: &str, version: &str, plural: &str) -> Option<ResourceId> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The storage resource for `id` (itself, or the resource it is a view of).
pub fn storage_of(id: ResourceId) -> ResourceId {
    match RESOURCES[id].view_of {
        Some(p) => RESOURCES
            .iter()
            .position(|r| r.group.is_empty() && r.plural == p)
            .unwrap_or(id),
        None => id,
    }
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The `/api` document.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// The `/apis` document (legacy, non-aggregated discovery; clients fall back to it).
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = groups().iter().map(|(g, v)| api_group(g, v)).collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

fn api_group(group: &str, version: &str) -> Value {
    let gv = json!({ "groupVersion": format!("{group}/{version}"), "version": version });
    json!({ "name": group, "versions": [gv.clone()], "preferredVersion": gv })
}

/// The `/apis/{group}` document, if the group exists.
pub fn api_group_doc(group: &str) -> Option<Value> {
    groups()
        .into_iter()
        .find(|(g, _)| *g == group)
        .map(|(g, v)| {
            let mut d = api_group(g, v);
            d["kind"] = json!("APIGroup");
            d["apiVersion"] = json!("v1");
            d
        })
}

/// The `APIResourceList` for one group/version, if served.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for (id, r) in RESOURCES
        .iter()
        .enumerate()
        .filter(|(_, r)| r.group == group && r.version == version)
    {
        let verbs: &[&str] = if is_review(id) { &["create"] } else { VERBS };
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if r.in_all {
            entry["categories"] = json!(["all"]);
        }
        resources.push(entry);
        for sub in r.subresources {
            let (kind, verbs): (&str, &[&str]) = match *sub {
                "status" => (r.kind, &["get", "patch", "update"]),
                "binding" => ("Binding", &["create"]),
                "log" => (r.kind, &["get"]),
                "exec" => ("PodExecOptions", &["create", "get"]),
                "attach" => ("PodAttachOptions", &["create", "get"]),
                "finalize" => (r.kind, &["update"]),
                "token" => ("TokenRequest", &["create"]),
                "scale" => ("Scale", &["get", "patch", "update"]),
                _ => (r.kind, &["get"]),
            };
            let mut sub_entry = json!({
                "name": format!("{}/{}", r.plural, sub),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if *sub == "token" {
                sub_entry["group"] = json!("authentication.k8s.io");
                sub_entry["version"] = json!("v1");
            }
            if *sub == "scale" {
                sub_entry["group"] = json!("autoscaling");
                sub_entry["version"] = json!("v1");
            }
            resources.push(sub_entry);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources }),
    )
}

/// Content type of the protobuf OpenAPI v2 document (kubectl asks for `…spec.v2@v1.0+protobuf`;
/// the answer spells it with a dot, as upstream does, because Go's mime parser rejects `@`).
pub const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2` as JSON: a valid Swagger 2.0 document with no definitions.
///
/// kubectl fetches it (as protobuf, [`openapi_v2_protobuf`]) to validate `kind: List`
/// manifests client-side, and skips validation of any kind the document does not define,
/// leaving unknown-field checks to the server (`fieldValidation`, advertised in
/// `/openapi/v3`). Shipping upstream's full schemas would cost megabytes in the binary and
/// is only needed for `kubectl explain`, which this server does not support.
pub fn openapi_v2_json() -> Value {
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": {},
        "definitions": {},
    })
}

/// [`openapi_v2_json`] as the gnostic `openapi_v2.Document` protobuf message:
/// `swagger` (field 1) and `info` (field 2: `title` 1, `version` 2).
pub fn openapi_v2_protobuf() -> Vec<u8> {
    fn string_field(out: &mut Vec<u8>, field: u8, s: &str) {
        out.push(field << 3 | 2);
        push_len(out, s.len());
        out.extend_from_slice(s.as_bytes());
    }
    fn push_len(out: &mut Vec<u8>, mut n: usize) {
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut info = Vec::new();
    string_field(&mut info, 1, "Kubernetes");
    string_field(&mut info, 2, "v1.33.0");
    let mut doc = Vec::new();
    string_field(&mut doc, 1, "2.0");
    doc.push(2 << 3 | 2);
    push_len(&mut doc, info.len());
    doc.extend_from_slice(&info);
    doc
}

/// `/openapi/v3`: the index of per-group-version documents.
pub fn openapi_v3_index() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({ "serverRelativeURL": "/openapi/v3/api/v1?hash=vnode" }),
    );
    for (g, v) in groups() {
        paths.insert(
            format!("apis/{g}/{v}"),
            json!({ "serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash=vnode") }),
        );
    }
    json!({ "paths": paths })
}

/// A minimal OpenAPI v3 document for one group/version.
///
/// kubectl reads it for two things only: whether PATCH accepts `fieldValidation` (then it
/// leaves unknown-field checks to the server) and whether PATCH accepts strategic merge
/// (otherwise it computes the patch from its compiled-in types). Schemas are not needed
/// for either, so none are served.
pub fn openapi_v3_doc(group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let item = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        let gvk = json!({ "group": r.group, "version": r.version, "kind": r.kind });
        let params = json!([
            { "name": "dryRun", "in": "query", "schema": { "type": "string" } },
            { "name": "fieldManager", "in": "query", "schema": { "type": "string" } },
            { "name": "fieldValidation", "in": "query", "schema": { "type": "string" } },
        ]);
        let content = json!({
            "application/json-patch+json": { "schema": { "type": "object" } },
            "application/merge-patch+json": { "schema": { "type": "object" } },
            "application/strategic-merge-patch+json": { "schema": { "type": "object" } },
            "application/apply-patch+yaml": { "schema": { "type": "object" } },
        });
        paths.insert(
            item,
            json!({
                "get": { "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk },
                "put": { "x-kubernetes-action": "put", "x-kubernetes-group-version-kind": gvk, "parameters": params },
                "patch": {
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": params,
                    "requestBody": { "content": content },
                },
            }),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": paths,
        "components": { "schemas": {} },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_ids_point_at_their_resources() {
        assert_eq!(RESOURCES[ids::PODS].plural, "pods");
        assert_eq!(RESOURCES[ids::NODES].plural, "nodes");
        assert_eq!(RESOURCES[ids::NAMESPACES].plural, "namespaces");
        assert_eq!(RESOURCES[ids::EVENTS].plural, "events");
        assert_eq!(RESOURCES[ids::CONFIGMAPS].plural, "configmaps");
        assert_eq!(RESOURCES[ids::SECRETS].plural, "secrets");
        assert_eq!(RESOURCES[ids::SERVICEACCOUNTS].plural, "serviceaccounts");
        assert_eq!(RESOURCES[ids::LEASES].plural, "leases");
        assert_eq!(RESOURCES[ids::EVENTS_V1].group, "events.k8s.io");
        assert_eq!(storage_of(ids::EVENTS_V1), ids::EVENTS);
    }

    #[test]
    fn discovery_lists_subresources_and_groups() {
        let core = api_resource_list("", "v1").expect("core served");
        let names: Vec<&str> = core["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(
            names.contains(&"pods/log")
                && names.contains(&"pods/status")
                && names.contains(&"nodes")
        );
        let groups = api_group_list();
        assert!(
            groups["groups"]
                .as_array()
                .is_some_and(|g| g.iter().any(|g| g["name"] == "apps"))
        );
        assert!(api_resource_list("nope", "v1").is_none());
    }
}
