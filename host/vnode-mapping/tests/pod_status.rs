//! ECI container-group states → Kubernetes pod status, for every ECI status.

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use vnode_eci::model::{
    ContainerGroup, ContainerGroupStatus as S, ContainerInfo, ContainerState, Event,
};
use vnode_mapping::pod_status::{
    ImageIds, VANISHED_REASON, container_id, phase, pod_status, vanished_status,
};

fn pod(yaml: &str) -> Pod {
    serde_yaml::from_str(yaml).expect("test pod parses")
}

fn web_pod() -> Pod {
    pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, uid: u-1}
spec:
  initContainers:
  - {name: init, image: busybox}
  containers:
  - {name: app, image: app:1}
  - {name: sidecar, image: proxy:1}
"#)
}

fn now() -> jiff::Timestamp {
    "2026-11-25T12:00:00Z".parse().expect("valid timestamp")
}

fn state(s: &str, reason: &str, exit: i64, start: &str, finish: &str) -> ContainerState {
    ContainerState {
        state: s.into(),
        reason: reason.into(),
        exit_code: exit,
        start_time: start.into(),
        finish_time: finish.into(),
        ..Default::default()
    }
}

fn info(name: &str, current: ContainerState, ready: bool, restarts: i64) -> ContainerInfo {
    ContainerInfo {
        name: name.into(),
        image: format!("{name}:1"),
        current_state: current,
        ready,
        restart_count: restarts,
        ..Default::default()
    }
}

fn running_group(status: S) -> ContainerGroup {
    let t = "2026-11-25T11:00:05Z";
    ContainerGroup {
        container_group_id: "eci-bp1abc".into(),
        status,
        intranet_ip: "10.1.2.3".into(),
        creation_time: "2026-11-25T11:00:00Z".into(),
        init_containers: vec![info(
            "init",
            state("Terminated", "Completed", 0, t, t),
            false,
            0,
        )],
        containers: vec![
            info("app", state("Running", "Started", 0, t, ""), true, 0),
            info("sidecar", state("Running", "Started", 0, t, ""), true, 2),
        ],
        ..Default::default()
    }
}

fn cond<'a>(s: &'a PodStatus, kind: &str) -> &'a PodCondition {
    s.conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == kind))
        .unwrap_or_else(|| panic!("no {kind} condition"))
}

#[test]
fn phases_for_every_status() {
    let cases = [
        (S::Scheduling, "Pending"),
        (S::ScheduleFailed, "Failed"),
        (S::Pending, "Pending"),
        (S::Running, "Running"),
        (S::Restarting, "Pending"),
        (S::Updating, "Pending"),
        (S::Terminating, "Running"),
        (S::Succeeded, "Succeeded"),
        (S::Failed, "Failed"),
        (S::Expired, "Failed"),
        (S::Other("StartingFailed".into()), "Failed"),
        (S::Other("WatingForDel".into()), "Failed"),
        (S::Other("Brand-new".into()), "Unknown"),
    ];
    for (status, want) in cases {
        assert_eq!(phase(&status), want, "{status}");
        let s = pod_status(&running_group(status.clone()), None, &web_pod(), now());
        assert_eq!(s.phase.as_deref(), Some(want), "{status}");
    }
}

#[test]
fn running_group_is_ready_with_full_container_statuses() {
    let s = pod_status(&running_group(S::Running), None, &web_pod(), now());
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(cond(&s, kind).status, "True", "{kind}");
        assert_eq!(
            cond(&s, kind).last_transition_time.as_ref().map(|t| t.0),
            Some(now())
        );
    }
    assert_eq!(s.pod_ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(s.host_ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(
        s.start_time.as_ref().map(|t| t.0.to_string()).as_deref(),
        Some("2026-11-25T11:00:00Z")
    );
    let cs = s.container_statuses.as_ref().unwrap();
    assert_eq!(
        cs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec!["app", "sidecar"],
        "spec order"
    );
    assert!(cs[0].ready && cs[0].started == Some(true));
    assert_eq!(cs[1].restart_count, 2);
    assert_eq!(
        cs[0].container_id.as_deref(),
        Some(container_id("eci-bp1abc", "app").as_str())
    );
    let running = cs[0].state.as_ref().unwrap().running.as_ref().unwrap();
    assert_eq!(
        running
            .started_at
            .as_ref()
            .map(|t| t.0.to_string())
            .as_deref(),
        Some("2026-11-25T11:00:05Z")
    );
    let init = &s.init_container_statuses.as_ref().unwrap()[0];
    let term = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );
}

#[test]
fn scheduling_and_schedule_failed() {
    let mut g = running_group(S::Scheduling);
    g.containers.clear();
    g.init_containers.clear();
    g.intranet_ip.clear();
    let s = pod_status(&g, None, &web_pod(), now());
    assert_eq!(cond(&s, "PodScheduled").status, "False");
    assert_eq!(
        cond(&s, "PodScheduled").reason.as_deref(),
        Some("Scheduling")
    );
    assert_eq!(cond(&s, "Initialized").status, "False");
    let c = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        c.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("ContainerCreating")
    );
    assert!(c.container_id.is_none() && !c.ready);
    assert!(s.pod_ip.is_none());

    g.status = S::ScheduleFailed;
    g.events = vec![
        Event {
            kind: "Normal".into(),
            reason: "Scheduling".into(),
            last_timestamp: "2026-11-25T11:00:01Z".into(),
            ..Default::default()
        },
        Event {
            kind: "Warning".into(),
            reason: "NoStock".into(),
            message: "no stock in cn-hangzhou-h".into(),
            last_timestamp: "2026-11-25T11:00:03Z".into(),
            ..Default::default()
        },
    ];
    let s = pod_status(&g, None, &web_pod(), now());
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(s.reason.as_deref(), Some("ScheduleFailed"));
    assert_eq!(
        s.message.as_deref(),
        Some("NoStock: no stock in cn-hangzhou-h")
    );
    assert_eq!(
        cond(&s, "PodScheduled").reason.as_deref(),
        Some("ScheduleFailed")
    );
}

#[test]
fn pending_with_init_running() {
    let mut g = running_group(S::Pending);
    g.init_containers[0].current_state = state("Running", "Started", 0, "2026-11-25T11:00:05Z", "");
    g.containers[0].current_state = state("Waiting", "PodInitializing", 0, "", "");
    g.containers[1].current_state = ContainerState::default();
    let s = pod_status(&g, None, &web_pod(), now());
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(cond(&s, "Initialized").status, "False");
    assert_eq!(cond(&s, "Ready").status, "False");
    let cs = s.container_statuses.unwrap();
    assert_eq!(
        cs[0]
            .state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(
        cs[1]
            .state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("ContainerCreating")
    );
}

#[test]
fn restarting_updating_terminating_are_not_ready() {
    for status in [S::Restarting, S::Updating, S::Terminating] {
        let s = pod_status(&running_group(status.clone()), None, &web_pod(), now());
        assert_eq!(cond(&s, "Ready").status, "False", "{status}");
        assert_eq!(cond(&s, "ContainersReady").status, "False", "{status}");
        assert_eq!(cond(&s, "PodScheduled").status, "True", "{status}");
    }
}

#[test]
fn crashloop_last_state_and_terminal_groups() {
    let mut g = running_group(S::Running);
    g.containers[0].current_state = state("Waiting", "CrashLoopBackOff", 0, "", "");
    g.containers[0].previous_state = state(
        "Terminated",
        "",
        137,
        "2026-11-25T11:01:00Z",
        "2026-11-25T11:02:00Z",
    );
    g.containers[0].ready = false;
    g.containers[0].restart_count = 5;
    let s = pod_status(&g, None, &web_pod(), now());
    let c = &s.container_statuses.as_ref().unwrap()[0];
    let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (137, Some("Error"))
    );
    assert_eq!(c.restart_count, 5);
    assert_eq!(
        cond(&s, "Ready").message.as_deref(),
        Some("containers with unready status: [app]")
    );

    let mut g = running_group(S::Failed);
    g.containers[0].current_state = state(
        "Terminated",
        "Error",
        1,
        "2026-11-25T11:00:05Z",
        "2026-11-25T11:05:00Z",
    );
    let s = pod_status(&g, None, &web_pod(), now());
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
    let t = s.container_statuses.as_ref().unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(t.exit_code, 1);
    assert_eq!(
        t.finished_at.map(|t| t.0.to_string()).as_deref(),
        Some("2026-11-25T11:05:00Z")
    );

    let s = pod_status(&running_group(S::Expired), None, &web_pod(), now());
    assert_eq!(s.reason.as_deref(), Some("Expired"));
}

#[test]
fn transition_times_and_foreign_conditions_survive() {
    let mut p = web_pod();
    let earlier: jiff::Timestamp = "2026-11-25T11:30:00Z".parse().unwrap();
    let first = pod_status(&running_group(S::Running), None, &p, earlier);
    let mut prev = first.clone();
    prev.conditions.as_mut().unwrap().push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        ..Default::default()
    });
    prev.qos_class = Some("Burstable".into());
    p.status = Some(prev);
    let again = pod_status(&running_group(S::Running), None, &p, now());
    assert_eq!(
        cond(&again, "Ready")
            .last_transition_time
            .as_ref()
            .map(|t| t.0),
        Some(earlier),
        "unchanged: kept"
    );
    assert_eq!(cond(&again, "DisruptionTarget").status, "True");
    assert_eq!(again.qos_class.as_deref(), Some("Burstable"));
    let changed = pod_status(&running_group(S::Terminating), None, &p, now());
    assert_eq!(
        cond(&changed, "Ready")
            .last_transition_time
            .as_ref()
            .map(|t| t.0),
        Some(now()),
        "changed: now"
    );
}

#[test]
fn readiness_gates_hold_ready_back() {
    let mut p = pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, uid: u-1}
spec:
  readinessGates:
  - conditionType: example.com/lb-ready
  containers:
  - {name: app, image: app:1}
"#);
    let mut g = running_group(S::Running);
    g.init_containers.clear();
    g.containers.truncate(1);
    let s = pod_status(&g, None, &p, now());
    assert_eq!(cond(&s, "ContainersReady").status, "True");
    assert_eq!(
        cond(&s, "Ready").reason.as_deref(),
        Some("ReadinessGatesNotReady")
    );
    p.status = Some(PodStatus {
        conditions: Some(vec![PodCondition {
            type_: "example.com/lb-ready".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    assert_eq!(
        cond(&pod_status(&g, None, &p, now()), "Ready").status,
        "True"
    );
}

#[test]
fn image_ids_come_from_the_status_api() {
    let detail = vnode_eci::model::PodStatus {
        container_statuses: vec![vnode_eci::model::PodContainerStatus {
            name: "app".into(),
            image_id: "registry.example.com/app@sha256:abc".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let s = pod_status(
        &running_group(S::Running),
        Some(&ImageIds::of(&detail)),
        &web_pod(),
        now(),
    );
    let cs = s.container_statuses.unwrap();
    assert_eq!(cs[0].image_id, "registry.example.com/app@sha256:abc");
    assert_eq!(cs[1].image_id, "");
}

#[test]
fn a_known_image_id_survives_a_status_built_without_the_status_api() {
    let detail = vnode_eci::model::PodStatus {
        container_statuses: vec![vnode_eci::model::PodContainerStatus {
            name: "app".into(),
            image_id: "app:1@sha256:abc".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut p = web_pod();
    p.status = Some(pod_status(
        &running_group(S::Running),
        Some(&ImageIds::of(&detail)),
        &p,
        now(),
    ));
    // A listing (no status detail) keeps the digest while the image is the same ...
    let again = pod_status(&running_group(S::Running), None, &p, now());
    assert_eq!(
        again.container_statuses.as_ref().unwrap()[0].image_id,
        "app:1@sha256:abc"
    );
    assert_eq!(again, *p.status.as_ref().unwrap(), "nothing to write");
    // ... and drops it when the image changed.
    let mut g = running_group(S::Running);
    g.containers[0].image = "app:2".into();
    let changed = pod_status(&g, None, &p, now());
    assert_eq!(changed.container_statuses.as_ref().unwrap()[0].image_id, "");
}

#[test]
fn a_vanished_group_fails_the_pod_like_a_lost_container() {
    let mut p = web_pod();
    let earlier: jiff::Timestamp = "2026-11-25T11:30:00Z".parse().unwrap();
    let mut running = pod_status(&running_group(S::Running), None, &p, earlier);
    running.conditions.as_mut().unwrap().push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        ..Default::default()
    });
    p.status = Some(running.clone());
    let s = vanished_status(&p, "eci-bp1abc", now());
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(s.reason.as_deref(), Some(VANISHED_REASON));
    assert!(s.message.as_deref().unwrap().contains("eci-bp1abc"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.1.2.3"), "kept");
    assert_eq!(s.start_time, running.start_time, "kept");
    for kind in ["Ready", "ContainersReady"] {
        assert_eq!(cond(&s, kind).status, "False", "{kind}");
        assert_eq!(
            cond(&s, kind).last_transition_time.as_ref().map(|t| t.0),
            Some(now())
        );
    }
    assert_eq!(
        cond(&s, "PodScheduled")
            .last_transition_time
            .as_ref()
            .map(|t| t.0),
        Some(earlier),
        "untouched condition keeps its time"
    );
    assert_eq!(
        cond(&s, "DisruptionTarget").status,
        "True",
        "foreign condition kept"
    );
    let cs = s.container_statuses.as_ref().unwrap();
    assert_eq!(cs.len(), 2);
    for c in cs {
        let t = c.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (t.exit_code, t.reason.as_deref()),
            (137, Some("ContainerStatusUnknown"))
        );
        assert!(!c.ready);
        assert!(
            c.last_state.as_ref().unwrap().running.is_some(),
            "what ran is the last state"
        );
    }
    let init = &s.init_container_statuses.as_ref().unwrap()[0];
    let t = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (t.exit_code, t.reason.as_deref()),
        (0, Some("Completed")),
        "finished init container unchanged"
    );

    // A pod that never got a status still gets one status per spec container.
    let s = vanished_status(&web_pod(), "eci-x", now());
    assert_eq!(s.container_statuses.as_ref().unwrap().len(), 2);
    assert_eq!(s.init_container_statuses.as_ref().unwrap().len(), 1);
}
