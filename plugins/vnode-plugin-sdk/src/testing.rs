//! Builders for native unit tests of plugin logic: a pod view and a context.

use crate::placement::{ContainerView, PlacementContext, PodView, ZoneUsage};
use crate::{
    InstanceSpec, KeyValue, PodMeta, ResourceList, ResourceRequirements, Toleration, ZoneVswitch,
};

/// A pod `namespace/name` with no labels, annotations or containers.
pub fn pod(namespace: &str, name: &str) -> PodView {
    PodView {
        meta: PodMeta {
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("uid-{namespace}-{name}"),
            labels: Vec::new(),
            annotations: Vec::new(),
            owner_kind: None,
            owner_name: None,
            creation_timestamp: "2026-01-01T00:00:00Z".into(),
        },
        containers: Vec::new(),
        init_containers: Vec::new(),
        node_selector: Vec::new(),
        tolerations: Vec::new(),
        priority_class: None,
        priority: None,
        restart_policy: "Always".into(),
        topology_spread: Vec::new(),
    }
}

/// Adds a zone topology spread constraint (`topology.kubernetes.io/zone`, no selector).
pub fn spread_over_zones(mut pod: PodView, max_skew: i32, when_unsatisfiable: &str) -> PodView {
    pod.topology_spread
        .push(crate::placement::TopologySpreadConstraint {
            topology_key: crate::pod::ZONE_TOPOLOGY_KEY.into(),
            max_skew,
            when_unsatisfiable: when_unsatisfiable.into(),
            match_labels: Vec::new(),
            match_expressions: Vec::new(),
            min_domains: None,
        });
    pod
}

/// Adds an annotation.
pub fn annotate(mut pod: PodView, key: &str, value: &str) -> PodView {
    pod.meta.annotations.push(KeyValue {
        key: key.into(),
        value: value.into(),
    });
    pod
}

/// Adds a label.
pub fn label(mut pod: PodView, key: &str, value: &str) -> PodView {
    pod.meta.labels.push(KeyValue {
        key: key.into(),
        value: value.into(),
    });
    pod
}

/// Adds an `Equal` toleration for `key=value` (any effect).
pub fn tolerate(mut pod: PodView, key: &str, value: &str) -> PodView {
    pod.tolerations.push(Toleration {
        key: Some(key.into()),
        operator: Some("Equal".into()),
        value: Some(value.into()),
        effect: None,
        toleration_seconds: None,
    });
    pod
}

/// A container requesting `cpu_millis` and `memory_bytes` (each optional), no limits.
pub fn container(name: &str, cpu_millis: Option<u64>, memory_bytes: Option<u64>) -> ContainerView {
    let empty = ResourceList {
        cpu_millis: None,
        memory_bytes: None,
        gpu: None,
        ephemeral_storage_bytes: None,
        other: Vec::new(),
    };
    ContainerView {
        name: name.into(),
        image: format!("registry.example/{name}:1"),
        resources: ResourceRequirements {
            requests: ResourceList {
                cpu_millis,
                memory_bytes,
                ..empty.clone()
            },
            limits: empty,
        },
    }
}

/// Adds a container requesting `cpu_millis` and `memory_mib`.
pub fn with_container(mut pod: PodView, name: &str, cpu_millis: u64, memory_mib: u64) -> PodView {
    pod.containers
        .push(container(name, Some(cpu_millis), Some(memory_mib << 20)));
    pod
}

/// A context in `cn-hangzhou` with the given `(zone, vswitch, running groups)` and config.
pub fn context(zones: &[(&str, &str, u32)], config: &str) -> PlacementContext {
    PlacementContext {
        region: "cn-hangzhou".into(),
        zones: zones
            .iter()
            .map(|(z, v, _)| ZoneVswitch {
                zone_id: (*z).into(),
                vswitch_id: (*v).into(),
            })
            .collect(),
        candidate_specs: [
            (250, 512),
            (500, 1024),
            (1000, 2048),
            (2000, 4096),
            (4000, 8192),
        ]
        .into_iter()
        .map(|(cpu_millis, memory_mib)| InstanceSpec {
            cpu_millis,
            memory_mib,
        })
        .collect(),
        usage: zones
            .iter()
            .map(|(z, _, n)| ZoneUsage {
                zone_id: (*z).into(),
                container_groups: *n,
            })
            .collect(),
        recent_stockouts: Vec::new(),
        previous_decisions: 0,
        node_name: "vnode".into(),
        cluster_name: "test".into(),
        config: config.into(),
    }
}

/// A resolved pod `namespace/name` with one container `app` (`registry.example/app:1`,
/// requesting 500m CPU and 512 MiB), as the host hands it to a translator.
pub fn resolved_pod(namespace: &str, name: &str) -> crate::translator::ResolvedPod {
    let meta = pod(namespace, name).meta;
    let view = container("app", Some(500), Some(512 << 20));
    crate::translator::ResolvedPod {
        meta,
        init_containers: Vec::new(),
        containers: vec![crate::translator::Container {
            name: view.name,
            image: view.image,
            command: Vec::new(),
            args: Vec::new(),
            working_dir: None,
            env: Vec::new(),
            ports: Vec::new(),
            resources: view.resources,
            volume_mounts: Vec::new(),
            liveness_probe: None,
            readiness_probe: None,
            startup_probe: None,
            lifecycle: None,
            security_context: None,
            image_pull_policy: None,
            termination_message_path: None,
            termination_message_policy: None,
            stdin: false,
            stdin_once: false,
            tty: false,
            restart_policy: None,
        }],
        volumes: Vec::new(),
        image_pull_secrets: Vec::new(),
        restart_policy: "Always".into(),
        dns_policy: None,
        dns_config: None,
        host_aliases: Vec::new(),
        hostname: None,
        subdomain: None,
        active_deadline_seconds: None,
        termination_grace_period_seconds: None,
        share_process_namespace: None,
        host_network: false,
        host_pid: false,
        host_ipc: false,
        security_context: None,
        service_account_name: None,
        node_selector: Vec::new(),
        tolerations: Vec::new(),
        priority_class: None,
    }
}

/// A translator input for `pod`: an on-demand, auto-sized attempt in `cn-hangzhou-h` and a
/// node with two zones and security group `sg-test`.
pub fn translate_input(pod: crate::translator::ResolvedPod) -> crate::translator::TranslateInput {
    let zones = context(
        &[("cn-hangzhou-h", "vsw-h", 0), ("cn-hangzhou-i", "vsw-i", 0)],
        "",
    )
    .zones;
    crate::translator::TranslateInput {
        pod,
        attempt: crate::decide::attempt_in(&zones[0]),
        node: crate::translator::NodeDefaults {
            region: "cn-hangzhou".into(),
            security_group_id: "sg-test".into(),
            zones,
            cluster_name: "test".into(),
            node_name: "vnode".into(),
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
        },
        config: String::new(),
    }
}
