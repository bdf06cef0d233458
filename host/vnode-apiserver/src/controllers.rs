//! Built-in controllers: the scheduler and the namespace lifecycle.
//!
//! Both react to the store's change stream. The scheduler binds a pending pod (no
//! `nodeName`, `schedulerName: default-scheduler`) to a Ready, schedulable node whose
//! labels satisfy its `nodeSelector` and required node affinity and whose `NoSchedule` /
//! `NoExecute` taints it tolerates. A pod that fits nowhere gets a `FailedScheduling`
//! event with upstream's message and a `PodScheduled=False` condition; it is retried
//! whenever a node changes in a way that matters (labels, taints, readiness,
//! schedulability) or appears.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::api::{self, DeleteOpts};
use crate::resources::{RESOURCES, ids};
use crate::store::{Change, EventKind, Object, Outcome, Store, WatchEvent};

pub(crate) async fn run(store: Arc<Store>, shutdown: CancellationToken, scheduler_on: bool) {
    let mut rx = store.subscribe();
    let mut sched = Scheduler::default();
    if scheduler_on {
        sched.schedule_all(&store);
    }
    loop {
        let ev = tokio::select! {
            () = shutdown.cancelled() => return,
            r = rx.recv() => r,
        };
        match ev {
            Ok(ev) => {
                if scheduler_on {
                    sched.on_event(&store, &ev);
                }
                on_namespace_event(&store, &ev);
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if scheduler_on {
                    sched.schedule_all(&store);
                }
                let (nss, _) = store.list_objects(ids::NAMESPACES, None, Object::is_deleting);
                for ns in nss {
                    finish_namespace(&store, ns.name());
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
        // Let request handlers run between bursts of controller work.
        tokio::task::yield_now().await;
    }
}

fn on_namespace_event(store: &Store, ev: &WatchEvent) {
    if ev.resource == ids::NAMESPACES {
        if ev.kind == EventKind::Modified && ev.object.is_deleting() {
            finish_namespace(store, ev.object.name());
        }
        return;
    }
    if ev.kind == EventKind::Deleted && RESOURCES[ev.resource].namespaced {
        let ns = ev.object.namespace();
        if store
            .get_object(ids::NAMESPACES, "", ns)
            .is_some_and(|n| n.is_deleting())
        {
            finish_namespace(store, ns);
        }
    }
}

/// Deletes a terminating namespace's contents (pods gracefully), then the namespace once
/// it is empty.
fn finish_namespace(store: &Store, ns: &str) {
    if ns.is_empty() {
        return;
    }
    let mut remaining = 0usize;
    for (res, info) in RESOURCES.iter().enumerate() {
        if !info.namespaced || info.view_of.is_some() {
            continue;
        }
        if res == ids::PODS {
            let (pods, _) = store.list_objects(ids::PODS, Some(ns), |_| true);
            for p in pods {
                let name = p.name();
                let opts = DeleteOpts::default();
                if let Ok(Outcome::Stored(_)) =
                    store.mutate(ids::PODS, ns, name, false, |cur, inner| {
                        api::delete_decision(ids::PODS, cur, inner, &opts)
                    })
                {
                    remaining += 1;
                }
            }
        } else {
            store.remove_where(res, ns, |o| {
                o["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(|f| f.is_empty())
            });
            remaining += store.list_objects(res, Some(ns), |_| true).0.len();
        }
    }
    if remaining == 0 {
        let _ = store.mutate(ids::NAMESPACES, "", ns, false, |cur, _| {
            if !cur["metadata"]["deletionTimestamp"].is_string() {
                return Ok(Change::Unchanged);
            }
            Ok(Change::Delete)
        });
    }
}

#[derive(Default)]
struct Scheduler {
    /// Last FailedScheduling message per pod uid, so a retry that fails the same way does
    /// not write another event.
    last_failure: HashMap<String, String>,
    /// Rotates ties between feasible nodes.
    next: usize,
}

/// False when the indexed fields already show the pod is not pending.
fn may_be_pending(pod: &Object) -> bool {
    pod.field("spec.nodeName").is_none_or(str::is_empty) && !pod.is_deleting()
}

fn is_pending(pod: &Value) -> bool {
    pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty()
        && pod["spec"]["schedulerName"]
            .as_str()
            .unwrap_or("default-scheduler")
            == "default-scheduler"
        && !pod["metadata"]["deletionTimestamp"].is_string()
        && pod["spec"]["schedulingGates"]
            .as_array()
            .is_none_or(|g| g.is_empty())
}

/// The parts of a node the scheduler's decisions depend on.
fn node_signature(node: &Value) -> (Value, Value, Value, bool) {
    let ready = node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .is_some_and(|c| c["status"] == "True");
    (
        node["metadata"]["labels"].clone(),
        node["spec"]["taints"].clone(),
        node["spec"]["unschedulable"].clone(),
        ready,
    )
}

impl Scheduler {
    fn on_event(&mut self, store: &Store, ev: &WatchEvent) {
        match ev.resource {
            ids::NODES => {
                let relevant = match (ev.kind, &ev.previous) {
                    (EventKind::Modified, Some(prev)) => {
                        node_signature(&prev.value()) != node_signature(&ev.object.value())
                    }
                    (EventKind::Deleted, _) => false,
                    _ => true,
                };
                if relevant {
                    self.schedule_all(store);
                }
            }
            ids::PODS => match ev.kind {
                // A bound or deleting pod is never pending: decided from the index, so
                // the common case parses nothing.
                EventKind::Added if may_be_pending(&ev.object) => {
                    let pod = ev.object.value();
                    if is_pending(&pod) {
                        self.schedule_one(store, &pod);
                    }
                }
                EventKind::Modified if may_be_pending(&ev.object) => {
                    let pod = ev.object.value();
                    let spec_changed = ev
                        .previous
                        .as_ref()
                        .is_none_or(|p| p.value()["spec"] != pod["spec"]);
                    if spec_changed && is_pending(&pod) {
                        self.schedule_one(store, &pod);
                    }
                }
                EventKind::Deleted => {
                    self.last_failure.remove(ev.object.uid());
                }
                EventKind::Added | EventKind::Modified => {}
            },
            _ => {}
        }
    }

    fn schedule_all(&mut self, store: &Store) {
        let (pods, _) = store.list_objects(ids::PODS, None, may_be_pending);
        for p in pods {
            let pod = p.value();
            if is_pending(&pod) {
                self.schedule_one(store, &pod);
            }
        }
    }

    fn schedule_one(&mut self, store: &Store, pod: &Value) {
        let (nodes, _) = store.list(ids::NODES, None, |_| true);
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut feasible: Vec<&Arc<Value>> = Vec::new();
        for n in &nodes {
            match fits(pod, n) {
                Ok(()) => feasible.push(n),
                Err(r) => *reasons.entry(r).or_default() += 1,
            }
        }
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
        let name = pod["metadata"]["name"].as_str().unwrap_or("");
        if !feasible.is_empty() {
            let node = feasible[self.next % feasible.len()];
            self.next = self.next.wrapping_add(1);
            let node_name = node["metadata"]["name"].as_str().unwrap_or("");
            match api::bind_pod(store, ns, name, node_name) {
                Ok(bound) => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), node = node_name, "scheduled");
                    api::record_event(
                        store,
                        &bound,
                        "Normal",
                        "Scheduled",
                        &format!("Successfully assigned {ns}/{name} to {node_name}"),
                        "default-scheduler",
                    );
                }
                Err(e) => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "binding failed")
                }
            }
            return;
        }
        let total = nodes.len();
        let message = if total == 0 {
            "no nodes available to schedule pods".to_string()
        } else {
            let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
            format!(
                "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
                parts.join(", ")
            )
        };
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
        if self.last_failure.get(&uid) == Some(&message) {
            return;
        }
        self.last_failure.insert(uid, message.clone());
        let updated = store.mutate(ids::PODS, ns, name, false, |cur, _| {
            if !is_pending(cur) {
                return Ok(Change::Unchanged);
            }
            let mut n = (**cur).clone();
            api::set_condition(
                &mut n,
                "PodScheduled",
                "False",
                Some("Unschedulable"),
                Some(&message),
            );
            Ok(Change::Put(n))
        });
        let obj = match updated {
            Ok(Outcome::Stored(o)) => o,
            _ => return,
        };
        api::record_event(
            store,
            &obj,
            "Warning",
            "FailedScheduling",
            &message,
            "default-scheduler",
        );
    }
}

fn label<'a>(node: &'a Value, k: &str) -> Option<&'a str> {
    node["metadata"]["labels"][k].as_str()
}

fn expr_matches(node: &Value, e: &Value, field: bool) -> bool {
    let key = e["key"].as_str().unwrap_or("");
    let have = if field {
        (key == "metadata.name")
            .then(|| node["metadata"]["name"].as_str())
            .flatten()
    } else {
        label(node, key)
    };
    let values: Vec<&str> = e["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match e["operator"].as_str().unwrap_or("") {
        "In" => have.is_some_and(|h| values.contains(&h)),
        "NotIn" => have.is_none_or(|h| !values.contains(&h)),
        "Exists" => have.is_some(),
        "DoesNotExist" => have.is_none(),
        "Gt" | "Lt" => {
            let (Some(h), Some(v)) = (
                have.and_then(|h| h.parse::<i64>().ok()),
                values.first().and_then(|v| v.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if e["operator"] == "Gt" { h > v } else { h < v }
        }
        _ => false,
    }
}

fn affinity_matches(pod: &Value, node: &Value) -> bool {
    let Some(terms) =
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"].as_array()
    else {
        return true;
    };
    // Terms are ORed; expressions within a term are ANDed; an empty term matches nothing.
    terms.iter().any(|t| {
        let exprs = t["matchExpressions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let fields = t["matchFields"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        (!exprs.is_empty() || !fields.is_empty())
            && exprs.iter().all(|e| expr_matches(node, e, false))
            && fields.iter().all(|e| expr_matches(node, e, true))
    })
}

fn tolerates(tol: &Value, taint: &Value) -> bool {
    let effect = tol["effect"].as_str().unwrap_or("");
    if !effect.is_empty() && Some(effect) != taint["effect"].as_str() {
        return false;
    }
    let key = tol["key"].as_str().unwrap_or("");
    match tol["operator"].as_str().unwrap_or("Equal") {
        "Exists" => key.is_empty() || Some(key) == taint["key"].as_str(),
        _ => {
            Some(key) == taint["key"].as_str()
                && tol["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or("")
        }
    }
}

/// Whether `pod` may run on `node`; otherwise the upstream reason phrase.
fn fits(pod: &Value, node: &Value) -> Result<(), String> {
    if node["spec"]["unschedulable"] == true {
        return Err("node(s) were unschedulable".into());
    }
    let ready = node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .is_some_and(|c| c["status"] == "True");
    if !ready {
        return Err("node(s) had untolerated taint {node.kubernetes.io/not-ready: }".into());
    }
    if let Some(sel) = pod["spec"]["nodeSelector"].as_object() {
        for (k, v) in sel {
            if label(node, k) != v.as_str() {
                return Err("node(s) didn't match Pod's node affinity/selector".into());
            }
        }
    }
    if !affinity_matches(pod, node) {
        return Err("node(s) didn't match Pod's node affinity/selector".into());
    }
    let tolerations = pod["spec"]["tolerations"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for taint in node["spec"]["taints"].as_array().into_iter().flatten() {
        let effect = taint["effect"].as_str().unwrap_or("");
        if effect != "NoSchedule" && effect != "NoExecute" {
            continue;
        }
        if !tolerations.iter().any(|t| tolerates(t, taint)) {
            let k = taint["key"].as_str().unwrap_or("");
            let v = taint["value"].as_str().unwrap_or("");
            return Err(format!("node(s) had untolerated taint {{{k}: {v}}}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vnode() -> Value {
        json!({"metadata": {"name": "virtual-kubelet", "labels": {"type": "virtual-kubelet", "kubernetes.io/role": "agent", "beta.kubernetes.io/os": "linux"}},
            "spec": {"taints": [{"key": "virtual-kubelet.io/provider", "value": "alibabacloud", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    }

    #[test]
    fn seed_pod_fits_the_virtual_node() {
        let pod = json!({"spec": {"nodeSelector": {"kubernetes.io/role": "agent", "beta.kubernetes.io/os": "linux", "type": "virtual-kubelet"},
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}]}});
        assert_eq!(fits(&pod, &vnode()), Ok(()));
    }

    #[test]
    fn taints_selectors_and_affinity_refuse() {
        let untolerating = json!({"spec": {}});
        assert_eq!(
            fits(&untolerating, &vnode()),
            Err("node(s) had untolerated taint {virtual-kubelet.io/provider: alibabacloud}".into())
        );
        let wrong_selector = json!({"spec": {"nodeSelector": {"type": "other"}, "tolerations": [{"operator": "Exists"}]}});
        assert!(fits(&wrong_selector, &vnode()).is_err());
        let affinity = json!({"spec": {"tolerations": [{"operator": "Exists"}], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "type", "operator": "In", "values": ["nope"]}]},
            {"matchExpressions": [{"key": "type", "operator": "In", "values": ["virtual-kubelet"]}]}
        ]}}}}});
        assert_eq!(fits(&affinity, &vnode()), Ok(()));
        let mut not_ready = vnode();
        not_ready["status"]["conditions"][0]["status"] = json!("False");
        assert!(
            fits(
                &json!({"spec": {"tolerations": [{"operator": "Exists"}]}}),
                &not_ready
            )
            .is_err()
        );
    }
}
