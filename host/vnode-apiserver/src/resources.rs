//! The static resource table: every group/version/resource the server serves, and the
//! discovery and OpenAPI documents derived from it.
//!
//! Built-in kinds that vnode gives no special meaning (Deployments, RBAC objects, …) are
//! listed here too, so that `kubectl apply -f` can map their kinds to resources and the
//! store keeps them as plain JSON.

use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{Value, json};

/// Index of a resource in [`RESOURCES`]: built-in resources first, then the slots
/// custom resources are registered in.
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
    /// Discovery categories besides `all` (custom resources declare their own).
    pub categories: &'static [&'static str],
    /// Field paths field selectors may name besides those [`crate::selectors`] knows for
    /// built-in kinds (a CRD version's `selectableFields`, `spec.color`).
    pub selectable_fields: &'static [&'static str],
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
            short_names: &[$($short),*], in_all: $all, subresources: &[$($sub),*], view_of: None, categories: &[], selectable_fields: &[] }
    };
}

/// Every built-in resource, core first (discovery keeps this order).
static BUILTIN: &[ResourceInfo] = &[
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
        categories: &[],
        selectable_fields: &[],
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
    /// apiextensions.k8s.io/v1 customresourcedefinitions
    pub const CRDS: ResourceId = 39;
}

/// Looks a served resource up by group, version and plural name.
pub fn find(group: &str, version: &str, plural: &str) -> Option<ResourceId> {
    RESOURCES
        .served()
        .find(|(_, r)| r.group == group && r.version == version && r.plural == plural)
        .map(|(id, _)| id)
}

/// The storage resource for `id` (itself, or the resource it is a view of).
pub fn storage_of(id: ResourceId) -> ResourceId {
    if let Some(c) = RESOURCES.custom(id) {
        return c.storage;
    }
    match RESOURCES[id].view_of {
        Some(p) => BUILTIN
            .iter()
            .position(|r| r.group.is_empty() && r.plural == p)
            .unwrap_or(id),
        None => id,
    }
}

/// How many custom resource versions can be registered at once (each served version of
/// a CRD takes one slot). Every store keeps an (empty, allocation-free) map per slot.
pub const MAX_CUSTOM: usize = 512;

/// What a slot that never held a custom resource reports (nothing matches it).
static UNUSED: ResourceInfo = ResourceInfo {
    group: "",
    version: "",
    plural: "",
    singular: "",
    kind: "",
    namespaced: false,
    short_names: &[],
    in_all: false,
    subresources: &[],
    view_of: None,
    categories: &[],
    selectable_fields: &[],
};

/// One custom resource slot.
struct Slot {
    info: &'static ResourceInfo,
    /// Set while a CRD serves it; cleared when the CRD is deleted (the slot is kept so a
    /// re-created CRD gets the same id).
    custom: Option<Arc<crate::crd::CustomVersion>>,
}

/// Every resource the server knows: the built-in table plus the custom resources CRDs
/// register at run time. `RESOURCES[id]` is the resource's description.
///
/// The custom part is process-wide (one API server runs per process); descriptions are
/// leaked so that `RESOURCES[id]` can hand out `&'static` references like the built-in
/// table does: one small allocation per distinct CRD definition, never per request.
pub struct Registry {
    custom: RwLock<Vec<Slot>>,
}

/// The resource registry.
pub static RESOURCES: Registry = Registry {
    custom: RwLock::new(Vec::new()),
};

/// Registering a custom resource failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// All [`MAX_CUSTOM`] slots hold served custom resources.
    #[error("too many custom resources (at most {MAX_CUSTOM} served versions)")]
    Full,
}

impl std::ops::Index<ResourceId> for Registry {
    type Output = ResourceInfo;

    fn index(&self, id: ResourceId) -> &ResourceInfo {
        if let Some(b) = BUILTIN.get(id) {
            return b;
        }
        let info: &'static ResourceInfo = self
            .custom
            .read()
            .get(id - BUILTIN.len())
            .map_or(&UNUSED, |s| s.info);
        info
    }
}

impl Registry {
    /// Number of ids (built-in resources plus every custom slot, used or not).
    pub fn len(&self) -> usize {
        BUILTIN.len() + MAX_CUSTOM
    }

    /// Whether the registry is empty (it never is).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Every id's description, in id order (unused custom slots describe nothing:
    /// empty names, cluster-scoped).
    pub fn iter(&self) -> impl Iterator<Item = &'static ResourceInfo> + '_ {
        (0..self.len()).map(|id| {
            let info: &'static ResourceInfo = match BUILTIN.get(id) {
                Some(b) => b,
                None => self.slot_info(id),
            };
            info
        })
    }

    fn slot_info(&self, id: ResourceId) -> &'static ResourceInfo {
        self.custom
            .read()
            .get(id - BUILTIN.len())
            .map_or(&UNUSED, |s| s.info)
    }

    /// Served resources with their ids: built-ins, then custom resources CRDs serve.
    pub fn served(&self) -> impl Iterator<Item = (ResourceId, &'static ResourceInfo)> + '_ {
        let custom: Vec<(ResourceId, &'static ResourceInfo)> = self
            .custom
            .read()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.custom.is_some())
            .map(|(i, s)| (BUILTIN.len() + i, s.info))
            .collect();
        BUILTIN.iter().enumerate().chain(custom)
    }

    /// The CRD-defined behaviour of a served custom resource.
    pub fn custom(&self, id: ResourceId) -> Option<Arc<crate::crd::CustomVersion>> {
        let i = id.checked_sub(BUILTIN.len())?;
        self.custom.read().get(i).and_then(|s| s.custom.clone())
    }

    /// Whether `id` is a custom resource slot (served or not).
    pub fn is_custom(&self, id: ResourceId) -> bool {
        id >= BUILTIN.len()
    }

    /// Ids of the served custom resources.
    pub fn custom_ids(&self) -> Vec<ResourceId> {
        self.served()
            .map(|(id, _)| id)
            .filter(|id| *id >= BUILTIN.len())
            .collect()
    }

    /// The slot a custom group/version/plural has (served or not), or a free one.
    /// Does not register anything (see [`Registry::register`]).
    pub fn slot_for(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Result<ResourceId, RegistryError> {
        let slots = self.custom.read();
        if let Some(i) = slots.iter().position(|s| {
            s.info.group == group && s.info.version == version && s.info.plural == plural
        }) {
            return Ok(BUILTIN.len() + i);
        }
        if slots.len() < MAX_CUSTOM {
            return Ok(BUILTIN.len() + slots.len());
        }
        slots
            .iter()
            .position(|s| s.custom.is_none())
            .map(|i| BUILTIN.len() + i)
            .ok_or(RegistryError::Full)
    }

    /// Serves `info` at slot `id` (from [`Registry::slot_for`]) with the CRD's behaviour.
    pub fn register(
        &self,
        id: ResourceId,
        info: &CustomInfo,
        custom: Arc<crate::crd::CustomVersion>,
    ) -> Result<(), RegistryError> {
        let i = id.checked_sub(BUILTIN.len()).ok_or(RegistryError::Full)?;
        if i >= MAX_CUSTOM {
            return Err(RegistryError::Full);
        }
        let mut slots = self.custom.write();
        while slots.len() <= i {
            slots.push(Slot {
                info: &UNUSED,
                custom: None,
            });
        }
        let slot = &mut slots[i];
        if !info.matches(slot.info) {
            slot.info = info.leak();
        }
        slot.custom = Some(custom);
        Ok(())
    }

    /// Stops serving a custom resource (its slot and id are kept for a later CRD).
    pub fn unregister(&self, id: ResourceId) {
        if let Some(i) = id.checked_sub(BUILTIN.len())
            && let Some(slot) = self.custom.write().get_mut(i)
        {
            slot.custom = None;
        }
    }
}

/// The description of a custom resource version, as a CRD gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomInfo {
    /// API group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names.
    pub short_names: Vec<String>,
    /// Categories (`all` among them puts it in `kubectl get all`).
    pub categories: Vec<String>,
    /// Served subresources (`status`, `scale`).
    pub subresources: Vec<&'static str>,
    /// Whether this version is where the objects are stored (other served versions are
    /// views of it).
    pub storage: bool,
    /// `selectableFields` as field selector paths (`spec.color`).
    pub selectable_fields: Vec<String>,
}

impl CustomInfo {
    fn matches(&self, r: &ResourceInfo) -> bool {
        let cats: Vec<&str> = self
            .categories
            .iter()
            .map(String::as_str)
            .filter(|c| *c != "all")
            .collect();
        r.group == self.group
            && r.version == self.version
            && r.plural == self.plural
            && r.singular == self.singular
            && r.kind == self.kind
            && r.namespaced == self.namespaced
            && r.short_names.iter().eq(self.short_names.iter())
            && r.in_all == self.categories.iter().any(|c| c == "all")
            && r.categories == cats.as_slice()
            && r.subresources == self.subresources.as_slice()
            && r.view_of.is_none() == self.storage
            && r.selectable_fields.iter().eq(self.selectable_fields.iter())
    }

    fn leak(&self) -> &'static ResourceInfo {
        let plural = leak_str(&self.plural);
        let cats: Vec<String> = self
            .categories
            .iter()
            .filter(|c| *c != "all")
            .cloned()
            .collect();
        Box::leak(Box::new(ResourceInfo {
            group: leak_str(&self.group),
            version: leak_str(&self.version),
            plural,
            singular: leak_str(&self.singular),
            kind: leak_str(&self.kind),
            namespaced: self.namespaced,
            short_names: leak_strs(&self.short_names),
            in_all: self.categories.iter().any(|c| c == "all"),
            subresources: Box::leak(self.subresources.clone().into_boxed_slice()),
            view_of: (!self.storage).then_some(plural),
            categories: leak_strs(&cats),
            selectable_fields: leak_strs(&self.selectable_fields),
        }))
    }
}

/// A string that lives as long as the process (for descriptions of custom resources).
pub fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

/// A list of strings that lives as long as the process.
pub fn leak_strs(v: &[String]) -> &'static [&'static str] {
    let items: Vec<&'static str> = v.iter().map(|s| leak_str(s)).collect();
    Box::leak(items.into_boxed_slice())
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

/// Every served group (core excluded) with its versions, the preferred one first.
fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for (_, r) in RESOURCES.served().filter(|(_, r)| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    for (_, versions) in &mut out {
        versions.sort_by(|a, b| version_priority(b).cmp(&version_priority(a)).then(a.cmp(b)));
    }
    out
}

/// Upstream's version priority (what makes a version preferred): GA over beta over
/// alpha, then the higher major and minor numbers; versions not of the `v1beta2` form
/// come last.
fn version_priority(v: &str) -> (u8, u64, u64) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let Ok(major) = rest[..digits].parse::<u64>() else {
        return (0, 0, 0);
    };
    let (level, minor) = match &rest[digits..] {
        "" => (3, ""),
        t => match (t.strip_prefix("beta"), t.strip_prefix("alpha")) {
            (Some(n), _) => (2, n),
            (_, Some(n)) => (1, n),
            _ => return (0, 0, 0),
        },
    };
    match minor.parse::<u64>() {
        Ok(n) => (level, major, n),
        Err(_) if minor.is_empty() => (level, major, 0),
        Err(_) => (0, 0, 0),
    }
}

/// The `/apis` document (legacy, non-aggregated discovery; clients fall back to it).
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = groups().iter().map(|(g, v)| api_group(g, v)).collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
        .collect();
    let preferred = gvs.first().cloned().unwrap_or(Value::Null);
    json!({ "name": group, "versions": gvs, "preferredVersion": preferred })
}

/// The `/apis/{group}` document, if the group exists.
pub fn api_group_doc(group: &str) -> Option<Value> {
    groups()
        .into_iter()
        .find(|(g, _)| *g == group)
        .map(|(g, v)| {
            let mut d = api_group(g, &v);
            d["kind"] = json!("APIGroup");
            d["apiVersion"] = json!("v1");
            d
        })
}

/// The `APIResourceList` for one group/version, if served.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for (id, r) in RESOURCES
        .served()
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
        let categories: Vec<&str> = r
            .in_all
            .then_some("all")
            .into_iter()
            .chain(r.categories.iter().copied())
            .collect();
        if !categories.is_empty() {
            entry["categories"] = json!(categories);
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
/// `/openapi/v3`). `kubectl explain` and client-side `apply` read the schemas of
/// `/openapi/v3` ([`crate::openapi`]) instead.
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
        assert_eq!(RESOURCES[ids::CRDS].plural, "customresourcedefinitions");
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

    #[test]
    fn preferred_versions_follow_upstream_priority() {
        let mut vs = vec![
            "v1alpha1", "v1", "v2beta1", "v2", "v1beta2", "foo", "v1beta1",
        ];
        vs.sort_by(|a, b| version_priority(b).cmp(&version_priority(a)).then(a.cmp(b)));
        assert_eq!(
            vs,
            [
                "v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"
            ]
        );
        let g = api_group("example.com", &["v2", "v1"]);
        assert_eq!(g["preferredVersion"]["version"], "v2");
        assert_eq!(g["versions"].as_array().map(Vec::len), Some(2));
    }
}
