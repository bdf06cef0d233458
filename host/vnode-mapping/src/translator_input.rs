//! A Kubernetes `Pod` plus the objects it references (already fetched by the caller) → the
//! translator plugin's `resolved-pod`, resolved the way a kubelet resolves a pod before it
//! starts it:
//!
//! - env: `value` (with `$(VAR)` expansion), `valueFrom` ConfigMap/Secret keys, `fieldRef`
//!   (metadata, `spec.nodeName`, `spec.serviceAccountName`; `status.podIP`/`hostIP`, which
//!   only exist at run time, are passed on as field refs), `resourceFieldRef` (with divisor),
//!   and `envFrom` (with prefix); `$(VAR)` in command and args is expanded too.
//! - volumes: ConfigMap, Secret, projected (ConfigMap, Secret, downward API, service-account
//!   token) and downward-API volumes become file sets (items, modes, optional, `binaryData`).
//! - image pull secrets are looked up with their data.
//!
//! Missing references are reported as [`MissingReference`]s: optional ones alongside the
//! result (the daemon emits `Optional…NotFound` events and continues), mandatory ones as
//! [`ResolveError::Missing`] (the daemon emits `Mandatory…NotFound` events and retries later).
//! Call [`references`] first to learn what to fetch.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1 as k;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString as KIntOrString;
use vnode_plugin_host::contract as c;

use crate::quantity;

/// Everything a pod references that must be fetched before it can be resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceSet {
    /// ConfigMap names (in the pod's namespace).
    pub config_maps: BTreeSet<String>,
    /// Secret names (in the pod's namespace), including image pull secrets.
    pub secrets: BTreeSet<String>,
    /// Audiences of projected service-account tokens (`""` = the API server's default).
    pub token_audiences: BTreeSet<String>,
}

/// The fetched objects. Absent entries are "not found".
#[derive(Debug, Clone, Default)]
pub struct Referenced {
    /// ConfigMaps by name.
    pub config_maps: BTreeMap<String, k::ConfigMap>,
    /// Secrets by name.
    pub secrets: BTreeMap<String, k::Secret>,
    /// Service-account tokens by audience (`""` = default audience), from a TokenRequest for
    /// the pod's service account.
    pub service_account_tokens: BTreeMap<String, String>,
}

/// The kind of a reference that could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingKind {
    /// A ConfigMap that does not exist.
    ConfigMap,
    /// A key absent from an existing ConfigMap.
    ConfigMapKey,
    /// A Secret that does not exist.
    Secret,
    /// A key absent from an existing Secret.
    SecretKey,
    /// An image pull secret that does not exist (the kubelet pulls without it).
    PullSecret,
    /// A projected service-account token the caller could not obtain.
    ServiceAccountToken,
}

/// One reference that could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingReference {
    /// What is missing.
    pub kind: MissingKind,
    /// The object's name (the audience for tokens).
    pub name: String,
    /// The key, for `…Key` kinds.
    pub key: Option<String>,
    /// Whether the pod marked it optional (then the pod runs without it).
    pub optional: bool,
    /// Where the pod references it, e.g. `spec.containers[0].env[2]`.
    pub field: String,
}

impl MissingReference {
    /// The Kubernetes event reason Virtual Kubelet uses for this (e.g.
    /// `MandatoryConfigMapNotFound`, `OptionalSecretKeyNotFound`).
    pub fn event_reason(&self) -> &'static str {
        use MissingKind::*;
        match (self.kind, self.optional) {
            (ConfigMap, false) => "MandatoryConfigMapNotFound",
            (ConfigMap, true) => "OptionalConfigMapNotFound",
            (ConfigMapKey, false) => "MandatoryConfigMapKeyNotFound",
            (ConfigMapKey, true) => "OptionalConfigMapKeyNotFound",
            (Secret, false) => "MandatorySecretNotFound",
            (Secret, true) => "OptionalSecretNotFound",
            (SecretKey, false) => "MandatorySecretKeyNotFound",
            (SecretKey, true) => "OptionalSecretKeyNotFound",
            (PullSecret, _) => "FailedToRetrieveImagePullSecret",
            (ServiceAccountToken, _) => "FailedToRetrieveServiceAccountToken",
        }
    }

    /// A one-line message for the event.
    pub fn message(&self) -> String {
        let what = match self.kind {
            MissingKind::ConfigMap | MissingKind::ConfigMapKey => "configmap",
            MissingKind::Secret | MissingKind::SecretKey => "secret",
            MissingKind::PullSecret => "image pull secret",
            MissingKind::ServiceAccountToken => "service account token for audience",
        };
        match &self.key {
            Some(key) => format!(
                "{}: key {key:?} not found in {what} {:?}",
                self.field, self.name
            ),
            None => format!("{}: {what} {:?} not found", self.field, self.name),
        }
    }
}

/// The resolved pod and the optional references that were missing.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The translator's input.
    pub pod: c::ResolvedPod,
    /// Optional references that did not resolve (one event each).
    pub missing_optional: Vec<MissingReference>,
    /// `envFrom` keys skipped because they are not valid environment variable names
    /// (`[A-Za-z_][A-Za-z0-9_]*`), as `field: key` (the `InvalidEnvironmentVariableNames` event).
    pub skipped_env_keys: Vec<String>,
}

/// Why a pod cannot be resolved (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Mandatory references are missing: the pod cannot start until they exist.
    #[error("{} mandatory reference(s) missing: {}", .0.len(), .0.iter().map(|m| m.message()).collect::<Vec<_>>().join("; "))]
    Missing(Vec<MissingReference>),
    /// A field of the pod is malformed (a quantity, a field path).
    #[error("{field}: {message}")]
    Invalid {
        /// The pod field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ResolveError {
    ResolveError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// What [`resolve`] will look up for this pod.
pub fn references(pod: &k::Pod) -> ReferenceSet {
    let mut set = ReferenceSet::default();
    let Some(spec) = &pod.spec else { return set };
    for ctr in all_containers(spec) {
        for e in ctr.env.iter().flatten() {
            if let Some(vf) = &e.value_from {
                if let Some(r) = &vf.config_map_key_ref {
                    set.config_maps.insert(r.name.clone());
                }
                if let Some(r) = &vf.secret_key_ref {
                    set.secrets.insert(r.name.clone());
                }
            }
        }
        for e in ctr.env_from.iter().flatten() {
            if let Some(r) = &e.config_map_ref {
                set.config_maps.insert(r.name.clone());
            }
            if let Some(r) = &e.secret_ref {
                set.secrets.insert(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            set.config_maps.insert(cm.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            set.secrets.insert(s);
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &src.config_map {
                set.config_maps.insert(cm.name.clone());
            }
            if let Some(s) = &src.secret {
                set.secrets.insert(s.name.clone());
            }
            if let Some(t) = &src.service_account_token {
                set.token_audiences
                    .insert(t.audience.clone().unwrap_or_default());
            }
        }
    }
    for s in spec.image_pull_secrets.iter().flatten() {
        set.secrets.insert(s.name.clone());
    }
    set
}

fn all_containers(spec: &k::PodSpec) -> impl Iterator<Item = &k::Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
}

/// Resolves the pod. `node_name` is the virtual node (for `spec.nodeName` refs of a pod not
/// yet updated with it).
pub fn resolve(pod: &k::Pod, refs: &Referenced, node_name: &str) -> Result<Resolved, ResolveError> {
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| invalid("spec", "the pod has no spec"))?;
    let mut r = Resolver {
        pod,
        spec,
        refs,
        node_name,
        missing: Vec::new(),
        skipped: Vec::new(),
    };
    let init_containers = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, ctr)| r.container(ctr, &format!("spec.initContainers[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let containers = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, ctr)| r.container(ctr, &format!("spec.containers[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let volumes = spec
        .volumes
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, v)| r.volume(v, &format!("spec.volumes[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut image_pull_secrets = Vec::new();
    for (i, s) in spec.image_pull_secrets.iter().flatten().enumerate() {
        match refs.secrets.get(&s.name) {
            Some(secret) => image_pull_secrets.push(c::PullSecret {
                name: s.name.clone(),
                type_: secret.type_.clone().unwrap_or_else(|| "Opaque".to_string()),
                data: secret
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect(),
            }),
            None => r.missing.push(MissingReference {
                kind: MissingKind::PullSecret,
                name: s.name.clone(),
                key: None,
                optional: true,
                field: format!("spec.imagePullSecrets[{i}]"),
            }),
        }
    }
    let (mandatory, optional): (Vec<_>, Vec<_>) = r.missing.into_iter().partition(|m| !m.optional);
    if !mandatory.is_empty() {
        return Err(ResolveError::Missing(mandatory));
    }
    let meta = &pod.metadata;
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .or_else(|| meta.owner_references.iter().flatten().next());
    let kv_list = |m: &Option<BTreeMap<String, String>>| -> Vec<c::KeyValue> {
        m.iter()
            .flatten()
            .map(|(k, v)| c::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect()
    };
    let resolved = c::ResolvedPod {
        meta: c::PodMeta {
            namespace: meta
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            labels: kv_list(&meta.labels),
            annotations: kv_list(&meta.annotations),
            owner_kind: owner.map(|o| o.kind.clone()),
            owner_name: owner.map(|o| o.name.clone()),
            creation_timestamp: meta
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
        },
        init_containers,
        containers,
        volumes,
        image_pull_secrets,
        restart_policy: spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".to_string()),
        dns_policy: spec.dns_policy.clone(),
        dns_config: spec.dns_config.as_ref().map(|d| c::DnsConfig {
            nameservers: d.nameservers.clone().unwrap_or_default(),
            searches: d.searches.clone().unwrap_or_default(),
            options: d
                .options
                .iter()
                .flatten()
                .filter_map(|o| {
                    o.name.clone().map(|name| c::DnsOption {
                        name,
                        value: o.value.clone(),
                    })
                })
                .collect(),
        }),
        host_aliases: spec
            .host_aliases
            .iter()
            .flatten()
            .map(|h| c::HostAlias {
                ip: h.ip.clone(),
                hostnames: h.hostnames.clone().unwrap_or_default(),
            })
            .collect(),
        hostname: spec.hostname.clone(),
        subdomain: spec.subdomain.clone(),
        active_deadline_seconds: spec.active_deadline_seconds,
        termination_grace_period_seconds: spec.termination_grace_period_seconds,
        share_process_namespace: spec.share_process_namespace,
        host_network: spec.host_network.unwrap_or(false),
        host_pid: spec.host_pid.unwrap_or(false),
        host_ipc: spec.host_ipc.unwrap_or(false),
        security_context: spec
            .security_context
            .as_ref()
            .map(|s| c::PodSecurityContext {
                run_as_user: s.run_as_user,
                run_as_group: s.run_as_group,
                run_as_non_root: s.run_as_non_root,
                fs_group: s.fs_group,
                supplemental_groups: s.supplemental_groups.clone().unwrap_or_default(),
                sysctls: s
                    .sysctls
                    .iter()
                    .flatten()
                    .map(|x| c::Sysctl {
                        name: x.name.clone(),
                        value: x.value.clone(),
                    })
                    .collect(),
            }),
        service_account_name: spec.service_account_name.clone(),
        node_selector: kv_list(&spec.node_selector),
        tolerations: spec
            .tolerations
            .iter()
            .flatten()
            .map(|t| c::Toleration {
                key: t.key.clone(),
                operator: t.operator.clone(),
                value: t.value.clone(),
                effect: t.effect.clone(),
                toleration_seconds: t.toleration_seconds,
            })
            .collect(),
        priority_class: spec.priority_class_name.clone(),
    };
    Ok(Resolved {
        pod: resolved,
        missing_optional: optional,
        skipped_env_keys: r.skipped,
    })
}

/// Parses `requests`/`limits` into the contract's resource list.
pub fn resource_list(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    field: &str,
) -> Result<c::ResourceList, ResolveError> {
    let mut out = c::ResourceList {
        cpu_millis: None,
        memory_bytes: None,
        gpu: None,
        ephemeral_storage_bytes: None,
        other: Vec::new(),
    };
    for (name, q) in map.into_iter().flatten() {
        let at = || format!("{field}[{name}]");
        let err = |e: quantity::QuantityError| invalid(at(), e.to_string());
        match name.as_str() {
            "cpu" => out.cpu_millis = Some(quantity::cpu_millis(&q.0).map_err(err)?),
            "memory" => out.memory_bytes = Some(quantity::bytes(&q.0).map_err(err)?),
            "ephemeral-storage" => {
                out.ephemeral_storage_bytes = Some(quantity::bytes(&q.0).map_err(err)?)
            }
            n if n.ends_with("/gpu") => {
                let count = quantity::count(&q.0).map_err(err)?;
                let count = u32::try_from(count).map_err(|_| invalid(at(), "too many GPUs"))?;
                out.gpu = Some(out.gpu.unwrap_or(0) + count);
            }
            _ => out.other.push(c::KeyValue {
                key: name.clone(),
                value: q.0.clone(),
            }),
        }
    }
    Ok(out)
}

struct Resolver<'a> {
    pod: &'a k::Pod,
    spec: &'a k::PodSpec,
    refs: &'a Referenced,
    node_name: &'a str,
    missing: Vec<MissingReference>,
    skipped: Vec<String>,
}

/// Kubernetes `$(VAR)` expansion: defined variables are substituted, `$$` escapes to `$`,
/// undefined references stay as written.
pub fn expand(input: &str, vars: &[(String, c::EnvValue)]) -> String {
    if !input.contains('$') {
        return input.to_string();
    }
    let lookup = |name: &str| {
        vars.iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| match v {
                c::EnvValue::Literal(s) => Some(s.as_str()),
                c::EnvValue::FieldRef(_) => None,
            })
    };
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        if let Some(v) = lookup(name) {
                            out.push_str(v);
                            i += 3 + end;
                            continue;
                        }
                        out.push_str(&input[i..i + 3 + end]);
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().unwrap_or('$');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn is_c_identifier(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn bytes_to_string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Resolver<'_> {
    fn miss(
        &mut self,
        kind: MissingKind,
        name: &str,
        key: Option<&str>,
        optional: bool,
        field: &str,
    ) {
        self.missing.push(MissingReference {
            kind,
            name: name.to_string(),
            key: key.map(str::to_string),
            optional,
            field: field.to_string(),
        });
    }

    /// A key of a ConfigMap (`data` or `binaryData`), recording a miss.
    fn config_map_key(
        &mut self,
        name: &str,
        key: &str,
        optional: bool,
        field: &str,
    ) -> Option<Vec<u8>> {
        let Some(cm) = self.refs.config_maps.get(name) else {
            self.miss(MissingKind::ConfigMap, name, None, optional, field);
            return None;
        };
        let v = cm
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|s| s.as_bytes().to_vec())
            .or_else(|| {
                cm.binary_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|b| b.0.clone())
            });
        if v.is_none() {
            self.miss(MissingKind::ConfigMapKey, name, Some(key), optional, field);
        }
        v
    }

    fn secret_key(
        &mut self,
        name: &str,
        key: &str,
        optional: bool,
        field: &str,
    ) -> Option<Vec<u8>> {
        let Some(s) = self.refs.secrets.get(name) else {
            self.miss(MissingKind::Secret, name, None, optional, field);
            return None;
        };
        let v = s
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                s.string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.as_bytes().to_vec())
            });
        if v.is_none() {
            self.miss(MissingKind::SecretKey, name, Some(key), optional, field);
        }
        v
    }

    /// A downward-API `fieldRef` known before the pod runs; `None` for run-time fields.
    fn field_value(&self, path: &str, field: &str) -> Result<Option<String>, ResolveError> {
        let meta = &self.pod.metadata;
        let map_key = |prefix: &str| -> Option<String> {
            path.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix("']"))
                .and_then(|r| r.strip_prefix('\''))
                .map(str::to_string)
        };
        Ok(Some(match path {
            "metadata.name" => meta.name.clone().unwrap_or_default(),
            "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
            "metadata.uid" => meta.uid.clone().unwrap_or_default(),
            "metadata.labels" => downward_map(meta.labels.as_ref()),
            "metadata.annotations" => downward_map(meta.annotations.as_ref()),
            "spec.nodeName" => self
                .spec
                .node_name
                .clone()
                .unwrap_or_else(|| self.node_name.to_string()),
            "spec.serviceAccountName" => self.spec.service_account_name.clone().unwrap_or_default(),
            "status.podIP" | "status.podIPs" | "status.hostIP" | "status.hostIPs" => {
                return Ok(None);
            }
            p if p.starts_with("metadata.labels[") => match map_key("metadata.labels[") {
                Some(k) => meta
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(&k))
                    .cloned()
                    .unwrap_or_default(),
                None => return Err(invalid(field, format!("malformed field path {p:?}"))),
            },
            p if p.starts_with("metadata.annotations[") => match map_key("metadata.annotations[") {
                Some(k) => meta
                    .annotations
                    .as_ref()
                    .and_then(|l| l.get(&k))
                    .cloned()
                    .unwrap_or_default(),
                None => return Err(invalid(field, format!("malformed field path {p:?}"))),
            },
            p => return Err(invalid(field, format!("unsupported field path {p:?}"))),
        }))
    }

    /// `resourceFieldRef`: the container's limit (else request), divided by the divisor and
    /// rounded up, as the kubelet does.
    fn resource_value(
        &self,
        sel: &k::ResourceFieldSelector,
        own: &str,
        field: &str,
    ) -> Result<String, ResolveError> {
        let name = sel
            .container_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(own);
        let ctr = all_containers(self.spec)
            .find(|c| c.name == name)
            .ok_or_else(|| invalid(field, format!("no container named {name:?}")))?;
        let res = ctr.resources.as_ref();
        let (kind, what) = sel
            .resource
            .split_once('.')
            .ok_or_else(|| invalid(field, format!("unsupported resource {:?}", sel.resource)))?;
        let map = match kind {
            "limits" => res
                .and_then(|r| r.limits.as_ref())
                .or(res.and_then(|r| r.requests.as_ref())),
            "requests" => res.and_then(|r| r.requests.as_ref()),
            _ => {
                return Err(invalid(
                    field,
                    format!("unsupported resource {:?}", sel.resource),
                ));
            }
        };
        let q = map
            .and_then(|m| m.get(what))
            .map(|q| q.0.as_str())
            .unwrap_or("0");
        let divisor = sel.divisor.as_ref().map(|d| d.0.as_str()).unwrap_or("1");
        let err = |e: quantity::QuantityError| invalid(field, e.to_string());
        let v = if what == "cpu" {
            let (v, d) = (
                quantity::cpu_millis(q).map_err(err)?,
                quantity::cpu_millis(divisor).map_err(err)?,
            );
            v.div_ceil(d.max(1))
        } else {
            let (v, d) = (
                quantity::bytes(q).map_err(err)?,
                quantity::bytes(divisor).map_err(err)?,
            );
            v.div_ceil(d.max(1))
        };
        Ok(v.to_string())
    }

    fn container(&mut self, ctr: &k::Container, at: &str) -> Result<c::Container, ResolveError> {
        let mut env: Vec<(String, c::EnvValue)> = Vec::new();
        let set = |env: &mut Vec<(String, c::EnvValue)>, name: String, v: c::EnvValue| {
            env.retain(|(n, _)| *n != name);
            env.push((name, v));
        };
        for (j, src) in ctr.env_from.iter().flatten().enumerate() {
            let field = format!("{at}.envFrom[{j}]");
            let prefix = src.prefix.clone().unwrap_or_default();
            let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
            if let Some(r) = &src.config_map_ref {
                match self.refs.config_maps.get(&r.name) {
                    Some(cm) => pairs.extend(
                        cm.data
                            .iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), v.as_bytes().to_vec())),
                    ),
                    None => self.miss(
                        MissingKind::ConfigMap,
                        &r.name,
                        None,
                        r.optional.unwrap_or(false),
                        &field,
                    ),
                }
            }
            if let Some(r) = &src.secret_ref {
                match self.refs.secrets.get(&r.name) {
                    Some(s) => pairs.extend(
                        s.data
                            .iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), v.0.clone())),
                    ),
                    None => self.miss(
                        MissingKind::Secret,
                        &r.name,
                        None,
                        r.optional.unwrap_or(false),
                        &field,
                    ),
                }
            }
            for (k, v) in pairs {
                let name = format!("{prefix}{k}");
                if is_c_identifier(&name) {
                    set(&mut env, name, c::EnvValue::Literal(bytes_to_string(&v)));
                } else {
                    self.skipped.push(format!("{field}: {name}"));
                }
            }
        }
        for (j, e) in ctr.env.iter().flatten().enumerate() {
            let field = format!("{at}.env[{j}]");
            let value = match (&e.value, &e.value_from) {
                (_, Some(vf)) => {
                    if let Some(r) = &vf.config_map_key_ref {
                        match self.config_map_key(
                            &r.name,
                            &r.key,
                            r.optional.unwrap_or(false),
                            &field,
                        ) {
                            Some(b) => c::EnvValue::Literal(bytes_to_string(&b)),
                            None => continue,
                        }
                    } else if let Some(r) = &vf.secret_key_ref {
                        match self.secret_key(&r.name, &r.key, r.optional.unwrap_or(false), &field)
                        {
                            Some(b) => c::EnvValue::Literal(bytes_to_string(&b)),
                            None => continue,
                        }
                    } else if let Some(f) = &vf.field_ref {
                        match self
                            .field_value(&f.field_path, &format!("{field}.valueFrom.fieldRef"))?
                        {
                            Some(v) => c::EnvValue::Literal(v),
                            None => c::EnvValue::FieldRef(f.field_path.clone()),
                        }
                    } else if let Some(r) = &vf.resource_field_ref {
                        c::EnvValue::Literal(self.resource_value(
                            r,
                            &ctr.name,
                            &format!("{field}.valueFrom.resourceFieldRef"),
                        )?)
                    } else {
                        return Err(invalid(
                            format!("{field}.valueFrom"),
                            "no supported source (fileKeyRef?)",
                        ));
                    }
                }
                (v, None) => c::EnvValue::Literal(expand(v.as_deref().unwrap_or(""), &env)),
            };
            set(&mut env, e.name.clone(), value);
        }
        let resources = ctr.resources.as_ref();
        let requirements = c::ResourceRequirements {
            requests: resource_list(
                resources.and_then(|r| r.requests.as_ref()),
                &format!("{at}.resources.requests"),
            )?,
            limits: resource_list(
                resources.and_then(|r| r.limits.as_ref()),
                &format!("{at}.resources.limits"),
            )?,
        };
        let probe = |p: &Option<k::Probe>| -> Option<c::Probe> {
            let p = p.as_ref()?;
            Some(c::Probe {
                handler: probe_handler(p)?,
                initial_delay_seconds: p.initial_delay_seconds,
                period_seconds: p.period_seconds,
                timeout_seconds: p.timeout_seconds,
                success_threshold: p.success_threshold,
                failure_threshold: p.failure_threshold,
            })
        };
        Ok(c::Container {
            name: ctr.name.clone(),
            image: ctr.image.clone().unwrap_or_default(),
            command: ctr
                .command
                .iter()
                .flatten()
                .map(|s| expand(s, &env))
                .collect(),
            args: ctr.args.iter().flatten().map(|s| expand(s, &env)).collect(),
            working_dir: ctr.working_dir.clone(),
            env: env
                .into_iter()
                .map(|(name, value)| c::EnvVar { name, value })
                .collect(),
            ports: ctr
                .ports
                .iter()
                .flatten()
                .map(|p| c::ContainerPort {
                    name: p.name.clone(),
                    container_port: p.container_port,
                    protocol: p.protocol.clone(),
                    host_port: p.host_port,
                })
                .collect(),
            resources: requirements,
            volume_mounts: ctr
                .volume_mounts
                .iter()
                .flatten()
                .map(|m| c::VolumeMount {
                    name: m.name.clone(),
                    mount_path: m.mount_path.clone(),
                    sub_path: m.sub_path.clone(),
                    read_only: m.read_only.unwrap_or(false),
                    mount_propagation: m.mount_propagation.clone(),
                })
                .collect(),
            liveness_probe: probe(&ctr.liveness_probe),
            readiness_probe: probe(&ctr.readiness_probe),
            startup_probe: probe(&ctr.startup_probe),
            lifecycle: ctr.lifecycle.as_ref().map(|l| c::Lifecycle {
                post_start: l.post_start.as_ref().and_then(lifecycle_handler),
                pre_stop: l.pre_stop.as_ref().and_then(lifecycle_handler),
            }),
            security_context: ctr.security_context.as_ref().map(|s| c::SecurityContext {
                capabilities_add: s
                    .capabilities
                    .as_ref()
                    .and_then(|c| c.add.clone())
                    .unwrap_or_default(),
                capabilities_drop: s
                    .capabilities
                    .as_ref()
                    .and_then(|c| c.drop.clone())
                    .unwrap_or_default(),
                privileged: s.privileged,
                run_as_user: s.run_as_user,
                run_as_group: s.run_as_group,
                run_as_non_root: s.run_as_non_root,
                read_only_root_filesystem: s.read_only_root_filesystem,
                allow_privilege_escalation: s.allow_privilege_escalation,
            }),
            image_pull_policy: ctr.image_pull_policy.clone(),
            termination_message_path: ctr.termination_message_path.clone(),
            termination_message_policy: ctr.termination_message_policy.clone(),
            stdin: ctr.stdin.unwrap_or(false),
            stdin_once: ctr.stdin_once.unwrap_or(false),
            tty: ctr.tty.unwrap_or(false),
            restart_policy: ctr.restart_policy.clone(),
        })
    }

    fn key_files(
        &mut self,
        kind: MissingKind,
        name: &str,
        items: Option<&Vec<k::KeyToPath>>,
        optional: bool,
        field: &str,
        files: &mut Vec<c::File>,
    ) -> bool {
        let all: Option<BTreeMap<String, Vec<u8>>> = match kind {
            MissingKind::ConfigMap => self.refs.config_maps.get(name).map(|cm| {
                let mut m: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
                    .collect();
                m.extend(
                    cm.binary_data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.0.clone())),
                );
                m
            }),
            _ => self.refs.secrets.get(name).map(|s| {
                s.data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect()
            }),
        };
        let Some(all) = all else {
            self.miss(kind, name, None, optional, field);
            return false;
        };
        match items {
            Some(items) if !items.is_empty() => {
                let key_kind = if kind == MissingKind::ConfigMap {
                    MissingKind::ConfigMapKey
                } else {
                    MissingKind::SecretKey
                };
                for it in items {
                    match all.get(&it.key) {
                        Some(v) => files.push(c::File {
                            path: it.path.clone(),
                            content: v.clone(),
                            mode: it.mode.map(mode),
                        }),
                        None => self.miss(key_kind, name, Some(&it.key), optional, field),
                    }
                }
            }
            _ => files.extend(all.into_iter().map(|(k, v)| c::File {
                path: k,
                content: v,
                mode: None,
            })),
        }
        true
    }

    fn downward_files(
        &self,
        items: Option<&Vec<k::DownwardAPIVolumeFile>>,
        field: &str,
        files: &mut Vec<c::File>,
    ) -> Result<(), ResolveError> {
        for (j, it) in items.into_iter().flatten().enumerate() {
            let at = format!("{field}.items[{j}]");
            let value = if let Some(f) = &it.field_ref {
                self.field_value(&f.field_path, &at)?.ok_or_else(|| {
                    invalid(
                        &at,
                        format!("{} is not available in a downward-API volume", f.field_path),
                    )
                })?
            } else if let Some(r) = &it.resource_field_ref {
                let own = r.container_name.clone().unwrap_or_default();
                self.resource_value(r, &own, &at)?
            } else {
                return Err(invalid(at, "neither fieldRef nor resourceFieldRef"));
            };
            files.push(c::File {
                path: it.path.clone(),
                content: value.into_bytes(),
                mode: it.mode.map(mode),
            });
        }
        Ok(())
    }

    fn volume(&mut self, v: &k::Volume, at: &str) -> Result<c::Volume, ResolveError> {
        let source = if let Some(e) = &v.empty_dir {
            let size = e.size_limit.as_ref().map(|q| q.0.clone());
            let bytes = size
                .as_deref()
                .map(|s| {
                    quantity::bytes(s)
                        .map_err(|e| invalid(format!("{at}.emptyDir.sizeLimit"), e.to_string()))
                })
                .transpose()?;
            c::VolumeSource::EmptyDir(c::EmptyDirSource {
                medium: e.medium.clone().filter(|m| !m.is_empty()),
                size_limit: size,
                size_limit_bytes: bytes,
            })
        } else if let Some(cm) = &v.config_map {
            let mut files = Vec::new();
            let optional = cm.optional.unwrap_or(false);
            let found = self.key_files(
                MissingKind::ConfigMap,
                &cm.name,
                cm.items.as_ref(),
                optional,
                &format!("{at}.configMap"),
                &mut files,
            );
            c::VolumeSource::ConfigMap(c::FileSet {
                files,
                default_mode: cm.default_mode.map(mode),
                optional_missing: !found,
            })
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let mut files = Vec::new();
            let optional = s.optional.unwrap_or(false);
            let found = self.key_files(
                MissingKind::Secret,
                &name,
                s.items.as_ref(),
                optional,
                &format!("{at}.secret"),
                &mut files,
            );
            c::VolumeSource::Secret(c::FileSet {
                files,
                default_mode: s.default_mode.map(mode),
                optional_missing: !found,
            })
        } else if let Some(p) = &v.projected {
            let mut files = Vec::new();
            for (j, src) in p.sources.iter().flatten().enumerate() {
                let field = format!("{at}.projected.sources[{j}]");
                if let Some(cm) = &src.config_map {
                    let optional = cm.optional.unwrap_or(false);
                    self.key_files(
                        MissingKind::ConfigMap,
                        &cm.name,
                        cm.items.as_ref(),
                        optional,
                        &field,
                        &mut files,
                    );
                } else if let Some(s) = &src.secret {
                    let optional = s.optional.unwrap_or(false);
                    self.key_files(
                        MissingKind::Secret,
                        &s.name,
                        s.items.as_ref(),
                        optional,
                        &field,
                        &mut files,
                    );
                } else if let Some(d) = &src.downward_api {
                    self.downward_files(d.items.as_ref(), &field, &mut files)?;
                } else if let Some(t) = &src.service_account_token {
                    let audience = t.audience.clone().unwrap_or_default();
                    match self.refs.service_account_tokens.get(&audience) {
                        Some(token) => files.push(c::File {
                            path: t.path.clone(),
                            content: token.clone().into_bytes(),
                            mode: None,
                        }),
                        None => self.miss(
                            MissingKind::ServiceAccountToken,
                            &audience,
                            None,
                            false,
                            &field,
                        ),
                    }
                } else {
                    return Err(invalid(
                        field,
                        "unsupported projected source (clusterTrustBundle?)",
                    ));
                }
            }
            c::VolumeSource::Projected(c::FileSet {
                files,
                default_mode: p.default_mode.map(mode),
                optional_missing: false,
            })
        } else if let Some(d) = &v.downward_api {
            let mut files = Vec::new();
            self.downward_files(d.items.as_ref(), &format!("{at}.downwardAPI"), &mut files)?;
            c::VolumeSource::DownwardApi(c::FileSet {
                files,
                default_mode: d.default_mode.map(mode),
                optional_missing: false,
            })
        } else if let Some(n) = &v.nfs {
            c::VolumeSource::Nfs(c::NfsSource {
                server: n.server.clone(),
                path: n.path.clone(),
                read_only: n.read_only.unwrap_or(false),
            })
        } else if let Some(h) = &v.host_path {
            c::VolumeSource::HostPath(c::HostPathSource {
                path: h.path.clone(),
                type_: h.type_.clone(),
            })
        } else if let Some(p) = &v.persistent_volume_claim {
            c::VolumeSource::PersistentVolumeClaim(c::ClaimSource {
                claim_name: p.claim_name.clone(),
                read_only: p.read_only.unwrap_or(false),
            })
        } else {
            c::VolumeSource::Other(other_volume_kind(v).to_string())
        };
        Ok(c::Volume {
            name: v.name.clone(),
            source,
        })
    }
}

/// Modes are validated by the API server to 0..=0777.
fn mode(m: i32) -> u32 {
    u32::try_from(m).unwrap_or(0)
}

/// `key="value"` lines, sorted, as the kubelet writes `metadata.labels` files.
fn downward_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect::<Vec<_>>()
        .join("\n")
}

fn other_volume_kind(v: &k::Volume) -> &'static str {
    if v.csi.is_some() {
        "csi"
    } else if v.ephemeral.is_some() {
        "ephemeral"
    } else if v.iscsi.is_some() {
        "iscsi"
    } else if v.git_repo.is_some() {
        "gitRepo"
    } else if v.image.is_some() {
        "image"
    } else if v.fc.is_some() {
        "fc"
    } else if v.rbd.is_some() {
        "rbd"
    } else if v.cephfs.is_some() {
        "cephfs"
    } else if v.flex_volume.is_some() {
        "flexVolume"
    } else {
        "unknown"
    }
}

fn int_or_string(p: &KIntOrString) -> c::IntOrString {
    match p {
        KIntOrString::Int(n) => c::IntOrString::Int(*n),
        KIntOrString::String(s) => c::IntOrString::Str(s.clone()),
    }
}

fn http_get(h: &k::HTTPGetAction) -> c::HttpGetAction {
    c::HttpGetAction {
        path: h.path.clone(),
        port: int_or_string(&h.port),
        host: h.host.clone(),
        scheme: h.scheme.clone(),
        headers: h
            .http_headers
            .iter()
            .flatten()
            .map(|x| c::HttpHeader {
                name: x.name.clone(),
                value: x.value.clone(),
            })
            .collect(),
    }
}

fn tcp(t: &k::TCPSocketAction) -> c::TcpSocketAction {
    c::TcpSocketAction {
        port: int_or_string(&t.port),
        host: t.host.clone(),
    }
}

fn probe_handler(p: &k::Probe) -> Option<c::Handler> {
    if let Some(e) = &p.exec {
        Some(c::Handler::Exec(e.command.clone().unwrap_or_default()))
    } else if let Some(h) = &p.http_get {
        Some(c::Handler::HttpGet(http_get(h)))
    } else if let Some(t) = &p.tcp_socket {
        Some(c::Handler::TcpSocket(tcp(t)))
    } else {
        p.grpc.as_ref().map(|g| {
            c::Handler::Grpc(c::GrpcAction {
                port: g.port,
                service: g.service.clone(),
            })
        })
    }
}

fn lifecycle_handler(h: &k::LifecycleHandler) -> Option<c::Handler> {
    if let Some(e) = &h.exec {
        Some(c::Handler::Exec(e.command.clone().unwrap_or_default()))
    } else if let Some(g) = &h.http_get {
        Some(c::Handler::HttpGet(http_get(g)))
    } else if let Some(t) = &h.tcp_socket {
        Some(c::Handler::TcpSocket(tcp(t)))
    } else {
        h.sleep.as_ref().map(|s| c::Handler::Sleep(s.seconds))
    }
}
