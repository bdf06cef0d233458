//! The observer: everything that comes back from ECI. Two loops under one token:
//!
//! * **Listing and reconcile sweep** (at start-up, every `reconcile` interval, and early when
//!   the poller misses a group): `DescribeContainerGroups` filtered by this cluster's and
//!   node's tags, all pages. Only a complete listing is applied
//!   ([`GroupIndex::replace_all`]); a failed one changes nothing and is retried with backoff.
//!   Once the pod store has its first full listing, the listing is judged by the pure rules in
//!   [`super::reconcile`]: orphans (pod gone, confirmed by a direct GET, group old enough) and
//!   duplicates are deleted, vanished groups fail their pods, and every listed group's status
//!   is compared with its pod's (drift repair) and its events mirrored.
//! * **Status poller** (every `podStatusPoll`): `DescribeContainerGroupStatus` filtered by the
//!   same tags with `SinceSecond` covering the time since the last successful poll, so an
//!   incremental poll costs one call per 200 changed groups whatever the pod count; every
//!   `podStatusResync` a full pass by IDs (20 per call) catches anything missed. Groups whose
//!   status entry changed are described in full (`DescribeContainerGroups` by IDs, 20 per
//!   call, with events), mapped by `vnode_mapping::pod_status` and written only when the
//!   result differs from the stored status; their events become pod events once each.
//!
//! ## Quota arithmetic (10,000 pods on one node)
//!
//! The client paces `DescribeContainerGroupStatus` at 2,000 calls/min (the figure
//! `vnode_eci::Action::documented_quota_per_minute` uses; ECI's flow-control table allows
//! 10,000/min) and `DescribeContainerGroups` at 2,000/min. With the defaults (poll 5 s,
//! resync 60 s, sweep 5 min) and N = 10,000 groups:
//!
//! * incremental polls: 12/min × ⌈changed/200⌉ calls, i.e. 12/min when little changes;
//! * full resync by IDs: ⌈N/20⌉ = 500 calls per minute;
//! * status total ≈ 512/min, a quarter of the stricter quota (5 % of ECI's table);
//! * describes of changed groups: ⌈changed/20⌉ per poll; creation is capped at 1,000/min by
//!   its own quota and a new group changes state ~3 times, so ≤ 150/min; the sweep lists
//!   ⌈N/20⌉ = 500 pages every 5 min = 100/min; together well under 2,000/min.
//!
//! Polling every group by ID every 5 s instead would need 6,000 calls/min: three times the
//! paced quota. That is why incremental polls filter by tag and only the resync goes by ID.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{EventType, Reporter};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use vnode_eci::EciClient;
use vnode_eci::EciError;
use vnode_eci::model::{
    self as eci, ContainerGroup, ContainerGroupStatusInfo, DeleteContainerGroupRequest,
    DescribeContainerGroupStatusRequest, DescribeContainerGroupsRequest, Tag,
};
use vnode_mapping::pod_status::{ImageIds, VANISHED_REASON, pod_status, vanished_status};

use super::reconcile::{self, PodFacts, PodLookup, Verdict};
use super::status::{event_identity, is_terminal_phase, needs_write, status_patch};
use super::{GroupIndex, annotations, tags};
use crate::metrics::Metrics;
use crate::pods::store::PodStore;

/// IDs per `DescribeContainerGroups` / `DescribeContainerGroupStatus` call (the API limit).
pub const IDS_PER_CALL: usize = 20;
/// Page size of tag-filtered `DescribeContainerGroupStatus` (the API default).
const STATUS_PAGE: u32 = 200;
/// Page size of `DescribeContainerGroups` (the API maximum).
const LIST_PAGE: u32 = 20;
/// Added to every `SinceSecond` window: the window is counted in whole seconds on ECI's
/// clock while this process measures it on its own, and a poll takes time to arrive.
const SINCE_SLACK: Duration = Duration::from_secs(3);
/// Chunks of changed groups described and applied at once (so at most
/// `CHUNKS_IN_FLIGHT × IDS_PER_CALL` status writes in flight).
const CHUNKS_IN_FLIGHT: usize = 4;
/// Chunks in flight while pods are being created (a pod was queued for its group within
/// [`CREATING_WINDOW`]): the status writes then take turns with the create path instead of
/// queueing 80 writes and 4 describes in front of it (see `pods::activity`).
const CHUNKS_IN_FLIGHT_WHILE_CREATING: usize = 1;
/// How recently a pod must have been queued for its group to count as "being created".
const CREATING_WINDOW: Duration = Duration::from_secs(1);
/// How many times a group's status is re-read by ID after a failed describe or write
/// before it waits for the next full resync.
const MAX_RETRIES: u32 = 5;

/// Loop periods and identity of the observer.
#[derive(Debug, Clone)]
pub struct ObserverSettings {
    /// `vnode.io/cluster` tag value (ECI_CLUSTER_NAME).
    pub cluster: String,
    /// `vnode.io/node` tag value (the node name).
    pub node: String,
    /// Incremental status poll period (`intervals.podStatusPoll`).
    pub poll_interval: Duration,
    /// Full status resync period (`intervals.podStatusResync`).
    pub resync_interval: Duration,
    /// Listing + reconcile sweep period (`intervals.reconcile`).
    pub reconcile_interval: Duration,
    /// A group younger than this is never deleted as an orphan or duplicate
    /// (`intervals.orphanMinAge`).
    pub orphan_min_age: Duration,
}

/// The observer. Build with [`Observer::new`], run with [`Observer::run`].
pub struct Observer {
    client: Client,
    eci: Arc<EciClient>,
    store: PodStore,
    index: Arc<GroupIndex>,
    settings: ObserverSettings,
    metrics: Arc<Metrics>,
    events: crate::events::EventSink,
    store_ready: AtomicBool,
    sweep_now: Notify,
    /// Event identities already published, per pod UID.
    seen_events: Mutex<HashMap<String, HashSet<u64>>>,
    /// When this process first listed each group (age fallback when ECI gives no time).
    first_seen: Mutex<HashMap<String, Instant>>,
    /// The pod controller's create activity, when it shares this process.
    create_activity: Option<crate::pods::activity::CreateActivity>,
}

/// What applying one described group to its pod did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// Not the pod's group (not indexed, or another group is the pod's).
    NotOurs,
    /// The pod is not in the store (or is another pod by that name).
    NoPod,
    /// Nothing to write.
    Unchanged,
    /// Status written.
    Written,
    /// The write failed or was refused (stale read); re-read the group.
    Retry,
}

impl Observer {
    /// An observer over the kube client, the ECI client, the pod store fed by the pod
    /// controller, and the shared index. Events are published as `reporter`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        eci: Arc<EciClient>,
        store: PodStore,
        index: Arc<GroupIndex>,
        settings: ObserverSettings,
        metrics: Arc<Metrics>,
        reporter: Reporter,
    ) -> Self {
        // Written in the background: the poller never waits for an event.
        let events = crate::events::EventSink::spawn(
            client.clone(),
            crate::events::Reporter {
                instance: reporter
                    .instance
                    .unwrap_or_else(|| reporter.controller.clone()),
                controller: reporter.controller,
            },
        );
        Self {
            client,
            eci,
            store,
            index,
            settings,
            metrics,
            events,
            store_ready: AtomicBool::new(false),
            sweep_now: Notify::new(),
            seen_events: Mutex::new(HashMap::new()),
            first_seen: Mutex::new(HashMap::new()),
            create_activity: None,
        }
    }

    /// Runs status writes [`CHUNKS_IN_FLIGHT_WHILE_CREATING`] chunks at a time while the
    /// pod controller behind `activity` is creating pods.
    #[must_use]
    pub fn yielding_to_creates(mut self, activity: crate::pods::activity::CreateActivity) -> Self {
        self.create_activity = Some(activity);
        self
    }

    /// Chunks of changed groups to describe and apply at once, now.
    fn chunks_in_flight(&self) -> usize {
        chunks_in_flight(self.create_activity.as_ref())
    }

    /// Runs the listing/reconcile loop and the status poller until `token` is cancelled.
    pub async fn run(self, token: CancellationToken) {
        let this = Arc::new(self);
        let ready = {
            let this = this.clone();
            let token = token.clone();
            async move {
                tokio::select! {
                    biased;
                    () = token.cancelled() => {}
                    r = this.store.wait_until_ready() => {
                        if r.is_ok() {
                            this.store_ready.store(true, Ordering::SeqCst);
                            // Judge the listing we may already have as soon as pods are known.
                            this.sweep_now.notify_one();
                        }
                    }
                }
            }
        };
        tokio::join!(
            ready,
            this.clone().listing_loop(token.clone()),
            this.poll_loop(token)
        );
        tracing::info!("observer stopped");
    }

    fn node_tags(&self) -> Vec<Tag> {
        vec![
            Tag::new(tags::CLUSTER, &self.settings.cluster),
            Tag::new(tags::NODE, &self.settings.node),
        ]
    }

    // ---------------------------------------------------------------------------------
    // Listing and reconcile sweep
    // ---------------------------------------------------------------------------------

    async fn listing_loop(self: Arc<Self>, token: CancellationToken) {
        let mut failures = 0u32;
        let min_gap = self
            .settings
            .poll_interval
            .min(self.settings.reconcile_interval);
        loop {
            let started = Instant::now();
            // Read once per listing: a store that becomes ready mid-listing is judged by the
            // next one (its readiness asks for a sweep).
            let ready = self.store_ready.load(Ordering::SeqCst);
            let result = tokio::select! {
                biased;
                () = token.cancelled() => return,
                r = self.list_groups(ready) => r,
            };
            let wait = match result {
                Ok(listing) => {
                    failures = 0;
                    self.metrics.group_listing("complete");
                    self.apply_listing(listing, ready, started, &token).await;
                    self.settings.reconcile_interval
                }
                Err(e) => {
                    self.metrics.group_listing("failed");
                    let delay = backoff(failures).min(self.settings.reconcile_interval);
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, retry_in = ?delay, "listing this node's container groups failed; nothing changes until a listing completes");
                    delay
                }
            };
            tokio::select! {
                biased;
                () = token.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = async {
                    tokio::time::sleep(min_gap).await;
                    self.sweep_now.notified().await;
                } => {}
            }
        }
    }

    /// Lists this node's groups, all pages, reducing each page as it arrives: the judgement
    /// needs only a few facts per group ([`slim`]), so the full groups (containers, volumes,
    /// up to 50 events each: ~8 KiB decoded) are not held for the whole listing. At 10,000
    /// groups the decoded listing was the daemon's largest allocation while it lasted.
    ///
    /// A group already indexed as its pod's is applied to its pod right from its page (status
    /// drift repair and event mirroring only read that group's own state, so they need no
    /// complete listing); with a ready store, a group not indexed yet is kept whole until the
    /// judgement says whether it is adopted. Fails as a whole if any page fails: the
    /// judgement (orphans, duplicates, vanished) only ever sees a complete listing.
    async fn list_groups(&self, store_ready: bool) -> Result<GroupListing, EciError> {
        let mut request = DescribeContainerGroupsRequest {
            tags: self.node_tags(),
            with_event: Some(true),
            limit: Some(LIST_PAGE),
            ..Default::default()
        };
        let mut listing = GroupListing::default();
        loop {
            let page = self.eci.describe_container_groups(&request).await?;
            for g in page.container_groups {
                if store_ready {
                    if self.is_indexed(&g) {
                        if self.apply_group(&g, None).await == Applied::Written {
                            self.metrics.reconcile("status_repaired");
                        }
                    } else {
                        listing
                            .unindexed
                            .insert(g.container_group_id.clone(), g.clone());
                    }
                }
                listing.groups.push(slim(g));
            }
            if page.next_token.is_empty() {
                return Ok(listing);
            }
            request.next_token = Some(page.next_token);
        }
    }

    /// Whether the index holds `g` as its pod's group.
    fn is_indexed(&self, g: &ContainerGroup) -> bool {
        reconcile::tag(g, tags::POD_UID)
            .and_then(|uid| self.index.get(uid))
            .is_some_and(|e| e.id == g.container_group_id)
    }

    /// Applies one complete listing: index, then (with a ready pod store) the sweep.
    async fn apply_listing(
        &self,
        listing: GroupListing,
        ready: bool,
        started: Instant,
        token: &CancellationToken,
    ) {
        let GroupListing {
            groups,
            mut unindexed,
        } = listing;
        let now = jiff::Timestamp::now();
        let pods = if ready {
            self.pod_facts()
        } else {
            HashMap::new()
        };
        let indexed: HashMap<String, String> = self
            .index
            .snapshot()
            .into_iter()
            .map(|e| (e.pod_uid, e.id))
            .collect();
        let known_ids: HashSet<String> = indexed.values().cloned().collect();
        let seen = {
            let mut first = self.first_seen.lock();
            let listed: HashSet<&str> = groups
                .iter()
                .map(|g| g.container_group_id.as_str())
                .collect();
            first.retain(|id, _| listed.contains(id.as_str()));
            for g in &groups {
                first.entry(g.container_group_id.clone()).or_insert(started);
            }
            first.clone()
        };
        let age = |g: &ContainerGroup| {
            let seen_for = seen
                .get(&g.container_group_id)
                .map(Instant::elapsed)
                .unwrap_or_default();
            reconcile::age_of(g, now, seen_for)
        };
        let plan = reconcile::judge(&groups, &pods, &indexed, age, self.settings.orphan_min_age);
        self.index.replace_all(plan.entries, started);
        self.metrics.groups_known.set(self.index.len() as i64);
        tracing::debug!(
            groups = groups.len(),
            indexed = self.index.len(),
            "applied a complete listing"
        );
        if !ready {
            tracing::info!(
                groups = groups.len(),
                "listed this node's container groups; the reconcile waits for the pod store"
            );
            return;
        }

        let listed_ids: HashSet<String> = groups
            .iter()
            .map(|g| g.container_group_id.clone())
            .collect();
        for g in &groups {
            if token.is_cancelled() {
                return;
            }
            let verdict = plan
                .verdicts
                .get(&g.container_group_id)
                .cloned()
                .unwrap_or(Verdict::Untagged);
            match verdict {
                Verdict::Keep => {
                    if !known_ids.contains(&g.container_group_id) {
                        self.metrics.reconcile("adopted");
                        tracing::info!(group = %g.container_group_id, pod = %pod_key_of(g), "adopted container group");
                    }
                    // Drift repair and events of a group adopted by this listing (an indexed
                    // one was applied from its page).
                    if let Some(full) = unindexed.remove(&g.container_group_id)
                        && self.apply_group(&full, None).await == Applied::Written
                    {
                        self.metrics.reconcile("status_repaired");
                    }
                }
                Verdict::TooYoung | Verdict::YoungDuplicate => self.metrics.reconcile("young"),
                Verdict::Untagged => self.metrics.reconcile("untagged"),
                Verdict::CheckPod { namespace, name } => {
                    let uid = reconcile::tag(g, tags::POD_UID).unwrap_or_default();
                    let lookup = self.lookup_pod(&namespace, &name, uid).await;
                    if reconcile::orphan_confirmed(lookup) {
                        self.delete_group(g, "orphan", &age(g)).await;
                    } else {
                        tracing::debug!(group = %g.container_group_id, ?lookup, "group's pod is not in the store but not confirmed gone; kept");
                        self.metrics.reconcile("kept_unconfirmed");
                    }
                }
                Verdict::DeleteDuplicate => self.delete_group(g, "duplicate", &age(g)).await,
            }
        }

        // Vanished: pods naming a group the complete listing lacks.
        let candidates = reconcile::vanished_candidates(&pods, &listed_ids, |uid| {
            self.index.get(uid).map(|e| e.id)
        });
        if !candidates.is_empty() {
            self.fail_vanished(candidates, &pods).await;
        }
    }

    fn pod_facts(&self) -> HashMap<String, PodFacts> {
        // From the facts the store keeps next to each pod: no pod is decoded.
        self.store
            .state()
            .iter()
            .filter_map(|p| {
                Some((
                    p.uid()?.to_string(),
                    PodFacts {
                        key: p.key(),
                        annotated_group: p.group_id().map(str::to_string),
                        deleting: p.deleting(),
                        terminal: is_terminal_phase(p.phase()),
                    },
                ))
            })
            .collect()
    }

    /// A direct GET of the pod, bypassing the store.
    async fn lookup_pod(&self, namespace: &str, name: &str, uid: &str) -> PodLookup {
        if namespace.is_empty() || name.is_empty() {
            // Without a name there is nothing to GET; the UID is not in the store, but
            // "unknown" is never "gone".
            return PodLookup::Unknown;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(None) => PodLookup::Gone,
            Ok(Some(p)) if p.metadata.uid.as_deref() == Some(uid) => PodLookup::SameUid,
            Ok(Some(_)) => PodLookup::OtherUid,
            Err(e) => {
                tracing::warn!(pod = %format!("{namespace}/{name}"), error = %e, "looking up the pod of an unmatched group failed; the group is kept");
                PodLookup::Unknown
            }
        }
    }

    async fn delete_group(&self, g: &ContainerGroup, why: &'static str, age: &Duration) {
        let request = DeleteContainerGroupRequest {
            container_group_id: g.container_group_id.clone(),
            ..Default::default()
        };
        let uid = reconcile::tag(g, tags::POD_UID).unwrap_or_default();
        match self.eci.delete_container_group(&request).await {
            Ok(_) | Err(EciError::NotFound { .. }) => {
                self.index.remove(uid, &g.container_group_id);
                self.metrics.reconcile(match why {
                    "orphan" => "orphan_deleted",
                    _ => "duplicate_deleted",
                });
                tracing::info!(group = %g.container_group_id, pod = %pod_key_of(g), pod_uid = %uid, age = ?age, reason = why, "deleted container group whose pod is gone");
            }
            Err(e) => {
                self.metrics.reconcile("delete_failed");
                tracing::warn!(group = %g.container_group_id, reason = why, error = %e, "deleting container group failed; retried on the next sweep");
            }
        }
    }

    /// Confirms candidates by describing their IDs, then fails the pods of the groups that
    /// really are gone.
    async fn fail_vanished(
        &self,
        candidates: Vec<(String, String)>,
        pods: &HashMap<String, PodFacts>,
    ) {
        let ids: Vec<String> = candidates.iter().map(|(_, id)| id.clone()).collect();
        let mut exists = HashSet::new();
        for chunk in ids.chunks(IDS_PER_CALL) {
            let request = DescribeContainerGroupsRequest {
                container_group_ids: chunk.to_vec(),
                with_event: Some(false),
                ..Default::default()
            };
            match self.eci.describe_all_container_groups(&request).await {
                Ok(found) => exists.extend(found.into_iter().map(|g| g.container_group_id)),
                Err(e) => {
                    tracing::warn!(error = %e, "confirming vanished container groups failed; decided on a later sweep");
                    return;
                }
            }
        }
        for (uid, id) in candidates {
            if exists.contains(&id) {
                // Still there (maybe without our tags): not vanished.
                continue;
            }
            let Some(facts) = pods.get(&uid) else {
                continue;
            };
            let Some((ns, name)) = facts.key.split_once('/') else {
                continue;
            };
            let Some(pod) = self.store.pod(ns, name) else {
                continue;
            };
            if pod.metadata.uid.as_deref() != Some(uid.as_str())
                || pod.metadata.deletion_timestamp.is_some()
                || is_terminal_phase(pod.status.as_ref().and_then(|s| s.phase.as_deref()))
            {
                continue;
            }
            let desired = vanished_status(&pod, &id, jiff::Timestamp::now());
            tracing::warn!(pod = %facts.key, group = %id, "container group vanished from ECI; marking the pod Failed");
            if self.write_status(&pod, &desired).await == Applied::Written {
                self.metrics.reconcile("vanished");
                self.publish(
                    &pod,
                    EventType::Warning,
                    VANISHED_REASON,
                    &format!(
                        "container group {id} no longer exists in ECI; the pod is marked Failed"
                    ),
                )
                .await;
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Status poller
    // ---------------------------------------------------------------------------------

    async fn poll_loop(self: Arc<Self>, token: CancellationToken) {
        tokio::select! {
            biased;
            () = token.cancelled() => return,
            () = self.index.wait_until_listed() => {}
        }
        let mut state = PollState::default();
        let mut tick = tokio::time::interval(self.settings.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !self.store_ready.load(Ordering::SeqCst) {
                continue;
            }
            tokio::select! {
                biased;
                () = token.cancelled() => return,
                () = self.poll_once(&mut state) => {}
            }
            self.update_gauges();
        }
    }

    async fn poll_once(&self, state: &mut PollState) {
        let started = Instant::now();
        let full = state
            .last_resync
            .is_none_or(|t| t.elapsed() >= self.settings.resync_interval)
            || state
                .window_start
                .is_none_or(|t| t.elapsed() >= self.settings.resync_interval);
        // Only the entries that changed since they were last applied (or are to be re-read)
        // are kept, with their fingerprint, and of each only its image IDs: a full resync
        // answers for every group, and after a burst every group changed; at 10,000 groups
        // holding every decoded entry until the poll ends cost ~25 MB.
        let mut infos: Changed = HashMap::new();
        if full {
            let ids: Vec<String> = {
                let mut ids: Vec<String> =
                    self.index.snapshot().into_iter().map(|e| e.id).collect();
                ids.sort_unstable();
                ids
            };
            let (returned, failed) = self
                .status_by_ids(&ids, |info| keep_changed(state, &mut infos, info))
                .await;
            let complete = failed.is_empty();
            for id in failed {
                state.retry.entry(id).or_insert(0);
            }
            let missing = ids.iter().filter(|id| !returned.contains(*id)).count();
            drop(returned);
            self.metrics
                .status_poll("resync", started.elapsed().as_secs_f64());
            if complete {
                state.last_resync = Some(started);
                state.window_start = Some(started);
                let live: HashSet<String> = ids.into_iter().collect();
                state.fingerprints.retain(|id, _| live.contains(id));
                let uids: HashSet<String> = self
                    .index
                    .snapshot()
                    .into_iter()
                    .map(|e| e.pod_uid)
                    .collect();
                self.seen_events.lock().retain(|uid, _| uids.contains(uid));
            }
            if missing > 0 {
                // A group the index knows did not answer: let a complete listing decide
                // whether it vanished (never this partial view).
                tracing::debug!(
                    missing,
                    "groups missing from the status resync; asking for a sweep"
                );
                self.sweep_now.notify_one();
            }
        } else if let Some(window_start) = state.window_start {
            let since = window_start.elapsed() + SINCE_SLACK;
            let since_second = i64::try_from(since.as_secs() + 1).unwrap_or(i64::MAX);
            match self
                .status_changed_since(since_second, |info| changed_fingerprint(state, info))
                .await
            {
                Ok(found) => {
                    state.window_start = Some(started);
                    infos.extend(found);
                }
                Err(e) => {
                    // The window stays open: the next poll covers this one's span too.
                    tracing::warn!(error = %e, "incremental status poll failed; the next poll covers its window");
                }
            }
            self.metrics
                .status_poll("incremental", started.elapsed().as_secs_f64());
        }

        // Groups to re-read by ID (failed describes or writes).
        if !state.retry.is_empty() {
            let ids: Vec<String> = state
                .retry
                .keys()
                .filter(|id| !infos.contains_key(*id))
                .take(10 * IDS_PER_CALL)
                .cloned()
                .collect();
            let (returned, _failed) = self
                .status_by_ids(&ids, |info| keep_changed(state, &mut infos, info))
                .await;
            // A group that no longer answers is the sweep's to judge.
            for id in &ids {
                if !returned.contains(id) {
                    state.retry.remove(id);
                }
            }
        }

        let mut changed: Vec<(String, u64)> = infos
            .iter()
            .map(|(id, (_, fp))| (id.clone(), *fp))
            .collect();
        changed.sort();
        // Chunks are described and applied concurrently (each chunk's groups at once too):
        // one status write at a time made the last of 10,000 Running pods wait ~30 s for
        // its status. Per-group results are folded into `state` afterwards.
        let chunks: Vec<Vec<(String, u64)>> =
            changed.chunks(IDS_PER_CALL).map(<[_]>::to_vec).collect();
        // How many run at once is decided as each chunk starts: fewer while pods are being
        // created (`chunks_in_flight`).
        let mut pending = chunks
            .into_iter()
            .map(|chunk| self.describe_and_apply(chunk, &infos));
        let mut running = futures::stream::FuturesUnordered::new();
        let mut outcomes: Vec<ChunkOutcome> = Vec::new();
        loop {
            while running.len() < self.chunks_in_flight() {
                match pending.next() {
                    Some(chunk) => running.push(chunk),
                    None => break,
                }
            }
            match running.next().await {
                Some(outcome) => outcomes.push(outcome),
                None => break,
            }
        }
        for outcome in outcomes {
            match outcome {
                ChunkOutcome::DescribeFailed(ids) => {
                    for id in ids {
                        state.retry.entry(id).or_insert(0);
                    }
                }
                ChunkOutcome::Applied(results) => {
                    for (id, fp, applied) in results {
                        match applied {
                            None => {
                                // Deleted between the two calls: the sweep judges it.
                                state.retry.remove(&id);
                            }
                            Some(Applied::Retry) => {
                                let n = state.retry.entry(id.clone()).or_insert(0);
                                *n += 1;
                                if *n > MAX_RETRIES {
                                    state.retry.remove(&id);
                                }
                            }
                            Some(_) => {
                                state.retry.remove(&id);
                                state.fingerprints.insert(id, fp);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Describes one chunk of changed groups (with events) and applies each to its pod, all
    /// of the chunk's writes at once.
    async fn describe_and_apply(&self, chunk: Vec<(String, u64)>, infos: &Changed) -> ChunkOutcome {
        let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
        let request = DescribeContainerGroupsRequest {
            container_group_ids: ids.clone(),
            with_event: Some(true),
            limit: Some(LIST_PAGE),
            ..Default::default()
        };
        let groups = match self.eci.describe_all_container_groups(&request).await {
            Ok(groups) => groups,
            Err(e) => {
                tracing::warn!(error = %e, groups = ids.len(), "describing changed container groups failed; re-read on the next poll");
                return ChunkOutcome::DescribeFailed(ids);
            }
        };
        let by_id: HashMap<&str, &ContainerGroup> = groups
            .iter()
            .map(|g| (g.container_group_id.as_str(), g))
            .collect();
        let applies = chunk.into_iter().map(|(id, fp)| {
            let group = by_id.get(id.as_str()).copied();
            let image_ids = infos.get(&id).and_then(|(ids, _)| ids.as_ref());
            async move {
                let applied = match group {
                    Some(g) => Some(self.apply_group(g, image_ids).await),
                    None => None,
                };
                (id, fp, applied)
            }
        });
        ChunkOutcome::Applied(futures::future::join_all(applies).await)
    }

    /// `DescribeContainerGroupStatus` by IDs, 20 per call, handing each entry of a batch
    /// that answered completely to `found`. Returns the IDs that answered and the IDs of the
    /// batches that failed.
    async fn status_by_ids(
        &self,
        ids: &[String],
        mut found: impl FnMut(ContainerGroupStatusInfo),
    ) -> (HashSet<String>, Vec<String>) {
        let mut returned = HashSet::new();
        let mut failed = Vec::new();
        for chunk in ids.chunks(IDS_PER_CALL) {
            let mut request = DescribeContainerGroupStatusRequest {
                container_group_ids: chunk.to_vec(),
                ..Default::default()
            };
            let mut batch = Vec::new();
            let ok = loop {
                match self.eci.describe_container_group_status(&request).await {
                    Ok(resp) => {
                        batch.extend(resp.data);
                        if resp.next_token.is_empty() {
                            break true;
                        }
                        request.next_token = Some(resp.next_token);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, groups = chunk.len(), "status by IDs failed");
                        break false;
                    }
                }
            };
            if ok {
                for info in batch {
                    returned.insert(info.container_group_id.clone());
                    found(info);
                }
            } else {
                failed.extend(chunk.iter().cloned());
            }
        }
        (returned, failed)
    }

    /// Tag-filtered `DescribeContainerGroupStatus` of the groups that changed in the last
    /// `since_second` seconds, all pages; fails as a whole. Keeps the entries `keep` gives a
    /// fingerprint for, as [`kept_entry`]s.
    async fn status_changed_since(
        &self,
        since_second: i64,
        keep: impl Fn(&ContainerGroupStatusInfo) -> Option<u64>,
    ) -> Result<Vec<(String, (Option<ImageIds>, u64))>, EciError> {
        let mut request = DescribeContainerGroupStatusRequest {
            tags: self.node_tags(),
            since_second: Some(since_second),
            limit: Some(STATUS_PAGE),
            ..Default::default()
        };
        let mut kept = Vec::new();
        loop {
            let resp = self.eci.describe_container_group_status(&request).await?;
            for info in resp.data {
                if let Some(fp) = keep(&info) {
                    kept.push(kept_entry(info, fp));
                }
            }
            if resp.next_token.is_empty() {
                return Ok(kept);
            }
            request.next_token = Some(resp.next_token);
        }
    }

    // ---------------------------------------------------------------------------------
    // Applying a group to its pod
    // ---------------------------------------------------------------------------------

    /// Index status, events and pod status for one fully described group.
    async fn apply_group(&self, g: &ContainerGroup, image_ids: Option<&ImageIds>) -> Applied {
        let Some(entry) = reconcile::entry_of(g) else {
            return Applied::NotOurs;
        };
        match self.index.get(&entry.pod_uid) {
            Some(e) if e.id == g.container_group_id => {}
            _ => return Applied::NotOurs,
        }
        self.index
            .set_status(&entry.pod_uid, &g.container_group_id, g.status.as_str());
        let Some((ns, name)) = entry.pod_key.split_once('/') else {
            return Applied::NoPod;
        };
        let Some(stored) = self.store.get(ns, name) else {
            return Applied::NoPod;
        };
        if stored.uid() != Some(entry.pod_uid.as_str()) {
            return Applied::NoPod;
        }
        let pod = match stored.decode() {
            Ok(pod) => pod,
            Err(e) => {
                tracing::error!(error = %e, "cannot apply the group's status to its pod");
                return Applied::Retry;
            }
        };
        self.mirror_events(&pod, &entry.pod_uid, &g.events).await;
        // The annotation patch bumps the resourceVersion the status write is guarded by:
        // continue with the patched pod, or every first status write would be a 409.
        let pod = match self.repair_zone_annotation(&pod, g).await {
            Some(patched) => patched,
            None => pod,
        };
        let current = pod.status.as_ref();
        if is_terminal_phase(current.and_then(|s| s.phase.as_deref())) {
            return Applied::Unchanged;
        }
        let desired = pod_status(g, image_ids, &pod, jiff::Timestamp::now());
        if !needs_write(&desired, current) {
            return Applied::Unchanged;
        }
        self.write_status(&pod, &desired).await
    }

    /// Sets the pod's `vnode.io/zone` annotation to the zone ECI reports for its group when it
    /// is missing or different. The create path can only write the requested zone, and none
    /// when the placement offered vSwitches in several zones (ECI picks one); so this costs a
    /// write only for those pods, once. Returns the patched pod when it wrote.
    async fn repair_zone_annotation(&self, pod: &Pod, g: &ContainerGroup) -> Option<Pod> {
        if g.zone_id.is_empty() {
            return None;
        }
        let annotated = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::ZONE));
        if annotated.map(String::as_str) == Some(g.zone_id.as_str()) {
            return None;
        }
        let (Some(ns), Some(name), Some(uid)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
            pod.metadata.uid.as_deref(),
        ) else {
            return None;
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let patch = serde_json::json!({
            "metadata": {"uid": uid, "annotations": {annotations::ZONE: g.zone_id}}
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(patched) => {
                tracing::debug!(pod = %format!("{ns}/{name}"), zone = %g.zone_id, "zone annotation set from ECI");
                Some(patched)
            }
            Err(e) => {
                // The next listing or status poll tries again.
                tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "setting the zone annotation failed");
                None
            }
        }
    }

    /// PATCHes the status subresource, guarded by UID and resourceVersion.
    async fn write_status(&self, pod: &Pod, desired: &PodStatus) -> Applied {
        let (Some(ns), Some(name), Some(uid)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
            pod.metadata.uid.as_deref(),
        ) else {
            return Applied::NoPod;
        };
        let patch = status_patch(desired, uid, pod.metadata.resource_version.as_deref());
        // The written pod the server answers with is not decoded (`kube_client::writes`).
        match crate::kube_client::writes::merge_patch_pod_status(&self.client, ns, name, &patch)
            .await
        {
            Ok(_) => {
                self.metrics.status_write("ok");
                tracing::debug!(pod = %format!("{ns}/{name}"), phase = ?desired.phase, "pod status written");
                Applied::Written
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // A newer pod version exists (or another pod by that name): re-read and retry.
                self.metrics.status_write("conflict");
                Applied::Retry
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.metrics.status_write("gone");
                Applied::NoPod
            }
            Err(e) => {
                self.metrics.status_write("error");
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "writing pod status failed; retried");
                Applied::Retry
            }
        }
    }

    async fn mirror_events(&self, pod: &Pod, uid: &str, events: &[eci::Event]) {
        let fresh: Vec<(u64, &eci::Event)> = {
            let mut seen = self.seen_events.lock();
            let set = seen.entry(uid.to_string()).or_default();
            events
                .iter()
                .filter(|e| !e.reason.is_empty())
                .filter_map(|e| {
                    let id = event_identity(&e.kind, &e.reason, &e.message);
                    set.insert(id).then_some((id, e))
                })
                .collect()
        };
        for (id, e) in fresh {
            let kind = if e.kind.eq_ignore_ascii_case("Warning") {
                EventType::Warning
            } else {
                EventType::Normal
            };
            if !self.publish(pod, kind, &e.reason, &e.message).await {
                // Not published: forget it so the next observation retries.
                if let Some(set) = self.seen_events.lock().get_mut(uid) {
                    set.remove(&id);
                }
            }
        }
    }

    async fn publish(&self, pod: &Pod, kind: EventType, reason: &str, message: &str) -> bool {
        let kind = match kind {
            EventType::Warning => crate::events::EventKind::Warning,
            EventType::Normal => crate::events::EventKind::Normal,
        };
        self.events
            .publish_once(pod, kind, reason, message, "ContainerGroupEvent");
        self.metrics.eci_events_mirrored.inc();
        true
    }

    fn update_gauges(&self) {
        let mut by_phase: HashMap<String, i64> =
            ["Pending", "Running", "Succeeded", "Failed", "Unknown"]
                .into_iter()
                .map(|p| (p.to_string(), 0))
                .collect();
        for p in self.store.state() {
            let phase = p.phase().unwrap_or("Pending");
            match by_phase.get_mut(phase) {
                Some(n) => *n += 1,
                None => {
                    by_phase.insert(phase.to_string(), 1);
                }
            }
        }
        for (phase, n) in by_phase {
            self.metrics.pods_in_phase(&phase, n);
        }
        self.metrics.groups_known.set(self.index.len() as i64);
    }
}

/// What describing and applying one chunk of changed groups came to.
enum ChunkOutcome {
    /// The describe failed: re-read these IDs on the next poll.
    DescribeFailed(Vec<String>),
    /// Per group: ID, status fingerprint, and what applying it did (`None`: the group was
    /// not in the answer, deleted between the two calls).
    Applied(Vec<(String, u64, Option<Applied>)>),
}

/// What the poller remembers between polls.
#[derive(Debug, Default)]
struct PollState {
    /// Start of the last successful incremental poll or resync: the next `SinceSecond`
    /// window begins here.
    window_start: Option<Instant>,
    /// Start of the last complete resync.
    last_resync: Option<Instant>,
    /// Group ID → fingerprint of the status entry last applied.
    fingerprints: HashMap<String, u64>,
    /// Group IDs to re-read by ID, with the number of failed attempts.
    retry: HashMap<String, u32>,
}

/// [`CHUNKS_IN_FLIGHT_WHILE_CREATING`] while `activity` saw a pod queued for its group within
/// [`CREATING_WINDOW`], else [`CHUNKS_IN_FLIGHT`].
fn chunks_in_flight(activity: Option<&crate::pods::activity::CreateActivity>) -> usize {
    if activity.is_some_and(|a| a.recent(CREATING_WINDOW)) {
        CHUNKS_IN_FLIGHT_WHILE_CREATING
    } else {
        CHUNKS_IN_FLIGHT
    }
}

/// The entry's fingerprint when it is to be applied: it changed since it was last applied,
/// or its group is to be re-read.
fn changed_fingerprint(state: &PollState, info: &ContainerGroupStatusInfo) -> Option<u64> {
    let id = &info.container_group_id;
    let fp = fingerprint(info);
    (state.fingerprints.get(id) != Some(&fp) || state.retry.contains_key(id)).then_some(fp)
}

/// The status entries of one poll that are to be applied, by group ID: what applying reads
/// of each ([`kept_entry`]) and its fingerprint.
type Changed = HashMap<String, (Option<ImageIds>, u64)>;

/// Of a status entry to apply, its group ID, what applying it reads (its image IDs) and
/// its fingerprint.
fn kept_entry(info: ContainerGroupStatusInfo, fp: u64) -> (String, (Option<ImageIds>, u64)) {
    let image_ids = info.pod_status.as_ref().map(ImageIds::of);
    (info.container_group_id, (image_ids, fp))
}

/// Keeps `info` in `infos` when it is to be applied ([`changed_fingerprint`]).
fn keep_changed(state: &PollState, infos: &mut Changed, info: ContainerGroupStatusInfo) {
    if let Some(fp) = changed_fingerprint(state, &info) {
        let (id, kept) = kept_entry(info, fp);
        infos.insert(id, kept);
    }
}

fn fingerprint(info: &ContainerGroupStatusInfo) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(info).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Exponential backoff from 1 s, capped at 60 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60))
}

/// One complete listing of this node's groups, as [`Observer::list_groups`] keeps it.
#[derive(Default)]
struct GroupListing {
    /// Every listed group, [`slim`]med.
    groups: Vec<ContainerGroup>,
    /// Groups listed with a ready store that the index did not hold as their pod's, whole,
    /// by ID: applied to their pods if the judgement adopts them. Usually none (the pod path
    /// indexes what it creates; a restart's first listing is judged before pods are known).
    unindexed: HashMap<String, ContainerGroup>,
}

/// The part of a listed group that the judgement and the sweep read: ID, name, zone,
/// status, creation time and the tags naming its pod.
fn slim(g: ContainerGroup) -> ContainerGroup {
    let tags = g
        .tags
        .into_iter()
        .filter(|t| {
            matches!(
                t.key.as_str(),
                tags::POD_UID | tags::NAMESPACE | tags::POD_NAME
            )
        })
        .collect();
    ContainerGroup {
        container_group_id: g.container_group_id,
        container_group_name: g.container_group_name,
        zone_id: g.zone_id,
        status: g.status,
        creation_time: g.creation_time,
        tags,
        ..ContainerGroup::default()
    }
}

fn pod_key_of(g: &ContainerGroup) -> String {
    format!(
        "{}/{}",
        reconcile::tag(g, tags::NAMESPACE).unwrap_or_default(),
        reconcile::tag(g, tags::POD_NAME).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slimmed_group_is_judged_and_indexed_like_the_full_one() {
        let full = |uid: &str, id: &str, created: &str| ContainerGroup {
            container_group_id: id.into(),
            container_group_name: format!("name-{id}"),
            zone_id: "cn-hangzhou-j".into(),
            status: eci::ContainerGroupStatus::Running,
            creation_time: created.into(),
            tags: vec![
                Tag::new(tags::CLUSTER, "c"),
                Tag::new(tags::NODE, "vk"),
                Tag::new(tags::NAMESPACE, "default"),
                Tag::new(tags::POD_NAME, "web"),
                Tag::new(tags::POD_UID, uid),
            ],
            events: vec![eci::Event {
                reason: "Started".into(),
                message: "x".repeat(500),
                ..Default::default()
            }],
            containers: vec![eci::ContainerInfo {
                name: "web".into(),
                image: "nginx".into(),
                ..Default::default()
            }],
            intranet_ip: "172.16.0.5".into(),
            ..Default::default()
        };
        let listing = vec![
            full("u-1", "eci-a", "2026-11-26T08:00:00Z"),
            full("u-1", "eci-b", "2026-11-26T08:00:05Z"),
            full("u-2", "eci-c", "2026-11-26T08:00:00Z"),
            full("", "eci-d", "2026-11-26T08:00:00Z"),
        ];
        let slimmed: Vec<ContainerGroup> = listing.iter().cloned().map(slim).collect();
        let pods = HashMap::from([(
            "u-1".to_string(),
            PodFacts {
                key: "default/web".into(),
                annotated_group: None,
                deleting: false,
                terminal: false,
            },
        )]);
        let now = jiff::Timestamp::now();
        let age = |g: &ContainerGroup| reconcile::age_of(g, now, Duration::ZERO);
        let min_age = Duration::from_secs(60);
        let a = reconcile::judge(&listing, &pods, &HashMap::new(), age, min_age);
        let b = reconcile::judge(&slimmed, &pods, &HashMap::new(), age, min_age);
        assert_eq!(a.verdicts, b.verdicts);
        let (mut ea, mut eb) = (a.entries, b.entries);
        ea.sort_by(|x, y| x.id.cmp(&y.id));
        eb.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(ea, eb);
        for (f, s) in listing.iter().zip(&slimmed) {
            assert_eq!(pod_key_of(f), pod_key_of(s));
            assert_eq!(
                reconcile::tag(f, tags::POD_UID),
                reconcile::tag(s, tags::POD_UID)
            );
            assert!(s.events.is_empty() && s.containers.is_empty() && s.intranet_ip.is_empty());
        }
    }

    #[test]
    fn only_changed_or_retried_status_entries_are_kept() {
        let info = |id: &str, phase: &str| ContainerGroupStatusInfo {
            container_group_id: id.into(),
            pod_status: Some(eci::PodStatus {
                phase: phase.into(),
                container_statuses: vec![eci::PodContainerStatus {
                    name: "app".into(),
                    image_id: format!("app@sha256:{id}"),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut state = PollState::default();
        state
            .fingerprints
            .insert("same".into(), fingerprint(&info("same", "Running")));
        state
            .fingerprints
            .insert("moved".into(), fingerprint(&info("moved", "Pending")));
        state
            .fingerprints
            .insert("retry".into(), fingerprint(&info("retry", "Running")));
        state.retry.insert("retry".into(), 1);
        let mut infos = HashMap::new();
        for i in [
            info("same", "Running"),
            info("moved", "Running"),
            info("new", "Running"),
            info("retry", "Running"),
        ] {
            keep_changed(&state, &mut infos, i);
        }
        let mut kept: Vec<&str> = infos.keys().map(String::as_str).collect();
        kept.sort_unstable();
        assert_eq!(kept, vec!["moved", "new", "retry"]);
        assert_eq!(infos["new"].1, fingerprint(&info("new", "Running")));
        // Of the entry, what applying it reads: the image IDs.
        let image_ids = infos["new"].0.as_ref().expect("image IDs kept");
        assert_eq!(image_ids.get("app"), Some("app@sha256:new"));
        assert_eq!(image_ids.get("sidecar"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn status_chunks_run_one_at_a_time_only_while_pods_are_being_created() {
        let activity = crate::pods::activity::CreateActivity::default();
        assert_eq!(chunks_in_flight(None), CHUNKS_IN_FLIGHT);
        assert_eq!(
            chunks_in_flight(Some(&activity)),
            CHUNKS_IN_FLIGHT,
            "nothing created yet"
        );
        activity.mark();
        assert_eq!(chunks_in_flight(Some(&activity)), 1);
        tokio::time::advance(CREATING_WINDOW + Duration::from_millis(1)).await;
        assert_eq!(
            chunks_in_flight(Some(&activity)),
            CHUNKS_IN_FLIGHT,
            "creation stopped"
        );
        const { assert!(CHUNKS_IN_FLIGHT > CHUNKS_IN_FLIGHT_WHILE_CREATING) };
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), Duration::from_secs(60));
    }

    #[test]
    fn the_quota_arithmetic_in_the_docs_holds() {
        let groups = 10_000usize;
        let per_minute = |interval_s: usize| 60 / interval_s;
        let incremental = per_minute(5); // one call per poll when < 200 changed
        let resync = groups.div_ceil(IDS_PER_CALL) * per_minute(60);
        let status_total = incremental + resync;
        assert_eq!(status_total, 512);
        let quota = vnode_eci::Action::DescribeContainerGroupStatus.documented_quota_per_minute();
        assert!(status_total as u32 <= quota, "{status_total} > {quota}");
        // Polling every ID every 5 s would not fit.
        assert!((groups.div_ceil(IDS_PER_CALL) * per_minute(5)) as u32 > quota);
        let sweep = groups.div_ceil(LIST_PAGE as usize) / 5; // every 5 min
        let describes = (1000 * 3usize).div_ceil(IDS_PER_CALL); // ≤1000 creates/min × 3 changes
        let list_quota = vnode_eci::Action::DescribeContainerGroups.documented_quota_per_minute();
        assert!(((sweep + describes) as u32) < list_quota);
    }
}
