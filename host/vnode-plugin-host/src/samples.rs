//! A realistic sample pod for smoke tests (every load) and benchmarks: a two-container web
//! pod with probes, env, a ConfigMap volume and annotations.

use crate::contract::*;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
    }
}

fn resources(cpu_millis: u64, memory_mib: u64) -> ResourceRequirements {
    let list = |cpu: u64, mem: u64| ResourceList {
        cpu_millis: Some(cpu),
        memory_bytes: Some(mem << 20),
        gpu: None,
        ephemeral_storage_bytes: None,
        other: Vec::new(),
    };
    ResourceRequirements {
        requests: list(cpu_millis, memory_mib),
        limits: list(cpu_millis * 2, memory_mib),
    }
}

/// The sample pod's metadata.
pub fn sample_meta() -> PodMeta {
    PodMeta {
        namespace: "default".into(),
        name: "web-7d4b9c6f5-x2x9k".into(),
        uid: "5f0c2a1e-3b7d-4c1e-9a55-0d2b7c9e4f11".into(),
        labels: vec![
            kv("app", "web"),
            kv("pod-template-hash", "7d4b9c6f5"),
            kv("team", "storefront"),
        ],
        annotations: vec![
            kv("kubernetes.io/psp", "restricted"),
            kv("prometheus.io/scrape", "true"),
            kv("prometheus.io/port", "9090"),
        ],
        owner_kind: Some("ReplicaSet".into()),
        owner_name: Some("web-7d4b9c6f5".into()),
        creation_timestamp: "2026-11-25T10:00:00Z".into(),
    }
}

/// The zones of the sample node.
pub fn sample_zones() -> Vec<ZoneVswitch> {
    vec![
        ZoneVswitch {
            zone_id: "cn-hangzhou-h".into(),
            vswitch_id: "vsw-bp1h000000000000000a".into(),
        },
        ZoneVswitch {
            zone_id: "cn-hangzhou-i".into(),
            vswitch_id: "vsw-bp1i000000000000000b".into(),
        },
        ZoneVswitch {
            zone_id: "cn-hangzhou-j".into(),
            vswitch_id: "vsw-bp1j000000000000000c".into(),
        },
    ]
}

/// A placement input: the pod view and a context with three zones and some usage.
pub fn placement_sample() -> (PodView, PlacementContext) {
    let container = |name: &str, image: &str, cpu, mem| ContainerView {
        name: name.into(),
        image: image.into(),
        resources: resources(cpu, mem),
    };
    let pod = PodView {
        meta: sample_meta(),
        containers: vec![
            container(
                "web",
                "registry.cn-hangzhou.aliyuncs.com/shop/web:1.42.0",
                500,
                1024,
            ),
            container("envoy", "envoyproxy/envoy:v1.31.0", 250, 256),
        ],
        init_containers: vec![container(
            "migrate",
            "registry.cn-hangzhou.aliyuncs.com/shop/migrate:1.42.0",
            250,
            256,
        )],
        node_selector: vec![kv("type", "virtual-kubelet")],
        tolerations: vec![Toleration {
            key: Some("virtual-kubelet.io/provider".into()),
            operator: Some("Exists".into()),
            value: None,
            effect: Some("NoSchedule".into()),
            toleration_seconds: None,
        }],
        priority_class: None,
        priority: Some(0),
        restart_policy: "Always".into(),
        topology_spread: vec![TopologySpreadConstraint {
            topology_key: "topology.kubernetes.io/zone".into(),
            max_skew: 1,
            when_unsatisfiable: "ScheduleAnyway".into(),
            match_labels: vec![kv("app", "web")],
            match_expressions: Vec::new(),
            min_domains: None,
        }],
    };
    let context = PlacementContext {
        region: "cn-hangzhou".into(),
        zones: sample_zones(),
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
        usage: vec![
            ZoneUsage {
                zone_id: "cn-hangzhou-h".into(),
                container_groups: 12,
            },
            ZoneUsage {
                zone_id: "cn-hangzhou-i".into(),
                container_groups: 9,
            },
            ZoneUsage {
                zone_id: "cn-hangzhou-j".into(),
                container_groups: 11,
            },
        ],
        recent_stockouts: vec![Stockout {
            zone_id: "cn-hangzhou-j".into(),
            spec: "2-4Gi".into(),
            seconds_ago: 40,
        }],
        previous_decisions: 0,
        node_name: "vnode-eci".into(),
        cluster_name: "prod-hz".into(),
        config: String::new(),
    };
    (pod, context)
}

fn container(name: &str, image: &str, cpu: u64, mem: u64) -> Container {
    Container {
        name: name.into(),
        image: image.into(),
        command: vec!["/app/server".into()],
        args: vec!["--port=8080".into(), "--log-format=json".into()],
        working_dir: None,
        env: vec![
            EnvVar {
                name: "APP_ENV".into(),
                value: EnvValue::Literal("production".into()),
            },
            EnvVar {
                name: "DB_PASSWORD".into(),
                value: EnvValue::Literal("s3cr3t-from-secret".into()),
            },
            EnvVar {
                name: "POD_IP".into(),
                value: EnvValue::FieldRef("status.podIP".into()),
            },
        ],
        ports: vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            protocol: Some("TCP".into()),
            host_port: None,
        }],
        resources: resources(cpu, mem),
        volume_mounts: vec![VolumeMount {
            name: "config".into(),
            mount_path: "/etc/app".into(),
            sub_path: None,
            read_only: true,
            mount_propagation: None,
        }],
        liveness_probe: Some(Probe {
            handler: Handler::HttpGet(HttpGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::Str("http".into()),
                host: None,
                scheme: None,
                headers: Vec::new(),
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            timeout_seconds: Some(1),
            success_threshold: None,
            failure_threshold: Some(3),
        }),
        readiness_probe: Some(Probe {
            handler: Handler::TcpSocket(TcpSocketAction {
                port: IntOrString::Int(8080),
                host: None,
            }),
            initial_delay_seconds: None,
            period_seconds: Some(5),
            timeout_seconds: None,
            success_threshold: None,
            failure_threshold: None,
        }),
        startup_probe: None,
        lifecycle: None,
        security_context: None,
        image_pull_policy: Some("IfNotPresent".into()),
        termination_message_path: None,
        termination_message_policy: None,
        stdin: false,
        stdin_once: false,
        tty: false,
        restart_policy: None,
    }
}

/// The resolved sample pod.
pub fn resolved_sample() -> ResolvedPod {
    ResolvedPod {
        meta: sample_meta(),
        init_containers: Vec::new(),
        containers: vec![
            container(
                "web",
                "registry.cn-hangzhou.aliyuncs.com/shop/web:1.42.0",
                500,
                1024,
            ),
            container("envoy", "envoyproxy/envoy:v1.31.0", 250, 256),
        ],
        volumes: vec![Volume {
            name: "config".into(),
            source: VolumeSource::ConfigMap(FileSet {
                files: vec![File {
                    path: "app.yaml".into(),
                    content: b"listen: 0.0.0.0:8080\nlog_level: info\n".to_vec(),
                    mode: None,
                }],
                default_mode: Some(0o644),
                optional_missing: false,
            }),
        }],
        image_pull_secrets: Vec::new(),
        restart_policy: "Always".into(),
        dns_policy: Some("ClusterFirst".into()),
        dns_config: None,
        host_aliases: Vec::new(),
        hostname: None,
        subdomain: None,
        active_deadline_seconds: None,
        termination_grace_period_seconds: Some(30),
        share_process_namespace: None,
        host_network: false,
        host_pid: false,
        host_ipc: false,
        security_context: None,
        service_account_name: Some("web".into()),
        node_selector: vec![kv("type", "virtual-kubelet")],
        tolerations: Vec::new(),
        priority_class: None,
    }
}

/// The node defaults of the sample node.
pub fn sample_node_defaults() -> NodeDefaults {
    NodeDefaults {
        region: "cn-hangzhou".into(),
        security_group_id: "sg-bp1000000000000000aa".into(),
        zones: sample_zones(),
        cluster_name: "prod-hz".into(),
        node_name: "vnode-eci".into(),
        cluster_dns: vec!["10.96.0.10".into()],
        cluster_domain: "cluster.local".into(),
    }
}

/// A translator input: the resolved sample pod, an attempt in zone h, the sample node.
pub fn translate_sample() -> TranslateInput {
    TranslateInput {
        pod: resolved_sample(),
        attempt: Attempt {
            zone_id: Some("cn-hangzhou-h".into()),
            vswitch_ids: vec!["vsw-bp1h000000000000000a".into()],
            schedule_strategy: None,
            sizing: Sizing::Auto,
            spot: SpotStrategy::OnDemand,
            spot_duration_hours: None,
            compute_categories: Vec::new(),
            extra_tags: Vec::new(),
        },
        node: sample_node_defaults(),
        config: String::new(),
    }
}
