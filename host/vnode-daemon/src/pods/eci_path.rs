//! The production [`PodPath`]: references fetched through the Kubernetes API, decisions by the
//! placement and translator plugins, container groups through the ECI client.
//!
//! This module only sequences. Conversions stay in `vnode-mapping` (`placement_input`,
//! `translator_input`, `eci_request`); ECI's wire format stays in `vnode-eci`. What the host
//! adds on top of the translator's request, always and whatever the plugin returned:
//!
//! - the identity tags [`groups::tags`] (cluster, node, namespace, pod name, pod UID), which
//!   replace any tag of the same key the plugin set;
//! - the ClientToken [`client_token_for_pod`]`(uid, 0)`: one token per pod for every
//!   placement attempt, so a create whose answer was lost can never be repeated as a second
//!   group (ECI answers a different request under a used token with
//!   `IdempotentParameterMismatch`, which is adopted through a tag listing).
//!
//! Before any create the [`GroupIndex`] must hold a complete listing; a pod that already has a
//! group is adopted, never created again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};
use parking_lot::Mutex;
use vnode_eci::model::{
    CreateContainerGroupRequest, DeleteContainerGroupRequest, DescribeContainerGroupsRequest, Tag,
};
use vnode_eci::{EciClient, EciError, client_token_for_pod};
use vnode_mapping::translator_input::{self, Referenced};
use vnode_mapping::{eci_request, placement_input};
use vnode_plugin_host::contract::{
    Accepted, Attempt, Decision, InstanceSpec, NodeDefaults, PlacementContext, ResolvedPod, Sizing,
    Stockout, TranslateError, TranslateInput, ZoneUsage, ZoneVswitch,
};
use vnode_plugin_host::{PluginIdentity, PluginSlot};

use super::state::FailureKind;
use super::{Created, GroupRef, Note, PodPath, StepError};
use crate::config::Config;
use crate::groups::{self, GroupEntry, GroupIndex};
use crate::metrics::Metrics;

/// The longest a placement deferral is honoured (the contract's cap).
const MAX_DEFERRAL: Duration = Duration::from_secs(600);
/// How long a no-stock answer stays in the placement context.
const STOCKOUT_MEMORY: Duration = Duration::from_secs(600);
/// At most this many recent stock-outs are passed to placement.
const MAX_STOCKOUTS: usize = 32;
/// How long one service-account token serves new pods (it is requested for an hour).
const TOKEN_REUSE: Duration = Duration::from_secs(60);

/// One cached token; the async lock makes concurrent misses wait for a single request.
type TokenSlot = tokio::sync::Mutex<Option<(String, Instant)>>;

/// What the pod path needs to know about the node (from [`Config`]).
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// The virtual node's name.
    pub node_name: String,
    /// `ECI_CLUSTER_NAME`.
    pub cluster_name: String,
    /// `ECI_REGION`.
    pub region: String,
    /// `ECI_SECURITY_GROUP`.
    pub security_group: String,
    /// Every configured vSwitch with its zone (`""` when the operator did not name one).
    pub vswitches: Vec<ZoneVswitch>,
    /// Cluster DNS servers for the translator.
    pub cluster_dns: Vec<String>,
    /// Cluster domain.
    pub cluster_domain: String,
    /// vCPU/memory combinations offered to placement, smallest first.
    pub candidate_specs: Vec<InstanceSpec>,
}

impl NodeSettings {
    /// From the daemon's configuration.
    pub fn from_config(config: &Config) -> Self {
        Self {
            node_name: config.node.name.clone(),
            cluster_name: config.eci.cluster_name.clone(),
            region: config.eci.region.clone(),
            security_group: config.eci.security_group.clone(),
            vswitches: config
                .eci
                .vswitches
                .iter()
                .map(|v| ZoneVswitch {
                    zone_id: config.eci.vswitch_zones.get(v).cloned().unwrap_or_default(),
                    vswitch_id: v.clone(),
                })
                .collect(),
            cluster_dns: config.eci.cluster_dns.clone(),
            cluster_domain: config.eci.cluster_domain.clone(),
            candidate_specs: default_specs(),
        }
    }

    /// Zones placement can choose between: the vSwitches whose zone is known. When no zone
    /// is known, placement gets none and ECI chooses among the node's vSwitches.
    fn placement_zones(&self) -> Vec<ZoneVswitch> {
        self.vswitches
            .iter()
            .filter(|z| !z.zone_id.is_empty())
            .cloned()
            .collect()
    }

    fn zone_of_vswitch(&self, vswitch: &str) -> Option<String> {
        self.vswitches
            .iter()
            .find(|z| z.vswitch_id == vswitch && !z.zone_id.is_empty())
            .map(|z| z.zone_id.clone())
    }
}

/// ECI's general-purpose vCPU/memory combinations, smallest first (the ECI "specifications"
/// table; placement may also ask for ECS instance types directly).
pub fn default_specs() -> Vec<InstanceSpec> {
    [
        (250, 512),
        (250, 1024),
        (500, 1024),
        (500, 2048),
        (1000, 2048),
        (1000, 4096),
        (2000, 4096),
        (2000, 8192),
        (4000, 8192),
        (4000, 16384),
        (8000, 16384),
        (8000, 32768),
        (16000, 32768),
        (16000, 65536),
        (32000, 65536),
        (32000, 131072),
        (64000, 131072),
        (64000, 262144),
    ]
    .into_iter()
    .map(|(cpu_millis, memory_mib)| InstanceSpec {
        cpu_millis,
        memory_mib,
    })
    .collect()
}

/// Intermediate results for one pod between the steps.
#[derive(Default)]
struct Progress {
    resolved: Option<ResolvedPod>,
    /// How many decisions placement made for this pod (its `previous-decisions`).
    decisions: u32,
    accepted: Option<(Accepted, Arc<PluginIdentity>)>,
    /// Translated requests by attempt index.
    requests: BTreeMap<usize, (CreateContainerGroupRequest, Arc<PluginIdentity>)>,
}

/// The production pod path.
pub struct EciPodPath {
    kube: Client,
    eci: EciClient,
    placement: Arc<PluginSlot>,
    translator: Arc<PluginSlot>,
    index: Arc<GroupIndex>,
    metrics: Arc<Metrics>,
    node: NodeSettings,
    progress: Mutex<HashMap<String, Progress>>,
    stockouts: Mutex<VecDeque<(String, String, Instant)>>,
    /// Service-account tokens by (namespace, service account, audience), with when they
    /// were requested (see [`EciPodPath::service_account_token`]).
    tokens: Mutex<HashMap<(String, String, String), Arc<TokenSlot>>>,
    /// A placement candidate run next to the active one, never acting (shadow rollout).
    shadow: Option<Arc<crate::plugins::shadow::ShadowPlacement>>,
    /// Watch-backed `kube-root-ca.crt` per namespace (a miss falls back to a GET).
    root_ca: Option<Arc<super::root_ca::RootCaCache>>,
}

/// `name@version`, the label and annotation form of a plugin identity.
pub fn plugin_label(p: &PluginIdentity) -> String {
    format!("{}@{}", p.name, p.version)
}

/// `name@version (sha256 <12 hex>)`, the annotation form.
fn plugin_annotation(p: &PluginIdentity) -> String {
    format!("{}@{} (sha256 {})", p.name, p.version, p.sha256_short())
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// The spec a request asks for, as ECI writes it (`2.0-4.0Gi` or instance types).
fn spec_of(req: &CreateContainerGroupRequest) -> Option<String> {
    if !req.instance_types.is_empty() {
        return Some(req.instance_types.join(","));
    }
    match (req.cpu, req.memory) {
        (Some(c), Some(m)) => Some(format!("{c:.1}-{m:.1}Gi")),
        _ => None,
    }
}

fn sizing_text(s: &Sizing) -> String {
    match s {
        Sizing::Auto => "auto".into(),
        Sizing::Spec(s) => format!(
            "{}-{}Gi",
            f64::from(s.cpu_millis) / 1000.0,
            f64::from(s.memory_mib) / 1024.0
        ),
        Sizing::InstanceTypes(t) => t.join(","),
    }
}

fn attempt_text(a: &Attempt) -> String {
    let zone = a.zone_id.as_deref().unwrap_or("any zone");
    format!("{zone}/{}", sizing_text(&a.sizing))
}

/// Lists every group tagged with this cluster and node. Fails as a whole if any page fails:
/// a partial listing is never returned.
pub async fn list_node_groups(
    eci: &EciClient,
    cluster: &str,
    node: &str,
    pod_uid: Option<&str>,
) -> Result<Vec<GroupEntry>, EciError> {
    let mut tags = vec![
        Tag::new(groups::tags::CLUSTER, cluster),
        Tag::new(groups::tags::NODE, node),
    ];
    if let Some(uid) = pod_uid {
        tags.push(Tag::new(groups::tags::POD_UID, uid));
    }
    let request = DescribeContainerGroupsRequest {
        tags,
        // DescribeContainerGroups pages hold at most 20.
        limit: Some(20),
        ..Default::default()
    };
    let groups = eci.describe_all_container_groups(&request).await?;
    Ok(groups
        .iter()
        .filter_map(groups::reconcile::entry_of)
        .collect())
}

impl EciPodPath {
    /// A pod path over these clients, slots and index.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kube: Client,
        eci: EciClient,
        placement: Arc<PluginSlot>,
        translator: Arc<PluginSlot>,
        index: Arc<GroupIndex>,
        metrics: Arc<Metrics>,
        node: NodeSettings,
    ) -> Self {
        Self {
            kube,
            eci,
            placement,
            translator,
            index,
            metrics,
            node,
            progress: Mutex::new(HashMap::new()),
            stockouts: Mutex::new(VecDeque::new()),
            tokens: Mutex::new(HashMap::new()),
            shadow: None,
            root_ca: None,
        }
    }

    /// Serves `kube-root-ca.crt` from `cache` instead of a GET per pod.
    pub fn with_root_ca_cache(mut self, cache: Arc<super::root_ca::RootCaCache>) -> Self {
        self.root_ca = Some(cache);
        self
    }

    /// Runs `shadow`'s candidate (when one is configured) on every placement input, off the
    /// critical path; see [`crate::plugins::shadow`].
    pub fn with_shadow(mut self, shadow: Arc<crate::plugins::shadow::ShadowPlacement>) -> Self {
        self.shadow = Some(shadow);
        self
    }

    fn note_stockout(&self, zone: Option<String>, spec: Option<String>) {
        let mut s = self.stockouts.lock();
        s.push_front((
            zone.unwrap_or_default(),
            spec.unwrap_or_default(),
            Instant::now(),
        ));
        s.truncate(MAX_STOCKOUTS);
    }

    fn context(&self, previous_decisions: u32) -> PlacementContext {
        let usage = self.index.zone_usage();
        let now = Instant::now();
        let recent_stockouts = self
            .stockouts
            .lock()
            .iter()
            .filter(|(_, _, at)| now.duration_since(*at) < STOCKOUT_MEMORY)
            .map(|(zone, spec, at)| Stockout {
                zone_id: zone.clone(),
                spec: spec.clone(),
                seconds_ago: u32::try_from(now.duration_since(*at).as_secs()).unwrap_or(u32::MAX),
            })
            .collect();
        PlacementContext {
            region: self.node.region.clone(),
            zones: self.node.placement_zones(),
            candidate_specs: self.node.candidate_specs.clone(),
            usage: usage
                .into_iter()
                .map(|(zone_id, container_groups)| ZoneUsage {
                    zone_id,
                    container_groups,
                })
                .collect(),
            recent_stockouts,
            previous_decisions,
            node_name: self.node.node_name.clone(),
            cluster_name: self.node.cluster_name.clone(),
            // Replaced by the plugin host with the serving version's own configuration.
            config: String::new(),
        }
    }

    fn node_defaults(&self) -> NodeDefaults {
        NodeDefaults {
            region: self.node.region.clone(),
            security_group_id: self.node.security_group.clone(),
            zones: self.node.vswitches.clone(),
            cluster_name: self.node.cluster_name.clone(),
            node_name: self.node.node_name.clone(),
            cluster_dns: self.node.cluster_dns.clone(),
            cluster_domain: self.node.cluster_domain.clone(),
        }
    }

    /// The host's identity tags, replacing whatever the plugin set under the same keys.
    fn stamp(&self, pod: &Pod, req: &mut CreateContainerGroupRequest) {
        let ours = [
            (groups::tags::CLUSTER, self.node.cluster_name.clone()),
            (groups::tags::NODE, self.node.node_name.clone()),
            (
                groups::tags::NAMESPACE,
                pod.metadata.namespace.clone().unwrap_or_default(),
            ),
            (
                groups::tags::POD_NAME,
                pod.metadata.name.clone().unwrap_or_default(),
            ),
            (groups::tags::POD_UID, uid_of(pod)),
        ];
        req.tags
            .retain(|t| !ours.iter().any(|(k, _)| *k == t.key.as_str()));
        req.tags
            .extend(ours.into_iter().map(|(k, v)| Tag::new(k, v)));
        req.client_token = Some(client_token_for_pod(&uid_of(pod), 0));
    }

    /// A token for service account `ns/sa` and `audience` (empty: the API server's). The
    /// tokens are not bound to a pod, so pods of one service account created within
    /// [`TOKEN_REUSE`] share one TokenRequest: a burst of a thousand pods costs the API server
    /// one token signature instead of a thousand, and each token still has all but a minute
    /// of its hour. Concurrent misses for the same key wait for one request.
    async fn service_account_token(
        &self,
        ns: &str,
        sa: &str,
        audience: &str,
    ) -> Result<Option<String>, kube::Error> {
        let slot = self
            .tokens
            .lock()
            .entry((ns.to_string(), sa.to_string(), audience.to_string()))
            .or_default()
            .clone();
        let mut cached = slot.lock().await;
        if let Some((token, at)) = cached.as_ref()
            && at.elapsed() < TOKEN_REUSE
        {
            return Ok(Some(token.clone()));
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: if audience.is_empty() {
                    Vec::new()
                } else {
                    vec![audience.to_string()]
                },
                expiration_seconds: Some(3607),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let requested = Instant::now();
        let sas: Api<ServiceAccount> = Api::namespaced(self.kube.clone(), ns);
        let answer = sas
            .create_token_request(sa, &PostParams::default(), &request)
            .await?;
        let token = answer.status.map(|s| s.token);
        *cached = token.clone().map(|t| (t, requested));
        Ok(token)
    }

    async fn fetch_references(&self, pod: &Pod) -> Result<Referenced, StepError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let wanted = translator_input::references(pod);
        let lookup_failed = |what: &str, name: &str, e: kube::Error| {
            StepError::new(
                FailureKind::Transient,
                "ReferenceLookupFailed",
                format!("reading {what} {ns}/{name}: {e}"),
            )
        };
        let mut refs = Referenced::default();
        let cms: Api<ConfigMap> = Api::namespaced(self.kube.clone(), ns);
        for name in &wanted.config_maps {
            if name == super::root_ca::ROOT_CA_CONFIGMAP
                && let Some(cm) = self.root_ca.as_ref().and_then(|c| c.get(ns))
            {
                refs.config_maps.insert(name.clone(), (*cm).clone());
                continue;
            }
            if let Some(cm) = cms
                .get_opt(name)
                .await
                .map_err(|e| lookup_failed("ConfigMap", name, e))?
            {
                refs.config_maps.insert(name.clone(), cm);
            }
        }
        let secrets: Api<Secret> = Api::namespaced(self.kube.clone(), ns);
        for name in &wanted.secrets {
            if let Some(s) = secrets
                .get_opt(name)
                .await
                .map_err(|e| lookup_failed("Secret", name, e))?
            {
                refs.secrets.insert(name.clone(), s);
            }
        }
        if !wanted.token_audiences.is_empty() {
            let sa_name = pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into());
            for audience in &wanted.token_audiences {
                match self.service_account_token(ns, &sa_name, audience).await {
                    Ok(Some(token)) => {
                        refs.service_account_tokens.insert(audience.clone(), token);
                    }
                    Ok(None) => {}
                    // Reported by `resolve` as FailedToRetrieveServiceAccountToken.
                    Err(e) => {
                        tracing::warn!(pod = %pod_key(pod), service_account = %sa_name, error = %e, "TokenRequest failed")
                    }
                }
            }
        }
        Ok(refs)
    }

    /// Translates attempt `index` (cached per pod) into a stamped ECI request.
    async fn request_for(
        &self,
        pod: &Pod,
        index: usize,
    ) -> Result<(CreateContainerGroupRequest, Arc<PluginIdentity>), StepError> {
        let uid = uid_of(pod);
        let (resolved, attempt) = {
            let progress = self.progress.lock();
            let p = progress.get(&uid);
            if let Some(done) = p.and_then(|p| p.requests.get(&index)) {
                return Ok(done.clone());
            }
            let resolved = p.and_then(|p| p.resolved.clone());
            let attempt = p
                .and_then(|p| p.accepted.as_ref())
                .and_then(|(a, _)| a.attempts.get(index).cloned());
            (resolved, attempt)
        };
        let (Some(resolved), Some(attempt)) = (resolved, attempt) else {
            // Should not happen (dropped only at the end of a pod's path): start over.
            return Err(StepError::new(
                FailureKind::Unavailable,
                "PodPathRestarted",
                "the pod's resolved references or placement were dropped; starting over",
            ));
        };
        let input = TranslateInput {
            pod: resolved,
            attempt,
            node: self.node_defaults(),
            config: String::new(),
        };
        let started = Instant::now();
        let decided = self.translator.translate(input).await;
        let seconds = started.elapsed().as_secs_f64();
        let decided = match decided {
            Ok(d) => d,
            Err(e) => {
                self.metrics.plugin_decision(
                    "translator",
                    &plugin_label(&e.plugin),
                    "error",
                    seconds,
                );
                return Err(StepError::new(
                    FailureKind::Transient,
                    "TranslatorPluginFailed",
                    e.to_string(),
                ));
            }
        };
        let plugin = decided.plugin;
        let label = plugin_label(&plugin);
        let request = match decided.value {
            Ok(r) => {
                self.metrics
                    .plugin_decision("translator", &label, "ok", seconds);
                r
            }
            Err(e) => {
                self.metrics
                    .plugin_decision("translator", &label, "reject", seconds);
                let message = match e {
                    TranslateError::InvalidPod(f) | TranslateError::Unsupported(f) => {
                        format!("{label}: {}: {}", f.field, f.message)
                    }
                    TranslateError::Internal(m) => format!("{label}: internal error: {m}"),
                };
                return Err(StepError::new(
                    FailureKind::Permanent,
                    "TranslationRejected",
                    message,
                ));
            }
        };
        let token = client_token_for_pod(&uid, 0);
        let mut eci_req = eci_request::to_create_request(&request, &token).map_err(|e| {
            StepError::new(
                FailureKind::Permanent,
                "TranslationInvalid",
                format!("{label} produced a request ECI cannot take: {e}"),
            )
        })?;
        self.stamp(pod, &mut eci_req);
        let done = (eci_req, plugin);
        if let Some(p) = self.progress.lock().get_mut(&uid) {
            p.requests.insert(index, done.clone());
        }
        Ok(done)
    }

    fn adopted(&self, pod: &Pod, entry: &GroupEntry, how: &str) -> Created {
        let mut annotations = BTreeMap::new();
        annotations.insert(groups::annotations::GROUP_ID.to_string(), entry.id.clone());
        if let Some(zone) = &entry.zone {
            annotations.insert(groups::annotations::ZONE.to_string(), zone.clone());
        }
        self.progress.lock().remove(&uid_of(pod));
        Created {
            group: GroupRef {
                id: entry.id.clone(),
                zone: entry.zone.clone(),
            },
            annotations,
            notes: vec![Note::normal(
                "Adopted",
                format!("container group {} already existed ({how})", entry.id),
            )],
        }
    }

    /// After `IdempotentParameterMismatch`: the pod's token was used by an earlier create
    /// (a lost answer, a different attempt): find that group by its pod-UID tag.
    async fn adopt_by_listing(&self, pod: &Pod) -> Result<Created, StepError> {
        let uid = uid_of(pod);
        let found = list_node_groups(
            &self.eci,
            &self.node.cluster_name,
            &self.node.node_name,
            Some(&uid),
        )
        .await
        .map_err(|e| {
            StepError::new(
                FailureKind::Transient,
                "EciCreateFailed",
                format!(
                    "the pod's ClientToken was already used, and listing its group failed: {e}"
                ),
            )
        })?;
        match found.into_iter().next() {
            Some(entry) => {
                self.index.insert(entry.clone());
                Ok(self.adopted(pod, &entry, "an earlier create with this pod's ClientToken"))
            }
            None => Err(StepError::new(
                FailureKind::Transient,
                "EciCreateFailed",
                "the pod's ClientToken was already used but no group carries its UID yet; retrying",
            )),
        }
    }
}

fn classify_create_error(e: &EciError) -> (FailureKind, &'static str, &'static str) {
    match e {
        EciError::InvalidParameter { .. } => (FailureKind::Permanent, "EciRejected", "rejected"),
        EciError::Auth { .. } | EciError::Config(_) => {
            (FailureKind::Unavailable, "EciAuthFailed", "auth")
        }
        EciError::Throttled { .. } => (FailureKind::Transient, "EciThrottled", "throttled"),
        _ => (FailureKind::Transient, "EciCreateFailed", "error"),
    }
}

impl PodPath for EciPodPath {
    async fn existing(&self, uid: &str) -> Option<GroupRef> {
        self.index.wait_until_listed().await;
        self.index.get(uid).map(|e| GroupRef {
            id: e.id,
            zone: e.zone,
        })
    }

    async fn resolve(&self, pod: &Pod) -> Result<Vec<Note>, StepError> {
        let refs = self.fetch_references(pod).await?;
        let resolved = match translator_input::resolve(pod, &refs, &self.node.node_name) {
            Ok(r) => r,
            Err(translator_input::ResolveError::Missing(missing)) => {
                // Waits (and re-checks) without failing the pod: the reference may appear.
                let reason = missing
                    .first()
                    .map_or("MandatoryReferenceNotFound", |m| m.event_reason());
                let message = missing
                    .iter()
                    .map(|m| m.message())
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(StepError::new(FailureKind::Unavailable, reason, message));
            }
            Err(e @ translator_input::ResolveError::Invalid { .. }) => {
                return Err(StepError::new(
                    FailureKind::Permanent,
                    "InvalidPod",
                    e.to_string(),
                ));
            }
        };
        let mut notes: Vec<Note> = resolved
            .missing_optional
            .iter()
            .map(|m| Note::warning(m.event_reason(), m.message()))
            .collect();
        if !resolved.skipped_env_keys.is_empty() {
            notes.push(Note::warning(
                "InvalidEnvironmentVariableNames",
                format!(
                    "keys skipped from envFrom (not valid variable names): {}",
                    resolved.skipped_env_keys.join(", ")
                ),
            ));
        }
        let mut progress = self.progress.lock();
        let p = progress.entry(uid_of(pod)).or_default();
        p.resolved = Some(resolved.pod);
        p.accepted = None;
        p.requests.clear();
        Ok(notes)
    }

    async fn place(&self, pod: &Pod) -> Result<Vec<Note>, StepError> {
        let uid = uid_of(pod);
        let view = placement_input::pod_view(pod)
            .map_err(|e| StepError::new(FailureKind::Permanent, "InvalidPod", e.to_string()))?;
        let previous = self.progress.lock().get(&uid).map_or(0, |p| p.decisions);
        let context = self.context(previous);
        // The shadow gets the very same inputs; copied only while a shadow is configured.
        let shadow_input = self
            .shadow
            .as_ref()
            .filter(|s| s.is_enabled())
            .map(|s| (s.clone(), view.clone(), context.clone()));
        let started = Instant::now();
        let decided = self.placement.place(view, context).await;
        let seconds = started.elapsed().as_secs_f64();
        let decided = match decided {
            Ok(d) => d,
            Err(e) => {
                self.metrics.plugin_decision(
                    "placement",
                    &plugin_label(&e.plugin),
                    "error",
                    seconds,
                );
                return Err(StepError::new(
                    FailureKind::Transient,
                    "PlacementPluginFailed",
                    e.to_string(),
                ));
            }
        };
        if let Some((shadow, view, context)) = shadow_input {
            shadow.submit(pod_key(pod), view, context, &decided, &self.metrics);
        }
        let label = plugin_label(&decided.plugin);
        let mut progress = self.progress.lock();
        let p = progress.entry(uid).or_default();
        p.decisions = p.decisions.saturating_add(1);
        match decided.value {
            Decision::Accept(accepted) => {
                self.metrics
                    .plugin_decision("placement", &label, "accept", seconds);
                let first = accepted
                    .attempts
                    .first()
                    .map(attempt_text)
                    .unwrap_or_default();
                let note = Note::normal(
                    "Placed",
                    format!(
                        "{label} chose {first} ({} attempt(s)): {}",
                        accepted.attempts.len(),
                        accepted.reason
                    ),
                );
                p.accepted = Some((accepted, decided.plugin));
                p.requests.clear();
                Ok(vec![note])
            }
            Decision::Refuse(reason) => {
                self.metrics
                    .plugin_decision("placement", &label, "refuse", seconds);
                Err(StepError::new(
                    FailureKind::Permanent,
                    "PlacementRefused",
                    format!("{label}: {reason}"),
                ))
            }
            Decision::Defer(d) => {
                self.metrics
                    .plugin_decision("placement", &label, "defer", seconds);
                let delay = Duration::from_millis(u64::from(d.retry_after_ms)).min(MAX_DEFERRAL);
                Err(StepError::new(
                    FailureKind::Transient,
                    "PlacementDeferred",
                    format!("{label} asks again in {delay:?}: {}", d.reason),
                )
                .retry_after(Some(delay)))
            }
        }
    }

    async fn translate(&self, pod: &Pod) -> Result<Vec<Note>, StepError> {
        self.request_for(pod, 0).await.map(|_| Vec::new())
    }

    async fn create(&self, pod: &Pod) -> Result<Created, StepError> {
        let uid = uid_of(pod);
        // Never create without knowing: a complete listing first, then the index.
        self.index.wait_until_listed().await;
        if let Some(entry) = self.index.get(&uid) {
            return Ok(self.adopted(pod, &entry, "found in this node's listing"));
        }
        let (attempts, placement) = {
            let progress = self.progress.lock();
            match progress.get(&uid).and_then(|p| p.accepted.clone()) {
                Some((a, plugin)) => (a.attempts, plugin),
                None => {
                    return Err(StepError::new(
                        FailureKind::Replan,
                        "PodPathRestarted",
                        "no placement decision is recorded for the pod; placing it again",
                    ));
                }
            }
        };
        let mut sold_out = Vec::new();
        for (i, attempt) in attempts.iter().enumerate() {
            let (request, translator) = self.request_for(pod, i).await?;
            let started = Instant::now();
            let result = self.eci.create_container_group(&request).await;
            let seconds = started.elapsed().as_secs_f64();
            match result {
                Ok(resp) => {
                    self.metrics.eci_call("CreateContainerGroup", "ok", seconds);
                    let zone = attempt
                        .zone_id
                        .clone()
                        .or_else(|| request.zone_id.clone())
                        .or_else(|| match request.vswitch_ids.as_slice() {
                            [only] => self.node.zone_of_vswitch(only),
                            _ => None,
                        });
                    let spec = spec_of(&request).unwrap_or_else(|| sizing_text(&attempt.sizing));
                    self.index.insert(GroupEntry {
                        id: resp.container_group_id.clone(),
                        name: request.container_group_name.clone(),
                        pod_uid: uid.clone(),
                        pod_key: pod_key(pod),
                        zone: zone.clone(),
                        status: None,
                    });
                    self.progress.lock().remove(&uid);
                    let mut annotations = BTreeMap::new();
                    annotations.insert(
                        groups::annotations::GROUP_ID.to_string(),
                        resp.container_group_id.clone(),
                    );
                    if let Some(z) = &zone {
                        annotations.insert(groups::annotations::ZONE.to_string(), z.clone());
                    }
                    annotations.insert(groups::annotations::SPEC.to_string(), spec.clone());
                    annotations.insert(
                        groups::annotations::PLACEMENT.to_string(),
                        plugin_annotation(&placement),
                    );
                    annotations.insert(
                        groups::annotations::TRANSLATOR.to_string(),
                        plugin_annotation(&translator),
                    );
                    let message = format!(
                        "container group {} in {} (spec {spec}, attempt {} of {}; translator {})",
                        resp.container_group_id,
                        zone.as_deref().unwrap_or("a zone ECI chose"),
                        i + 1,
                        attempts.len(),
                        plugin_label(&translator),
                    );
                    return Ok(Created {
                        group: GroupRef {
                            id: resp.container_group_id,
                            zone,
                        },
                        annotations,
                        notes: vec![Note::normal("Created", message)],
                    });
                }
                Err(EciError::NoStock { zone, spec, .. }) => {
                    self.metrics
                        .eci_call("CreateContainerGroup", "no_stock", seconds);
                    sold_out.push(format!(
                        "{}/{}",
                        zone.as_deref().unwrap_or("?"),
                        spec.as_deref().unwrap_or("?")
                    ));
                    self.note_stockout(zone, spec);
                }
                Err(EciError::IdempotencyMismatch { .. }) => {
                    self.metrics
                        .eci_call("CreateContainerGroup", "token_used", seconds);
                    return self.adopt_by_listing(pod).await;
                }
                Err(e) => {
                    let (kind, reason, outcome) = classify_create_error(&e);
                    self.metrics
                        .eci_call("CreateContainerGroup", outcome, seconds);
                    let retry_after = e.retry_after();
                    return Err(
                        StepError::new(kind, reason, e.to_string()).retry_after(retry_after)
                    );
                }
            }
        }
        Err(StepError::new(
            FailureKind::Replan,
            "NoStock",
            format!(
                "no stock for any of the {} placement attempt(s) ({}); asking placement again",
                attempts.len(),
                sold_out.join(", ")
            ),
        ))
    }

    async fn delete(&self, uid: &str, group: &GroupRef) -> Result<(), StepError> {
        let request = DeleteContainerGroupRequest {
            container_group_id: group.id.clone(),
            ..Default::default()
        };
        let started = Instant::now();
        let result = self.eci.delete_container_group(&request).await;
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(_) => {
                self.metrics.eci_call("DeleteContainerGroup", "ok", seconds);
                self.index.remove(uid, &group.id);
                Ok(())
            }
            Err(EciError::NotFound { .. }) => {
                self.metrics
                    .eci_call("DeleteContainerGroup", "not_found", seconds);
                self.index.remove(uid, &group.id);
                Ok(())
            }
            Err(e) => {
                let outcome = if matches!(e, EciError::Throttled { .. }) {
                    "throttled"
                } else {
                    "error"
                };
                self.metrics
                    .eci_call("DeleteContainerGroup", outcome, seconds);
                let retry_after = e.retry_after();
                Err(StepError::new(
                    FailureKind::Transient,
                    "EciDeleteFailed",
                    format!("deleting container group {}: {e}", group.id),
                )
                .retry_after(retry_after))
            }
        }
    }

    fn forget(&self, uid: &str) {
        self.progress.lock().remove(uid);
    }
}

#[cfg(test)]
#[path = "eci_path_tests.rs"]
mod tests;
