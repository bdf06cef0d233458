//! Server-side printing: `meta.k8s.io/v1` `Table` responses for `kubectl get`, with the
//! columns the real server prints for pods, nodes, namespaces and events (and NAME/AGE for
//! everything else).

use serde_json::{Value, json};

use crate::resources::{RESOURCES, ResourceId};

/// Whether an `Accept` header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// kubectl's `HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let rs = s % 60;
        return if rs == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rs}s")
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        let rm = m % 60;
        return if rm == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rm}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    let d = h / 24;
    if d < 8 {
        let rh = h % 24;
        return if rh == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rh}h")
        };
    }
    if d < 730 {
        return format!("{d}d");
    }
    let y = d / 365;
    if y < 8 {
        let rd = d % 365;
        return if rd == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{rd}d")
        };
    }
    format!("{y}y")
}

fn age_of(ts: Option<&str>) -> String {
    let Some(ts) = ts else {
        return "<unknown>".into();
    };
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        Err(_) => "<unknown>".into(),
    }
}

fn col(name: &str, ty: &str, format: &str, priority: i32) -> Value {
    json!({ "name": name, "type": ty, "format": format, "description": name, "priority": priority })
}

/// Pod STATUS as kubectl prints it.
fn pod_status(pod: &Value) -> String {
    let status = &pod["status"];
    let mut reason = status["reason"]
        .as_str()
        .or(status["phase"].as_str())
        .unwrap_or("Unknown")
        .to_string();
    let mut initializing = false;
    let inits = status["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let n_init = pod["spec"]["initContainers"].as_array().map_or(0, Vec::len);
    for (i, c) in inits.iter().enumerate() {
        let st = &c["state"];
        if st["terminated"]["exitCode"].as_i64() == Some(0) {
            continue;
        }
        initializing = true;
        if let Some(r) = st["terminated"]["reason"].as_str() {
            reason = format!("Init:{r}");
        } else if let Some(r) = st["waiting"]["reason"]
            .as_str()
            .filter(|r| *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{n_init}");
        }
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in status["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .rev()
        {
            let st = &c["state"];
            if let Some(r) = st["waiting"]["reason"].as_str() {
                reason = r.to_string();
            } else if let Some(r) = st["terminated"]["reason"].as_str() {
                reason = r.to_string();
            } else if st["terminated"].is_object() {
                reason = match st["terminated"]["signal"].as_i64() {
                    Some(s) if s != 0 => format!("Signal:{s}"),
                    _ => format!(
                        "ExitCode:{}",
                        st["terminated"]["exitCode"].as_i64().unwrap_or(0)
                    ),
                };
            } else if c["ready"] == true && st["running"].is_object() {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if pod["metadata"]["deletionTimestamp"].is_string() {
        reason = if status["reason"] == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

fn pod_row(pod: &Value) -> Vec<Value> {
    let total = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    let statuses = pod["status"]["containerStatuses"].as_array();
    let ready = statuses.map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
    let restarts: i64 = statuses.map_or(0, |s| {
        s.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
    });
    let ip = pod["status"]["podIP"].as_str().unwrap_or("<none>");
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("<none>");
    let nominated = pod["status"]["nominatedNodeName"]
        .as_str()
        .unwrap_or("<none>");
    let gates = match pod["spec"]["readinessGates"].as_array() {
        Some(g) if !g.is_empty() => format!("0/{}", g.len()),
        _ => "<none>".into(),
    };
    vec![
        json!(name_of(pod)),
        json!(format!("{ready}/{total}")),
        json!(pod_status(pod)),
        json!(restarts.to_string()),
        json!(age_of(pod["metadata"]["creationTimestamp"].as_str())),
        json!(ip),
        json!(node),
        json!(nominated),
        json!(gates),
    ]
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = node["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
                if !r.is_empty() {
                    roles.push(r.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(v) = v.as_str().filter(|v| !v.is_empty())
            {
                roles.push(v.to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn node_row(node: &Value) -> Vec<Value> {
    let ready = node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .map(|c| match c["status"].as_str() {
            Some("True") => "Ready",
            Some("False") => "NotReady",
            _ => "Unknown",
        })
        .unwrap_or("Unknown");
    let mut status = ready.to_string();
    if node["spec"]["unschedulable"] == true {
        status.push_str(",SchedulingDisabled");
    }
    let addr = |t: &str| {
        node["status"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["type"] == t))
            .and_then(|x| x["address"].as_str())
            .unwrap_or("<none>")
            .to_string()
    };
    let info = &node["status"]["nodeInfo"];
    let s = |v: &Value| {
        v.as_str()
            .filter(|x| !x.is_empty())
            .unwrap_or("<unknown>")
            .to_string()
    };
    vec![
        json!(name_of(node)),
        json!(status),
        json!(node_roles(node)),
        json!(age_of(node["metadata"]["creationTimestamp"].as_str())),
        json!(info["kubeletVersion"].as_str().unwrap_or("")),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(s(&info["osImage"])),
        json!(s(&info["kernelVersion"])),
        json!(s(&info["containerRuntimeVersion"])),
    ]
}

fn name_of(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

fn event_row(e: &Value) -> Vec<Value> {
    let last = e["series"]["lastObservedTime"]
        .as_str()
        .or(e["lastTimestamp"].as_str())
        .or(e["eventTime"].as_str())
        .or(e["metadata"]["creationTimestamp"].as_str());
    let io = &e["involvedObject"];
    let object = format!(
        "{}/{}",
        io["kind"].as_str().unwrap_or("").to_lowercase(),
        io["name"].as_str().unwrap_or("")
    );
    vec![
        json!(age_of(last)),
        json!(e["type"].as_str().unwrap_or("")),
        json!(e["reason"].as_str().unwrap_or("")),
        json!(object),
        json!(e["message"].as_str().unwrap_or("").trim()),
    ]
}

/// Renders one object's cells.
type RowFn = fn(&Value) -> Vec<Value>;

/// Columns and a row renderer for one resource.
fn layout(res: ResourceId) -> (Vec<Value>, RowFn) {
    match (RESOURCES[res].group, RESOURCES[res].plural) {
        ("", "pods") => (
            vec![
                col("Name", "string", "name", 0),
                col("Ready", "string", "", 0),
                col("Status", "string", "", 0),
                col("Restarts", "string", "", 0),
                col("Age", "string", "", 0),
                col("IP", "string", "", 1),
                col("Node", "string", "", 1),
                col("Nominated Node", "string", "", 1),
                col("Readiness Gates", "string", "", 1),
            ],
            pod_row,
        ),
        ("", "nodes") => (
            vec![
                col("Name", "string", "name", 0),
                col("Status", "string", "", 0),
                col("Roles", "string", "", 0),
                col("Age", "string", "", 0),
                col("Version", "string", "", 0),
                col("Internal-IP", "string", "", 1),
                col("External-IP", "string", "", 1),
                col("OS-Image", "string", "", 1),
                col("Kernel-Version", "string", "", 1),
                col("Container-Runtime", "string", "", 1),
            ],
            node_row,
        ),
        ("", "namespaces") => (
            vec![
                col("Name", "string", "name", 0),
                col("Status", "string", "", 0),
                col("Age", "string", "", 0),
            ],
            |o| {
                vec![
                    json!(name_of(o)),
                    json!(o["status"]["phase"].as_str().unwrap_or("")),
                    json!(age_of(o["metadata"]["creationTimestamp"].as_str())),
                ]
            },
        ),
        ("", "events") => (
            vec![
                col("Last Seen", "string", "", 0),
                col("Type", "string", "", 0),
                col("Reason", "string", "", 0),
                col("Object", "string", "", 0),
                col("Message", "string", "", 0),
            ],
            event_row,
        ),
        ("", "configmaps") => (
            vec![
                col("Name", "string", "name", 0),
                col("Data", "integer", "", 0),
                col("Age", "string", "", 0),
            ],
            |o| {
                let n = o["data"].as_object().map_or(0, |m| m.len())
                    + o["binaryData"].as_object().map_or(0, |m| m.len());
                vec![
                    json!(name_of(o)),
                    json!(n),
                    json!(age_of(o["metadata"]["creationTimestamp"].as_str())),
                ]
            },
        ),
        ("", "secrets") => (
            vec![
                col("Name", "string", "name", 0),
                col("Type", "string", "", 0),
                col("Data", "integer", "", 0),
                col("Age", "string", "", 0),
            ],
            |o| {
                vec![
                    json!(name_of(o)),
                    json!(o["type"].as_str().unwrap_or("Opaque")),
                    json!(o["data"].as_object().map_or(0, |m| m.len())),
                    json!(age_of(o["metadata"]["creationTimestamp"].as_str())),
                ]
            },
        ),
        ("apps", "deployments") => (
            vec![
                col("Name", "string", "name", 0),
                col("Ready", "string", "", 0),
                col("Up-to-date", "integer", "", 0),
                col("Available", "integer", "", 0),
                col("Age", "string", "", 0),
            ],
            |o| {
                let want = o["spec"]["replicas"].as_i64().unwrap_or(1);
                let st = &o["status"];
                vec![
                    json!(name_of(o)),
                    json!(format!(
                        "{}/{}",
                        st["readyReplicas"].as_i64().unwrap_or(0),
                        want
                    )),
                    json!(st["updatedReplicas"].as_i64().unwrap_or(0)),
                    json!(st["availableReplicas"].as_i64().unwrap_or(0)),
                    json!(age_of(o["metadata"]["creationTimestamp"].as_str())),
                ]
            },
        ),
        ("coordination.k8s.io", "leases") => (
            vec![
                col("Name", "string", "name", 0),
                col("Holder", "string", "", 0),
                col("Age", "string", "", 0),
            ],
            |o| {
                vec![
                    json!(name_of(o)),
                    json!(o["spec"]["holderIdentity"].as_str().unwrap_or("")),
                    json!(age_of(o["metadata"]["creationTimestamp"].as_str())),
                ]
            },
        ),
        _ => (
            vec![
                col("Name", "string", "name", 0),
                col("Age", "string", "", 0),
            ],
            |o| {
                vec![
                    json!(name_of(o)),
                    json!(age_of(o["metadata"]["creationTimestamp"].as_str())),
                ]
            },
        ),
    }
}

/// How much of each object a Table row carries (`includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the query parameter.
    pub fn parse(v: Option<&str>) -> Self {
        match v {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

fn row_object(o: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => o.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": o["metadata"],
        }),
    }
}

/// A Table of `items` (already converted to the requested view).
pub fn table(
    res: ResourceId,
    items: &[&Value],
    rv: &str,
    continue_token: Option<&str>,
    include: IncludeObject,
) -> Value {
    let (columns, row): (Vec<Value>, crate::crd::RowRenderer) = match RESOURCES.custom(res) {
        // Custom resources: Name plus the CRD's `additionalPrinterColumns`.
        Some(custom) => crate::crd::table_layout(&custom),
        None => {
            let (columns, row) = layout(res);
            (columns, Box::new(row))
        }
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut r = json!({ "cells": row(o) });
            let obj = row_object(o, include);
            if !obj.is_null() {
                r["object"] = obj;
            }
            r
        })
        .collect();
    let mut meta = json!({ "resourceVersion": rv });
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ids;

    #[test]
    fn durations_print_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(130), "2m10s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(3 * 86400), "3d");
    }

    #[test]
    fn pod_and_node_rows() {
        let pod = json!({"metadata": {"name": "nginx", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "nginx"}], "nodeName": "vk"},
            "status": {"phase": "Running", "containerStatuses": [{"name": "nginx", "ready": true, "restartCount": 0, "state": {"running": {}}}]}});
        let t = table(ids::PODS, &[&pod], "5", None, IncludeObject::Metadata);
        assert_eq!(t["rows"][0]["cells"][1], "1/1");
        assert_eq!(t["rows"][0]["cells"][2], "Running");
        let node = json!({"metadata": {"name": "virtual-kubelet", "labels": {"kubernetes.io/role": "agent"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let t = table(ids::NODES, &[&node], "5", None, IncludeObject::None);
        assert_eq!(t["rows"][0]["cells"][1], "Ready");
        assert_eq!(t["rows"][0]["cells"][2], "agent");
    }
}
