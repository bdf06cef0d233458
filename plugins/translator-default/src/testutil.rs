//! Builders for contract records in unit tests (the generated types have no `Default`).

use vnode_plugin_sdk::translator::*;
use vnode_plugin_sdk::{
    Attempt, KeyValue, PodMeta, ResourceList, ResourceRequirements, Sizing, SpotStrategy,
    ZoneVswitch,
};

pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.into(),
    }
}

pub fn rl() -> ResourceList {
    ResourceList {
        cpu_millis: None,
        memory_bytes: None,
        gpu: None,
        ephemeral_storage_bytes: None,
        other: vec![],
    }
}

pub fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: format!("registry.example.com/{name}:1"),
        command: vec![],
        args: vec![],
        working_dir: None,
        env: vec![],
        ports: vec![],
        resources: ResourceRequirements {
            requests: rl(),
            limits: rl(),
        },
        volume_mounts: vec![],
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
    }
}

pub fn sized(
    mut c: Container,
    cpu_req: u64,
    mem_req_mib: u64,
    cpu_lim: Option<u64>,
    mem_lim_mib: Option<u64>,
) -> Container {
    c.resources.requests.cpu_millis = Some(cpu_req);
    c.resources.requests.memory_bytes = Some(mem_req_mib << 20);
    c.resources.limits.cpu_millis = cpu_lim;
    c.resources.limits.memory_bytes = mem_lim_mib.map(|m| m << 20);
    c
}

pub fn pod() -> ResolvedPod {
    ResolvedPod {
        meta: PodMeta {
            namespace: "shop".into(),
            name: "web-0".into(),
            uid: "0b1c2d3e-aaaa-bbbb-cccc-000000000001".into(),
            labels: vec![],
            annotations: vec![],
            owner_kind: None,
            owner_name: None,
            creation_timestamp: "2026-11-25T18:00:00Z".into(),
        },
        init_containers: vec![],
        containers: vec![container("app")],
        volumes: vec![],
        image_pull_secrets: vec![],
        restart_policy: "Always".into(),
        dns_policy: None,
        dns_config: None,
        host_aliases: vec![],
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
        node_selector: vec![],
        tolerations: vec![],
        priority_class: None,
    }
}

pub fn attempt() -> Attempt {
    Attempt {
        zone_id: None,
        vswitch_ids: vec![],
        schedule_strategy: None,
        sizing: Sizing::Auto,
        spot: SpotStrategy::OnDemand,
        spot_duration_hours: None,
        compute_categories: vec![],
        extra_tags: vec![],
    }
}

pub fn input(pod: ResolvedPod) -> TranslateInput {
    TranslateInput {
        pod,
        attempt: attempt(),
        node: NodeDefaults {
            region: "cn-hangzhou".into(),
            security_group_id: "sg-node".into(),
            zones: vec![
                ZoneVswitch {
                    zone_id: "cn-hangzhou-h".into(),
                    vswitch_id: "vsw-h".into(),
                },
                ZoneVswitch {
                    zone_id: "cn-hangzhou-j".into(),
                    vswitch_id: "vsw-j".into(),
                },
            ],
            cluster_name: "prod".into(),
            node_name: "vnode-1".into(),
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: "cluster.local".into(),
        },
        config: String::new(),
    }
}

/// The refusal's field and message, or a panic if the translation succeeded.
pub fn refusal(r: Result<ContainerGroupRequest, TranslateError>) -> (String, String, &'static str) {
    match r {
        Ok(_) => panic!("expected a refusal"),
        Err(TranslateError::InvalidPod(e)) => (e.field, e.message, "invalid"),
        Err(TranslateError::Unsupported(e)) => (e.field, e.message, "unsupported"),
        Err(TranslateError::Internal(m)) => (String::new(), m, "internal"),
    }
}
