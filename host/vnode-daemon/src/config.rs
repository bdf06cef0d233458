//! The daemon's configuration: one typed [`Config`], built once at start-up from command-line
//! flags (each with an environment fallback, so the Virtual Kubelet manifest's variables work
//! unchanged) and an optional YAML file for everything structured (plugins, capacity,
//! intervals, concurrency, listen addresses, kubelet TLS, leader election).
//!
//! Precedence: flag > environment variable > config file > default. Everything is validated
//! here, before any task starts; a bad or missing setting becomes one [`ConfigError`] whose
//! `Display` is a single line naming the setting. Secrets ([`SecretString`]) never appear in
//! `Debug` output or logs.
//!
//! The full settings table lives in `examples/README.md` and in `vnode run --help`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// Node name used when neither `--nodename` nor `DEFAULT_NODE_NAME` is set (Virtual Kubelet's default).
pub const DEFAULT_NODE_NAME: &str = "virtual-kubelet";
/// The only provider this daemon implements; the seed manifest passes `--provider alibabacloud`.
pub const PROVIDER_ALIBABACLOUD: &str = "alibabacloud";
/// Duration of the node heartbeat Lease in `kube-node-lease` (the kubelet's and VK's value).
pub const NODE_LEASE_DURATION: Duration = Duration::from_secs(40);

/// Command-line flags of `vnode run`. Every flag that the Virtual Kubelet manifest sets through
/// the environment keeps that variable name as its fallback.
///
/// Values are taken as strings and validated by [`Config::load`], so that a bad value produces
/// one clear line naming the setting rather than a usage dump.
#[derive(clap::Args, Clone, Default)]
pub struct Flags {
    /// Cloud provider. Only `alibabacloud` (Alibaba Cloud ECI) exists; accepted so the Virtual
    /// Kubelet manifest's `--provider alibabacloud` works unchanged.
    #[arg(long, env = "VNODE_PROVIDER", value_name = "NAME")]
    pub provider: Option<String>,
    /// YAML file with the structured settings (plugins, capacity, intervals, concurrency, listen
    /// addresses, kubelet TLS, leader election). Unknown keys are an error.
    #[arg(long, env = "VNODE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Name of the virtual node [default: virtual-kubelet].
    #[arg(long = "nodename", env = "DEFAULT_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// Port of the kubelet API (TLS) that the API server dials for logs, exec and stats;
    /// published on the node as `daemonEndpoints.kubeletEndpoint.Port` [default: 10250].
    #[arg(long, env = "KUBELET_PORT", value_name = "PORT")]
    pub kubelet_port: Option<String>,
    /// Address the kubelet API binds [default: 0.0.0.0:<KUBELET_PORT>]. With port 0 the
    /// bound port is published on the node instead of KUBELET_PORT.
    #[arg(long, env = "VNODE_KUBELET_LISTEN", value_name = "ADDR")]
    pub kubelet_listen: Option<String>,
    /// The daemon's own IP (downward API `status.podIP`); becomes the node's InternalIP, the
    /// address the API server dials for the kubelet API. Required.
    #[arg(long, env = "VKUBELET_POD_IP", value_name = "IP")]
    pub pod_ip: Option<String>,
    /// Taint key on the virtual node [default: virtual-kubelet.io/provider].
    #[arg(long, env = "VKUBELET_TAINT_KEY", value_name = "KEY")]
    pub taint_key: Option<String>,
    /// Taint value [default: alibabacloud].
    #[arg(long, env = "VKUBELET_TAINT_VALUE", value_name = "VALUE")]
    pub taint_value: Option<String>,
    /// Taint effect: NoSchedule, PreferNoSchedule or NoExecute [default: NoSchedule].
    #[arg(long, env = "VKUBELET_TAINT_EFFECT", value_name = "EFFECT")]
    pub taint_effect: Option<String>,
    /// Register the node without a taint.
    #[arg(long)]
    pub disable_taint: bool,
    /// ECI region, e.g. cn-hangzhou. Required.
    #[arg(long, env = "ECI_REGION", value_name = "REGION")]
    pub eci_region: Option<String>,
    /// vSwitch IDs for the container groups, comma-separated (one per zone; several zones
    /// allowed). An entry may name its zone as `ZONE=VSWITCH` (e.g.
    /// `cn-hangzhou-h=vsw-123`) so placement can spread over zones. Required.
    #[arg(long, env = "ECI_VSWITCH", value_name = "IDS")]
    pub eci_vswitch: Option<String>,
    /// Security group ID for the container groups. Required.
    #[arg(long, env = "ECI_SECURITY_GROUP", value_name = "ID")]
    pub eci_security_group: Option<String>,
    /// AccessKey ID. Required (this or --eci-access-key-file).
    #[arg(
        long,
        env = "ECI_ACCESS_KEY",
        value_name = "ID",
        hide_env_values = true
    )]
    pub eci_access_key: Option<String>,
    /// File holding the AccessKey ID (e.g. a mounted Secret).
    #[arg(long, env = "ECI_ACCESS_KEY_FILE", value_name = "FILE")]
    pub eci_access_key_file: Option<PathBuf>,
    /// AccessKey secret. Required (this or --eci-secret-key-file). Never logged.
    #[arg(
        long,
        env = "ECI_SECRET_KEY",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub eci_secret_key: Option<String>,
    /// File holding the AccessKey secret (e.g. a mounted Secret).
    #[arg(long, env = "ECI_SECRET_KEY_FILE", value_name = "FILE")]
    pub eci_secret_key_file: Option<PathBuf>,
    /// Cluster name tagged on every container group, so several clusters can share a region
    /// [default: default].
    #[arg(long, env = "ECI_CLUSTER_NAME", value_name = "NAME")]
    pub eci_cluster_name: Option<String>,
    /// ECI OpenAPI endpoint URL [default: https://eci.<ECI_REGION>.aliyuncs.com]; point it at
    /// `vnode eci-emulator` for offline runs.
    #[arg(long, env = "ECI_ENDPOINT", value_name = "URL")]
    pub eci_endpoint: Option<String>,
    /// Address of the metrics and health server (`/metrics`, `/healthz`, `/readyz`)
    /// [default: 0.0.0.0:10255].
    #[arg(long, env = "VNODE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Namespace of the leader-election Lease; normally the daemon's own namespace via the
    /// downward API [default: kube-system].
    #[arg(long, env = "POD_NAMESPACE", value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Identity of this replica in leader election [default: the pod name (POD_NAME) or
    /// host name plus a random suffix].
    #[arg(long, env = "POD_NAME", value_name = "ID")]
    pub identity: Option<String>,
    /// Kubeconfig file for the Kubernetes API [default: in-cluster service account, else
    /// `KUBECONFIG` or `~/.kube/config`].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

/// A setting that is missing or invalid. `Display` is one line that names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} setting {setting}: {message}")]
pub struct ConfigError {
    /// "missing" or "invalid".
    pub kind: &'static str,
    /// How the operator sets it, e.g. `ECI_REGION (--eci-region)` or `config file x: intervals.leaseRenew`.
    pub setting: String,
    /// What is wrong, without secrets.
    pub message: String,
}

impl ConfigError {
    fn missing(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: "missing",
            setting: setting.into(),
            message: one_line(&message.into()),
        }
    }
    fn invalid(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: "invalid",
            setting: setting.into(),
            message: one_line(&message.into()),
        }
    }
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The validated configuration of the daemon.
#[derive(Debug, Clone)]
pub struct Config {
    /// The virtual node itself.
    pub node: NodeConfig,
    /// ECI account, network and endpoint.
    pub eci: EciConfig,
    /// Placement and translator plugins (None = the shipped default built into the binary).
    pub plugins: PluginsConfig,
    /// Loop periods.
    pub intervals: Intervals,
    /// Pod workers across pods.
    pub pod_workers: usize,
    /// Metrics/health server address.
    pub metrics_listen: SocketAddr,
    /// Kubelet API server settings.
    pub kubelet: KubeletServerConfig,
    /// Leader election between replicas.
    pub leader_election: LeaderElectionConfig,
    /// How long shutdown waits for tasks to finish.
    pub shutdown_grace: Duration,
    /// Explicit kubeconfig (`--kubeconfig`); `None` infers in-cluster config or `KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// The config file (`--config`), watched while running: its `plugins` section is applied
    /// live; other sections need a restart.
    pub config_file: Option<PathBuf>,
}

/// Settings of the Node object.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Node name.
    pub name: String,
    /// InternalIP of the node.
    pub pod_ip: IpAddr,
    /// Port published as the kubelet endpoint (unless the kubelet listens on port 0).
    pub kubelet_port: u16,
    /// The node's taint, if any.
    pub taint: Option<Taint>,
    /// `status.capacity` (resource name → quantity string, validated).
    pub capacity: BTreeMap<String, String>,
    /// `status.allocatable`; defaults to the capacity.
    pub allocatable: BTreeMap<String, String>,
}

/// The node taint (VKUBELET_TAINT_*).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// NoSchedule, PreferNoSchedule or NoExecute.
    pub effect: String,
}

/// ECI settings.
#[derive(Debug, Clone)]
pub struct EciConfig {
    /// Region ID.
    pub region: String,
    /// vSwitch IDs, in the operator's order.
    pub vswitches: Vec<String>,
    /// Zone of each vSwitch the operator named one for (`ZONE=VSWITCH` in `ECI_VSWITCH`).
    pub vswitch_zones: BTreeMap<String, String>,
    /// Cluster DNS servers handed to the translator for `dnsPolicy: ClusterFirst`
    /// (config file `eci.clusterDns`).
    pub cluster_dns: Vec<String>,
    /// Cluster domain (config file `eci.clusterDomain`) [default: cluster.local].
    pub cluster_domain: String,
    /// Security group ID.
    pub security_group: String,
    /// Cluster name tag.
    pub cluster_name: String,
    /// OpenAPI endpoint.
    pub endpoint: url::Url,
    /// AccessKey pair; `Debug` prints `[REDACTED]`.
    pub credentials: EciCredentials,
    /// Client-side pacing of ECI calls (config file `eci.rateLimits`).
    pub rate_limits: EciRateLimits,
}

/// How the ECI client paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EciRateLimits {
    /// The documented per-minute quota of each action (`documented`, the default): the
    /// daemon never gets throttled by a real ECI account.
    #[default]
    Documented,
    /// No client-side pacing (`unlimited`): for emulators with lifted quotas, where the
    /// documented quotas would make vnode's own limiter the bottleneck being measured.
    Unlimited,
}

/// The AccessKey pair. Both halves are secrets: neither is ever printed.
#[derive(Debug, Clone)]
pub struct EciCredentials {
    /// AccessKey ID.
    pub access_key_id: SecretString,
    /// AccessKey secret.
    pub access_key_secret: SecretString,
}

/// Plugin selection. `None` means the default plugin shipped inside the binary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginsConfig {
    /// The placement plugin.
    pub placement: Option<PluginSpec>,
    /// The translator plugin.
    pub translator: Option<PluginSpec>,
    /// A candidate placement policy run in shadow (`plugins.placement.shadow`): it decides
    /// for every live pod next to the active one, never acts, and its disagreements are
    /// counted and logged (see `plugins::shadow`).
    pub placement_shadow: Option<PluginSpec>,
    /// Directory for compiled plugins (`<sha256>-<engine>.cwasm`), so a restart deserializes
    /// instead of recompiling; `None` compiles at every start.
    pub cache_dir: Option<PathBuf>,
}

/// One plugin: a component file (hot-reloaded when it changes), its configuration and its
/// own limits (`callTimeoutMs`, `memoryLimitMib`). The same type and rules as
/// `vnode plugin check|simulate`.
pub use vnode_plugin_host::PluginSpec;

/// Loop periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intervals {
    /// Node Lease renewal (and node existence check) period.
    pub lease_renew: Duration,
    /// Longest time between two node status writes.
    pub node_status: Duration,
    /// ECI status polling period.
    pub pod_status_poll: Duration,
    /// Period of the container-group ↔ pod reconcile sweep.
    pub reconcile: Duration,
    /// Period of the full status resync (every group by ID) between incremental polls.
    pub pod_status_resync: Duration,
    /// Minimum age of a container group before the sweep may delete it as an orphan.
    pub orphan_min_age: Duration,
}

/// Kubelet API server settings.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeletServerConfig {
    /// Bind address.
    pub listen: SocketAddr,
    /// Serving certificate (PEM); self-signed when absent.
    pub tls_cert_file: Option<PathBuf>,
    /// Serving key (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// CA that signs accepted client certificates (the API server's kubelet client cert).
    pub client_ca_file: Option<PathBuf>,
    /// Serve unauthenticated requests (as `system:anonymous`). Off by default.
    pub anonymous_auth: bool,
    /// How authenticated requests are authorised.
    pub authorization: KubeletAuthorization,
}

/// Authorisation mode of the kubelet API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KubeletAuthorization {
    /// SubjectAccessReview against the API server (`nodes/proxy`, `nodes/log`, `nodes/stats`, `nodes/metrics`).
    Webhook,
    /// Every authenticated caller is allowed (for API servers without the authorization API).
    AlwaysAllow,
}

/// Leader election settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    /// Off: this replica always acts (one replica only!).
    pub enabled: bool,
    /// Namespace of the election Lease.
    pub namespace: String,
    /// Name of the election Lease.
    pub lease_name: String,
    /// This replica's identity.
    pub identity: String,
    /// How long a leader's claim stays valid without renewal; the standby takes over after it.
    pub lease_duration: Duration,
    /// How often the leader renews and a candidate retries.
    pub retry_period: Duration,
}

/// The YAML config file. Every key is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileConfig {
    #[serde(default)]
    node: FileNode,
    #[serde(default)]
    plugins: FilePlugins,
    #[serde(default)]
    eci: FileEci,
    #[serde(default)]
    intervals: FileIntervals,
    #[serde(default)]
    concurrency: FileConcurrency,
    #[serde(default)]
    listen: FileListen,
    #[serde(default)]
    kubelet: FileKubelet,
    #[serde(default)]
    leader_election: FileLeaderElection,
    shutdown_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileNode {
    capacity: Option<BTreeMap<String, serde_yaml::Value>>,
    allocatable: Option<BTreeMap<String, serde_yaml::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FilePlugins {
    /// A [`PluginSpec`] plus `shadow` (another spec); see [`placement_from_file`].
    placement: Option<serde_yaml::Mapping>,
    translator: Option<PluginSpec>,
    cache_dir: Option<PathBuf>,
}

/// `plugins.placement`: a [`PluginSpec`] with an optional `shadow` spec inside it, whose own
/// fields may all be left out when only a `shadow` is given (the built-in placement stays
/// active). Returns (active, shadow).
fn placement_from_file(
    mut map: serde_yaml::Mapping,
    f: &dyn Fn(&str) -> String,
) -> Result<(Option<PluginSpec>, Option<PluginSpec>), ConfigError> {
    let spec = |value: serde_yaml::Value, key: &str| {
        serde_yaml::from_value::<PluginSpec>(value)
            .map_err(|e| ConfigError::invalid(f(key), e.to_string()))
    };
    let shadow = map
        .remove("shadow")
        .map(|v| spec(v, "plugins.placement.shadow"))
        .transpose()?;
    let active = if map.is_empty() {
        None
    } else if !map.contains_key("path") {
        return Err(ConfigError::missing(
            f("plugins.placement.path"),
            "a placement config, configFile or limit needs the plugin's path",
        ));
    } else {
        Some(spec(serde_yaml::Value::Mapping(map), "plugins.placement")?)
    };
    Ok((active, shadow))
}

/// The config file as re-read while the daemon runs (hot reload of the `plugins` section).
#[derive(Debug, Clone, PartialEq)]
pub struct FileSnapshot {
    /// The `plugins` section, validated like at start-up.
    pub plugins: PluginsConfig,
    /// Every other top-level section as written (to tell which changed: those need a restart).
    pub other_sections: BTreeMap<String, serde_yaml::Value>,
}

impl FileSnapshot {
    /// Reads and validates the config file at `path` the way start-up does (unknown keys,
    /// plugin files readable, `config` xor `configFile`). Only the `plugins` section is
    /// interpreted; other sections are kept as written for comparison.
    pub fn read(path: &Path) -> Result<FileSnapshot, ConfigError> {
        let file = read_file_config(path)?;
        let label = format!("config file {}", path.display());
        let plugins = plugins_from_file(file.plugins, &|key: &str| format!("{label}: {key}"))?;
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid(
                "VNODE_CONFIG (--config)",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let mut other_sections = BTreeMap::new();
        if let Ok(serde_yaml::Value::Mapping(map)) =
            serde_yaml::from_str::<serde_yaml::Value>(&text)
        {
            for (key, value) in map {
                if let serde_yaml::Value::String(key) = key
                    && key != "plugins"
                {
                    other_sections.insert(key, value);
                }
            }
        }
        Ok(FileSnapshot {
            plugins,
            other_sections,
        })
    }

    /// Top-level sections (other than `plugins`) that differ between `self` and `next`.
    pub fn changed_sections(&self, next: &FileSnapshot) -> Vec<String> {
        let keys: std::collections::BTreeSet<&String> = self
            .other_sections
            .keys()
            .chain(next.other_sections.keys())
            .collect();
        keys.into_iter()
            .filter(|k| self.other_sections.get(*k) != next.other_sections.get(*k))
            .cloned()
            .collect()
    }
}

/// The `plugins` section, validated by [`PluginSpec::check`]: plugin and configuration files
/// must be readable, a spec gives its configuration inline or as a file (not both), and its
/// limits are in range. `f` prefixes a key with the config file's label.
fn plugins_from_file(
    file: FilePlugins,
    f: &dyn Fn(&str) -> String,
) -> Result<PluginsConfig, ConfigError> {
    let (placement, placement_shadow) = match file.placement {
        None => (None, None),
        Some(map) => placement_from_file(map, f)?,
    };
    let plugins = PluginsConfig {
        placement,
        translator: file.translator,
        placement_shadow,
        cache_dir: file.cache_dir,
    };
    let specs = [
        ("plugins.placement", &plugins.placement),
        ("plugins.translator", &plugins.translator),
        ("plugins.placement.shadow", &plugins.placement_shadow),
    ];
    for (key, spec) in specs {
        if let Some(Err(e)) = spec.as_ref().map(PluginSpec::check) {
            return Err(ConfigError::invalid(
                f(&format!("{key}.{}", e.field)),
                e.message,
            ));
        }
    }
    Ok(plugins)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileEci {
    cluster_dns: Option<Vec<String>>,
    cluster_domain: Option<String>,
    rate_limits: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileIntervals {
    lease_renew: Option<String>,
    node_status: Option<String>,
    pod_status_poll: Option<String>,
    reconcile: Option<String>,
    pod_status_resync: Option<String>,
    orphan_min_age: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileConcurrency {
    pod_workers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileListen {
    metrics: Option<String>,
    kubelet: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileKubelet {
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    anonymous_auth: Option<bool>,
    authorization: Option<KubeletAuthorization>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileLeaderElection {
    enabled: Option<bool>,
    namespace: Option<String>,
    lease_name: Option<String>,
    lease_duration: Option<String>,
    retry_period: Option<String>,
}

impl Config {
    /// Builds and validates the configuration from parsed flags (clap has already applied the
    /// environment fallbacks) and the config file they name.
    pub fn load(flags: &Flags) -> Result<Self, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let file_label = flags
            .config
            .as_deref()
            .map(|p| format!("config file {}", p.display()))
            .unwrap_or_else(|| "config file".to_string());
        Self::build(flags, file, &file_label)
    }

    fn build(flags: &Flags, file: FileConfig, file_label: &str) -> Result<Self, ConfigError> {
        let f = |key: &str| format!("{file_label}: {key}");

        match flags.provider.as_deref().map(str::trim) {
            None | Some(PROVIDER_ALIBABACLOUD) => {}
            Some(other) => {
                return Err(ConfigError::invalid(
                    "VNODE_PROVIDER (--provider)",
                    format!(
                        "{other:?} is not supported; the only provider is \"{PROVIDER_ALIBABACLOUD}\""
                    ),
                ));
            }
        }

        // --- node ---
        let node_name = match flags.node_name.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_NODE_NAME.to_string(),
            Some(n) => n.to_string(),
        };
        check_dns_subdomain(&node_name)
            .map_err(|m| ConfigError::invalid("DEFAULT_NODE_NAME (--nodename)", m))?;

        let kubelet_port = match non_empty(&flags.kubelet_port) {
            None => 10250,
            Some(p) => parse_port(p)
                .map_err(|m| ConfigError::invalid("KUBELET_PORT (--kubelet-port)", m))?,
        };
        let pod_ip = match non_empty(&flags.pod_ip) {
            None => {
                return Err(ConfigError::missing(
                    "VKUBELET_POD_IP (--pod-ip)",
                    "the node's InternalIP, which the API server dials for logs and exec; set it from the downward API (status.podIP)",
                ));
            }
            Some(ip) => ip.parse::<IpAddr>().map_err(|_| {
                ConfigError::invalid(
                    "VKUBELET_POD_IP (--pod-ip)",
                    format!("{ip:?} is not an IP address"),
                )
            })?,
        };
        let taint = if flags.disable_taint {
            None
        } else {
            let key = non_empty(&flags.taint_key)
                .unwrap_or("virtual-kubelet.io/provider")
                .to_string();
            check_qualified_name(&key)
                .map_err(|m| ConfigError::invalid("VKUBELET_TAINT_KEY (--taint-key)", m))?;
            let value = flags
                .taint_value
                .as_deref()
                .map(str::trim)
                .unwrap_or(PROVIDER_ALIBABACLOUD)
                .to_string();
            if !value.is_empty() {
                check_label_value(&value)
                    .map_err(|m| ConfigError::invalid("VKUBELET_TAINT_VALUE (--taint-value)", m))?;
            }
            let effect = non_empty(&flags.taint_effect)
                .unwrap_or("NoSchedule")
                .to_string();
            if !matches!(
                effect.as_str(),
                "NoSchedule" | "PreferNoSchedule" | "NoExecute"
            ) {
                return Err(ConfigError::invalid(
                    "VKUBELET_TAINT_EFFECT (--taint-effect)",
                    format!("{effect:?} is not one of NoSchedule, PreferNoSchedule, NoExecute"),
                ));
            }
            Some(Taint { key, value, effect })
        };
        let capacity = match file.node.capacity {
            Some(map) => resources(map, &f("node.capacity"))?,
            None => default_capacity(),
        };
        let allocatable = match file.node.allocatable {
            Some(map) => resources(map, &f("node.allocatable"))?,
            None => capacity.clone(),
        };

        // --- ECI ---
        let region = required(
            &flags.eci_region,
            "ECI_REGION (--eci-region)",
            "the ECI region, e.g. cn-hangzhou",
        )?;
        if !region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || !region.contains('-')
        {
            return Err(ConfigError::invalid(
                "ECI_REGION (--eci-region)",
                format!("{region:?} is not a region ID like cn-hangzhou"),
            ));
        }
        let vswitch_raw = required(
            &flags.eci_vswitch,
            "ECI_VSWITCH (--eci-vswitch)",
            "vSwitch ID(s) for the container groups, comma-separated",
        )?;
        let mut vswitches = Vec::new();
        let mut vswitch_zones = BTreeMap::new();
        for part in vswitch_raw.split(',') {
            let (zone, id) = match part.split_once('=') {
                Some((zone, id)) => (Some(zone.trim()), id.trim()),
                None => (None, part.trim()),
            };
            if let Some(zone) = zone
                && (zone.is_empty() || check_dns_label(zone).is_err())
            {
                return Err(ConfigError::invalid(
                    "ECI_VSWITCH (--eci-vswitch)",
                    format!("{part:?}: the zone before '=' must be a zone ID like cn-hangzhou-h"),
                ));
            }
            if id.is_empty() || id.chars().any(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    "ECI_VSWITCH (--eci-vswitch)",
                    format!(
                        "{vswitch_raw:?} must be a comma-separated list of vSwitch IDs without empty entries"
                    ),
                ));
            }
            if vswitches.iter().any(|v| v == id) {
                return Err(ConfigError::invalid(
                    "ECI_VSWITCH (--eci-vswitch)",
                    format!("vSwitch {id:?} is listed twice"),
                ));
            }
            if let Some(zone) = zone {
                vswitch_zones.insert(id.to_string(), zone.to_string());
            }
            vswitches.push(id.to_string());
        }
        let cluster_dns = file.eci.cluster_dns.clone().unwrap_or_default();
        for ip in &cluster_dns {
            if ip.parse::<IpAddr>().is_err() {
                return Err(ConfigError::invalid(
                    f("eci.clusterDns"),
                    format!("{ip:?} is not an IP address"),
                ));
            }
        }
        let rate_limits = match file.eci.rate_limits.as_deref() {
            None | Some("documented") => EciRateLimits::Documented,
            Some("unlimited") => EciRateLimits::Unlimited,
            Some(other) => {
                return Err(ConfigError::invalid(
                    f("eci.rateLimits"),
                    format!("{other:?} is not one of documented, unlimited"),
                ));
            }
        };
        let cluster_domain = match file.eci.cluster_domain.as_deref() {
            None => "cluster.local".to_string(),
            Some(d) => {
                check_dns_subdomain(d)
                    .map_err(|m| ConfigError::invalid(f("eci.clusterDomain"), m))?;
                d.to_string()
            }
        };
        let security_group = required(
            &flags.eci_security_group,
            "ECI_SECURITY_GROUP (--eci-security-group)",
            "the security group ID for the container groups",
        )?
        .to_string();
        let cluster_name = non_empty(&flags.eci_cluster_name)
            .unwrap_or("default")
            .to_string();
        let endpoint_text = match non_empty(&flags.eci_endpoint) {
            Some(e) => e.to_string(),
            None => format!("https://eci.{region}.aliyuncs.com"),
        };
        let endpoint = url::Url::parse(&endpoint_text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                ConfigError::invalid(
                    "ECI_ENDPOINT (--eci-endpoint)",
                    format!("{endpoint_text:?} is not an http(s) URL"),
                )
            })?;
        let access_key_id = secret(
            &flags.eci_access_key,
            &flags.eci_access_key_file,
            "ECI_ACCESS_KEY (--eci-access-key)",
            "ECI_ACCESS_KEY_FILE (--eci-access-key-file)",
        )?;
        let access_key_secret = secret(
            &flags.eci_secret_key,
            &flags.eci_secret_key_file,
            "ECI_SECRET_KEY (--eci-secret-key)",
            "ECI_SECRET_KEY_FILE (--eci-secret-key-file)",
        )?;

        // --- plugins ---
        let plugins = plugins_from_file(file.plugins, &f)?;

        // --- intervals ---
        let intervals = Intervals {
            lease_renew: duration_or(
                &file.intervals.lease_renew,
                Duration::from_secs(10),
                &f("intervals.leaseRenew"),
            )?,
            node_status: duration_or(
                &file.intervals.node_status,
                Duration::from_secs(60),
                &f("intervals.nodeStatus"),
            )?,
            pod_status_poll: duration_or(
                &file.intervals.pod_status_poll,
                Duration::from_secs(5),
                &f("intervals.podStatusPoll"),
            )?,
            reconcile: duration_or(
                &file.intervals.reconcile,
                Duration::from_secs(300),
                &f("intervals.reconcile"),
            )?,
            pod_status_resync: duration_or(
                &file.intervals.pod_status_resync,
                Duration::from_secs(60),
                &f("intervals.podStatusResync"),
            )?,
            orphan_min_age: duration_or(
                &file.intervals.orphan_min_age,
                Duration::from_secs(120),
                &f("intervals.orphanMinAge"),
            )?,
        };
        if intervals.lease_renew >= NODE_LEASE_DURATION {
            return Err(ConfigError::invalid(
                f("intervals.leaseRenew"),
                format!(
                    "must be shorter than the node lease duration ({}s)",
                    NODE_LEASE_DURATION.as_secs()
                ),
            ));
        }
        if intervals.node_status < intervals.lease_renew {
            return Err(ConfigError::invalid(
                f("intervals.nodeStatus"),
                "must not be shorter than intervals.leaseRenew",
            ));
        }

        let pod_workers = file.concurrency.pod_workers.unwrap_or(50);
        if pod_workers == 0 || pod_workers > 10_000 {
            return Err(ConfigError::invalid(
                f("concurrency.podWorkers"),
                format!("{pod_workers} is not in 1..=10000"),
            ));
        }

        // --- listen addresses ---
        let metrics_listen = match (non_empty(&flags.listen), file.listen.metrics.as_deref()) {
            (Some(a), _) => {
                parse_addr(a).map_err(|m| ConfigError::invalid("VNODE_LISTEN (--listen)", m))?
            }
            (None, Some(a)) => {
                parse_addr(a).map_err(|m| ConfigError::invalid(f("listen.metrics"), m))?
            }
            (None, None) => SocketAddr::from(([0, 0, 0, 0], 10255)),
        };
        let kubelet_listen = match (
            non_empty(&flags.kubelet_listen),
            file.listen.kubelet.as_deref(),
        ) {
            (Some(a), _) => parse_addr(a)
                .map_err(|m| ConfigError::invalid("VNODE_KUBELET_LISTEN (--kubelet-listen)", m))?,
            (None, Some(a)) => {
                parse_addr(a).map_err(|m| ConfigError::invalid(f("listen.kubelet"), m))?
            }
            (None, None) => SocketAddr::from(([0, 0, 0, 0], kubelet_port)),
        };

        // --- kubelet TLS and auth ---
        let k = file.kubelet;
        if k.tls_cert_file.is_some() != k.tls_key_file.is_some() {
            return Err(ConfigError::missing(
                f(if k.tls_cert_file.is_some() {
                    "kubelet.tlsKeyFile"
                } else {
                    "kubelet.tlsCertFile"
                }),
                "the serving certificate and key must be given together",
            ));
        }
        for (key, path) in [
            ("kubelet.tlsCertFile", &k.tls_cert_file),
            ("kubelet.tlsKeyFile", &k.tls_key_file),
            ("kubelet.clientCaFile", &k.client_ca_file),
        ] {
            if let Some(p) = path
                && !p.is_file()
            {
                return Err(ConfigError::invalid(
                    f(key),
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }
        let kubelet = KubeletServerConfig {
            listen: kubelet_listen,
            tls_cert_file: k.tls_cert_file,
            tls_key_file: k.tls_key_file,
            client_ca_file: k.client_ca_file,
            anonymous_auth: k.anonymous_auth.unwrap_or(false),
            authorization: k.authorization.unwrap_or(KubeletAuthorization::Webhook),
        };

        // --- leader election ---
        let le = file.leader_election;
        let namespace = non_empty(&flags.namespace)
            .map(str::to_string)
            .or(le.namespace)
            .unwrap_or_else(|| "kube-system".to_string());
        check_dns_label(&namespace)
            .map_err(|m| ConfigError::invalid("POD_NAMESPACE (--namespace)", m))?;
        let lease_name = le
            .lease_name
            .unwrap_or_else(|| format!("vnode-{node_name}"));
        check_dns_subdomain(&lease_name)
            .map_err(|m| ConfigError::invalid(f("leaderElection.leaseName"), m))?;
        let identity = match non_empty(&flags.identity) {
            Some(id) => id.to_string(),
            None => default_identity(),
        };
        let lease_duration = duration_or(
            &le.lease_duration,
            Duration::from_secs(15),
            &f("leaderElection.leaseDuration"),
        )?;
        let retry_period = duration_or(
            &le.retry_period,
            Duration::from_secs(2),
            &f("leaderElection.retryPeriod"),
        )?;
        if retry_period * 2 > lease_duration {
            return Err(ConfigError::invalid(
                f("leaderElection.retryPeriod"),
                "must be at most half of leaderElection.leaseDuration, or the leader loses its lease between renewals",
            ));
        }
        let leader_election = LeaderElectionConfig {
            enabled: le.enabled.unwrap_or(true),
            namespace,
            lease_name,
            identity,
            lease_duration,
            retry_period,
        };
        let shutdown_grace = duration_or(
            &file.shutdown_grace,
            Duration::from_secs(30),
            &f("shutdownGrace"),
        )?;

        Ok(Config {
            node: NodeConfig {
                name: node_name,
                pod_ip,
                kubelet_port,
                taint,
                capacity,
                allocatable,
            },
            eci: EciConfig {
                region: region.to_string(),
                vswitches,
                vswitch_zones,
                cluster_dns,
                cluster_domain,
                security_group,
                cluster_name,
                endpoint,
                credentials: EciCredentials {
                    access_key_id,
                    access_key_secret,
                },
                rate_limits,
            },
            plugins,
            intervals,
            pod_workers,
            metrics_listen,
            kubelet,
            leader_election,
            shutdown_grace,
            kubeconfig: flags.kubeconfig.clone(),
            config_file: flags.config.clone(),
        })
    }
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let label = "VNODE_CONFIG (--config)";
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid(label, format!("cannot read {}: {e}", path.display())))?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml::from_str(&text)
        .map_err(|e| ConfigError::invalid(format!("config file {}", path.display()), e.to_string()))
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn required<'a>(v: &'a Option<String>, setting: &str, what: &str) -> Result<&'a str, ConfigError> {
    non_empty(v).ok_or_else(|| ConfigError::missing(setting, what))
}

/// A secret from its variable or from a file; exactly one of the two.
fn secret(
    value: &Option<String>,
    file: &Option<PathBuf>,
    value_setting: &str,
    file_setting: &str,
) -> Result<SecretString, ConfigError> {
    match (non_empty(value), file) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            value_setting,
            format!("set either it or {file_setting}, not both"),
        )),
        (Some(v), None) => Ok(SecretString::from(v.to_string())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::invalid(file_setting, format!("cannot read {}: {e}", path.display()))
            })?;
            let text = text.trim();
            if text.is_empty() {
                return Err(ConfigError::invalid(
                    file_setting,
                    format!("{} is empty", path.display()),
                ));
            }
            Ok(SecretString::from(text.to_string()))
        }
        (None, None) => Err(ConfigError::missing(
            value_setting,
            format!("the ECI AccessKey; or set {file_setting}"),
        )),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{p:?} is not a port number (1-65535)")),
        Ok(n) => Ok(n),
    }
}

fn parse_addr(a: &str) -> Result<SocketAddr, String> {
    a.parse::<SocketAddr>()
        .map_err(|_| format!("{a:?} is not an address like 0.0.0.0:10255"))
}

/// Parses `10s`, `1m 30s`, `500ms` or ISO 8601 (`PT10S`); zero and negative are refused.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s, 1m30s or 500ms"))?;
    if d.is_negative() || d.is_zero() {
        return Err(format!("{text:?} must be positive"));
    }
    Duration::try_from(d).map_err(|_| format!("{text:?} is out of range"))
}

fn duration_or(
    v: &Option<String>,
    default: Duration,
    setting: &str,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(t) => parse_duration(t).map_err(|m| ConfigError::invalid(setting, m)),
    }
}

/// The ECI provider's capacity (Virtual Kubelet alibabacloud-eci): ECI has no fixed node
/// size, so these are "large enough" numbers that the scheduler will not run out of.
fn default_capacity() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cpu".to_string(), "1000".to_string()),
        ("memory".to_string(), "4Ti".to_string()),
        ("pods".to_string(), "1000".to_string()),
    ])
}

fn resources(
    map: BTreeMap<String, serde_yaml::Value>,
    setting: &str,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, value) in map {
        let text = match value {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Number(n) => n.to_string(),
            other => {
                return Err(ConfigError::invalid(
                    format!("{setting}.{name}"),
                    format!("{other:?} is not a quantity like \"1000\" or \"4Ti\""),
                ));
            }
        };
        check_qualified_name(&name)
            .map_err(|m| ConfigError::invalid(format!("{setting}.{name}"), m))?;
        let parsed = match name.as_str() {
            "cpu" => vnode_mapping::quantity::cpu_millis(&text),
            "pods" => vnode_mapping::quantity::count(&text),
            _ => vnode_mapping::quantity::bytes(&text),
        };
        parsed.map_err(|e| ConfigError::invalid(format!("{setting}.{name}"), e.to_string()))?;
        out.insert(name, text);
    }
    for needed in ["cpu", "memory", "pods"] {
        if !out.contains_key(needed) {
            return Err(ConfigError::missing(
                format!("{setting}.{needed}"),
                "cpu, memory and pods must all be given",
            ));
        }
    }
    Ok(out)
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "vnode".to_string());
    format!("{host}_{}", uuid::Uuid::new_v4().simple())
}

fn check_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS label (lower-case letters, digits, '-', at most 63)"
        ))
    }
}

fn check_dns_subdomain(s: &str) -> Result<(), String> {
    let ok = !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| check_dns_label(l).is_ok());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a DNS subdomain name (lower-case letters, digits, '-' and '.')"
        ))
    }
}

fn check_label_value(s: &str) -> Result<(), String> {
    let ok = s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a valid label value"))
    }
}

/// `prefix/name` where prefix is a DNS subdomain and name a label-like value (Kubernetes
/// qualified names: label keys, taint keys, extended resource names).
fn check_qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        check_dns_subdomain(p)?;
    }
    if name.is_empty() || check_label_value(name).is_err() {
        return Err(format!(
            "{s:?} is not a qualified name like example.com/name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    /// The seed manifest's environment, as flags would carry it after clap's env fallback.
    fn seed() -> Flags {
        Flags {
            provider: Some("alibabacloud".into()),
            kubelet_port: Some("10250".into()),
            pod_ip: Some("10.0.0.7".into()),
            taint_key: Some("virtual-kubelet.io/provider".into()),
            taint_value: Some("alibabacloud".into()),
            taint_effect: Some("NoSchedule".into()),
            eci_region: Some("cn-hangzhou".into()),
            eci_vswitch: Some("vsw-a,vsw-b".into()),
            eci_security_group: Some("sg-1".into()),
            eci_access_key: Some("AKID-visible-nowhere".into()),
            eci_secret_key: Some("s3cr3t-visible-nowhere".into()),
            identity: Some("replica-a".into()),
            ..Flags::default()
        }
    }

    fn build(flags: &Flags) -> Result<Config, ConfigError> {
        Config::build(flags, FileConfig::default(), "config file")
    }

    fn build_yaml(flags: &Flags, yaml: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = serde_yaml::from_str(yaml)
            .map_err(|e| ConfigError::invalid("config file t.yaml", e.to_string()))?;
        Config::build(flags, file, "config file t.yaml")
    }

    fn err(flags: &Flags) -> String {
        match build(flags) {
            Ok(_) => panic!("expected a configuration error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn seed_environment_gives_the_virtual_kubelet_defaults() {
        let c = build(&seed()).expect("seed config is valid");
        assert_eq!(c.node.name, "virtual-kubelet");
        assert_eq!(c.node.kubelet_port, 10250);
        assert_eq!(c.node.pod_ip, "10.0.0.7".parse::<IpAddr>().expect("ip"));
        assert_eq!(
            c.node.taint,
            Some(Taint {
                key: "virtual-kubelet.io/provider".into(),
                value: "alibabacloud".into(),
                effect: "NoSchedule".into()
            })
        );
        assert_eq!(c.eci.vswitches, vec!["vsw-a", "vsw-b"]);
        assert_eq!(c.eci.cluster_name, "default");
        assert_eq!(
            c.eci.endpoint.as_str(),
            "https://eci.cn-hangzhou.aliyuncs.com/"
        );
        assert_eq!(
            c.node.capacity.get("pods").map(String::as_str),
            Some("1000")
        );
        assert_eq!(c.node.allocatable, c.node.capacity);
        assert_eq!(
            c.kubelet.listen,
            "0.0.0.0:10250".parse::<SocketAddr>().expect("addr")
        );
        assert!(!c.kubelet.anonymous_auth);
        assert_eq!(c.kubelet.authorization, KubeletAuthorization::Webhook);
        assert_eq!(c.intervals.lease_renew, Duration::from_secs(10));
        assert_eq!(c.intervals.node_status, Duration::from_secs(60));
        assert_eq!(c.leader_election.lease_name, "vnode-virtual-kubelet");
        assert_eq!(
            c.eci.credentials.access_key_secret.expose_secret(),
            "s3cr3t-visible-nowhere"
        );
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let c = build(&seed()).expect("valid");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t-visible-nowhere"), "{dbg}");
        assert!(!dbg.contains("AKID-visible-nowhere"), "{dbg}");
        assert!(dbg.contains("REDACTED"));
    }

    #[test]
    fn each_required_setting_is_named_when_missing() {
        for (clear, name) in [
            (
                Box::new(|f: &mut Flags| f.pod_ip = None) as Box<dyn Fn(&mut Flags)>,
                "VKUBELET_POD_IP",
            ),
            (Box::new(|f: &mut Flags| f.eci_region = None), "ECI_REGION"),
            (
                Box::new(|f: &mut Flags| f.eci_vswitch = Some(" ".into())),
                "ECI_VSWITCH",
            ),
            (
                Box::new(|f: &mut Flags| f.eci_security_group = None),
                "ECI_SECURITY_GROUP",
            ),
            (
                Box::new(|f: &mut Flags| f.eci_access_key = None),
                "ECI_ACCESS_KEY",
            ),
            (
                Box::new(|f: &mut Flags| f.eci_secret_key = None),
                "ECI_SECRET_KEY",
            ),
        ] {
            let mut flags = seed();
            clear(&mut flags);
            let e = err(&flags);
            assert!(e.starts_with(&format!("missing setting {name}")), "{e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn each_invalid_value_is_named() {
        type Change = fn(&mut Flags);
        let cases: Vec<(Change, &str)> = vec![
            (|f| f.provider = Some("azure".into()), "VNODE_PROVIDER"),
            (|f| f.kubelet_port = Some("abc".into()), "KUBELET_PORT"),
            (|f| f.kubelet_port = Some("70000".into()), "KUBELET_PORT"),
            (|f| f.pod_ip = Some("10.0.0".into()), "VKUBELET_POD_IP"),
            (
                |f| f.taint_effect = Some("Sometimes".into()),
                "VKUBELET_TAINT_EFFECT",
            ),
            (
                |f| f.taint_key = Some("bad key".into()),
                "VKUBELET_TAINT_KEY",
            ),
            (
                |f| f.taint_value = Some("no spaces allowed".into()),
                "VKUBELET_TAINT_VALUE",
            ),
            (|f| f.eci_region = Some("Hangzhou".into()), "ECI_REGION"),
            (
                |f| f.eci_vswitch = Some("vsw-a,,vsw-b".into()),
                "ECI_VSWITCH",
            ),
            (
                |f| f.eci_vswitch = Some("vsw-a,vsw-a".into()),
                "ECI_VSWITCH",
            ),
            (|f| f.eci_endpoint = Some("ftp://x".into()), "ECI_ENDPOINT"),
            (
                |f| f.node_name = Some("Virtual_Kubelet".into()),
                "DEFAULT_NODE_NAME",
            ),
            (|f| f.listen = Some("nowhere".into()), "VNODE_LISTEN"),
            (
                |f| f.kubelet_listen = Some("1.2.3.4".into()),
                "VNODE_KUBELET_LISTEN",
            ),
            (
                |f| f.namespace = Some("Kube_System".into()),
                "POD_NAMESPACE",
            ),
        ];
        for (change, name) in cases {
            let mut flags = seed();
            change(&mut flags);
            let e = err(&flags);
            assert!(e.starts_with(&format!("invalid setting {name}")), "{e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn secret_values_are_not_echoed_in_errors() {
        let mut flags = seed();
        flags.eci_secret_key_file = Some("/nonexistent".into());
        let e = err(&flags);
        assert!(e.contains("ECI_SECRET_KEY"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ak = dir.path().join("ak");
        let sk = dir.path().join("sk");
        std::fs::write(&ak, "AKFILE\n").expect("write");
        std::fs::write(&sk, "SKFILE\n").expect("write");
        let mut flags = seed();
        flags.eci_access_key = None;
        flags.eci_secret_key = None;
        flags.eci_access_key_file = Some(ak);
        flags.eci_secret_key_file = Some(sk.clone());
        let c = build(&flags).expect("valid");
        assert_eq!(c.eci.credentials.access_key_id.expose_secret(), "AKFILE");
        assert_eq!(
            c.eci.credentials.access_key_secret.expose_secret(),
            "SKFILE"
        );
        std::fs::write(&sk, "\n").expect("write");
        assert!(err(&flags).starts_with("invalid setting ECI_SECRET_KEY_FILE"));
    }

    #[test]
    fn disable_taint_and_defaults_without_taint_variables() {
        let mut flags = seed();
        flags.taint_key = None;
        flags.taint_value = None;
        flags.taint_effect = None;
        let c = build(&flags).expect("valid");
        assert_eq!(
            c.node.taint.as_ref().map(|t| t.key.as_str()),
            Some("virtual-kubelet.io/provider")
        );
        flags.disable_taint = true;
        assert_eq!(build(&flags).expect("valid").node.taint, None);
    }

    #[test]
    fn file_settings_are_read_and_validated() {
        let c = build_yaml(
            &seed(),
            "node:\n  capacity: {cpu: 200, memory: 800Gi, pods: \"500\"}\n\
             intervals: {leaseRenew: 5s, nodeStatus: 1m}\n\
             concurrency: {podWorkers: 8}\n\
             listen: {metrics: \"127.0.0.1:0\", kubelet: \"127.0.0.1:0\"}\n\
             kubelet: {anonymousAuth: true, authorization: alwaysAllow}\n\
             leaderElection: {enabled: false, leaseDuration: 20s, retryPeriod: 3s}\n\
             shutdownGrace: 500ms\n",
        )
        .expect("valid");
        assert_eq!(c.node.capacity.get("cpu").map(String::as_str), Some("200"));
        assert_eq!(
            c.node.allocatable.get("memory").map(String::as_str),
            Some("800Gi")
        );
        assert_eq!(c.intervals.lease_renew, Duration::from_secs(5));
        assert_eq!(c.intervals.node_status, Duration::from_secs(60));
        assert_eq!(c.pod_workers, 8);
        assert_eq!(c.metrics_listen.ip().to_string(), "127.0.0.1");
        assert!(c.kubelet.anonymous_auth);
        assert_eq!(c.kubelet.authorization, KubeletAuthorization::AlwaysAllow);
        assert!(!c.leader_election.enabled);
        assert_eq!(c.shutdown_grace, Duration::from_millis(500));
        // Flags win over the file.
        let mut flags = seed();
        flags.listen = Some("127.0.0.1:9999".into());
        let c = build_yaml(&flags, "listen: {metrics: \"127.0.0.1:0\"}").expect("valid");
        assert_eq!(c.metrics_listen.port(), 9999);
    }

    #[test]
    fn bad_file_settings_name_the_key() {
        for (yaml, key) in [
            ("intervals: {leaseRenew: soon}", "intervals.leaseRenew"),
            (
                "intervals: {leaseRenew: 50s, nodeStatus: 60s}",
                "intervals.leaseRenew",
            ),
            ("intervals: {reconcile: 0s}", "intervals.reconcile"),
            (
                "node: {capacity: {cpu: lots, memory: 1Gi, pods: 1}}",
                "node.capacity.cpu",
            ),
            ("node: {capacity: {cpu: 1}}", "node.capacity.memory"),
            ("concurrency: {podWorkers: 0}", "concurrency.podWorkers"),
            (
                "kubelet: {tlsCertFile: /etc/hostname}",
                "kubelet.tlsKeyFile",
            ),
            (
                "kubelet: {clientCaFile: /nonexistent/ca.crt}",
                "kubelet.clientCaFile",
            ),
            (
                "plugins: {placement: {path: /nonexistent.wasm}}",
                "plugins.placement.path",
            ),
            (
                "leaderElection: {leaseDuration: 4s, retryPeriod: 3s}",
                "leaderElection.retryPeriod",
            ),
        ] {
            let e = build_yaml(&seed(), yaml).expect_err(yaml).to_string();
            assert!(
                e.starts_with("invalid setting config file t.yaml: ")
                    || e.starts_with("missing setting config file t.yaml: "),
                "{e}"
            );
            assert!(e.contains(key), "{yaml}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused_with_one_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vnode.yaml");
        std::fs::write(&path, "intervals:\n  leaseRenew: 10s\n  leasRenew: 5s\n").expect("write");
        let mut flags = seed();
        flags.config = Some(path);
        let e = Config::load(&flags).expect_err("unknown key").to_string();
        assert!(e.starts_with("invalid setting config file "), "{e}");
        assert!(e.contains("leasRenew"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        flags.config = Some("/nonexistent/vnode.yaml".into());
        let e = Config::load(&flags).expect_err("missing file").to_string();
        assert!(
            e.starts_with("invalid setting VNODE_CONFIG (--config)"),
            "{e}"
        );
    }

    #[test]
    fn vswitches_may_name_their_zones_and_cluster_dns_is_read() {
        let mut flags = seed();
        flags.eci_vswitch = Some("cn-hangzhou-h=vsw-h, vsw-x".into());
        let c = build_yaml(
            &flags,
            "eci: {clusterDns: [10.96.0.10], clusterDomain: corp.local}",
        )
        .expect("valid");
        assert_eq!(c.eci.vswitches, vec!["vsw-h", "vsw-x"]);
        assert_eq!(
            c.eci.vswitch_zones.get("vsw-h").map(String::as_str),
            Some("cn-hangzhou-h")
        );
        assert!(!c.eci.vswitch_zones.contains_key("vsw-x"));
        assert_eq!(c.eci.cluster_dns, vec!["10.96.0.10"]);
        assert_eq!(c.eci.cluster_domain, "corp.local");
        flags.eci_vswitch = Some("=vsw-h".into());
        assert!(err(&flags).starts_with("invalid setting ECI_VSWITCH"));
        let e = build_yaml(&seed(), "eci: {clusterDns: [dns.example]}")
            .expect_err("not an IP")
            .to_string();
        assert!(e.contains("eci.clusterDns"), "{e}");
    }

    #[test]
    fn eci_rate_limits_default_to_the_documented_quotas() {
        let c = build_yaml(&seed(), "").expect("valid");
        assert_eq!(c.eci.rate_limits, EciRateLimits::Documented);
        let c = build_yaml(&seed(), "eci: {rateLimits: unlimited}").expect("valid");
        assert_eq!(c.eci.rate_limits, EciRateLimits::Unlimited);
        let e = build_yaml(&seed(), "eci: {rateLimits: fast}")
            .expect_err("unknown value")
            .to_string();
        assert!(
            e.contains("eci.rateLimits") && e.contains("documented, unlimited"),
            "{e}"
        );
    }

    #[test]
    fn plugin_specs_carry_their_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("p.wasm");
        std::fs::write(&wasm, b"\0asm").expect("write");
        let c = build_yaml(
            &seed(),
            &format!(
                "plugins:\n  placement:\n    path: {}\n    config: {{zones: [a, b]}}\n",
                wasm.display()
            ),
        )
        .expect("valid");
        let p = c.plugins.placement.expect("placement configured");
        assert_eq!(p.config["zones"][1], "b");
        assert!(c.plugins.translator.is_none());
        assert!(c.plugins.placement_shadow.is_none());
    }

    #[test]
    fn a_shadow_is_a_plugin_spec_under_placement_validated_the_same_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("p.wasm");
        let conf = dir.path().join("p.conf");
        std::fs::write(&wasm, b"\0asm").expect("write");
        std::fs::write(&conf, "a = 1").expect("write");
        let (w, cf) = (wasm.display(), conf.display());

        // With an active placement.
        let c = build_yaml(
            &seed(),
            &format!("plugins:\n  placement:\n    path: {w}\n    shadow: {{path: {w}, configFile: {cf}}}\n"),
        )
        .expect("valid");
        assert_eq!(c.plugins.placement.expect("active").path, wasm);
        let shadow = c.plugins.placement_shadow.expect("shadow");
        assert_eq!(shadow.config_file.as_deref(), Some(conf.as_path()));

        // Only a shadow: the built-in placement stays active.
        let c = build_yaml(
            &seed(),
            &format!("plugins:\n  placement:\n    shadow: {{path: {w}, config: \"a = 1\"}}\n"),
        )
        .expect("valid");
        assert!(c.plugins.placement.is_none());
        assert_eq!(c.plugins.placement_shadow.expect("shadow").config, "a = 1");

        // Refused like any spec, naming the key.
        for (yaml, key) in [
            (
                "plugins: {placement: {shadow: {path: /nonexistent.wasm}}}".to_string(),
                "plugins.placement.shadow.path",
            ),
            (
                format!(
                    "plugins: {{placement: {{shadow: {{path: {w}, config: x, configFile: {cf}}}}}}}"
                ),
                "plugins.placement.shadow.configFile",
            ),
            (
                format!("plugins: {{placement: {{shadow: {{path: {w}, bogus: 1}}}}}}"),
                "bogus",
            ),
            (
                "plugins: {placement: {config: \"a = 1\"}}".to_string(),
                "plugins.placement.path",
            ),
        ] {
            let e = build_yaml(&seed(), &yaml).expect_err(&yaml).to_string();
            assert!(e.contains(key), "{yaml}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn plugin_limits_are_per_spec_and_bad_ones_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("p.wasm");
        std::fs::write(&wasm, b"\0asm").expect("write");
        let w = wasm.display();
        let c = build_yaml(
            &seed(),
            &format!(
                "plugins:\n  placement:\n    path: {w}\n    callTimeoutMs: 120\n    memoryLimitMib: 16\n    shadow: {{path: {w}, callTimeoutMs: 900}}\n  translator: {{path: {w}}}\n"
            ),
        )
        .expect("valid");
        let placement = c.plugins.placement.expect("placement");
        assert_eq!(
            (placement.call_timeout_ms, placement.memory_limit_mib),
            (Some(120), Some(16))
        );
        let shadow = c.plugins.placement_shadow.expect("shadow");
        assert_eq!(
            (shadow.call_timeout_ms, shadow.memory_limit_mib),
            (Some(900), None)
        );
        let translator = c.plugins.translator.expect("translator");
        assert_eq!(translator.call_timeout_ms, None);

        // Limits alone need the plugin's path too.
        let e = build_yaml(&seed(), "plugins: {placement: {callTimeoutMs: 100}}")
            .expect_err("no path")
            .to_string();
        assert!(e.contains("plugins.placement.path"), "{e}");
        for (yaml, key) in [
            (
                format!("plugins: {{placement: {{path: {w}, callTimeoutMs: 0}}}}"),
                "plugins.placement.callTimeoutMs",
            ),
            (
                format!("plugins: {{translator: {{path: {w}, memoryLimitMib: 5000}}}}"),
                "plugins.translator.memoryLimitMib",
            ),
            (
                format!("plugins: {{placement: {{shadow: {{path: {w}, callTimeoutMs: 60001}}}}}}"),
                "plugins.placement.shadow.callTimeoutMs",
            ),
            (
                format!("plugins: {{placement: {{path: {w}, callTimeoutMs: soon}}}}"),
                // serde_yaml names the spec, not the field, for a wrong type.
                "plugins.placement: invalid type: string \"soon\"",
            ),
        ] {
            let e = build_yaml(&seed(), &yaml).expect_err(&yaml).to_string();
            assert!(e.contains(key), "{yaml}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn a_snapshot_tells_the_plugins_section_from_sections_that_need_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("p.wasm");
        std::fs::write(&wasm, b"\0asm").expect("write");
        let path = dir.path().join("vnode.yaml");
        let write = |poll: &str, shadow: bool| {
            let mut text = format!(
                "intervals: {{podStatusPoll: {poll}}}\nplugins:\n  placement:\n    path: {}\n",
                wasm.display()
            );
            if shadow {
                text.push_str(&format!("    shadow: {{path: {}}}\n", wasm.display()));
            }
            std::fs::write(&path, text).expect("write");
        };
        write("5s", false);
        let a = FileSnapshot::read(&path).expect("valid");
        write("5s", true);
        let b = FileSnapshot::read(&path).expect("valid");
        assert!(a.changed_sections(&b).is_empty());
        assert!(a.plugins.placement_shadow.is_none() && b.plugins.placement_shadow.is_some());
        write("7s", true);
        let c = FileSnapshot::read(&path).expect("valid");
        assert_eq!(a.changed_sections(&c), ["intervals"]);
        std::fs::write(&path, "plugins: {placement: {path: /nonexistent.wasm}}").expect("write");
        let e = FileSnapshot::read(&path).expect_err("refused").to_string();
        assert!(e.contains("plugins.placement.path"), "{e}");
    }
}
