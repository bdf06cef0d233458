//! CustomResourceDefinitions: what upstream's apiextensions-apiserver does for them.
//!
//! * A CRD written through the API is validated (names, scope, exactly one storage
//!   version, a schema per version) and defaulted ([`admit_definition`]).
//! * After every write to `customresourcedefinitions`, [`reconcile`] makes the resource
//!   registry match the stored CRDs: each served version becomes a resource in
//!   [`RESOURCES`] (discovery, routing, the generic storage, tables), the CRD gets its
//!   `NamesAccepted` and `Established` conditions, `acceptedNames`, `storedVersions` and
//!   the cleanup finalizer. A CRD being deleted stops being served, its custom objects are
//!   removed, and the finalizer is dropped so the deletion completes.
//! * Custom objects are pruned, defaulted and validated against their version's
//!   `openAPIV3Schema` ([`admit_object`]): unknown fields are dropped (an error under
//!   `fieldValidation=Strict`) unless `x-kubernetes-preserve-unknown-fields`, and type,
//!   `required`, `enum`, bounds and `pattern` violations are a 422 with upstream's causes.
//! * `additionalPrinterColumns` become the columns of `kubectl get` tables
//!   ([`table_layout`]) and the `scale` subresource maps to the declared paths.
//!
//! * Served versions other than the storage version are converted with upstream's
//!   strategy `None` ([`to_served_version`], [`to_storage_version`]): the objects are the
//!   storage version's, with `apiVersion` rewritten on the way out and in.
//! * Deleting a CRD deletes its objects the way upstream's finalizer controller does:
//!   objects with finalizers get a `deletionTimestamp` and stay (still served, creates
//!   refused) until their finalizers are cleared; then the CRD goes.
//!
//! * `selectableFields` may be named in field selectors (besides `metadata.name` and
//!   `metadata.namespace`).
//!
//! Not implemented: conversion webhooks, CEL validation rules, status subresource
//! `observedGeneration` rules beyond the generic status split.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use jsonpath_rust::JsonPath;
use serde_json::{Value, json};

use crate::admission::FieldValidation;
use crate::resources::{CustomInfo, RESOURCES, ResourceId, ids};
use crate::status::{ApiError, Cause};
use crate::store::{Change, Store, now_rfc3339};

/// The finalizer that holds a deleted CRD until its custom objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// How a served custom resource version behaves (the parts of its CRD the server needs
/// per request).
#[derive(Debug)]
pub struct CustomVersion {
    /// `metadata.name` of the CRD that defines it.
    pub crd_name: String,
    /// The id objects are stored under (the storage version's).
    pub storage: ResourceId,
    /// `apiVersion` of the stored objects (`group/storage-version`).
    pub storage_api_version: String,
    /// The version's `openAPIV3Schema`.
    pub schema: Option<Value>,
    /// The schema's `pattern`s, compiled once when the CRD is established.
    pub patterns: Patterns,
    /// `additionalPrinterColumns` (defaulted to Age when the CRD declares none).
    pub columns: Vec<PrinterColumn>,
    /// The `scale` subresource's paths, when declared.
    pub scale: Option<ScalePaths>,
    /// The CRD is being deleted: its objects are still served (so their finalizers can
    /// be cleared) but no new ones are created, and every write to them re-runs
    /// [`reconcile`] so the deletion finishes once the last one is gone.
    pub terminating: bool,
}

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type (`string`, `integer`, `number`, `boolean`, `date`).
    pub ty: String,
    /// OpenAPI format.
    pub format: String,
    /// Description.
    pub description: String,
    /// 0 shows by default; higher only with `-o wide`.
    pub priority: i64,
    /// Simple JSONPath (`.spec.size`) evaluated against each object.
    pub json_path: String,
}

/// The `scale` subresource's mapping onto a custom object.
#[derive(Debug, Clone)]
pub struct ScalePaths {
    /// `specReplicasPath` (`.spec.replicas`).
    pub spec_replicas: String,
    /// `statusReplicasPath` (`.status.replicas`).
    pub status_replicas: String,
    /// `labelSelectorPath`, if any.
    pub label_selector: Option<String>,
}

/// The compiled `pattern`s of a schema, by pattern text: validation looks them up instead
/// of compiling a regex per field per write.
#[derive(Debug, Clone, Default)]
pub struct Patterns(HashMap<String, regex::Regex>);

impl Patterns {
    /// Compiles every `pattern` in `schema`; the causes (at `path`, the schema's field
    /// path in the CRD) of the ones that do not compile, as upstream refuses such a CRD.
    pub fn compile(schema: &Value, path: &str) -> Result<Self, Vec<Cause>> {
        fn walk(
            s: &Value,
            path: &str,
            out: &mut HashMap<String, regex::Regex>,
            causes: &mut Vec<Cause>,
        ) {
            let Some(obj) = s.as_object() else {
                return;
            };
            if let Some(p) = obj.get("pattern").and_then(Value::as_str)
                && !out.contains_key(p)
            {
                match regex::Regex::new(p) {
                    Ok(re) => {
                        out.insert(p.to_string(), re);
                    }
                    Err(e) => causes.push(cause(
                        "FieldValueInvalid",
                        format!("{path}.pattern"),
                        format!(
                            "Invalid value: {p:?}: must be a valid regular expression, but isn't: {}",
                            e.to_string().lines().last().unwrap_or("")
                        ),
                    )),
                }
            }
            for (k, sub) in obj
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                walk(sub, &format!("{path}.properties[{k}]"), out, causes);
            }
            for key in ["items", "additionalProperties", "not"] {
                if let Some(sub) = obj.get(key) {
                    walk(sub, &format!("{path}.{key}"), out, causes);
                }
            }
            for key in ["allOf", "anyOf", "oneOf"] {
                for (i, sub) in obj
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    walk(sub, &format!("{path}.{key}[{i}]"), out, causes);
                }
            }
        }
        let mut out = HashMap::new();
        let mut causes = Vec::new();
        walk(schema, path, &mut out, &mut causes);
        if causes.is_empty() {
            Ok(Self(out))
        } else {
            Err(causes)
        }
    }

    fn get(&self, pattern: &str) -> Option<&regex::Regex> {
        self.0.get(pattern)
    }
}

/// One version of a parsed CRD.
#[derive(Debug, Clone)]
struct VersionDef {
    name: String,
    served: bool,
    storage: bool,
    schema: Option<Value>,
    patterns: Patterns,
    /// `selectableFields` as field selector paths (`.spec.color` → `spec.color`).
    selectable_fields: Vec<String>,
    status: bool,
    scale: Option<ScalePaths>,
    columns: Vec<PrinterColumn>,
}

/// A parsed CRD spec.
#[derive(Debug, Clone)]
struct Definition {
    name: String,
    group: String,
    plural: String,
    singular: String,
    kind: String,
    list_kind: String,
    short_names: Vec<String>,
    categories: Vec<String>,
    namespaced: bool,
    versions: Vec<VersionDef>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn cause(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> Cause {
    Cause {
        reason,
        message: message.into(),
        field: field.into(),
    }
}

/// `Invalid value: <v>` as Go's `%#v` renders JSON values in field errors.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// Strips the `{…}` a kubectl-style JSONPath may be wrapped in.
fn bare_path(p: &str) -> &str {
    let p = p.trim();
    p.strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(p)
}

fn parse_scale(v: &Value) -> Option<ScalePaths> {
    let s = v.as_object()?;
    Some(ScalePaths {
        spec_replicas: s.get("specReplicasPath")?.as_str()?.to_string(),
        status_replicas: s.get("statusReplicasPath")?.as_str()?.to_string(),
        label_selector: s
            .get("labelSelectorPath")
            .and_then(Value::as_str)
            .map(String::from),
    })
}

fn parse_columns(v: &Value) -> Vec<PrinterColumn> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|c| PrinterColumn {
            name: c["name"].as_str().unwrap_or("").to_string(),
            ty: c["type"].as_str().unwrap_or("string").to_string(),
            format: c["format"].as_str().unwrap_or("").to_string(),
            description: c["description"].as_str().unwrap_or("").to_string(),
            priority: c["priority"].as_i64().unwrap_or(0),
            json_path: c["jsonPath"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

/// Parses a CRD, or returns upstream's validation causes.
fn parse(crd: &Value) -> Result<Definition, Vec<Cause>> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let name = s(&crd["metadata"]["name"]);
    let group = s(&spec["group"]);
    let plural = s(&names["plural"]);
    let kind = s(&names["kind"]);
    let mut causes = Vec::new();
    if group.is_empty() {
        causes.push(cause("FieldValueRequired", "spec.group", "Required value"));
    } else if !group.contains('.') {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.group",
            format!("Invalid value: {group:?}: should be a domain with at least one dot"),
        ));
    }
    if plural.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            "spec.names.plural",
            "Required value",
        ));
    } else if plural != plural.to_lowercase() {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.names.plural",
            format!("Invalid value: {plural:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
        ));
    }
    if kind.is_empty() {
        causes.push(cause(
            "FieldValueRequired",
            "spec.names.kind",
            "Required value",
        ));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let namespaced = match spec["scope"].as_str() {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            causes.push(cause(
                "FieldValueNotSupported",
                "spec.scope",
                format!(
                    "Unsupported value: {:?}: supported values: \"Cluster\", \"Namespaced\"",
                    other.unwrap_or("")
                ),
            ));
            true
        }
    };
    let mut versions = Vec::new();
    for (i, v) in spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let vname = s(&v["name"]);
        if vname.is_empty() {
            causes.push(cause(
                "FieldValueRequired",
                format!("spec.versions[{i}].name"),
                "Required value",
            ));
        }
        let schema = v["schema"]["openAPIV3Schema"].clone();
        if !schema.is_object() {
            causes.push(cause(
                "FieldValueRequired",
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "Required value: schemas are required",
            ));
        }
        let patterns = match Patterns::compile(
            &schema,
            &format!("spec.versions[{i}].schema.openAPIV3Schema"),
        ) {
            Ok(p) => p,
            Err(c) => {
                causes.extend(c);
                Patterns::default()
            }
        };
        let mut selectable_fields = Vec::new();
        let selectable = v["selectableFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if selectable.len() > 8 {
            causes.push(cause(
                "FieldValueTooMany",
                format!("spec.versions[{i}].selectableFields"),
                format!("Too many: {}: must have at most 8 items", selectable.len()),
            ));
        }
        for (j, f) in selectable.iter().enumerate() {
            let path = f["jsonPath"].as_str().unwrap_or("");
            let simple = path.strip_prefix('.').filter(|p| {
                !p.is_empty()
                    && p.split('.').all(|seg| {
                        !seg.is_empty()
                            && seg
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    })
            });
            match simple {
                Some(p) if p.starts_with("metadata.") => causes.push(cause(
                    "FieldValueInvalid",
                    format!("spec.versions[{i}].selectableFields[{j}].jsonPath"),
                    format!("Invalid value: {path:?}: must not select fields of metadata"),
                )),
                Some(p) => selectable_fields.push(p.to_string()),
                None => causes.push(cause(
                    "FieldValueInvalid",
                    format!("spec.versions[{i}].selectableFields[{j}].jsonPath"),
                    format!("Invalid value: {path:?}: must be a simple path to a field (e.g. .spec.color)"),
                )),
            }
        }
        let subs = &v["subresources"];
        versions.push(VersionDef {
            name: vname,
            served: v["served"].as_bool().unwrap_or(false),
            storage: v["storage"].as_bool().unwrap_or(false),
            schema: schema.is_object().then_some(schema),
            patterns,
            selectable_fields,
            status: subs.get("status").is_some_and(Value::is_object),
            scale: parse_scale(&subs["scale"]),
            columns: parse_columns(&v["additionalPrinterColumns"]),
        });
    }
    if versions.is_empty() {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.versions",
            "Invalid value: null: must have exactly one version marked as storage version",
        ));
    } else if versions.iter().filter(|v| v.storage).count() != 1 {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.versions",
            "Invalid value: []apiextensions.CustomResourceDefinitionVersion{...}: must have exactly one version marked as storage version",
        ));
    }
    if !causes.is_empty() {
        return Err(causes);
    }
    let singular = names["singular"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map_or_else(|| kind.to_lowercase(), String::from);
    let list_kind = names["listKind"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map_or_else(|| format!("{kind}List"), String::from);
    Ok(Definition {
        name,
        group,
        plural,
        singular,
        kind,
        list_kind,
        short_names: strings(&names["shortNames"]),
        categories: strings(&names["categories"]),
        namespaced,
        versions,
    })
}

/// Validates and defaults a CRD on its way into storage (create, update, patch).
pub fn admit_definition(crd: &mut Value) -> Result<(), ApiError> {
    let name = crd["metadata"]["name"].as_str().unwrap_or("").to_string();
    let def = parse(crd).map_err(|causes| {
        ApiError::invalid(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            &name,
            causes,
        )
    })?;
    // What upstream's defaulting fills in.
    let names = &mut crd["spec"]["names"];
    names["singular"] = json!(def.singular);
    names["listKind"] = json!(def.list_kind);
    if crd["spec"]["conversion"].is_null() {
        crd["spec"]["conversion"] = json!({ "strategy": "None" });
    }
    Ok(())
}

/// The 415 upstream answers a strategic merge patch of a custom object with (custom
/// resources have no patch strategies; kubectl's `apply` sends merge patches instead).
pub fn strategic_merge_unsupported() -> ApiError {
    let mut e = ApiError::unsupported_media_type("application/strategic-merge-patch+json");
    e.message = "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into();
    e
}

/// Prunes, defaults and validates a custom object against its version's schema;
/// returns `None` for resources that are not custom (or the CRD resource itself, whose
/// checks are [`admit_definition`]).
pub fn admit(
    res: ResourceId,
    obj: &mut Value,
    fv: FieldValidation,
    warnings: &mut Vec<String>,
) -> Option<Result<(), ApiError>> {
    if res == ids::CRDS {
        return Some(admit_definition(obj));
    }
    let custom = RESOURCES.custom(res)?;
    Some(admit_object(res, &custom, obj, fv, warnings))
}

/// See [`admit`].
fn admit_object(
    res: ResourceId,
    custom: &CustomVersion,
    obj: &mut Value,
    fv: FieldValidation,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let info = &RESOURCES[res];
    let Some(schema) = &custom.schema else {
        return Ok(());
    };
    let mut unknown = Vec::new();
    prune(obj, schema, "", &mut unknown, true);
    if !unknown.is_empty() {
        let msgs: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        match fv {
            FieldValidation::Strict => {
                return Err(ApiError::bad_request(format!(
                    "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
                    msgs.join(", "),
                    kind = info.kind,
                    v = info.version,
                )));
            }
            FieldValidation::Warn => warnings.extend(msgs),
            FieldValidation::Ignore => {}
        }
    }
    apply_defaults(obj, schema);
    let mut causes = Vec::new();
    validate_value(obj, schema, &custom.patterns, "", &mut causes, true);
    if causes.is_empty() {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    Err(ApiError::invalid(info.kind, info.group, name, causes))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true)
}

/// Drops fields the structural schema does not declare (recording their paths) and
/// `null`s of fields that are not `nullable`.
fn prune(value: &mut Value, schema: &Value, path: &str, unknown: &mut Vec<String>, root: bool) {
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let embedded = root || schema["x-kubernetes-embedded-resource"].as_bool() == Some(true);
            let keep_unknown =
                preserves_unknown(schema) || schema["additionalProperties"].as_bool() == Some(true);
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if embedded
                    && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")
                    && (root || props.is_none_or(|p| !p.contains_key(&k)))
                {
                    continue;
                }
                let sub = props.and_then(|p| p.get(&k)).or(additional);
                match sub {
                    Some(sub) => {
                        let nullable = sub["nullable"].as_bool() == Some(true);
                        if map.get(&k).is_some_and(Value::is_null) && !nullable {
                            map.remove(&k);
                            continue;
                        }
                        if let Some(v) = map.get_mut(&k) {
                            prune(v, sub, &join(path, &k), unknown, false);
                        }
                    }
                    None if keep_unknown => {}
                    None => {
                        map.remove(&k);
                        unknown.push(join(path, &k));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
                for (i, v) in items.iter_mut().enumerate() {
                    prune(v, item_schema, &format!("{path}[{i}]"), unknown, false);
                }
            }
        }
        _ => {}
    }
}

/// Fills in `default`s of absent properties (recursively, as upstream's structural
/// defaulting does).
fn apply_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, sub) in props {
                    if !map.contains_key(k)
                        && let Some(d) = sub.get("default")
                    {
                        map.insert(k.clone(), d.clone());
                    }
                    if let Some(v) = map.get_mut(k) {
                        apply_defaults(v, sub);
                    }
                }
            } else if let Some(add) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for v in map.values_mut() {
                    apply_defaults(v, add);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
                for v in items {
                    apply_defaults(v, item_schema);
                }
            }
        }
        _ => {}
    }
}

/// The OpenAPI type name of a JSON value, as upstream's messages spell it.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(v: &Value, schema: &Value) -> bool {
    if schema["x-kubernetes-int-or-string"].as_bool() == Some(true) {
        return matches!(type_name(v), "integer" | "string");
    }
    match schema["type"].as_str() {
        None | Some("") => true,
        Some("number") => v.is_number(),
        Some(t) => type_name(v) == t || (v.is_null() && schema["nullable"].as_bool() == Some(true)),
    }
}

/// Checks a (pruned) value against its schema, collecting field errors.
fn validate_value(
    v: &Value,
    schema: &Value,
    patterns: &Patterns,
    path: &str,
    causes: &mut Vec<Cause>,
    root: bool,
) {
    let field = if path.is_empty() { "<root>" } else { path };
    if !type_ok(v, schema) {
        let want = schema["type"].as_str().unwrap_or("");
        causes.push(cause(
            "FieldValueInvalid",
            field,
            format!(
                "Invalid value: \"{got}\": {field} in body must be of type {want}: \"{got}\"",
                got = type_name(v)
            ),
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(go_value).collect();
        causes.push(cause(
            "FieldValueNotSupported",
            field,
            format!(
                "Unsupported value: {}: supported values: {}",
                go_value(v),
                list.join(", ")
            ),
        ));
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(max) = schema["maximum"].as_f64() {
                let exclusive = schema["exclusiveMaximum"].as_bool() == Some(true);
                if x > max || (exclusive && x >= max) {
                    let rel = if exclusive {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    causes.push(cause(
                        "FieldValueInvalid",
                        field,
                        format!(
                            "Invalid value: {n}: {field} in body should be {rel} {}",
                            schema["maximum"]
                        ),
                    ));
                }
            }
            if let Some(min) = schema["minimum"].as_f64() {
                let exclusive = schema["exclusiveMinimum"].as_bool() == Some(true);
                if x < min || (exclusive && x <= min) {
                    let rel = if exclusive {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    causes.push(cause(
                        "FieldValueInvalid",
                        field,
                        format!(
                            "Invalid value: {n}: {field} in body should be {rel} {}",
                            schema["minimum"]
                        ),
                    ));
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64()
                && len > max
            {
                causes.push(cause(
                    "FieldValueTooLong",
                    field,
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && len < min
            {
                causes.push(cause(
                    "FieldValueInvalid",
                    field,
                    format!(
                        "Invalid value: {s:?}: {field} in body should be at least {min} chars long"
                    ),
                ));
            }
            if let Some(pattern) = schema["pattern"].as_str() {
                // Every pattern was compiled when the CRD was admitted (one that does not
                // compile refuses the CRD), so a miss cannot happen for a served version.
                if let Some(re) = patterns.get(pattern)
                    && !re.is_match(s)
                {
                    causes.push(cause(
                        "FieldValueInvalid",
                        field,
                        format!("Invalid value: {s:?}: {field} in body should match '{pattern}'"),
                    ));
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                causes.push(cause(
                    "FieldValueTooMany",
                    field,
                    format!("Too many: {}: must have at most {max} items", items.len()),
                ));
            }
            if let Some(min) = schema["minItems"].as_u64()
                && (items.len() as u64) < min
            {
                causes.push(cause(
                    "FieldValueInvalid",
                    field,
                    format!(
                        "Invalid value: {}: {field} in body should have at least {min} items",
                        items.len()
                    ),
                ));
            }
            if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    validate_value(
                        item,
                        item_schema,
                        patterns,
                        &format!("{path}[{i}]"),
                        causes,
                        false,
                    );
                }
            }
        }
        Value::Object(map) => {
            for req in schema["required"].as_array().into_iter().flatten() {
                if let Some(k) = req.as_str()
                    && !map.contains_key(k)
                {
                    causes.push(cause("FieldValueRequired", join(path, k), "Required value"));
                }
            }
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, val) in map {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(sub) = props.and_then(|p| p.get(k)).or(additional) {
                    validate_value(val, sub, patterns, &join(path, k), causes, false);
                }
            }
        }
        _ => {}
    }
}

/// Reads a kubectl-style JSONPath (`.spec.size`, `.status.conditions[?(@.type=="Ready")].status`)
/// from an object: the first match, if any.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let p = bare_path(path);
    let p = if p.starts_with('$') {
        p.to_string()
    } else {
        format!("${p}")
    };
    obj.query(&p).ok()?.into_iter().next()
}

/// Sets the field a simple dot path (`.spec.replicas`) names, creating objects on the
/// way; any other path is a 500, as upstream's scale subresource only accepts these.
pub fn set_simple_path(obj: &mut Value, path: &str, value: Value) -> Result<(), ApiError> {
    let p = bare_path(path).trim_start_matches('$');
    let parts: Vec<&str> = p.trim_start_matches('.').split('.').collect();
    if parts.iter().any(|s| s.is_empty() || s.contains('[')) {
        return Err(ApiError::internal(format!(
            "unsupported scale path {path:?}"
        )));
    }
    let mut cur = obj;
    for part in parts {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = &mut cur[part];
    }
    *cur = value;
    Ok(())
}

/// Renders one object's Table cells.
pub type RowRenderer = Box<dyn Fn(&Value) -> Vec<Value>>;

/// The Table columns and row renderer of a custom resource.
pub fn table_layout(custom: &CustomVersion) -> (Vec<Value>, RowRenderer) {
    let mut columns = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    })];
    for c in &custom.columns {
        columns.push(json!({
            "name": c.name, "type": c.ty, "format": c.format, "description": c.description,
            "priority": c.priority,
        }));
    }
    let cols = custom.columns.clone();
    let row = move |obj: &Value| -> Vec<Value> {
        let mut cells = vec![obj["metadata"]["name"].clone()];
        for c in &cols {
            cells.push(cell(c, json_path(obj, &c.json_path)));
        }
        cells
    };
    (columns, Box::new(row))
}

/// One printer-column cell, as upstream's table convertor renders it.
fn cell(c: &PrinterColumn, v: Option<&Value>) -> Value {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match c.ty.as_str() {
        "integer" => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map_or(Value::Null, |i| json!(i)),
        "number" => v.as_f64().map_or(Value::Null, |f| json!(f)),
        "boolean" => v.as_bool().map_or(Value::Null, |b| json!(b)),
        "date" => match v.as_str() {
            Some(s) => match s.parse::<jiff::Timestamp>() {
                Ok(t) => json!(crate::tables::human_duration(
                    (jiff::Timestamp::now() - t).get_seconds()
                )),
                Err(_) => json!("<invalid>"),
            },
            None => Value::Null,
        },
        // `string` columns print whatever the path found (text as it is, other values
        // as JSON), like kubectl's JSONPath printer.
        _ => match v {
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        },
    }
}

/// Makes the resource registry match the stored CRDs (run after every CRD write, and
/// after every write to an object of a CRD being deleted): registers served versions,
/// sets the CRD's conditions, and finishes deletions.
pub fn reconcile(store: &Store) {
    let (crds, _) = store.list(ids::CRDS, None, |_| true);
    for crd in crds
        .iter()
        .filter(|c| c["metadata"]["deletionTimestamp"].is_string())
    {
        let name = crd["metadata"]["name"].as_str().unwrap_or("");
        finish_deletion(store, name, crd);
    }
    // Finished deletions removed their CRDs; the rest (terminating ones included) serve.
    let (crds, _) = store.list(ids::CRDS, None, |_| true);
    let stored: HashSet<&str> = crds
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    for id in RESOURCES.custom_ids() {
        if RESOURCES
            .custom(id)
            .is_some_and(|c| !stored.contains(c.crd_name.as_str()))
        {
            RESOURCES.unregister(id);
        }
    }
    for crd in &crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or("");
        establish(store, name, crd);
    }
}

/// Whether `res` is a served custom resource version other than the storage one (its
/// objects are converted on the way out and in).
pub fn is_converted_version(res: ResourceId) -> bool {
    RESOURCES.custom(res).is_some_and(|c| c.storage != res)
}

/// A stored custom object as version `res` serves it, or `None` when `res` is not a
/// converted version ([`is_converted_version`]). Conversion is upstream's strategy
/// `None`: only `apiVersion` changes.
pub fn to_served_version(res: ResourceId, stored: &Value) -> Option<Value> {
    if !is_converted_version(res) {
        return None;
    }
    let mut obj = stored.clone();
    obj["apiVersion"] = json!(RESOURCES[res].api_version());
    Some(obj)
}

/// A custom object written through version `res` in its storage form (strategy `None`:
/// `apiVersion` becomes the storage version's); other objects as they are.
pub fn to_storage_version(res: ResourceId, mut obj: Value) -> Value {
    if let Some(c) = RESOURCES.custom(res)
        && c.storage != res
        && obj.is_object()
    {
        obj["apiVersion"] = json!(c.storage_api_version);
    }
    obj
}

/// The 405 upstream answers a create of an object of a CRD being deleted with; `Ok` for
/// every other resource.
pub fn check_create(res: ResourceId) -> Result<(), ApiError> {
    match RESOURCES.custom(res) {
        Some(c) if c.terminating => Err(ApiError::method_not_allowed(
            "create not allowed while custom resource definition is terminating",
        )),
        _ => Ok(()),
    }
}

/// Whether a write to `res` must be followed by [`reconcile`]: writes to CRDs, and to
/// objects of a CRD being deleted (clearing the last finalizer finishes the deletion).
pub fn write_needs_reconcile(res: ResourceId) -> bool {
    res == ids::CRDS || RESOURCES.custom(res).is_some_and(|c| c.terminating)
}

/// Deletes a deleted CRD's custom objects as upstream's finalizer controller does: objects
/// without finalizers are removed, the others get a `deletionTimestamp` and stay until
/// their finalizers are cleared. Once none is left the cleanup finalizer is dropped and
/// the CRD goes.
fn finish_deletion(store: &Store, name: &str, crd: &Value) {
    let mut remaining = 0;
    if let Ok(def) = parse(crd) {
        for v in def.versions.iter().filter(|v| v.storage) {
            let Ok(id) = RESOURCES.slot_for(&def.group, &v.name, &def.plural) else {
                continue;
            };
            let (objects, _) = store.list_objects(id, None, |_| true);
            let namespaces: BTreeSet<String> =
                objects.iter().map(|o| o.namespace().to_string()).collect();
            for ns in &namespaces {
                store.remove_where(id, ns, |o| {
                    o["metadata"]["finalizers"]
                        .as_array()
                        .is_none_or(|f| f.is_empty())
                });
            }
            let (held, _) = store.list(id, None, |_| true);
            remaining += held.len();
            let now = now_rfc3339();
            for o in held
                .iter()
                .filter(|o| !o["metadata"]["deletionTimestamp"].is_string())
            {
                let ns = o["metadata"]["namespace"].as_str().unwrap_or("");
                let oname = o["metadata"]["name"].as_str().unwrap_or("");
                let _ = store.mutate(id, ns, oname, false, |cur, _| {
                    let mut n = (**cur).clone();
                    n["metadata"]["deletionTimestamp"] = json!(now);
                    n["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                    Ok(Change::Put(n))
                });
            }
        }
    }
    if remaining > 0 {
        return;
    }
    let _ = store.mutate(ids::CRDS, "", name, false, |cur, _| {
        let mut n = (**cur).clone();
        if let Some(f) = n["metadata"]["finalizers"].as_array_mut() {
            f.retain(|x| x != CLEANUP_FINALIZER);
        }
        Ok(Change::Put(n))
    });
}

/// A CRD condition, keeping `lastTransitionTime` when the status did not change.
fn condition(cur: &Value, ty: &str, status: bool, reason: &str, message: &str) -> Value {
    let status = if status { "True" } else { "False" };
    let since = cur["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .filter(|c| c["status"] == status)
        .map_or_else(|| json!(now_rfc3339()), |c| c["lastTransitionTime"].clone());
    json!({ "type": ty, "status": status, "lastTransitionTime": since, "reason": reason, "message": message })
}

/// Serves a CRD's versions and records the outcome in its status.
fn establish(store: &Store, name: &str, crd: &Value) {
    let def = match parse(crd) {
        Ok(d) => d,
        Err(_) => return,
    };
    let terminating = crd["metadata"]["deletionTimestamp"].is_string();
    let storage_version = def
        .versions
        .iter()
        .find(|v| v.storage)
        .map(|v| v.name.clone())
        .unwrap_or_default();
    // Upstream refuses names another resource of the group already uses.
    let conflict = RESOURCES.served().find(|(id, r)| {
        r.group == def.group
            && (r.plural == def.plural || (r.kind == def.kind && !r.kind.is_empty()))
            && RESOURCES.custom(*id).is_none_or(|c| c.crd_name != def.name)
    });
    let accepted = conflict.is_none();
    let mut served_ids = Vec::new();
    let mut error = None;
    if accepted {
        // The storage version first: the others are views of its objects.
        let mut order: Vec<&VersionDef> = def.versions.iter().filter(|v| v.storage).collect();
        order.extend(def.versions.iter().filter(|v| !v.storage && v.served));
        let mut storage_id = None;
        for v in order {
            let id = match RESOURCES.slot_for(&def.group, &v.name, &def.plural) {
                Ok(id) => id,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            };
            let storage = *storage_id.get_or_insert(id);
            if !v.served {
                continue;
            }
            let mut subresources = Vec::new();
            if v.status {
                subresources.push("status");
            }
            if v.scale.is_some() {
                subresources.push("scale");
            }
            let info = CustomInfo {
                group: def.group.clone(),
                version: v.name.clone(),
                plural: def.plural.clone(),
                singular: def.singular.clone(),
                kind: def.kind.clone(),
                namespaced: def.namespaced,
                short_names: def.short_names.clone(),
                categories: def.categories.clone(),
                subresources,
                storage: v.storage,
                selectable_fields: v.selectable_fields.clone(),
            };
            let columns = if v.columns.is_empty() {
                vec![PrinterColumn {
                    name: "Age".into(),
                    ty: "date".into(),
                    format: String::new(),
                    description: String::new(),
                    priority: 0,
                    json_path: ".metadata.creationTimestamp".into(),
                }]
            } else {
                v.columns.clone()
            };
            let custom = Arc::new(CustomVersion {
                crd_name: def.name.clone(),
                storage,
                storage_api_version: format!("{}/{storage_version}", def.group),
                schema: v.schema.clone(),
                patterns: v.patterns.clone(),
                columns,
                scale: v.scale.clone(),
                terminating,
            });
            if let Err(e) = RESOURCES.register(id, &info, custom) {
                error = Some(e.to_string());
                break;
            }
            served_ids.push(id);
        }
    }
    // Versions this CRD no longer serves.
    for id in RESOURCES.custom_ids() {
        if !served_ids.contains(&id) && RESOURCES.custom(id).is_some_and(|c| c.crd_name == def.name)
        {
            RESOURCES.unregister(id);
        }
    }
    let _ = store.mutate(ids::CRDS, "", name, false, |cur, _| {
        let mut n = (**cur).clone();
        let names_cond = match conflict {
            None => condition(cur, "NamesAccepted", true, "NoConflicts", "no conflicts found"),
            Some((_, r)) => condition(
                cur,
                "NamesAccepted",
                false,
                if r.plural == def.plural { "PluralConflict" } else { "KindConflict" },
                &if r.plural == def.plural {
                    format!("\"{}\" is already in use", def.plural)
                } else {
                    format!("\"{}\" is already in use", def.kind)
                },
            ),
        };
        let established = match (&error, accepted) {
            (None, true) => condition(
                cur,
                "Established",
                true,
                "InitialNamesAccepted",
                "the initial names have been accepted",
            ),
            (Some(e), _) => condition(cur, "Established", false, "Installing", e),
            (None, false) => condition(cur, "Established", false, "NotAccepted", "not all names are accepted"),
        };
        let mut accepted_names = json!({
            "plural": def.plural, "singular": def.singular, "kind": def.kind, "listKind": def.list_kind,
        });
        if accepted {
            if !def.short_names.is_empty() {
                accepted_names["shortNames"] = json!(def.short_names);
            }
            if !def.categories.is_empty() {
                accepted_names["categories"] = json!(def.categories);
            }
        } else {
            accepted_names = json!({ "plural": "", "kind": "" });
        }
        let mut stored: Vec<Value> = cur["status"]["storedVersions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if accepted && !stored.iter().any(|s| s == storage_version.as_str()) {
            stored.push(json!(storage_version));
        }
        let mut conditions = vec![names_cond, established];
        if terminating {
            conditions.push(condition(
                cur,
                "Terminating",
                true,
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            ));
        }
        n["status"] = json!({
            "conditions": conditions,
            "acceptedNames": accepted_names,
            "storedVersions": stored,
        });
        if accepted && !terminating {
            let finalizers = n["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
            if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
                let mut f = finalizers;
                f.push(json!(CLEANUP_FINALIZER));
                n["metadata"]["finalizers"] = json!(f);
            }
        }
        Ok(Change::Put(n))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["size"],
                    "properties": {
                        "size": { "type": "integer", "minimum": 1, "maximum": 10 },
                        "color": { "type": "string", "enum": ["red", "green"], "default": "red" },
                        "name": { "type": "string", "pattern": "^[a-z]+$" },
                        "tags": { "type": "array", "items": { "type": "string" }, "maxItems": 2 },
                        "extra": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
                        "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                    },
                },
                "status": { "type": "object", "properties": { "ready": { "type": "boolean" } } },
            },
        })
    }

    fn patterns() -> Patterns {
        Patterns::compile(&schema(), "").expect("the test schema's patterns compile")
    }

    #[test]
    fn pruning_drops_undeclared_fields_and_keeps_preserved_ones() {
        let mut obj = json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "w" },
            "spec": { "size": 2, "bogus": 1, "extra": { "anything": [1] }, "labels": { "a": "b" },
                      "tags": ["x", { "no": 1 }] },
            "top": true,
        });
        let mut unknown = Vec::new();
        prune(&mut obj, &schema(), "", &mut unknown, true);
        // `tags[1]` is not a string (validation reports that); its fields are undeclared.
        assert_eq!(unknown, ["spec.bogus", "spec.tags[1].no", "top"]);
        assert_eq!(obj["spec"]["extra"]["anything"], json!([1]));
        assert_eq!(obj["metadata"]["name"], "w");
        assert_eq!(obj["spec"]["labels"]["a"], "b");
        apply_defaults(&mut obj, &schema());
        assert_eq!(obj["spec"]["color"], "red");
    }

    #[test]
    fn validation_reports_upstream_causes() {
        let obj = json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "w" },
            "spec": { "size": "big", "color": "purple", "name": "A1", "tags": ["a", "b", "c"] },
            "status": { "ready": "yes" },
        });
        let mut causes = Vec::new();
        validate_value(&obj, &schema(), &patterns(), "", &mut causes, true);
        let msgs: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert!(msgs.contains(&"spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\"".to_string()), "{msgs:?}");
        assert!(
            msgs.contains(
                &"spec.color: Unsupported value: \"purple\": supported values: \"red\", \"green\""
                    .to_string()
            ),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(
                &"spec.name: Invalid value: \"A1\": spec.name in body should match '^[a-z]+$'"
                    .to_string()
            ),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(&"spec.tags: Too many: 3: must have at most 2 items".to_string()),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("status.ready: Invalid value: \"string\"")),
            "{msgs:?}"
        );
        let mut causes = Vec::new();
        validate_value(
            &json!({ "spec": { "size": 11 } }),
            &schema(),
            &patterns(),
            "",
            &mut causes,
            true,
        );
        assert_eq!(causes.len(), 1);
        assert_eq!(
            causes[0].message,
            "Invalid value: 11: spec.size in body should be less than or equal to 10"
        );
        let mut causes = Vec::new();
        validate_value(
            &json!({ "spec": {} }),
            &schema(),
            &patterns(),
            "",
            &mut causes,
            true,
        );
        assert_eq!(
            (causes[0].field.as_str(), causes[0].message.as_str()),
            ("spec.size", "Required value")
        );
    }

    #[test]
    fn crd_validation_requires_names_and_one_storage_version() {
        let mut bad = json!({
            "metadata": { "name": "widgets.example.com" },
            "spec": { "group": "example.com", "names": { "plural": "widgets", "kind": "Widget" }, "scope": "Galaxy",
                      "versions": [{ "name": "v1", "served": true, "storage": false }] },
        });
        let e = admit_definition(&mut bad).expect_err("invalid");
        assert_eq!(e.code, 422);
        let msg = e.to_string();
        assert!(
            msg.contains("spec.scope: Unsupported value: \"Galaxy\""),
            "{msg}"
        );
        assert!(
            msg.contains("must have exactly one version marked as storage version"),
            "{msg}"
        );
        assert!(msg.contains("schemas are required"), "{msg}");
        let mut good = json!({
            "metadata": { "name": "widgets.example.com" },
            "spec": { "group": "example.com", "names": { "plural": "widgets", "kind": "Widget" }, "scope": "Namespaced",
                      "versions": [{ "name": "v1", "served": true, "storage": true, "schema": { "openAPIV3Schema": schema() } }] },
        });
        admit_definition(&mut good).expect("valid");
        assert_eq!(good["spec"]["names"]["singular"], "widget");
        assert_eq!(good["spec"]["names"]["listKind"], "WidgetList");
    }

    #[test]
    fn patterns_compile_once_and_a_bad_one_refuses_the_crd() {
        let p = patterns();
        assert!(p.get("^[a-z]+$").is_some_and(|re| re.is_match("abc")));
        let nested = json!({ "type": "object", "properties": { "a": { "type": "array",
            "items": { "type": "string", "pattern": "[unclosed" } } } });
        let causes = Patterns::compile(&nested, "spec.versions[0].schema.openAPIV3Schema")
            .expect_err("an unclosed class does not compile");
        assert_eq!(
            causes[0].field,
            "spec.versions[0].schema.openAPIV3Schema.properties[a].items.pattern"
        );
        assert!(
            causes[0]
                .message
                .starts_with("Invalid value: \"[unclosed\": must be a valid regular expression"),
            "{}",
            causes[0].message
        );
        let mut crd = json!({
            "metadata": { "name": "widgets.example.com" },
            "spec": { "group": "example.com", "names": { "plural": "widgets", "kind": "Widget" }, "scope": "Namespaced",
                      "versions": [{ "name": "v1", "served": true, "storage": true, "schema": { "openAPIV3Schema": nested } }] },
        });
        let e = admit_definition(&mut crd).expect_err("refused");
        assert_eq!(e.code, 422);
    }

    #[test]
    fn printer_columns_follow_json_paths() {
        let obj = json!({
            "metadata": { "name": "w", "creationTimestamp": "2020-01-01T00:00:00Z" },
            "spec": { "size": 3, "tags": ["a"] },
            "status": { "conditions": [{ "type": "Other", "status": "False" }, { "type": "Ready", "status": "True" }] },
        });
        let col = |ty: &str, path: &str| PrinterColumn {
            name: "c".into(),
            ty: ty.into(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: path.into(),
        };
        let custom = CustomVersion {
            crd_name: "widgets.example.com".into(),
            storage: 0,
            storage_api_version: "example.com/v1".into(),
            schema: None,
            patterns: Patterns::default(),
            columns: vec![
                col("integer", ".spec.size"),
                col("string", ".status.conditions[?(@.type==\"Ready\")].status"),
                col("string", ".spec.tags"),
                col("string", ".spec.missing"),
                col("date", ".metadata.creationTimestamp"),
            ],
            scale: None,
            terminating: false,
        };
        let (columns, row) = table_layout(&custom);
        assert_eq!(columns.len(), 6);
        let cells = row(&obj);
        assert_eq!(
            cells[..5],
            [
                json!("w"),
                json!(3),
                json!("True"),
                json!("[\"a\"]"),
                Value::Null
            ]
        );
        assert!(
            cells[5]
                .as_str()
                .is_some_and(|s| s.ends_with('y') || s.ends_with('d')),
            "{cells:?}"
        );
    }
}
