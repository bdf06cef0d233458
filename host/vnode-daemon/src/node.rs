//! The virtual Node: registration, re-creation, the heartbeat Lease and status.
//!
//! One loop ([`NodeController::run`]) ticks every `intervals.lease_renew` (10 s):
//! 1. GET the Node; if it is gone (someone ran `kubectl delete node`), create it again.
//! 2. Bring our labels, annotations and taint onto it (a merge: labels, annotations and
//!    taints added by others are kept).
//! 3. Write `status` when something we report changed, or when `intervals.node_status`
//!    (60 s) has passed. Conditions are merged **by type**: we only replace the types we own
//!    ([`OWNED_CONDITIONS`]), so conditions written by other controllers survive.
//! 4. Renew the Lease `kube-node-lease/<node>` (owned by the Node, so it is garbage
//!    collected with it).
//!
//! Writes use `replace` with the resourceVersion we read: a concurrent writer makes ours
//! fail with 409 and we retry on the next tick with fresh data, never overwriting theirs.
//! Errors are logged and counted; the loop never exits on an API error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint as K8sTaint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::Client;
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{NODE_LEASE_DURATION, NodeConfig};
use crate::metrics::Metrics;

/// Node condition types this daemon writes; all others belong to someone else.
pub const OWNED_CONDITIONS: &[&str] = &[
    "Ready",
    "MemoryPressure",
    "DiskPressure",
    "PIDPressure",
    PLUGINS_CONDITION,
];
/// Our own condition: are the placement and translator plugins loaded, and which versions.
pub const PLUGINS_CONDITION: &str = "PluginsReady";
/// Annotation with the plugin health as JSON ([`PluginHealth`]), for `kubectl describe node`.
pub const PLUGINS_ANNOTATION: &str = "vnode.io/plugins";
/// Namespace of node heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// One loaded plugin, as the node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivePlugin {
    /// Plugin name from its metadata.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Content hash of the component (short hex).
    pub hash: String,
}

/// A reload the plugin host refused (the previous plugin stayed active).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedReload {
    /// `placement` or `translator`.
    pub slot: String,
    /// The file that was refused.
    pub path: String,
    /// Why, one line.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
}

/// What the node says about the plugins. The plugin host publishes it through a
/// [`watch::Sender<PluginHealth>`]; the node controller writes it on change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginHealth {
    /// The live placement plugin (None: not loaded yet).
    pub placement: Option<ActivePlugin>,
    /// The live translator plugin.
    pub translator: Option<ActivePlugin>,
    /// The placement candidate running in shadow (`plugins.placement.shadow`), if any: it
    /// decides next to the active one but never acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_shadow: Option<ActivePlugin>,
    /// The most recent refused reload, if any.
    pub last_refused_reload: Option<RefusedReload>,
}

impl PluginHealth {
    fn condition(&self) -> (&'static str, &'static str, String) {
        let show = |p: &Option<ActivePlugin>| match p {
            Some(p) => format!("{}@{} ({})", p.name, p.version, p.hash),
            None => "none".to_string(),
        };
        let mut message = format!(
            "placement {}, translator {}",
            show(&self.placement),
            show(&self.translator)
        );
        if let Some(shadow) = &self.placement_shadow {
            message.push_str(&format!(
                ", placement shadow {}",
                show(&Some(shadow.clone()))
            ));
        }
        if let Some(r) = &self.last_refused_reload {
            message.push_str(&format!(
                "; last refused {} reload {} at {}: {}",
                r.slot, r.path, r.at, r.reason
            ));
        }
        match (&self.placement, &self.translator) {
            (Some(_), Some(_)) => ("True", "PluginsLoaded", message),
            _ => ("False", "PluginsNotLoaded", message),
        }
    }
}

pub(crate) fn active(identity: &vnode_plugin_host::PluginIdentity) -> ActivePlugin {
    ActivePlugin {
        name: identity.name.clone(),
        version: identity.version.clone(),
        hash: identity.sha256.chars().take(12).collect(),
    }
}

pub(crate) fn refused(slot: &str, r: &vnode_plugin_host::RefusedReload) -> RefusedReload {
    RefusedReload {
        slot: slot.to_string(),
        path: r.file.display().to_string(),
        reason: r.reason.replace('\n', " "),
        at: jiff::Timestamp::try_from(r.at)
            .map(|t| t.to_string())
            .unwrap_or_default(),
    }
}

/// The node's view of the two plugin slots: both active versions, and the most recent
/// refused reload of either.
pub fn health_from_slots(
    placement: &vnode_plugin_host::SlotStatus,
    translator: &vnode_plugin_host::SlotStatus,
) -> PluginHealth {
    let newest = match (&placement.last_refused, &translator.last_refused) {
        (Some(p), Some(t)) if t.at > p.at => Some(refused("translator", t)),
        (Some(p), _) => Some(refused("placement", p)),
        (None, Some(t)) => Some(refused("translator", t)),
        (None, None) => None,
    };
    PluginHealth {
        placement: Some(active(&placement.active)),
        translator: Some(active(&translator.active)),
        placement_shadow: None,
        last_refused_reload: newest,
    }
}

/// Forwards the plugin slots' status into the node's health channel until `token` is
/// cancelled or a slot goes away. The plugin host's `PluginSlot::subscribe()` gives the
/// receivers; `daemon::Handles::plugin_health` is the sender.
pub async fn forward_slot_status(
    mut placement: watch::Receiver<vnode_plugin_host::SlotStatus>,
    mut translator: watch::Receiver<vnode_plugin_host::SlotStatus>,
    health: watch::Sender<PluginHealth>,
    token: CancellationToken,
) {
    loop {
        let now = health_from_slots(
            &placement.borrow_and_update(),
            &translator.borrow_and_update(),
        );
        health.send_if_modified(|h| {
            let changed = *h != now;
            *h = now;
            changed
        });
        tokio::select! {
            biased;
            () = token.cancelled() => return,
            r = placement.changed() => if r.is_err() { return },
            r = translator.changed() => if r.is_err() { return },
        }
    }
}

/// Labels the seed's pods select on (`nodeSelector`), plus the hostname label.
pub fn node_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("type".to_string(), "virtual-kubelet".to_string()),
        ("kubernetes.io/role".to_string(), "agent".to_string()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        // The node is not a real machine: keep cloud load balancers from adding it as a backend.
        (
            "node.kubernetes.io/exclude-from-external-load-balancers".to_string(),
            "true".to_string(),
        ),
    ])
}

/// The conditions we own, as of `now`. Ready is honest about what it means: the daemon is
/// alive and posting; whether pods can be created shows in `PluginsReady` and in pod events.
fn owned_conditions(health: &PluginHealth, now: &Time) -> Vec<NodeCondition> {
    let cond = |type_: &str, status: &str, reason: &str, message: String| NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let (p_status, p_reason, p_message) = health.condition();
    vec![
        cond(
            "Ready",
            "True",
            "VnodeReady",
            "vnode is running and posting node status".into(),
        ),
        cond(
            "MemoryPressure",
            "False",
            "NoLocalResources",
            "pods run in ECI container groups; the virtual node has no memory of its own".into(),
        ),
        cond(
            "DiskPressure",
            "False",
            "NoLocalResources",
            "pods run in ECI container groups; no local disk".into(),
        ),
        cond(
            "PIDPressure",
            "False",
            "NoLocalResources",
            "pods run in ECI container groups; no local processes".into(),
        ),
        cond(PLUGINS_CONDITION, p_status, p_reason, p_message),
    ]
}

/// What we report in `status`, apart from conditions.
fn desired_status(
    cfg: &NodeConfig,
    kubelet_port: u16,
    health: &PluginHealth,
    now: &Time,
) -> NodeStatus {
    let q = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| (k.clone(), Quantity(v.clone())))
            .collect()
    };
    NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: cfg.pod_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: cfg.name.clone(),
            },
        ]),
        capacity: Some(q(&cfg.capacity)),
        allocatable: Some(q(&cfg.allocatable)),
        conditions: Some(owned_conditions(health, now)),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            operating_system: "linux".into(),
            kubelet_version: format!("vnode/{}", env!("CARGO_PKG_VERSION")),
            kube_proxy_version: String::new(),
            container_runtime_version: "eci://alibabacloud".into(),
            kernel_version: String::new(),
            os_image: String::new(),
            machine_id: String::new(),
            system_uuid: String::new(),
            boot_id: String::new(),
            swap: None,
        }),
        ..NodeStatus::default()
    }
}

/// The Node object as first registered.
pub fn desired_node(cfg: &NodeConfig, kubelet_port: u16, health: &PluginHealth) -> Node {
    let now = Time(jiff::Timestamp::now());
    Node {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            labels: Some(node_labels(&cfg.name)),
            annotations: Some(BTreeMap::from([(
                PLUGINS_ANNOTATION.to_string(),
                plugins_annotation(health),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: cfg.taint.as_ref().map(|t| vec![taint(t)]),
            ..NodeSpec::default()
        }),
        status: Some(desired_status(cfg, kubelet_port, health, &now)),
    }
}

fn taint(t: &crate::config::Taint) -> K8sTaint {
    K8sTaint {
        key: t.key.clone(),
        value: (!t.value.is_empty()).then(|| t.value.clone()),
        effect: t.effect.clone(),
        time_added: None,
    }
}

fn plugins_annotation(health: &PluginHealth) -> String {
    serde_json::to_string(health).unwrap_or_default()
}

/// Merges our labels, annotation and taint into an existing node. Returns true if the node
/// changed (and needs an update). Others' labels, annotations and taints are kept; a taint
/// with our key but another value/effect is replaced.
pub fn merge_metadata(node: &mut Node, cfg: &NodeConfig, health: &PluginHealth) -> bool {
    let mut changed = false;
    let labels = node.metadata.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in node_labels(&cfg.name) {
        if labels.get(&k) != Some(&v) {
            labels.insert(k, v);
            changed = true;
        }
    }
    let annotations = node.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let value = plugins_annotation(health);
    if annotations.get(PLUGINS_ANNOTATION) != Some(&value) {
        annotations.insert(PLUGINS_ANNOTATION.to_string(), value);
        changed = true;
    }
    if let Some(ours) = cfg.taint.as_ref().map(taint) {
        let taints = node
            .spec
            .get_or_insert_with(NodeSpec::default)
            .taints
            .get_or_insert_with(Vec::new);
        let present = taints
            .iter()
            .any(|t| t.key == ours.key && t.value == ours.value && t.effect == ours.effect);
        if !present {
            taints.retain(|t| t.key != ours.key);
            taints.push(ours);
            changed = true;
        }
    }
    changed
}

/// Merges our status into the node's current status. Conditions are merged by type: types
/// in [`OWNED_CONDITIONS`] are replaced (keeping `lastTransitionTime` when the status did not
/// change), all other types are kept as they are.
pub fn merge_status(current: Option<&NodeStatus>, ours: NodeStatus) -> NodeStatus {
    let mut merged = current.cloned().unwrap_or_default();
    let old_conditions = merged.conditions.take().unwrap_or_default();
    let mut conditions: Vec<NodeCondition> = old_conditions
        .iter()
        .filter(|c| !OWNED_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    for mut c in ours.conditions.unwrap_or_default() {
        if let Some(old) = old_conditions.iter().find(|o| o.type_ == c.type_)
            && old.status == c.status
            && old.last_transition_time.is_some()
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
        conditions.push(c);
    }
    merged.conditions = Some(conditions);
    merged.addresses = ours.addresses;
    merged.capacity = ours.capacity;
    merged.allocatable = ours.allocatable;
    merged.daemon_endpoints = ours.daemon_endpoints;
    merged.node_info = ours.node_info;
    merged
}

/// True if two statuses differ in anything but heartbeat times.
pub fn status_differs(a: Option<&NodeStatus>, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    match a {
        None => true,
        Some(a) => strip(a) != strip(b),
    }
}

/// Runs the node's registration, status and heartbeat loop.
pub struct NodeController {
    client: Client,
    cfg: NodeConfig,
    kubelet_port: u16,
    lease_renew: Duration,
    status_every: Duration,
    health: watch::Receiver<PluginHealth>,
    metrics: Arc<Metrics>,
    registered: watch::Sender<bool>,
}

/// The outcome of one tick, for tests and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// The node was missing and was created.
    pub created: bool,
    /// Labels/annotations/taint were updated.
    pub metadata_updated: bool,
    /// Status was written.
    pub status_written: bool,
    /// The lease was renewed (or created).
    pub lease_renewed: bool,
}

/// A failed API step of a tick.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct NodeError {
    step: &'static str,
    #[source]
    source: kube::Error,
}

impl NodeError {
    /// Label for the failure metric.
    pub fn metric_label(&self) -> &'static str {
        self.step
    }
}

impl NodeController {
    /// A controller for `cfg`'s node, publishing `kubelet_port` as the kubelet endpoint.
    /// `registered` turns true once the node exists (for `/readyz`).
    pub fn new(
        client: Client,
        cfg: NodeConfig,
        kubelet_port: u16,
        intervals: &crate::config::Intervals,
        health: watch::Receiver<PluginHealth>,
        metrics: Arc<Metrics>,
        registered: watch::Sender<bool>,
    ) -> Self {
        Self {
            client,
            cfg,
            kubelet_port,
            lease_renew: intervals.lease_renew,
            status_every: intervals.node_status,
            health,
            metrics,
            registered,
        }
    }

    /// Ticks until `token` is cancelled.
    pub async fn run(mut self, token: CancellationToken) {
        let mut ticker = tokio::time::interval(self.lease_renew);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status: Option<Instant> = None;
        let mut health_changed = true;
        let mut health_open = true;
        loop {
            tokio::select! {
                biased;
                () = token.cancelled() => break,
                changed = self.health.changed(), if health_open => {
                    // A closed channel means no plugin host any more: keep the last value.
                    health_open = changed.is_ok();
                    health_changed = health_open;
                    continue_tick(&mut ticker);
                }
                _ = ticker.tick() => {}
            }
            let status_due =
                health_changed || last_status.is_none_or(|t| t.elapsed() >= self.status_every);
            match self.tick(status_due).await {
                Ok(report) => {
                    if report.status_written {
                        last_status = Some(Instant::now());
                        health_changed = false;
                    }
                    if report.created {
                        tracing::info!(node = %self.cfg.name, "registered node");
                    }
                    self.registered.send_replace(true);
                }
                Err(e) => {
                    self.metrics.node_errors(e.metric_label());
                    tracing::warn!(node = %self.cfg.name, error = %e, "node heartbeat step failed; retrying next tick");
                }
            }
        }
        tracing::info!(node = %self.cfg.name, "node controller stopped");
    }

    /// One pass: ensure node, merge metadata, write status if `status_due` or changed, renew lease.
    pub async fn tick(&self, status_due: bool) -> Result<TickReport, NodeError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let health = self.health.borrow().clone();
        let mut report = TickReport::default();
        let err = |step| move |source| NodeError { step, source };

        let mut node = match nodes
            .get_opt(&self.cfg.name)
            .await
            .map_err(err("get node"))?
        {
            Some(node) => node,
            None => {
                let desired = desired_node(&self.cfg, self.kubelet_port, &health);
                report.created = true;
                match nodes.create(&PostParams::default(), &desired).await {
                    Ok(created) => {
                        self.metrics.node_registrations.inc();
                        // Some API servers drop status on create; write it explicitly below.
                        created
                    }
                    // Someone (a previous leader) created it between our get and create.
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        report.created = false;
                        nodes.get(&self.cfg.name).await.map_err(err("get node"))?
                    }
                    Err(e) => return Err(err("create node")(e)),
                }
            }
        };

        if merge_metadata(&mut node, &self.cfg, &health) {
            node = nodes
                .replace(&self.cfg.name, &PostParams::default(), &node)
                .await
                .map_err(err("update node"))?;
            report.metadata_updated = true;
        }

        let now = Time(jiff::Timestamp::now());
        let merged = merge_status(
            node.status.as_ref(),
            desired_status(&self.cfg, self.kubelet_port, &health, &now),
        );
        if status_due || report.created || status_differs(node.status.as_ref(), &merged) {
            let mut to_write = node.clone();
            to_write.status = Some(merged);
            node = nodes
                .replace_status(&self.cfg.name, &PostParams::default(), &to_write)
                .await
                .map_err(err("update node status"))?;
            report.status_written = true;
        }

        let uid = node.metadata.uid.clone().unwrap_or_default();
        self.renew_lease(&uid).await.map_err(err("renew lease"))?;
        report.lease_renewed = true;
        self.metrics.lease_renewals.inc();
        Ok(report)
    }

    async fn renew_lease(&self, node_uid: &str) -> Result<(), kube::Error> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), NODE_LEASE_NAMESPACE);
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: self.cfg.name.clone(),
            uid: node_uid.to_string(),
            ..OwnerReference::default()
        };
        let spec = LeaseSpec {
            holder_identity: Some(self.cfg.name.clone()),
            lease_duration_seconds: Some(
                i32::try_from(NODE_LEASE_DURATION.as_secs()).unwrap_or(40),
            ),
            renew_time: Some(MicroTime(jiff::Timestamp::now())),
            ..LeaseSpec::default()
        };
        match leases.get_opt(&self.cfg.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(NODE_LEASE_NAMESPACE.into()),
                        owner_references: (!node_uid.is_empty()).then(|| vec![owner]),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                leases.create(&PostParams::default(), &lease).await?;
            }
            Some(mut lease) => {
                lease.metadata.owner_references = (!node_uid.is_empty()).then(|| vec![owner]);
                let acquire = lease.spec.as_ref().and_then(|s| s.acquire_time.clone());
                lease.spec = Some(LeaseSpec {
                    acquire_time: acquire,
                    ..spec
                });
                leases
                    .replace(&self.cfg.name, &PostParams::default(), &lease)
                    .await?;
            }
        }
        Ok(())
    }
}

/// After a health change we act immediately; the next periodic tick is a full period later.
fn continue_tick(ticker: &mut tokio::time::Interval) {
    ticker.reset();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Intervals, Taint};
    use crate::testing::{FakeApi, lease_path, node_path, status};

    fn cfg() -> NodeConfig {
        NodeConfig {
            name: "virtual-kubelet".into(),
            pod_ip: "10.1.2.3".parse().expect("ip"),
            kubelet_port: 10250,
            taint: Some(Taint {
                key: "virtual-kubelet.io/provider".into(),
                value: "alibabacloud".into(),
                effect: "NoSchedule".into(),
            }),
            capacity: BTreeMap::from([
                ("cpu".into(), "1000".into()),
                ("memory".into(), "4Ti".into()),
                ("pods".into(), "1000".into()),
            ]),
            allocatable: BTreeMap::from([
                ("cpu".into(), "900".into()),
                ("memory".into(), "4Ti".into()),
                ("pods".into(), "1000".into()),
            ]),
        }
    }

    fn controller(
        fake: &FakeApi,
        health: watch::Receiver<PluginHealth>,
    ) -> (NodeController, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        let intervals = Intervals {
            lease_renew: Duration::from_millis(50),
            node_status: Duration::from_secs(60),
            pod_status_poll: Duration::from_secs(5),
            reconcile: Duration::from_secs(300),
            pod_status_resync: Duration::from_secs(60),
            orphan_min_age: Duration::from_secs(120),
        };
        (
            NodeController::new(
                fake.client(),
                cfg(),
                10250,
                &intervals,
                health,
                Arc::new(Metrics::new()),
                tx,
            ),
            rx,
        )
    }

    fn condition<'a>(node: &'a serde_json::Value, type_: &str) -> &'a serde_json::Value {
        node["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
            .unwrap_or(&serde_json::Value::Null)
    }

    #[tokio::test]
    async fn first_tick_registers_the_node_as_the_seed_expects() {
        let fake = FakeApi::new();
        let (_htx, hrx) = watch::channel(PluginHealth::default());
        let (c, _) = controller(&fake, hrx);
        let report = c.tick(false).await.expect("tick");
        assert!(report.created && report.status_written && report.lease_renewed);
        let node = fake
            .get(&node_path("virtual-kubelet"))
            .expect("node exists");
        let labels = &node["metadata"]["labels"];
        assert_eq!(labels["type"], "virtual-kubelet");
        assert_eq!(labels["kubernetes.io/role"], "agent");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["beta.kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/hostname"], "virtual-kubelet");
        assert_eq!(
            node["spec"]["taints"][0]["key"],
            "virtual-kubelet.io/provider"
        );
        assert_eq!(node["spec"]["taints"][0]["value"], "alibabacloud");
        assert_eq!(node["spec"]["taints"][0]["effect"], "NoSchedule");
        assert_eq!(
            node["status"]["addresses"][0],
            serde_json::json!({"type": "InternalIP", "address": "10.1.2.3"})
        );
        assert_eq!(
            node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            10250
        );
        assert_eq!(node["status"]["capacity"]["pods"], "1000");
        assert_eq!(node["status"]["allocatable"]["cpu"], "900");
        assert_eq!(condition(&node, "Ready")["status"], "True");
        assert_eq!(condition(&node, "MemoryPressure")["status"], "False");
        assert_eq!(condition(&node, PLUGINS_CONDITION)["status"], "False");
        let lease = fake
            .get(&lease_path(NODE_LEASE_NAMESPACE, "virtual-kubelet"))
            .expect("lease exists");
        assert_eq!(lease["spec"]["holderIdentity"], "virtual-kubelet");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
        assert_eq!(
            lease["metadata"]["ownerReferences"][0]["uid"],
            node["metadata"]["uid"]
        );
    }

    #[tokio::test]
    async fn a_deleted_node_is_recreated_and_the_lease_follows_its_uid() {
        let fake = FakeApi::new();
        let (_htx, hrx) = watch::channel(PluginHealth::default());
        let (c, _) = controller(&fake, hrx);
        c.tick(false).await.expect("tick");
        let first_uid =
            fake.get(&node_path("virtual-kubelet")).expect("node")["metadata"]["uid"].clone();
        fake.remove(&node_path("virtual-kubelet"));
        let report = c.tick(false).await.expect("tick");
        assert!(report.created);
        let node = fake.get(&node_path("virtual-kubelet")).expect("re-created");
        assert_ne!(node["metadata"]["uid"], first_uid);
        let lease = fake
            .get(&lease_path(NODE_LEASE_NAMESPACE, "virtual-kubelet"))
            .expect("lease");
        assert_eq!(
            lease["metadata"]["ownerReferences"][0]["uid"],
            node["metadata"]["uid"]
        );
    }

    #[tokio::test]
    async fn lease_renews_every_tick_and_status_only_when_due_or_changed() {
        let fake = FakeApi::new();
        let (_htx, hrx) = watch::channel(PluginHealth::default());
        let (c, _) = controller(&fake, hrx);
        c.tick(false).await.expect("tick");
        let lease_before = fake
            .get(&lease_path(NODE_LEASE_NAMESPACE, "virtual-kubelet"))
            .expect("lease");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let report = c.tick(false).await.expect("tick");
        assert!(
            report.lease_renewed && !report.status_written && !report.metadata_updated,
            "{report:?}"
        );
        let lease_after = fake
            .get(&lease_path(NODE_LEASE_NAMESPACE, "virtual-kubelet"))
            .expect("lease");
        assert_ne!(
            lease_before["spec"]["renewTime"],
            lease_after["spec"]["renewTime"]
        );
        assert!(c.tick(true).await.expect("tick").status_written);
    }

    #[tokio::test]
    async fn conditions_owned_by_others_survive_and_transition_times_are_kept() {
        let fake = FakeApi::new();
        let (_htx, hrx) = watch::channel(PluginHealth::default());
        let (c, _) = controller(&fake, hrx);
        c.tick(false).await.expect("tick");
        let path = node_path("virtual-kubelet");
        let mut node = fake.get(&path).expect("node");
        let ready_since = condition(&node, "Ready")["lastTransitionTime"].clone();
        node["status"]["conditions"]
            .as_array_mut()
            .expect("conditions")
            .push(serde_json::json!({
                "type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated"
            }));
        node["metadata"]["labels"]["team"] = serde_json::json!("data");
        node["spec"]["taints"]
            .as_array_mut()
            .expect("taints")
            .push(serde_json::json!({
                "key": "node.kubernetes.io/unreachable", "effect": "NoExecute"
            }));
        fake.put(&path, node);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(c.tick(true).await.expect("tick").status_written);
        let node = fake.get(&path).expect("node");
        assert_eq!(
            condition(&node, "NetworkUnavailable")["reason"],
            "RouteCreated"
        );
        assert_eq!(condition(&node, "Ready")["lastTransitionTime"], ready_since);
        assert_eq!(node["metadata"]["labels"]["team"], "data");
        assert_eq!(node["spec"]["taints"].as_array().map(Vec::len), Some(2));
    }

    #[tokio::test]
    async fn plugin_health_shows_on_the_node() {
        let fake = FakeApi::new();
        let (htx, hrx) = watch::channel(PluginHealth::default());
        let (c, _) = controller(&fake, hrx);
        c.tick(false).await.expect("tick");
        htx.send_replace(PluginHealth {
            placement: Some(ActivePlugin {
                name: "zones".into(),
                version: "1.2.0".into(),
                hash: "ab12".into(),
            }),
            translator: Some(ActivePlugin {
                name: "default".into(),
                version: "0.1.0".into(),
                hash: "cd34".into(),
            }),
            last_refused_reload: Some(RefusedReload {
                slot: "placement".into(),
                path: "/plugins/p.wasm".into(),
                reason: "missing export".into(),
                at: "2026-11-25T18:00:00Z".into(),
            }),
            placement_shadow: None,
        });
        let report = c.tick(false).await.expect("tick");
        assert!(
            report.metadata_updated && report.status_written,
            "{report:?}"
        );
        let node = fake.get(&node_path("virtual-kubelet")).expect("node");
        let cond = condition(&node, PLUGINS_CONDITION);
        assert_eq!(cond["status"], "True");
        let msg = cond["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("zones@1.2.0 (ab12)") && msg.contains("last refused placement reload"),
            "{msg}"
        );
        let ann: PluginHealth = serde_json::from_str(
            node["metadata"]["annotations"][PLUGINS_ANNOTATION]
                .as_str()
                .unwrap_or_default(),
        )
        .expect("annotation is JSON");
        assert_eq!(ann.translator.map(|t| t.version), Some("0.1.0".into()));
    }

    fn slot(name: &str, refused_at: Option<u64>) -> vnode_plugin_host::SlotStatus {
        let at = |s: u64| std::time::UNIX_EPOCH + Duration::from_secs(s);
        vnode_plugin_host::SlotStatus {
            active: Arc::new(vnode_plugin_host::PluginIdentity {
                kind: vnode_plugin_host::PluginKind::Placement,
                name: name.into(),
                version: "1.0.0".into(),
                description: String::new(),
                contract_version: "0.1.0".into(),
                sha256: "0123456789abcdef0123".into(),
                config_sha256: String::new(),
                source: None,
                loaded_at: at(0),
            }),
            generation: 0,
            last_refused: refused_at.map(|s| vnode_plugin_host::RefusedReload {
                at: at(s),
                file: format!("/plugins/{name}.wasm").into(),
                sha256: None,
                reason: "no such export".into(),
            }),
        }
    }

    #[test]
    fn slot_status_becomes_node_health_with_the_newest_refusal() {
        let h = health_from_slots(&slot("zones", Some(100)), &slot("default", Some(200)));
        assert_eq!(
            h.placement.as_ref().map(|p| p.hash.as_str()),
            Some("0123456789ab")
        );
        let r = h.last_refused_reload.expect("refusal");
        assert_eq!(
            (r.slot.as_str(), r.path.as_str()),
            ("translator", "/plugins/default.wasm")
        );
        assert_eq!(r.at, "1970-01-01T00:03:20Z");
        assert!(
            health_from_slots(&slot("a", None), &slot("b", None))
                .last_refused_reload
                .is_none()
        );
    }

    #[tokio::test]
    async fn slot_changes_are_forwarded() {
        let (p_tx, p_rx) = watch::channel(slot("zones", None));
        let (_t_tx, t_rx) = watch::channel(slot("default", None));
        let (h_tx, mut h_rx) = watch::channel(PluginHealth::default());
        let token = CancellationToken::new();
        let task = tokio::spawn(forward_slot_status(p_rx, t_rx, h_tx, token.clone()));
        tokio::time::timeout(
            Duration::from_secs(1),
            h_rx.wait_for(|h| h.placement.is_some()),
        )
        .await
        .expect("first")
        .expect("open");
        p_tx.send_replace(slot("zones", Some(5)));
        tokio::time::timeout(
            Duration::from_secs(1),
            h_rx.wait_for(|h| h.last_refused_reload.is_some()),
        )
        .await
        .expect("refusal forwarded")
        .expect("open");
        token.cancel();
        task.await.expect("stops");
    }

    #[tokio::test]
    async fn api_errors_are_reported_not_fatal_and_run_stops_on_cancel() {
        let fake = FakeApi::new();
        fake.set_handler(|req| {
            req.path
                .contains("/leases")
                .then(|| status(500, "InternalError"))
        });
        let (_htx, hrx) = watch::channel(PluginHealth::default());
        let (c, mut registered) = controller(&fake, hrx);
        let e = c.tick(false).await.expect_err("lease fails");
        assert_eq!(e.metric_label(), "renew lease");
        let token = CancellationToken::new();
        let task = tokio::spawn(c.run(token.clone()));
        // The loop keeps going after the failure; once leases work the node counts as registered.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(!*registered.borrow());
        fake.set_handler(|_| None);
        tokio::time::timeout(Duration::from_secs(2), registered.wait_for(|r| *r))
            .await
            .expect("registered")
            .expect("open");
        token.cancel();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("stops")
            .expect("no panic");
    }
}
