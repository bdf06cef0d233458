//! Pure parts of status writing: which status fields vnode owns, whether a computed status
//! differs from the stored one, the status patch, and the identity of an ECI event.
//!
//! vnode owns the fields a kubelet owns: phase, reason, message, host and pod IPs, start
//! time, container and init-container statuses, and the four conditions `pod_status` builds
//! (`PodScheduled`, `Initialized`, `ContainersReady`, `Ready`). Everything else in
//! `status` (`nominatedNodeName`, `resize`, `qosClass`, `ephemeralContainerStatuses`,
//! conditions other writers set …) is neither compared nor written.
//!
//! Comparison happens on the JSON form, because that is what the API server stores: times
//! have second precision there, and absent and empty lists are the same thing.

use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::PodStatus;
use serde_json::{Map, Value, json};

/// Status keys (JSON names) whose value vnode owns and replaces as a whole.
pub const OWNED_FIELDS: [&str; 10] = [
    "phase",
    "reason",
    "message",
    "hostIP",
    "hostIPs",
    "podIP",
    "podIPs",
    "startTime",
    "containerStatuses",
    "initContainerStatuses",
];

/// The JSON of the fields vnode owns (absent fields are `null`), and the full condition list.
/// `conditions` is compared and written as a whole list: `pod_status` already carries the
/// conditions other writers own over from the stored status.
///
/// Each owned field is converted on its own (not the whole status, then picked), and
/// normalised in place: the observer builds two of these per changed group.
pub fn owned_view(status: Option<&PodStatus>) -> Map<String, Value> {
    fn field<T: serde::Serialize>(v: Option<&T>) -> Value {
        v.and_then(|v| serde_json::to_value(v).ok())
            .map_or(Value::Null, normalise)
    }
    let mut out = Map::new();
    let Some(s) = status else {
        for key in OWNED_FIELDS.iter().chain(["conditions"].iter()) {
            out.insert((*key).to_string(), Value::Null);
        }
        return out;
    };
    // In OWNED_FIELDS order (a unit test keeps the two lists the same).
    let values = [
        field(s.phase.as_ref()),
        field(s.reason.as_ref()),
        field(s.message.as_ref()),
        field(s.host_ip.as_ref()),
        field(s.host_ips.as_ref()),
        field(s.pod_ip.as_ref()),
        field(s.pod_ips.as_ref()),
        field(s.start_time.as_ref()),
        field(s.container_statuses.as_ref()),
        field(s.init_container_statuses.as_ref()),
        field(s.conditions.as_ref()),
    ];
    for (key, v) in OWNED_FIELDS.iter().chain(["conditions"].iter()).zip(values) {
        out.insert((*key).to_string(), v);
    }
    out
}

/// Drops `null` members and empty arrays/objects, recursively, so "absent" and "empty" compare
/// equal the way the API server stores them.
fn normalise(mut v: Value) -> Value {
    match &mut v {
        Value::Object(m) => {
            m.retain(|_, member| {
                *member = normalise(member.take());
                !is_empty(member)
            });
            if m.is_empty() {
                return Value::Null;
            }
        }
        Value::Array(a) => {
            for item in a.iter_mut() {
                *item = normalise(item.take());
            }
            if a.is_empty() {
                return Value::Null;
            }
        }
        _ => {}
    }
    v
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Whether `desired` differs from `current` in anything vnode owns.
pub fn needs_write(desired: &PodStatus, current: Option<&PodStatus>) -> bool {
    owned_view(Some(desired)) != owned_view(current)
}

/// Whether a pod phase is terminal. A terminal pod's status is never rewritten to a
/// non-terminal one (the API server refuses that transition too).
pub fn is_terminal_phase(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// The JSON merge patch for `pods/{name}/status`: every owned field (`null` clears one) and
/// the condition list, guarded by the pod's UID and the resourceVersion the status was
/// computed from, so a write based on a stale read is refused (409) instead of dropping a
/// condition someone else added meanwhile.
pub fn status_patch(desired: &PodStatus, uid: &str, resource_version: Option<&str>) -> Value {
    let view = owned_view(Some(desired));
    let mut metadata = json!({ "uid": uid });
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({ "metadata": metadata, "status": Value::Object(view) })
}

/// The identity of an ECI event for de-duplication: type, reason and message. ECI repeats an
/// event with a growing `Count` (e.g. `Started` after each restart) and new timestamps; a pod
/// gets each distinct event once.
pub fn event_identity(kind: &str, reason: &str, message: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    kind.hash(&mut h);
    reason.hash(&mut h);
    message.hash(&mut h);
    h.finish()
}

/// Cuts `s` to at most `max` bytes on a character boundary (event notes are limited to 1 kB,
/// reasons to 128 bytes).
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn running(ip: &str) -> PodStatus {
        PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            start_time: Some(Time("2026-11-25T11:00:00.123456Z".parse().expect("ts"))),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time("2026-11-25T11:00:01Z".parse().expect("ts"))),
                ..Default::default()
            }]),
            container_statuses: Some(vec![ContainerStatus {
                name: "app".into(),
                ready: true,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn equal_statuses_need_no_write_even_after_a_round_trip_through_the_server() {
        let desired = running("10.0.0.1");
        // What the API server gives back: second-precision times, nothing else changed.
        let stored: PodStatus =
            serde_json::from_value(serde_json::to_value(&desired).expect("json")).expect("back");
        assert!(!needs_write(&desired, Some(&stored)));
        // Empty list and absent list are the same.
        let mut empty_init = desired.clone();
        empty_init.init_container_statuses = Some(Vec::new());
        assert!(!needs_write(&empty_init, Some(&stored)));
    }

    #[test]
    fn owned_changes_need_a_write_foreign_fields_do_not() {
        let desired = running("10.0.0.1");
        assert!(needs_write(&desired, None));
        assert!(needs_write(&desired, Some(&running("10.0.0.2"))));
        let mut not_ready = running("10.0.0.1");
        if let Some(c) = not_ready.container_statuses.as_mut() {
            c[0].ready = false;
        }
        assert!(needs_write(&desired, Some(&not_ready)));
        let mut foreign = running("10.0.0.1");
        foreign.nominated_node_name = Some("elsewhere".into());
        foreign.qos_class = Some("Burstable".into());
        assert!(!needs_write(&desired, Some(&foreign)));
    }

    #[test]
    fn the_patch_clears_owned_fields_that_went_away_and_carries_preconditions() {
        let mut desired = running("10.0.0.1");
        desired.reason = None;
        let patch = status_patch(&desired, "u-1", Some("42"));
        assert_eq!(patch["metadata"]["uid"], "u-1");
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert!(patch["status"]["reason"].is_null());
        assert!(
            patch["status"]
                .as_object()
                .expect("object")
                .contains_key("reason"),
            "explicit null clears a stale reason"
        );
        assert_eq!(patch["status"]["podIP"], "10.0.0.1");
        assert_eq!(patch["status"]["startTime"], "2026-11-25T11:00:00Z");
        assert!(patch["status"].get("qosClass").is_none(), "not ours");
    }

    /// `owned_view` converts the owned fields one by one: the keys it gives each value must be
    /// the status's own JSON names for them.
    #[test]
    fn the_owned_view_is_the_owned_part_of_the_whole_status() {
        let mut full = running("10.0.0.1");
        full.reason = Some("Started".into());
        full.message = Some("m".into());
        full.host_ip = Some("192.168.0.1".into());
        full.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP {
            ip: "192.168.0.1".into(),
        }]);
        full.pod_ips = Some(vec![k8s_openapi::api::core::v1::PodIP {
            ip: "10.0.0.1".into(),
        }]);
        full.init_container_statuses = Some(vec![ContainerStatus {
            name: "init".into(),
            ..Default::default()
        }]);
        full.qos_class = Some("Burstable".into());
        let whole = serde_json::to_value(&full).expect("json");
        let view = owned_view(Some(&full));
        let keys: Vec<&str> = OWNED_FIELDS
            .iter()
            .chain(["conditions"].iter())
            .copied()
            .collect();
        assert_eq!(
            view.keys()
                .map(String::as_str)
                .collect::<std::collections::BTreeSet<_>>(),
            keys.iter().copied().collect()
        );
        for key in keys {
            assert!(
                !view[key].is_null(),
                "{key} is set in the status but null in the view"
            );
            assert_eq!(view[key], normalise(whole[key].clone()), "{key}");
        }
        assert!(owned_view(None).values().all(Value::is_null));
        assert_eq!(owned_view(None).len(), OWNED_FIELDS.len() + 1);
    }

    #[test]
    fn terminal_phases() {
        assert!(is_terminal_phase(Some("Failed")));
        assert!(is_terminal_phase(Some("Succeeded")));
        assert!(!is_terminal_phase(Some("Running")));
        assert!(!is_terminal_phase(None));
    }

    #[test]
    fn event_identity_ignores_counts_and_times_but_not_content() {
        let a = event_identity("Normal", "Started", "Started container app");
        assert_eq!(
            a,
            event_identity("Normal", "Started", "Started container app")
        );
        assert_ne!(
            a,
            event_identity("Normal", "Started", "Started container web")
        );
        assert_ne!(
            a,
            event_identity("Warning", "Started", "Started container app")
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
    }
}
