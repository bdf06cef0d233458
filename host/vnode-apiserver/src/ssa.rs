//! Server-side apply and field ownership (`metadata.managedFields`).
//!
//! Every field of an object is owned by the managers that set it: an `Apply` entry per
//! applier (`kubectl apply --server-side`, field manager `kubectl` by default) holding exactly
//! the fields of its last applied configuration, and an `Update` entry per writer of
//! ordinary creates, updates and patches (`kubectl-create`, `kubectl-edit`, …) holding the
//! fields it changed. An apply that would change a field another manager owns is refused with
//! 409 and Kubernetes' conflict message, unless forced (`--force-conflicts`), which moves the
//! ownership. An applier that stops setting a field it alone owned has it removed.
//!
//! Field sets are kept as sets of paths in the `FieldsV1` vocabulary: `f:<field>`,
//! `k:{"name":"web"}` for an item of a keyed list (containers by name, container ports by
//! containerPort and protocol, …), `v:<json>` for an item of a set (finalizers). Other lists
//! are atomic: owned, compared and replaced as a whole.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::status::ApiError;

/// One path of a field set, each step a `FieldsV1` key.
type Path = Vec<String>;
/// A set of owned paths.
type FieldSet = BTreeSet<Path>;

/// Who writes, for the `managedFields` bookkeeping of one write.
#[derive(Debug, Clone)]
pub struct Writer {
    /// Field manager (`fieldManager` query parameter, else the User-Agent's program name).
    pub manager: String,
    /// `apiVersion` of the request.
    pub api_version: String,
    /// `status` for writes to the status subresource.
    pub subresource: Option<String>,
}

impl Writer {
    /// The writer of a request: `fieldManager`, else the User-Agent up to its first `/`
    /// (what the real API server records for clients that name no manager).
    pub fn of_request(
        field_manager: Option<&str>,
        user_agent: Option<&str>,
        api_version: String,
        subresource: Option<&str>,
    ) -> Self {
        let manager = match field_manager.filter(|m| !m.is_empty()) {
            Some(m) => m.to_string(),
            None => user_agent
                .and_then(|ua| ua.split('/').next())
                .filter(|m| !m.is_empty())
                .unwrap_or("unknown")
                .to_string(),
        };
        Self {
            manager,
            api_version,
            subresource: subresource.map(String::from),
        }
    }
}

/// Fields that are never owned: identity and server-set metadata, and the envelope.
fn ignored_top(key: &str) -> bool {
    matches!(key, "apiVersion" | "kind")
}

fn ignored_meta(key: &str) -> bool {
    matches!(
        key,
        "name"
            | "namespace"
            | "uid"
            | "resourceVersion"
            | "generation"
            | "creationTimestamp"
            | "deletionTimestamp"
            | "deletionGracePeriodSeconds"
            | "managedFields"
            | "selfLink"
    )
}

/// The key fields of a keyed list, by field name (upstream `listMapKeys`), or `None` for
/// atomic lists.
fn list_keys(field: &str, items: &[Value]) -> Option<&'static [&'static str]> {
    let sample = items.first()?.as_object()?;
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "containerStatuses" => &["name"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "hostAliases" => &["ip"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        "ports" if sample.contains_key("containerPort") => &["containerPort", "protocol"],
        "ports" if sample.contains_key("port") => &["port", "protocol"],
        "topologySpreadConstraints" => &["topologyKey", "whenUnsatisfiable"],
        _ => return None,
    })
}

fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

/// The value of a key field, with the defaults the key relies on (`protocol: TCP`).
fn key_value(item: &Value, key: &str) -> Value {
    match item.get(key) {
        Some(v) if !v.is_null() => v.clone(),
        _ if key == "protocol" => json!("TCP"),
        _ => Value::Null,
    }
}

/// `k:{…}` for an item of a keyed list (key fields sorted, as upstream writes them).
fn item_key(item: &Value, keys: &[&str]) -> String {
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_unstable();
    let parts: Vec<String> = sorted
        .iter()
        .filter(|k| !key_value(item, k).is_null())
        .map(|k| format!("{}:{}", json!(k), key_value(item, k)))
        .collect();
    format!("k:{{{}}}", parts.join(","))
}

/// Every owned path of `obj` (leaves and list items).
fn field_set(obj: &Value, with_status: bool) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        if ignored_top(k) || (k == "status" && !with_status) {
            continue;
        }
        if k == "metadata" {
            if let Some(meta) = v.as_object() {
                for (mk, mv) in meta {
                    if !ignored_meta(mk) {
                        collect(
                            mv,
                            mk,
                            vec!["f:metadata".into(), format!("f:{mk}")],
                            &mut out,
                        );
                    }
                }
            }
            continue;
        }
        collect(v, k, vec![format!("f:{k}")], &mut out);
    }
    out
}

fn collect(v: &Value, field: &str, path: Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let mut p = path.clone();
                p.push(format!("f:{k}"));
                collect(x, k, p, out);
            }
        }
        Value::Array(items) if is_set_list(field) => {
            for item in items {
                let mut p = path.clone();
                p.push(format!("v:{item}"));
                out.insert(p);
            }
        }
        Value::Array(items) => match list_keys(field, items) {
            Some(keys) if items.iter().all(Value::is_object) => {
                for item in items {
                    let mut p = path.clone();
                    p.push(item_key(item, keys));
                    out.insert(p.clone());
                    collect(item, "", p, out);
                }
            }
            _ => {
                out.insert(path);
            }
        },
        _ => {
            out.insert(path);
        }
    }
}

/// The value at `path`, if present.
fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    let mut field = "";
    for step in path {
        if let Some(name) = step.strip_prefix("f:") {
            cur = cur.get(name)?;
            field = name;
        } else if step.starts_with("k:") {
            let items = cur.as_array()?;
            let keys = list_keys(field, items)?;
            cur = items.iter().find(|i| item_key(i, keys) == *step)?;
            field = "";
        } else if let Some(raw) = step.strip_prefix("v:") {
            let want: Value = serde_json::from_str(raw).ok()?;
            cur = cur.as_array()?.iter().find(|i| **i == want)?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Removes the value at `path` (a missing one is fine).
fn remove(obj: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let field = parent_path
        .iter()
        .rev()
        .find_map(|s| s.strip_prefix("f:"))
        .unwrap_or("")
        .to_string();
    let mut cur = obj;
    let mut cur_field = String::new();
    for step in parent_path {
        let next = if let Some(name) = step.strip_prefix("f:") {
            cur_field = name.to_string();
            cur.get_mut(name)
        } else if step.starts_with("k:") {
            let keys = cur
                .as_array()
                .and_then(|items| list_keys(&cur_field, items));
            match (keys, cur.as_array_mut()) {
                (Some(keys), Some(items)) => items.iter_mut().find(|i| item_key(i, keys) == *step),
                _ => None,
            }
        } else {
            None
        };
        let Some(next) = next else {
            return;
        };
        cur = next;
    }
    if let Some(name) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(name);
        }
    } else if last.starts_with("k:") {
        let keys = cur.as_array().and_then(|items| list_keys(&field, items));
        if let (Some(keys), Some(items)) = (keys, cur.as_array_mut()) {
            items.retain(|i| item_key(i, keys) != *last);
        }
    } else if let Some(raw) = last.strip_prefix("v:")
        && let Ok(want) = serde_json::from_str::<Value>(raw)
        && let Some(items) = cur.as_array_mut()
    {
        items.retain(|i| *i != want);
    }
}

/// Merges an applied configuration into the live object: maps merged, keyed lists merged
/// by key, set lists united, everything else replaced.
fn merge(live: &mut Value, applied: &Value, field: &str) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                if av.is_null() {
                    l.remove(k);
                    continue;
                }
                match l.get_mut(k) {
                    Some(lv) => merge(lv, av, k),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) if is_set_list(field) => {
            for item in a {
                if !l.contains(item) {
                    l.push(item.clone());
                }
            }
        }
        (Value::Array(l), Value::Array(a)) => {
            let keys = list_keys(field, a)
                .filter(|_| a.iter().all(Value::is_object) && l.iter().all(Value::is_object));
            match keys {
                Some(keys) => {
                    for item in a {
                        let key = item_key(item, keys);
                        match l.iter_mut().find(|i| item_key(i, keys) == key) {
                            Some(existing) => merge(existing, item, ""),
                            None => l.push(item.clone()),
                        }
                    }
                }
                None => *l = a.clone(),
            }
        }
        (l, a) => *l = a.clone(),
    }
}

/// Renders a field set as `FieldsV1` JSON.
fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for (i, step) in path.iter().enumerate() {
            let node = cur.entry(step.clone()).or_insert_with(|| json!({}));
            if !node.is_object() {
                *node = json!({});
            }
            let Some(next) = node.as_object_mut() else {
                break;
            };
            cur = next;
            // A list item that is itself owned carries `.`.
            if i + 1 == path.len() && step.starts_with("k:") {
                cur.insert(".".into(), json!({}));
            }
        }
    }
    Value::Object(root)
}

/// Parses `FieldsV1` JSON back into a field set.
fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(m) = v.as_object() else {
            return;
        };
        if m.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (k, x) in m {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            path.push(k.clone());
            walk(x, path, out);
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry, parsed.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: Option<String>,
    time: Value,
    fields: FieldSet,
}

impl Entry {
    fn to_json(&self) -> Value {
        let mut e = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(&self.fields),
        });
        if let Some(s) = &self.subresource {
            e["subresource"] = json!(s);
        }
        e
    }

    fn same_owner(&self, w: &Writer, operation: &str) -> bool {
        self.manager == w.manager
            && self.operation == operation
            && self.subresource == w.subresource
    }
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| {
                    Some(Entry {
                        manager: e["manager"].as_str()?.to_string(),
                        operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                        api_version: e["apiVersion"].as_str().unwrap_or("").to_string(),
                        subresource: e["subresource"].as_str().map(String::from),
                        time: e["time"].clone(),
                        fields: from_fields_v1(&e["fieldsV1"]),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn set_entries(obj: &mut Value, list: Vec<Entry>) {
    let list: Vec<Value> = list
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_json)
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

fn now() -> Value {
    json!(
        jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    )
}

/// Records an ordinary write (create, update, non-apply patch) by `w`: the fields it
/// changed become its own (`operation: Update`) and are taken from every other manager;
/// removed fields leave every set. `old` is `None` on create. Client-sent `managedFields`
/// are ignored: ownership is the server's record.
pub fn record_update(old: Option<&Value>, new: &mut Value, w: &Writer) {
    let with_status = w.subresource.as_deref() == Some("status");
    let new_set = field_set(new, with_status);
    let (old_set, mut list) = match old {
        Some(o) => (field_set(o, with_status), entries(o)),
        None => (FieldSet::new(), Vec::new()),
    };
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| old.is_none_or(|o| get(o, p) != get(new, p)))
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    if changed.is_empty() && removed.is_empty() && old.is_some() {
        // Nothing this writer could own changed: keep the record as it was.
        set_entries(new, list);
        return;
    }
    for e in &mut list {
        if !e.same_owner(w, "Update") {
            e.fields
                .retain(|p| !changed.contains(p) && !removed.contains(p));
        }
    }
    match list.iter_mut().find(|e| e.same_owner(w, "Update")) {
        Some(e) => {
            e.fields.extend(changed);
            e.fields.retain(|p| !removed.contains(p));
            e.time = now();
            e.api_version = w.api_version.clone();
        }
        None => list.push(Entry {
            manager: w.manager.clone(),
            operation: "Update".into(),
            api_version: w.api_version.clone(),
            subresource: w.subresource.clone(),
            time: now(),
            fields: changed,
        }),
    }
    set_entries(new, list);
}

/// Renders a path the way Kubernetes' conflict messages do:
/// `.spec.containers[name="web"].image`.
fn display(path: &[String]) -> String {
    let mut out = String::new();
    for step in path {
        if let Some(f) = step.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = step.strip_prefix("k:") {
            let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = step.strip_prefix("v:") {
            out.push_str(&format!("[{v}]"));
        }
    }
    out
}

/// Server-side apply of `applied` (the parsed configuration) by `w` onto `live`. Returns
/// the new object with its `managedFields`, or 409 listing every conflicting field and its
/// manager unless `force`.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    w: &Writer,
    force: bool,
    what: (&str, &str, &str),
) -> Result<Value, ApiError> {
    let with_status = w.subresource.as_deref() == Some("status");
    let applied_set = field_set(applied, with_status);
    let Some(live) = live else {
        let mut new = applied.clone();
        set_entries(
            &mut new,
            vec![Entry {
                manager: w.manager.clone(),
                operation: "Apply".into(),
                api_version: w.api_version.clone(),
                subresource: w.subresource.clone(),
                time: now(),
                fields: applied_set,
            }],
        );
        return Ok(new);
    };
    let mut list = entries(live);
    // Conflicts: a field another manager owns whose value this apply would change.
    let mut conflicts: Vec<(String, String, String)> = Vec::new();
    for e in &list {
        if e.same_owner(w, "Apply") {
            continue;
        }
        for p in e.fields.intersection(&applied_set) {
            let (Some(a), l) = (get(applied, p), get(live, p)) else {
                continue;
            };
            // Keyed list items are containers of fields, not values.
            if p.last().is_some_and(|s| s.starts_with("k:")) {
                continue;
            }
            if l != Some(a) {
                conflicts.push((e.manager.clone(), e.api_version.clone(), display(p)));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts, what));
    }
    let mut new = live.clone();
    // Fields this applier owned, no longer applies, and nobody else owns: removed.
    let previous = list
        .iter()
        .find(|e| e.same_owner(w, "Apply"))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = list
        .iter()
        .filter(|e| !e.same_owner(w, "Apply"))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut dropped: Vec<&Path> = previous
        .iter()
        .filter(|p| !applied_set.contains(*p))
        .filter(|p| !others.iter().any(|o| o.starts_with(p)))
        .collect();
    // Deepest first, so an item's fields go before the item.
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in dropped {
        remove(&mut new, p);
    }
    let mut body = applied.clone();
    if let Some(m) = body.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if !with_status {
            m.remove("status");
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|k, _| !ignored_meta(k));
        }
    }
    merge(&mut new, &body, "");
    // Forced conflicts move ownership; equal values are shared.
    if force {
        for e in &mut list {
            if !e.same_owner(w, "Apply") {
                e.fields
                    .retain(|p| !applied_set.contains(p) || get(applied, p) == get(live, p));
            }
        }
    }
    match list.iter_mut().find(|e| e.same_owner(w, "Apply")) {
        Some(e) => {
            e.fields = applied_set;
            e.time = now();
            e.api_version = w.api_version.clone();
        }
        None => list.push(Entry {
            manager: w.manager.clone(),
            operation: "Apply".into(),
            api_version: w.api_version.clone(),
            subresource: w.subresource.clone(),
            time: now(),
            fields: applied_set,
        }),
    }
    set_entries(&mut new, list);
    Ok(new)
}

/// 409 with Kubernetes' wording: `Apply failed with 1 conflict: conflict with "kubectl-edit"
/// using apps/v1: .spec.replicas`, and one `FieldManagerConflict` cause per field.
fn conflict_error(conflicts: &[(String, String, String)], what: (&str, &str, &str)) -> ApiError {
    let (group, plural, name) = what;
    let n = conflicts.len();
    let message = if let [(manager, api_version, field)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with \"{manager}\" using {api_version}: {field}"
        )
    } else {
        let mut by_manager: Vec<(String, String, Vec<&str>)> = Vec::new();
        for (m, av, f) in conflicts {
            match by_manager
                .iter_mut()
                .find(|(bm, bav, _)| bm == m && bav == av)
            {
                Some((_, _, fs)) => fs.push(f),
                None => by_manager.push((m.clone(), av.clone(), vec![f])),
            }
        }
        let parts: Vec<String> = by_manager
            .iter()
            .map(|(m, av, fs)| {
                let list: Vec<String> = fs.iter().map(|f| format!("- {f}")).collect();
                format!("conflicts with \"{m}\" using {av}:\n{}", list.join("\n"))
            })
            .collect();
        format!("Apply failed with {n} conflicts: {}", parts.join("\n"))
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, av, f)| {
            json!({
                "type": "FieldManagerConflict",
                "message": format!("conflict with \"{m}\" using {av}"),
                "field": f,
            })
        })
        .collect();
    let mut details = json!({ "name": name, "kind": plural, "causes": causes });
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    ApiError {
        code: 409,
        reason: "Conflict",
        message,
        details: Some(details),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(m: &str) -> Writer {
        Writer {
            manager: m.into(),
            api_version: "apps/v1".into(),
            subresource: None,
        }
    }

    const WHAT: (&str, &str, &str) = ("apps", "deployments", "web");

    fn deployment(replicas: i64, labels: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}
            ]}}}
        })
    }

    #[test]
    fn fields_v1_round_trips_and_names_keyed_items() {
        let set = field_set(&deployment(2, json!({"app": "web"})), false);
        let v1 = to_fields_v1(&set);
        assert_eq!(from_fields_v1(&v1), set);
        let item = &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(item["."], json!({}));
        assert_eq!(item["f:image"], json!({}));
        assert!(
            item["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"].is_object(),
            "{v1}"
        );
        assert!(v1["f:metadata"].get("f:name").is_none(), "{v1}");
    }

    #[test]
    fn apply_conflicts_force_and_removal() {
        let a = writer("kubectl");
        let live = apply(
            None,
            &deployment(2, json!({"app": "web", "tier": "fe"})),
            &a,
            false,
            WHAT,
        )
        .expect("create");
        // Same values by another applier: shared, no conflict.
        let b = writer("other");
        let shared =
            apply(Some(&live), &deployment(2, json!({})), &b, false, WHAT).expect("shared");
        // A different value: conflict naming the manager and the field.
        let e =
            apply(Some(&shared), &deployment(5, json!({})), &b, false, WHAT).expect_err("conflict");
        assert_eq!(e.code, 409);
        assert_eq!(
            e.message,
            "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas"
        );
        // Forced: the value changes and ownership moves.
        let forced =
            apply(Some(&shared), &deployment(5, json!({})), &b, true, WHAT).expect("force");
        assert_eq!(forced["spec"]["replicas"], 5);
        let owners = entries(&forced);
        let kubectl = owners
            .iter()
            .find(|e| e.manager == "kubectl")
            .expect("kubectl entry");
        assert!(
            !kubectl
                .fields
                .contains(&vec!["f:spec".to_string(), "f:replicas".to_string()])
        );
        // The first applier drops the `tier` label: removed (it alone owned it).
        let mut again = deployment(2, json!({"app": "web"}));
        again["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("replicas");
        let out = apply(Some(&forced), &again, &a, false, WHAT).expect("re-apply");
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(out["spec"]["replicas"], 5, "still owned by `other`");
    }

    #[test]
    fn updates_take_ownership_from_appliers() {
        let a = writer("kubectl");
        let live =
            apply(None, &deployment(2, json!({"app": "web"})), &a, false, WHAT).expect("create");
        let mut edited = live.clone();
        edited["spec"]["replicas"] = json!(3);
        record_update(Some(&live), &mut edited, &writer("kubectl-edit"));
        let e = apply(
            Some(&edited),
            &deployment(2, json!({"app": "web"})),
            &a,
            false,
            WHAT,
        )
        .expect_err("conflict with the editor");
        assert!(
            e.message.contains("conflict with \"kubectl-edit\""),
            "{}",
            e.message
        );
        assert_eq!(
            display(&[
                "f:spec".into(),
                "f:containers".into(),
                "k:{\"name\":\"web\"}".into(),
                "f:image".into()
            ]),
            ".spec.containers[name=\"web\"].image"
        );
    }
}
