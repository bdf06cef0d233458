//! The typed model of every ECI action vnode uses: one request and one response type per
//! action, plain `pub` fields and `Default`, so callers build them with struct-update syntax.
//!
//! Wire names live only here, as serde attributes: request fields are flattened to ECI's
//! singular, 1-based parameter names (`Container.1.EnvironmentVar.2.Key`) by
//! [`crate::wire::params`]; responses are the JSON bodies with ECI's plural names
//! (`Containers`, `EnvironmentVars`). Response parsing is lenient: unknown fields are
//! ignored and missing ones default. `RegionId` is not part of any request type: the
//! client adds its configured region to every call.

use serde::{Deserialize, Serialize};

use crate::wire::params::{comma_list, json_list};

// ------------------------------------------------------------------------------------------
// Shared enums and small types
// ------------------------------------------------------------------------------------------

/// Container restart policy (applies to containers; a group never restarts as a whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Restart on any exit (default).
    #[default]
    Always,
    /// Restart only on a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

/// Spot (preemptible) instance strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SpotStrategy {
    /// Pay-as-you-go (default).
    #[default]
    NoSpot,
    /// Spot with an hourly price cap (`SpotPriceLimit`).
    SpotWithPriceLimit,
    /// Spot at the market price.
    SpotAsPriceGo,
}

/// Image pull policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImagePullPolicy {
    /// Always pull.
    Always,
    /// Pull if not cached.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// Volume kinds ECI supports (`Volume.N.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeType {
    /// Scratch space (`EmptyDirVolume.*`).
    EmptyDirVolume,
    /// NFS / NAS mount (`NFSVolume.*`).
    #[serde(rename = "NFSVolume")]
    NfsVolume,
    /// Files from given content (`ConfigFileVolume.*`): ConfigMaps and Secrets.
    ConfigFileVolume,
    /// A flexvolume driver (cloud disk, NAS, OSS) (`FlexVolume.*`).
    FlexVolume,
    /// An existing cloud disk (`DiskVolume.*`).
    DiskVolume,
    /// A whitelisted host path (`HostPathVolume.*`).
    HostPathVolume,
}

/// A resource tag.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Tag {
    /// Key (≤64 chars, not `acs:`/`aliyun`-prefixed).
    pub key: String,
    /// Value (≤128 chars).
    pub value: String,
}

impl Tag {
    /// A tag from key and value.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// Container-group status.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub enum ContainerGroupStatus {
    /// Being created (resource scheduling).
    #[default]
    Scheduling,
    /// Creation failed, e.g. no stock.
    ScheduleFailed,
    /// Containers starting.
    Pending,
    /// Containers created, at least one running or restarting.
    Running,
    /// `RestartContainerGroup` in progress.
    Restarting,
    /// `UpdateContainerGroup` in progress.
    Updating,
    /// Being deleted while preStop hooks run.
    Terminating,
    /// All containers exited 0 and will not restart.
    Succeeded,
    /// All containers terminated, at least one failed.
    Failed,
    /// Spot instance reclaimed.
    Expired,
    /// A value this client does not know.
    Other(String),
}

impl ContainerGroupStatus {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Scheduling => "Scheduling",
            Self::ScheduleFailed => "ScheduleFailed",
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Restarting => "Restarting",
            Self::Updating => "Updating",
            Self::Terminating => "Terminating",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Expired => "Expired",
            Self::Other(s) => s,
        }
    }

    /// Parses a wire name; unknown names become [`ContainerGroupStatus::Other`].
    pub fn parse(s: &str) -> Self {
        match s {
            "Scheduling" => Self::Scheduling,
            "ScheduleFailed" => Self::ScheduleFailed,
            "Pending" => Self::Pending,
            "Running" => Self::Running,
            "Restarting" => Self::Restarting,
            "Updating" => Self::Updating,
            "Terminating" => Self::Terminating,
            "Succeeded" => Self::Succeeded,
            "Failed" => Self::Failed,
            "Expired" => Self::Expired,
            other => Self::Other(other.to_string()),
        }
    }

    /// Whether the group will never change state again (Succeeded, Failed, Expired, ScheduleFailed).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Expired | Self::ScheduleFailed
        )
    }
}

impl std::fmt::Display for ContainerGroupStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ContainerGroupStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ContainerGroupStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

// ------------------------------------------------------------------------------------------
// CreateContainerGroup
// ------------------------------------------------------------------------------------------

/// `CreateContainerGroup`: the full parameter set of the 2018-08-08 API.
///
/// Required: `container_group_name` (2–128 chars, lower-case letters, digits and `-`) and at
/// least one container with `name` and `image`. Everything else is optional; `None` and
/// empty lists are not sent. Parameters this model lacks can be passed in `extra` as
/// already-flattened wire pairs (e.g. `("Container.1.Foo", "bar")`); they are appended
/// after the modelled ones and are signed like any other.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateContainerGroupRequest {
    /// `ContainerGroupName`.
    pub container_group_name: String,
    /// `Container.N.*` (≥1, ≤20 together with init containers' volumes limits).
    #[serde(rename = "Container", skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
    /// `InitContainer.N.*`: run to completion, in order, before the containers start.
    #[serde(rename = "InitContainer", skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    /// `Volume.N.*` (≤20).
    #[serde(rename = "Volume", skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// `RestartPolicy` (default `Always`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// `Cpu`: instance vCPUs (rounded up to a supported spec).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// `Memory`: instance GiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    /// `InstanceType`: ECS instance types in preference order (multi-spec), comma-joined on the wire.
    #[serde(
        rename = "InstanceType",
        with = "comma_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub instance_types: Vec<String>,
    /// `ComputeCategory.N`: `economy` / `general`, in preference order.
    #[serde(rename = "ComputeCategory", skip_serializing_if = "Vec::is_empty")]
    pub compute_category: Vec<String>,
    /// `CpuArchitecture`: `AMD64` (default) or `ARM64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_architecture: Option<String>,
    /// `OsType`: `Linux` (default) or `Windows`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_type: Option<String>,
    /// `ZoneId`; empty lets ECI pick.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
    /// `SecurityGroupId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_group_id: Option<String>,
    /// `VSwitchId`: up to 10 vSwitches (multi-zone), comma-joined on the wire.
    #[serde(
        rename = "VSwitchId",
        with = "comma_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub vswitch_ids: Vec<String>,
    /// `ScheduleStrategy`: `VSwitchOrdered` or `VSwitchRandom`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_strategy: Option<String>,
    /// `SpotStrategy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spot_strategy: Option<SpotStrategy>,
    /// `SpotPriceLimit`: hourly cap, ≤3 decimals; required with `SpotWithPriceLimit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spot_price_limit: Option<f64>,
    /// `SpotDuration`: protection hours (default 1, 0 = none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spot_duration: Option<i64>,
    /// `StrictSpot`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict_spot: Option<bool>,
    /// `ClientToken`: idempotency key (≤64 ASCII). See [`crate::client_token_for_pod`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// `DryRun`: validate only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// `Tag.N.*` (≤20).
    #[serde(rename = "Tag", skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// `ImageRegistryCredential.N.*`: private registry logins.
    #[serde(
        rename = "ImageRegistryCredential",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub image_registry_credentials: Vec<ImageRegistryCredential>,
    /// `AcrRegistryInfo.N.*`: password-free ACR Enterprise pulls.
    #[serde(rename = "AcrRegistryInfo", skip_serializing_if = "Vec::is_empty")]
    pub acr_registry_info: Vec<AcrRegistryInfo>,
    /// `AutoMatchImageCache`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_match_image_cache: Option<bool>,
    /// `ImageSnapshotId`: an image cache `imc-…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_snapshot_id: Option<String>,
    /// `ImageAccelerateMode` (`nydus`, `dadi`, `imc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_accelerate_mode: Option<String>,
    /// `DnsPolicy`: `None` (use `dns_config`) or `Default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<String>,
    /// `DnsConfig.*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<DnsConfig>,
    /// `HostAliase.N.*` (sic): `/etc/hosts` entries.
    #[serde(rename = "HostAliase", skip_serializing_if = "Vec::is_empty")]
    pub host_aliases: Vec<HostAlias>,
    /// `HostName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// `SecurityContext.Sysctl.N.*`: safe sysctls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// `HostSecurityContext.Sysctl.N.*`: unsafe sysctls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_security_context: Option<PodSecurityContext>,
    /// `EipInstanceId`: bind an existing EIP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eip_instance_id: Option<String>,
    /// `AutoCreateEip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_create_eip: Option<bool>,
    /// `EipBandwidth` (Mbit/s, default 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eip_bandwidth: Option<i64>,
    /// `EipISP`: `BGP` / `BGP_PRO`.
    #[serde(rename = "EipISP", skip_serializing_if = "Option::is_none")]
    pub eip_isp: Option<String>,
    /// `EipCommonBandwidthPackage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eip_common_bandwidth_package: Option<String>,
    /// `Ipv6AddressCount`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_address_count: Option<i64>,
    /// `Ipv6GatewayBandwidthEnable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_gateway_bandwidth_enable: Option<bool>,
    /// `Ipv6GatewayBandwidth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_gateway_bandwidth: Option<String>,
    /// `IngressBandwidth` (bit/s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress_bandwidth: Option<i64>,
    /// `EgressBandwidth` (bit/s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_bandwidth: Option<i64>,
    /// `PrivateIpAddress`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_ip_address: Option<String>,
    /// `FixedIp`: keep the IP across re-creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_ip: Option<String>,
    /// `FixedIpRetainHour` (default 48).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_ip_retain_hour: Option<i64>,
    /// `EphemeralStorage`: extra GiB beyond the included 30 GiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<i64>,
    /// `ActiveDeadlineSeconds`: force-exit after this many seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    /// `TerminationGracePeriodSeconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    /// `RamRoleName`: instance RAM role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_role_name: Option<String>,
    /// `ResourceGroupId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_group_id: Option<String>,
    /// `ShareProcessNamespace`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_process_namespace: Option<bool>,
    /// `ContainerResourceView`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_resource_view: Option<bool>,
    /// `CorePattern`: core-dump directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_pattern: Option<String>,
    /// `NtpServer.N`.
    #[serde(rename = "NtpServer", skip_serializing_if = "Vec::is_empty")]
    pub ntp_servers: Vec<String>,
    /// `InsecureRegistry`: comma list of self-signed registries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_registry: Option<String>,
    /// `PlainHttpRegistry`: comma list of HTTP registries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plain_http_registry: Option<String>,
    /// `CpuOptionsCore`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_options_core: Option<i64>,
    /// `CpuOptionsThreadsPerCore`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_options_threads_per_core: Option<i64>,
    /// `CpuOptionsNuma`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_options_numa: Option<String>,
    /// `GpuDriverVersion`, e.g. `tesla=525.85.12`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_driver_version: Option<String>,
    /// `DataCacheBucket`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_cache_bucket: Option<String>,
    /// `DataCachePL`.
    #[serde(rename = "DataCachePL", skip_serializing_if = "Option::is_none")]
    pub data_cache_pl: Option<String>,
    /// `DataCacheProvisionedIops`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_cache_provisioned_iops: Option<i64>,
    /// `DataCacheBurstingEnabled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_cache_bursting_enabled: Option<bool>,
    /// `MaxPendingMinute`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_minute: Option<i64>,
    /// `OverheadReservationOption.EnableOverheadReservation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overhead_reservation_option: Option<OverheadReservationOption>,
    /// Raw, already-flattened parameters merged into the request as-is (escape hatch for
    /// parameters this model does not cover). Never produced by the emulator's parser.
    #[serde(skip)]
    pub extra: Vec<(String, String)>,
}

/// `OverheadReservationOption.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct OverheadReservationOption {
    /// `EnableOverheadReservation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_overhead_reservation: Option<bool>,
}

/// One container (`Container.N.*`) or init container (`InitContainer.N.*`; init containers
/// ignore probes, lifecycle hooks, stdin/tty).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Container {
    /// `Name` (required).
    pub name: String,
    /// `Image` (required).
    pub image: String,
    /// `Cpu` (vCPUs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// `Memory` (GiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    /// `Gpu` (count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<i64>,
    /// `WorkingDir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `ImagePullPolicy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// `Command.N`: entrypoint override.
    #[serde(rename = "Command", skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// `Arg.N`: arguments (≤10).
    #[serde(rename = "Arg", skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// `EnvironmentVar.N.*`.
    #[serde(rename = "EnvironmentVar", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// `EnvironmentVarHide`: hide env values in Describe responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_var_hide: Option<bool>,
    /// `Port.N.*`.
    #[serde(rename = "Port", skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// `VolumeMount.N.*`.
    #[serde(rename = "VolumeMount", skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// `ReadinessProbe.*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// `LivenessProbe.*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// `SecurityContext.*` (capabilities, read-only root, run-as-user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<ContainerSecurityContext>,
    /// `SecurityContextPrivileged`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context_privileged: Option<bool>,
    /// `SecurityContextRunAsGroup`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context_run_as_group: Option<i64>,
    /// `SecurityContextRunAsNonRoot`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context_run_as_non_root: Option<bool>,
    /// `Stdin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<bool>,
    /// `StdinOnce`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin_once: Option<bool>,
    /// `Tty`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    /// `TerminationMessagePath`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_message_path: Option<String>,
    /// `TerminationMessagePolicy`: `File` / `FallbackToLogsOnError`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_message_policy: Option<String>,
    /// `LifecyclePostStartHandlerExec.N`.
    #[serde(
        rename = "LifecyclePostStartHandlerExec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub lifecycle_post_start_handler_exec: Vec<String>,
    /// `LifecyclePostStartHandlerHttpGetHost`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_post_start_handler_http_get_host: Option<String>,
    /// `LifecyclePostStartHandlerHttpGetPort`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_post_start_handler_http_get_port: Option<i64>,
    /// `LifecyclePostStartHandlerHttpGetPath`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_post_start_handler_http_get_path: Option<String>,
    /// `LifecyclePostStartHandlerHttpGetScheme`: `HTTP` / `HTTPS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_post_start_handler_http_get_scheme: Option<String>,
    /// `LifecyclePostStartHandlerHttpGetHttpHeader.N.*`.
    #[serde(
        rename = "LifecyclePostStartHandlerHttpGetHttpHeader",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub lifecycle_post_start_handler_http_get_http_headers: Vec<HttpHeader>,
    /// `LifecyclePostStartHandlerTcpSocketHost`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_post_start_handler_tcp_socket_host: Option<String>,
    /// `LifecyclePostStartHandlerTcpSocketPort`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_post_start_handler_tcp_socket_port: Option<i64>,
    /// `LifecyclePreStopHandlerExec.N`.
    #[serde(
        rename = "LifecyclePreStopHandlerExec",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub lifecycle_pre_stop_handler_exec: Vec<String>,
    /// `LifecyclePreStopHandlerHttpGetHost`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_pre_stop_handler_http_get_host: Option<String>,
    /// `LifecyclePreStopHandlerHttpGetPort`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_pre_stop_handler_http_get_port: Option<i64>,
    /// `LifecyclePreStopHandlerHttpGetPath`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_pre_stop_handler_http_get_path: Option<String>,
    /// `LifecyclePreStopHandlerHttpGetScheme`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_pre_stop_handler_http_get_scheme: Option<String>,
    /// `LifecyclePreStopHandlerHttpGetHttpHeader.N.*`.
    #[serde(
        rename = "LifecyclePreStopHandlerHttpGetHttpHeader",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub lifecycle_pre_stop_handler_http_get_http_headers: Vec<HttpHeader>,
    /// `LifecyclePreStopHandlerTcpSocketHost`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_pre_stop_handler_tcp_socket_host: Option<String>,
    /// `LifecyclePreStopHandlerTcpSocketPort`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_pre_stop_handler_tcp_socket_port: Option<i64>,
}

impl Container {
    /// Whether a preStop hook of any kind is configured.
    pub fn has_pre_stop(&self) -> bool {
        !self.lifecycle_pre_stop_handler_exec.is_empty()
            || self.lifecycle_pre_stop_handler_http_get_port.is_some()
            || self.lifecycle_pre_stop_handler_tcp_socket_port.is_some()
    }
}

/// An HTTP header of a lifecycle `HttpGet` hook.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HttpHeader {
    /// `Name`.
    pub name: String,
    /// `Value`.
    pub value: String,
}

/// `EnvironmentVar.N.*`: a literal value or a field reference.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EnvVar {
    /// `Key` (1–128 chars of `[A-Za-z0-9_]`, not starting with a digit).
    pub key: String,
    /// `Value` (≤256 chars).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `FieldRef.FieldPath` (only `status.podIP` is supported by ECI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
}

/// `FieldRef.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct FieldRef {
    /// `FieldPath`, e.g. `status.podIP`.
    pub field_path: String,
}

/// `Port.N.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerPort {
    /// `Port` (1–65535).
    pub port: i64,
    /// `Protocol`: `TCP` / `UDP`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// `VolumeMount.N.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeMount {
    /// `Name` of a volume of the group.
    pub name: String,
    /// `MountPath`.
    pub mount_path: String,
    /// `SubPath`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// `ReadOnly`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// `MountPropagation`: `None` / `HostToContainer` / `Bidirectional`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_propagation: Option<String>,
}

/// A readiness/liveness probe: timing plus exactly one handler.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Probe {
    /// `InitialDelaySeconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i64>,
    /// `PeriodSeconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i64>,
    /// `TimeoutSeconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// `SuccessThreshold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i64>,
    /// `FailureThreshold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i64>,
    /// `HttpGet.*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    /// `TcpSocket.*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    /// `Exec.*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
}

/// `HttpGet.*` of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HttpGetAction {
    /// `Path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `Port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// `Scheme`: `HTTP` / `HTTPS`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}

/// `TcpSocket.*` of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TcpSocketAction {
    /// `Port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// `Host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// `Exec.*` of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecAction {
    /// `Command.N`.
    #[serde(rename = "Command", skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

/// Container `SecurityContext.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerSecurityContext {
    /// `Capability.Add.N`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capability: Option<Capability>,
    /// `ReadOnlyRootFilesystem`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    /// `RunAsUser`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
}

/// `Capability.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Capability {
    /// `Add.N`, e.g. `NET_ADMIN`.
    #[serde(rename = "Add", skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
}

/// Group-level `SecurityContext.*` / `HostSecurityContext.*`: sysctls.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PodSecurityContext {
    /// `Sysctl.N.*`.
    #[serde(rename = "Sysctl", skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<NameValue>,
}

/// A `Name`/`Value` pair (sysctls, DNS options).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NameValue {
    /// `Name`.
    pub name: String,
    /// `Value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `DnsConfig.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DnsConfig {
    /// `NameServer.N`.
    #[serde(rename = "NameServer", skip_serializing_if = "Vec::is_empty")]
    pub name_servers: Vec<String>,
    /// `Search.N`.
    #[serde(rename = "Search", skip_serializing_if = "Vec::is_empty")]
    pub searches: Vec<String>,
    /// `Option.N.*` (e.g. `ndots`).
    #[serde(rename = "Option", skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<NameValue>,
}

/// `HostAliase.N.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostAlias {
    /// `Ip`.
    pub ip: String,
    /// `Hostname.N`.
    #[serde(rename = "Hostname", skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
}

/// `ImageRegistryCredential.N.*`.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageRegistryCredential {
    /// `Server`: registry host.
    pub server: String,
    /// `UserName`.
    pub user_name: String,
    /// `Password` (redacted in Debug output).
    pub password: String,
}

impl std::fmt::Debug for ImageRegistryCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageRegistryCredential")
            .field("server", &self.server)
            .field("user_name", &self.user_name)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `AcrRegistryInfo.N.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AcrRegistryInfo {
    /// `InstanceId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// `InstanceName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    /// `RegionId` of the ACR instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_id: Option<String>,
    /// `Domain.N`.
    #[serde(rename = "Domain", skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// `ArnService`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arn_service: Option<String>,
    /// `ArnUser`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arn_user: Option<String>,
}

/// `Volume.N.*`: a name, a type and the matching type-specific block.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Volume {
    /// `Name`.
    pub name: String,
    /// `Type`.
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<VolumeType>,
    /// `EmptyDirVolume.*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty_dir_volume: Option<EmptyDirVolume>,
    /// `NFSVolume.*`.
    #[serde(rename = "NFSVolume", skip_serializing_if = "Option::is_none")]
    pub nfs_volume: Option<NfsVolume>,
    /// `ConfigFileVolume.*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file_volume: Option<ConfigFileVolume>,
    /// `FlexVolume.*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flex_volume: Option<FlexVolume>,
    /// `DiskVolume.*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_volume: Option<DiskVolume>,
    /// `HostPathVolume.*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_path_volume: Option<HostPathVolume>,
}

/// `EmptyDirVolume.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EmptyDirVolume {
    /// `Medium`: empty (node disk), `Memory` or `LocalRaid0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    /// `SizeLimit`, e.g. `256Mi`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

/// `NFSVolume.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NfsVolume {
    /// `Server`.
    pub server: String,
    /// `Path`.
    pub path: String,
    /// `ReadOnly`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// `ConfigFileVolume.*`: files with given content (ConfigMaps, Secrets).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConfigFileVolume {
    /// `DefaultMode` (octal permission bits as a decimal number, e.g. 420 = 0644).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i64>,
    /// `ConfigFileToPath.N.*`.
    #[serde(rename = "ConfigFileToPath", skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ConfigFileToPath>,
}

/// `ConfigFileToPath.N.*`: one file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConfigFileToPath {
    /// `Path` relative to the mount point.
    pub path: String,
    /// `Content`: Base64 of the file bytes (≤32 KB).
    pub content: String,
    /// `Mode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<i64>,
}

/// `FlexVolume.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct FlexVolume {
    /// `Driver`, e.g. `alicloud/disk`.
    pub driver: String,
    /// `FsType`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
    /// `Options`: a JSON object as a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
}

/// `DiskVolume.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DiskVolume {
    /// `DiskId`.
    pub disk_id: String,
    /// `DiskSize` (GiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<i64>,
    /// `FsType`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
}

/// `HostPathVolume.*`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostPathVolume {
    /// `Path`.
    pub path: String,
    /// `Type`: `Directory` / `File`.
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `CreateContainerGroup` response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateContainerGroupResponse {
    /// `RequestId`.
    pub request_id: String,
    /// `ContainerGroupId`, e.g. `eci-bp1abcdefghij0123456`.
    pub container_group_id: String,
}

// ------------------------------------------------------------------------------------------
// DescribeContainerGroups
// ------------------------------------------------------------------------------------------

/// `DescribeContainerGroups`: by ids, name, status, tags, network; paged with `next_token`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeContainerGroupsRequest {
    /// `ContainerGroupIds` (≤20; a JSON array string on the wire).
    #[serde(with = "json_list", skip_serializing_if = "Vec::is_empty")]
    pub container_group_ids: Vec<String>,
    /// `ContainerGroupName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_group_name: Option<String>,
    /// `Status`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `Tag.N.*`: all must match.
    #[serde(rename = "Tag", skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// `ZoneId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
    /// `VSwitchId`.
    #[serde(rename = "VSwitchId", skip_serializing_if = "Option::is_none")]
    pub vswitch_id: Option<String>,
    /// `SecurityGroupId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_group_id: Option<String>,
    /// `ResourceGroupId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_group_id: Option<String>,
    /// `ComputeCategory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_category: Option<String>,
    /// `WithEvent`: include events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with_event: Option<bool>,
    /// `Limit` (≤20, default 20).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `NextToken` from the previous page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `DescribeContainerGroups` response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeContainerGroupsResponse {
    /// `RequestId`.
    pub request_id: String,
    /// `TotalCount`: all matching groups.
    pub total_count: i64,
    /// `NextToken`: empty on the last page.
    pub next_token: String,
    /// `ContainerGroups`.
    pub container_groups: Vec<ContainerGroup>,
}

/// A container group as described by ECI.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerGroup {
    /// `ContainerGroupId`.
    pub container_group_id: String,
    /// `ContainerGroupName`.
    pub container_group_name: String,
    /// `RegionId`.
    pub region_id: String,
    /// `ZoneId`.
    pub zone_id: String,
    /// `VpcId`.
    pub vpc_id: String,
    /// `VSwitchId`.
    #[serde(rename = "VSwitchId")]
    pub vswitch_id: String,
    /// `SecurityGroupId`.
    pub security_group_id: String,
    /// `EniInstanceId`.
    pub eni_instance_id: String,
    /// `IntranetIp`: the pod IP.
    pub intranet_ip: String,
    /// `InternetIp`.
    pub internet_ip: String,
    /// `Ipv6Address`.
    pub ipv6_address: String,
    /// `Status`.
    pub status: ContainerGroupStatus,
    /// `RestartPolicy`.
    pub restart_policy: String,
    /// `Cpu`: effective vCPUs after spec rounding.
    pub cpu: f64,
    /// `Memory`: effective GiB after spec rounding.
    pub memory: f64,
    /// `InstanceType`.
    pub instance_type: String,
    /// `SpotStrategy`.
    pub spot_strategy: String,
    /// `SpotPriceLimit`.
    pub spot_price_limit: f64,
    /// `Discount`.
    pub discount: f64,
    /// `ResourceGroupId`.
    pub resource_group_id: String,
    /// `RamRoleName`.
    pub ram_role_name: String,
    /// `ComputeCategory`.
    pub compute_category: String,
    /// `EphemeralStorage`.
    pub ephemeral_storage: i64,
    /// `CreationTime` (RFC 3339 UTC).
    pub creation_time: String,
    /// `SucceededTime`.
    pub succeeded_time: String,
    /// `FailedTime`.
    pub failed_time: String,
    /// `ExpiredTime`.
    pub expired_time: String,
    /// `Tags`.
    pub tags: Vec<Tag>,
    /// `Events` (with `WithEvent`; ≤50).
    pub events: Vec<Event>,
    /// `Containers`.
    pub containers: Vec<ContainerInfo>,
    /// `InitContainers`.
    pub init_containers: Vec<ContainerInfo>,
    /// `Volumes` (type-specific fields flattened into the volume).
    pub volumes: Vec<VolumeInfo>,
    /// `HostAliases`.
    pub host_aliases: Vec<HostAliasInfo>,
    /// `DnsConfig`.
    pub dns_config: Option<DnsConfigInfo>,
    /// `EciSecurityContext`.
    pub eci_security_context: Option<EciSecurityContext>,
}

/// An event of a container group.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Event {
    /// `Count`.
    pub count: i64,
    /// `Type`: `Normal` / `Warning`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `Name`: the object it refers to.
    pub name: String,
    /// `Message`.
    pub message: String,
    /// `Reason`, e.g. `Pulling`, `Started`, `NoStock`.
    pub reason: String,
    /// `FirstTimestamp`.
    pub first_timestamp: String,
    /// `LastTimestamp`.
    pub last_timestamp: String,
}

/// A container as described by ECI (`Containers[]` / `InitContainers[]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerInfo {
    /// `Name`.
    pub name: String,
    /// `Image`.
    pub image: String,
    /// `Cpu`.
    pub cpu: f64,
    /// `Memory`.
    pub memory: f64,
    /// `Gpu`.
    pub gpu: i64,
    /// `WorkingDir`.
    pub working_dir: String,
    /// `ImagePullPolicy`.
    pub image_pull_policy: String,
    /// `RestartCount`.
    pub restart_count: i64,
    /// `Ready`.
    pub ready: bool,
    /// `Stdin`.
    pub stdin: bool,
    /// `StdinOnce`.
    pub stdin_once: bool,
    /// `Tty`.
    pub tty: bool,
    /// `Commands` (init containers: `Command`).
    #[serde(alias = "Command")]
    pub commands: Vec<String>,
    /// `Args`.
    pub args: Vec<String>,
    /// `Ports`.
    pub ports: Vec<PortInfo>,
    /// `VolumeMounts`.
    pub volume_mounts: Vec<VolumeMountInfo>,
    /// `EnvironmentVars`.
    pub environment_vars: Vec<EnvVarInfo>,
    /// `CurrentState`.
    pub current_state: ContainerState,
    /// `PreviousState`.
    pub previous_state: ContainerState,
}

/// `Ports[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortInfo {
    /// `Port`.
    pub port: i64,
    /// `Protocol`.
    pub protocol: String,
}

/// `VolumeMounts[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeMountInfo {
    /// `Name`.
    pub name: String,
    /// `MountPath`.
    pub mount_path: String,
    /// `SubPath`.
    pub sub_path: String,
    /// `ReadOnly`.
    pub read_only: bool,
    /// `MountPropagation`.
    pub mount_propagation: String,
}

/// `EnvironmentVars[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EnvVarInfo {
    /// `Key`.
    pub key: String,
    /// `Value`.
    pub value: String,
    /// `ValueFrom.FieldRef.FieldPath`.
    pub value_from: Option<EnvVarSource>,
}

/// `ValueFrom`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EnvVarSource {
    /// `FieldRef`.
    pub field_ref: Option<FieldRef>,
}

/// `CurrentState` / `PreviousState` of a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerState {
    /// `State`: `Waiting` / `Running` / `Terminated` (empty if none).
    pub state: String,
    /// `DetailStatus`.
    pub detail_status: String,
    /// `ExitCode`.
    pub exit_code: i64,
    /// `Signal`.
    pub signal: i64,
    /// `Reason`: `Started`, `Completed`, `Error`, `CrashLoopBackOff`, …
    pub reason: String,
    /// `Message`.
    pub message: String,
    /// `StartTime`.
    pub start_time: String,
    /// `FinishTime`.
    pub finish_time: String,
}

/// `Volumes[]` (type-specific fields are flattened into prefixed names here).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeInfo {
    /// `Type`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `Name`.
    pub name: String,
    /// `NFSVolumePath`.
    #[serde(rename = "NFSVolumePath")]
    pub nfs_volume_path: String,
    /// `NFSVolumeServer`.
    #[serde(rename = "NFSVolumeServer")]
    pub nfs_volume_server: String,
    /// `NFSVolumeReadOnly`.
    #[serde(rename = "NFSVolumeReadOnly")]
    pub nfs_volume_read_only: bool,
    /// `DiskVolumeDiskId`.
    pub disk_volume_disk_id: String,
    /// `DiskVolumeFsType`.
    pub disk_volume_fs_type: String,
    /// `FlexVolumeDriver`.
    pub flex_volume_driver: String,
    /// `FlexVolumeFsType`.
    pub flex_volume_fs_type: String,
    /// `FlexVolumeOptions`.
    pub flex_volume_options: String,
    /// `EmptyDirVolumeMedium`.
    pub empty_dir_volume_medium: String,
    /// `EmptyDirVolumeSizeLimit`.
    pub empty_dir_volume_size_limit: String,
    /// `ConfigFileVolumeConfigFileToPaths`.
    pub config_file_volume_config_file_to_paths: Vec<ConfigFileInfo>,
}

/// `ConfigFileVolumeConfigFileToPaths[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConfigFileInfo {
    /// `Content`.
    pub content: String,
    /// `Path`.
    pub path: String,
}

/// `HostAliases[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostAliasInfo {
    /// `Ip`.
    pub ip: String,
    /// `Hostnames`.
    pub hostnames: Vec<String>,
}

/// `DnsConfig` in a response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DnsConfigInfo {
    /// `NameServers`.
    pub name_servers: Vec<String>,
    /// `Searches`.
    pub searches: Vec<String>,
    /// `Options`.
    pub options: Vec<NameValue>,
}

/// `EciSecurityContext`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EciSecurityContext {
    /// `Sysctls`.
    pub sysctls: Vec<NameValue>,
}

// ------------------------------------------------------------------------------------------
// DescribeContainerGroupStatus
// ------------------------------------------------------------------------------------------

/// `DescribeContainerGroupStatus`: Kubernetes-shaped status, ≤20 ids per call, `since_second`
/// for change polling.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeContainerGroupStatusRequest {
    /// `ContainerGroupIds` (≤20; JSON array string on the wire).
    #[serde(with = "json_list", skip_serializing_if = "Vec::is_empty")]
    pub container_group_ids: Vec<String>,
    /// `Tag.N.*`.
    #[serde(rename = "Tag", skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// `ZoneId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
    /// `VSwitchId`.
    #[serde(rename = "VSwitchId", skip_serializing_if = "Option::is_none")]
    pub vswitch_id: Option<String>,
    /// `ResourceGroupId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_group_id: Option<String>,
    /// `SinceSecond`: only groups whose status changed within the last N seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_second: Option<i64>,
    /// `Limit` (default 200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `NextToken`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `DescribeContainerGroupStatus` response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeContainerGroupStatusResponse {
    /// `RequestId`.
    pub request_id: String,
    /// `TotalCount`.
    pub total_count: i64,
    /// `NextToken`.
    pub next_token: String,
    /// `Data`.
    pub data: Vec<ContainerGroupStatusInfo>,
}

/// One entry of `Data`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerGroupStatusInfo {
    /// `ContainerGroupId`.
    pub container_group_id: String,
    /// `Name`.
    pub name: String,
    /// `Namespace`.
    pub namespace: String,
    /// `Status`.
    pub status: ContainerGroupStatus,
    /// `uuid`.
    #[serde(rename = "uuid")]
    pub uuid: String,
    /// `Annotations` (a JSON object as a string).
    pub annotations: String,
    /// `PodStatus`.
    pub pod_status: Option<PodStatus>,
}

/// `PodStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PodStatus {
    /// `Phase`: `Pending` / `Running` / `Succeeded` / `Failed`.
    pub phase: String,
    /// `PodIp`.
    pub pod_ip: String,
    /// `PodIps`.
    pub pod_ips: Vec<PodIp>,
    /// `HostIp`.
    pub host_ip: String,
    /// `QosClass`.
    pub qos_class: String,
    /// `StartTime`.
    pub start_time: String,
    /// `Conditions`.
    pub conditions: Vec<PodCondition>,
    /// `ContainerStatuses`.
    pub container_statuses: Vec<PodContainerStatus>,
}

/// `PodIps[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PodIp {
    /// `Ip`.
    pub ip: String,
}

/// `Conditions[]` (note the lower-case wire keys).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PodCondition {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `status`: `True` / `False`.
    #[serde(rename = "status")]
    pub status: String,
    /// `Reason`.
    #[serde(rename = "Reason")]
    pub reason: String,
    /// `Message`.
    #[serde(rename = "Message")]
    pub message: String,
    /// `lastTransitionTime`.
    #[serde(rename = "lastTransitionTime")]
    pub last_transition_time: String,
}

/// `ContainerStatuses[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PodContainerStatus {
    /// `Name`.
    pub name: String,
    /// `Image`.
    pub image: String,
    /// `ImageID`.
    #[serde(rename = "ImageID")]
    pub image_id: String,
    /// `Ready`.
    pub ready: bool,
    /// `Started`.
    pub started: bool,
    /// `RestartCount`.
    pub restart_count: i64,
    /// `State`.
    pub state: PodContainerState,
    /// `LastState`.
    pub last_state: PodContainerState,
}

/// `State` / `LastState`: at most one of the three is set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PodContainerState {
    /// `Running`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<RunningState>,
    /// `Terminated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminated: Option<TerminatedState>,
    /// `Waiting`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<WaitingState>,
}

/// `Running` (the key `StartedAtstartedAt` is the SDK's spelling).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunningState {
    /// `StartedAtstartedAt`.
    #[serde(rename = "StartedAtstartedAt")]
    pub started_at: String,
}

/// `Terminated`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TerminatedState {
    /// `ContainerID`.
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    /// `ExitCode`.
    pub exit_code: i64,
    /// `Signal`.
    pub signal: i64,
    /// `Reason`.
    pub reason: String,
    /// `Message`.
    pub message: String,
    /// `StartedAt`.
    pub started_at: String,
    /// `FinishedAt`.
    pub finished_at: String,
}

/// `Waiting`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WaitingState {
    /// `Reason`.
    pub reason: String,
    /// `Message`.
    pub message: String,
}

// ------------------------------------------------------------------------------------------
// DeleteContainerGroup, RestartContainerGroup, UpdateContainerGroup
// ------------------------------------------------------------------------------------------

/// `DeleteContainerGroup`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeleteContainerGroupRequest {
    /// `ContainerGroupId` (required).
    pub container_group_id: String,
    /// `ClientToken`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// `Force`: skip graceful termination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}

/// `RestartContainerGroup` (only `Pending`/`Running` groups).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartContainerGroupRequest {
    /// `ContainerGroupId` (required).
    pub container_group_id: String,
    /// `ClientToken`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
}

/// `UpdateContainerGroup` (only `Pending`/`Running` groups; `RenewUpdate` replaces whole
/// lists, `IncrementalUpdate` changes only what is given).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateContainerGroupRequest {
    /// `ContainerGroupId` (required).
    pub container_group_id: String,
    /// `ClientToken`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// `UpdateType`: `RenewUpdate` (default) / `IncrementalUpdate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_type: Option<String>,
    /// `RestartPolicy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// `Cpu`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// `Memory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    /// `Tag.N.*`.
    #[serde(rename = "Tag", skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// `Volume.N.*`.
    #[serde(rename = "Volume", skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// `Container.N.*`.
    #[serde(rename = "Container", skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
    /// `InitContainer.N.*`.
    #[serde(rename = "InitContainer", skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    /// `ImageRegistryCredential.N.*`.
    #[serde(
        rename = "ImageRegistryCredential",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub image_registry_credentials: Vec<ImageRegistryCredential>,
    /// `AcrRegistryInfo.N.*`.
    #[serde(rename = "AcrRegistryInfo", skip_serializing_if = "Vec::is_empty")]
    pub acr_registry_info: Vec<AcrRegistryInfo>,
    /// `DnsConfig.*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<DnsConfig>,
    /// `ResourceGroupId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_group_id: Option<String>,
}

/// Responses that carry nothing but the request id (Delete, Restart, Update).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestIdResponse {
    /// `RequestId`.
    pub request_id: String,
}

// ------------------------------------------------------------------------------------------
// DescribeContainerLog, ExecContainerCommand
// ------------------------------------------------------------------------------------------

/// `DescribeContainerLog`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeContainerLogRequest {
    /// `ContainerGroupId` (required).
    pub container_group_id: String,
    /// `ContainerName` (required).
    pub container_name: String,
    /// `Tail`: last N lines (default 500, max 2000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tail: Option<u32>,
    /// `LimitBytes`: at most this many bytes (1–1048576).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u32>,
    /// `SinceSeconds`: only lines newer than N seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_seconds: Option<u32>,
    /// `StartTime` (RFC 3339): only lines at or after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// `Timestamps`: prefix each line with its RFC 3339 time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamps: Option<bool>,
    /// `LastTime`: the previous instance of a restarted container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_time: Option<bool>,
}

/// `DescribeContainerLog` response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeContainerLogResponse {
    /// `RequestId`.
    pub request_id: String,
    /// `ContainerName`.
    pub container_name: String,
    /// `Content`: the log text.
    pub content: String,
}

/// `ExecContainerCommand`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecContainerCommandRequest {
    /// `ContainerGroupId` (required).
    pub container_group_id: String,
    /// `ContainerName` (required).
    pub container_name: String,
    /// `Command` (required; ≤20 items × 256 chars; a JSON array string on the wire).
    #[serde(with = "json_list", skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// `TTY`.
    #[serde(rename = "TTY", skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
    /// `Stdin` (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdin: Option<bool>,
    /// `Sync`: run to completion and return the output in `sync_response`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<bool>,
}

/// `ExecContainerCommand` response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecContainerCommandResponse {
    /// `RequestId`.
    pub request_id: String,
    /// `WebSocketUri`: connect here to run the command interactively.
    pub web_socket_uri: String,
    /// `HttpUrl`.
    pub http_url: String,
    /// `SyncResponse`: output, with `Sync=true`.
    pub sync_response: String,
}

// ------------------------------------------------------------------------------------------
// DescribeContainerGroupMetric
// ------------------------------------------------------------------------------------------

/// `DescribeContainerGroupMetric`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeContainerGroupMetricRequest {
    /// `ContainerGroupId` (required).
    pub container_group_id: String,
    /// `StartTime` (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// `EndTime` (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// `Period` seconds: 15, 30, 60 or 600.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
}

/// `DescribeContainerGroupMetric` response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeContainerGroupMetricResponse {
    /// `RequestId`.
    pub request_id: String,
    /// `ContainerGroupId`.
    pub container_group_id: String,
    /// `Records` (≤50).
    pub records: Vec<MetricRecord>,
}

/// One sample.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MetricRecord {
    /// `Timestamp`.
    pub timestamp: String,
    /// `CPU`.
    #[serde(rename = "CPU")]
    pub cpu: CpuMetric,
    /// `Memory`.
    pub memory: MemoryMetric,
    /// `Network`.
    pub network: NetworkMetric,
    /// `Containers`.
    pub containers: Vec<ContainerMetric>,
}

/// `CPU`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CpuMetric {
    /// `Limit` (millicores).
    pub limit: i64,
    /// `Load`.
    pub load: i64,
    /// `UsageCoreNanoSeconds`.
    pub usage_core_nano_seconds: i64,
    /// `UsageNanoCores`.
    pub usage_nano_cores: i64,
}

/// `Memory`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MemoryMetric {
    /// `AvailableBytes`.
    pub available_bytes: i64,
    /// `Cache`.
    pub cache: i64,
    /// `Rss`.
    pub rss: i64,
    /// `UsageBytes`.
    pub usage_bytes: i64,
    /// `WorkingSet`.
    pub working_set: i64,
}

/// `Network`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkMetric {
    /// `Interfaces`.
    pub interfaces: Vec<NetworkInterfaceMetric>,
}

/// `Interfaces[]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkInterfaceMetric {
    /// `Name`.
    pub name: String,
    /// `RxBytes`.
    pub rx_bytes: i64,
    /// `TxBytes`.
    pub tx_bytes: i64,
    /// `RxPackets`.
    pub rx_packets: i64,
    /// `TxPackets`.
    pub tx_packets: i64,
}

/// `Containers[]` of a sample.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerMetric {
    /// `Name`.
    pub name: String,
    /// `CPU`.
    #[serde(rename = "CPU")]
    pub cpu: CpuMetric,
    /// `Memory`.
    pub memory: MemoryMetric,
}

// ------------------------------------------------------------------------------------------
// DescribeContainerGroupPrice
// ------------------------------------------------------------------------------------------

/// `DescribeContainerGroupPrice`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeContainerGroupPriceRequest {
    /// `ZoneId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
    /// `Cpu`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// `Memory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    /// `InstanceType`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// `EphemeralStorage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<i64>,
    /// `ComputeCategory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_category: Option<String>,
    /// `SpotStrategy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spot_strategy: Option<SpotStrategy>,
    /// `SpotPriceLimit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spot_price_limit: Option<f64>,
    /// `SpotDuration`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spot_duration: Option<i64>,
}

/// `DescribeContainerGroupPrice` response (lists are wrapped XML-style here).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeContainerGroupPriceResponse {
    /// `RequestId`.
    pub request_id: String,
    /// `PriceInfo`.
    pub price_info: PriceInfo,
}

/// `PriceInfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PriceInfo {
    /// `Price`.
    pub price: Price,
    /// `Rules.Rule`.
    pub rules: PriceRules,
    /// `SpotPrices.SpotPrice`.
    pub spot_prices: SpotPrices,
}

/// `Price`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Price {
    /// `Currency`: `CNY` / `USD`.
    pub currency: String,
    /// `OriginalPrice`.
    pub original_price: f64,
    /// `DiscountPrice`.
    pub discount_price: f64,
    /// `TradePrice`: what is billed.
    pub trade_price: f64,
    /// `DetailInfos.DetailInfo`.
    pub detail_infos: PriceDetailInfos,
}

/// `DetailInfos`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PriceDetailInfos {
    /// `DetailInfo`.
    pub detail_info: Vec<PriceDetail>,
}

/// `DetailInfo[]`: per-resource price.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PriceDetail {
    /// `Resource`: `cpu`, `memory`, …
    pub resource: String,
    /// `OriginalPrice`.
    pub original_price: f64,
    /// `DiscountPrice`.
    pub discount_price: f64,
    /// `TradePrice`.
    pub trade_price: f64,
    /// `Rules.Rule`.
    pub rules: PriceRules,
}

/// `Rules`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PriceRules {
    /// `Rule`.
    pub rule: Vec<PriceRule>,
}

/// `Rule[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PriceRule {
    /// `RuleId`.
    pub rule_id: i64,
    /// `Description`.
    pub description: String,
}

/// `SpotPrices`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SpotPrices {
    /// `SpotPrice`.
    pub spot_price: Vec<SpotPrice>,
}

/// `SpotPrice[]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SpotPrice {
    /// `InstanceType`.
    pub instance_type: String,
    /// `ZoneId`.
    pub zone_id: String,
    /// `OriginPrice`.
    pub origin_price: f64,
    /// `SpotPrice`.
    pub spot_price: f64,
}

/// The error envelope every failed call returns.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ErrorEnvelope {
    /// `RequestId`.
    #[serde(alias = "requestId")]
    pub request_id: String,
    /// `HostId`.
    pub host_id: String,
    /// `Code`.
    #[serde(alias = "code")]
    pub code: String,
    /// `Message`.
    #[serde(alias = "message")]
    pub message: String,
    /// `Recommend`.
    pub recommend: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::params::{from_params, to_params};

    #[test]
    fn create_request_flattens_to_reference_names() {
        let req = CreateContainerGroupRequest {
            container_group_name: "demo-1".into(),
            containers: vec![Container {
                name: "app".into(),
                image: "nginx:1.25".into(),
                cpu: Some(0.5),
                env: vec![
                    EnvVar {
                        key: "A".into(),
                        value: Some("1".into()),
                        field_ref: None,
                    },
                    EnvVar {
                        key: "POD_IP".into(),
                        value: None,
                        field_ref: Some(FieldRef {
                            field_path: "status.podIP".into(),
                        }),
                    },
                ],
                liveness_probe: Some(Probe {
                    http_get: Some(HttpGetAction {
                        port: Some(80),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                security_context: Some(ContainerSecurityContext {
                    capability: Some(Capability {
                        add: vec!["NET_ADMIN".into()],
                    }),
                    ..Default::default()
                }),
                lifecycle_pre_stop_handler_exec: vec!["sleep".into(), "5".into()],
                ..Default::default()
            }],
            volumes: vec![Volume {
                name: "cfg".into(),
                kind: Some(VolumeType::ConfigFileVolume),
                config_file_volume: Some(ConfigFileVolume {
                    default_mode: Some(420),
                    files: vec![ConfigFileToPath {
                        path: "a.conf".into(),
                        content: "aGk=".into(),
                        mode: None,
                    }],
                }),
                ..Default::default()
            }],
            vswitch_ids: vec!["vsw-a".into(), "vsw-b".into()],
            host_aliases: vec![HostAlias {
                ip: "10.0.0.1".into(),
                hostnames: vec!["db".into()],
            }],
            dns_config: Some(DnsConfig {
                options: vec![NameValue {
                    name: "ndots".into(),
                    value: Some("2".into()),
                }],
                ..Default::default()
            }),
            tags: vec![Tag::new("env", "test")],
            spot_strategy: Some(SpotStrategy::SpotWithPriceLimit),
            restart_policy: Some(RestartPolicy::OnFailure),
            ..Default::default()
        };
        let params = to_params(&req).expect("flattens");
        let has = |k: &str, v: &str| params.iter().any(|(pk, pv)| pk == k && pv == v);
        assert!(has(
            "Container.1.EnvironmentVar.2.FieldRef.FieldPath",
            "status.podIP"
        ));
        assert!(has("Container.1.LivenessProbe.HttpGet.Port", "80"));
        assert!(has(
            "Container.1.SecurityContext.Capability.Add.1",
            "NET_ADMIN"
        ));
        assert!(has("Container.1.LifecyclePreStopHandlerExec.2", "5"));
        assert!(has("Volume.1.Type", "ConfigFileVolume"));
        assert!(has(
            "Volume.1.ConfigFileVolume.ConfigFileToPath.1.Path",
            "a.conf"
        ));
        assert!(has("VSwitchId", "vsw-a,vsw-b"));
        assert!(has("HostAliase.1.Hostname.1", "db"));
        assert!(has("DnsConfig.Option.1.Name", "ndots"));
        assert!(has("Tag.1.Key", "env"));
        assert!(has("SpotStrategy", "SpotWithPriceLimit"));
        assert!(has("RestartPolicy", "OnFailure"));
        assert!(
            !params.iter().any(|(k, _)| k.contains("Memory")),
            "unset fields are not sent"
        );
        let back: CreateContainerGroupRequest = from_params(&params).expect("parses back");
        assert_eq!(back, req);
    }

    #[test]
    fn nfs_volume_type_uses_wire_spelling() {
        let v = Volume {
            name: "n".into(),
            kind: Some(VolumeType::NfsVolume),
            ..Default::default()
        };
        let params = to_params(&v).expect("flattens");
        assert!(params.contains(&("Type".into(), "NFSVolume".into())));
    }

    #[test]
    fn responses_tolerate_unknown_and_missing_fields() {
        let body = r#"{"RequestId":"R","TotalCount":1,"Extra":{"x":1},
            "ContainerGroups":[{"ContainerGroupId":"eci-1","Status":"Weird","Cpu":2,
            "Containers":[{"Name":"a","CurrentState":{"State":"Running"}}],
            "InitContainers":[{"Name":"i","Command":["sh"]}]}]}"#;
        let r: DescribeContainerGroupsResponse = serde_json::from_str(body).expect("lenient");
        assert_eq!(
            r.container_groups[0].status,
            ContainerGroupStatus::Other("Weird".into())
        );
        assert_eq!(r.container_groups[0].cpu, 2.0);
        assert_eq!(
            r.container_groups[0].init_containers[0].commands,
            vec!["sh"]
        );
        assert_eq!(r.next_token, "");
    }

    #[test]
    fn registry_password_is_not_in_debug() {
        let c = ImageRegistryCredential {
            server: "r".into(),
            user_name: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
