//! The translator's request → the ECI client's typed request.

use vnode_eci::model as eci;
use vnode_mapping::eci_request::{EciRequestError, extra_params, to_create_request, wire_params};
use vnode_plugin_host::contract::*;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: v.into(),
    }
}

fn container(name: &str) -> EciContainer {
    EciContainer {
        name: name.into(),
        image: "nginx:1".into(),
        command: vec!["nginx".into()],
        args: vec!["-g".into(), "daemon off;".into()],
        working_dir: None,
        cpu: Some(0.5),
        memory: Some(1.0),
        gpu: None,
        image_pull_policy: Some("IfNotPresent".into()),
        env: vec![
            EciEnv {
                key: "A".into(),
                value: Some("1".into()),
                field_path: None,
            },
            EciEnv {
                key: "IP".into(),
                value: None,
                field_path: Some("status.podIP".into()),
            },
        ],
        ports: vec![EciPort {
            port: 80,
            protocol: "TCP".into(),
        }],
        volume_mounts: vec![EciVolumeMount {
            name: "cfg".into(),
            mount_path: "/etc/x".into(),
            sub_path: None,
            read_only: true,
            mount_propagation: None,
        }],
        liveness_probe: Some(EciProbe {
            handler: EciHandler::HttpGet(EciHttpGet {
                path: Some("/".into()),
                port: 80,
                scheme: None,
                host: None,
                headers: vec![],
            }),
            initial_delay_seconds: Some(3),
            period_seconds: None,
            timeout_seconds: None,
            success_threshold: None,
            failure_threshold: Some(2),
        }),
        readiness_probe: None,
        startup_probe: None,
        post_start: None,
        pre_stop: Some(EciHandler::HttpGet(EciHttpGet {
            path: Some("/drain".into()),
            port: 80,
            scheme: Some("HTTP".into()),
            host: None,
            headers: vec![kv("X-Drain", "1")],
        })),
        security_context: Some(EciSecurityContext {
            capabilities_add: vec!["NET_ADMIN".into()],
            read_only_root_filesystem: Some(true),
            run_as_user: Some(1000),
            run_as_group: Some(2000),
            run_as_non_root: Some(true),
            privileged: None,
        }),
        stdin: false,
        stdin_once: false,
        tty: true,
        termination_message_path: None,
        termination_message_policy: None,
    }
}

fn request() -> ContainerGroupRequest {
    ContainerGroupRequest {
        name: "ns-web".into(),
        client_token: String::new(),
        zone_id: Some("cn-hangzhou-h".into()),
        vswitch_ids: vec!["vsw-1".into(), "vsw-2".into()],
        security_group_id: Some("sg-1".into()),
        schedule_strategy: Some("VSwitchOrdered".into()),
        cpu: Some(1.0),
        memory: Some(2.0),
        instance_types: vec![],
        compute_categories: vec!["economy".into()],
        restart_policy: "OnFailure".into(),
        spot_strategy: Some("SpotAsPriceGo".into()),
        spot_price_limit: None,
        spot_duration_hours: Some(1),
        tags: vec![kv("vnode.io/pod-uid", "u-1")],
        image_registry_credentials: vec![RegistryCredential {
            server: "r.io".into(),
            user_name: "u".into(),
            password: "p".into(),
        }],
        containers: vec![container("web")],
        init_containers: vec![],
        volumes: vec![EciVolume {
            name: "cfg".into(),
            kind: EciVolumeKind::ConfigFile(EciConfigFileVolume {
                default_mode: Some(420),
                files: vec![EciConfigFile {
                    path: "a".into(),
                    content_base64: "QQ==".into(),
                    mode: Some(256),
                }],
            }),
        }],
        dns_policy: Some("None".into()),
        dns_config: Some(EciDnsConfig {
            name_servers: vec!["10.0.0.10".into()],
            searches: vec![],
            options: vec![("ndots".into(), Some("5".into())), ("edns0".into(), None)],
        }),
        host_aliases: vec![EciHostAlias {
            ip: "1.2.3.4".into(),
            hostnames: vec!["a".into()],
        }],
        hostname: Some("web".into()),
        sysctls: vec![kv("net.ipv4.ping_group_range", "0 1")],
        host_sysctls: vec![kv("net.core.somaxconn", "1024")],
        active_deadline_seconds: Some(60),
        termination_grace_period_seconds: Some(30),
        share_process_namespace: Some(true),
        ram_role_name: Some("role".into()),
        eip: Some(EciEip {
            instance_id: None,
            auto_create_bandwidth_mbps: Some(10),
            isp: Some("BGP".into()),
        }),
        ephemeral_storage_gib: Some(20),
        ntp_servers: vec!["ntp1".into()],
        core_pattern: Some("/core".into()),
        auto_match_image_cache: Some(true),
        image_snapshot_id: None,
        extra_params: vec![
            kv("ResourceGroupId", "rg-1"),
            kv("AcrRegistryInfo.1.InstanceId", "cri-1"),
        ],
    }
}

fn param<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

#[test]
fn every_family_reaches_the_wire() {
    let r = to_create_request(&request(), "vnode-u-1").expect("maps");
    assert_eq!(
        r.client_token.as_deref(),
        Some("vnode-u-1"),
        "the host's token fills an empty one"
    );
    let p = wire_params(&r).expect("flattens");
    let expect = [
        ("ContainerGroupName", "ns-web"),
        ("VSwitchId", "vsw-1,vsw-2"),
        ("RestartPolicy", "OnFailure"),
        ("SpotStrategy", "SpotAsPriceGo"),
        ("ComputeCategory.1", "economy"),
        ("Container.1.Arg.2", "daemon off;"),
        (
            "Container.1.EnvironmentVar.2.FieldRef.FieldPath",
            "status.podIP",
        ),
        ("Container.1.LivenessProbe.HttpGet.Port", "80"),
        ("Container.1.LifecyclePreStopHandlerHttpGetPath", "/drain"),
        (
            "Container.1.LifecyclePreStopHandlerHttpGetHttpHeader.1.Name",
            "X-Drain",
        ),
        ("Container.1.SecurityContext.Capability.Add.1", "NET_ADMIN"),
        ("Container.1.SecurityContext.RunAsUser", "1000"),
        ("Container.1.SecurityContextRunAsGroup", "2000"),
        ("Container.1.SecurityContextRunAsNonRoot", "true"),
        ("Container.1.Tty", "true"),
        ("Container.1.VolumeMount.1.ReadOnly", "true"),
        ("Volume.1.Type", "ConfigFileVolume"),
        ("Volume.1.ConfigFileVolume.ConfigFileToPath.1.Mode", "256"),
        ("DnsConfig.Option.2.Name", "edns0"),
        ("HostAliase.1.Hostname.1", "a"),
        ("SecurityContext.Sysctl.1.Name", "net.ipv4.ping_group_range"),
        ("HostSecurityContext.Sysctl.1.Value", "1024"),
        ("AutoCreateEip", "true"),
        ("EipBandwidth", "10"),
        ("EipISP", "BGP"),
        ("EphemeralStorage", "20"),
        ("NtpServer.1", "ntp1"),
        ("ResourceGroupId", "rg-1"),
        ("AcrRegistryInfo.1.InstanceId", "cri-1"),
        ("ImageRegistryCredential.1.Password", "p"),
    ];
    for (k, v) in expect {
        assert_eq!(param(&p, k), Some(v), "{k}");
    }
    assert_eq!(param(&p, "DnsConfig.Option.2.Value"), None);
    assert_eq!(
        param(&p, "Container.1.Stdin"),
        None,
        "false booleans are not sent"
    );
    let mut sorted = p.clone();
    sorted.sort();
    assert_eq!(p, sorted, "sorted for golden files");
}

#[test]
fn values_ecis_cannot_express_are_refused() {
    let mut r = request();
    r.restart_policy = "Sometimes".into();
    assert!(
        matches!(to_create_request(&r, "t"), Err(EciRequestError::InvalidValue { field, .. }) if field == "restart-policy")
    );

    let mut r = request();
    r.containers[0].image_pull_policy = Some("Maybe".into());
    assert!(
        matches!(to_create_request(&r, "t"), Err(EciRequestError::InvalidValue { field, .. }) if field == "containers[0].image-pull-policy")
    );

    let mut r = request();
    r.containers[0].startup_probe = r.containers[0].liveness_probe.clone();
    assert!(
        matches!(to_create_request(&r, "t"), Err(EciRequestError::InvalidValue { field, .. }) if field == "containers[0].startup-probe")
    );

    let mut r = request();
    if let Some(EciProbe {
        handler: EciHandler::HttpGet(g),
        ..
    }) = r.containers[0].liveness_probe.as_mut()
    {
        g.headers.push(kv("Host", "x"));
    }
    assert!(
        to_create_request(&r, "t").is_err(),
        "probe headers cannot be sent"
    );

    let mut r = request();
    r.init_containers.push(container("init"));
    assert!(
        matches!(to_create_request(&r, "t"), Err(EciRequestError::InvalidValue { field, .. }) if field == "init-containers[0]")
    );

    let mut r = request();
    r.volumes[0].kind = EciVolumeKind::ConfigFile(EciConfigFileVolume {
        default_mode: None,
        files: vec![],
    });
    assert!(to_create_request(&r, "t").is_err());
}

#[test]
fn extra_params_are_checked() {
    assert!(extra_params(&[kv("MaxPendingMinute", "30"), kv("DataCache.1.Bucket", "b")]).is_ok());
    let collide = extra_params(&[kv("Container.1.Foo", "x")]).unwrap_err();
    assert_eq!(
        collide,
        EciRequestError::ExtraParamCollision {
            key: "Container.1.Foo".into(),
            family: "Container".into()
        }
    );
    for bad in [
        "",
        "a.b",
        "X..Y",
        "X.0",
        "X.01",
        "Has-Dash",
        "RegionId",
        "DryRun",
        "Signature",
    ] {
        assert!(
            extra_params(&[kv(bad, "v")]).is_err(),
            "{bad:?} must be refused"
        );
    }
    assert!(
        extra_params(&[kv("Foo", "1"), kv("Foo", "2")]).is_err(),
        "repeats refused"
    );
    let plugin_token = ContainerGroupRequest {
        client_token: "mine".into(),
        ..request()
    };
    assert_eq!(
        to_create_request(&plugin_token, "host")
            .unwrap()
            .client_token
            .as_deref(),
        Some("mine")
    );
    let _ = eci::RestartPolicy::Always;
}
