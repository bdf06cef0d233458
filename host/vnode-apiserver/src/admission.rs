//! Decoding checks, validation and defaulting: the admission a real cluster applies to
//! the types whose semantics clients rely on.
//!
//! * Typed decoding against `k8s-openapi` types finds malformed fields (400) and unknown
//!   fields (400 with `fieldValidation=Strict`, a `Warning` header otherwise).
//! * Names follow DNS-1123 rules per resource (422 `Invalid` with causes).
//! * Pods get the defaults kubectl shows (service account and its projected token volume,
//!   scheduler name, pull policy, default tolerations, QoS class, `Pending` phase).

use serde_json::{Map, Value, json};

use crate::resources::{RESOURCES, ResourceId, ids};
use crate::status::{ApiError, Cause};
use crate::store::random_suffix;

/// How to treat unknown fields (`fieldValidation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop silently.
    Ignore,
    /// Drop and warn (the default).
    Warn,
    /// Reject with 400.
    Strict,
}

impl FieldValidation {
    /// Parses the query parameter (absent → `Warn`).
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Ignore") => Ok(Self::Ignore),
            Some("Strict") => Ok(Self::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}. Supported values: Ignore, Warn, Strict"
            ))),
        }
    }
}

fn format_path(p: &serde_ignored::Path<'_>, out: &mut String) {
    use serde_ignored::Path;
    match p {
        Path::Root => {}
        Path::Seq { parent, index } => {
            format_path(parent, out);
            out.push_str(&format!("[{index}]"));
        }
        Path::Map { parent, key } => {
            format_path(parent, out);
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => format_path(parent, out),
    }
}

fn typed<T: for<'de> serde::Deserialize<'de>>(v: &Value) -> Result<Vec<String>, String> {
    let mut unknown = Vec::new();
    let mut record = |p: serde_ignored::Path<'_>| {
        let mut s = String::new();
        format_path(&p, &mut s);
        unknown.push(s);
    };
    let cb: &mut dyn FnMut(serde_ignored::Path<'_>) = &mut record;
    let r: Result<T, _> = serde_ignored::deserialize(v, cb);
    match r {
        Ok(_) => Ok(unknown),
        Err(e) => Err(e.to_string()),
    }
}

/// Decodes `obj` as its typed form, where one is known. Returns the unknown field paths,
/// or the decode error as a 400.
pub fn typed_check(res: ResourceId, obj: &Value) -> Result<Vec<String>, ApiError> {
    use k8s_openapi::api::{apps, coordination, core, events, rbac};
    let info = &RESOURCES[res];
    let r = match (info.group, info.plural) {
        ("", "pods") => typed::<core::v1::Pod>(obj),
        ("", "nodes") => typed::<core::v1::Node>(obj),
        ("", "namespaces") => typed::<core::v1::Namespace>(obj),
        ("", "events") => typed::<core::v1::Event>(obj),
        ("", "configmaps") => typed::<core::v1::ConfigMap>(obj),
        ("", "secrets") => typed::<core::v1::Secret>(obj),
        ("", "serviceaccounts") => typed::<core::v1::ServiceAccount>(obj),
        ("", "services") => typed::<core::v1::Service>(obj),
        ("coordination.k8s.io", "leases") => typed::<coordination::v1::Lease>(obj),
        ("events.k8s.io", "events") => typed::<events::v1::Event>(obj),
        ("apps", "deployments") => typed::<apps::v1::Deployment>(obj),
        ("rbac.authorization.k8s.io", "roles") => typed::<rbac::v1::Role>(obj),
        ("rbac.authorization.k8s.io", "clusterroles") => typed::<rbac::v1::ClusterRole>(obj),
        ("rbac.authorization.k8s.io", "rolebindings") => typed::<rbac::v1::RoleBinding>(obj),
        ("rbac.authorization.k8s.io", "clusterrolebindings") => {
            typed::<rbac::v1::ClusterRoleBinding>(obj)
        }
        _ => Ok(Vec::new()),
    };
    r.map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: {e}",
            kind = info.kind,
            v = info.version
        ))
    })
}

/// [`typed_check`] of a write of `obj` over the stored `cur`. For pods (written several
/// times over their life: binding, annotations, status) only the top-level fields that
/// differ from `cur` are decoded (`metadata` as ObjectMeta, `spec` as PodSpec, `status`
/// as PodStatus): `cur` passed the same check when it was written (unknown fields are
/// refused or dropped then), so the unchanged parts cannot fail it now. Other resources
/// are checked whole.
pub fn typed_check_update(
    res: ResourceId,
    cur: Option<&Value>,
    obj: &Value,
) -> Result<Vec<String>, ApiError> {
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let (Some(cur), Some(new)) = (cur.and_then(Value::as_object), obj.as_object()) else {
        return typed_check(res, obj);
    };
    if res != ids::PODS {
        return typed_check(res, obj);
    }
    let mut unknown = Vec::new();
    for (key, value) in new {
        if cur.get(key) == Some(value) || value.is_null() {
            continue;
        }
        let checked = match key.as_str() {
            // `check_type` has made these the endpoint's strings.
            "apiVersion" | "kind" => continue,
            "metadata" => typed::<ObjectMeta>(value),
            "spec" => typed::<PodSpec>(value),
            "status" => typed::<PodStatus>(value),
            _ => {
                unknown.push(key.clone());
                continue;
            }
        };
        match checked {
            Ok(paths) => unknown.extend(paths.into_iter().map(|p| format!("{key}.{p}"))),
            Err(e) => {
                let info = &RESOURCES[res];
                return Err(ApiError::bad_request(format!(
                    "{kind} in version \"{v}\" cannot be handled as a {kind}: {e}",
                    kind = info.kind,
                    v = info.version
                )));
            }
        }
    }
    Ok(unknown)
}

/// Removes the field at a path as [`typed_check`] reports it (`spec.containers[0].x`).
pub fn remove_path(obj: &mut Value, path: &str) {
    let mut segs: Vec<(String, Option<usize>)> = Vec::new();
    for part in path.split('.') {
        let mut name = part;
        let mut idx = Vec::new();
        while let Some(open) = name.rfind('[') {
            if let Ok(i) = name[open + 1..name.len().saturating_sub(1)].parse::<usize>() {
                idx.push(i);
            }
            name = &name[..open];
        }
        segs.push((name.to_string(), None));
        for i in idx.into_iter().rev() {
            segs.push((String::new(), Some(i)));
        }
    }
    let Some((last, rest)) = segs.split_last() else {
        return;
    };
    let mut cur = obj;
    for (name, idx) in rest {
        cur = match idx {
            Some(i) => match cur.get_mut(*i) {
                Some(v) => v,
                None => return,
            },
            None => match cur.get_mut(name.as_str()) {
                Some(v) => v,
                None => return,
            },
        };
    }
    if last.1.is_none()
        && let Some(m) = cur.as_object_mut()
    {
        m.remove(&last.0);
    }
}

/// Quantity-valued maps: YAML numbers there (`cpu: 1`) are accepted and stored as strings,
/// as upstream's Quantity unmarshalling does.
const QUANTITY_MAPS: &[&str] = &[
    "limits",
    "requests",
    "capacity",
    "allocatable",
    "overhead",
    "hard",
    "used",
];

/// Rewrites numeric quantities to strings in place.
pub fn normalize_quantities(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if QUANTITY_MAPS.contains(&k.as_str())
                    && let Value::Object(q) = child
                {
                    for qv in q.values_mut() {
                        if let Value::Number(n) = qv {
                            *qv = Value::String(n.to_string());
                        }
                    }
                }
                normalize_quantities(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize_quantities),
        _ => {}
    }
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes()[0] != b'-'
        && s.as_bytes()[s.len() - 1] != b'-'
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_value(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

fn invalid(field: &str, value: &str, msg: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        message: format!("Invalid value: \"{value}\": {msg}"),
        field: field.into(),
    }
}

fn required(field: &str, msg: &str) -> Cause {
    let message = if msg.is_empty() {
        "Required value".to_string()
    } else {
        format!("Required value: {msg}")
    };
    Cause {
        reason: "FieldValueRequired",
        message,
        field: field.into(),
    }
}

/// Which name rule a resource's names follow.
fn name_causes(res: ResourceId, name: &str) -> Vec<Cause> {
    let info = &RESOURCES[res];
    let f = "metadata.name";
    if info.group == "rbac.authorization.k8s.io" {
        // RBAC names are path segments (e.g. `system:controller:foo`).
        if name == "." || name == ".." || name.contains('/') || name.contains('%') {
            return vec![invalid(
                f,
                name,
                "may not contain '/' or '%' and may not be '.' or '..'",
            )];
        }
        return Vec::new();
    }
    match info.plural {
        "namespaces" | "services" => {
            if name.len() > 63 {
                vec![invalid(f, name, "must be no more than 63 characters")]
            } else if !is_dns_label(name) {
                vec![invalid(f, name, LABEL_MSG)]
            } else {
                Vec::new()
            }
        }
        _ => {
            if name.len() > 253 {
                vec![invalid(f, name, "must be no more than 253 characters")]
            } else if !is_dns_subdomain(name) {
                vec![invalid(f, name, SUBDOMAIN_MSG)]
            } else {
                Vec::new()
            }
        }
    }
}

fn metadata_causes(res: ResourceId, obj: &Value) -> Vec<Cause> {
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or("");
    let mut causes = if name.is_empty() && meta["generateName"].as_str().unwrap_or("").is_empty() {
        vec![required(
            "metadata.name",
            "name or generateName is required",
        )]
    } else if name.is_empty() {
        Vec::new()
    } else {
        name_causes(res, name)
    };
    if let Some(labels) = meta["labels"].as_object() {
        for (k, v) in labels {
            if !is_qualified_name(k) {
                causes.push(invalid("metadata.labels", k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"));
            }
            match v.as_str() {
                Some(s) if is_label_value(s) => {}
                Some(s) => causes.push(invalid("metadata.labels", s, LABEL_VALUE_MSG)),
                None => causes.push(invalid(
                    "metadata.labels",
                    &v.to_string(),
                    "label values must be strings",
                )),
            }
        }
    }
    if let Some(ann) = meta["annotations"].as_object() {
        for k in ann.keys() {
            if !is_qualified_name(k) {
                causes.push(invalid("metadata.annotations", k, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
        }
    }
    causes
}

fn pod_causes(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let containers = obj["spec"]["containers"].as_array();
    match containers {
        None => causes.push(required("spec.containers", "")),
        Some(cs) if cs.is_empty() => causes.push(required("spec.containers", "")),
        Some(cs) => {
            let mut seen = std::collections::HashSet::new();
            for (i, c) in cs.iter().enumerate() {
                let name = c["name"].as_str().unwrap_or("");
                if name.is_empty() {
                    causes.push(required(&format!("spec.containers[{i}].name"), ""));
                } else if !is_dns_label(name) {
                    causes.push(invalid(
                        &format!("spec.containers[{i}].name"),
                        name,
                        LABEL_MSG,
                    ));
                } else if !seen.insert(name.to_string()) {
                    causes.push(Cause {
                        reason: "FieldValueDuplicate",
                        message: format!("Duplicate value: \"{name}\""),
                        field: format!("spec.containers[{i}].name"),
                    });
                }
                if c["image"].as_str().unwrap_or("").is_empty() {
                    causes.push(required(&format!("spec.containers[{i}].image"), ""));
                }
            }
        }
    }
    causes
}

/// Validates an object about to be created or updated; 422 with causes on failure.
pub fn validate(res: ResourceId, obj: &Value) -> Result<(), ApiError> {
    let mut causes = metadata_causes(res, obj);
    if res == ids::PODS {
        causes.extend(pod_causes(obj));
    }
    if causes.is_empty() {
        return Ok(());
    }
    let info = &RESOURCES[res];
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    Err(ApiError::invalid(info.kind, info.group, name, causes))
}

/// Spec changes allowed on a running pod (upstream's list): images, activeDeadlineSeconds,
/// tolerations additions, and removal of scheduling gates.
pub fn validate_pod_update(old: &Value, new: &Value) -> Result<(), ApiError> {
    // Compared in place: this runs on every pod write (status and metadata patches
    // included), so it must not clone the specs.
    if pod_specs_equal_but_mutable(&old["spec"], &new["spec"]) {
        return Ok(());
    }
    let name = new["metadata"]["name"].as_str().unwrap_or("");
    Err(ApiError::invalid(
        "Pod",
        "",
        name,
        vec![Cause {
            reason: "FieldValueForbidden",
            message: "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into(),
            field: "spec".into(),
        }],
    ))
}

/// Spec fields a running pod may change (besides container images).
const POD_SPEC_MUTABLE: [&str; 4] = [
    "activeDeadlineSeconds",
    "tolerations",
    "schedulingGates",
    "terminationGracePeriodSeconds",
];

/// Whether two pod specs are equal apart from what [`validate_pod_update`] allows to change.
fn pod_specs_equal_but_mutable(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let skip = |k: &String| {
        POD_SPEC_MUTABLE.contains(&k.as_str()) || k == "containers" || k == "initContainers"
    };
    // `serde_json` maps iterate in key order, so equal maps give equal filtered sequences.
    let rest_equal = a
        .iter()
        .filter(|(k, _)| !skip(k))
        .eq(b.iter().filter(|(k, _)| !skip(k)));
    rest_equal
        && ["containers", "initContainers"]
            .iter()
            .all(|list| containers_equal_but_image(a.get(*list), b.get(*list)))
}

/// Whether two container lists are equal apart from each container's `image` (a missing
/// list equals `null`).
fn containers_equal_but_image(a: Option<&Value>, b: Option<&Value>) -> bool {
    let (a, b) = (a.unwrap_or(&Value::Null), b.unwrap_or(&Value::Null));
    let (Some(a), Some(b)) = (a.as_array(), b.as_array()) else {
        return a == b;
    };
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| match (x.as_object(), y.as_object()) {
                (Some(x), Some(y)) => x
                    .iter()
                    .filter(|(k, _)| *k != "image")
                    .eq(y.iter().filter(|(k, _)| *k != "image")),
                _ => x == y,
            })
}

fn set_default(m: &mut Map<String, Value>, k: &str, v: Value) {
    if m.get(k).is_none_or(Value::is_null) {
        m.insert(k.to_string(), v);
    }
}

fn pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in spec["containers"].as_array().into_iter().flatten() {
        let r = &c["resources"];
        let (req, lim) = (&r["requests"], &r["limits"]);
        for res in ["cpu", "memory"] {
            let (q, l) = (req.get(res), lim.get(res));
            if q.is_some() || l.is_some() {
                any = true;
            }
            match (q, l) {
                (_, None) => guaranteed = false,
                (Some(q), Some(l)) if q != l => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn default_container(c: &mut Value, token_mount: Option<&Value>) {
    let Some(m) = c.as_object_mut() else { return };
    let image = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    set_default(m, "imagePullPolicy", json!(pull_policy(&image)));
    set_default(m, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(m, "terminationMessagePolicy", json!("File"));
    set_default(m, "resources", json!({}));
    if let Some(Value::Array(ports)) = m.get_mut("ports") {
        for p in ports {
            if let Some(pm) = p.as_object_mut() {
                set_default(pm, "protocol", json!("TCP"));
            }
        }
    }
    if let Some(mount) = token_mount {
        let mounts = m.entry("volumeMounts").or_insert_with(|| json!([]));
        if let Some(list) = mounts.as_array_mut()
            && !list.iter().any(|x| x["mountPath"] == mount["mountPath"])
        {
            list.push(mount.clone());
        }
    }
}

/// Pod defaulting on create (what a real API server's defaulting and admission add).
/// `sa_automount` is the service account's `automountServiceAccountToken`, if set.
pub fn default_pod(pod: &mut Value, sa_automount: Option<bool>) {
    let Some(spec) = pod["spec"].as_object_mut() else {
        return;
    };
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    set_default(spec, "priority", json!(0));
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            spec.get("serviceAccount")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(sa));
    spec.insert("serviceAccount".into(), json!(sa));
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or(sa_automount)
        .unwrap_or(true);
    let token_mount = if automount {
        let vol_name = format!("kube-api-access-{}", random_suffix());
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        let existing = volumes.as_array().and_then(|vs| {
            vs.iter()
                .find(|v| {
                    v["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("kube-api-access-"))
                })
                .and_then(|v| v["name"].as_str().map(String::from))
        });
        let vol_name = match existing {
            Some(n) => n,
            None => {
                if let Some(list) = volumes.as_array_mut() {
                    list.push(json!({
                        "name": vol_name,
                        "projected": {
                            "defaultMode": 420,
                            "sources": [
                                { "serviceAccountToken": { "expirationSeconds": 3607, "path": "token" } },
                                { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                                { "downwardAPI": { "items": [{ "path": "namespace", "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } }] } },
                            ],
                        },
                    }));
                }
                vol_name
            }
        };
        Some(
            json!({ "name": vol_name, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true }),
        )
    } else {
        None
    };
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs {
                default_container(c, token_mount.as_ref());
            }
        }
    }
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if let Some(list) = tolerations.as_array_mut() {
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            let present = list.iter().any(|t| {
                (t["key"] == key || (t["key"].is_null() && t["operator"] == "Exists"))
                    && (t["effect"] == "NoExecute" || t["effect"].is_null())
            });
            if !present {
                list.push(json!({ "key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 }));
            }
        }
    }
    let qos = qos_class(&pod["spec"]);
    pod["status"] = json!({ "phase": "Pending", "qosClass": qos });
}

/// Namespace defaulting on create.
pub fn default_namespace(ns: &mut Value) {
    let name = ns["metadata"]["name"].as_str().unwrap_or("").to_string();
    if !ns["metadata"]["labels"].is_object() {
        ns["metadata"]["labels"] = json!({});
    }
    ns["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    if !ns["spec"].is_object() {
        ns["spec"] = json!({});
    }
    ns["spec"]["finalizers"] = json!(["kubernetes"]);
    ns["status"] = json!({ "phase": "Active" });
}

/// Secret normalisation: `stringData` folded into base64 `data`, `type` defaulted, and
/// `data` values checked to be base64 (400 otherwise, as upstream's decoder).
pub fn normalize_secret(secret: &mut Value) -> Result<(), ApiError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(m) = secret.as_object_mut() {
        if let Some(Value::Object(sd)) = m.remove("stringData") {
            let data = m.entry("data").or_insert_with(|| json!({}));
            for (k, v) in sd {
                data[k] = json!(b64.encode(v.as_str().unwrap_or("")));
            }
        }
        set_default(m, "type", json!("Opaque"));
        if let Some(Value::Object(data)) = m.get("data") {
            for (k, v) in data {
                let ok = v.as_str().is_some_and(|s| b64.decode(s).is_ok());
                if !ok {
                    return Err(ApiError::bad_request(format!(
                        "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in field data.{k}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// events.k8s.io/v1 → core/v1 field names (the store keeps the core form).
pub fn event_v1_to_core(mut v: Value) -> Value {
    let Some(m) = v.as_object_mut() else { return v };
    let renames = [
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("reportingController", "reportingComponent"),
    ];
    for (from, to) in renames {
        if let Some(x) = m.remove(from) {
            m.insert(to.to_string(), x);
        }
    }
    m.insert("apiVersion".into(), json!("v1"));
    v
}

/// core/v1 → events.k8s.io/v1 field names.
pub fn event_core_to_v1(v: &Value) -> Value {
    event_core_into_v1(v.clone())
}

/// [`event_core_to_v1`] on an owned event (no copy).
pub fn event_core_into_v1(mut v: Value) -> Value {
    let Some(m) = v.as_object_mut() else { return v };
    let renames = [
        ("involvedObject", "regarding"),
        ("message", "note"),
        ("source", "deprecatedSource"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
        ("reportingComponent", "reportingController"),
    ];
    for (from, to) in renames {
        if let Some(x) = m.remove(from) {
            m.insert(to.to_string(), x);
        }
    }
    m.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    if m.get("eventTime").is_none_or(Value::is_null) {
        // events.k8s.io requires eventTime; upstream fills it from the timestamps.
        let t = m
            .get("deprecatedFirstTimestamp")
            .or_else(|| v_get(m, "metadata", "creationTimestamp"))
            .and_then(Value::as_str)
            .map(|s| s.replace('Z', ".000000Z"));
        if let Some(t) = t {
            m.insert("eventTime".into(), json!(t));
        }
    }
    v
}

fn v_get<'a>(m: &'a Map<String, Value>, a: &str, b: &str) -> Option<&'a Value> {
    m.get(a).and_then(|x| x.get(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_update_is_checked_like_the_whole_pod() {
        let cur = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "d", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Pending"},
        });
        let cases = [
            json!({"metadata": {"name": "p", "namespace": "d", "labels": {"a": "c"}, "bogus": 1}}),
            json!({"spec": {"containers": [{"name": "c", "image": "i", "extra": true}], "nope": 1}}),
            json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "x": 1}]}}),
            json!({"topLevel": {"a": 1}}),
            json!({"status": {"phase": 5}}),
            json!({"spec": {"containers": "not a list"}}),
            json!({"metadata": {"name": "p", "namespace": "d"}}),
        ];
        for change in cases {
            let mut new = cur.clone();
            for (k, v) in change.as_object().expect("object") {
                new[k] = v.clone();
            }
            let whole = typed_check(ids::PODS, &new).map_err(|e| e.message);
            let update = typed_check_update(ids::PODS, Some(&cur), &new).map_err(|e| e.message);
            assert_eq!(update, whole, "{change}");
        }
        // Unchanged: nothing to decode, nothing found.
        assert_eq!(
            typed_check_update(ids::PODS, Some(&cur), &cur).expect("ok"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn pod_updates_may_change_only_images_and_the_mutable_fields() {
        let pod = |spec: Value| json!({"metadata": {"name": "p"}, "spec": spec});
        let base = json!({
            "nodeName": "n",
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "containers": [{"name": "c", "image": "i:1", "ports": [{"containerPort": 80}]}],
        });
        let ok = |spec: Value| validate_pod_update(&pod(base.clone()), &pod(spec));
        assert!(ok(base.clone()).is_ok());
        let mut image = base.clone();
        image["containers"][0]["image"] = json!("i:2");
        assert!(ok(image).is_ok());
        let mut mutable = base.clone();
        mutable["tolerations"] = json!([]);
        mutable["activeDeadlineSeconds"] = json!(10);
        mutable["terminationGracePeriodSeconds"] = json!(1);
        assert!(ok(mutable).is_ok());
        // A missing init-container list equals an explicit null.
        let mut null_init = base.clone();
        null_init["initContainers"] = Value::Null;
        assert!(ok(null_init).is_ok());
        for change in [
            json!({"nodeName": "m"}),
            json!({"restartPolicy": "Never"}),
            json!({"containers": [{"name": "c", "image": "i:1"}]}),
            json!({"containers": [{"name": "c", "image": "i:1", "ports": [{"containerPort": 80}]}, {"name": "d", "image": "i"}]}),
            json!({"initContainers": [{"name": "i", "image": "i"}]}),
        ] {
            let mut spec = base.clone();
            for (k, v) in change.as_object().expect("object") {
                spec[k] = v.clone();
            }
            let e = ok(spec.clone()).expect_err(&format!("{spec} must be refused"));
            assert_eq!(e.code, 422, "{spec}");
        }
    }

    #[test]
    fn names_follow_dns_rules() {
        let pod = |n: &str| json!({"metadata": {"name": n}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        assert!(validate(ids::PODS, &pod("ok-name.x")).is_ok());
        let e = validate(ids::PODS, &pod("Bad_Name")).expect_err("invalid");
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert!(e.message.starts_with("Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"));
        let ns = json!({"metadata": {"name": "a.b"}});
        assert!(validate(ids::NAMESPACES, &ns).is_err());
        let cr = json!({"metadata": {"name": "system:controller:x"}});
        let crs = crate::resources::find("rbac.authorization.k8s.io", "v1", "clusterroles")
            .expect("served");
        assert!(validate(crs, &cr).is_ok());
        let bad_label = json!({"metadata": {"name": "x", "labels": {"a": "not ok!"}}});
        assert!(validate(ids::CONFIGMAPS, &bad_label).is_err());
    }

    #[test]
    fn strict_decoding_reports_unknown_and_malformed_fields() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "bogus": 1}], "extra": true}});
        let unknown = typed_check(ids::PODS, &pod).expect("decodes");
        assert_eq!(
            unknown,
            vec![
                "spec.containers[0].bogus".to_string(),
                "spec.extra".to_string()
            ]
        );
        let mut cleaned = pod.clone();
        for p in &unknown {
            remove_path(&mut cleaned, p);
        }
        assert!(
            typed_check(ids::PODS, &cleaned)
                .expect("decodes")
                .is_empty()
        );
        let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "nope"}});
        assert_eq!(
            typed_check(ids::PODS, &bad).expect_err("malformed").code,
            400
        );
    }

    #[test]
    fn pod_defaults_match_what_kubectl_shows() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        default_pod(&mut pod, None);
        let spec = &pod["spec"];
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["tolerations"].as_array().map(Vec::len), Some(2));
        assert!(
            spec["volumes"][0]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("kube-api-access-"))
        );
        assert_eq!(
            spec["containers"][0]["volumeMounts"][0]["mountPath"],
            "/var/run/secrets/kubernetes.io/serviceaccount"
        );
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }

    #[test]
    fn quantities_and_events_convert() {
        let mut o = json!({"resources": {"limits": {"cpu": 1, "memory": "1Gi"}}});
        normalize_quantities(&mut o);
        assert_eq!(o["resources"]["limits"]["cpu"], "1");
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "regarding": {"name": "p"}, "note": "hi", "reportingController": "c"});
        let core = event_v1_to_core(v1);
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hi");
        assert_eq!(event_core_to_v1(&core)["note"], "hi");
    }
}
