//! Patch application: JSON merge patch and JSON patch through `json-patch`, and strategic
//! merge patch for the built-in types kubectl patches (`kubectl patch`, `label`,
//! `annotate`, client-side `apply`).
//!
//! Strategic merge here keys lists by field name (`containers` by `name`, `env` by
//! `name`, `volumeMounts` by `mountPath`, …), which is how the upstream struct tags key
//! them for every type vnode and kubectl touch. `$patch: delete|replace`, `$retainKeys`,
//! `$deleteFromPrimitiveList/…` and `$setElementOrder/…` directives are understood.

use serde_json::{Map, Value};

use crate::status::ApiError;

/// The patch flavours, by request content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply, approximated as a strategic merge
    /// of the applied configuration; fields are not owned, so omitted fields stay).
    Apply,
}

impl PatchKind {
    /// Maps a `Content-Type` to a patch kind.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Applies a patch body to `target`.
pub fn apply(kind: PatchKind, target: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    match kind {
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(target, &p).map_err(|e| {
                let mut err = ApiError::bad_request(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ));
                err.code = 422;
                err.reason = "Invalid";
                err
            })
        }
        PatchKind::Merge => {
            let p: Value = parse_json(body)?;
            json_patch::merge(target, &p);
            Ok(())
        }
        PatchKind::Strategic => {
            let p: Value = parse_json(body)?;
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "strategic merge patch must be a JSON object",
                ));
            }
            strategic_merge(target, &p);
            Ok(())
        }
        PatchKind::Apply => {
            let p: Value = serde_yaml::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            strategic_merge(target, &p);
            Ok(())
        }
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// The merge key of list field `field` given a sample patch element, or `None` if the
/// list is atomic (replaced as a whole).
fn merge_key(field: &str, sample: &Map<String, Value>) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "containerStatuses"
        | "initContainerStatuses"
        | "ephemeralContainerStatuses" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        "taints" => "key",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if sample.contains_key("containerPort") {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Lists of scalars whose strategy is `merge` (union), not replace.
fn is_merging_scalar_list(field: &str) -> bool {
    field == "finalizers"
}

/// Strategic merge of `patch` into `target` (both objects).
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(patch_map) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch_map.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(target_map) = target.as_object_mut() else {
        return;
    };
    let mut retain: Option<Vec<String>> = None;
    for (k, v) in patch_map {
        if k == "$patch" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if k == "$retainKeys" {
            retain = v.as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            });
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) =
                (target_map.get_mut(field), v.as_array())
            {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        match v {
            Value::Null => {
                target_map.remove(k);
            }
            Value::Object(pm) => {
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    target_map.remove(k);
                    continue;
                }
                let slot = target_map.entry(k.clone()).or_insert(Value::Null);
                strategic_merge(slot, v);
            }
            Value::Array(items) => merge_list(target_map, k, items),
            other => {
                target_map.insert(k.clone(), other.clone());
            }
        }
    }
    if let Some(keep) = retain {
        target_map.retain(|k, _| keep.iter().any(|x| x == k));
    }
}

fn merge_list(target_map: &mut Map<String, Value>, field: &str, items: &[Value]) {
    let sample = items.iter().find_map(Value::as_object);
    let key = sample.and_then(|s| merge_key(field, s));
    match (key, target_map.get_mut(field)) {
        (Some(key), Some(Value::Array(existing))) => {
            for item in items {
                let Some(obj) = item.as_object() else {
                    continue;
                };
                let kv = obj.get(key);
                let pos = existing
                    .iter()
                    .position(|e| e.get(key) == kv && kv.is_some());
                match (obj.get("$patch").and_then(Value::as_str), pos) {
                    (Some("delete"), Some(i)) => {
                        existing.remove(i);
                    }
                    (Some("delete"), None) => {}
                    (Some("replace"), _) => {
                        // `$patch: replace` inside a list replaces the whole list.
                        let replaced: Vec<Value> = items
                            .iter()
                            .filter(|i| i.get("$patch").is_none())
                            .cloned()
                            .collect();
                        *existing = replaced;
                        return;
                    }
                    (_, Some(i)) => strategic_merge(&mut existing[i], item),
                    (_, None) => {
                        let mut fresh = Value::Object(Map::new());
                        strategic_merge(&mut fresh, item);
                        existing.push(fresh);
                    }
                }
            }
        }
        (None, Some(Value::Array(existing))) if is_merging_scalar_list(field) => {
            for item in items {
                if !existing.contains(item) {
                    existing.push(item.clone());
                }
            }
        }
        _ => {
            let cleaned: Vec<Value> = items
                .iter()
                .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                .map(|i| {
                    let mut fresh = Value::Object(Map::new());
                    if i.is_object() {
                        strategic_merge(&mut fresh, i);
                        fresh
                    } else {
                        i.clone()
                    }
                })
                .collect();
            target_map.insert(field.to_string(), Value::Array(cleaned));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_env_by_name() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "nginx", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "busybox"}
        ]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "image": "nginx:1.27", "env": [{"name": "Y", "value": "2"}]}]}});
        strategic_merge(&mut pod, &patch);
        assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:1.27");
        assert_eq!(
            pod["spec"]["containers"][0]["env"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(pod["spec"]["containers"][1]["name"], "b");
    }

    #[test]
    fn directives_and_nulls() {
        let mut o = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "tolerations": [{"key": "k"}]}});
        let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}, "finalizers": ["y"]},
            "spec": {"containers": [{"name": "b", "$patch": "delete"}], "tolerations": [{"key": "z"}]}});
        strategic_merge(&mut o, &patch);
        assert_eq!(o["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        assert_eq!(o["metadata"]["finalizers"], json!(["x", "y"]));
        assert_eq!(o["spec"]["containers"], json!([{"name": "a"}]));
        assert_eq!(o["spec"]["tolerations"], json!([{"key": "z"}]));
        let del = json!({"$deleteFromPrimitiveList/finalizers": ["x"]});
        strategic_merge(&mut o["metadata"], &del);
        assert_eq!(o["metadata"]["finalizers"], json!(["y"]));
    }

    #[test]
    fn json_and_merge_patches() {
        let mut o = json!({"metadata": {"labels": {"a": "1"}}});
        apply(
            PatchKind::Merge,
            &mut o,
            br#"{"metadata":{"labels":{"a":null,"b":"2"}}}"#,
        )
        .expect("merge");
        assert_eq!(o["metadata"]["labels"], json!({"b": "2"}));
        apply(
            PatchKind::Json,
            &mut o,
            br#"[{"op":"add","path":"/metadata/labels/c","value":"3"}]"#,
        )
        .expect("json");
        assert_eq!(o["metadata"]["labels"]["c"], "3");
        let e = apply(
            PatchKind::Json,
            &mut o,
            br#"[{"op":"test","path":"/metadata/labels/c","value":"9"}]"#,
        )
        .expect_err("failed test op");
        assert_eq!(e.code, 422);
        assert_eq!(
            apply(PatchKind::Merge, &mut o, b"{nope")
                .expect_err("bad json")
                .code,
            400
        );
    }
}
