//! `/openapi/v3`: one OpenAPI 3.0 document per served group/version, with schemas.
//!
//! kubectl reads these documents for four things:
//! * `kubectl explain` finds the kind of a resource through the `x-kubernetes-group-version-kind`
//!   of its paths' operations, then the component schema carrying the same extension, and
//!   walks its properties (`$ref`s into `#/components/schemas/…`).
//! * Client-side `apply` computes its strategic merge patch from the kind's schema
//!   (`x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`) when one exists.
//! * Whether PATCH accepts `fieldValidation` (then unknown fields are left to the server).
//! * Whether PATCH accepts strategic merge at all (custom resources do not).
//!
//! Schemas of the built-in kinds come from `k8s-openapi` (its `schemars` feature) with
//! upstream's patch strategies added ([`PATCH_STRATEGIES`]); custom resources get their
//! CRD version's `openAPIV3Schema` with `apiVersion`, `kind` and `metadata` filled in as
//! upstream's apiextensions-apiserver does. Documents are built on first use and cached;
//! a custom resource's document is rebuilt when its CRD changes.
//!
//! Caching follows upstream's handler: the index (`/openapi/v3`) links every document
//! as `…?hash=<SHA-512 of the document>`; a request with the current hash gets
//! `Cache-Control: public, immutable`, one with a stale hash a 301 to the current URL;
//! every answer has an `ETag` and `If-None-Match` gets 304.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use crate::crd::CustomVersion;
use crate::resources::{RESOURCES, ResourceId, ResourceInfo};
use crate::status::ApiError;

/// Component name of ObjectMeta (custom resources' `metadata` refers to it).
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// Upstream's strategic-merge patch strategies of the built-in types (the
/// `patchStrategy`/`patchMergeKey` struct tags): component, property, strategy, merge key.
/// kubectl's client-side `apply` builds its patch from these; without them every list
/// would be replaced whole. A unit test checks each entry names an existing property.
pub const PATCH_STRATEGIES: &[(&str, &str, &str, Option<&str>)] = &[
    (OBJECT_META, "finalizers", "merge", None),
    (OBJECT_META, "ownerReferences", "merge", Some("uid")),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        "merge",
        Some("topologyKey"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "merge",
        Some("containerPort"),
    ),
    ("io.k8s.api.core.v1.Container", "env", "merge", Some("name")),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        "merge",
        Some("containerPort"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "podIPs",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "hostIPs",
        "merge",
        Some("ip"),
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", None),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "merge",
        Some("port"),
    ),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "retainKeys",
        None,
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
];

/// Adds `T`'s schema (and everything it refers to) to `generator`; its component name.
fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// The component name of a built-in kind's schema, added to `generator`, or `None` for a
/// kind without a typed form.
fn builtin_schema(generator: &mut SchemaGenerator, r: &ResourceInfo) -> Option<String> {
    use k8s_openapi::api::{
        admissionregistration, apps, authentication, authorization, autoscaling, batch,
        certificates, coordination, core, discovery, events, networking, node, policy, rbac,
        scheduling, storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
    macro_rules! kinds {
        ($(($g:literal, $v:literal, $k:literal, $t:ty)),* $(,)?) => {
            match (r.group, r.version, r.kind) {
                $(($g, $v, $k) => Some(add::<$t>(generator)),)*
                _ => None,
            }
        };
    }
    kinds![
        ("", "v1", "Pod", core::v1::Pod),
        ("", "v1", "Node", core::v1::Node),
        ("", "v1", "Namespace", core::v1::Namespace),
        ("", "v1", "Event", core::v1::Event),
        ("", "v1", "ConfigMap", core::v1::ConfigMap),
        ("", "v1", "Secret", core::v1::Secret),
        ("", "v1", "ServiceAccount", core::v1::ServiceAccount),
        ("", "v1", "Service", core::v1::Service),
        ("", "v1", "Endpoints", core::v1::Endpoints),
        (
            "",
            "v1",
            "PersistentVolumeClaim",
            core::v1::PersistentVolumeClaim
        ),
        ("", "v1", "PersistentVolume", core::v1::PersistentVolume),
        ("", "v1", "LimitRange", core::v1::LimitRange),
        ("", "v1", "ResourceQuota", core::v1::ResourceQuota),
        (
            "",
            "v1",
            "ReplicationController",
            core::v1::ReplicationController
        ),
        ("", "v1", "PodTemplate", core::v1::PodTemplate),
        ("apps", "v1", "Deployment", apps::v1::Deployment),
        ("apps", "v1", "ReplicaSet", apps::v1::ReplicaSet),
        ("apps", "v1", "StatefulSet", apps::v1::StatefulSet),
        ("apps", "v1", "DaemonSet", apps::v1::DaemonSet),
        (
            "apps",
            "v1",
            "ControllerRevision",
            apps::v1::ControllerRevision
        ),
        ("batch", "v1", "Job", batch::v1::Job),
        ("batch", "v1", "CronJob", batch::v1::CronJob),
        (
            "coordination.k8s.io",
            "v1",
            "Lease",
            coordination::v1::Lease
        ),
        ("events.k8s.io", "v1", "Event", events::v1::Event),
        ("rbac.authorization.k8s.io", "v1", "Role", rbac::v1::Role),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            rbac::v1::RoleBinding
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            rbac::v1::ClusterRole
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            rbac::v1::ClusterRoleBinding
        ),
        (
            "networking.k8s.io",
            "v1",
            "Ingress",
            networking::v1::Ingress
        ),
        (
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            networking::v1::NetworkPolicy
        ),
        (
            "networking.k8s.io",
            "v1",
            "IngressClass",
            networking::v1::IngressClass
        ),
        (
            "policy",
            "v1",
            "PodDisruptionBudget",
            policy::v1::PodDisruptionBudget
        ),
        (
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            autoscaling::v2::HorizontalPodAutoscaler
        ),
        (
            "storage.k8s.io",
            "v1",
            "StorageClass",
            storage::v1::StorageClass
        ),
        ("storage.k8s.io", "v1", "CSIDriver", storage::v1::CSIDriver),
        ("storage.k8s.io", "v1", "CSINode", storage::v1::CSINode),
        (
            "scheduling.k8s.io",
            "v1",
            "PriorityClass",
            scheduling::v1::PriorityClass
        ),
        ("node.k8s.io", "v1", "RuntimeClass", node::v1::RuntimeClass),
        (
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            discovery::v1::EndpointSlice
        ),
        (
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            apiextensions::v1::CustomResourceDefinition
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            admissionregistration::v1::ValidatingWebhookConfiguration
        ),
        (
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            admissionregistration::v1::MutatingWebhookConfiguration
        ),
        (
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            certificates::v1::CertificateSigningRequest
        ),
        (
            "authentication.k8s.io",
            "v1",
            "TokenReview",
            authentication::v1::TokenReview
        ),
        (
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            authorization::v1::SubjectAccessReview
        ),
        (
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            authorization::v1::SelfSubjectAccessReview
        ),
    ]
}

/// Upstream's component name of a custom kind: the group reversed, the version, the kind
/// (`widgets.example.com/v1 Widget` → `com.example.v1.Widget`).
pub fn custom_schema_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    format!("{}.{version}.{kind}", parts.join("."))
}

/// The component schema of a custom resource version: its `openAPIV3Schema` (anything goes
/// without one) with `apiVersion`, `kind` and `metadata` as upstream publishes them.
fn custom_schema(custom: &CustomVersion) -> Value {
    let mut schema = custom
        .schema
        .clone()
        .filter(Value::is_object)
        .unwrap_or_else(
            || json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true }),
        );
    let props = schema
        .as_object_mut()
        .map(|s| {
            s.entry("properties")
                .or_insert_with(|| Value::Object(Map::new()))
        })
        .and_then(Value::as_object_mut);
    if let Some(props) = props {
        props.insert(
            "apiVersion".into(),
            json!({ "type": "string", "description": API_VERSION_DESCRIPTION }),
        );
        props.insert(
            "kind".into(),
            json!({ "type": "string", "description": KIND_DESCRIPTION }),
        );
        props.insert(
            "metadata".into(),
            json!({
                "allOf": [{ "$ref": format!("#/components/schemas/{OBJECT_META}") }],
                "description": METADATA_DESCRIPTION,
            }),
        );
    }
    schema
}

/// Adds upstream's patch strategy extensions ([`PATCH_STRATEGIES`]) to `schemas`.
fn add_patch_strategies(schemas: &mut Map<String, Value>) {
    for (component, property, strategy, key) in PATCH_STRATEGIES {
        let Some(prop) = schemas
            .get_mut(*component)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(*property))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        // OpenAPI 3.0 ignores siblings of `$ref`: move it into `allOf` first.
        if let Some(r) = prop.remove("$ref") {
            prop.insert("allOf".into(), json!([{ "$ref": r }]));
        }
        prop.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        if let Some(key) = key {
            prop.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
    }
}

/// The paths of one group/version: each resource's item path with its GVK, the PATCH
/// content types it accepts and the query parameters kubectl checks for.
fn paths(group: &str, version: &str, members: &[Member]) -> Map<String, Value> {
    let mut paths = Map::new();
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    for m in members {
        let r = m.info;
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
        let mut content = json!({
            "application/json-patch+json": { "schema": { "type": "object" } },
            "application/merge-patch+json": { "schema": { "type": "object" } },
            "application/apply-patch+yaml": { "schema": { "type": "object" } },
        });
        // Custom resources have no patch strategies: kubectl then sends merge patches.
        if m.custom.is_none() {
            content["application/strategic-merge-patch+json"] =
                json!({ "schema": { "type": "object" } });
        }
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
    paths
}

/// One resource of a group/version document.
#[derive(Clone)]
struct Member {
    id: ResourceId,
    info: &'static ResourceInfo,
    /// The CRD behaviour a custom resource was built from (compared by identity: a
    /// changed CRD registers a new one).
    custom: Option<Arc<CustomVersion>>,
}

impl PartialEq for Member {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && std::ptr::eq(self.info, other.info)
            && match (&self.custom, &other.custom) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

fn members(group: &str, version: &str) -> Vec<Member> {
    RESOURCES
        .served()
        .filter(|(_, r)| r.group == group && r.version == version)
        .map(|(id, info)| Member {
            id,
            info,
            custom: RESOURCES.custom(id),
        })
        .collect()
}

/// The document of one group/version.
fn document(group: &str, version: &str, members: &[Member]) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut kinds: Vec<(String, &ResourceInfo)> = Vec::new();
    for m in members {
        if m.custom.is_none()
            && let Some(name) = builtin_schema(&mut generator, m.info)
        {
            kinds.push((name, m.info));
        }
    }
    let customs: Vec<&Member> = members.iter().filter(|m| m.custom.is_some()).collect();
    if !customs.is_empty() {
        add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(&mut generator);
    }
    let mut schemas = generator.take_definitions(true);
    for m in customs {
        if let Some(c) = &m.custom {
            let name = custom_schema_name(m.info.group, m.info.version, m.info.kind);
            schemas.insert(name.clone(), custom_schema(c));
            kinds.push((name, m.info));
        }
    }
    for (name, info) in kinds {
        if let Some(s) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
            let gvk = json!({ "group": info.group, "version": info.version, "kind": info.kind });
            let list = s
                .entry("x-kubernetes-group-version-kind")
                .or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut()
                && !list.contains(&gvk)
            {
                list.push(gvk);
            }
            // k8s-openapi marks `metadata` required (it is not optional in Rust); upstream
            // does not, and `kubectl explain` would say `-required-`.
            if let Some(req) = s.get_mut("required").and_then(Value::as_array_mut) {
                req.retain(|f| f != "metadata");
                if req.is_empty() {
                    s.remove("required");
                }
            }
        }
    }
    add_patch_strategies(&mut schemas);
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": paths(group, version, members),
        "components": { "schemas": schemas },
    })
}

/// A serialized document and its hash.
struct Cached {
    members: Vec<Member>,
    body: Bytes,
    /// Upper-case hex SHA-512 of `body` (upstream's ETag and `hash`).
    hash: String,
}

/// (group, version) of one OpenAPI v3 document.
type GroupVersion = (String, String);

/// Documents by (group, version), rebuilt when the set of resources behind them changes.
static DOCS: LazyLock<Mutex<HashMap<GroupVersion, Arc<Cached>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn hash(body: &[u8]) -> String {
    hex::encode_upper(Sha512::digest(body))
}

/// The current document of `group`/`version`, or `None` if nothing is served there.
fn cached(group: &str, version: &str) -> Option<Arc<Cached>> {
    let members = members(group, version);
    if members.is_empty() {
        return None;
    }
    let key = (group.to_string(), version.to_string());
    if let Some(c) = DOCS.lock().get(&key)
        && c.members == members
    {
        return Some(c.clone());
    }
    // Built outside the lock: the core document takes a few milliseconds.
    let doc = document(group, version, &members);
    let body = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
    let entry = Arc::new(Cached {
        members,
        hash: hash(&body),
        body,
    });
    DOCS.lock().insert(key, entry.clone());
    Some(entry)
}

/// `api/v1` or `apis/<group>/<version>`: a document's place under `/openapi/v3/`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn served_group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for (_, r) in RESOURCES.served() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `/openapi/v3`: the index of documents, each linked with its current hash.
pub fn serve_index(headers: &HeaderMap) -> Response {
    let mut paths = Map::new();
    for (g, v) in served_group_versions() {
        if let Some(c) = cached(g, v) {
            let path = gv_path(g, v);
            paths.insert(
                path.clone(),
                json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={}", c.hash) }),
            );
        }
    }
    let body = serde_json::to_vec(&json!({ "paths": paths })).unwrap_or_default();
    let etag = format!("\"{}\"", hash(&body));
    if etag_matches(headers, &etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, header_value(&etag))],
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, header_value(&etag)),
        ],
        body,
    )
        .into_response()
}

/// Whether an `Accept` header admits JSON (the only form served; upstream also has protobuf).
fn accepts_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.trim().is_empty()
        || accept.split(',').any(|clause| {
            let media = clause.split(';').next().unwrap_or("").trim();
            matches!(media, "*/*" | "application/*" | "application/json")
        })
}

/// `/openapi/v3/api/v1` and `/openapi/v3/apis/<group>/<version>`.
pub fn serve_group_version(
    group: &str,
    version: &str,
    requested_hash: Option<&str>,
    headers: &HeaderMap,
) -> Response {
    let Some(doc) = cached(group, version) else {
        return ApiError::no_route().into_response();
    };
    if !accepts_json(headers) {
        return (StatusCode::NOT_ACCEPTABLE, [(header::VARY, "Accept")]).into_response();
    }
    let etag = format!("\"{}\"", doc.hash);
    let mut out = HeaderMap::new();
    out.insert(header::VARY, HeaderValue::from_static("Accept"));
    out.insert(header::ETAG, header_value(&etag));
    if let Some(h) = requested_hash.filter(|h| !h.is_empty()) {
        if h != doc.hash {
            let location = format!("/openapi/v3/{}?hash={}", gv_path(group, version), doc.hash);
            out.insert(header::LOCATION, header_value(&location));
            return (StatusCode::MOVED_PERMANENTLY, out).into_response();
        }
        out.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable"),
        );
        let expires = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(24 * 365))
            .unwrap_or_else(|_| jiff::Timestamp::now());
        out.insert(
            header::EXPIRES,
            header_value(&expires.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()),
        );
    }
    if etag_matches(headers, &etag) {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (StatusCode::OK, out, doc.body.clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core_doc() -> Value {
        let body = cached("", "v1").expect("core/v1 is served").body.clone();
        serde_json::from_slice(&body).expect("the document is JSON")
    }

    fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
        &doc["components"]["schemas"][name]
    }

    #[test]
    fn built_in_kinds_carry_their_gvk_and_schema() {
        let doc = core_doc();
        let pod = schema(&doc, "io.k8s.api.core.v1.Pod");
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{ "group": "", "version": "v1", "kind": "Pod" }])
        );
        assert!(pod["description"].as_str().is_some_and(|d| !d.is_empty()));
        // References point into the document's components, and resolve.
        let spec_ref = pod["properties"]["spec"]["allOf"][0]["$ref"]
            .as_str()
            .expect("spec refers to PodSpec");
        assert_eq!(spec_ref, "#/components/schemas/io.k8s.api.core.v1.PodSpec");
        assert!(schema(&doc, "io.k8s.api.core.v1.PodSpec")["properties"]["containers"].is_object());
        assert!(pod.get("required").is_none(), "{}", pod["required"]);
        // Every kind of the group/version has a schema (kubectl explain finds it by GVK).
        for (_, r) in RESOURCES.served().filter(|(_, r)| r.group.is_empty()) {
            let found = doc["components"]["schemas"]
                .as_object()
                .into_iter()
                .flatten()
                .any(|(_, s)| {
                    s["x-kubernetes-group-version-kind"]
                        .as_array()
                        .is_some_and(|l| l.iter().any(|g| g["kind"] == r.kind))
                });
            assert!(found, "no schema for {}", r.kind);
        }
    }

    #[test]
    fn every_patch_strategy_names_an_existing_property() {
        let mut generator = SchemaSettings::openapi3().into_generator();
        for (_, r) in RESOURCES.served() {
            builtin_schema(&mut generator, r);
        }
        let mut schemas = generator.take_definitions(true);
        for (component, property, _, _) in PATCH_STRATEGIES {
            assert!(
                schemas[*component]["properties"][*property].is_object(),
                "{component}.{property}"
            );
        }
        add_patch_strategies(&mut schemas);
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        assert!(strategy.get("$ref").is_none() && strategy["allOf"].is_array());
    }

    #[test]
    fn index_links_documents_by_hash_and_stale_hashes_redirect() {
        let doc = cached("apps", "v1").expect("apps/v1 is served");
        let headers = HeaderMap::new();
        let ok = serve_group_version("apps", "v1", Some(&doc.hash), &headers);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[header::CACHE_CONTROL], "public, immutable");
        let etag = ok.headers()[header::ETAG].clone();
        let stale = serve_group_version("apps", "v1", Some("0BAD"), &headers);
        assert_eq!(stale.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            stale.headers()[header::LOCATION],
            format!("/openapi/v3/apis/apps/v1?hash={}", doc.hash).as_str()
        );
        let mut conditional = HeaderMap::new();
        conditional.insert(header::IF_NONE_MATCH, etag);
        let not_modified = serve_group_version("apps", "v1", None, &conditional);
        assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
        let mut protobuf_only = HeaderMap::new();
        protobuf_only.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/com.github.proto-openapi.spec.v3@v1.0+protobuf"),
        );
        assert_eq!(
            serve_group_version("apps", "v1", None, &protobuf_only).status(),
            StatusCode::NOT_ACCEPTABLE
        );
        assert_eq!(
            serve_group_version("nope.example.com", "v1", None, &headers).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn custom_schema_names_reverse_the_group() {
        assert_eq!(
            custom_schema_name("stable.example.com", "v1", "CronTab"),
            "com.example.stable.v1.CronTab"
        );
    }

    #[test]
    fn custom_schemas_get_metadata_and_type_fields() {
        let custom = CustomVersion {
            crd_name: "widgets.example.com".into(),
            storage: 0,
            storage_api_version: "example.com/v1".into(),
            schema: Some(
                json!({ "type": "object", "properties": { "spec": { "type": "object" } } }),
            ),
            patterns: crate::crd::Patterns::default(),
            columns: Vec::new(),
            scale: None,
            terminating: false,
        };
        let s = custom_schema(&custom);
        assert_eq!(
            s["properties"]["metadata"]["allOf"][0]["$ref"],
            format!("#/components/schemas/{OBJECT_META}")
        );
        assert_eq!(s["properties"]["kind"]["type"], "string");
        assert!(s["properties"]["spec"].is_object());
    }
}
