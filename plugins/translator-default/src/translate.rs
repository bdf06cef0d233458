//! The whole mapping: a resolved pod plus one placement attempt → a CreateContainerGroup request.

use vnode_plugin_sdk::translator::{
    Container, ContainerGroupRequest, EciEip, ResolvedPod, TranslateInput,
};
use vnode_plugin_sdk::{KeyValue, Sizing, SpotStrategy};

use crate::annotations::{self as ann, Annotations};
use crate::containers::map_container;
use crate::errors::{At, Result, invalid, unsupported};
use crate::identity;
use crate::resources::{self, Size, check_fits, round_up_to_spec};
use crate::volumes::map_volumes;
use crate::{dns, pull_secrets};

/// ECI's per-instance container limit.
pub const MAX_CONTAINERS: usize = 20;

/// ECI's included temporary storage; more is bought with `EphemeralStorage`.
const INCLUDED_EPHEMERAL_GIB: u64 = 30;
const GIB: u64 = 1 << 30;
const CONTAINERS: At<'static> = At::root("spec.containers");
const INIT_CONTAINERS: At<'static> = At::root("spec.initContainers");

/// Sysctls ECI sets in the pod sandbox (`SecurityContext.Sysctl`); the other namespaced ones go
/// to the instance (`HostSecurityContext.Sysctl`).
const ECI_SAFE_SYSCTLS: &[&str] = &[
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];

/// Translates one pod for one placement attempt. Deterministic: the same input always gives
/// the same request or the same refusal.
pub fn translate(input: &TranslateInput) -> Result<ContainerGroupRequest> {
    let pod = &input.pod;
    let node = &input.node;
    refuse_what_eci_cannot_run(pod)?;
    let a = Annotations::read(&pod.meta.annotations);

    // Native sidecars (init containers with restartPolicy Always) keep running next to the app
    // containers; ECI init containers must finish, so sidecars become regular containers
    // (their start-before-the-app ordering is lost; documented).
    let mut inits: Vec<(usize, &Container)> = Vec::new();
    let mut sidecars: Vec<(usize, &Container)> = Vec::new();
    for (i, c) in pod.init_containers.iter().enumerate() {
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.push((i, c));
        } else {
            inits.push((i, c));
        }
    }
    let app_count = pod.containers.len() + sidecars.len();
    if pod.containers.is_empty() {
        return Err(invalid("spec.containers", "the pod has no containers"));
    }
    if app_count > MAX_CONTAINERS {
        return Err(invalid(
            "spec.containers",
            format!(
                "the pod has {app_count} containers (including native sidecars); an ECI instance runs at most {MAX_CONTAINERS}"
            ),
        ));
    }
    if inits.len() > MAX_CONTAINERS {
        return Err(invalid(
            "spec.initContainers",
            format!(
                "the pod has {} init containers; ECI runs at most {MAX_CONTAINERS}",
                inits.len()
            ),
        ));
    }

    let pod_sc = pod.security_context.as_ref();
    let mut running = Size::default();
    let mut containers = Vec::with_capacity(app_count);
    let sidecar_iter = sidecars.iter().map(|(i, c)| (*i, *c, true));
    let app_iter = pod
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c, false));
    for (i, c, side) in sidecar_iter.chain(app_iter) {
        let list = if side { INIT_CONTAINERS } else { CONTAINERS };
        let at = list.index(i);
        let size = resources::container_size(c);
        check_fits(
            size,
            at.field("resources"),
            format_args!("container {:?}", c.name),
        )?;
        running = running.plus(size);
        containers.push(map_container(c, at, size, pod_sc, false)?);
    }
    let mut init_peak = Size::default();
    let mut init_containers = Vec::with_capacity(inits.len());
    for (i, c) in &inits {
        let at = INIT_CONTAINERS.index(*i);
        let size = resources::container_size(c);
        check_fits(
            size,
            at.field("resources"),
            format_args!("init container {:?}", c.name),
        )?;
        init_peak = init_peak.max(size);
        init_containers.push(map_container(c, at, size, pod_sc, true)?);
    }
    // What the instance must hold: every running container at once, or the biggest init
    // container (they run one at a time, before the app containers).
    let total = running.max(init_peak);
    check_fits(total, "spec.containers[*].resources", "the pod")?;

    let mut req = ContainerGroupRequest {
        name: identity::container_group_name(&pod.meta.namespace, &pod.meta.name, &pod.meta.uid),
        client_token: String::new(),
        zone_id: input.attempt.zone_id.clone(),
        vswitch_ids: vswitches(input),
        security_group_id: a
            .security_group
            .map(str::to_string)
            .or_else(|| Some(node.security_group_id.clone()).filter(|s| !s.is_empty())),
        schedule_strategy: input.attempt.schedule_strategy.clone(),
        cpu: None,
        memory: None,
        instance_types: Vec::new(),
        compute_categories: input.attempt.compute_categories.clone(),
        restart_policy: if pod.restart_policy.is_empty() {
            "Always".to_string()
        } else {
            pod.restart_policy.clone()
        },
        spot_strategy: None,
        spot_price_limit: None,
        spot_duration_hours: input.attempt.spot_duration_hours,
        tags: Vec::new(),
        image_registry_credentials: pull_secrets::credentials(&pod.image_pull_secrets)?,
        containers,
        init_containers,
        volumes: map_volumes(&pod.volumes)?,
        dns_policy: None,
        dns_config: None,
        host_aliases: Vec::new(),
        hostname: Some(hostname(pod)),
        sysctls: Vec::new(),
        host_sysctls: Vec::new(),
        active_deadline_seconds: pod.active_deadline_seconds,
        termination_grace_period_seconds: pod.termination_grace_period_seconds,
        share_process_namespace: pod.share_process_namespace,
        ram_role_name: None,
        eip: None,
        ephemeral_storage_gib: None,
        ntp_servers: Vec::new(),
        core_pattern: None,
        auto_match_image_cache: None,
        image_snapshot_id: None,
        extra_params: Vec::new(),
    };

    size_instance(&mut req, input, total)?;
    spot(&mut req, &input.attempt.spot)?;
    tags(&mut req, input, &a)?;
    let (policy, mut cfg) = dns::dns(pod, node)?;
    if let Some(custom) = a.custom_dns {
        let extra = ann::custom_dns(custom, "k8s.aliyun.com/eci-custom-dnsconfig")?;
        match cfg.as_mut() {
            Some(c) => dns::merge(c, extra),
            None => cfg = Some(extra),
        }
    }
    req.dns_policy = policy;
    req.dns_config = cfg;
    req.host_aliases = pod
        .host_aliases
        .iter()
        .map(|h| vnode_plugin_sdk::translator::EciHostAlias {
            ip: h.ip.clone(),
            hostnames: h.hostnames.clone(),
        })
        .collect();
    if let Some(hosts) = a.custom_hosts {
        req.host_aliases
            .extend(ann::custom_hosts(hosts, "k8s.aliyun.com/eci-custom-hosts")?);
    }
    sysctls(&mut req, pod)?;
    instance_annotations(&mut req, &a, total)?;
    Ok(req)
}

/// DaemonSet pods, host namespaces: things an ECI instance has no way to provide.
fn refuse_what_eci_cannot_run(pod: &ResolvedPod) -> Result<()> {
    if pod.meta.owner_kind.as_deref() == Some("DaemonSet") {
        return Err(unsupported(
            "metadata.ownerReferences",
            format!(
                "DaemonSet pods ({}) run once per real node; a virtual node has no host for them. Keep the DaemonSet \
                 off the virtual node with a node affinity or toleration",
                pod.meta.owner_name.as_deref().unwrap_or("unnamed")
            ),
        ));
    }
    for (on, field) in [
        (pod.host_network, "spec.hostNetwork"),
        (pod.host_pid, "spec.hostPID"),
        (pod.host_ipc, "spec.hostIPC"),
    ] {
        if on {
            return Err(unsupported(
                field,
                "ECI instances have no host namespaces to share",
            ));
        }
    }
    Ok(())
}

/// The attempt's vSwitches, or the node's (only those of the attempt's zone if it names one).
fn vswitches(input: &TranslateInput) -> Vec<String> {
    if !input.attempt.vswitch_ids.is_empty() {
        return input.attempt.vswitch_ids.clone();
    }
    input
        .node
        .zones
        .iter()
        .filter(|z| {
            input
                .attempt
                .zone_id
                .as_ref()
                .is_none_or(|want| *want == z.zone_id)
        })
        .map(|z| z.vswitch_id.clone())
        .collect()
}

/// The kubelet's hostname: `spec.hostname`, else the pod name cut to 63 characters without
/// trailing `-`/`.`.
fn hostname(pod: &ResolvedPod) -> String {
    if let Some(h) = pod.hostname.as_ref().filter(|h| !h.is_empty()) {
        return h.clone();
    }
    let name = pod.meta.name.as_str();
    // The first 63 characters (a name of at most 63 bytes has no more).
    let cut = if name.len() <= 63 {
        name
    } else {
        match name.char_indices().nth(63) {
            Some((end, _)) => &name[..end],
            None => name,
        }
    };
    // `trim_end_matches(['-', '.'])` as a byte scan (both are ASCII; the char-array searcher is
    // far more code, run for every pod without `spec.hostname`).
    let end = cut
        .bytes()
        .rposition(|b| b != b'-' && b != b'.')
        .map_or(0, |last| last + 1);
    cut[..end].to_string()
}

/// Instance size from the attempt's sizing; GPUs need an ECS GPU instance type.
fn size_instance(
    req: &mut ContainerGroupRequest,
    input: &TranslateInput,
    total: Size,
) -> Result<()> {
    match &input.attempt.sizing {
        Sizing::InstanceTypes(types) if !types.is_empty() => {
            req.instance_types = types.clone();
            return Ok(());
        }
        Sizing::Spec(s) => {
            let (cpu, mem) = (
                u64::from(s.cpu_millis),
                u64::from(s.memory_mib) * 1000 / 1024,
            );
            if total.cpu_millis > cpu || total.mem_milli_gib > mem {
                return Err(invalid(
                    "spec.containers[*].resources",
                    format!(
                        "the containers need {} vCPU / {} GiB but the placement chose the smaller spec {} vCPU / {} GiB",
                        resources::fmt_milli(total.cpu_millis),
                        resources::fmt_milli(total.mem_milli_gib),
                        resources::fmt_milli(cpu),
                        resources::fmt_milli(mem)
                    ),
                ));
            }
            req.cpu = Some(cpu as f64 / 1000.0);
            req.memory = Some(f64::from(s.memory_mib) / 1024.0);
        }
        Sizing::Auto | Sizing::InstanceTypes(_) => {
            if total.specified {
                let spec =
                    round_up_to_spec(total.cpu_millis, total.mem_milli_gib).ok_or_else(|| {
                        invalid(
                            "spec.containers[*].resources",
                            "no ECI spec is large enough for the containers' total",
                        )
                    })?;
                req.cpu = Some(f64::from(spec.cpu_millis) / 1000.0);
                req.memory = Some(f64::from(spec.memory_mib) / 1024.0);
            }
        }
    }
    if total.gpu > 0 {
        return Err(invalid(
            "spec.containers[*].resources.limits[nvidia.com/gpu]",
            "GPU pods need an ECS GPU instance type: set the annotation k8s.aliyun.com/eci-use-specs (e.g. \
             ecs.gn6i-c4g1.xlarge) so placement picks one",
        ));
    }
    Ok(())
}

fn spot(req: &mut ContainerGroupRequest, s: &SpotStrategy) -> Result<()> {
    match s {
        SpotStrategy::OnDemand => {}
        SpotStrategy::SpotAsPriceGo => req.spot_strategy = Some("SpotAsPriceGo".to_string()),
        SpotStrategy::SpotWithPriceLimit(p) => {
            if !p.is_finite() || *p <= 0.0 {
                return Err(invalid(
                    "attempt.spot",
                    format!("spot price limit {p} must be a positive number"),
                ));
            }
            req.spot_strategy = Some("SpotWithPriceLimit".to_string());
            // ECI takes at most three decimals.
            req.spot_price_limit = Some((p * 1000.0).round() / 1000.0);
        }
    }
    Ok(())
}

/// Identity tags first, then `eci-custom-tags`, then the attempt's extra tags.
fn tags(req: &mut ContainerGroupRequest, input: &TranslateInput, a: &Annotations) -> Result<()> {
    let m = &input.pod.meta;
    let mut tags = identity::identity_tags(
        &input.node.cluster_name,
        &input.node.node_name,
        &m.namespace,
        &m.name,
        &m.uid,
    )?;
    // A pod's author may not write into vnode's tag namespace at all; the placement policy (the
    // platform team's code) may add its own `vnode.io/*` tags, e.g. cost-aware's
    // `vnode.io/capacity`, but never one of the identity tags reconciliation trusts.
    let mut add = |t: KeyValue, field: &str, from_pod: bool| -> Result<()> {
        identity::validate_tag(&t, field)?;
        let reserved = if from_pod {
            t.key.starts_with("vnode.io/")
        } else {
            identity::is_identity_tag(&t.key)
        };
        if reserved {
            return Err(invalid(
                field,
                format!(
                    "tag key {:?} is reserved for vnode's own identity tags",
                    t.key
                ),
            ));
        }
        if let Some(existing) = tags.iter_mut().find(|e| e.key == t.key) {
            existing.value = t.value;
        } else {
            tags.push(t);
        }
        Ok(())
    };
    if let Some(v) = a.custom_tags {
        let key = "k8s.aliyun.com/eci-custom-tags";
        for t in ann::custom_tags(v, key)? {
            add(
                t,
                "metadata.annotations[k8s.aliyun.com/eci-custom-tags]",
                true,
            )?;
        }
    }
    for t in &input.attempt.extra_tags {
        add(t.clone(), "attempt.extra-tags", false)?;
    }
    if tags.len() > identity::MAX_TAGS {
        return Err(invalid(
            "metadata.annotations[k8s.aliyun.com/eci-custom-tags]",
            format!(
                "{} tags in all; ECI allows at most {}",
                tags.len(),
                identity::MAX_TAGS
            ),
        ));
    }
    req.tags = tags;
    Ok(())
}

/// Kubernetes' namespaced sysctls split by where ECI applies them; anything else (e.g. `vm.*`,
/// `kernel.pid_max`) is a node-level setting Kubernetes itself forbids for pods.
fn sysctls(req: &mut ContainerGroupRequest, pod: &ResolvedPod) -> Result<()> {
    let Some(sc) = &pod.security_context else {
        return Ok(());
    };
    for (i, s) in sc.sysctls.iter().enumerate() {
        let kv = KeyValue {
            key: s.name.clone(),
            value: s.value.clone(),
        };
        let n = s.name.as_str();
        if ECI_SAFE_SYSCTLS.contains(&n) {
            req.sysctls.push(kv);
        } else if n.starts_with("kernel.shm")
            || n.starts_with("kernel.msg")
            || n == "kernel.sem"
            || n.starts_with("fs.mqueue.")
            || n.starts_with("net.")
        {
            req.host_sysctls.push(kv);
        } else {
            return Err(unsupported(
                format!("spec.securityContext.sysctls[{i}]"),
                format!("sysctl {n:?} is not namespaced; a pod cannot set it"),
            ));
        }
    }
    Ok(())
}

/// The instance-level annotations, and temporary storage beyond ECI's included 30 GiB.
fn instance_annotations(
    req: &mut ContainerGroupRequest,
    a: &Annotations,
    total: Size,
) -> Result<()> {
    // The full annotation key, for refusals (a literal: no `format!` on the success path).
    macro_rules! key {
        ($short:literal) => {
            concat!("k8s.aliyun.com/", $short)
        };
    }
    if !a.instance_level {
        // The common pod: none of the annotations below, only ephemeral-storage limits.
        req.ephemeral_storage_gib = ephemeral_beyond_included(total);
        return Ok(());
    }
    let extra = |req: &mut ContainerGroupRequest, k: &str, v: String| {
        req.extra_params.push(KeyValue {
            key: k.to_string(),
            value: v,
        })
    };

    req.ram_role_name = a.ram_role.map(str::to_string);
    req.core_pattern = a.core_pattern.map(str::to_string);
    if let Some(v) = a.ntp_server {
        req.ntp_servers = ann::comma_list(v);
    }
    if let Some(v) = a.auto_imc.or(a.image_cache) {
        let k = if a.auto_imc.is_some() {
            key!("eci-auto-imc")
        } else {
            key!("eci-image-cache")
        };
        req.auto_match_image_cache = Some(ann::parse_bool(v, k)?);
    }
    req.image_snapshot_id = a.imc_id.map(str::to_string);

    // Temporary storage: the annotation decides; otherwise ephemeral-storage limits above the
    // included 30 GiB buy the difference, so the pod gets what it declared.
    if let Some(v) = a.extra_ephemeral_storage {
        let bytes = ann::parse_quantity(v, key!("eci-extra-ephemeral-storage"))?;
        req.ephemeral_storage_gib = Some(u32::try_from(bytes.div_ceil(GIB)).unwrap_or(u32::MAX));
    } else {
        req.ephemeral_storage_gib = ephemeral_beyond_included(total);
    }

    // Elastic IP.
    let with_eip = match a.with_eip {
        Some(v) => ann::parse_bool(v, key!("eci-with-eip"))?,
        None => false,
    };
    if with_eip || a.eip_instance_id.is_some() {
        let bandwidth = match a.eip_bandwidth {
            Some(v) => Some(ann::parse_int(v, key!("eip-bandwidth"), 1..=10_000)? as u32),
            None => None,
        };
        req.eip = Some(EciEip {
            instance_id: a.eip_instance_id.map(str::to_string),
            auto_create_bandwidth_mbps: if a.eip_instance_id.is_none() {
                Some(bandwidth.unwrap_or(5))
            } else {
                None
            },
            isp: if a.eip_instance_id.is_none() {
                a.eip_isp.map(str::to_string)
            } else {
                None
            },
        });
        if let (Some(pkg), None) = (a.eip_bandwidth_package, a.eip_instance_id) {
            extra(req, "EipCommonBandwidthPackage", pkg.to_string());
        }
    }

    // Parameters the contract does not model, as raw CreateContainerGroup parameters.
    if let Some(v) = a.resource_group_id {
        extra(req, "ResourceGroupId", v.to_string());
    }
    if let Some(v) = a.enable_ipv6
        && ann::parse_bool(v, key!("eci-enable-ipv6"))?
    {
        extra(req, "Ipv6AddressCount", "1".to_string());
    }
    if let Some(v) = a.private_ip {
        extra(req, "PrivateIpAddress", v.trim().to_string());
    }
    if let Some(v) = a.fixed_ip
        && ann::parse_bool(v, key!("eci-fixed-ip"))?
    {
        extra(req, "FixedIp", "true".to_string());
        if let Some(h) = a.fixed_ip_retain_hour {
            let h = ann::parse_int(h, key!("eci-fixed-ip-retain-hour"), 1..=8760)?;
            extra(req, "FixedIpRetainHour", decimal(h));
        }
    }
    if let Some(v) = a.ingress_bandwidth {
        let bps = ann::parse_quantity(v, "kubernetes.io/ingress-bandwidth")?;
        extra(req, "IngressBandwidth", decimal(bps));
    }
    if let Some(v) = a.egress_bandwidth {
        let bps = ann::parse_quantity(v, "kubernetes.io/egress-bandwidth")?;
        extra(req, "EgressBandwidth", decimal(bps));
    }
    if let Some(v) = a.gpu_driver_version {
        extra(req, "GpuDriverVersion", v.trim().to_string());
    }
    if let Some(v) = a.plain_http_registry {
        extra(req, "PlainHttpRegistry", ann::comma_list(v).join(","));
    }
    if let Some(v) = a.insecure_registry {
        extra(req, "InsecureRegistry", ann::comma_list(v).join(","));
    }
    if let Some(v) = a.acr_instance_ids {
        // `cri-a,cri-b` or `cn-beijing:cri-a` (an instance of another region).
        for (i, item) in ann::comma_list(v).iter().enumerate() {
            let n = i + 1;
            match item.split_once(':') {
                Some((region, id)) => {
                    extra(
                        req,
                        &format!("AcrRegistryInfo.{n}.InstanceId"),
                        id.to_string(),
                    );
                    extra(
                        req,
                        &format!("AcrRegistryInfo.{n}.RegionId"),
                        region.to_string(),
                    );
                }
                None => extra(
                    req,
                    &format!("AcrRegistryInfo.{n}.InstanceId"),
                    item.clone(),
                ),
            }
        }
    }
    if let Some(v) = a.max_pending_minute {
        let m = ann::parse_int(v, key!("eci-max-pending-minute"), 10..=1440)?;
        extra(req, "MaxPendingMinute", decimal(m));
    }
    if let Some(v) = a.data_cache_bucket {
        extra(req, "DataCacheBucket", v.trim().to_string());
        if let Some(pl) = a.data_cache_pl {
            extra(req, "DataCachePL", pl.trim().to_string());
        }
        if let Some(iops) = a.data_cache_iops {
            let n = ann::parse_int(iops, key!("eci-data-cache-provisionedIops"), 0..=1_000_000)?;
            extra(req, "DataCacheProvisionedIops", decimal(n));
        }
        if let Some(b) = a.data_cache_bursting {
            let on = ann::parse_bool(b, key!("eci-data-cache-burstingEnabled"))?;
            extra(
                req,
                "DataCacheBurstingEnabled",
                if on { "true" } else { "false" }.to_string(),
            );
        }
    }
    Ok(())
}

/// The GiB of temporary storage to buy beyond ECI's included 30 for the containers'
/// ephemeral-storage limits, if they ask for more.
fn ephemeral_beyond_included(total: Size) -> Option<u32> {
    let included = INCLUDED_EPHEMERAL_GIB * GIB;
    (total.ephemeral_bytes > included).then(|| {
        let extra_gib = (total.ephemeral_bytes - included).div_ceil(GIB);
        u32::try_from(extra_gib).unwrap_or(u32::MAX)
    })
}

/// `n` in decimal (`itoa`, without `core::fmt`).
fn decimal(n: u64) -> String {
    itoa::Buffer::new().format(n).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use vnode_plugin_sdk::translator::*;
    use vnode_plugin_sdk::{InstanceSpec, Sizing};

    fn ok(i: &TranslateInput) -> ContainerGroupRequest {
        match translate(i) {
            Ok(r) => r,
            Err(e) => panic!("refused: {e:?}"),
        }
    }

    #[test]
    fn identity_placement_and_defaults() {
        let mut i = input(pod());
        i.attempt.zone_id = Some("cn-hangzhou-j".into());
        let r = ok(&i);
        assert_eq!(r.name, "shop-web-0");
        assert_eq!(r.client_token, "", "the host fills the UID-derived token");
        assert_eq!(
            r.vswitch_ids,
            vec!["vsw-j"],
            "only the attempt's zone's vSwitch"
        );
        assert_eq!(r.security_group_id.as_deref(), Some("sg-node"));
        assert_eq!(r.restart_policy, "Always");
        assert_eq!(r.hostname.as_deref(), Some("web-0"));
        let keys: Vec<_> = r
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("vnode.io/cluster", "prod"),
                ("vnode.io/node", "vnode-1"),
                ("vnode.io/namespace", "shop"),
                ("vnode.io/pod-name", "web-0"),
                ("vnode.io/pod-uid", "0b1c2d3e-aaaa-bbbb-cccc-000000000001"),
            ]
        );
        assert_eq!(
            (r.cpu, r.memory),
            (None, None),
            "no resources given: ECI's default size"
        );
        i.attempt.zone_id = None;
        assert_eq!(ok(&i).vswitch_ids, vec!["vsw-h", "vsw-j"]);
    }

    #[test]
    fn command_args_env_ports_kept_separate() {
        let mut p = pod();
        let c = &mut p.containers[0];
        c.command = vec!["/bin/server".into()];
        c.args = vec!["--port".into(), "8080".into()];
        c.env = vec![
            EnvVar {
                name: "MODE".into(),
                value: EnvValue::Literal("prod".into()),
            },
            EnvVar {
                name: "POD_IP".into(),
                value: EnvValue::FieldRef("status.podIP".into()),
            },
        ];
        c.ports = vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            protocol: None,
            host_port: None,
        }];
        c.tty = true;
        c.image_pull_policy = Some("IfNotPresent".into());
        let r = ok(&input(p));
        let c = &r.containers[0];
        assert_eq!(c.command, vec!["/bin/server"]);
        assert_eq!(c.args, vec!["--port", "8080"]);
        assert_eq!(c.env[0].value.as_deref(), Some("prod"));
        assert_eq!(c.env[1].field_path.as_deref(), Some("status.podIP"));
        assert_eq!(c.env[1].value, None);
        assert_eq!(
            (c.ports[0].port, c.ports[0].protocol.as_str()),
            (8080, "TCP")
        );
        assert!(c.tty);
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    }

    #[test]
    fn more_than_ten_args_fold_into_the_command_or_are_refused() {
        let mut p = pod();
        p.containers[0].args = (0..12).map(|n| format!("--f{n}")).collect();
        let (field, msg, _) = refusal(translate(&input(p.clone())));
        assert_eq!(field, "spec.containers[0].args");
        assert!(msg.contains("at most 10"), "{msg}");
        p.containers[0].command = vec!["app".into()];
        let r = ok(&input(p));
        assert_eq!(r.containers[0].command.len(), 13);
        assert!(r.containers[0].args.is_empty());
    }

    #[test]
    fn env_refusals_name_the_field() {
        let mut p = pod();
        p.containers[0].env = vec![EnvVar {
            name: "X".into(),
            value: EnvValue::FieldRef("spec.nodeName".into()),
        }];
        let (field, _, kind) = refusal(translate(&input(p.clone())));
        assert_eq!(
            (field.as_str(), kind),
            (
                "spec.containers[0].env[0].valueFrom.fieldRef",
                "unsupported"
            )
        );
        p.containers[0].env = vec![EnvVar {
            name: "my.var".into(),
            value: EnvValue::Literal("v".into()),
        }];
        let (field, _, _) = refusal(translate(&input(p)));
        assert_eq!(field, "spec.containers[0].env[0].name");
    }

    #[test]
    fn resources_use_limits_and_round_the_pod_up() {
        let mut p = pod();
        p.containers = vec![
            sized(container("a"), 500, 512, Some(1500), Some(1536)),
            sized(container("b"), 250, 256, None, None),
        ];
        let r = ok(&input(p));
        assert_eq!(r.containers[0].cpu, Some(1.5), "the limit, not the request");
        assert_eq!(r.containers[0].memory, Some(1.5));
        assert_eq!(r.containers[1].cpu, Some(0.25), "no limit: the request");
        assert_eq!(r.containers[1].memory, Some(0.25));
        assert_eq!(
            (r.cpu, r.memory),
            (Some(2.0), Some(2.0)),
            "1.75 vCPU / 1.75 GiB -> 2 vCPU / 2 GiB"
        );
    }

    #[test]
    fn init_containers_count_once_and_sidecars_become_containers() {
        let mut p = pod();
        p.containers = vec![sized(container("app"), 1000, 1024, None, None)];
        let mut side = sized(container("proxy"), 500, 512, None, None);
        side.restart_policy = Some("Always".into());
        p.init_containers = vec![sized(container("migrate"), 4000, 8192, None, None), side];
        let r = ok(&input(p));
        assert_eq!(r.init_containers.len(), 1);
        assert_eq!(r.init_containers[0].name, "migrate");
        let names: Vec<_> = r.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["proxy", "app"]);
        assert_eq!(
            (r.cpu, r.memory),
            (Some(4.0), Some(8.0)),
            "the init container is the peak"
        );
    }

    #[test]
    fn limits_are_refused_with_the_field() {
        let mut p = pod();
        p.containers = vec![sized(container("big"), 65_000, 1024, None, None)];
        let (field, msg, _) = refusal(translate(&input(p.clone())));
        assert_eq!(field, "spec.containers[0].resources");
        assert!(msg.contains("64 vCPU"), "{msg}");
        p.containers = (0..2)
            .map(|n| sized(container(&format!("c{n}")), 40_000, 1024, None, None))
            .collect();
        let (field, msg, _) = refusal(translate(&input(p.clone())));
        assert_eq!(field, "spec.containers[*].resources");
        assert!(msg.contains("80 vCPU"), "{msg}");
        p.containers = (0..21).map(|n| container(&format!("c{n}"))).collect();
        let (field, msg, _) = refusal(translate(&input(p.clone())));
        assert_eq!(field, "spec.containers");
        assert!(msg.contains("21 containers"), "{msg}");
        p.containers = vec![container("a")];
        p.volumes = (0..21)
            .map(|n| Volume {
                name: format!("v{n}"),
                source: VolumeSource::EmptyDir(EmptyDirSource {
                    medium: None,
                    size_limit: None,
                    size_limit_bytes: None,
                }),
            })
            .collect();
        let (field, msg, _) = refusal(translate(&input(p)));
        assert_eq!(field, "spec.volumes");
        assert!(msg.contains("21 volumes"), "{msg}");
    }

    #[test]
    fn placement_sizing_wins() {
        let mut p = pod();
        p.containers = vec![sized(container("a"), 1000, 1024, None, None)];
        let mut i = input(p);
        i.attempt.sizing = Sizing::Spec(InstanceSpec {
            cpu_millis: 2000,
            memory_mib: 4096,
        });
        let r = ok(&i);
        assert_eq!((r.cpu, r.memory), (Some(2.0), Some(4.0)));
        i.attempt.sizing =
            Sizing::InstanceTypes(vec!["ecs.c6.xlarge".into(), "ecs.c5.xlarge".into()]);
        let r = ok(&i);
        assert_eq!((r.cpu, r.memory), (None, None));
        assert_eq!(r.instance_types, vec!["ecs.c6.xlarge", "ecs.c5.xlarge"]);
        i.attempt.sizing = Sizing::Spec(InstanceSpec {
            cpu_millis: 500,
            memory_mib: 1024,
        });
        let (field, msg, _) = refusal(translate(&i));
        assert_eq!(field, "spec.containers[*].resources");
        assert!(msg.contains("smaller spec"), "{msg}");
    }

    #[test]
    fn gpu_needs_an_instance_type() {
        let mut p = pod();
        p.containers[0].resources.limits.gpu = Some(1);
        let mut i = input(p);
        let (field, _, _) = refusal(translate(&i));
        assert_eq!(field, "spec.containers[*].resources.limits[nvidia.com/gpu]");
        i.attempt.sizing = Sizing::InstanceTypes(vec!["ecs.gn6i-c4g1.xlarge".into()]);
        assert_eq!(ok(&i).containers[0].gpu, Some(1));
    }

    #[test]
    fn spot_from_the_attempt() {
        let mut i = input(pod());
        i.attempt.spot = SpotStrategy::SpotWithPriceLimit(0.12345);
        i.attempt.spot_duration_hours = Some(0);
        let r = ok(&i);
        assert_eq!(r.spot_strategy.as_deref(), Some("SpotWithPriceLimit"));
        assert_eq!(r.spot_price_limit, Some(0.123));
        assert_eq!(r.spot_duration_hours, Some(0));
        i.attempt.spot = SpotStrategy::SpotWithPriceLimit(-1.0);
        assert_eq!(refusal(translate(&i)).0, "attempt.spot");
    }

    fn file(path: &str, content: &str, mode: Option<u32>) -> File {
        File {
            path: path.into(),
            content: content.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn volumes_of_every_kind() {
        let mut p = pod();
        let fs = |files: Vec<File>, missing: bool| FileSet {
            files,
            default_mode: Some(0o644),
            optional_missing: missing,
        };
        p.volumes = vec![
            Volume {
                name: "scratch".into(),
                source: VolumeSource::EmptyDir(EmptyDirSource {
                    medium: Some("Memory".into()),
                    size_limit: Some("256Mi".into()),
                    size_limit_bytes: Some(256 << 20),
                }),
            },
            Volume {
                name: "cfg".into(),
                source: VolumeSource::ConfigMap(fs(
                    vec![file("app.yaml", "a: 1", Some(0o600))],
                    false,
                )),
            },
            Volume {
                name: "missing".into(),
                source: VolumeSource::Secret(fs(vec![], true)),
            },
            Volume {
                name: "token".into(),
                source: VolumeSource::Projected(fs(vec![file("token", "jwt", None)], false)),
            },
            Volume {
                name: "nfs".into(),
                source: VolumeSource::Nfs(NfsSource {
                    server: "nas.example".into(),
                    path: "/x".into(),
                    read_only: true,
                }),
            },
        ];
        let r = ok(&input(p.clone()));
        match &r.volumes[0].kind {
            EciVolumeKind::EmptyDir(e) => {
                assert_eq!(e.medium.as_deref(), Some("Memory"));
                assert_eq!(e.size_limit.as_deref(), Some("256Mi"));
            }
            other => panic!("{other:?}"),
        }
        match &r.volumes[1].kind {
            EciVolumeKind::ConfigFile(c) => {
                assert_eq!(c.default_mode, Some(0o644));
                assert_eq!(c.files[0].content_base64, "YTogMQ==");
                assert_eq!(c.files[0].mode, Some(0o600));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(r.volumes[2].kind, EciVolumeKind::EmptyDir(_)),
            "optional + missing: an empty dir"
        );
        assert!(matches!(r.volumes[3].kind, EciVolumeKind::ConfigFile(_)));
        assert!(matches!(r.volumes[4].kind, EciVolumeKind::Nfs(_)));

        p.volumes = vec![Volume {
            name: "h".into(),
            source: VolumeSource::HostPath(HostPathSource {
                path: "/var/log".into(),
                type_: None,
            }),
        }];
        let (field, msg, kind) = refusal(translate(&input(p.clone())));
        assert_eq!(
            (field.as_str(), kind),
            ("spec.volumes[0].hostPath", "unsupported")
        );
        assert!(msg.contains("/var/log"));
        p.volumes = vec![Volume {
            name: "d".into(),
            source: VolumeSource::PersistentVolumeClaim(ClaimSource {
                claim_name: "data".into(),
                read_only: false,
            }),
        }];
        assert_eq!(
            refusal(translate(&input(p.clone()))).0,
            "spec.volumes[0].persistentVolumeClaim"
        );
        p.volumes = vec![Volume {
            name: "c".into(),
            source: VolumeSource::Other("csi".into()),
        }];
        assert_eq!(
            refusal(translate(&input(p.clone()))).0,
            "spec.volumes[0].csi"
        );
        p.volumes = vec![Volume {
            name: "c".into(),
            source: VolumeSource::ConfigMap(fs(vec![file("../x", "a", None)], false)),
        }];
        assert_eq!(refusal(translate(&input(p))).0, "spec.volumes[0].configMap");
    }

    #[test]
    fn probes_and_hooks() {
        let mut p = pod();
        let c = &mut p.containers[0];
        c.ports = vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            protocol: None,
            host_port: None,
        }];
        c.liveness_probe = Some(Probe {
            handler: Handler::HttpGet(HttpGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::Str("http".into()),
                host: None,
                scheme: Some("HTTP".into()),
                headers: vec![HttpHeader {
                    name: "X-Probe".into(),
                    value: "1".into(),
                }],
            }),
            initial_delay_seconds: Some(5),
            period_seconds: Some(10),
            timeout_seconds: Some(2),
            success_threshold: Some(1),
            failure_threshold: Some(3),
        });
        c.readiness_probe = Some(Probe {
            handler: Handler::TcpSocket(TcpSocketAction {
                port: IntOrString::Int(8080),
                host: None,
            }),
            initial_delay_seconds: None,
            period_seconds: None,
            timeout_seconds: None,
            success_threshold: None,
            failure_threshold: None,
        });
        c.lifecycle = Some(Lifecycle {
            post_start: Some(Handler::Exec(vec!["/bin/warm".into()])),
            pre_stop: Some(Handler::Sleep(5)),
        });
        let r = ok(&input(p.clone()));
        let c = &r.containers[0];
        match &c.liveness_probe.as_ref().unwrap().handler {
            EciHandler::HttpGet(g) => {
                assert_eq!(g.port, 8080, "named port resolved");
                assert!(g.headers.is_empty(), "ECI probes send no headers");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            c.liveness_probe.as_ref().unwrap().failure_threshold,
            Some(3)
        );
        assert!(matches!(
            c.readiness_probe.as_ref().unwrap().handler,
            EciHandler::TcpSocket(EciTcpSocket { port: 8080, .. })
        ));
        match c.pre_stop.as_ref().unwrap() {
            EciHandler::Exec(cmd) => assert_eq!(cmd, &vec!["sleep".to_string(), "5".to_string()]),
            other => panic!("{other:?}"),
        }
        p.containers[0].readiness_probe.as_mut().unwrap().handler = Handler::Grpc(GrpcAction {
            port: 9000,
            service: None,
        });
        let (field, _, kind) = refusal(translate(&input(p.clone())));
        assert_eq!(
            (field.as_str(), kind),
            ("spec.containers[0].readinessProbe.grpc", "unsupported")
        );
        p.containers[0].readiness_probe.as_mut().unwrap().handler =
            Handler::TcpSocket(TcpSocketAction {
                port: IntOrString::Str("metrics".into()),
                host: None,
            });
        assert_eq!(
            refusal(translate(&input(p))).0,
            "spec.containers[0].readinessProbe.tcpSocket.port"
        );
    }

    #[test]
    fn startup_probe_extends_the_liveness_delay() {
        let mut p = pod();
        let tcp = |delay, period, failures| Probe {
            handler: Handler::TcpSocket(TcpSocketAction {
                port: IntOrString::Int(80),
                host: None,
            }),
            initial_delay_seconds: delay,
            period_seconds: period,
            timeout_seconds: None,
            success_threshold: None,
            failure_threshold: failures,
        };
        p.containers[0].liveness_probe = Some(tcp(Some(5), Some(10), Some(3)));
        p.containers[0].startup_probe = Some(tcp(Some(10), Some(5), Some(30)));
        let r = ok(&input(p.clone()));
        assert_eq!(
            r.containers[0]
                .liveness_probe
                .as_ref()
                .unwrap()
                .initial_delay_seconds,
            Some(5 + 10 + 5 * 30)
        );
        assert!(r.containers[0].startup_probe.is_none());
        p.containers[0].liveness_probe = None;
        assert!(
            ok(&input(p)).containers[0].liveness_probe.is_none(),
            "no liveness probe: nothing to delay"
        );
    }

    #[test]
    fn security_context_merges_pod_level_and_refuses_privileged() {
        let mut p = pod();
        p.security_context = Some(PodSecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            run_as_non_root: Some(true),
            fs_group: Some(2000),
            supplemental_groups: vec![],
            sysctls: vec![
                Sysctl {
                    name: "net.ipv4.ping_group_range".into(),
                    value: "0 2147483647".into(),
                },
                Sysctl {
                    name: "net.core.somaxconn".into(),
                    value: "1024".into(),
                },
                Sysctl {
                    name: "kernel.shmmax".into(),
                    value: "68719476736".into(),
                },
            ],
        });
        p.containers[0].security_context = Some(SecurityContext {
            capabilities_add: vec!["NET_ADMIN".into()],
            capabilities_drop: vec!["ALL".into()],
            privileged: Some(false),
            run_as_user: Some(0),
            run_as_group: None,
            run_as_non_root: None,
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
        });
        let r = ok(&input(p.clone()));
        let sc = r.containers[0].security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_user, Some(0), "the container wins");
        assert_eq!(sc.run_as_group, Some(3000), "the pod fills in");
        assert_eq!(sc.capabilities_add, vec!["NET_ADMIN"]);
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(r.sysctls.len(), 1);
        assert_eq!(
            r.host_sysctls
                .iter()
                .map(|s| s.key.as_str())
                .collect::<Vec<_>>(),
            vec!["net.core.somaxconn", "kernel.shmmax"]
        );
        p.security_context.as_mut().unwrap().sysctls.push(Sysctl {
            name: "vm.max_map_count".into(),
            value: "262144".into(),
        });
        assert_eq!(
            refusal(translate(&input(p.clone()))).0,
            "spec.securityContext.sysctls[3]"
        );
        p.security_context = None;
        p.containers[0]
            .security_context
            .as_mut()
            .unwrap()
            .privileged = Some(true);
        let (field, _, kind) = refusal(translate(&input(p)));
        assert_eq!(
            (field.as_str(), kind),
            (
                "spec.containers[0].securityContext.privileged",
                "unsupported"
            )
        );
    }

    #[test]
    fn dns_policies() {
        let mut p = pod();
        let r = ok(&input(p.clone()));
        assert_eq!(r.dns_policy.as_deref(), Some("None"));
        let cfg = r.dns_config.unwrap();
        assert_eq!(cfg.name_servers, vec!["10.96.0.10"]);
        assert_eq!(
            cfg.searches,
            vec![
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(
            cfg.options,
            vec![("ndots".to_string(), Some("5".to_string()))]
        );

        p.dns_config = Some(DnsConfig {
            nameservers: vec!["1.1.1.1".into()],
            searches: vec!["corp.example".into()],
            options: vec![
                DnsOption {
                    name: "ndots".into(),
                    value: Some("2".into()),
                },
                DnsOption {
                    name: "edns0".into(),
                    value: None,
                },
            ],
        });
        let cfg = ok(&input(p.clone())).dns_config.unwrap();
        assert_eq!(cfg.name_servers, vec!["10.96.0.10", "1.1.1.1"]);
        assert_eq!(
            cfg.searches.last().map(String::as_str),
            Some("corp.example")
        );
        assert_eq!(
            cfg.options,
            vec![
                ("ndots".to_string(), Some("2".to_string())),
                ("edns0".to_string(), None)
            ]
        );

        p.dns_policy = Some("Default".into());
        let r = ok(&input(p.clone()));
        assert_eq!(r.dns_policy.as_deref(), Some("Default"));
        assert_eq!(r.dns_config.unwrap().name_servers, vec!["1.1.1.1"]);

        p.dns_policy = Some("None".into());
        p.dns_config = None;
        assert_eq!(refusal(translate(&input(p.clone()))).0, "spec.dnsConfig");

        p.dns_policy = None;
        let mut i = input(p);
        i.node.cluster_dns.clear();
        assert_eq!(
            ok(&i).dns_policy.as_deref(),
            Some("Default"),
            "no cluster DNS: the kubelet's fallback"
        );
    }

    #[test]
    fn an_empty_or_blank_image_is_refused() {
        for image in ["", " ", "\t\n", "\u{3000}"] {
            let mut p = pod();
            p.containers[0].image = image.into();
            assert_eq!(
                refusal(translate(&input(p))).0,
                "spec.containers[0].image",
                "{image:?}"
            );
        }
        let mut p = pod();
        p.containers[0].image = " nginx ".into();
        assert!(translate(&input(p)).is_ok());
    }

    #[test]
    fn pod_level_fields() {
        let mut p = pod();
        p.meta.name = format!("{}-", "x".repeat(70));
        p.host_aliases = vec![HostAlias {
            ip: "10.1.1.1".into(),
            hostnames: vec!["db".into()],
        }];
        p.active_deadline_seconds = Some(600);
        p.termination_grace_period_seconds = Some(45);
        p.share_process_namespace = Some(true);
        p.restart_policy = "OnFailure".into();
        let r = ok(&input(p.clone()));
        assert_eq!(r.hostname.as_deref().map(str::len), Some(63));
        assert_eq!(r.host_aliases[0].hostnames, vec!["db"]);
        assert_eq!(r.active_deadline_seconds, Some(600));
        assert_eq!(r.termination_grace_period_seconds, Some(45));
        assert_eq!(r.share_process_namespace, Some(true));
        assert_eq!(r.restart_policy, "OnFailure");
        p.hostname = Some("db-0".into());
        assert_eq!(ok(&input(p.clone())).hostname.as_deref(), Some("db-0"));
        // 63 characters, not bytes.
        p.hostname = None;
        p.meta.name = "é".repeat(64);
        assert_eq!(ok(&input(p.clone())).hostname, Some("é".repeat(63)));
        // Trailing `-` and `.` go, as many as there are (after the cut).
        for (name, want) in [
            ("web-0", "web-0"),
            ("web.-.-", "web"),
            ("a.b-", "a.b"),
            ("-.", ""),
            ("é-", "é"),
        ] {
            p.meta.name = name.into();
            assert_eq!(
                ok(&input(p.clone())).hostname.as_deref(),
                Some(want),
                "{name}"
            );
        }
        p.meta.name = format!("{}.-x", "y".repeat(61));
        assert_eq!(ok(&input(p)).hostname, Some("y".repeat(61)));
    }

    #[test]
    fn refused_pods() {
        let mut p = pod();
        p.meta.owner_kind = Some("DaemonSet".into());
        p.meta.owner_name = Some("node-exporter".into());
        let (field, msg, kind) = refusal(translate(&input(p.clone())));
        assert_eq!(
            (field.as_str(), kind),
            ("metadata.ownerReferences", "unsupported")
        );
        assert!(msg.contains("node-exporter"));
        p.meta.owner_kind = Some("ReplicaSet".into());
        p.host_network = true;
        assert_eq!(refusal(translate(&input(p.clone()))).0, "spec.hostNetwork");
        p.host_network = false;
        p.host_pid = true;
        assert_eq!(refusal(translate(&input(p))).0, "spec.hostPID");
    }

    #[test]
    fn annotations_shape_the_request() {
        let mut p = pod();
        p.meta.annotations = vec![
            kv("k8s.aliyun.com/eci-security-group", "sg-pod"),
            kv("k8s.aliyun.com/eci-custom-tags", "team:web,cost-center:42"),
            kv("k8s.aliyun.com/eci-ram-role-name", "app-role"),
            kv("k8s.aliyun.com/eci-auto-imc", "false"),
            kv("k8s.aliyun.com/eci-imc-id", "imc-123"),
            kv("k8s.aliyun.com/eci-with-eip", "true"),
            kv("k8s.aliyun.com/eip-bandwidth", "20"),
            kv("k8s.aliyun.com/eci-extra-ephemeral-storage", "50Gi"),
            kv("k8s.aliyun.com/eci-ntp-server", "100.100.5.1, 100.100.5.2"),
            kv("k8s.aliyun.com/eci-core-pattern", "/pod/data/dump/core"),
            kv(
                "k8s.aliyun.com/eci-custom-hosts",
                r#"[{"host":"api.internal","ip":"10.0.0.9"}]"#,
            ),
            kv("k8s.aliyun.com/eci-resource-group-id", "rg-abc"),
            kv("kubernetes.io/egress-bandwidth", "10M"),
            kv("k8s.aliyun.com/eci-something-new", "ignored"),
        ];
        let r = ok(&input(p.clone()));
        assert_eq!(r.security_group_id.as_deref(), Some("sg-pod"));
        assert!(
            r.tags
                .iter()
                .any(|t| t.key == "cost-center" && t.value == "42")
        );
        assert_eq!(r.ram_role_name.as_deref(), Some("app-role"));
        assert_eq!(r.auto_match_image_cache, Some(false));
        assert_eq!(r.image_snapshot_id.as_deref(), Some("imc-123"));
        let eip = r.eip.as_ref().unwrap();
        assert_eq!(eip.auto_create_bandwidth_mbps, Some(20));
        assert_eq!(r.ephemeral_storage_gib, Some(50));
        assert_eq!(r.ntp_servers, vec!["100.100.5.1", "100.100.5.2"]);
        assert_eq!(r.core_pattern.as_deref(), Some("/pod/data/dump/core"));
        assert_eq!(r.host_aliases[0].ip, "10.0.0.9");
        let extra: Vec<_> = r
            .extra_params
            .iter()
            .map(|k| (k.key.as_str(), k.value.as_str()))
            .collect();
        assert_eq!(
            extra,
            vec![
                ("ResourceGroupId", "rg-abc"),
                ("EgressBandwidth", "10000000")
            ]
        );

        p.meta.annotations = vec![kv("k8s.aliyun.com/eci-with-eip", "yes")];
        let (field, msg, _) = refusal(translate(&input(p.clone())));
        assert_eq!(field, "metadata.annotations[k8s.aliyun.com/eci-with-eip]");
        assert!(msg.contains("\"yes\""));
        p.meta.annotations = vec![kv(
            "k8s.aliyun.com/eci-custom-tags",
            "vnode.io/pod-uid:evil",
        )];
        assert_eq!(
            refusal(translate(&input(p))).0,
            "metadata.annotations[k8s.aliyun.com/eci-custom-tags]"
        );
    }

    #[test]
    fn placement_may_add_vnode_tags_but_not_identity_ones() {
        // cost-aware stamps `vnode.io/capacity`; that must reach ECI.
        let mut i = input(pod());
        i.attempt.extra_tags = vec![kv("vnode.io/capacity", "spot")];
        let req = ok(&i);
        assert!(
            req.tags
                .iter()
                .any(|t| t.key == "vnode.io/capacity" && t.value == "spot")
        );
        // An identity tag from placement would let a policy spoof another pod's group.
        i.attempt.extra_tags = vec![kv("vnode.io/pod-uid", "someone-else")];
        assert_eq!(refusal(translate(&i)).0, "attempt.extra-tags");
        // A pod's own annotation may not use the namespace at all.
        let mut p = pod();
        p.meta.annotations = vec![kv("k8s.aliyun.com/eci-custom-tags", "vnode.io/capacity:x")];
        assert_eq!(
            refusal(translate(&input(p))).0,
            "metadata.annotations[k8s.aliyun.com/eci-custom-tags]"
        );
    }

    #[test]
    fn ephemeral_storage_limits_buy_extra_storage() {
        let mut p = pod();
        p.containers[0].resources.limits.ephemeral_storage_bytes = Some(50 << 30);
        assert_eq!(ok(&input(p.clone())).ephemeral_storage_gib, Some(20));
        p.containers[0].resources.limits.ephemeral_storage_bytes = Some(10 << 30);
        assert_eq!(ok(&input(p)).ephemeral_storage_gib, None);
    }

    #[test]
    fn deterministic() {
        let mut p = pod();
        p.containers = vec![sized(container("a"), 300, 300, None, None)];
        let i = input(p);
        assert_eq!(
            format!("{:?}", translate(&i)),
            format!("{:?}", translate(&i))
        );
    }

    #[test]
    fn config_must_be_empty() {
        assert!(crate::validate_config("").is_ok());
        assert!(crate::validate_config(" {} ").is_ok());
        assert!(crate::validate_config("verbose: true").is_err());
    }

    /// Native cost of one translation of a typical pod (a measurement, not a timing assertion:
    /// `cargo test --release -p translator-default -- --ignored --nocapture native_cost`).
    #[test]
    #[ignore = "measurement; run explicitly"]
    fn native_cost() {
        let mut p = pod();
        p.containers = vec![
            sized(container("web"), 500, 512, Some(1000), Some(1024)),
            container("proxy"),
        ];
        p.containers[0].env = (0..10)
            .map(|n| EnvVar {
                name: format!("V{n}"),
                value: EnvValue::Literal("x".repeat(40)),
            })
            .collect();
        p.volumes = vec![Volume {
            name: "kube-api-access".into(),
            source: VolumeSource::Projected(FileSet {
                files: vec![
                    file("token", &"t".repeat(900), None),
                    file("ca.crt", &"c".repeat(1100), None),
                    file("namespace", "shop", None),
                ],
                default_mode: Some(420),
                optional_missing: false,
            }),
        }];
        p.meta.annotations = vec![
            kv("k8s.aliyun.com/eci-ram-role-name", "r"),
            kv("kubectl.kubernetes.io/restartedAt", "x"),
        ];
        let i = input(p);
        let n = 20_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(translate(std::hint::black_box(&i)).is_ok());
        }
        println!("native translate: {:?} per pod", start.elapsed() / n);
    }
}
