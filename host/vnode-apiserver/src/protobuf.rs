//! Kubernetes protobuf request bodies, for the few kinds kubectl's typed commands create
//! (`kubectl create namespace|configmap|secret|serviceaccount`): kubectl sends those as
//! `application/vnd.kubernetes.protobuf` and has no JSON fallback. The envelope is the
//! 4-byte magic `k8s\0` followed by a `runtime.Unknown` whose `raw` field holds the object.
//! Roles, bindings, Deployments and Jobs (`kubectl create role|rolebinding|deployment|job`)
//! are decoded from field tables ([`schema`]). Other kinds (and fields the tables do not
//! know) get 415, and their commands (`kubectl run`) need `kubectl apply -f` instead.

use serde_json::{Map, Value, json};

use crate::status::ApiError;

#[derive(Debug)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn bad(why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "the body of the request could not be decoded as protobuf: {why}"
    ))
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ApiError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(bad("varint too long"))
}

/// Splits a message into (field number, value) pairs.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, ApiError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        let v = match wire {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| bad("length"))?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or_else(|| bad("truncated field"))?;
                let b = &buf[pos..end];
                pos = end;
                Wire::Bytes(b)
            }
            1 => {
                pos += 8;
                Wire::Fixed
            }
            5 => {
                pos += 4;
                Wire::Fixed
            }
            _ => return Err(bad("unsupported wire type")),
        };
        if pos > buf.len() {
            return Err(bad("truncated fixed field"));
        }
        out.push((field, v));
    }
    Ok(out)
}

fn string(w: &Wire<'_>) -> Result<String, ApiError> {
    match w {
        Wire::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| bad("invalid UTF-8")),
        _ => Err(bad("expected a string")),
    }
}

fn bytes<'a>(w: &Wire<'a>) -> Result<&'a [u8], ApiError> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err(bad("expected bytes")),
    }
}

/// A `map<string, string>` (or bytes, base64-encoded as JSON does) entry.
fn map_entry(w: &Wire<'_>, base64_values: bool) -> Result<(String, Value), ApiError> {
    use base64::Engine as _;
    let mut k = String::new();
    let mut v = Value::String(String::new());
    for (f, x) in fields(bytes(w)?)? {
        match f {
            1 => k = string(&x)?,
            2 if base64_values => {
                v = json!(base64::engine::general_purpose::STANDARD.encode(bytes(&x)?))
            }
            2 => v = json!(string(&x)?),
            _ => {}
        }
    }
    Ok((k, v))
}

fn insert_map(obj: &mut Map<String, Value>, key: &str, entry: (String, Value)) {
    let m = obj.entry(key.to_string()).or_insert_with(|| json!({}));
    if let Some(m) = m.as_object_mut() {
        m.insert(entry.0, entry.1);
    }
}

fn object_meta(buf: &[u8]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for (f, w) in fields(buf)? {
        match f {
            1 => {
                m.insert("name".into(), json!(string(&w)?));
            }
            2 => {
                m.insert("generateName".into(), json!(string(&w)?));
            }
            3 => {
                m.insert("namespace".into(), json!(string(&w)?));
            }
            6 => {
                m.insert("resourceVersion".into(), json!(string(&w)?));
            }
            11 => insert_map(&mut m, "labels", map_entry(&w, false)?),
            12 => insert_map(&mut m, "annotations", map_entry(&w, false)?),
            14 => {
                let list = m.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(json!(string(&w)?));
                }
            }
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

fn object_reference(buf: &[u8]) -> Result<Value, ApiError> {
    let mut m = Map::new();
    for (f, w) in fields(buf)? {
        let key = match f {
            1 => "kind",
            2 => "namespace",
            3 => "name",
            4 => "uid",
            5 => "apiVersion",
            _ => continue,
        };
        m.insert(key.into(), json!(string(&w)?));
    }
    Ok(Value::Object(m))
}

/// Decodes a protobuf body into JSON for the kinds kubectl's typed create commands send.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let payload = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| bad("missing the k8s magic prefix"))?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (f, w) in fields(payload)? {
        match f {
            1 => {
                for (tf, tw) in fields(bytes(&w)?)? {
                    match tf {
                        1 => api_version = string(&tw)?,
                        2 => kind = string(&tw)?,
                        _ => {}
                    }
                }
            }
            2 => raw = bytes(&w)?,
            _ => {}
        }
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    let flds = fields(raw)?;
    for (f, w) in &flds {
        if *f == 1 {
            obj.insert("metadata".into(), object_meta(bytes(w)?)?);
        }
    }
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "ConfigMap") => {
            for (f, w) in &flds {
                match f {
                    2 => insert_map(&mut obj, "data", map_entry(w, false)?),
                    3 => insert_map(&mut obj, "binaryData", map_entry(w, true)?),
                    4 => {
                        obj.insert("immutable".into(), json!(matches!(w, Wire::Varint(1))));
                    }
                    _ => {}
                }
            }
        }
        ("v1", "Secret") => {
            for (f, w) in &flds {
                match f {
                    2 => insert_map(&mut obj, "data", map_entry(w, true)?),
                    3 => {
                        obj.insert("type".into(), json!(string(w)?));
                    }
                    4 => insert_map(&mut obj, "stringData", map_entry(w, false)?),
                    5 => {
                        obj.insert("immutable".into(), json!(matches!(w, Wire::Varint(1))));
                    }
                    _ => {}
                }
            }
        }
        ("v1", "Namespace") => {
            for (f, w) in &flds {
                if *f == 2 {
                    let mut finalizers = Vec::new();
                    for (sf, sw) in fields(bytes(w)?)? {
                        if sf == 1 {
                            finalizers.push(json!(string(&sw)?));
                        }
                    }
                    obj.insert("spec".into(), json!({ "finalizers": finalizers }));
                }
            }
        }
        ("v1", "ServiceAccount") => {
            for (f, w) in &flds {
                match f {
                    2 => {
                        let r = object_reference(bytes(w)?)?;
                        let list = obj.entry("secrets").or_insert_with(|| json!([]));
                        if let Some(a) = list.as_array_mut() {
                            a.push(r);
                        }
                    }
                    3 => {
                        let mut name = String::new();
                        for (sf, sw) in fields(bytes(w)?)? {
                            if sf == 1 {
                                name = string(&sw)?;
                            }
                        }
                        let list = obj.entry("imagePullSecrets").or_insert_with(|| json!([]));
                        if let Some(a) = list.as_array_mut() {
                            a.push(json!({ "name": name }));
                        }
                    }
                    4 => {
                        obj.insert(
                            "automountServiceAccountToken".into(),
                            json!(matches!(w, Wire::Varint(1))),
                        );
                    }
                    _ => {}
                }
            }
        }
        ("authentication.k8s.io/v1", "TokenRequest") => {
            // `kubectl create token`: TokenRequestSpec{audiences=1, boundObjectRef=3,
            // expirationSeconds=4}.
            for (f, w) in &flds {
                if *f != 2 {
                    continue;
                }
                let mut spec = Map::new();
                let mut audiences = Vec::new();
                for (sf, sw) in fields(bytes(w)?)? {
                    match (sf, &sw) {
                        (1, _) => audiences.push(json!(string(&sw)?)),
                        (3, _) => {
                            let mut r = Map::new();
                            for (rf, rw) in fields(bytes(&sw)?)? {
                                let key = match rf {
                                    1 => "kind",
                                    2 => "apiVersion",
                                    3 => "name",
                                    4 => "uid",
                                    _ => continue,
                                };
                                r.insert(key.into(), json!(string(&rw)?));
                            }
                            spec.insert("boundObjectRef".into(), Value::Object(r));
                        }
                        (4, Wire::Varint(n)) => {
                            spec.insert("expirationSeconds".into(), json!(n));
                        }
                        _ => {}
                    }
                }
                spec.insert("audiences".into(), Value::Array(audiences));
                obj.insert("spec".into(), Value::Object(spec));
            }
        }
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            // `kubectl auth can-i`: spec{resourceAttributes=1{namespace=1, verb=2, group=3,
            // version=4, resource=5, subresource=6, name=7}, nonResourceAttributes=2{path=1,
            // verb=2}}.
            for (f, w) in &flds {
                if *f != 2 {
                    continue;
                }
                let mut spec = Map::new();
                for (sf, sw) in fields(bytes(w)?)? {
                    let (key, names): (&str, &[&str]) = match sf {
                        1 => (
                            "resourceAttributes",
                            &[
                                "namespace",
                                "verb",
                                "group",
                                "version",
                                "resource",
                                "subresource",
                                "name",
                            ],
                        ),
                        2 => ("nonResourceAttributes", &["path", "verb"]),
                        _ => continue,
                    };
                    let mut attrs = Map::new();
                    for (af, aw) in fields(bytes(&sw)?)? {
                        let Some(name) = usize::try_from(af)
                            .ok()
                            .and_then(|i| i.checked_sub(1))
                            .and_then(|i| names.get(i))
                        else {
                            continue;
                        };
                        if let Wire::Bytes(_) = aw {
                            attrs.insert((*name).into(), json!(string(&aw)?));
                        }
                    }
                    spec.insert(key.into(), Value::Object(attrs));
                }
                obj.insert("spec".into(), Value::Object(spec));
            }
        }
        (av, k) => {
            let Some(schema) = schema::top_level(av, k) else {
                return Err(ApiError::unsupported_media_type(&format!(
                    "application/vnd.kubernetes.protobuf for {kind} (only {}; send JSON, e.g. kubectl apply -f)",
                    schema::SUPPORTED
                )));
            };
            let decoded = schema::message(raw, schema, kind.as_str())?;
            if let Value::Object(fields) = decoded {
                obj.extend(fields);
            }
        }
    }
    Ok(Value::Object(obj))
}

/// Table-driven decoding for the kinds kubectl's typed commands send beyond the hand-written
/// ones above (`kubectl create role|clusterrole|rolebinding|clusterrolebinding|deployment|job`).
/// Each message lists its fields (number, JSON name, type) from upstream's
/// `generated.proto`; a field the table does not know is refused (415 naming it) rather
/// than dropped, so nothing a client sent is silently lost.
mod schema {
    use super::{Wire, bad, bytes, fields, string};
    use crate::status::ApiError;
    use serde_json::{Map, Value, json};

    /// Kinds decoded by these tables (and the hand-written ones), for the 415 message.
    pub(super) const SUPPORTED: &str = "Namespace, ConfigMap, Secret, ServiceAccount, TokenRequest, SelfSubjectAccessReview, Role, ClusterRole, RoleBinding, ClusterRoleBinding, Deployment, Job, PriorityClass, ResourceQuota, Service, PodDisruptionBudget";

    /// Go's generated marshallers write every non-pointer field, zero or not (empty
    /// strings, `0`, `false`, empty structs), where JSON would omit them; pointer fields
    /// appear only when set. The types below say which zero values mean "absent".
    #[derive(Clone, Copy)]
    pub(super) enum Ty {
        /// A string; empty means absent.
        Str,
        /// A pointer or required integer: always kept.
        Int,
        /// A non-pointer integer: `0` means absent.
        Num,
        /// A pointer boolean: always kept.
        Bool,
        /// A non-pointer boolean: `false` means absent.
        Flag,
        /// A non-pointer `IntOrString`: `0` means absent.
        IntOrStrValue,
        /// `map<string, string>`.
        StrMap,
        /// `map<string, Quantity>` (resource lists).
        QuantityMap,
        /// `IntOrString`.
        IntOrStr,
        /// A field the server sets or ignores on create (timestamps, status).
        Ignore,
        Msg(&'static [Field]),
    }

    /// One field: number, JSON name, type, repeated.
    pub(super) type Field = (u64, &'static str, Ty, bool);

    const LABEL_SELECTOR_REQUIREMENT: &[Field] = &[
        (1, "key", Ty::Str, false),
        (2, "operator", Ty::Str, false),
        (3, "values", Ty::Str, true),
    ];
    const LABEL_SELECTOR: &[Field] = &[
        (1, "matchLabels", Ty::StrMap, false),
        (
            2,
            "matchExpressions",
            Ty::Msg(LABEL_SELECTOR_REQUIREMENT),
            true,
        ),
    ];
    const OWNER_REFERENCE: &[Field] = &[
        (1, "kind", Ty::Str, false),
        (3, "name", Ty::Str, false),
        (4, "uid", Ty::Str, false),
        (5, "apiVersion", Ty::Str, false),
        (6, "controller", Ty::Bool, false),
        (7, "blockOwnerDeletion", Ty::Bool, false),
    ];
    const OBJECT_META: &[Field] = &[
        (1, "name", Ty::Str, false),
        (2, "generateName", Ty::Str, false),
        (3, "namespace", Ty::Str, false),
        (4, "selfLink", Ty::Ignore, false),
        (5, "uid", Ty::Str, false),
        (6, "resourceVersion", Ty::Str, false),
        (7, "generation", Ty::Num, false),
        (8, "creationTimestamp", Ty::Ignore, false),
        (9, "deletionTimestamp", Ty::Ignore, false),
        (10, "deletionGracePeriodSeconds", Ty::Int, false),
        (11, "labels", Ty::StrMap, false),
        (12, "annotations", Ty::StrMap, false),
        (13, "ownerReferences", Ty::Msg(OWNER_REFERENCE), true),
        (14, "finalizers", Ty::Str, true),
        (17, "managedFields", Ty::Ignore, true),
    ];
    const POLICY_RULE: &[Field] = &[
        (1, "verbs", Ty::Str, true),
        (2, "apiGroups", Ty::Str, true),
        (3, "resources", Ty::Str, true),
        (4, "resourceNames", Ty::Str, true),
        (5, "nonResourceURLs", Ty::Str, true),
    ];
    const AGGREGATION_RULE: &[Field] =
        &[(1, "clusterRoleSelectors", Ty::Msg(LABEL_SELECTOR), true)];
    const SUBJECT: &[Field] = &[
        (1, "kind", Ty::Str, false),
        (2, "apiGroup", Ty::Str, false),
        (3, "name", Ty::Str, false),
        (4, "namespace", Ty::Str, false),
    ];
    const ROLE_REF: &[Field] = &[
        (1, "apiGroup", Ty::Str, false),
        (2, "kind", Ty::Str, false),
        (3, "name", Ty::Str, false),
    ];
    const ROLE: &[Field] = &[
        (1, "metadata", Ty::Msg(OBJECT_META), false),
        (2, "rules", Ty::Msg(POLICY_RULE), true),
    ];
    const CLUSTER_ROLE: &[Field] = &[
        (1, "metadata", Ty::Msg(OBJECT_META), false),
        (2, "rules", Ty::Msg(POLICY_RULE), true),
        (3, "aggregationRule", Ty::Msg(AGGREGATION_RULE), false),
    ];
    const ROLE_BINDING: &[Field] = &[
        (1, "metadata", Ty::Msg(OBJECT_META), false),
        (2, "subjects", Ty::Msg(SUBJECT), true),
        (3, "roleRef", Ty::Msg(ROLE_REF), false),
    ];
    const CONTAINER_PORT: &[Field] = &[
        (1, "name", Ty::Str, false),
        (2, "hostPort", Ty::Num, false),
        (3, "containerPort", Ty::Num, false),
        (4, "protocol", Ty::Str, false),
        (5, "hostIP", Ty::Str, false),
    ];
    const ENV_VAR: &[Field] = &[(1, "name", Ty::Str, false), (2, "value", Ty::Str, false)];
    const RESOURCE_REQUIREMENTS: &[Field] = &[
        (1, "limits", Ty::QuantityMap, false),
        (2, "requests", Ty::QuantityMap, false),
    ];
    const CONTAINER: &[Field] = &[
        (1, "name", Ty::Str, false),
        (2, "image", Ty::Str, false),
        (3, "command", Ty::Str, true),
        (4, "args", Ty::Str, true),
        (5, "workingDir", Ty::Str, false),
        (6, "ports", Ty::Msg(CONTAINER_PORT), true),
        (7, "env", Ty::Msg(ENV_VAR), true),
        (8, "resources", Ty::Msg(RESOURCE_REQUIREMENTS), false),
        (13, "terminationMessagePath", Ty::Str, false),
        (14, "imagePullPolicy", Ty::Str, false),
        (16, "stdin", Ty::Flag, false),
        (17, "stdinOnce", Ty::Flag, false),
        (18, "tty", Ty::Flag, false),
        (20, "terminationMessagePolicy", Ty::Str, false),
    ];
    const POD_SPEC: &[Field] = &[
        (2, "containers", Ty::Msg(CONTAINER), true),
        (3, "restartPolicy", Ty::Str, false),
        (4, "terminationGracePeriodSeconds", Ty::Int, false),
        (5, "activeDeadlineSeconds", Ty::Int, false),
        (6, "dnsPolicy", Ty::Str, false),
        (7, "nodeSelector", Ty::StrMap, false),
        (8, "serviceAccountName", Ty::Str, false),
        (10, "nodeName", Ty::Str, false),
        (19, "schedulerName", Ty::Str, false),
        (20, "initContainers", Ty::Msg(CONTAINER), true),
    ];
    const POD_TEMPLATE_SPEC: &[Field] = &[
        (1, "metadata", Ty::Msg(OBJECT_META), false),
        (2, "spec", Ty::Msg(POD_SPEC), false),
    ];
    const ROLLING_UPDATE_DEPLOYMENT: &[Field] = &[
        (1, "maxUnavailable", Ty::IntOrStr, false),
        (2, "maxSurge", Ty::IntOrStr, false),
    ];
    const DEPLOYMENT_STRATEGY: &[Field] = &[
        (1, "type", Ty::Str, false),
        (
            2,
            "rollingUpdate",
            Ty::Msg(ROLLING_UPDATE_DEPLOYMENT),
            false,
        ),
    ];
    const DEPLOYMENT_SPEC: &[Field] = &[
        (1, "replicas", Ty::Int, false),
        (2, "selector", Ty::Msg(LABEL_SELECTOR), false),
        (3, "template", Ty::Msg(POD_TEMPLATE_SPEC), false),
        (4, "strategy", Ty::Msg(DEPLOYMENT_STRATEGY), false),
        (5, "minReadySeconds", Ty::Num, false),
        (6, "revisionHistoryLimit", Ty::Int, false),
        (7, "paused", Ty::Flag, false),
        (9, "progressDeadlineSeconds", Ty::Int, false),
    ];
    const DEPLOYMENT: &[Field] = &[
        (1, "metadata", Ty::Msg(OBJECT_META), false),
        (2, "spec", Ty::Msg(DEPLOYMENT_SPEC), false),
        (3, "status", Ty::Ignore, false),
    ];
    const JOB_SPEC: &[Field] = &[
        (1, "parallelism", Ty::Int, false),
        (2, "completions", Ty::Int, false),
        (3, "activeDeadlineSeconds", Ty::Int, false),
        (4, "selector", Ty::Msg(LABEL_SELECTOR), false),
        (5, "manualSelector", Ty::Bool, false),
        (6, "template", Ty::Msg(POD_TEMPLATE_SPEC), false),
        (7, "backoffLimit", Ty::Int, false),
        (8, "ttlSecondsAfterFinished", Ty::Int, false),
        (9, "completionMode", Ty::Str, false),
        (10, "suspend", Ty::Bool, false),
    ];
    const JOB: &[Field] = &[
        (1, "metadata", Ty::Msg(OBJECT_META), false),
        (2, "spec", Ty::Msg(JOB_SPEC), false),
        (3, "status", Ty::Ignore, false),
    ];

    const PRIORITY_CLASS: &[Field] = &[
        (1, "metadata", Ty::Msg(OBJECT_META), false),
        (2, "value", Ty::Int, false),
        (3, "globalDefault", Ty::Flag, false),
        (4, "description", Ty::Str, false),
        (5, "preemptionPolicy", Ty::Str, false),
    ];
    const RESOURCE_QUOTA_SPEC: &[Field] = &[
        (1, "hard", Ty::QuantityMap, false),
        (2, "scopes", Ty::Str, true),
    ];
    const RESOURCE_QUOTA: &[Field] = &[
        (1, "metadata", Ty::Msg(OBJECT_META), false),
        (2, "spec", Ty::Msg(RESOURCE_QUOTA_SPEC), false),
        (3, "status", Ty::Ignore, false),
    ];
    const SERVICE_PORT: &[Field] = &[
        (1, "name", Ty::Str, false),
        (2, "protocol", Ty::Str, false),
        (3, "port", Ty::Num, false),
        (4, "targetPort", Ty::IntOrStrValue, false),
        (5, "nodePort", Ty::Num, false),
        (6, "appProtocol", Ty::Str, false),
    ];
    const SERVICE_SPEC: &[Field] = &[
        (1, "ports", Ty::Msg(SERVICE_PORT), true),
        (2, "selector", Ty::StrMap, false),
        (3, "clusterIP", Ty::Str, false),
        (4, "type", Ty::Str, false),
        (5, "externalIPs", Ty::Str, true),
        (7, "sessionAffinity", Ty::Str, false),
        (11, "externalName", Ty::Str, false),
    ];
    const SERVICE: &[Field] = &[
        (1, "metadata", Ty::Msg(OBJECT_META), false),
        (2, "spec", Ty::Msg(SERVICE_SPEC), false),
        (3, "status", Ty::Ignore, false),
    ];
    const PDB_SPEC: &[Field] = &[
        (1, "minAvailable", Ty::IntOrStr, false),
        (2, "selector", Ty::Msg(LABEL_SELECTOR), false),
        (3, "maxUnavailable", Ty::IntOrStr, false),
        (4, "unhealthyPodEvictionPolicy", Ty::Str, false),
    ];
    const PDB: &[Field] = &[
        (1, "metadata", Ty::Msg(OBJECT_META), false),
        (2, "spec", Ty::Msg(PDB_SPEC), false),
        (3, "status", Ty::Ignore, false),
    ];

    /// The table of a top-level kind.
    pub(super) fn top_level(api_version: &str, kind: &str) -> Option<&'static [Field]> {
        Some(match (api_version, kind) {
            ("rbac.authorization.k8s.io/v1", "Role") => ROLE,
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => CLUSTER_ROLE,
            ("rbac.authorization.k8s.io/v1", "RoleBinding" | "ClusterRoleBinding") => ROLE_BINDING,
            ("apps/v1", "Deployment") => DEPLOYMENT,
            ("batch/v1", "Job") => JOB,
            ("scheduling.k8s.io/v1", "PriorityClass") => PRIORITY_CLASS,
            ("v1", "ResourceQuota") => RESOURCE_QUOTA,
            ("v1", "Service") => SERVICE,
            ("policy/v1", "PodDisruptionBudget") => PDB,
            _ => return None,
        })
    }

    fn int(w: &Wire<'_>) -> Result<i64, ApiError> {
        match w {
            // proto2 int32/int64 are two's complement varints.
            Wire::Varint(v) => Ok(*v as i64),
            _ => Err(bad("expected an integer")),
        }
    }

    /// Whether a field's value is Go's zero value (what a non-pointer field the client
    /// never set looks like): `0`, empty bytes, or a message of zero values.
    fn is_zero(w: &Wire<'_>, depth: usize) -> bool {
        match w {
            Wire::Varint(v) => *v == 0,
            Wire::Fixed => false,
            Wire::Bytes([]) => true,
            Wire::Bytes(b) => {
                depth < 8 && fields(b).is_ok_and(|fs| fs.iter().all(|(_, x)| is_zero(x, depth + 1)))
            }
        }
    }

    fn value(w: &Wire<'_>, ty: Ty, path: &str) -> Result<Option<Value>, ApiError> {
        Ok(Some(match ty {
            Ty::Str => {
                let s = string(w)?;
                if s.is_empty() {
                    return Ok(None);
                }
                json!(s)
            }
            Ty::Int => json!(int(w)?),
            Ty::Num => match int(w)? {
                0 => return Ok(None),
                n => json!(n),
            },
            Ty::Bool => json!(int(w)? != 0),
            Ty::Flag => match int(w)? {
                0 => return Ok(None),
                _ => json!(true),
            },
            Ty::Ignore => return Ok(None),
            Ty::Msg(schema) => message(bytes(w)?, schema, path)?,
            Ty::IntOrStrValue => match value(w, Ty::IntOrStr, path)? {
                Some(v) if v == json!(0) || v == json!("") => return Ok(None),
                other => return Ok(other),
            },
            Ty::IntOrStr => {
                let (mut ty, mut i, mut s) = (0, 0, String::new());
                for (f, x) in fields(bytes(w)?)? {
                    match f {
                        1 => ty = int(&x)?,
                        2 => i = int(&x)?,
                        3 => s = string(&x)?,
                        _ => {}
                    }
                }
                if ty == 1 { json!(s) } else { json!(i) }
            }
            Ty::StrMap | Ty::QuantityMap => unreachable_map(path)?,
        }))
    }

    fn unreachable_map(path: &str) -> Result<Value, ApiError> {
        Err(ApiError::internal(format!(
            "protobuf table error at {path}: map decoded as a value"
        )))
    }

    /// One `map<string, V>` entry (key = 1, value = 2).
    fn map_entry(w: &Wire<'_>, ty: Ty) -> Result<(String, Value), ApiError> {
        let (mut k, mut v) = (String::new(), json!(""));
        for (f, x) in fields(bytes(w)?)? {
            match (f, ty) {
                (1, _) => k = string(&x)?,
                (2, Ty::QuantityMap) => {
                    // resource.Quantity { string = 1 }
                    for (qf, qx) in fields(bytes(&x)?)? {
                        if qf == 1 {
                            v = json!(string(&qx)?);
                        }
                    }
                }
                (2, _) => v = json!(string(&x)?),
                _ => {}
            }
        }
        Ok((k, v))
    }

    /// Decodes one message by its table; `path` names it in errors.
    pub(super) fn message(buf: &[u8], schema: &[Field], path: &str) -> Result<Value, ApiError> {
        let mut out = Map::new();
        for (num, w) in fields(buf)? {
            let Some(&(_, name, ty, repeated)) = schema.iter().find(|f| f.0 == num) else {
                if is_zero(&w, 0) {
                    // A non-pointer field the client left at its zero value.
                    continue;
                }
                return Err(ApiError::unsupported_media_type(&format!(
                    "application/vnd.kubernetes.protobuf with field {num} of {path} (not decoded by this server; send JSON, e.g. kubectl apply -f)"
                )));
            };
            let here = format!("{path}.{name}");
            if let Ty::StrMap | Ty::QuantityMap = ty {
                let (k, v) = map_entry(&w, ty)?;
                let m = out.entry(name).or_insert_with(|| json!({}));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
            // An element of a list is never "absent": `apiGroups: [""]` is the core group.
            let v = match ty {
                Ty::Str if repeated => Some(json!(string(&w)?)),
                _ => value(&w, ty, &here)?,
            };
            let Some(v) = v else {
                continue;
            };
            if repeated {
                let list = out.entry(name).or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(v);
                }
            } else {
                out.insert(name.to_string(), v);
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_configmap_like_kubectl_sends() {
        let meta = [
            field(1, b"cfg"),
            field(11, &[field(1, b"app"), field(2, b"web")].concat()),
        ]
        .concat();
        let entry = [field(1, b"k"), field(2, b"v")].concat();
        let raw = [field(1, &meta), field(2, &entry)].concat();
        let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        let v = decode(&body).expect("decodes");
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"app": "web"}}, "data": {"k": "v"}})
        );
        assert_eq!(decode(b"nope").expect_err("no magic").code, 400);
        let pod = [
            b"k8s\0".to_vec(),
            field(1, &[field(1, b"v1"), field(2, b"Pod")].concat()),
        ]
        .concat();
        assert_eq!(decode(&pod).expect_err("unsupported").code, 415);
    }

    fn varint_field(n: u64, v: u8) -> Vec<u8> {
        vec![(n << 3) as u8, v]
    }

    fn envelope(api_version: &[u8], kind: &[u8], raw: &[u8]) -> Vec<u8> {
        let type_meta = [field(1, api_version), field(2, kind)].concat();
        [b"k8s\0".to_vec(), field(1, &type_meta), field(2, raw)].concat()
    }

    #[test]
    fn decodes_a_role_and_a_deployment_from_tables() {
        let rule = [field(1, b"get"), field(2, b""), field(3, b"pods")].concat();
        let raw = [field(1, &field(1, b"r1")), field(2, &rule)].concat();
        let v = decode(&envelope(b"rbac.authorization.k8s.io/v1", b"Role", &raw)).expect("role");
        assert_eq!(
            v,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r1"},
                   "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]})
        );
        let container = [field(1, b"web"), field(2, b"nginx"), field(8, b"")].concat();
        let pod_spec = field(2, &container);
        let labels = field(11, &[field(1, b"app"), field(2, b"d1")].concat());
        let template = [
            field(1, &[labels.clone(), field(8, b"")].concat()),
            field(2, &pod_spec),
        ]
        .concat();
        let selector = field(1, &[field(1, b"app"), field(2, b"d1")].concat());
        let spec = [
            varint_field(1, 2),
            field(2, &selector),
            field(3, &template),
            field(4, b""),
        ]
        .concat();
        let raw = [field(1, &field(1, b"d1")), field(2, &spec), field(3, b"")].concat();
        let v = decode(&envelope(b"apps/v1", b"Deployment", &raw)).expect("deployment");
        assert_eq!(v["spec"]["replicas"], 2);
        assert_eq!(v["spec"]["selector"]["matchLabels"]["app"], "d1");
        assert_eq!(
            v["spec"]["template"]["metadata"],
            json!({"labels": {"app": "d1"}})
        );
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "nginx", "resources": {}}])
        );
        assert!(v.get("status").is_none());
        // A field the table does not know is refused, not dropped.
        let raw = [field(1, &field(1, b"d2")), field(2, &field(15, b"x"))].concat();
        let e = decode(&envelope(b"apps/v1", b"Deployment", &raw)).expect_err("unknown field");
        assert_eq!(e.code, 415);
        assert!(
            e.message.contains("field 15 of Deployment.spec"),
            "{}",
            e.message
        );
    }
}
