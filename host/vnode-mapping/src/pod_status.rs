//! An ECI container group (`DescribeContainerGroups`, optionally enriched by
//! `DescribeContainerGroupStatus`) → the Kubernetes `PodStatus` vnode writes back.
//!
//! A pure function of its inputs: the pod (for container order, init containers, readiness
//! gates and the previous status, whose condition transition times and start time are kept
//! when nothing changed) and `now` (the transition time of a condition that did change).
//!
//! Phases follow ECI's documented Kubernetes mapping:
//!
//! | ECI status | phase | note |
//! |---|---|---|
//! | `Scheduling` | Pending | `PodScheduled=False` (`Scheduling`): ECI is still finding an instance |
//! | `Pending` | Pending | containers being created |
//! | `Running` | Running | |
//! | `Restarting`, `Updating` | Pending | not ready while ECI restarts/updates the group |
//! | `Terminating` | Running | preStop hooks run; not ready |
//! | `Succeeded` | Succeeded | |
//! | `Failed` | Failed | |
//! | `Expired` | Failed | reason `Expired`: the spot instance was reclaimed |
//! | `ScheduleFailed` | Failed | reason `ScheduleFailed`, `PodScheduled=False`, message from the latest warning event |
//! | `StartingFailed`, `WatingForDel` (older APIs) | Failed | |
//! | anything else | Unknown | |
//!
//! A group that no longer exists at all has no status to map: [`vanished_status`] builds the
//! `Failed` status vnode writes then (reason [`VANISHED_REASON`]).
//!
//! `DescribeContainerGroupStatus` needs no mapping of its own: vnode uses it to find *which*
//! groups changed (cheap, `SinceSecond`), describes those in full (the only call that returns
//! init containers and events) and passes the status entry's [`ImageIds`] for the image
//! digests.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use vnode_eci::model::{self as eci, ContainerGroupStatus as S};

/// Container IDs vnode reports: `eci://<container-group-id>/<container-name>`. ECI has no
/// runtime container ID; this one is stable across status polls and unique per group.
pub fn container_id(group_id: &str, container: &str) -> String {
    format!("eci://{group_id}/{container}")
}

/// The pod phase for an ECI status (the table in the module docs).
pub fn phase(status: &S) -> &'static str {
    match status {
        S::Scheduling | S::Pending | S::Restarting | S::Updating => "Pending",
        S::Running | S::Terminating => "Running",
        S::Succeeded => "Succeeded",
        S::Failed | S::Expired | S::ScheduleFailed => "Failed",
        S::Other(s) if s == "StartingFailed" || s == "WatingForDel" => "Failed",
        S::Other(_) => "Unknown",
    }
}

/// The image IDs (digests) of a group's containers, by container name: all that
/// [`pod_status`] reads of a `DescribeContainerGroupStatus` entry. The status poller holds
/// one per changed group until it has described and applied them all (10,000 after a
/// burst), so it keeps these two strings per container instead of the whole decoded entry
/// (~3 KiB each: conditions, container states).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageIds(Box<[(Box<str>, Box<str>)]>);

impl ImageIds {
    /// The image IDs of `status`'s containers.
    pub fn of(status: &eci::PodStatus) -> Self {
        Self(
            status
                .container_statuses
                .iter()
                .map(|c| (c.name.as_str().into(), c.image_id.as_str().into()))
                .collect(),
        )
    }

    /// The image ID of the container named `container`.
    pub fn get(&self, container: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| &**name == container)
            .map(|(_, id)| &**id)
    }
}

/// Builds the pod's status from its container group.
///
/// `image_ids` come from the group's entry of `DescribeContainerGroupStatus`
/// ([`ImageIds::of`]), if the caller has it: the digests `DescribeContainerGroups` lacks.
pub fn pod_status(
    group: &eci::ContainerGroup,
    image_ids: Option<&ImageIds>,
    pod: &Pod,
    now: jiff::Timestamp,
) -> PodStatus {
    let previous = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let phase = phase(&group.status);

    // Image IDs (digests) come from `DescribeContainerGroupStatus`; without it, the ID
    // already on the pod is kept while the image is unchanged, so a status built from a
    // plain listing never flips a known digest back to empty.
    let image_id = |name: &str, image: &str| -> String {
        image_ids
            .and_then(|ids| ids.get(name))
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .or_else(|| {
                previous
                    .into_iter()
                    .flat_map(|p| {
                        p.container_statuses
                            .iter()
                            .chain(p.init_container_statuses.iter())
                            .flatten()
                    })
                    .find(|c| c.name == name && c.image == image)
                    .map(|c| c.image_id.clone())
            })
            .unwrap_or_default()
    };
    let find = |name: &str| {
        group
            .containers
            .iter()
            .chain(group.init_containers.iter())
            .find(|c| c.name == name)
    };

    let status_of = |name: &str, spec_image: &str| -> ContainerStatus {
        let info = find(name);
        let (state, last_state, ready, restart_count, image) = match info {
            Some(i) => {
                let state = container_state(&i.current_state, &group.container_group_id, name)
                    .or_else(|| not_started_state(&group.status));
                let last = container_state(&i.previous_state, &group.container_group_id, name);
                let running = state.as_ref().is_some_and(|s| s.running.is_some());
                let image = if i.image.is_empty() {
                    spec_image.to_string()
                } else {
                    i.image.clone()
                };
                (state, last, i.ready && running, i.restart_count, image)
            }
            None => (
                not_started_state(&group.status),
                None,
                false,
                0,
                spec_image.to_string(),
            ),
        };
        let started = state.as_ref().is_some_and(|s| s.running.is_some());
        let has_run = state
            .as_ref()
            .is_some_and(|s| s.running.is_some() || s.terminated.is_some());
        let image_id = image_id(name, &image);
        ContainerStatus {
            name: name.to_string(),
            image,
            image_id,
            container_id: has_run.then(|| container_id(&group.container_group_id, name)),
            ready,
            started: Some(started),
            restart_count: i32::try_from(restart_count.max(0)).unwrap_or(i32::MAX),
            state: state.or_else(|| Some(waiting("ContainerCreating", ""))),
            last_state: Some(last_state.unwrap_or_default()),
            ..Default::default()
        }
    };

    let containers: Vec<ContainerStatus> = match spec {
        Some(s) => {
            // Native sidecars run as regular containers on ECI but report among the init
            // containers in Kubernetes.
            s.containers
                .iter()
                .map(|c| status_of(&c.name, c.image.as_deref().unwrap_or("")))
                .collect()
        }
        None => group
            .containers
            .iter()
            .map(|c| status_of(&c.name, &c.image))
            .collect(),
    };
    let init_containers: Vec<ContainerStatus> = spec
        .and_then(|s| s.init_containers.as_ref())
        .map(|list| {
            list.iter()
                .map(|c| status_of(&c.name, c.image.as_deref().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();

    // Conditions.
    // Init containers are done once each exited 0 (a native sidecar: once it runs), or once
    // the app containers run at all; without init containers a created group is initialised.
    let initialized = match group.status {
        S::Scheduling | S::ScheduleFailed => false,
        S::Running | S::Terminating | S::Succeeded => true,
        _ => init_containers.iter().all(|c| {
            let state = c.state.as_ref();
            let done = state
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0);
            done || (state.is_some_and(|s| s.running.is_some()) && is_sidecar(pod, &c.name))
        }),
    };
    let serving = matches!(group.status, S::Running);
    let all_ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
    let completed = matches!(group.status, S::Succeeded | S::Failed | S::Expired);
    let containers_ready = serving && all_ready;
    let gates_ok = readiness_gates_ok(pod);

    let (scheduled, sched_reason, sched_msg) = match &group.status {
        S::Scheduling => (
            false,
            "Scheduling",
            "ECI is allocating an instance for the container group".to_string(),
        ),
        S::ScheduleFailed => (
            false,
            "ScheduleFailed",
            latest_warning(group).unwrap_or_else(|| "ECI could not create an instance".into()),
        ),
        _ => (true, "", String::new()),
    };
    let not_ready_reason = if completed {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let not_ready_msg = || {
        let names: Vec<&str> = containers
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.as_str())
            .collect();
        if completed || names.is_empty() {
            format!("container group is {}", group.status)
        } else {
            format!("containers with unready status: [{}]", names.join(" "))
        }
    };
    let mut conditions = vec![
        condition("PodScheduled", scheduled, sched_reason, &sched_msg),
        condition(
            "Initialized",
            initialized,
            if initialized {
                ""
            } else {
                "ContainersNotInitialized"
            },
            &if initialized {
                String::new()
            } else {
                "init containers have not completed".to_string()
            },
        ),
        condition(
            "ContainersReady",
            containers_ready,
            if containers_ready {
                ""
            } else {
                not_ready_reason
            },
            &if containers_ready {
                String::new()
            } else {
                not_ready_msg()
            },
        ),
        match (containers_ready, gates_ok) {
            (true, true) => condition("Ready", true, "", ""),
            (true, false) => condition(
                "Ready",
                false,
                "ReadinessGatesNotReady",
                "the pod's readiness gates are not all True",
            ),
            (false, _) => condition("Ready", false, not_ready_reason, &not_ready_msg()),
        },
    ];
    // Keep conditions other writers own (readiness gates, DisruptionTarget …).
    if let Some(prev) = previous.and_then(|p| p.conditions.as_ref()) {
        for c in prev {
            if !conditions.iter().any(|n| n.type_ == c.type_) {
                conditions.push(c.clone());
            }
        }
    }
    for c in &mut conditions {
        let kept = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|list| {
                list.iter()
                    .find(|p| p.type_ == c.type_ && p.status == c.status)
            })
            .and_then(|p| p.last_transition_time.clone());
        if c.last_transition_time.is_none() {
            c.last_transition_time = Some(kept.unwrap_or(Time(now)));
        }
    }

    let (reason, message) = match &group.status {
        S::Expired => (
            Some("Expired".to_string()),
            Some("the spot instance running the pod was reclaimed by ECI".to_string()),
        ),
        S::ScheduleFailed => (Some("ScheduleFailed".to_string()), Some(sched_msg.clone())),
        S::Other(s) if s == "StartingFailed" => (
            Some("StartingFailed".to_string()),
            Some("the container group did not start in time".to_string()),
        ),
        _ => (None, None),
    };

    let ip = (!group.intranet_ip.is_empty()).then(|| group.intranet_ip.clone());
    let mut pod_ips: Vec<PodIP> = ip.iter().map(|i| PodIP { ip: i.clone() }).collect();
    if !group.ipv6_address.is_empty() && ip.is_some() {
        pod_ips.push(PodIP {
            ip: group.ipv6_address.clone(),
        });
    }
    let start_time = previous
        .and_then(|p| p.start_time.clone())
        .or_else(|| parse_time(&group.creation_time))
        .or_else(|| {
            (!matches!(group.status, S::Scheduling | S::ScheduleFailed)).then_some(Time(now))
        });

    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        container_statuses: Some(containers),
        init_container_statuses: (!init_containers.is_empty()).then_some(init_containers),
        // On ECI the instance's ENI address is both (ack-virtual-node reports the same).
        host_ip: ip.clone(),
        host_ips: ip.as_ref().map(|i| vec![HostIP { ip: i.clone() }]),
        pod_ip: ip,
        pod_ips: (!pod_ips.is_empty()).then_some(pod_ips),
        start_time,
        reason,
        message,
        qos_class: previous.and_then(|p| p.qos_class.clone()),
        ..Default::default()
    }
}

/// Reason vnode writes on a pod whose container group no longer exists in ECI.
pub const VANISHED_REASON: &str = "ContainerGroupVanished";

/// The status of a pod whose container group vanished from ECI (deleted behind vnode's back,
/// or aged out of ECI's retention): phase `Failed` with [`VANISHED_REASON`], not ready, and
/// every container that had not finished reported the way the kubelet reports a container
/// it can no longer find (`ContainerStatusUnknown`, exit code 137). Conditions other writers
/// own, transition times that did not change, the start time and finished containers are
/// kept from the pod's current status.
pub fn vanished_status(pod: &Pod, group_id: &str, now: jiff::Timestamp) -> PodStatus {
    let previous = pod.status.clone().unwrap_or_default();
    let lost = |mut c: ContainerStatus| -> ContainerStatus {
        let finished = c.state.as_ref().is_some_and(|s| s.terminated.is_some());
        if !finished {
            let started_at = c
                .state
                .as_ref()
                .and_then(|s| s.running.as_ref())
                .and_then(|r| r.started_at.clone());
            if c.state.as_ref().is_some_and(|s| s.running.is_some()) {
                c.last_state = c.state.take();
            }
            c.state = Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some("ContainerStatusUnknown".into()),
                    message: Some(
                        "The container could not be located when the pod was terminated".into(),
                    ),
                    started_at,
                    finished_at: Some(Time(now)),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        c.ready = false;
        c.started = Some(false);
        c
    };
    let spec_containers = |init: bool| -> Vec<ContainerStatus> {
        let names: Vec<(String, String)> = pod
            .spec
            .iter()
            .flat_map(|s| {
                if init {
                    s.init_containers.clone().unwrap_or_default()
                } else {
                    s.containers.clone()
                }
            })
            .map(|c| (c.name, c.image.unwrap_or_default()))
            .collect();
        let known = if init {
            previous.init_container_statuses.clone()
        } else {
            previous.container_statuses.clone()
        }
        .unwrap_or_default();
        names
            .into_iter()
            .map(|(name, image)| {
                known
                    .iter()
                    .find(|c| c.name == name)
                    .cloned()
                    .unwrap_or_else(|| ContainerStatus {
                        name,
                        image,
                        ..Default::default()
                    })
            })
            .map(lost)
            .collect()
    };
    let containers = spec_containers(false);
    let init_containers = spec_containers(true);
    let message = format!("container group {group_id} no longer exists in ECI");
    let mut conditions = previous.conditions.clone().unwrap_or_default();
    for kind in ["ContainersReady", "Ready"] {
        let fresh = condition(kind, false, "PodFailed", &message);
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            Some(c) if c.status == "False" => {
                c.reason = fresh.reason;
                c.message = fresh.message;
            }
            Some(c) => {
                *c = PodCondition {
                    last_transition_time: Some(Time(now)),
                    ..fresh
                }
            }
            None => conditions.push(PodCondition {
                last_transition_time: Some(Time(now)),
                ..fresh
            }),
        }
    }
    PodStatus {
        phase: Some("Failed".into()),
        reason: Some(VANISHED_REASON.into()),
        message: Some(message),
        conditions: Some(conditions),
        container_statuses: Some(containers),
        init_container_statuses: (!init_containers.is_empty()).then_some(init_containers),
        ..previous
    }
}

fn is_sidecar(pod: &Pod, name: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .and_then(|l| l.iter().find(|c| c.name == name))
        .is_some_and(|c| c.restart_policy.as_deref() == Some("Always"))
}

fn readiness_gates_ok(pod: &Pod) -> bool {
    let Some(gates) = pod.spec.as_ref().and_then(|s| s.readiness_gates.as_ref()) else {
        return true;
    };
    let conds = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    gates.iter().all(|g| {
        conds.is_some_and(|list| {
            list.iter()
                .any(|c| c.type_ == g.condition_type && c.status == "True")
        })
    })
}

fn condition(kind: &str, ok: bool, reason: &str, message: &str) -> PodCondition {
    PodCondition {
        type_: kind.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: (!reason.is_empty()).then(|| reason.to_string()),
            message: (!message.is_empty()).then(|| message.to_string()),
        }),
        ..Default::default()
    }
}

/// The state of a container ECI has not reported (yet).
fn not_started_state(status: &S) -> Option<ContainerState> {
    match status {
        S::Scheduling | S::Pending | S::Restarting | S::Updating => {
            Some(waiting("ContainerCreating", ""))
        }
        S::ScheduleFailed => Some(waiting("ScheduleFailed", "no ECI instance was created")),
        _ => None,
    }
}

fn parse_time(s: &str) -> Option<Time> {
    vnode_eci::wire::parse_timestamp(s).map(Time)
}

/// ECI's `CurrentState`/`PreviousState` → a Kubernetes container state; `None` for an empty one.
/// Current ECI reports `Waiting`/`Running`/`Terminated`; older ones `Succeeded`/`Failed`/
/// `Canceled` for finished containers, which are terminated too.
fn container_state(s: &eci::ContainerState, group_id: &str, name: &str) -> Option<ContainerState> {
    let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
    match s.state.as_str() {
        "" => None,
        "Running" => Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: parse_time(&s.start_time),
            }),
            ..Default::default()
        }),
        "Terminated" | "Succeeded" | "Failed" | "Canceled" => {
            let exit_code = i32::try_from(s.exit_code).unwrap_or(if s.exit_code < 0 {
                i32::MIN
            } else {
                i32::MAX
            });
            let reason = opt(&s.reason)
                .unwrap_or_else(|| if exit_code == 0 { "Completed" } else { "Error" }.to_string());
            Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code,
                    signal: (s.signal != 0).then(|| i32::try_from(s.signal).unwrap_or(0)),
                    reason: Some(reason),
                    message: opt(&s.message).or_else(|| opt(&s.detail_status)),
                    started_at: parse_time(&s.start_time),
                    finished_at: parse_time(&s.finish_time),
                    container_id: Some(container_id(group_id, name)),
                }),
                ..Default::default()
            })
        }
        // `Waiting` and anything newer: waiting, with ECI's reason or detail.
        other => {
            let reason = opt(&s.reason)
                .or_else(|| opt(&s.detail_status))
                .unwrap_or_else(|| {
                    if other == "Waiting" {
                        "ContainerCreating".to_string()
                    } else {
                        other.to_string()
                    }
                });
            Some(waiting(&reason, &s.message))
        }
    }
}

/// The message of the most recent `Warning` event (why scheduling failed).
fn latest_warning(group: &eci::ContainerGroup) -> Option<String> {
    group
        .events
        .iter()
        .filter(|e| e.kind == "Warning")
        .max_by(|a, b| a.last_timestamp.cmp(&b.last_timestamp))
        .map(|e| {
            if e.reason.is_empty() {
                e.message.clone()
            } else {
                format!("{}: {}", e.reason, e.message)
            }
        })
}
