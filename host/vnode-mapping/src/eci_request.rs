//! The translator's `container-group-request` → `vnode_eci`'s typed `CreateContainerGroup`
//! request. The ECI client owns the wire encoding; this module only moves fields across and
//! checks what the contract leaves as strings (enums, the `extra-params` escape hatch).
//!
//! Nothing is dropped silently: a contract value that the ECI API cannot express (a startup
//! probe, probe headers) is an [`EciRequestError`], so a translator plugin learns about it
//! instead of having it vanish.

use vnode_eci::model as eci;
use vnode_plugin_host::contract as c;

/// Why a translator's request cannot be sent to ECI. Each names the contract field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EciRequestError {
    /// A value ECI does not accept (an unknown enum string, a missing required part).
    #[error("{field}: {message}")]
    InvalidValue {
        /// The request field, e.g. `containers[0].image-pull-policy`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// An `extra-params` key that a modelled field already covers (or a protocol parameter).
    #[error("extra-params: {key:?} collides with the modelled parameter family {family:?}")]
    ExtraParamCollision {
        /// The offending key.
        key: String,
        /// The top-level parameter it collides with.
        family: String,
    },
    /// A malformed or repeated `extra-params` key.
    #[error("extra-params: {key:?} {reason}")]
    InvalidExtraParam {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl EciRequestError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidValue {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Top-level CreateContainerGroup parameters the contract record models (an `extra-params`
/// key in one of these families is refused), plus the protocol parameters only the client sets.
pub const MODELLED_FAMILIES: &[&str] = &[
    "ContainerGroupName",
    "ClientToken",
    "ZoneId",
    "VSwitchId",
    "SecurityGroupId",
    "ScheduleStrategy",
    "Cpu",
    "Memory",
    "InstanceType",
    "ComputeCategory",
    "RestartPolicy",
    "SpotStrategy",
    "SpotPriceLimit",
    "SpotDuration",
    "Tag",
    "ImageRegistryCredential",
    "Container",
    "InitContainer",
    "Volume",
    "DnsPolicy",
    "DnsConfig",
    "HostAliase",
    "HostName",
    "SecurityContext",
    "HostSecurityContext",
    "ActiveDeadlineSeconds",
    "TerminationGracePeriodSeconds",
    "ShareProcessNamespace",
    "RamRoleName",
    "EipInstanceId",
    "AutoCreateEip",
    "EipBandwidth",
    "EipISP",
    "EphemeralStorage",
    "NtpServer",
    "CorePattern",
    "AutoMatchImageCache",
    "ImageSnapshotId",
    // Set by the client or never by a plugin.
    "RegionId",
    "DryRun",
    "Action",
    "Version",
    "Format",
    "AccessKeyId",
    "SecurityToken",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "SignatureType",
    "Timestamp",
];

/// Converts a translator's request. `client_token` is used when the plugin left
/// `client-token` empty (the contract says the host fills it, normally with
/// [`vnode_eci::client_token_for_pod`]).
pub fn to_create_request(
    req: &c::ContainerGroupRequest,
    client_token: &str,
) -> Result<eci::CreateContainerGroupRequest, EciRequestError> {
    let token = if req.client_token.is_empty() {
        client_token
    } else {
        req.client_token.as_str()
    };
    let containers = req
        .containers
        .iter()
        .enumerate()
        .map(|(i, ct)| container(ct, &format!("containers[{i}]"), false))
        .collect::<Result<Vec<_>, _>>()?;
    let init_containers = req
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, ct)| container(ct, &format!("init-containers[{i}]"), true))
        .collect::<Result<Vec<_>, _>>()?;
    let volumes = req
        .volumes
        .iter()
        .enumerate()
        .map(|(i, v)| volume(v, &format!("volumes[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let sysctls = |list: &[c::KeyValue]| {
        (!list.is_empty()).then(|| eci::PodSecurityContext {
            sysctls: list
                .iter()
                .map(|kv| eci::NameValue {
                    name: kv.key.clone(),
                    value: Some(kv.value.clone()),
                })
                .collect(),
        })
    };
    let (eip_instance_id, auto_create_eip, eip_bandwidth, eip_isp) = match &req.eip {
        None => (None, None, None, None),
        Some(e) => (
            e.instance_id.clone(),
            e.auto_create_bandwidth_mbps.map(|_| true),
            e.auto_create_bandwidth_mbps.map(i64::from),
            e.isp.clone(),
        ),
    };
    let mut out = eci::CreateContainerGroupRequest {
        container_group_name: req.name.clone(),
        containers,
        init_containers,
        volumes,
        restart_policy: Some(restart_policy(&req.restart_policy)?),
        cpu: req.cpu,
        memory: req.memory,
        instance_types: req.instance_types.clone(),
        compute_category: req.compute_categories.clone(),
        zone_id: req.zone_id.clone(),
        security_group_id: req.security_group_id.clone(),
        vswitch_ids: req.vswitch_ids.clone(),
        schedule_strategy: req.schedule_strategy.clone(),
        spot_strategy: req
            .spot_strategy
            .as_deref()
            .map(spot_strategy)
            .transpose()?,
        spot_price_limit: req.spot_price_limit,
        spot_duration: req.spot_duration_hours.map(i64::from),
        client_token: (!token.is_empty()).then(|| token.to_string()),
        tags: req
            .tags
            .iter()
            .map(|t| eci::Tag::new(&t.key, &t.value))
            .collect(),
        image_registry_credentials: req
            .image_registry_credentials
            .iter()
            .map(|r| eci::ImageRegistryCredential {
                server: r.server.clone(),
                user_name: r.user_name.clone(),
                password: r.password.clone(),
            })
            .collect(),
        auto_match_image_cache: req.auto_match_image_cache,
        image_snapshot_id: req.image_snapshot_id.clone(),
        dns_policy: req.dns_policy.clone(),
        dns_config: req.dns_config.as_ref().map(|d| eci::DnsConfig {
            name_servers: d.name_servers.clone(),
            searches: d.searches.clone(),
            options: d
                .options
                .iter()
                .map(|(n, v)| eci::NameValue {
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect(),
        }),
        host_aliases: req
            .host_aliases
            .iter()
            .map(|h| eci::HostAlias {
                ip: h.ip.clone(),
                hostnames: h.hostnames.clone(),
            })
            .collect(),
        host_name: req.hostname.clone(),
        security_context: sysctls(&req.sysctls),
        host_security_context: sysctls(&req.host_sysctls),
        eip_instance_id,
        auto_create_eip,
        eip_bandwidth,
        eip_isp,
        ephemeral_storage: req.ephemeral_storage_gib.map(i64::from),
        active_deadline_seconds: req.active_deadline_seconds,
        termination_grace_period_seconds: req.termination_grace_period_seconds,
        ram_role_name: req.ram_role_name.clone(),
        share_process_namespace: req.share_process_namespace,
        core_pattern: req.core_pattern.clone(),
        ntp_servers: req.ntp_servers.clone(),
        ..Default::default()
    };
    out.extra = extra_params(&req.extra_params)?;
    Ok(out)
}

/// Validates `extra-params`: well-formed keys (`Name`, `Name.1.Sub`), no repeats, no key in a
/// family the record models.
pub fn extra_params(params: &[c::KeyValue]) -> Result<Vec<(String, String)>, EciRequestError> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(params.len());
    for kv in params {
        let key = kv.key.as_str();
        let bad = |reason: &str| EciRequestError::InvalidExtraParam {
            key: key.to_string(),
            reason: reason.to_string(),
        };
        let segments: Vec<&str> = key.split('.').collect();
        if key.is_empty() || segments.iter().any(|s| s.is_empty()) {
            return Err(bad("is not a flattened parameter name (empty segment)"));
        }
        if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.') {
            return Err(bad("may contain only letters, digits and '.'"));
        }
        if !segments[0].as_bytes()[0].is_ascii_uppercase() {
            return Err(bad("must start with an upper-case parameter name"));
        }
        for s in &segments[1..] {
            if s.bytes().all(|b| b.is_ascii_digit()) && (s.starts_with('0')) {
                return Err(bad("list indices are 1-based without leading zeros"));
            }
        }
        if let Some(family) = MODELLED_FAMILIES.iter().find(|f| **f == segments[0]) {
            return Err(EciRequestError::ExtraParamCollision {
                key: key.to_string(),
                family: family.to_string(),
            });
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(bad("is given twice"));
        }
        out.push((key.to_string(), kv.value.clone()));
    }
    Ok(out)
}

fn restart_policy(s: &str) -> Result<eci::RestartPolicy, EciRequestError> {
    match s {
        "" | "Always" => Ok(eci::RestartPolicy::Always),
        "OnFailure" => Ok(eci::RestartPolicy::OnFailure),
        "Never" => Ok(eci::RestartPolicy::Never),
        other => Err(EciRequestError::invalid(
            "restart-policy",
            format!("{other:?} is not Always, OnFailure or Never"),
        )),
    }
}

fn spot_strategy(s: &str) -> Result<eci::SpotStrategy, EciRequestError> {
    match s {
        "NoSpot" => Ok(eci::SpotStrategy::NoSpot),
        "SpotAsPriceGo" => Ok(eci::SpotStrategy::SpotAsPriceGo),
        "SpotWithPriceLimit" => Ok(eci::SpotStrategy::SpotWithPriceLimit),
        other => Err(EciRequestError::invalid(
            "spot-strategy",
            format!("{other:?} is not NoSpot, SpotAsPriceGo or SpotWithPriceLimit"),
        )),
    }
}

fn pull_policy(s: &str, at: &str) -> Result<eci::ImagePullPolicy, EciRequestError> {
    match s {
        "Always" => Ok(eci::ImagePullPolicy::Always),
        "IfNotPresent" => Ok(eci::ImagePullPolicy::IfNotPresent),
        "Never" => Ok(eci::ImagePullPolicy::Never),
        other => Err(EciRequestError::invalid(
            format!("{at}.image-pull-policy"),
            format!("{other:?} is not Always, IfNotPresent or Never"),
        )),
    }
}

fn probe(p: &c::EciProbe, at: &str) -> Result<eci::Probe, EciRequestError> {
    let mut out = eci::Probe {
        initial_delay_seconds: p.initial_delay_seconds.map(i64::from),
        period_seconds: p.period_seconds.map(i64::from),
        timeout_seconds: p.timeout_seconds.map(i64::from),
        success_threshold: p.success_threshold.map(i64::from),
        failure_threshold: p.failure_threshold.map(i64::from),
        ..Default::default()
    };
    match &p.handler {
        c::EciHandler::Exec(cmd) => {
            out.exec = Some(eci::ExecAction {
                command: cmd.clone(),
            })
        }
        c::EciHandler::HttpGet(g) => {
            if !g.headers.is_empty() || g.host.is_some() {
                return Err(EciRequestError::invalid(
                    format!("{at}.http-get"),
                    "ECI probes cannot send a host or headers",
                ));
            }
            out.http_get = Some(eci::HttpGetAction {
                path: g.path.clone(),
                port: Some(i64::from(g.port)),
                scheme: g.scheme.clone(),
            });
        }
        c::EciHandler::TcpSocket(t) => {
            out.tcp_socket = Some(eci::TcpSocketAction {
                port: Some(i64::from(t.port)),
                host: t.host.clone(),
            })
        }
    }
    Ok(out)
}

fn headers(h: &[c::KeyValue]) -> Vec<eci::HttpHeader> {
    h.iter()
        .map(|kv| eci::HttpHeader {
            name: kv.key.clone(),
            value: kv.value.clone(),
        })
        .collect()
}

fn container(
    ct: &c::EciContainer,
    at: &str,
    init: bool,
) -> Result<eci::Container, EciRequestError> {
    if init
        && (ct.liveness_probe.is_some()
            || ct.readiness_probe.is_some()
            || ct.post_start.is_some()
            || ct.pre_stop.is_some())
    {
        return Err(EciRequestError::invalid(
            at,
            "ECI init containers have no probes or lifecycle hooks",
        ));
    }
    if ct.startup_probe.is_some() {
        return Err(EciRequestError::invalid(
            format!("{at}.startup-probe"),
            "ECI has no startup probe (fold it into the liveness probe's initial delay)",
        ));
    }
    let sc = ct.security_context.as_ref();
    let nested_sc = sc
        .map(|s| eci::ContainerSecurityContext {
            capability: (!s.capabilities_add.is_empty()).then(|| eci::Capability {
                add: s.capabilities_add.clone(),
            }),
            read_only_root_filesystem: s.read_only_root_filesystem,
            run_as_user: s.run_as_user,
        })
        .filter(|s| {
            s.capability.is_some()
                || s.read_only_root_filesystem.is_some()
                || s.run_as_user.is_some()
        });
    let mut out = eci::Container {
        name: ct.name.clone(),
        image: ct.image.clone(),
        cpu: ct.cpu,
        memory: ct.memory,
        gpu: ct.gpu.map(i64::from),
        working_dir: ct.working_dir.clone(),
        image_pull_policy: ct
            .image_pull_policy
            .as_deref()
            .map(|p| pull_policy(p, at))
            .transpose()?,
        command: ct.command.clone(),
        args: ct.args.clone(),
        env: ct
            .env
            .iter()
            .map(|e| eci::EnvVar {
                key: e.key.clone(),
                value: e.value.clone(),
                field_ref: e
                    .field_path
                    .clone()
                    .map(|field_path| eci::FieldRef { field_path }),
            })
            .collect(),
        ports: ct
            .ports
            .iter()
            .map(|p| eci::ContainerPort {
                port: i64::from(p.port),
                protocol: Some(p.protocol.clone()),
            })
            .collect(),
        volume_mounts: ct
            .volume_mounts
            .iter()
            .map(|m| eci::VolumeMount {
                name: m.name.clone(),
                mount_path: m.mount_path.clone(),
                sub_path: m.sub_path.clone(),
                read_only: m.read_only.then_some(true),
                mount_propagation: m.mount_propagation.clone(),
            })
            .collect(),
        readiness_probe: ct
            .readiness_probe
            .as_ref()
            .map(|p| probe(p, &format!("{at}.readiness-probe")))
            .transpose()?,
        liveness_probe: ct
            .liveness_probe
            .as_ref()
            .map(|p| probe(p, &format!("{at}.liveness-probe")))
            .transpose()?,
        security_context: nested_sc,
        security_context_privileged: sc.and_then(|s| s.privileged),
        security_context_run_as_group: sc.and_then(|s| s.run_as_group),
        security_context_run_as_non_root: sc.and_then(|s| s.run_as_non_root),
        stdin: ct.stdin.then_some(true),
        stdin_once: ct.stdin_once.then_some(true),
        tty: ct.tty.then_some(true),
        termination_message_path: ct.termination_message_path.clone(),
        termination_message_policy: ct.termination_message_policy.clone(),
        ..Default::default()
    };
    if let Some(h) = &ct.post_start {
        match h {
            c::EciHandler::Exec(cmd) => out.lifecycle_post_start_handler_exec = cmd.clone(),
            c::EciHandler::HttpGet(g) => {
                out.lifecycle_post_start_handler_http_get_host = g.host.clone();
                out.lifecycle_post_start_handler_http_get_port = Some(i64::from(g.port));
                out.lifecycle_post_start_handler_http_get_path = g.path.clone();
                out.lifecycle_post_start_handler_http_get_scheme = g.scheme.clone();
                out.lifecycle_post_start_handler_http_get_http_headers = headers(&g.headers);
            }
            c::EciHandler::TcpSocket(t) => {
                out.lifecycle_post_start_handler_tcp_socket_host = t.host.clone();
                out.lifecycle_post_start_handler_tcp_socket_port = Some(i64::from(t.port));
            }
        }
    }
    if let Some(h) = &ct.pre_stop {
        match h {
            c::EciHandler::Exec(cmd) => out.lifecycle_pre_stop_handler_exec = cmd.clone(),
            c::EciHandler::HttpGet(g) => {
                out.lifecycle_pre_stop_handler_http_get_host = g.host.clone();
                out.lifecycle_pre_stop_handler_http_get_port = Some(i64::from(g.port));
                out.lifecycle_pre_stop_handler_http_get_path = g.path.clone();
                out.lifecycle_pre_stop_handler_http_get_scheme = g.scheme.clone();
                out.lifecycle_pre_stop_handler_http_get_http_headers = headers(&g.headers);
            }
            c::EciHandler::TcpSocket(t) => {
                out.lifecycle_pre_stop_handler_tcp_socket_host = t.host.clone();
                out.lifecycle_pre_stop_handler_tcp_socket_port = Some(i64::from(t.port));
            }
        }
    }
    Ok(out)
}

fn volume(v: &c::EciVolume, at: &str) -> Result<eci::Volume, EciRequestError> {
    let mut out = eci::Volume {
        name: v.name.clone(),
        ..Default::default()
    };
    match &v.kind {
        c::EciVolumeKind::EmptyDir(e) => {
            out.kind = Some(eci::VolumeType::EmptyDirVolume);
            out.empty_dir_volume = Some(eci::EmptyDirVolume {
                medium: e.medium.clone(),
                size_limit: e.size_limit.clone(),
            });
        }
        c::EciVolumeKind::Nfs(n) => {
            out.kind = Some(eci::VolumeType::NfsVolume);
            out.nfs_volume = Some(eci::NfsVolume {
                server: n.server.clone(),
                path: n.path.clone(),
                read_only: n.read_only.then_some(true),
            });
        }
        c::EciVolumeKind::ConfigFile(f) => {
            if f.files.is_empty() {
                return Err(EciRequestError::invalid(
                    format!("{at}.config-file"),
                    "a config-file volume needs at least one file",
                ));
            }
            out.kind = Some(eci::VolumeType::ConfigFileVolume);
            out.config_file_volume = Some(eci::ConfigFileVolume {
                default_mode: f.default_mode.map(i64::from),
                files: f
                    .files
                    .iter()
                    .map(|file| eci::ConfigFileToPath {
                        path: file.path.clone(),
                        content: file.content_base64.clone(),
                        mode: file.mode.map(i64::from),
                    })
                    .collect(),
            });
        }
        c::EciVolumeKind::Flex(f) => {
            out.kind = Some(eci::VolumeType::FlexVolume);
            out.flex_volume = Some(eci::FlexVolume {
                driver: f.driver.clone(),
                fs_type: f.fs_type.clone(),
                options: f.options.clone(),
            });
        }
        c::EciVolumeKind::Disk(d) => {
            let Some(disk_id) = d.disk_id.clone() else {
                return Err(EciRequestError::invalid(
                    format!("{at}.disk.disk-id"),
                    "a DiskVolume needs the disk's ID",
                ));
            };
            out.kind = Some(eci::VolumeType::DiskVolume);
            out.disk_volume = Some(eci::DiskVolume {
                disk_id,
                disk_size: d.size_gib.map(i64::from),
                fs_type: d.fs_type.clone(),
            });
        }
        c::EciVolumeKind::HostPath(h) => {
            out.kind = Some(eci::VolumeType::HostPathVolume);
            out.host_path_volume = Some(eci::HostPathVolume {
                path: h.path.clone(),
                kind: h.type_.clone(),
            });
        }
    }
    Ok(out)
}

/// The request as the ECI client puts it on the wire (minus `RegionId` and the signature):
/// the flattened typed parameters followed by the `extra` pairs, sorted by key. Used by the
/// golden tests and by `vnode` diagnostics.
pub fn wire_params(
    req: &eci::CreateContainerGroupRequest,
) -> Result<Vec<(String, String)>, vnode_eci::wire::params::ParamError> {
    let mut params = vnode_eci::wire::params::to_params(req)?;
    params.extend(req.extra.iter().cloned());
    params.sort();
    Ok(params)
}
